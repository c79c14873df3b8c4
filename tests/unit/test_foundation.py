"""The running core: accounts, upload → queued → classified, history, files, deletion.

Every view is tried from the owner's side and an outsider's."""

import json
import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from diagnoses import services
from diagnoses.models import Diagnosis, Mole
from ml import CARD_FILENAME, CLASSES
from ml.artifact import save_card
from tests.conftest import ask_for_password_reset, pass_second_step, reset_password_by_email

pytestmark = pytest.mark.django_db


def upload(data, name="mole.jpg"):
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def done_diagnosis(owner, jpeg_bytes, *, risk="low", malignant=0.08, mole=None):
    """A finished diagnosis as the task leaves it (probabilities from a real run are not needed
    to test pages that only display them)."""
    probabilities = dict.fromkeys(CLASSES, (1 - malignant) / 4)
    probabilities.update(mel=malignant / 3, bcc=malignant / 3, akiec=malignant / 3)
    diagnosis = Diagnosis(
        owner=owner, mole=mole, sha256="0" * 64, status=Diagnosis.Status.DONE, risk=risk,
        malignant_probability=malignant, probabilities=probabilities, predicted_class="nv",
        model_version="test-model",
    )
    diagnosis.image.save("photo.jpg", ContentFile(jpeg_bytes), save=False)
    diagnosis.thumbnail.save("thumb.jpg", ContentFile(jpeg_bytes), save=False)
    diagnosis.save()
    return diagnosis


# --- accounts -------------------------------------------------------------------------------

SIGN_UP = {"username": "ana", "email": "ana@example.com", "password1": "a long pass phrase",
           "password2": "a long pass phrase", "consent": "on"}


def test_it_signs_up_and_logs_the_patient_in(client, django_user_model):
    before = timezone.now()
    response = client.post(reverse("signup"), SIGN_UP)
    assert response.status_code == 302
    user = django_user_model.objects.get(username="ana")
    assert user.email == "ana@example.com" and before <= user.consented_at <= timezone.now()
    assert client.get(reverse("diagnoses:list")).status_code == 200
    assert f"You agreed to it on {date_format(timezone.localtime(user.consented_at))}." in client.get(
        reverse("account")).content.decode()


def test_it_leaves_a_new_patient_out_of_the_model_improvement_export_unless_they_tick_it(client, django_user_model):
    page = client.get(reverse("signup")).content.decode()
    box = page.split('name="model_improvement"')[1].split(">")[0]
    assert "checked" not in box and "required" not in box
    client.post(reverse("signup"), SIGN_UP)
    assert django_user_model.objects.get(username="ana").model_improvement is False

    client.logout()
    client.post(reverse("signup"), {**SIGN_UP, "username": "ben", "email": "ben@example.com", "model_improvement": "on"})
    assert django_user_model.objects.get(username="ben").model_improvement is True


def test_it_asks_for_the_agreement_to_the_privacy_notice_before_making_an_account(client, django_user_model):
    page = client.get(reverse("signup")).content.decode()
    assert 'name="consent"' in page and f'<a href="{reverse("privacy")}"' in page
    response = client.post(reverse("signup"), {**SIGN_UP, "consent": ""})
    assert response.status_code == 200
    assert "Tick this box to go on" in response.content.decode()
    assert not django_user_model.objects.filter(username="ana").exists()


