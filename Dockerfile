# molesite: one image for the web process (gunicorn) and the Celery workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own layer: rebuilt only when requirements.txt or constraints.txt
# changes. constraints.txt holds every package at the version the tests passed with.
# requirements.txt only: the run-time packages (requirements-dev.txt adds the tests', JAX, honcho).
COPY requirements.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt

RUN groupadd --system --gid 1000 molesite \
 && useradd --system --uid 1000 --gid molesite --home-dir /app --shell /usr/sbin/nologin molesite

# Runtime state lives under /data: in docker-compose.yml /data/media is the named volume shared
# by web and worker, /data/var beat's volume for its record of runs.
ENV PORT=8000 \
    VAR_DIR=/data/var \
    MEDIA_ROOT=/data/media \
    WEB_CONCURRENCY=3 \
    GUNICORN_CMD_ARGS="--timeout 60 --worker-tmp-dir /dev/shm --no-control-socket --limit-request-line 4094 --limit-request-fields 100 --limit-request-field_size 8190"

COPY . .

# The image ships the classifier the workers load: refuse to build one without it.
RUN test -s ml/artifacts/model.keras && test -s ml/artifacts/model_card.json

# Settings need a key and the site's address even to collect static files: throwaway ones, for
# this step only (variables on a RUN line do not reach the running container).
RUN SECRET_KEY=collectstatic-only-never-used-at-runtime SITE_URL=https://collectstatic.invalid \
    python manage.py collectstatic --noinput \
 && mkdir -p /data/media /data/var \
 && chown -R molesite:molesite /data

USER molesite
EXPOSE 8000

# Container platforms set PORT. docker-compose.yml's one-shot migrate service runs the
# migrations before this starts.
CMD ["sh", "-c", "exec gunicorn molesite.wsgi:application --bind 0.0.0.0:${PORT}"]
