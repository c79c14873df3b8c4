"""An account deleted while its owner's photo is being stored, on the real Postgres."""

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnoses import services
from diagnoses.models import Diagnosis
from tests.conftest import make_image_bytes
from tests.integration.conftest import run_held_in_another_thread


def test_an_upload_while_the_account_is_deleted_is_refused_and_leaves_no_file(transactional_db,
                                                                             owner, private_media,
                                                                             monkeypatch):
    forget = services._forget_admin_history

    def delete_account(hold):
        def held_after_listing_the_files(pks_by_model):  # the deletion has listed what to remove
            hold()
            forget(pks_by_model)

        monkeypatch.setattr(services, "_forget_admin_history", held_after_listing_the_files)
        services.user_delete(user=owner)

    other = run_held_in_another_thread(delete_account)
    image = SimpleUploadedFile("mole.jpg", make_image_bytes(), content_type="image/jpeg")
    refused = []
    try:
        services.diagnosis_create(owner=owner, image=image)
    except ValidationError as error:
        refused.append(error.code)
    other.join(10)

    # Without the account's lock the photo would be stored in the gap, its row then removed by
    # the deletion's cascade, and its files left on the disk with no row naming them.
    assert refused == ["account_deleted"]
    assert not Diagnosis.objects.exists()
    assert [path for path in private_media.rglob("*") if path.is_file()] == []


def test_an_account_deleted_while_a_photo_is_stored_goes_with_that_photo(transactional_db, owner,
                                                                        private_media, monkeypatch):
    send = services._send_classification
    uploaded, failed = [], []

    def upload(hold):
        def held_before_commit(pk):  # the upload has written its row
            hold()
            send(pk)

        monkeypatch.setattr(services, "_send_classification", held_before_commit)
        image = SimpleUploadedFile("mole.jpg", make_image_bytes(), content_type="image/jpeg")
        try:
            uploaded.append(services.diagnosis_create(owner=owner, image=image))
        except Exception as error:
            failed.append(error)

    other = run_held_in_another_thread(upload)
    # Without the account's lock the deletion would not see the photo not yet committed, and the
    # upload's commit would then fail its foreign-key check (IntegrityError, a 500).
    services.user_delete(user=owner)
    other.join(10)

    assert uploaded and not failed
    assert not Diagnosis.objects.exists()
    assert [path for path in private_media.rglob("*") if path.is_file()] == []
