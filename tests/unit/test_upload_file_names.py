"""A photo's file name is the client's to choose: no name may turn an upload into an error."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnoses.models import Diagnosis

# "photo." and 90 three-byte characters: an "extension" of 271 bytes.
LONG_EXTENSION = "photo." + "\u3042" * 90


@pytest.fixture
def to_disk(settings):
    """Every upload streamed to a temporary file, as a photo over 5 MB is."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0


def test_a_photo_with_a_very_long_extension_is_stored_from_the_site(owner_client, owner, jpeg_bytes,
                                                                     to_disk):
    photo = SimpleUploadedFile(LONG_EXTENSION, jpeg_bytes, content_type="image/jpeg")
    page = owner_client.post("/diagnoses/new/", {"image": photo, "new_mole_name": "Back"})
    assert page.status_code == 302
    assert Diagnosis.objects.filter(owner=owner).count() == 1


def test_a_photo_with_a_very_long_extension_is_stored_from_the_api(owner_api, owner, jpeg_bytes,
                                                                    to_disk):
    photo = SimpleUploadedFile(LONG_EXTENSION, jpeg_bytes, content_type="image/jpeg")
    response = owner_api.post("/api/v1/diagnoses/", {"image": photo}, format="multipart")
    assert response.status_code == 202
    assert Diagnosis.objects.filter(owner=owner).count() == 1


def test_a_short_extension_is_kept_in_the_temporary_files_name(owner_client, jpeg_bytes, to_disk,
                                                               monkeypatch):
    from django.core.files import uploadedfile

    made = []
    original = uploadedfile.TemporaryUploadedFile.__init__

    def record(self, name, *args, **kwargs):
        made.append(name)
        original(self, name, *args, **kwargs)

    monkeypatch.setattr(uploadedfile.TemporaryUploadedFile, "__init__", record)
    photo = SimpleUploadedFile("mole.jpeg", jpeg_bytes, content_type="image/jpeg")
    owner_client.post("/diagnoses/new/", {"image": photo, "new_mole_name": "Back"})
    assert made == ["mole.jpeg"]
