"""Mends to the services: a re-run deletes the heatmap it clears, an upload is decoded outside any
transaction, checkphotos holds no read open on SQLite, a pool process outlives the SIGTERM that
honcho sends on Ctrl-C, and a daily batch of e-mails shares one connection to the mail server."""

import os
import signal
import smtplib
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from diagnoses import services, tasks
from diagnoses.models import Diagnosis, Mole
from tests.conftest import make_image_bytes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sent(monkeypatch):
    """The ids classify_diagnosis was queued for, instead of a broker."""
    queued = []
    monkeypatch.setattr(tasks.classify_diagnosis, "delay", queued.append)
    return queued


# --- a re-run deletes the heatmap it clears ------------------------------------------------------

def test_a_rerun_deletes_the_heatmap_of_the_row_not_of_the_copy_it_was_given(
        owner, make_diagnosis, sent, django_capture_on_commit_callbacks):
    stale = make_diagnosis(owner)  # as the admin's action loaded it, with its heatmap H1
    storage = stale.heatmap.storage
    # a re-run that finished meanwhile stored H2 (and deleted H1 on its own requeue)
    newer = storage.save("heatmaps/newer.png", ContentFile(make_image_bytes(fmt="PNG")))
    Diagnosis.objects.filter(pk=stale.pk).update(heatmap=newer)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.diagnosis_requeue(diagnosis=stale)

    assert Diagnosis.objects.get(pk=stale.pk).heatmap.name == ""
    assert not storage.exists(newer)  # no row names it any more: not left behind
    assert sent == [str(stale.pk)]


def test_a_rerun_of_a_check_queued_meanwhile_changes_nothing(owner, make_diagnosis, sent,
                                                              django_capture_on_commit_callbacks):
    stale = make_diagnosis(owner)
    Diagnosis.objects.filter(pk=stale.pk).update(status=Diagnosis.Status.QUEUED)

    with django_capture_on_commit_callbacks(execute=True):
        assert not services.diagnosis_requeue(diagnosis=stale)

    assert stale.heatmap.storage.exists(stale.heatmap.name) and sent == []


# --- the upload decodes the photo outside any transaction ---------------------------------------

@pytest.fixture
def sanitised_outside_transactions(monkeypatch):
    """services.sanitize_upload, failing where it runs in a transaction: on SQLite that holds
    the database's write lock, for a second on a large photo, from the worker and other uploads."""
    real = services.sanitize_upload
    calls = []

    def outside_transactions(image):
        assert not connection.in_atomic_block, "the photo is decoded inside a transaction"
        calls.append(image)
        return real(image)

    monkeypatch.setattr(services, "sanitize_upload", outside_transactions)
    return calls


@pytest.mark.parametrize("fields", [{}, {"new_mole_name": "Left shoulder"}], ids=["untracked", "new-mole"])
def test_the_web_upload_decodes_the_photo_outside_any_transaction(transactional_db, owner_client, sent,
                                                                   sanitised_outside_transactions, fields):
    photo = SimpleUploadedFile("mole.jpg", make_image_bytes(), content_type="image/jpeg")

    response = owner_client.post(reverse("diagnoses:new"), {"image": photo, **fields})

    assert response.status_code == 302 and len(sanitised_outside_transactions) == 1
    diagnosis = Diagnosis.objects.get()
    assert sent == [str(diagnosis.pk)]
    assert (diagnosis.mole.name if diagnosis.mole else None) == fields.get("new_mole_name")


def test_a_refused_photo_leaves_no_new_mole(transactional_db, owner_client, sent, sanitised_outside_transactions):
    photo = SimpleUploadedFile("mole.jpg", b"not a photo", content_type="image/jpeg")

    response = owner_client.post(reverse("diagnoses:new"), {"image": photo, "new_mole_name": "Arm"})

    assert response.status_code == 400
    assert not Mole.objects.exists() and not Diagnosis.objects.exists() and sent == []


# --- checkphotos while others write to SQLite ---------------------------------------------------

# Run in a process of its own, on a database file in WAL mode as the embedded default keeps it
# (the tests' own SQLite database is in memory). Another process commits a write while the
# command is at its third photo.
CHECKPHOTOS_WHILE_OTHERS_WRITE = """
import sqlite3, sys
import django
django.setup()
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from accounts.models import User
from diagnoses import services
from diagnoses.models import Diagnosis
from tests.conftest import make_image_bytes

call_command("migrate", verbosity=0)
owner = User.objects.create_user("patient", "patient@example.com", "correct horse battery")
name = default_storage.save("images/photo.jpg", ContentFile(make_image_bytes()))
Diagnosis.objects.bulk_create([Diagnosis(owner=owner, image=name, thumbnail=name, sha256="0" * 64,
                                         photo_issues=["blurry"]) for _ in range(PHOTOS)])
check, calls = services.photo_issues, []

def another_process_writes_at_the_third(image):
    calls.append(image)
    if len(calls) == 3:
        other = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=20)
        other.execute("UPDATE accounts_user SET first_name = 'Ann'")
        other.commit()
        other.close()
    return check(image)

services.photo_issues = another_process_writes_at_the_third
call_command("checkphotos")
"""


def test_checkphotos_goes_on_when_another_process_writes_meanwhile(tmp_path):
    photos = 250  # over one page of 200
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "VAR_DIR": str(tmp_path),
           "MEDIA_ROOT": str(tmp_path / "media"), "DJANGO_SETTINGS_MODULE": "molesite.settings"}
    env.pop("REDIS_URL", None)
    script = CHECKPHOTOS_WHILE_OTHERS_WRITE.replace("PHOTOS", str(photos))

    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{photos} photos checked, {photos} changed, 0 could not be read" in done.stdout


