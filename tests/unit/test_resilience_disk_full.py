"""A full disk while a file is written: FileSystemStorage keeps the part it wrote. At upload no
fragment of the photo may stay behind; for the heatmap, the result is kept without one (pages
and the API show a result without heatmap) rather than retried until it is given up."""

import errno
import logging
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnoses import services
from diagnoses.models import Diagnosis

pytestmark = pytest.mark.django_db


class HalfWritten:
    """Content whose write stops halfway with ENOSPC, as on a disk that fills up meanwhile."""

    def __init__(self, content):
        self.data = content.read()

    def chunks(self):
        yield self.data[:len(self.data) // 2]
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def disk_full_in(monkeypatch):
    """disk_full_in("heatmaps/"): the storage's writes under that folder fail halfway."""
    def fill(folder):
        save = FileSystemStorage._save

        def save_until_full(storage, name, content):
            return save(storage, name, HalfWritten(content) if name.startswith(folder) else content)

        monkeypatch.setattr(FileSystemStorage, "_save", save_until_full)

    return fill


def stored_files(media_root) -> list[str]:
    root = Path(media_root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def upload(owner, data) -> Diagnosis:
    return services.diagnosis_create(owner=owner, image=SimpleUploadedFile("mole.jpg", data, "image/jpeg"))


@pytest.mark.parametrize("folder", ["images/", "thumbnails/"])
def test_a_disk_full_at_upload_leaves_no_part_of_the_photo(owner, jpeg_bytes, private_media, disk_full_in,
                                                            folder):
    disk_full_in(folder)
    with pytest.raises(OSError):
        upload(owner, jpeg_bytes)

    assert stored_files(private_media) == []
    assert not Diagnosis.objects.exists()


def test_a_disk_full_at_the_heatmap_keeps_the_result_without_it(
        owner, jpeg_bytes, tiny_model, private_media, disk_full_in, caplog):
    diagnosis = upload(owner, jpeg_bytes)
    disk_full_in("heatmaps/")
    with caplog.at_level(logging.ERROR, logger=services.logger.name):
        # no TransientClassificationError: nothing is retried for an optional image
        classified = services.diagnosis_classify(diagnosis_id=diagnosis.pk)

    diagnosis.refresh_from_db()
    assert classified == diagnosis and diagnosis.status == Diagnosis.Status.DONE
    assert diagnosis.risk and diagnosis.predicted_class and not diagnosis.heatmap
    # the half-written overlay (the patient's photo, blended) is gone, the photo kept
    assert not any(name.startswith("heatmaps/") for name in stored_files(private_media))
    assert diagnosis.image.name in stored_files(private_media)
    errors = [r for r in caplog.records if r.levelname == "ERROR" and str(diagnosis.pk) in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info


def test_a_result_stored_without_heatmap_shows_on_its_page(owner_client, owner, jpeg_bytes, tiny_model,
                                                           disk_full_in):
    diagnosis = upload(owner, jpeg_bytes)
    disk_full_in("heatmaps/")
    services.diagnosis_classify(diagnosis_id=diagnosis.pk)

    page = owner_client.get(diagnosis.get_absolute_url())
    assert page.status_code == 200 and "heatmap-toggle" not in page.content.decode()
