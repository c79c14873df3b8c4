"""Upload through the site, then watch a real worker take the task from Redis and classify it;
and the worker's daily photo reminders against Postgres."""

import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole
from diagnoses.tasks import classify_diagnosis, recover_lost_diagnoses, send_photo_reminders
from ml import CLASSES


def watch_statuses(pk, timeout=120):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Diagnosis.objects.values_list("status", flat=True).get(pk=pk)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("done", "failed"):
            return seen
        time.sleep(0.005)
    raise TimeoutError(f"still {seen[-1]} after {timeout}s (saw {seen})")


def upload(client, jpeg_bytes):
    response = client.post(reverse("diagnoses:new"), {"image": SimpleUploadedFile("m.jpg", jpeg_bytes, "image/jpeg")})
    assert response.status_code == 302
    return Diagnosis.objects.latest("created_at")


def test_it_goes_queued_running_done_in_a_real_worker(celery_worker_process, client, owner, jpeg_bytes):
    client.force_login(owner)
    diagnosis = upload(client, jpeg_bytes)

    assert watch_statuses(diagnosis.pk) == ["queued", "running", "done"]

    diagnosis.refresh_from_db()
    assert set(diagnosis.probabilities) == set(CLASSES)
    assert sum(diagnosis.probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert diagnosis.risk in ("low", "medium", "high") and diagnosis.model_version
    assert diagnosis.heatmap.storage.exists(diagnosis.heatmap.name)
    page = client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()
    assert page["status"] == "done" and "Malignant probability" in page["html"]


def test_it_leaves_a_finished_diagnosis_alone_when_the_task_is_delivered_again(celery_worker_process, client, owner, jpeg_bytes):
    client.force_login(owner)
    diagnosis = upload(client, jpeg_bytes)
    watch_statuses(diagnosis.pk)
    before = Diagnosis.objects.get(pk=diagnosis.pk)

    classify_diagnosis.delay(str(diagnosis.pk))
    second = upload(client, jpeg_bytes)  # queued behind the redelivery: once it is done, so is that
    watch_statuses(second.pk)

    after = Diagnosis.objects.get(pk=diagnosis.pk)
    assert (after.finished_at, after.heatmap.name, after.probabilities) == (
        before.finished_at, before.heatmap.name, before.probabilities)


def test_it_analyses_a_photo_whose_task_was_lost_once_beats_check_sends_it_again(celery_worker_process, owner, jpeg_bytes):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classify_diagnosis, "delay", lambda pk: None)  # the broker loses the task
        diagnosis = services.diagnosis_create(owner=owner, image=SimpleUploadedFile("m.jpg", jpeg_bytes, "image/jpeg"))
    Diagnosis.objects.filter(pk=diagnosis.pk).update(queued_at=timezone.now() - timedelta(minutes=16))

    recover_lost_diagnoses.delay()  # what beat queues every 5 minutes

    assert watch_statuses(diagnosis.pk) == ["queued", "running", "done"]
    assert Diagnosis.objects.get(pk=diagnosis.pk).attempts == 1


def test_it_sends_the_photo_reminders_in_a_real_worker_once_per_due_date(celery_worker_process, owner, tmp_path):
    mole = services.mole_create(owner=owner, name="Left shoulder", recheck_months=1)
    Mole.objects.filter(pk=mole.pk).update(created_at=mole.created_at - timedelta(days=45))
    due = Mole.objects.get(pk=mole.pk).next_photo_due

    send_photo_reminders.delay()
    send_photo_reminders.delay()  # a second run (two beats, a redelivery) sends nothing more

    deadline = time.monotonic() + 60
    while Mole.objects.get(pk=mole.pk).reminded_for != due:
        assert time.monotonic() < deadline, "the worker did not send the reminder"
        time.sleep(0.05)
    log = tmp_path / "worker.log"  # the console e-mail backend prints into the worker's log
    deadline = time.monotonic() + 30
    while log.read_text(errors="replace").count("succeeded") < 2:
        assert time.monotonic() < deadline, "the worker did not finish both runs"
        time.sleep(0.05)
    text = log.read_text(errors="replace")
    assert text.count("Subject: Time for a new photo of one of your moles") == 1
    assert "To: patient@example.com" in text
