"""The e-mails' own queue: every task that sends e-mail goes to "mail", served in production by
the mailer service, so that no photo waits behind an e-mail (the daily batches may take up to
an hour with a slow mail server); the classifications and the short upkeep stay on the default
queue, served by the workers that hold the model (docker-compose.yml; test_deploy.py checks
which queues each service consumes)."""

import threading

import pytest
from django.conf import settings
from kombu import Connection

import molesite.celery
from accounts.tasks import send_password_reset_mail
from diagnoses.tasks import (classify_diagnosis, clear_expired_sessions, recover_lost_diagnoses,
                             send_photo_reminders, send_review_notice, send_review_queue_digest)
from molesite.celery import app as celery_app

# Each of these sends e-mail (molesite.mail, or EmailMultiAlternatives.send()).
MAIL = {
    "diagnoses.tasks.send_photo_reminders",
    "diagnoses.tasks.send_review_queue_digest",
    "diagnoses.tasks.send_review_notice",
    "accounts.tasks.send_password_reset_mail",
}
# The classifications, and the upkeep that sends none: the check for lost photos (it queues
# classifications and owed review notices, each routed by its own name) and the sessions' deletion.
DEFAULT = {
    "diagnoses.tasks.classify_diagnosis",
    "diagnoses.tasks.recover_lost_diagnoses",
    "diagnoses.tasks.clear_expired_sessions",
}


def queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


def test_each_of_the_projects_tasks_has_its_queue_chosen():
    """A new task must be put in one of the two sets above: one that sends e-mail and stays on
    the default queue would hold the photos behind it again."""
    celery_app.loader.import_default_modules()
    tasks = {name for name in celery_app.tasks if not name.startswith("celery.")}
    assert tasks == MAIL | DEFAULT
    assert set(settings.MAIL_TASKS) == MAIL


def test_every_task_that_sends_email_goes_to_the_mail_queue_and_the_classification_does_not():
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "celery"
    assert {name: queue_of(name) for name in MAIL} == dict.fromkeys(MAIL, "mail")
    assert {name: queue_of(name) for name in DEFAULT} == dict.fromkeys(DEFAULT, "celery")
    # every daily batch beat queues is in the mail queue, the photos' check and sessions not
    queues = {entry["task"]: queue_of(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert queues == {
        "diagnoses.tasks.send_photo_reminders": "mail",
        "diagnoses.tasks.send_review_queue_digest": "mail",
        "diagnoses.tasks.recover_lost_diagnoses": "celery",
        "diagnoses.tasks.clear_expired_sessions": "celery",
    }


def test_both_queues_are_declared_so_that_a_worker_without_q_consumes_both():
    """A worker started without -Q (an old command line, a one-off) strands no e-mail."""
    assert [queue.name for queue in settings.CELERY_TASK_QUEUES] == ["celery", "mail"]
    for queue in settings.CELERY_TASK_QUEUES:  # as Celery declares the default queue and a missing one
        assert (queue.exchange.name, queue.exchange.type, queue.routing_key) == (queue.name, "direct", queue.name)


def _published(connection) -> dict:
    channel = connection.default_channel
    found = {}
    for queue in ("celery", "mail"):
        found[queue] = []
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            found[queue].append(message.headers["task"])
    return {queue: sorted(tasks) for queue, tasks in found.items()}  # a millisecond's files in any order


def _publish_one_of_each(connection):
    classify_diagnosis.apply_async(("a-diagnosis",), connection=connection)
    send_photo_reminders.apply_async(connection=connection)
    send_review_queue_digest.apply_async(connection=connection)
    send_review_notice.apply_async(([1], False), connection=connection)
    # its own apply_async (LoggedByUserId) on the way
    send_password_reset_mail.apply_async(("Reset", "body", "p@example.com", None, 1), connection=connection)
    recover_lost_diagnoses.apply_async(connection=connection)
    clear_expired_sessions.apply_async(connection=connection)


EXPECTED = {"celery": sorted(DEFAULT), "mail": sorted(MAIL)}


def test_a_queued_task_reaches_the_brokers_queue_of_its_kind():
    """Published as the site and beat publish them (apply_async, through the routes), onto a
    broker: each message in its queue."""
    with Connection("memory://") as connection:
        _publish_one_of_each(connection)
        assert _published(connection) == EXPECTED


def test_the_embedded_broker_keeps_the_two_queues_apart(tmp_path):
    """`make run`'s filesystem transport: one folder, each message's file named after its queue,
    which is what a worker consuming one queue reads."""
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder),
               "control_folder": str(tmp_path / "control"), "store_processed": False}
    with Connection("filesystem://", transport_options=options) as connection:
        _publish_one_of_each(connection)
        names = sorted(path.name for path in folder.iterdir())
        assert sum(name.endswith(".mail.msg") for name in names) == 4
        assert sum(name.endswith(".celery.msg") for name in names) == 3
        assert _published(connection) == EXPECTED


@pytest.fixture
def consuming():
    """Select the queues this process consumes, as a worker's -Q does before its pool starts."""
    queues = celery_app.amqp.queues

    def select(names):
        queues.select(names)

    yield select
    queues._consume_from = None  # back to every declared queue, as without -Q


@pytest.mark.parametrize("queues, loads", [(["mail"], False), (["celery"], True), (["celery", "mail"], True)])
def test_only_a_worker_that_takes_classifications_loads_the_model(monkeypatch, consuming, queues, loads):
    """The mailer (-Q mail) would hold the model in memory for nothing."""
    loaded = []
    monkeypatch.setattr(molesite.celery, "_load_classifier", lambda: loaded.append(True))
    consuming(queues)

    molesite.celery.warm_up_classifier()

    for thread in threading.enumerate():
        if thread.name == "classifier-warm-up":
            thread.join(5)
    assert loaded == ([True] if loads else [])