def test_it_asks_an_account_made_without_the_agreement_at_sign_in_until_it_agrees(client, owner, django_user_model):
    django_user_model.objects.filter(pk=owner.pk).update(consented_at=None)  # made before sign-up asked
    response = client.post(reverse("login") + "?next=/diagnoses/moles/",
                           {"username": "patient", "password": "correct horse battery"}, follow=True)
    agree = f"{reverse('agree')}?next=%2Fdiagnoses%2Fmoles%2F"
    assert response.redirect_chain[-1] == (agree, 302)
    page = client.get(agree).content.decode()
    assert "Before you go on" in page and 'name="consent"' in page and reverse("account_delete") in page

    refused = client.post(reverse("agree"), {"next": "/diagnoses/moles/"})
    assert refused.status_code == 200 and "Tick this box to go on" in refused.content.decode()
    assert django_user_model.objects.get(pk=owner.pk).consented_at is None
    done = client.post(reverse("agree"), {"next": "/diagnoses/moles/", "consent": "on"})
    assert done.status_code == 302 and done["Location"] == "/diagnoses/moles/"
    assert django_user_model.objects.get(pk=owner.pk).consented_at is not None

    client.post(reverse("logout"))
    again = client.post(reverse("login"), {"username": "patient", "password": "correct horse battery"})
    assert again["Location"] == reverse("diagnoses:list")  # not asked again once agreed
    assert client.get(reverse("agree") + "?next=https://elsewhere.example/")["Location"] == reverse("diagnoses:list")


def test_a_patient_without_the_agreement_reaches_only_the_notice_and_their_data(owner_client, owner, jpeg_bytes,
                                                                                django_user_model):
    """Signed in from before the site asked (or having clicked past the page): every other page
    sends them to the agreement, a POST included, and nothing is stored."""
    django_user_model.objects.filter(pk=owner.pk).update(consented_at=None)
    diagnosis = done_diagnosis(owner, jpeg_bytes)
    agree = reverse("agree")
    for url in (reverse("diagnoses:list"), reverse("diagnoses:detail", args=[diagnosis.pk]), reverse("account")):
        response = owner_client.get(url + "?page=1")
        assert response.status_code == 302
        assert response["Location"] == f"{agree}?next={url.replace('/', '%2F')}%3Fpage%3D1"
    refused = owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes), "new_mole_name": "Back"})
    assert refused.status_code == 302 and refused["Location"] == agree
    assert Diagnosis.objects.filter(owner=owner).count() == 1 and not Mole.objects.filter(owner=owner).exists()

    for url in (agree, reverse("privacy"), reverse("account_export"), reverse("account_delete")):
        assert owner_client.get(url).status_code == 200, url
    owner_client.post(agree, {"consent": "on"})
    assert owner_client.get(reverse("diagnoses:list")).status_code == 200


def test_the_api_refuses_a_patient_without_the_agreement_until_they_agree(owner_api, owner, django_user_model):
    django_user_model.objects.filter(pk=owner.pk).update(consented_at=None)
    for url in ("/api/v1/diagnoses/", "/api/v1/moles/", "/api/v1/share-links/"):
        response = owner_api.get(url)
        assert response.status_code == 403
        assert response.json()["detail"].startswith("Agree to the privacy notice first")
    django_user_model.objects.filter(pk=owner.pk).update(consented_at=timezone.now())
    assert owner_api.get("/api/v1/diagnoses/").status_code == 200
    django_user_model.objects.filter(pk=owner.pk).update(consented_at=None)
    assert owner_api.delete("/api/v1/auth/token/").status_code in (200, 204)  # the token can always go


def test_it_does_not_ask_staff_to_agree(client, reviewer):
    response = client.post(reverse("login"), {"username": "dr-reviewer", "password": "a long clinic secret"})
    assert reverse("agree") not in response["Location"]


def test_anyone_reads_the_privacy_notice_from_every_page(client):
    page = client.get(reverse("privacy")).content.decode()
    assert "Privacy notice" in page and "health data" in page
    for heading in ("What is kept", "Who can see it", "Improving the model", "How long, and how to take it back"):
        assert heading in page
    assert f'href="{reverse("privacy")}"' in client.get(reverse("home")).content.decode()


def test_it_refuses_a_sign_up_with_mismatched_passwords(client, django_user_model):
    response = client.post(
        reverse("signup"), {**SIGN_UP, "password2": "other"}
    )
    assert response.status_code == 200
    assert b"password fields" in response.content.lower()
    assert not django_user_model.objects.filter(username="ana").exists()


