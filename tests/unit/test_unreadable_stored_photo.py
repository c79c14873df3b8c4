"""What the patient is told when the worker cannot decode the copy of a photo that the site
stored itself: the site's fault, so not a request for a better photo."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnoses import services
from diagnoses.models import Diagnosis

pytestmark = pytest.mark.django_db


def test_a_stored_copy_the_worker_cannot_open_does_not_ask_for_a_better_photo(
        owner, owner_client, jpeg_bytes, tiny_model, private_media):
    diagnosis = services.diagnosis_create(
        owner=owner, image=SimpleUploadedFile("mole.jpg", jpeg_bytes, content_type="image/jpeg"))
    stored = Path(diagnosis.image.path)
    stored.write_bytes(stored.read_bytes()[:len(stored.read_bytes()) // 2])  # storage damaged it

    assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None

    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.FAILED
    assert diagnosis.error == "We could not open the stored copy of this photo. Please upload it again."
    page = owner_client.get(reverse("diagnoses:detail", args=[diagnosis.pk])).content.decode()
    assert "We could not open the stored copy of this photo. Please upload it again." in page
    assert "sharper" not in page and "well-lit" not in page


def test_a_stored_photo_that_is_missing_fails_at_once_naming_the_stored_copy(
        owner, jpeg_bytes, tiny_model, private_media, caplog):
    # A backup restored without its photos: no retry brings the file back, so the photo fails
    # now (not after six retries, with "after several attempts"), on an ERROR line.
    diagnosis = services.diagnosis_create(
        owner=owner, image=SimpleUploadedFile("mole.jpg", jpeg_bytes, content_type="image/jpeg"))
    Path(diagnosis.image.path).unlink()

    assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None

    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.FAILED
    assert diagnosis.error == services.MESSAGE_UNREADABLE
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"the stored photo of {diagnosis.pk} is missing"]


def _upload(owner, jpeg_bytes):
    return services.diagnosis_create(
        owner=owner, image=SimpleUploadedFile("mole.jpg", jpeg_bytes, content_type="image/jpeg"))


def _deleted_by_the_patient(diagnosis_id):
    services.diagnosis_delete(diagnosis=Diagnosis.objects.get(pk=diagnosis_id))


def test_a_photo_deleted_once_claimed_is_no_error(owner, jpeg_bytes, tiny_model, private_media, caplog, monkeypatch):
    # The patient deletes the photo between the worker's claim and its reading of the row:
    # routine, so no ERROR line (operators alert on those) and nothing to fail.
    claim = services.diagnosis_claim

    def claim_then_the_patient_deletes(**kwargs):
        claimed = claim(**kwargs)
        _deleted_by_the_patient(kwargs["diagnosis_id"])
        return claimed

    monkeypatch.setattr(services, "diagnosis_claim", claim_then_the_patient_deletes)
    diagnosis = _upload(owner, jpeg_bytes)
    assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None
    assert not Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_photo_deleted_as_its_file_is_read_is_no_error(owner, jpeg_bytes, tiny_model, private_media, caplog,
                                                          monkeypatch):
    # Deleted after the row was read, before its file was: the file is missing because the row
    # went with it, not the storage's fault.
    read = services._read_stored_photo

    def the_patient_deletes_then_read(diagnosis):
        _deleted_by_the_patient(diagnosis.pk)
        return read(diagnosis)

    monkeypatch.setattr(services, "_read_stored_photo", the_patient_deletes_then_read)
    diagnosis = _upload(owner, jpeg_bytes)
    assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
