"""A photo filed under a mole while that mole is deleted, on the real Postgres."""

from django.core.files.uploadedfile import SimpleUploadedFile

from diagnoses import services
from diagnoses.models import Diagnosis, Mole
from tests.conftest import make_image_bytes
from tests.integration.conftest import run_held_in_another_thread


def test_deleting_a_mole_while_a_photo_is_filed_under_it_keeps_the_photo_untracked(transactional_db, owner,
                                                                                   monkeypatch):
    mole = services.mole_create(owner=owner, name="Left shoulder")
    send = services._send_classification
    uploaded = []

    def upload(hold):
        def held_before_commit(pk):  # the upload has written its row and holds the mole
            hold()
            send(pk)

        monkeypatch.setattr(services, "_send_classification", held_before_commit)
        image = SimpleUploadedFile("mole.jpg", make_image_bytes(), content_type="image/jpeg")
        uploaded.append(services.diagnosis_create(owner=owner, image=image, mole=mole))

    other = run_held_in_another_thread(upload)
    # Without the mole's lock the deletion would set the photos it sees untracked, miss the one
    # not yet committed, and fail its foreign-key check at commit (IntegrityError, a 500).
    services.mole_delete(mole=Mole.objects.get(pk=mole.pk))
    other.join(10)

    assert uploaded and not Mole.objects.exists()
    assert Diagnosis.objects.get(pk=uploaded[0].pk).mole is None