def test_it_signs_in_and_out(client, owner):
    response = client.post(reverse("login"), {"username": "patient", "password": "correct horse battery"})
    assert response.status_code == 302 and response.url == reverse("diagnoses:list")
    client.post(reverse("logout"))
    assert client.get(reverse("diagnoses:list")).status_code == 302


def test_a_form_sent_from_a_page_left_open_across_a_sign_in_gets_the_sites_page(owner):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    stale = str(browser.get(reverse("login")).context["csrf_token"])  # the form of one tab
    signed_in = browser.post(reverse("login"), {"username": "patient", "password": "correct horse battery",
                                                "csrfmiddlewaretoken": stale})  # in another tab:
    assert signed_in.status_code == 302  # signing in rotates the token
    response = browser.post(reverse("logout"), {"csrfmiddlewaretoken": stale})
    assert response.status_code == 403
    page = response.content.decode()
    assert "That form has expired" in page and "reload the page" in page
    assert "allow cookies" not in page
    assert "_auth_user_id" in browser.session  # nothing was sent or changed

    cookieless = Client(enforce_csrf_checks=True).post(reverse("login"), {"username": "x"})
    assert cookieless.status_code == 403 and "allow cookies" in cookieless.content.decode()


def test_it_changes_the_password(owner_client, owner):
    response = owner_client.post(
        reverse("password_change"),
        {"old_password": "correct horse battery", "new_password1": "brand new phrase 42", "new_password2": "brand new phrase 42"},
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("brand new phrase 42")


def test_it_sends_anonymous_visitors_to_sign_in(client):
    for url in (reverse("diagnoses:list"), reverse("diagnoses:new"), reverse("diagnoses:detail", args=[uuid.uuid4()])):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


# --- upload -----------------------------------------------------------------------------------

def test_it_uploads_and_lands_on_the_queued_result(owner_client, owner, jpeg_bytes):
    response = owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes)})
    diagnosis = Diagnosis.objects.get(owner=owner)
    assert response.status_code == 302 and response.url == diagnosis.get_absolute_url()
    page = owner_client.get(response.url)
    assert b"Queued" in page.content and diagnosis.get_status_display().encode() in page.content


def test_it_queues_the_task_only_once_the_row_is_committed(owner, jpeg_bytes, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    assert len(callbacks) == 1


def test_it_files_the_upload_under_a_new_tracked_mole(owner_client, owner, jpeg_bytes):
    owner_client.post(
        reverse("diagnoses:new"), {"image": upload(jpeg_bytes), "new_mole_name": "Left shoulder", "new_mole_body_site": "back"}
    )
    mole = Mole.objects.get(owner=owner)
    assert (mole.name, mole.body_site) == ("Left shoulder", "back")
    assert Diagnosis.objects.get(owner=owner).mole == mole


def test_it_refuses_a_new_mole_named_by_another_upload_at_the_same_moment(owner_client, owner, jpeg_bytes,
                                                                        monkeypatch):
    """Two uploads racing past the form's check of the name: the unique constraint decides."""
    Mole.objects.create(owner=owner, name="Left shoulder")  # the other upload's, made just now
    monkeypatch.setattr("diagnoses.models.MoleQuerySet.name_taken", lambda self, **kwargs: False)

    response = owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes), "new_mole_name": "Left shoulder"})

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "new_mole_name": ["You already track a mole with this name: pick it from the list."]}
    assert Mole.objects.count() == 1 and not Diagnosis.objects.exists()


