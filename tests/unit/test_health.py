"""GET /healthz: 200 when the database, the broker and the model artifact are usable, 503 when
one is not. Failures are real ones: connections to closed ports, missing files."""

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import environ
import pytest
from django.db import connections
from django.db.utils import ConnectionHandler
from django.utils import timezone

from diagnoses.models import Diagnosis
from diagnoses.services import LOST_QUEUED_AFTER
from ml import CARD_FILENAME, CLASSES, FORMAT_VERSION, MODEL_FILENAME
from ml.artifact import save_card, sha256_file
from molesite import health
from molesite.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A local TCP port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_artifact(folder: Path, version="2024.1-test", format_version=FORMAT_VERSION) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILENAME).write_bytes(os.urandom(4096))  # the web process never opens it
    save_card(
        {
            "format_version": format_version,
            "version": version,
            "input_size": {"width": 96, "height": 72},
            "classes": list(CLASSES),
            "temperature": 1.0,
            "thresholds": {"medium": 0.1, "high": 0.3},
            "model_sha256": sha256_file(folder / MODEL_FILENAME),
        },
        folder,
    )
    return folder


@pytest.fixture
def artifact(settings, tmp_path):
    settings.ML_MODEL_DIR = write_artifact(tmp_path / "model")
    return settings.ML_MODEL_DIR


@pytest.fixture
def unreachable_database():
    """Swap the default connection for a Postgres one on a closed port, then put it back."""
    url = f"postgres://molesite@127.0.0.1:{closed_port()}/molesite"
    broken = ConnectionHandler({"default": environ.Env.db_url_config(url)})["default"]
    original = connections["default"]
    connections["default"] = broken
    yield
    broken.close()
    connections["default"] = original


@pytest.fixture
def unreachable_redis(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "broker_url", f"redis://127.0.0.1:{closed_port()}/0")


