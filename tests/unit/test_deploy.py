"""Deployment files (parsed, since no Docker engine runs the tests) and the request size cap."""

import ast
import copy
import importlib.metadata
import json
import logging.config
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import environ
import pytest
import yaml
from django.conf import settings
from django.test import Client

from diagnoses.models import Diagnosis
from tests.conftest import reset_password_by_email

ROOT = Path(__file__).resolve().parents[2]
SHARED_VARIABLES = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "MEDIA_ROOT")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile():
    return (ROOT / "Dockerfile").read_text()


def command_line(service) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_it_defines_web_worker_mailer_beat_db_and_redis_each_with_a_healthcheck(compose):
    services = compose["services"]
    assert set(services) == {"migrate", "web", "worker", "mailer", "beat", "db", "redis"}
    assert services["db"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name, service in services.items():
        if name != "migrate":  # a one-shot job: it exits once done
            assert service["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_the_web_container_listens_on_the_port_compose_publishes(compose):
    """An exported PORT overrides .env's in compose's ${PORT}: were the container's PORT .env's,
    gunicorn and its health check would listen on one port while another is published."""
    web = compose["services"]["web"]
    assert web["environment"]["PORT"] == "${PORT:-8000}"
    assert web["ports"] == ["127.0.0.1:${PORT:-8000}:${PORT:-8000}"]


def test_it_calls_beat_healthy_while_its_record_of_runs_is_fresh(compose, tmp_path):
    """beat answers no ping: its healthcheck reads the age of the schedule file beat rewrites
    each time it queues a task (the lost-photo check, every 5 minutes)."""
    test = compose["services"]["beat"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]

    def healthy():
        run = subprocess.run([sys.executable, "-c", test[3]], env={**os.environ, "VAR_DIR": str(tmp_path)})
        return run.returncode == 0

    assert not healthy()  # beat never started
    record = tmp_path / "celerybeat-schedule.dat"
    record.write_bytes(b"entries")
    assert healthy()
    an_hour_ago = time.time() - 3600
    os.utime(record, (an_hour_ago, an_hour_ago))
    assert not healthy()
    assert settings.CELERY_BEAT_SCHEDULE_FILENAME.endswith("/celerybeat-schedule")
    assert compose["services"]["beat"]["healthcheck"]["interval"] == "60s"


def test_it_runs_migrations_then_gunicorn_on_port_from_the_environment(compose):
    services = compose["services"]
    assert command_line(services["migrate"]) == "python manage.py migrate --noinput"
    assert services["migrate"]["restart"] == "no"  # a one-shot job, run again by each `up`
    assert "command" not in services["web"]  # the image's CMD: gunicorn on ${PORT}
    assert services["web"]["ports"] == ["127.0.0.1:${PORT:-8000}:${PORT:-8000}"]


def test_it_starts_web_worker_mailer_and_beat_only_once_the_migrations_succeeded(compose):
    """Else a worker or beat starts on an old schema while web still migrates."""
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("web", "worker", "mailer", "beat"):
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


def test_it_bounds_the_wait_for_a_database_connection(compose):
    """libpq waits forever on a database that accepts and never answers (/healthz too)."""
    url = compose["services"]["web"]["environment"]["DATABASE_URL"]
    url = re.sub(r"\$\{[^}]*\}", "secret", url)  # compose's ${POSTGRES_PASSWORD:?...}
    assert environ.Env.db_url_config(url)["OPTIONS"] == {"connect_timeout": 3}


def postgres_options(url: str) -> dict:
    """settings.DATABASES["default"]["OPTIONS"] for DATABASE_URL=url, in a fresh process."""
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(__import__('json').dumps(settings.DATABASES['default']['OPTIONS']))")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DATABASE_URL": url},
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def test_it_turns_postgres_jit_off_beside_the_options_the_url_gives():
    """The review queue's ordering cost seconds of JIT compiling on Postgres (settings.py)."""
    assert postgres_options("postgres://u@db:5432/m?connect_timeout=3") == {
        "connect_timeout": 3, "options": "-c jit=off"}
    given = "postgres://u@db:5432/m?options=-c%20statement_timeout%3D5000"
    assert postgres_options(given) == {"options": "-c statement_timeout=5000 -c jit=off"}


def test_it_keeps_beats_record_of_runs_in_a_named_volume(compose, dockerfile):
    """A recreated beat remembers its last runs, so a daily run missed meanwhile is still sent."""
    var_dir = re.search(r"\bVAR_DIR=(\S+)", dockerfile).group(1)
    assert compose["services"]["beat"]["volumes"] == [f"beat:{var_dir}"]
    assert "beat" in compose["volumes"]


def test_it_runs_a_celery_worker_from_the_web_image(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert command_line(worker).startswith("celery -A molesite worker")
    assert worker["image"] == web["image"] and worker["build"] == web["build"] == "."


def consumed_queues(command: str) -> list | None:
    """The queues a `celery worker` command line consumes (-Q/--queues), None without -Q (every
    queue the settings declare)."""
    args = shlex.split(command)
    for i, arg in enumerate(args):
        if arg in ("-Q", "--queues"):
            return args[i + 1].split(",")
        if arg.startswith("--queues="):
            return arg.split("=", 1)[1].split(",")
    return None


def procfile() -> dict:
    return dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)


def test_the_workers_take_the_photos_only_and_the_mailer_the_emails_only(compose):
    """At the daily e-mails' hour the batches hold the mailer's one process, not a worker's:
    photos uploaded meanwhile are not shown as late (routes: test_mail_queue.py)."""
    worker, mailer = compose["services"]["worker"], compose["services"]["mailer"]
    assert consumed_queues(command_line(worker)) == [settings.CELERY_TASK_DEFAULT_QUEUE] == ["celery"]
    assert consumed_queues(command_line(mailer)) == ["mail"]
    assert settings.CELERY_TASK_ROUTES["diagnoses.tasks.send_photo_reminders"] == {"queue": "mail"}
    # every queue the settings declare (and route to) has a service consuming it
    declared = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    consumed = {*consumed_queues(command_line(worker)), *consumed_queues(command_line(mailer))}
    assert declared == routed | {"celery"} == consumed


def test_the_mailer_is_a_small_worker_from_the_web_image_with_the_same_settings(compose):
    web, worker, mailer = (compose["services"][name] for name in ("web", "worker", "mailer"))
    assert command_line(mailer).startswith("celery -A molesite worker ")
    assert "--beat" not in command_line(mailer)  # beat is its own service: exactly one
    assert " --concurrency=1 " in command_line(mailer)
    assert mailer["image"] == web["image"] and mailer["build"] == web["build"] == "."
    # EMAIL_URL and the rest from .env; the database, Redis and SECRET_KEY as the others'
    assert mailer["env_file"] == ".env" and mailer["environment"] == worker["environment"]
    assert mailer["restart"] == worker["restart"] == "unless-stopped"
    assert mailer["healthcheck"] == worker["healthcheck"]
    assert mailer["volumes"] == []  # its e-mails read no image


def test_make_runs_one_worker_takes_both_queues():
    """`make run` has one worker (with beat): it runs the photos and the e-mails alike."""
    assert consumed_queues(procfile()["worker"]) == ["celery", "mail"]


def test_it_tags_the_image_of_each_release_so_that_the_previous_one_stays(compose):
    """`latest` alone would be taken over by each build, leaving no image to roll back to."""
    for name in ("migrate", "web", "worker", "mailer", "beat"):
        assert compose["services"][name]["image"] == "molesite:${MOLESITE_VERSION:-latest}", name


def test_it_bounds_every_containers_log(compose):
    """Docker's default driver keeps a container's log in one file that grows until the disk is
    full: rotated here, and the same for every service."""
    for name, service in compose["services"].items():
        assert service["logging"] == {"driver": "local", "options": {"max-size": "50m", "max-file": "20"}}, name


def test_it_runs_one_celery_beat_from_the_web_image_and_make_run_does_too(compose):
    web, beat = compose["services"]["web"], compose["services"]["beat"]
    assert command_line(beat).startswith("celery -A molesite beat")
    assert beat["image"] == web["image"] and beat["environment"] == web["environment"]
    assert "deploy" not in beat and "scale" not in beat  # one scheduler, or each run is queued twice
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert procfile["worker"].startswith("MOLESITE_POOL_IGNORE_SIGTERM=1 celery -A molesite worker --beat ")


def test_make_run_lets_the_environment_win_over_a_production_env_file(tmp_path):
    """The deploy steps copy .env.example (DEBUG=false) to .env; honcho, which `make run` starts,
    must not put that file's values over the environment's (DEBUG=true)."""
    recipe = re.search(r"^run:.*\n(?:\t.*\n)*?\t.*/honcho (start .*)$", (ROOT / "Makefile").read_text(), re.M)
    args = recipe.group(1).replace("$(PORT)", "8000").split()
    (tmp_path / "Procfile").write_text('show: echo "DEBUG=$DEBUG"\n')
    (tmp_path / ".env").write_text("DEBUG=false\n")

    honcho = Path(sys.executable).with_name("honcho")
    out = subprocess.run([str(honcho), *args], cwd=tmp_path, env={**os.environ, "DEBUG": "true"},
                         capture_output=True, text=True, timeout=60)

    assert "DEBUG=true" in out.stdout and "DEBUG=false" not in out.stdout, out.stdout + out.stderr


def test_it_gives_web_and_worker_the_same_settings_and_image_storage(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert web["env_file"] == worker["env_file"] == ".env"
    for name in SHARED_VARIABLES:
        assert web["environment"][name] == worker["environment"][name], name
    assert web["environment"]["DATABASE_URL"].startswith("postgres://molesite:${POSTGRES_PASSWORD")
    assert "@db:5432/molesite?" in web["environment"]["DATABASE_URL"]
    assert web["environment"]["REDIS_URL"].startswith("redis://redis:6379/")
    media = f"media:{web['environment']['MEDIA_ROOT']}"
    assert media in web["volumes"] and media in worker["volumes"]


def test_it_keeps_the_database_and_images_in_named_volumes(compose):
    assert {"pgdata", "media"} <= set(compose["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in compose["services"]["db"]["volumes"]
    db_env = compose["services"]["db"]["environment"]
    assert db_env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_it_builds_a_slim_python_311_image_that_runs_as_a_non_root_user(dockerfile):
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r'^CMD .*gunicorn molesite\.wsgi:application --bind 0\.0\.0\.0:\$\{PORT\}', dockerfile, re.M)


def test_it_installs_dependencies_before_copying_the_code(dockerfile):
    """So that a code change does not reinstall TensorFlow; and within constraints.txt, the
    versions `make install` gets, so that the image runs what the tests passed with. The run-time
    packages only: the test tools, JAX and honcho (requirements-dev.txt) stay out of the image."""
    steps = [line for line in dockerfile.splitlines() if line.startswith(("COPY", "RUN pip"))]
    assert steps[:3] == [
        "COPY requirements.txt constraints.txt ./",
        "RUN pip install -r requirements.txt -c constraints.txt",
        "COPY . .",
    ]
    instructions = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    assert not any("requirements-dev" in line for line in instructions)
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not {"constraints.txt", "requirements.txt"} & ignored


def _pins(path: Path) -> dict:
    """NAME==VERSION lines (extras dropped, names normalised as pip does); pip options such as
    `-r requirements.txt` skipped."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, version = line.split("==")
            pins[_normalised(name.split("[")[0])] = version
    return pins


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# In requirements-dev.txt, never in the image: test tools, honcho (`make run`), JAX (training
# under KERAS_BACKEND=jax). What the image runs (its CMD, docker-compose.yml's commands, the
# settings' apps and middleware, the database driver) is in requirements.txt.
DEV_ONLY = {"pytest", "pytest-django", "pytest-env", "pytest-timeout", "hypothesis", "schemathesis",
            "playwright", "axe-playwright-python", "honcho", "jax", "jaxlib"}
RUN_TIME = {"gunicorn", "celery", "whitenoise", "drf-spectacular-sidecar", "psycopg", "redis",
            "tensorflow-cpu", "keras", "numpy", "scipy", "h5py", "pillow", "pillow-heif",
            "scikit-learn"}


def test_make_install_pins_every_package_and_the_constraints_agree_with_the_requirements():
    """A fresh `make install` gets the known-good versions of every package, not only of those
    the requirement files name: the code imports keras, numpy and others that TensorFlow or the
    test tools ask for only as ranges. It installs requirements-dev.txt, which is
    requirements.txt (the image's) plus the tools that only development and tests need."""
    makefile = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(BIN\)/\.installed: (.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert {"requirements.txt", "requirements-dev.txt", "constraints.txt"} <= set(stamp.group(1).split())
    assert "-r requirements-dev.txt -c constraints.txt" in stamp.group(2)

    dev_lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    assert [line for line in dev_lines if line][0] == "-r requirements.txt"
    required, dev = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements-dev.txt")
    constrained = _pins(ROOT / "constraints.txt")
    assert not set(required) & set(dev), "pinned in both files"
    for pins in (required, dev):
        assert {name: constrained.get(name) for name in pins} == pins
    assert RUN_TIME <= set(required), RUN_TIME - set(required)
    assert DEV_ONLY <= set(dev), DEV_ONLY - set(dev)
    assert "pyyaml" in dev  # imported by the tests; the image gets it through drf-spectacular


def _third_party_imports(files) -> dict:
    """Top-level names of the absolute imports in `files` that are neither the standard library's
    nor this project's, each with a file that imports it."""
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in (n.split(".")[0] for n in names):
                # this project's: a package or module at the root, or beside a script (bench/)
                local = any((folder / name).is_dir() or (folder / f"{name}.py").exists()
                            for folder in (ROOT, path.parent))
                if not local and name not in sys.stdlib_module_names:
                    found.setdefault(name, path.relative_to(ROOT))
    return found


def _distributions(module: str) -> set:
    return {_normalised(d) for d in importlib.metadata.packages_distributions().get(module, ())}


def _python_files(*, in_image: bool):
    """The project's Python files that the image holds (.dockerignore keeps tests/, bench/ and
    the like out), or those it does not."""
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for path in ROOT.rglob("*.py"):
        top = path.relative_to(ROOT).parts[0]
        if top.startswith(".") or top in {"var", "staticfiles", "node_modules"}:
            continue
        if (top not in ignored) == in_image:
            yield path


def test_the_image_holds_every_package_its_code_imports():
    """The code in the image imports only what requirements.txt pins (and what those pull in):
    JAX alone is left to requirements-dev.txt, since ml/ imports it only under
    KERAS_BACKEND=jax, which the image never sets (on TensorFlow, ml/__init__.py marks it absent)."""
    required, dev = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements-dev.txt")
    constrained = _pins(ROOT / "constraints.txt")
    imports = _third_party_imports(_python_files(in_image=True))
    assert {"django", "celery", "keras", "tensorflow", "numpy", "PIL"} <= set(imports)
    dev_imports = {}
    for module, where in imports.items():
        dists = _distributions(module)
        assert dists & set(constrained), f"{module} ({where}): from no package constraints.txt pins"
        if not dists & set(required):
            dev_imports[module] = where
    assert set(dev_imports) <= {"jax"}, dev_imports
    assert all(str(where).startswith("ml/") for where in dev_imports.values()), dev_imports
    assert _distributions("jax") <= set(dev)


def test_every_package_the_tests_and_benchmarks_import_is_pinned():
    """`make install` gives the tests (and bench/) all they import, at a pinned version."""
    pinned = set(_pins(ROOT / "requirements.txt")) | set(_pins(ROOT / "requirements-dev.txt"))
    imports = _third_party_imports(_python_files(in_image=False))
    assert {"pytest", "hypothesis", "yaml", "schemathesis", "playwright"} <= set(imports)
    unpinned = {module: where for module, where in imports.items() if not _distributions(module) & pinned}
    assert not unpinned, unpinned


def test_make_install_makes_the_venv_again_when_its_first_creation_failed(tmp_path):
    """`python3.11 -m venv` failing at ensurepip (Debian without python3.11-venv) leaves a
    python without pip: install must not take that for a venv, or make stays broken."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = getattr(sys, "_base_executable", sys.executable)
    dry_run = subprocess.run(
        ["make", "-n", "-s", "install", f"VENV={venv}", f"PYTHON={python}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    make_venv, install = dry_run.split(f"\n{venv}/bin/python -m pip install ", 1)
    assert "-q -r requirements-dev.txt -c constraints.txt" in install.splitlines()[0]

    subprocess.run(["bash", "-c", make_venv], cwd=tmp_path, check=True, timeout=300)

    pip = subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"], capture_output=True)
    assert pip.returncode == 0, pip.stderr


def test_make_evaluate_scores_the_validation_split_only():
    """The rest of the data folder is what the model was trained on."""
    recipe = re.search(r"^evaluate:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert " ml evaluate " in recipe and "--split val" in recipe


def test_it_ships_the_model_and_collects_static_files_without_a_real_secret(dockerfile):
    assert "test -s ml/artifacts/model.keras && test -s ml/artifacts/model_card.json" in dockerfile
    assert "--limit-request-line" in dockerfile and "--limit-request-field_size" in dockerfile


def dockerfile_env(dockerfile) -> dict:
    """The variables the image's ENV lines set."""
    env = {}
    for instruction in re.findall(r"^ENV ((?:.*\\\n)*.*)$", dockerfile, re.M):
        env.update(part.split("=", 1) for part in shlex.split(instruction.replace("\\\n", " ")))
    return env


def test_the_images_collectstatic_step_runs_with_only_what_the_dockerfile_gives_it(dockerfile, tmp_path):
    """The build has no .env: a setting the build step does not supply (SITE_URL once) fails the
    build, which no other check here runs."""
    step = re.search(r"^RUN ((?:.*\\\n)*?.*collectstatic --noinput)", dockerfile, re.M).group(1)
    words = shlex.split(step.replace("\\\n", " "))
    given = dict(word.split("=", 1) for word in words[:words.index("python")])
    env = {**dockerfile_env(dockerfile), **given, "PATH": os.environ["PATH"], "MOLESITE_ENV_FILE": "",
           "VAR_DIR": str(tmp_path / "var"), "MEDIA_ROOT": str(tmp_path / "media")}
    assert "SECRET_KEY" in given and "DEBUG" not in env  # production's hashed manifest, a throwaway key

    done = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--dry-run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_it_keeps_secrets_and_local_state_out_of_the_image_but_not_the_model():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert {".env", ".git", ".venv", "var"} <= set(ignored)
    assert not any(line and not line.startswith("#") and line.startswith(("ml", "**/*.keras")) for line in ignored)


# --- the request size cap -----------------------------------------------------------------


class Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


@pytest.mark.parametrize("path", ["/diagnoses/new/", "/api/v1/diagnoses/", "/accounts/login/"])
def test_it_refuses_an_oversized_body_before_reading_it(client, settings, path):
    response = client.generic(
        "POST", path, CONTENT_LENGTH=str(settings.MAX_REQUEST_BYTES + 1),
        CONTENT_TYPE="multipart/form-data; boundary=x", **{"wsgi.input": Unreadable()},
    )
    assert response.status_code == 413


def test_it_answers_json_under_the_api_and_text_elsewhere(client, settings):
    too_big = {"CONTENT_LENGTH": str(settings.MAX_REQUEST_BYTES + 1), "wsgi.input": Unreadable()}
    api = client.generic("POST", "/api/v1/diagnoses/", **too_big)
    assert api["Content-Type"] == "application/json"
    assert api.json() == {"detail": "Request body too large: the limit is 25 MB. Photos must be at most 20 MB."}
    page = client.generic("POST", "/diagnoses/new/", **too_big)
    assert page["Content-Type"].startswith("text/plain")
    assert "at most 20 MB" in page.content.decode()


@pytest.mark.django_db
def test_it_refuses_a_real_upload_over_the_limit_and_accepts_one_under_it(owner_client, settings, jpeg_bytes):
    settings.MAX_REQUEST_BYTES = 1024 * 1024
    padding = b"\0" * (1024 * 1024)
    big = owner_client.post("/diagnoses/new/", {"image": _upload(jpeg_bytes + padding), "new_mole_name": "Back"})
    assert big.status_code == 413
    assert not Diagnosis.objects.exists()
    small = owner_client.post("/diagnoses/new/", {"image": _upload(jpeg_bytes), "new_mole_name": "Back"})
    assert small.status_code == 302
    assert Diagnosis.objects.count() == 1


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("mole.jpg", data, content_type="image/jpeg")


def test_it_sends_a_content_security_policy_that_allows_only_the_sites_own_files(client):
    response = client.get("/")

    policy = dict(
        directive.strip().split(" ", 1) for directive in response["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == policy["object-src"] == "'none'"
    assert policy["form-action"] == "'self'"


@pytest.mark.django_db
def test_it_logs_who_made_each_request(client, owner_client, owner_api, owner, caplog):
    caplog.set_level("INFO", logger="molesite.request")

    owner_client.get("/diagnoses/")  # the site's session
    owner_api.get("/api/v1/diagnoses/")  # an API token
    Client().get("/")  # nobody signed in
    Client().get("/static/css/molesite.css")  # answered before there is a user

    lines = [(record.path, record.user_id) for record in caplog.records if record.name == "molesite.request"]
    assert lines == [
        ("/diagnoses/", owner.pk),
        ("/api/v1/diagnoses/", owner.pk),
        ("/", None),
        ("/static/css/molesite.css", None),
    ]


@pytest.mark.django_db
def test_the_request_log_leaves_a_share_token_out_without_its_slash_too(caplog):
    caplog.set_level("INFO", logger="molesite.request")
    token = "pWXs_N6FZCFR3jJouTvbvB0jHAySqEpHwkIqqyZNJXQ"

    assert Client().get(f"/shared/{token}").status_code == 301  # CommonMiddleware adds the slash

    lines = [(record.path, record.status) for record in caplog.records if record.name == "molesite.request"]
    assert lines == [("/shared/<token>", 301)]
    assert not any(token in record.getMessage() for record in caplog.records)


@pytest.mark.django_db
def test_the_request_log_leaves_a_password_reset_token_out(client, owner, mailoutbox, caplog):
    caplog.set_level("INFO", logger="molesite.request")

    reset_password_by_email(client, mailoutbox, "patient@example.com", "a fresh pass phrase")

    uidb64, token = re.search(r"/password/reset/([^/]+)/([^/]+)/", mailoutbox[0].body).groups()
    paths = [record.path for record in caplog.records if record.name == "molesite.request"]
    assert f"/accounts/password/reset/{uidb64}/<token>/" in paths
    assert f"/accounts/password/reset/{uidb64}/set-password/" in paths  # says nothing: kept
    assert not any(token in record.getMessage() or token in getattr(record, "path", "") for record in caplog.records)


@pytest.mark.parametrize("formatter", ["plain", "json"])
def test_no_log_line_holds_a_link_token(formatter):
    """Runserver's request lines and django.request's warnings go through the same formatters."""
    # a copy: configuring a formatter pops its "()" from the dict it is given
    format_line = logging.config.DictConfigurator(settings.LOGGING).configure_formatter(
        copy.deepcopy(settings.LOGGING["formatters"][formatter])).format
    share, reset = "pWXs_N6FZCFR3jJouTvbvB0jHAySqEpHwkIqqyZNJXQ", "cjz1kq-0e6a7f3c9d1b2a4e5f60718293a4b5c6"
    lines = {
        f'"GET /shared/{share} HTTP/1.1" 301 0': '"GET /shared/<token> HTTP/1.1" 301 0',
        f'"GET /shared/{share}/files/image/ HTTP/1.1" 200 5': '"GET /shared/<token>/files/image/ HTTP/1.1" 200 5',
        f'"GET /accounts/password/reset/MQ/{reset}/ HTTP/1.1" 302 0':
            '"GET /accounts/password/reset/MQ/<token>/ HTTP/1.1" 302 0',
        '"GET /accounts/password/reset/MQ/set-password/ HTTP/1.1" 200 9':
            '"GET /accounts/password/reset/MQ/set-password/ HTTP/1.1" 200 9',
        '"GET /accounts/password/reset/done/ HTTP/1.1" 200 9': '"GET /accounts/password/reset/done/ HTTP/1.1" 200 9',
        f'"GET /accounts/email/confirm/{share}/ HTTP/1.1" 302 0': '"GET /accounts/email/confirm/<token>/ HTTP/1.1" 302 0',
    }
    for line, redacted in lines.items():
        record = logging.LogRecord("django.server", logging.INFO, "", 0, "%s", (line,), None)
        formatted = format_line(record)
        assert share not in formatted and reset not in formatted, formatted
        assert redacted in formatted if formatter == "plain" else json.dumps(redacted)[1:-1] in formatted