def test_an_upload_to_a_mole_deleted_meanwhile_gets_the_forms_message_and_stores_nothing(
        owner_client, owner, jpeg_bytes, private_media, monkeypatch):
    """The mole deleted in another tab (or through the API) after the form checked it."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    create = services.diagnosis_create

    def deleted_in_another_tab_first(**kwargs):
        Mole.objects.filter(pk=mole.pk).delete()
        return create(**kwargs)

    monkeypatch.setattr(services, "diagnosis_create", deleted_in_another_tab_first)
    response = owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes), "mole": mole.pk})

    assert response.status_code == 400
    assert response.context["form"].errors == {"mole": [services.MOLE_DELETED]}
    assert not Diagnosis.objects.exists()
    assert not [name for _, _, names in os.walk(private_media) for name in names]


def test_it_shows_the_reason_next_to_the_field_and_stores_nothing(owner_client, private_media):
    response = owner_client.post(
        reverse("diagnoses:new"), {"image": upload(b"not an image at all", "x.jpg"), "new_mole_name": "Arm"}
    )
    assert response.status_code == 400
    assert b"not an image we can read" in response.content
    assert not Diagnosis.objects.exists() and not Mole.objects.exists()


def test_it_does_not_offer_another_users_mole(owner_client, outsider, jpeg_bytes):
    theirs = Mole.objects.create(owner=outsider, name="Theirs")
    response = owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes), "mole": theirs.pk})
    assert response.status_code == 400
    assert not Diagnosis.objects.exists()


# --- classification ---------------------------------------------------------------------------

def with_decision_bias(model_dir, out_dir, favoured: str):
    """A copy of a model artifact whose card's decision rule (ml.metrics.decide) shows the
    favoured class for every photo; the network, and so the probabilities, are the same."""
    shutil.copytree(model_dir, out_dir)
    card = json.loads((out_dir / CARD_FILENAME).read_text())
    # decide() clips P at 1e-12, so log P >= -27.6: a bias of 30 outweighs any probability
    bias = {code: 30.0 if code == favoured else 0.0 for code in CLASSES}
    card["decision"] = {**card.get("decision", {}), "class_bias": bias}
    save_card(card, out_dir)
    return out_dir


def test_it_classifies_with_the_model_and_stores_the_result(owner, jpeg_bytes, tiny_model_dir,
                                                            settings, tmp_path):
    """What is stored is the classifier's prediction for the stored photo, the class shown by
    the card's decision rule included: here a bias makes it differ from the most probable one."""
    from ml.inference import get_classifier

    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    with diagnosis.image.open("rb") as stored:
        stored_photo = stored.read()
    plain = get_classifier(tiny_model_dir).predict(stored_photo)
    least_likely = min(plain.probabilities, key=plain.probabilities.get)
    settings.ML_MODEL_DIR = with_decision_bias(tiny_model_dir, tmp_path / "biased", least_likely)
    expected = get_classifier(settings.ML_MODEL_DIR).predict(stored_photo)
    assert expected.predicted_class == least_likely != max(expected.probabilities,
                                                           key=expected.probabilities.get)

    result = services.diagnosis_classify(diagnosis_id=diagnosis.pk)

    assert result.status == Diagnosis.Status.DONE
    # the same numbers, not close ones: explain() predicts as predict() does, and each float is
    # stored as it came (a JSON field, a double column)
    assert result.probabilities == expected.probabilities
    assert result.malignant_probability == expected.malignant_probability
    assert result.predicted_class == expected.predicted_class
    assert (result.risk, result.model_version) == (expected.risk, expected.model_version)
    assert result.heatmap and result.heatmap.storage.exists(result.heatmap.name)
    assert result.started_at <= result.finished_at