@pytest.fixture
def silent_redis(monkeypatch):
    """A broker that accepts the connection (the kernel completes it for a listening socket)
    and then never answers: only the probe's own socket timeouts end the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # never accept()ed, never read from, never written to
        port = listener.getsockname()[1]
        monkeypatch.setitem(celery_app.conf, "broker_url", f"redis://127.0.0.1:{port}/0")
        yield


def get_health(client):
    response = client.get("/healthz")
    return response, response.json()


@pytest.mark.django_db
def test_it_reports_ok_with_the_model_version_when_everything_is_up(client, artifact):
    response, body = get_health(client)
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert body["model"] == {"ok": True, "loaded": True, "version": "2024.1-test", "format_version": FORMAT_VERSION}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_it_answers_probes_whatever_the_host_header(client, artifact, settings):
    settings.ALLOWED_HOSTS = ["molesite.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz", HTTP_HOST="172.18.0.5:8000").status_code == 200
    assert client.get("/", HTTP_HOST="172.18.0.5:8000").status_code == 400


@pytest.mark.django_db
def test_it_says_503_when_the_database_is_unreachable(client, artifact, unreachable_database):
    response, body = get_health(client)
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["database"] == {"ok": False, "vendor": "postgresql", "error": "OperationalError"}
    assert body["broker"]["ok"] and body["model"]["ok"]


@pytest.mark.django_db
def test_it_says_503_when_the_redis_broker_is_unreachable(client, artifact, unreachable_redis):
    response, body = get_health(client)
    assert response.status_code == 503
    assert body["broker"]["ok"] is False
    assert body["broker"]["transport"] == "redis"
    assert body["database"]["ok"] and body["model"]["ok"]


# A guard against a hang, generous enough for a loaded machine: the probe's own timeouts end
# the wait within seconds. How fast the probe answers is measured in bench/, not asserted here.
@pytest.mark.timeout(120)
@pytest.mark.django_db
def test_it_says_503_when_the_redis_broker_accepts_the_connection_but_never_answers(
        client, artifact, silent_redis):
    response, body = get_health(client)
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["broker"]["ok"] is False and body["broker"]["transport"] == "redis"
    assert body["database"]["ok"] and body["model"]["ok"]


@pytest.mark.django_db
def test_it_says_503_when_the_filesystem_broker_folder_is_gone(client, artifact, monkeypatch, tmp_path):
    options = dict(celery_app.conf.broker_transport_options)
    options["data_folder_in"] = options["data_folder_out"] = str(tmp_path / "missing")
    monkeypatch.setitem(celery_app.conf, "broker_url", "filesystem://")
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", options)
    response, body = get_health(client)
    assert response.status_code == 503
    assert body["broker"] == {"ok": False, "transport": "filesystem", "error": "OSError"}


@pytest.mark.django_db
def test_it_says_503_when_the_model_file_is_missing(client, artifact):
    (artifact / MODEL_FILENAME).unlink()
    response, body = get_health(client)
    assert response.status_code == 503
    assert body["model"]["loaded"] is False and body["model"]["version"] is None


@pytest.mark.django_db
def test_it_says_503_when_the_model_format_version_differs(client, settings, tmp_path):
    settings.ML_MODEL_DIR = write_artifact(tmp_path / "old", format_version=FORMAT_VERSION - 1)
    response, body = get_health(client)
    assert response.status_code == 503
    assert body["model"]["error"] == "ModelArtifactError"


@pytest.mark.django_db
def test_it_says_503_when_the_model_card_is_malformed(client, artifact):
    """A card the workers could not use (here: no "high" threshold) is no loaded model."""
    card = json.loads((artifact / CARD_FILENAME).read_text())
    card["thresholds"] = {"medium": 0.1}
    save_card(card, artifact)

    response, body = get_health(client)

    assert response.status_code == 503
    assert body["model"]["loaded"] is False and body["model"]["error"] == "ModelArtifactError"


@pytest.mark.django_db
def test_it_notices_a_model_file_replaced_by_a_corrupt_one(client, artifact):
    assert get_health(client)[0].status_code == 200
    (artifact / MODEL_FILENAME).write_bytes(b"truncated")
    assert get_health(client)[0].status_code == 503


def queued_for(owner, minutes):
    """A photo waiting for a worker since `minutes` ago (its upload or re-run), its task sent then."""
    diagnosis = Diagnosis.objects.create(owner=owner, image="images/x.jpg", thumbnail="thumbnails/x.jpg",
                                         sha256="0" * 64)
    then = timezone.now() - timedelta(minutes=minutes)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(queued_at=then, sent_at=then)
    return diagnosis


@pytest.mark.django_db
def test_it_reports_how_many_photos_wait_and_for_how_long(client, artifact, owner):
    limit = LOST_QUEUED_AFTER.total_seconds()
    queued_for(owner, 2)
    queued_for(owner, LOST_QUEUED_AFTER.total_seconds() / 60 - 1)

    response, body = get_health(client)

    assert response.status_code == 200, body
    assert body["queue"]["ok"] and body["queue"]["queued"] == 2
    assert limit - 60 <= body["queue"]["oldest_queued_s"] < limit


@pytest.mark.django_db
def test_it_reports_a_photo_waiting_longer_than_the_lost_photo_check_allows(client, artifact, owner,
                                                                            caplog):
    """The workers are down or stuck: nothing else in /healthz would tell. Still a 200: this
    instance serves pages, and a load balancer must not drop the site for a stuck worker."""
    queued_for(owner, 1)
    queued_for(owner, LOST_QUEUED_AFTER.total_seconds() / 60 + 1)

    response, body = get_health(client)

    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["queue"]["ok"] is False and body["queue"]["error"] == "QueueStalled"
    assert body["queue"]["queued"] == 2
    assert body["queue"]["oldest_queued_s"] > LOST_QUEUED_AFTER.total_seconds()
    assert body["database"]["ok"] and body["broker"]["ok"] and body["model"]["ok"]
    assert "healthz: queue unavailable: QueueStalled" in caplog.text


@pytest.mark.django_db
def test_a_photo_the_lost_photo_check_sent_again_still_counts_its_wait_from_its_upload(
        client, artifact, owner, monkeypatch, django_capture_on_commit_callbacks):
    """The workers are down or far too few: the check sends the photo to them again, and it still
    waits. Its wait, not the time since that resend, is what /healthz reports: else each resend
    would start it again and the queue would read ok for most of every LOST_QUEUED_AFTER."""
    from diagnoses import tasks
    from diagnoses.services import diagnoses_recover_lost

    monkeypatch.setattr(tasks.classify_diagnosis, "delay", lambda pk: None)  # nobody takes it
    minutes = LOST_QUEUED_AFTER.total_seconds() / 60 + 1
    queued_for(owner, minutes)
    with django_capture_on_commit_callbacks(execute=True):
        assert diagnoses_recover_lost()["resent"] == 1

    response, body = get_health(client)

    assert response.status_code == 200
    assert body["queue"]["ok"] is False and body["queue"]["error"] == "QueueStalled"
    assert body["queue"]["queued"] == 1 and body["queue"]["oldest_queued_s"] >= minutes * 60 - 1


@pytest.mark.django_db
def test_it_counts_neither_finished_nor_running_photos_as_queued(client, artifact, owner):
    for status in (Diagnosis.Status.DONE, Diagnosis.Status.RUNNING):  # a worker's, or the lost-photo check's
        Diagnosis.objects.filter(pk=queued_for(owner, 60).pk).update(status=status)

    response, body = get_health(client)

    assert response.status_code == 200
    assert body["queue"] == {"ok": True, "queued": 0, "oldest_queued_s": None}


def test_it_checks_the_model_without_importing_tensorflow(tmp_path):
    """The web process must never start a TensorFlow runtime (it would not survive forking)."""
    model_dir = write_artifact(tmp_path / "model")
    code = (
        "import sys, django; django.setup();"
        "from molesite.health import check_model; print(check_model()['ok']);"
        "print('tensorflow' in sys.modules)"
    )
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50),
           "ML_MODEL_DIR": str(model_dir), "VAR_DIR": str(tmp_path / "var"), "LOG_LEVEL": "ERROR"}
    env["DJANGO_SETTINGS_MODULE"] = "molesite.settings"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.django_db
def test_it_does_not_leak_connection_details(client, artifact, unreachable_redis, unreachable_database):
    body = json.dumps(client.get("/healthz").json())
    assert "127.0.0.1" not in body and "molesite@" not in body


class RecordingPostgres:
    """A Postgres connection as check_database uses it: records the SQL, and whether it was
    sent within a transaction."""

    vendor, alias = "postgresql", "default"

    def __init__(self):
        self.in_transaction = False
        self.sent = []

    @contextlib.contextmanager
    def atomic(self, using):
        self.in_transaction = True
        yield
        self.in_transaction = False

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql):
        self.sent.append((sql, self.in_transaction))

    def fetchone(self):
        return (1,)


def test_it_bounds_the_postgres_query_by_a_statement_timeout_of_its_transaction(monkeypatch):
    """A server that accepts the query and never answers costs the probe 1 s, not forever; SET
    LOCAL ends with the transaction, so a reused connection keeps no timeout of the probe's."""
    connection = RecordingPostgres()
    monkeypatch.setattr(health, "connections", {"default": connection})
    monkeypatch.setattr(health, "transaction", SimpleNamespace(atomic=connection.atomic))

    assert health.check_database()["ok"]

    assert connection.sent == [("SET LOCAL statement_timeout = 1000", True), ("SELECT 1", True)]
