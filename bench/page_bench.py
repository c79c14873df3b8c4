"""What the benchmarks that render pages (bench_history.py, bench_queue.py) share: Django as
production runs it (setup_django: DEBUG off, so no SQL logged and no debug pages; a throwaway
SECRET_KEY, warnings only in the log, no .env read, everything written in a temporary folder
removed at exit), and measure, a call's queries and median time."""

import atexit
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def setup_django(database_url: str | None = None, **environment: str) -> str:
    """django.setup() on those settings; returns the temporary folder. database_url: a SQLite
    file in that folder unless given. environment: more settings, as environment variables."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    folder = tempfile.mkdtemp(prefix="molesite-bench-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.mkdir(f"{folder}/static")
    os.environ.update(
        VAR_DIR=folder,
        MEDIA_ROOT=f"{folder}/media",
        STATIC_ROOT=f"{folder}/static",  # empty: nothing collected (see STORAGES below)
        DATABASE_URL=database_url or f"sqlite:///{folder}/bench.sqlite3",
        REDIS_URL="",  # the embedded broker and an in-memory cache, in the temporary folder
        MOLESITE_ENV_FILE="",  # a production .env in the checkout would redirect to HTTPS, say
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),  # for this run only
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="testserver",  # the test client's host name
        SITE_URL="http://testserver",  # required with DEBUG off
        DJANGO_SETTINGS_MODULE="molesite.settings",
        **environment,
    )
    import django
    from django.conf import settings

    django.setup()
    # Without DEBUG, static URLs come from collectstatic's manifest, which a checkout lacks: plain
    # names instead, as in the tests (a lookup either way, nothing a benchmark measures).
    plain_static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": plain_static}
    return folder


def measure(action, runs: int, prepare=lambda: None) -> tuple[int, float, list]:
    """(queries, median ms, the queries' SQL) of action(); prepare() runs before each call,
    neither timed nor counted."""
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    prepare()
    # The capture logs queries as DEBUG would, for this one call only; each request clears that
    # log when it starts: start from an empty log so that the capture's bookkeeping holds.
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        action()
    # Read now: the capture reads the log again when asked, and the next request clears it.
    sql = [query["sql"] for query in queries]
    times = []
    for _ in range(runs):
        prepare()
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return len(sql), statistics.median(times), sql