def test_it_runs_the_task_when_the_upload_commits(owner, jpeg_bytes, tiny_model, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.DONE


def test_it_ignores_a_redelivered_task_for_a_finished_diagnosis(owner, jpeg_bytes, tiny_model):
    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    services.diagnosis_classify(diagnosis_id=diagnosis.pk)
    first = Diagnosis.objects.get(pk=diagnosis.pk)

    assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None
    again = Diagnosis.objects.get(pk=diagnosis.pk)
    assert (again.finished_at, again.heatmap.name) == (first.finished_at, first.heatmap.name)


def test_it_claims_a_diagnosis_only_once(owner, jpeg_bytes):
    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    assert services.diagnosis_claim(diagnosis_id=diagnosis.pk) is True
    assert services.diagnosis_claim(diagnosis_id=diagnosis.pk) is False
    assert Diagnosis.objects.get(pk=diagnosis.pk).status == Diagnosis.Status.RUNNING


def test_it_fails_with_a_readable_message_when_the_model_is_missing(owner, jpeg_bytes, settings, tmp_path):
    from diagnoses.tasks import classify_diagnosis

    settings.ML_MODEL_DIR = tmp_path / "no-model-here"
    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))

    with pytest.raises(services.ModelUnavailable):  # for the task to retry: the photo waits
        services.diagnosis_classify(diagnosis_id=diagnosis.pk)
    assert Diagnosis.objects.get(pk=diagnosis.pk).status == Diagnosis.Status.QUEUED
    classify_diagnosis.apply(args=[str(diagnosis.pk)], retries=classify_diagnosis.max_retries)

    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.FAILED
    assert diagnosis.error == services.MESSAGE_MODEL_UNAVAILABLE


def test_it_puts_the_row_back_in_the_queue_when_the_stored_image_is_unreachable(owner, jpeg_bytes, tiny_model):
    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    shutil.rmtree(Path(diagnosis.image.path).parent)  # the photos' folder gone: a network share that went away

    with pytest.raises(services.TransientClassificationError):
        services.diagnosis_classify(diagnosis_id=diagnosis.pk)
    assert Diagnosis.objects.get(pk=diagnosis.pk).status == Diagnosis.Status.QUEUED


def test_it_gives_up_after_the_last_retry_with_a_readable_message(owner, jpeg_bytes, tiny_model, eager_celery,
                                                                  caplog):
    from diagnoses.tasks import classify_diagnosis

    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    shutil.rmtree(Path(diagnosis.image.path).parent)  # a network share that stays away

    classify_diagnosis.apply(args=[str(diagnosis.pk)], retries=classify_diagnosis.max_retries)

    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.FAILED and diagnosis.error == services.MESSAGE_GAVE_UP
    # Celery logs the run as succeeded: the task's own ERROR line, with the last failure
    errors = [r for r in caplog.records if r.levelname == "ERROR" and str(diagnosis.pk) in r.getMessage()]
    assert len(errors) == 1 and "gave up" in errors[0].getMessage() and errors[0].exc_info


