"""How a classification ends when it does not simply succeed: the check deleted while the
worker classifies it, a stored photo that cannot be read, an error nobody foresaw. Each runs
services.diagnosis_classify as the worker does, with the tiny model trained on the fly."""

import logging
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnoses import services
from diagnoses.models import Diagnosis

pytestmark = pytest.mark.django_db


def upload(owner, data) -> Diagnosis:
    image = SimpleUploadedFile("mole.jpg", data, content_type="image/jpeg")
    return services.diagnosis_create(owner=owner, image=image)


def stored_files(media_root) -> list[Path]:
    return sorted(p for p in Path(media_root).rglob("*") if p.is_file())


def test_a_check_deleted_while_it_is_classified_is_not_brought_back_and_leaves_no_files(
        owner, jpeg_bytes, tiny_model, private_media, monkeypatch,
        django_capture_on_commit_callbacks):
    diagnosis = upload(owner, jpeg_bytes)
    explain = services._explain
    predicted = []

    def deleted_by_the_patient_meanwhile(image_bytes):
        prediction, heatmap_png = explain(image_bytes)
        predicted.append(prediction)
        services.diagnosis_delete(diagnosis=Diagnosis.objects.get(pk=diagnosis.pk))
        return prediction, heatmap_png

    monkeypatch.setattr(services, "_explain", deleted_by_the_patient_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None

    assert len(predicted) == 1  # the model did run, and its result came after the deletion
    assert not Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    assert stored_files(private_media) == []  # no photo, thumbnail or heatmap left behind


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_stored_photo_that_cannot_be_read_fails_with_the_readable_message_and_no_retry(
        owner, jpeg_bytes, tiny_model, private_media, damage, caplog):
    diagnosis = upload(owner, jpeg_bytes)
    stored = Path(diagnosis.image.path)
    photo = stored.read_bytes()
    garbage = b"\x00\x13 not a photo \xff" * 40
    stored.write_bytes(garbage if damage == "garbage" else photo[:len(photo) // 2])

    # Returns, rather than raising TransientClassificationError: the task does not retry it.
    assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None

    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.FAILED
    assert diagnosis.error == services.MESSAGE_UNREADABLE
    assert diagnosis.attempts == 1 and diagnosis.finished_at
    assert not diagnosis.heatmap and not (private_media / "heatmaps").exists()
    assert (diagnosis.probabilities, diagnosis.predicted_class, diagnosis.risk) == ({}, "", "")
    # the site stored that photo itself, so the failure is the site's: an ERROR line, traceback
    errors = [r for r in caplog.records if r.levelname == "ERROR" and str(diagnosis.pk) in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info


def test_an_unexpected_error_fails_with_its_message_and_is_logged_with_its_traceback(
        owner, jpeg_bytes, private_media, monkeypatch, caplog):
    diagnosis = upload(owner, jpeg_bytes)

    def broken(image_bytes):
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(services, "_explain", broken)
    with caplog.at_level(logging.ERROR, logger=services.logger.name):
        assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None

    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.FAILED
    assert diagnosis.error == services.MESSAGE_UNEXPECTED
    assert not diagnosis.heatmap and not (private_media / "heatmaps").exists()
    [record] = [r for r in caplog.records if r.name == services.logger.name and r.exc_info]
    assert record.levelno == logging.ERROR and isinstance(record.exc_info[1], RuntimeError)
