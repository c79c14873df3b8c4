"""GET /healthz: can this instance serve? 200 when the database, the broker and the model
artifact are all usable, 503 otherwise. Cheap enough to be probed every few seconds, and fast
when something is down (no retries, ~1 s timeouts). It also reports the queue (not ok when a
photo has waited for its analysis longer than the lost-photo check allows), for a monitor to
alert on; a stalled queue is the workers' failure, not this instance's, so it does not make the
answer a 503 (a load balancer or web's healthcheck would take the whole site down with it).

The model is checked from its card and file, never by importing TensorFlow in the web
process. Errors are reported by class name only; their details go to the log, not to an
unauthenticated caller.
"""

import functools
import logging
import os
import time
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Count, Min
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from diagnoses.models import Diagnosis
from diagnoses.services import LOST_QUEUED_AFTER
from ml import CARD_FILENAME, MODEL_FILENAME
from ml.artifact import read_card
from ml.errors import ModelArtifactError

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 1.0


def _failed(part: str, exc: Exception, **fields) -> dict:
    logger.warning("healthz: %s unavailable: %s: %s", part, type(exc).__name__, exc)
    return {"ok": False, **fields, "error": type(exc).__name__}


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _select_one(connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _bounded(connection, query):
    """query()'s answer, on Postgres within TIMEOUT_SECONDS of the server's time. Connecting is
    bounded by DATABASE_URL's ?connect_timeout= (docker-compose.yml)."""
    if connection.vendor != "postgresql":
        # Not in a transaction on SQLite: its IMMEDIATE transactions take the write lock.
        return query()
    # SET LOCAL ends with the transaction, so a reused connection keeps no timeout of ours.
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {int(TIMEOUT_SECONDS * 1000)}")
        return query()


def check_database() -> dict:
    started = time.monotonic()
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        _bounded(connection, lambda: _select_one(connection))
    except Exception as exc:  # any driver's error means "down"
        return _failed("database", exc, vendor=connection.vendor)
    return {"ok": True, "vendor": connection.vendor, "ms": _elapsed_ms(started)}


def _check_broker_folders(transport_options: dict) -> None:
    """kombu's filesystem transport "connects" without touching the disk: check its folders."""
    keys = ["data_folder_in", "data_folder_out"]
    if transport_options.get("store_processed"):
        keys.append("processed_folder")
    for key in keys:
        folder = transport_options.get(key)
        if not folder or not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise OSError(f"broker folder {key}={folder!r} is missing or not writable")


def check_broker() -> dict:
    from .celery import app  # the configured Celery app, as the web process queues with it

    started = time.monotonic()
    quick = {"socket_connect_timeout": TIMEOUT_SECONDS, "socket_timeout": TIMEOUT_SECONDS}
    transport = None
    try:
        with app.connection_for_write(transport_options=quick) as conn:
            transport = conn.transport.driver_type
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=TIMEOUT_SECONDS)
            conn.default_channel  # opening a channel is what talks to the server (Redis: PING)
            if transport == "filesystem":
                _check_broker_folders(conn.transport_options)
    except Exception as exc:  # kombu, redis-py and OS errors alike
        return _failed("broker", exc, transport=transport)
    return {"ok": True, "transport": transport, "ms": _elapsed_ms(started)}


@functools.lru_cache(maxsize=4)
def _card(model_dir: str, stamp: tuple) -> dict:
    # Cached per (mtime, size) of the two files: read_card hashes the whole model file.
    return read_card(model_dir)


def check_model() -> dict:
    """`loaded` means the artifact the workers load is present, intact, of this code's format and
    with a well-formed card (ml.artifact.read_card)."""
    model_dir = Path(settings.ML_MODEL_DIR)
    try:
        stamp = tuple(
            (stat.st_mtime_ns, stat.st_size)
            for stat in (os.stat(model_dir / CARD_FILENAME), os.stat(model_dir / MODEL_FILENAME))
        )
        card = _card(str(model_dir), stamp)
    except (OSError, ModelArtifactError) as exc:
        return _failed("model", exc, loaded=False, version=None)
    return {"ok": True, "loaded": True, "version": card["version"], "format_version": card["format_version"]}


class QueueStalled(Exception):
    """A photo has waited longer than the workers should ever take to start on it."""


def check_queue() -> dict:
    """How many photos wait for a worker, and how long the one queued longest has waited, in
    seconds since its queued_at: its upload or its re-run. The lost-photo check sending it to the
    workers again, or queuing it again after its worker died, leaves that (Diagnosis.queued_at),
    so that a backlog the workers never catch up with reads as the wait it is. Not ok past
    LOST_QUEUED_AFTER, the limit of that check: the workers are down, stuck, or far too few for
    the uploads."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        # The few queued rows, through diagnosis_queue_idx (status first): cheap on every probe.
        found = _bounded(connection, lambda: Diagnosis.objects.filter(status=Diagnosis.Status.QUEUED).aggregate(
            queued=Count("pk"), oldest=Min("queued_at")))
    except Exception as exc:  # any driver's error, as in check_database
        return _failed("queue", exc, queued=None, oldest_queued_s=None)
    waited = round((timezone.now() - found["oldest"]).total_seconds()) if found["oldest"] else None
    if waited is not None and waited > LOST_QUEUED_AFTER.total_seconds():
        stalled = QueueStalled(f"a photo has waited {waited} s, over {LOST_QUEUED_AFTER}: are the workers up?")
        return _failed("queue", stalled, queued=found["queued"], oldest_queued_s=waited)
    return {"ok": True, "queued": found["queued"], "oldest_queued_s": waited}


@never_cache
def healthz(request):
    database = check_database()
    # Read from the database: not asked again of one that has just failed (another connect timeout).
    queue = check_queue() if database["ok"] else {"ok": False, "queued": None, "oldest_queued_s": None,
                                                  "error": database["error"]}
    parts = {"database": database, "broker": check_broker(), "model": check_model()}
    healthy = all(part["ok"] for part in parts.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", **parts, "queue": queue},
                        status=200 if healthy else 503)