def test_a_late_give_up_leaves_a_result_another_run_finished(owner, make_diagnosis, monkeypatch, caplog):
    """A task's last try fails while another copy of it (redelivered) finishes the photo: the
    give-up that follows must not overwrite that result as failed."""
    from diagnoses.tasks import classify_diagnosis

    finished = make_diagnosis(owner, risk="high")

    def last_try_failed_meanwhile(*, diagnosis_id):
        raise services.TransientClassificationError("storage hiccup")

    monkeypatch.setattr(services, "diagnosis_classify", last_try_failed_meanwhile)
    classify_diagnosis.apply(args=[str(finished.pk)], retries=classify_diagnosis.max_retries)

    assert any("gave up" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    after = Diagnosis.objects.get(pk=finished.pk)
    assert (after.status, after.error, after.risk, after.finished_at) == (
        Diagnosis.Status.DONE, finished.error, "high", finished.finished_at)


# --- pages from both sides --------------------------------------------------------------------

def test_it_shows_the_result_with_all_seven_classes_to_the_owner(owner_client, owner, jpeg_bytes):
    diagnosis = done_diagnosis(owner, jpeg_bytes, risk="medium", malignant=0.31)
    page = owner_client.get(diagnosis.get_absolute_url()).content.decode()
    for name in ("Melanoma", "Melanocytic nevus", "Basal cell carcinoma", "Actinic keratosis",
                 "Benign keratosis", "Dermatofibroma", "Vascular lesion"):
        assert name in page
    assert "31.0%" in page and "Medium risk" in page and "test-model" in page
    assert "not a diagnosis" in page


def test_it_returns_the_rendered_result_on_the_status_endpoint(owner_client, owner, jpeg_bytes):
    diagnosis = done_diagnosis(owner, jpeg_bytes)
    data = owner_client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()
    assert data["status"] == "done" and "Low risk" in data["html"]


@pytest.mark.parametrize(
    ("status", "waited", "late"),
    [("queued", 20, False), ("queued", 300, True), ("running", 20, False), ("running", 300, True), ("done", 300, False)],
)
def test_it_tells_the_patient_when_the_analysis_is_late(owner_client, owner, make_diagnosis, status, waited, late):
    diagnosis = make_diagnosis(owner, status=status)
    moment = timezone.now() - timedelta(seconds=waited)
    if status == "running":  # queued long ago; what counts is how long the worker has had it
        Diagnosis.objects.filter(pk=diagnosis.pk).update(queued_at=moment - timedelta(hours=1), started_at=moment)
    else:
        Diagnosis.objects.filter(pk=diagnosis.pk).update(queued_at=moment)

    data = owner_client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()
    page = owner_client.get(diagnosis.get_absolute_url()).content.decode()

    assert data["late"] is late
    assert Diagnosis.objects.late().filter(pk=diagnosis.pk).exists() is late  # the admin's count
    assert ("taking longer than usual" in data["html"]) is late
    assert f'data-late="{str(late).lower()}"' in page


def test_it_does_not_call_a_just_rerun_analysis_of_an_old_photo_late(owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, age_days=30)

    services.diagnosis_requeue(diagnosis=diagnosis)

    assert diagnosis.status == "queued" and not diagnosis.is_late
    assert not Diagnosis.objects.late().exists()


@pytest.mark.parametrize("view", ["diagnoses:detail", "diagnoses:status", "diagnoses:delete"])
def test_it_hides_a_diagnosis_from_an_outsider(outsider_client, owner, jpeg_bytes, view):
    diagnosis = done_diagnosis(owner, jpeg_bytes)
    assert outsider_client.get(reverse(view, args=[diagnosis.pk])).status_code == 404


@pytest.mark.parametrize("kind", ["image", "thumbnail", "heatmap"])
def test_it_serves_private_files_to_the_owner_and_reviewers_only(client, owner, outsider, reviewer, django_user_model, jpeg_bytes, kind):
    diagnosis = done_diagnosis(owner, jpeg_bytes)
    diagnosis.heatmap.save("heat.png", ContentFile(b"\x89PNG fake but present"), save=True)
    url = reverse("diagnoses:file", args=[diagnosis.pk, kind])

    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(owner)
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content)
    assert "private" in response["Cache-Control"]
    client.force_login(django_user_model.objects.create_user("clerk", "clerk@example.com", "x", is_staff=True))
    assert client.get(url).status_code == 404  # staff without the permission to view diagnoses
    client.force_login(reviewer)
    assert client.get(url).status_code == 404  # a clinician who has not passed the second sign-in step
    pass_second_step(client, reviewer)
    assert client.get(url).status_code == 200


def test_it_has_no_public_media_url(client, owner, jpeg_bytes):
    diagnosis = done_diagnosis(owner, jpeg_bytes)
    assert client.get("/media/" + diagnosis.image.name).status_code == 404


def test_it_lists_only_the_owners_history_newest_first(owner_client, owner, outsider, jpeg_bytes):
    older = done_diagnosis(owner, jpeg_bytes)
    newer = done_diagnosis(owner, jpeg_bytes, risk="high", malignant=0.9)
    theirs = done_diagnosis(outsider, jpeg_bytes)
    page = owner_client.get(reverse("diagnoses:list")).content.decode()
    assert page.index(str(newer.pk)) < page.index(str(older.pk))
    assert str(theirs.pk) not in page


def test_it_paginates_the_history(owner_client, owner):
    Diagnosis.objects.bulk_create(Diagnosis(owner=owner, image="x.jpg", thumbnail="x.jpg") for _ in range(30))
    first = owner_client.get(reverse("diagnoses:list"))
    last = owner_client.get(reverse("diagnoses:list") + "?page=3")
    assert len(first.context["page"]) == 12 and len(last.context["page"]) == 6