# --- a Ctrl-C on `make run` --------------------------------------------------------------------

def sigterm_in_a_pool_process(**environment) -> str:
    """What SIGTERM does in a freshly started pool process of molesite's worker."""
    script = textwrap.dedent("""
        import signal
        from celery.signals import worker_process_init
        import molesite.celery
        # the classifier's warm-up would load TensorFlow in this process: not what is tested
        worker_process_init.disconnect(molesite.celery.warm_up_classifier)
        worker_process_init.send(sender=None)
        print(signal.getsignal(signal.SIGTERM))
    """)
    env = {k: v for k, v in os.environ.items() if k != "MOLESITE_POOL_IGNORE_SIGTERM"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**env, **environment})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_a_pool_process_ignores_the_sigterm_sent_to_the_workers_process_group_by_honcho():
    """honcho stops the worker with SIGTERM to its whole process group: the main process shuts
    down warm, waiting for the task under way, which the pool process must live to finish."""
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert procfile["worker"].startswith("MOLESITE_POOL_IGNORE_SIGTERM=1 celery ")
    assert sigterm_in_a_pool_process(MOLESITE_POOL_IGNORE_SIGTERM="1") == str(signal.SIG_IGN)


def test_elsewhere_a_pool_process_still_ends_on_sigterm():
    """docker compose stops the main process alone; a cold shutdown or revoke(terminate=True)
    ends a pool process by SIGTERM, which must keep its default there."""
    assert sigterm_in_a_pool_process() == str(signal.SIG_DFL)


# --- one connection to the mail server for a daily batch ----------------------------------------

class ConnectingBackend(LocmemBackend):
    """The tests' outbox, opening and closing a connection as Django's SMTP backend does: one of
    its own for each send, unless one was opened before. Counts the connections it opens; an
    address in `refused` is refused as an SMTP server refuses it, and `down` fails every open."""

    opened = 0
    refused = ()
    down = False
    drops_after = None  # the server closes a connection after this many e-mails over it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_open = False

    def open(self):
        if self.is_open:
            return False
        if self.down:
            raise ConnectionRefusedError
        type(self).opened += 1
        self.is_open = True
        self.sent_over_it = 0
        return True

    def close(self):
        self.is_open = False

    def send_messages(self, messages):
        opened_here = self.open()
        try:
            for message in messages:
                if set(message.to) & set(self.refused):
                    raise smtplib.SMTPRecipientsRefused({message.to[0]: (550, b"mailbox unavailable")})
                if self.sent_over_it == self.drops_after:
                    raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
                self.sent_over_it += 1
            return super().send_messages(messages)
        finally:
            if opened_here:
                self.close()


@pytest.fixture
def mail_server(db, settings, mailoutbox, monkeypatch):  # db first: it empties the outbox
    settings.EMAIL_BACKEND = f"{__name__}.ConnectingBackend"
    monkeypatch.setattr(ConnectingBackend, "opened", 0)
    return ConnectingBackend


@pytest.fixture
def three_due_patients(db, django_user_model):
    patients = [django_user_model.objects.create_user(f"patient{n}", f"patient{n}@example.com", "a long secret")
                for n in range(3)]
    for patient in patients:
        mole = services.mole_create(owner=patient, name="Back", recheck_months=1)
        Mole.objects.filter(pk=mole.pk).update(created_at=timezone.now() - timedelta(days=60))
    return patients


def test_a_daily_batch_sends_over_one_connection(mail_server, three_due_patients, mailoutbox):
    assert services.photo_reminders_send() == 3

    assert len(mailoutbox) == 3 and mail_server.opened == 1


def test_one_refused_address_fails_alone_on_the_shared_connection(mail_server, three_due_patients, mailoutbox,
                                                                   monkeypatch):
    monkeypatch.setattr(mail_server, "refused", (three_due_patients[1].email,))
    with pytest.raises(services.EmailsNotSent) as raised:
        services.photo_reminders_send()

    assert (raised.value.sent, raised.value.failed) == (2, 1)
    assert sorted(email.to[0] for email in mailoutbox) == ["patient0@example.com", "patient2@example.com"]
    monkeypatch.setattr(mail_server, "refused", ())
    assert services.photo_reminders_send() == 1  # the retry: its claim was given back


def test_a_connection_the_server_closed_is_opened_again_not_taken_for_a_server_down(
        mail_server, three_due_patients, mailoutbox, monkeypatch):
    """A server may close a session kept open (idle time, e-mails a session): before one
    connection was shared, each e-mail had its own and never met a closed one."""
    monkeypatch.setattr(mail_server, "drops_after", 1)

    assert services.photo_reminders_send() == 3

    assert len(mailoutbox) == 3 and mail_server.opened == 3


def test_an_unreachable_mail_server_stops_the_batch_for_the_retry(mail_server, three_due_patients, mailoutbox,
                                                                   monkeypatch):
    monkeypatch.setattr(mail_server, "down", True)
    with pytest.raises(services.EmailsNotSent) as raised:
        services.photo_reminders_send()

    assert (raised.value.sent, raised.value.failed) == (0, 3) and mailoutbox == []
    monkeypatch.setattr(mail_server, "down", False)
    assert services.photo_reminders_send() == 3
