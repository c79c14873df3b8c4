"""A Redis that accepts the broker's connection and then never answers: queueing a task must give
up (kombu's OperationalError, which the upload's robust on_commit logs) instead of holding the
request until gunicorn kills it. The broker's socket timeouts in settings decide this."""

import socket
import threading

import pytest
from celery import Celery
from django.conf import settings
from kombu.exceptions import OperationalError


@pytest.fixture
def silent_redis():
    """A TCP server on a free port that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def accept_forever():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:  # closed at the end of the test
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()
    for conn in accepted:
        conn.close()


def test_queueing_a_task_on_a_broker_that_never_answers_gives_up(silent_redis):
    app = Celery("hung-broker", broker=silent_redis)
    app.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    outcome = []

    def send():
        try:
            app.send_task("diagnoses.tasks.classify_diagnosis", args=("0",))
            outcome.append("sent")
        except Exception as exc:  # noqa: BLE001 - the test reports whatever came back
            outcome.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    # Well beyond the two tries of a 5 s timeout; without any timeout the send waits for ever.
    sender.join(45)
    assert not sender.is_alive(), "queueing still waits on a broker that never answers"
    assert len(outcome) == 1 and isinstance(outcome[0], OperationalError), outcome
