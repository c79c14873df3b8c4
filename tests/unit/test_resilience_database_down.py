"""The database drops the worker's connection (a restart, a failover): the classification is
retried (TransientClassificationError), its photo back in the queue with the try uncounted,
rather than the raw error escaping and the row left "running" for the sweeper.

A dropped connection is played by failing every query until the connection is closed, as a
psycopg connection the server closed does; the tests run outside a transaction, as a worker."""

from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection

from diagnoses import services
from diagnoses.models import Diagnosis

pytestmark = pytest.mark.django_db(transaction=True)


class DroppedConnection:
    """Every query fails while `dropped`; connection.close() (Django opens a new one on the next
    query) ends that, unless the database is `down` too."""

    def __init__(self, monkeypatch):
        self.dropped = self.down = False
        close = connection.close

        def close_and_reconnect():
            self.dropped = self.down
            close()

        monkeypatch.setattr(connection, "close", close_and_reconnect)

    def __call__(self, execute, sql, params, many, context):
        if self.dropped:
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    @contextmanager
    def installed(self):
        with connection.execute_wrapper(self):
            yield


@pytest.fixture
def database(monkeypatch):
    return DroppedConnection(monkeypatch)


@pytest.fixture
def queued(owner, make_diagnosis, monkeypatch):
    monkeypatch.setattr(services, "_explain", lambda image_bytes: (None, b"png"))
    return make_diagnosis(owner, status="queued")


def test_a_connection_dropped_while_the_result_is_stored_puts_the_photo_back_in_the_queue(
        queued, database, monkeypatch):
    def store_result(diagnosis, prediction, heatmap_png):
        database.dropped = True
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "_store_result", store_result)
    with database.installed(), pytest.raises(services.TransientClassificationError):
        services.diagnosis_classify(diagnosis_id=queued.pk)

    queued.refresh_from_db()
    # queued for the task's retry, and the lost try not counted against MAX_ORPHANED_ATTEMPTS
    assert (queued.status, queued.started_at, queued.attempts) == (Diagnosis.Status.QUEUED, None, 0)


def test_a_database_still_down_after_the_drop_is_retried_all_the_same(queued, database, monkeypatch):
    def store_result(diagnosis, prediction, heatmap_png):
        database.dropped = database.down = True  # reconnecting fails too
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "_store_result", store_result)
    with database.installed(), pytest.raises(services.TransientClassificationError):
        services.diagnosis_classify(diagnosis_id=queued.pk)

    # could not be given back: left running, for diagnoses_recover_lost
    assert Diagnosis.objects.get(pk=queued.pk).status == Diagnosis.Status.RUNNING


def test_a_database_down_at_the_claim_is_retried_and_leaves_the_photo_queued(queued, database):
    database.dropped = True
    with database.installed(), pytest.raises(services.TransientClassificationError):
        services.diagnosis_classify(diagnosis_id=queued.pk)

    assert not database.dropped  # the dead connection was closed: the retry opens a new one
    queued.refresh_from_db()
    assert (queued.status, queued.attempts) == (Diagnosis.Status.QUEUED, 0)
