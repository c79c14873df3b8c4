"""Upload through the site, then watch a real worker take the task from Redis and classify it."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnoses.models import Diagnosis
from diagnoses.tasks import classify_diagnosis
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
