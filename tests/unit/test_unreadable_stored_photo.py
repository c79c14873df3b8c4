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