def history_queries(client, owner, count):
    Diagnosis.objects.filter(owner=owner).delete()
    moles = [Mole.objects.create(owner=owner, name=f"Mole {i}") for i in range(3)]
    Diagnosis.objects.bulk_create(
        Diagnosis(owner=owner, mole=moles[i % 3], image="x.jpg", thumbnail="x.jpg", status="done", risk="low",
                  malignant_probability=0.1)
        for i in range(count)
    )
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("diagnoses:list")).status_code == 200
    Mole.objects.filter(owner=owner).delete()
    return len(queries)


def test_it_renders_the_history_in_a_constant_number_of_queries(owner_client, owner):
    short, long = history_queries(owner_client, owner, 10), history_queries(owner_client, owner, 1000)
    assert 0 < short == long


def test_it_deletes_a_diagnosis_and_its_files(owner_client, owner, jpeg_bytes, private_media, django_capture_on_commit_callbacks):
    diagnosis = done_diagnosis(owner, jpeg_bytes)
    paths = [f.path for f in diagnosis.stored_files()]
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("diagnoses:delete", args=[diagnosis.pk]))
    assert response.status_code == 302
    assert not Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    assert not any(os.path.exists(p) for p in paths)


def test_it_refuses_to_delete_another_users_diagnosis(outsider_client, owner, jpeg_bytes):
    diagnosis = done_diagnosis(owner, jpeg_bytes)
    assert outsider_client.post(reverse("diagnoses:delete", args=[diagnosis.pk])).status_code == 404
    assert Diagnosis.objects.filter(pk=diagnosis.pk).exists()


def test_it_shows_a_mole_page_to_its_owner_only(owner_client, outsider_client, owner, jpeg_bytes):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    done_diagnosis(owner, jpeg_bytes, mole=mole)
    assert b"Left shoulder" in owner_client.get(mole.get_absolute_url()).content
    assert outsider_client.get(mole.get_absolute_url()).status_code == 404


def test_it_resets_a_forgotten_password_by_e_mail(client, owner, mailoutbox):
    response = reset_password_by_email(client, mailoutbox, "patient@example.com", "a fresh pass phrase")

    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("a fresh pass phrase")


def test_it_sends_at_most_three_reset_e_mails_an_hour_to_one_address(client, owner, outsider, mailoutbox):
    answers = [ask_for_password_reset(client, "Patient@example.com") for _ in range(5)]

    assert all(answer.status_code == 302 and answer.url == reverse("password_reset_done") for answer in answers)
    assert [message.to for message in mailoutbox] == [["patient@example.com"]] * 3
    ask_for_password_reset(client, "outsider@example.com")
    assert mailoutbox[-1].to == ["outsider@example.com"]


def test_it_refuses_a_new_address_longer_than_the_column(owner_client):
    too_long = "a" * 250 + "@example.com"  # Django's check takes it; the 254-character column not
    response = owner_client.post(reverse("email_change"), {"email": too_long, "password": "correct horse battery"})
    assert response.status_code == 400 and "at most 254" in str(response.context["form"].errors["email"])


def test_a_signed_in_patient_sent_back_to_the_sign_in_page_lands_on_their_history(owner_client):
    response = owner_client.get(reverse("login") + "?next=" + reverse("login"))
    assert response.status_code == 302 and response.url == reverse("diagnoses:list")


def test_it_counts_the_spellings_of_one_address_that_match_one_account_together(settings):
    from accounts.views import link_email_allowed

    # Django finds sam's account for each of these (iexact, then NFKC and casefold)
    spellings = ["sam@example.org", "SAM@Example.org", "\u017fam@example.org", " sam@example.org"]
    assert [link_email_allowed(email) for email in spellings] == [True] * 3 + [False]
    assert link_email_allowed("other@example.org")


