"""Upload through the site, then watch a real worker take the task from Redis and classify it;
photos whose task was lost or whose worker was killed, recovered by beat's check; and the
worker's daily photo reminders against Postgres."""

import os
import signal
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole
from diagnoses.tasks import classify_diagnosis, recover_lost_diagnoses, send_photo_reminders
from ml.inference import get_classifier
from molesite.celery import app as celery_app
from tests.integration.conftest import WORKER_NAME


def watch_statuses(pk, timeout=120, seen=()):
    seen = list(seen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Diagnosis.objects.values_list("status", flat=True).get(pk=pk)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("done", "failed"):
            return seen
        time.sleep(0.005)
    raise TimeoutError(f"still {seen[-1]} after {timeout}s (saw {seen})")


@contextmanager
def worker_not_consuming(queue="celery"):
    """The worker stops taking tasks from the queue (Celery's remote control), so that a photo is
    seen waiting in it: otherwise the worker may start it before the test first looks."""
    # limit=1: the test worker's answer, not the whole timeout waiting for more
    answers = celery_app.control.cancel_consumer(queue, destination=[WORKER_NAME], reply=True,
                                                 limit=1, timeout=10)
    assert answers, "the worker did not answer"
    try:
        yield
    finally:
        # no waiting: the caller watches what follows
        celery_app.control.add_consumer(queue, destination=[WORKER_NAME])


def upload(client, jpeg_bytes):
    response = client.post(reverse("diagnoses:new"), {"image": SimpleUploadedFile("m.jpg", jpeg_bytes, "image/jpeg")})
    assert response.status_code == 302
    return Diagnosis.objects.latest("created_at")


def classifier_prediction(diagnosis, model_dir):
    """What the project's classifier, from the model the worker was given, says of the photo
    stored for the diagnosis."""
    with diagnosis.image.open("rb") as stored:
        return get_classifier(model_dir).predict(stored.read())


def test_it_goes_queued_running_done_in_a_real_worker(celery_worker_process, tiny_model, client,
                                                      owner, jpeg_bytes):
    client.force_login(owner)
    with worker_not_consuming():
        diagnosis = upload(client, jpeg_bytes)
        time.sleep(0.5)
        assert Diagnosis.objects.get(pk=diagnosis.pk).status == "queued"

    assert watch_statuses(diagnosis.pk, seen=["queued"]) == ["queued", "running", "done"]

    diagnosis.refresh_from_db()
    expected = classifier_prediction(diagnosis, tiny_model)
    # the worker's result for this photo, not merely numbers of the right shape (a float32
    # network, run in another process: equal to a few units in the last place)
    assert diagnosis.probabilities == pytest.approx(expected.probabilities, abs=1e-5)
    assert diagnosis.malignant_probability == pytest.approx(expected.malignant_probability,
                                                            abs=1e-5)
    assert (diagnosis.predicted_class, diagnosis.risk, diagnosis.model_version) == (
        expected.predicted_class, expected.risk, expected.model_version)
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
    uploaded_at = timezone.now() - timedelta(minutes=16)  # its task sent (and lost) then
    Diagnosis.objects.filter(pk=diagnosis.pk).update(queued_at=uploaded_at, sent_at=uploaded_at)

    recover_lost_diagnoses.delay()  # what beat queues every 5 minutes

    assert watch_statuses(diagnosis.pk) == ["queued", "running", "done"]
    assert Diagnosis.objects.get(pk=diagnosis.pk).attempts == 1


def pool_children(worker) -> list[int]:
    """The worker's pool processes (prefork: the children that run the tasks)."""
    return [int(pid) for pid in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]


def kill_the_worker_in_the_middle_of_an_analysis(worker, owner, jpeg_bytes, tries=5):
    """A photo whose worker was killed (SIGKILL, as the kernel kills for memory) while running
    it. The analysis takes a fraction of a second: a photo finished before the kill landed is
    left, and another one is tried."""
    for _ in range(tries):
        diagnosis = services.diagnosis_create(owner=owner, image=SimpleUploadedFile("m.jpg", jpeg_bytes, "image/jpeg"))
        children = pool_children(worker)
        deadline = time.monotonic() + 60
        while Diagnosis.objects.values_list("status", flat=True).get(pk=diagnosis.pk) == "queued":
            assert time.monotonic() < deadline, "the worker did not start on the photo"
            time.sleep(0.001)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        if Diagnosis.objects.values_list("status", flat=True).get(pk=diagnosis.pk) == "running":
            return diagnosis
        wait_for_pool(worker, replacing=children)
    pytest.fail(f"the worker finished each of {tries} photos before it could be killed")


def wait_for_pool(worker, *, replacing, timeout=90):
    deadline = time.monotonic() + timeout
    while not (set(pool_children(worker)) - set(replacing)):
        assert time.monotonic() < deadline, "the worker did not replace its killed pool process"
        time.sleep(0.05)


def test_it_analyses_a_photo_whose_worker_was_killed_once_beats_check_queues_it_again(
        celery_worker_process, owner, jpeg_bytes, tmp_path):
    killed = kill_the_worker_in_the_middle_of_an_analysis(celery_worker_process, owner, jpeg_bytes)
    # Celery gives the task back to the broker (task_reject_on_worker_lost); the new pool process
    # finds the photo freshly claimed and leaves it: without the check it would stay "running".
    left = f"diagnosis {killed.pk} is not queued; nothing to do"
    log = tmp_path / "worker.log"
    deadline = time.monotonic() + 60
    while left not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the task was not delivered again after the kill"
        time.sleep(0.05)
    assert Diagnosis.objects.get(pk=killed.pk).status == "running"

    Diagnosis.objects.filter(pk=killed.pk).update(started_at=timezone.now() - timedelta(minutes=11))
    recover_lost_diagnoses.delay()

    assert watch_statuses(killed.pk)[-1] == "done"
    assert Diagnosis.objects.get(pk=killed.pk).attempts == 2


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