def test_it_leaves_the_reset_e_mail_to_the_worker(client, owner, mailoutbox, monkeypatch):
    """Sent from the request, the mail server's round trip would tell which addresses have an
    account; a mail server that is down would fail the page."""
    from accounts.tasks import send_password_reset_mail

    queued = []
    monkeypatch.setattr(send_password_reset_mail, "delay", lambda *args: queued.append(args))
    for email in ("patient@example.com", "nobody@example.com"):
        response = client.post(reverse("password_reset"), {"email": email})
        assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert mailoutbox == []
    [(subject, body, to, html, user_id)] = queued
    assert to == "patient@example.com" and "/accounts/password/reset/" in body and "\n" not in subject
    assert user_id == owner.pk

    send_password_reset_mail.apply(args=queued[0])  # as the worker runs it
    assert [(m.to, m.subject, m.body) for m in mailoutbox] == [(["patient@example.com"], subject, body)]


def test_it_sends_no_reset_e_mail_queued_for_an_account_deleted_meanwhile(client, owner, mailoutbox,
                                                                         monkeypatch):
    from accounts.tasks import send_password_reset_mail
    from diagnoses import services

    queued = []
    monkeypatch.setattr(send_password_reset_mail, "delay", lambda *args: queued.append(args))
    client.post(reverse("password_reset"), {"email": owner.email})
    client.post(reverse("password_reset"), {"email": owner.email})
    address = owner.email
    owner.email = "new@example.com"  # a changed address: its link would fail too
    owner.save()
    send_password_reset_mail.apply(args=queued[0]).get()
    owner.email = address
    owner.save()
    services.user_delete(user=owner)
    send_password_reset_mail.apply(args=queued[1]).get()
    assert mailoutbox == []


def test_it_sends_no_reset_e_mail_queued_for_an_account_deactivated_meanwhile(client, owner, mailoutbox,
                                                                             monkeypatch):
    """An account closed by the staff (is_active off) after the patient asked: its link would
    not work, and a closed account gets no mail. The same e-mail goes out once it is active."""
    from accounts.tasks import send_password_reset_mail

    queued = []
    monkeypatch.setattr(send_password_reset_mail, "delay", lambda *args: queued.append(args))
    client.post(reverse("password_reset"), {"email": owner.email})
    assert len(queued) == 1
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    send_password_reset_mail.apply(args=queued[0]).get()
    assert mailoutbox == []

    owner.is_active = True
    owner.save(update_fields=["is_active"])
    send_password_reset_mail.apply(args=queued[0]).get()
    assert [m.to for m in mailoutbox] == [[owner.email]]


def test_it_sends_no_mail_for_an_unknown_address(client, mailoutbox):
    response = ask_for_password_reset(client, "nobody@example.com")
    assert response.status_code == 302 and mailoutbox == []


@pytest.mark.django_db
def test_the_migrations_match_the_models():
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits 1 if one is missing


def test_it_asks_browsers_to_keep_no_copy_of_what_a_patient_sees(owner_client, owner, owner_api, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    pages = [reverse("diagnoses:list"), diagnosis.get_absolute_url(), reverse("diagnoses:report", args=[diagnosis.pk]),
             reverse("diagnoses:file", args=[diagnosis.pk, "image"]), reverse("account_export")]
    for url in pages:
        response = owner_client.get(url)
        assert response.status_code == 200, url
        assert set(response["Cache-Control"].split(", ")) == {"private", "no-store"}, url
    api = owner_api.get(f"/api/v1/diagnoses/{diagnosis.pk}/")
    assert set(api["Cache-Control"].split(", ")) == {"private", "no-store"}
    # a response that sets its own caching keeps it
    assert owner_client.get("/healthz")["Cache-Control"].startswith("max-age=0")
    static = owner_client.get("/static/css/molesite.css")  # WhiteNoise's, not this rule's
    assert static.status_code == 200 and "no-store" not in static.get("Cache-Control", "")
