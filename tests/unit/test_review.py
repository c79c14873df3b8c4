"""Reviewing a case: the review form, what the patient then sees, the queue's actions, createreviewer."""

import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.admin import CSV_HEADER, pseudonym, result_stamp
from diagnoses.models import Diagnosis, Mole, Review, ReviewRevision
from tests.conftest import PROBABILITIES_FOR_RISK, pass_second_step

pytestmark = pytest.mark.django_db

QUEUE_URL = reverse("admin:diagnoses_diagnosis_changelist")


def change_url(diagnosis):
    return reverse("admin:diagnoses_diagnosis_change", args=[diagnosis.pk])


def review_post(diagnosis, verdict="agree", label="", recommendation="dermatologist_soon", note="", existing=None):
    """The case page's review form as posted, with its stamps of the review and the result it
    showed (as they are in the database now: the test may change them after)."""
    data = {
        "review-TOTAL_FORMS": "1",
        "review-INITIAL_FORMS": "1" if existing else "0",
        "review-MIN_NUM_FORMS": "0",
        "review-MAX_NUM_FORMS": "1",
        "review-0-verdict": verdict,
        "review-0-label": label,
        "review-0-recommendation": recommendation,
        "review-0-note": note,
        "review-0-seen_result": result_stamp(Diagnosis.objects.get(pk=diagnosis.pk)),
    }
    if existing:
        data["review-0-id"] = str(existing.pk)
        data["review-0-diagnosis"] = str(existing.diagnosis_id)
        # the review as the page showed it (the test may have changed it in the database since)
        data["review-0-seen_review"] = Review.objects.get(pk=existing.pk).reviewed_at.isoformat()
    return data


@pytest.fixture
def viewer_client(django_user_model, client):
    """Staff who may look at diagnoses but not review them."""
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="a long viewer secret", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_diagnosis"))
    client.force_login(viewer)
    pass_second_step(client, viewer)
    return client


def run_action(client, action, diagnoses):
    return client.post(QUEUE_URL, {"action": action, "_selected_action": [str(d.pk) for d in diagnoses]})


# --- the review form on the case page ----------------------------------------------------------


def test_it_saves_a_review_and_stamps_the_reviewer_and_time(reviewer_client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    before = timezone.now()
    response = reviewer_client.post(
        change_url(diagnosis),
        review_post(diagnosis, verdict="disagree", label="bkl", recommendation="monitor", note="Looks like a seborrhoeic keratosis."),
    )
    assert response.status_code == 302
    review = Review.objects.get(diagnosis=diagnosis)
    assert review.reviewer == reviewer
    assert before <= review.reviewed_at <= timezone.now()
    assert (review.verdict, review.label, review.recommendation) == ("disagree", "bkl", "monitor")
    assert review.note == "Looks like a seborrhoeic keratosis."


def test_it_restamps_a_corrected_review_with_the_new_reviewer(reviewer_client, reviewer, admin_user, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="medium")
    (review,) = services.review_agree_many(diagnoses=[diagnosis], reviewer=admin_user).reviews
    Review.objects.filter(pk=review.pk).update(reviewed_at=timezone.now() - timedelta(days=2))

    response = reviewer_client.post(change_url(diagnosis), review_post(diagnosis, recommendation="urgent", existing=review))
    assert response.status_code == 302
    review.refresh_from_db()
    assert review.reviewer == reviewer
    assert review.recommendation == "urgent"
    assert review.reviewed_at > timezone.now() - timedelta(minutes=1)
    assert Review.objects.count() == 1


def test_a_corrected_review_keeps_what_it_replaced_at_the_desk_and_in_the_patients_download(
        reviewer_client, reviewer, admin_user, owner, owner_client, make_diagnosis):
    # The patient was told "urgent, go now" (and e-mailed): a correction must not erase that, or
    # who gave it, from the record.
    diagnosis = make_diagnosis(owner, risk="high")
    first = services.review_save(diagnosis=diagnosis, reviewer=admin_user, verdict="agree",
                                 recommendation="urgent", note="Please come in today.")
    Review.objects.filter(pk=first.pk).update(reviewed_at=timezone.now() - timedelta(days=1))
    first.refresh_from_db()

    response = reviewer_client.post(change_url(diagnosis), review_post(
        diagnosis, verdict="disagree", label="nv", recommendation="routine", existing=first))
    assert response.status_code == 302
    assert Review.objects.get(diagnosis=diagnosis).recommendation == "routine"
    (kept,) = ReviewRevision.objects.filter(diagnosis=diagnosis)
    assert (kept.reviewer, kept.reviewer_name, kept.verdict, kept.recommendation, kept.note) == (
        admin_user, admin_user.username, "agree", "urgent", "Please come in today.")
    assert kept.reviewed_at == first.reviewed_at and kept.superseded_at > kept.reviewed_at

    page = reviewer_client.get(change_url(diagnosis)).content.decode()
    assert "Earlier versions of the review" in page
    assert "Urgent: see a doctor now" in page and "Please come in today." in page
    log = reviewer_client.get(reverse("admin:diagnoses_review_change", args=[first.pk])).content.decode()
    assert "Please come in today." in log

    body = b"".join(owner_client.get(reverse("account_export")).streaming_content)
    (exported,) = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("data.json"))["diagnoses"]
    assert [(r["recommendation"], r["note"]) for r in exported["earlier_reviews"]] == [
        ("urgent", "Please come in today.")]
    assert exported["review"]["recommendation"] == "routine"


def test_a_case_never_corrected_shows_no_history(reviewer_client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", recommendation="urgent")
    assert not ReviewRevision.objects.exists()
    assert "Earlier versions of the review" not in reviewer_client.get(change_url(diagnosis)).content.decode()


def test_it_does_not_overwrite_a_review_saved_while_the_case_was_open(reviewer_client, admin_user, owner,
                                                                      make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    page = reviewer_client.get(change_url(diagnosis)).content.decode()
    assert 'name="review-0-seen_review"' in page and 'type="hidden"' in page.split('name="review-0-seen_review"')[0][-80:]
    # Another clinician saves first; this one, still on the page as it was, saves a disagreement.
    theirs = services.review_save(diagnosis=diagnosis, reviewer=admin_user, verdict="agree", recommendation="urgent")
    response = reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="disagree", label="nv",
                                                                       recommendation="routine"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "admin saved a review of this case at" in page and "(Agree with the model; urgent: see a doctor now)" in page
    assert "already exists" not in page
    kept = Review.objects.get(diagnosis=diagnosis)
    assert (kept.pk, kept.verdict, kept.reviewer) == (theirs.pk, "agree", admin_user)

    # Corrected from a page that showed an older version of the review: refused too.
    stale = review_post(diagnosis, verdict="disagree", label="nv", recommendation="routine", existing=theirs)
    services.review_save(diagnosis=diagnosis, reviewer=admin_user, verdict="agree", recommendation="monitor")
    assert reviewer_client.post(change_url(diagnosis), stale).status_code == 200
    assert Review.objects.get(diagnosis=diagnosis).recommendation == "monitor"

    # After reloading, the correction goes through.
    fresh = review_post(diagnosis, verdict="disagree", label="nv", recommendation="routine", existing=theirs)
    assert reviewer_client.post(change_url(diagnosis), fresh).status_code == 302
    assert Review.objects.get(diagnosis=diagnosis).verdict == "disagree"


def test_it_takes_the_predicted_class_as_label_when_the_clinician_agrees(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="agree"))
    assert Review.objects.get(diagnosis=diagnosis).label == "mel"


def test_it_requires_a_label_when_the_clinician_disagrees(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    response = reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="disagree", label=""))
    assert response.status_code == 200
    assert "Give your own label when you disagree" in response.content.decode()
    assert not Review.objects.exists()


def test_it_takes_no_label_when_the_clinician_cannot_tell_from_the_photo(reviewer_client, reviewer, owner,
                                                                         make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    response = reviewer_client.post(change_url(diagnosis),
                                    review_post(diagnosis, verdict="unclear", label="mel", recommendation="new_photo"))
    assert response.status_code == 200
    assert "Leave the label empty when you cannot tell from this photo." in response.content.decode()
    assert not Review.objects.exists()
    with pytest.raises(ValueError):
        services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="unclear", label="mel",
                             recommendation="new_photo")

    reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="unclear", recommendation="new_photo"))
    saved = Review.objects.get(diagnosis=diagnosis)
    assert (saved.verdict, saved.label, saved.recommendation) == ("unclear", "", "new_photo")


def test_it_refuses_to_review_an_unfinished_diagnosis(reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, status="queued")
    with pytest.raises(ValueError):
        services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", recommendation="routine")
    assert not Review.objects.exists()


def test_it_refuses_the_review_form_to_a_view_only_staff_user(owner, make_diagnosis, viewer_client):
    diagnosis = make_diagnosis(owner, risk="high")
    assert viewer_client.get(change_url(diagnosis)).status_code == 200
    assert viewer_client.post(change_url(diagnosis), review_post(diagnosis)).status_code == 403
    assert not Review.objects.exists()


# --- what the patient sees ---------------------------------------------------------------------


def test_it_shows_the_review_to_the_patient_prominently_when_pressing(reviewer_client, owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    reviewer_client.post(
        change_url(diagnosis), review_post(diagnosis, recommendation="dermatologist_soon", note="Please book an appointment.")
    )
    html = owner_client.get(reverse("diagnoses:detail", args=[diagnosis.pk])).content.decode()
    assert "Reviewed by a clinician" in html
    assert "See a dermatologist soon" in html
    assert "Please book an appointment." in html
    review_box = html[html.index("Reviewed by a clinician") - 300 : html.index("Reviewed by a clinician")]
    assert "alert-danger" in review_box

    status = owner_client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()
    assert "See a dermatologist soon" in status["html"]


def test_it_offers_the_patient_an_upload_when_the_clinician_asks_for_a_new_photo(reviewer, owner_client, owner,
                                                                                  make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left calf")
    diagnosis = make_diagnosis(owner, risk="high", mole=mole)
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         note="The photo is blurred.", notify=False)
    html = owner_client.get(diagnosis.get_absolute_url()).content.decode()
    assert "Take a new photo" in html and "The photo is blurred." in html
    assert f'href="{reverse("diagnoses:new")}?mole={mole.pk}">Upload a new photo of Left calf</a>' in html
    report = owner_client.get(reverse("diagnoses:report", args=[diagnosis.pk])).content.decode()
    assert "Take a new photo" in report and "cannot tell from this photo" in report

    other = make_diagnosis(owner, risk="high")
    services.review_save(diagnosis=other, reviewer=reviewer, verdict="agree", recommendation="dermatologist_soon",
                         notify=False)
    assert "Upload a new photo" not in owner_client.get(other.get_absolute_url()).content.decode()


def test_the_moles_pages_say_a_new_photo_was_asked_for_until_one_is_uploaded(reviewer, owner_client, owner,
                                                                             make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left calf")
    diagnosis = make_diagnosis(owner, risk="medium", mole=mole, age_days=3)
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         note="Too much glare.", notify=False)
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "A clinician asked for a new photo of this mole" in page and "“Too much glare.”" in page
    assert f'href="{reverse("diagnoses:new")}?mole={mole.pk}">Upload it now</a>' in page
    assert "A clinician asked for a new photo" in owner_client.get(reverse("diagnoses:moles")).content.decode()

    make_diagnosis(owner, risk="low", mole=mole)  # the new photo
    assert "asked for a new photo" not in owner_client.get(mole.get_absolute_url()).content.decode()
    assert "asked for a new photo" not in owner_client.get(reverse("diagnoses:moles")).content.decode()


@pytest.mark.parametrize("status, said", [
    ("failed", "could not be analysed."),
    ("queued", "is still being analysed."),
    ("running", "is still being analysed."),
])
def test_a_new_photo_not_analysed_leaves_the_clinicians_request_standing(reviewer, owner_client, owner_api, owner,
                                                                          make_diagnosis, status, said):
    """A newer photo that failed, or is still being analysed, has not answered the request: the
    mole's page, My moles and the API go on saying it, until a newer photo is analysed."""
    mole = Mole.objects.create(owner=owner, name="Left calf")
    diagnosis = make_diagnosis(owner, risk="medium", mole=mole, age_days=3)
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         note="Too much glare.", notify=False)
    make_diagnosis(owner, status=status, mole=mole, age_days=1)

    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "A clinician asked for a new photo of this mole" in page and "“Too much glare.”" in page
    assert f"Your photo of {(timezone.localdate() - timedelta(days=1)):%-d %b %Y} {said}" in page
    upload = f'href="{reverse("diagnoses:new")}?mole={mole.pk}">Upload another now</a>'
    assert (upload in page) is (status == "failed")  # one under way may yet answer it
    assert "A clinician asked for a new photo" in owner_client.get(reverse("diagnoses:moles")).content.decode()
    assert owner_api.get(f"/api/v1/moles/{mole.pk}/").json()["new_photo_requested"] is True

    make_diagnosis(owner, risk="low", mole=mole)  # a newer photo, analysed
    assert "asked for a new photo" not in owner_client.get(mole.get_absolute_url()).content.decode()
    assert "asked for a new photo" not in owner_client.get(reverse("diagnoses:moles")).content.decode()
    assert owner_api.get(f"/api/v1/moles/{mole.pk}/").json()["new_photo_requested"] is False


def test_a_rerun_of_the_photo_a_new_one_was_asked_for_leaves_the_request_standing(reviewer, owner_client,
                                                                                 owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left calf")
    diagnosis = make_diagnosis(owner, risk="medium", mole=mole)
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         notify=False)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(status=Diagnosis.Status.QUEUED)  # its re-run, review kept
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "A clinician asked for a new photo of this mole" in page and "still being analysed" not in page
    assert f'href="{reverse("diagnoses:new")}?mole={mole.pk}">Upload it now</a>' in page
    assert "A clinician asked for a new photo" in owner_client.get(reverse("diagnoses:moles")).content.decode()


def test_it_shows_no_review_before_a_clinician_has_looked(owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    html = owner_client.get(reverse("diagnoses:detail", args=[diagnosis.pk])).content.decode()
    assert "Reviewed by a clinician" not in html


def test_it_keeps_the_review_from_other_patients(outsider_client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    services.review_agree_many(diagnoses=[diagnosis], reviewer=reviewer)
    assert outsider_client.get(reverse("diagnoses:detail", args=[diagnosis.pk])).status_code == 404


# --- actions -----------------------------------------------------------------------------------


def test_it_marks_selected_as_reviewed_with_a_recommendation_from_the_risk(reviewer_client, reviewer, admin_user, owner, make_diagnosis):
    low, medium, high = (make_diagnosis(owner, risk=risk) for risk in ("low", "medium", "high"))
    running = make_diagnosis(owner, status="running")
    already = make_diagnosis(owner, risk="high")
    services.review_save(
        diagnosis=already, reviewer=admin_user, verdict="disagree", label="nv", recommendation="routine", note="Benign."
    )

    response = run_action(reviewer_client, "mark_reviewed", [low, medium, high, running, already])
    assert response.status_code == 302
    recommendations = {r.diagnosis_id: r.recommendation for r in Review.objects.filter(reviewer=reviewer)}
    assert recommendations == {low.pk: "routine", medium.pk: "dermatologist_soon", high.pk: "dermatologist_soon"}
    assert Review.objects.get(diagnosis=high).verdict == "agree"
    assert not Review.objects.filter(diagnosis=running).exists()
    kept = Review.objects.get(diagnosis=already)  # a clinician's own reading is never overwritten
    assert (kept.reviewer, kept.verdict, kept.note) == (admin_user, "disagree", "Benign.")
    messages = [str(m) for m in reviewer_client.get(QUEUE_URL).context["messages"]]
    assert "Marked 3 as reviewed." in messages
    assert "Skipped 2: not finished yet, or already reviewed." in messages


def test_it_counts_what_it_skipped_under_the_not_reviewed_filter_and_says_why(reviewer_client, reviewer,
                                                                            owner, make_diagnosis):
    fresh = [make_diagnosis(owner, risk="low") for _ in range(2)]
    rerun = make_diagnosis(owner, risk="high", model_version="model-2")
    services.review_save(diagnosis=rerun, reviewer=reviewer, verdict="agree", recommendation="dermatologist_soon")
    Review.objects.filter(diagnosis=rerun).update(model_version="model-1")  # of the result before a re-run

    response = reviewer_client.post(QUEUE_URL + "?reviewed=no", {
        "action": "mark_reviewed", "_selected_action": [str(d.pk) for d in (*fresh, rerun)]})
    assert response.status_code == 302
    messages = [str(m) for m in reviewer_client.get(QUEUE_URL).context["messages"]]
    assert "Marked 2 as reviewed." in messages
    assert any(m.startswith("Skipped 1 whose review is of an earlier result") for m in messages)
    assert not any("not finished yet" in m for m in messages)  # not "Skipped -2"


def test_bulk_agreement_reads_the_case_as_it_is_when_saving(reviewer, owner, make_diagnosis):
    listed = make_diagnosis(owner, risk="high")
    stale = Diagnosis.objects.get(pk=listed.pk)  # as the list loaded it
    services.diagnosis_requeue(diagnosis=listed)  # re-run meanwhile: no result to agree with
    agreement = services.review_agree_many(diagnoses=[stale], reviewer=reviewer)
    assert agreement.reviews == [] and agreement.skipped == {services.Skip.NOT_DONE_OR_REVIEWED: 1}
    assert not Review.objects.exists()


def test_it_offers_the_review_action_only_to_those_who_may_review(owner, make_diagnosis, viewer_client):
    diagnosis = make_diagnosis(owner, risk="high")
    actions = dict(viewer_client.get(QUEUE_URL).context["action_form"].fields["action"].choices)
    assert "mark_reviewed" not in actions and "requeue" not in actions
    assert "export_reviewed_csv" in actions
    run_action(viewer_client, "mark_reviewed", [diagnosis])
    assert not Review.objects.exists()


def test_it_requeues_selected_for_the_current_model(
    reviewer_client, owner, make_diagnosis, django_capture_on_commit_callbacks
):
    done = make_diagnosis(owner, risk="high")
    failed = make_diagnosis(owner, status="failed")
    heatmap = done.heatmap
    storage = heatmap.storage
    assert storage.exists(heatmap.name)

    with django_capture_on_commit_callbacks() as callbacks:
        response = run_action(reviewer_client, "requeue", [done, failed])
    assert response.status_code == 302
    for diagnosis in (done, failed):
        diagnosis.refresh_from_db()
        assert diagnosis.status == Diagnosis.Status.QUEUED
        assert diagnosis.started_at is None and diagnosis.finished_at is None
    assert not done.heatmap
    # The old result goes too: no page or API answer shows it beside the new status.
    result = ("model_version", "risk", "predicted_class", "malignant_probability", "probabilities")
    assert [getattr(done, field) for field in result] == ["", "", "", None, {}]
    # One queued classification per diagnosis (plus the old heatmap's removal).
    queued = [c for c in callbacks if "_send_classification" in c.__qualname__]
    assert len(queued) == 2


def test_it_does_not_requeue_a_diagnosis_already_waiting(reviewer_client, owner, make_diagnosis, django_capture_on_commit_callbacks):
    running = make_diagnosis(owner, status="running")
    with django_capture_on_commit_callbacks() as callbacks:
        run_action(reviewer_client, "requeue", [running])
    running.refresh_from_db()
    assert running.status == Diagnosis.Status.RUNNING
    assert callbacks == []


def test_it_reclassifies_a_requeued_diagnosis_with_the_current_model(
    reviewer_client, reviewer, owner, make_diagnosis, tiny_model, eager_celery, django_capture_on_commit_callbacks
):
    import json

    from django.test import Client

    diagnosis = make_diagnosis(owner, risk="high", model_version="old-model")
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", recommendation="urgent")
    patient = Client()
    patient.force_login(owner)
    page_url = reverse("diagnoses:detail", args=[diagnosis.pk])
    assert "review-earlier-result" not in patient.get(page_url).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        run_action(reviewer_client, "requeue", [diagnosis])
    diagnosis.refresh_from_db()
    card = json.loads((tiny_model / "model_card.json").read_text())
    assert diagnosis.status == Diagnosis.Status.DONE
    assert diagnosis.model_version == card["version"]
    assert diagnosis.heatmap
    # The review is kept, and says it was written about the old model's result.
    review = Review.objects.get(diagnosis=diagnosis)
    assert review.model_version == "old-model" and review.is_of_an_earlier_result
    page = patient.get(page_url).content.decode()
    assert 'data-testid="review-earlier-result"' in page and "old-model" in page

    # Saved again as it is, the review is of the new result, and the case leaves the queue.
    as_it_is = review_post(diagnosis, verdict="agree", label=review.label, recommendation="urgent", existing=review)
    assert reviewer_client.post(change_url(diagnosis), as_it_is).status_code == 302
    review.refresh_from_db()
    assert review.model_version == card["version"] and not review.is_of_an_earlier_result
    assert "review-earlier-result" not in patient.get(page_url).content.decode()


def finish(diagnosis, *, model_version):
    """The worker's result for a re-run diagnosis, as services._store_result writes it."""
    Diagnosis.objects.filter(pk=diagnosis.pk).update(
        status=Diagnosis.Status.DONE, model_version=model_version, finished_at=timezone.now(),
        risk="high", predicted_class="mel", malignant_probability=0.8, probabilities=PROBABILITIES_FOR_RISK["high"],
    )


def test_it_refuses_a_review_of_a_result_replaced_while_the_case_was_open(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high", model_version="old-model")
    as_shown = review_post(diagnosis, verdict="agree")

    # Another clinician re-runs the case: refused while it waits, and once another result is in.
    assert services.diagnosis_requeue(diagnosis=diagnosis)
    response = reviewer_client.post(change_url(diagnosis), as_shown)
    assert response.status_code == 200
    assert "classified again while you had it open, and the new result is not in yet" in response.content.decode()
    finish(diagnosis, model_version="new-model")
    response = reviewer_client.post(change_url(diagnosis), as_shown)
    assert response.status_code == 200
    assert "and its result is not the one you read. Nothing of yours was saved" in response.content.decode()
    assert not Review.objects.exists()

    # Reloaded, the page shows the new result, and the review is of it.
    assert reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="agree")).status_code == 302
    assert Review.objects.get(diagnosis=diagnosis).model_version == "new-model"


def test_it_does_not_bring_back_a_check_deleted_while_it_is_requeued(owner, make_diagnosis,
                                                                     django_capture_on_commit_callbacks):
    diagnosis = make_diagnosis(owner, risk="high")
    as_loaded = Diagnosis.objects.get(pk=diagnosis.pk)  # by the admin's action, before the patient deletes it
    services.diagnosis_delete(diagnosis=diagnosis)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.diagnosis_requeue(diagnosis=as_loaded) is False
    assert not Diagnosis.objects.exists()
    assert callbacks == []


def test_the_patient_keeps_the_review_when_a_rerun_fails(owner_client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high", model_version="old-model")
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", recommendation="urgent",
                         note="Please see a dermatologist this week.")
    services.diagnosis_requeue(diagnosis=diagnosis)
    services.diagnosis_fail(diagnosis_id=diagnosis.pk, message=services.MESSAGE_MODEL_UNAVAILABLE)

    # The report goes to the result page: a failed analysis has no report to print.
    for url in (reverse("diagnoses:detail", args=[diagnosis.pk]), reverse("diagnoses:report", args=[diagnosis.pk])):
        page = owner_client.get(url, follow=True).content.decode()
        assert services.MESSAGE_MODEL_UNAVAILABLE in page
        assert "Urgent: see a doctor now" in page and "Please see a dermatologist this week." in page
        assert "the result from model old-model; the photo's newer analysis did not complete." in page
        assert "Malignant probability" not in page and "malignant probability" not in page


def opt_in(*patients):
    for patient in patients:
        patient.model_improvement = True
        patient.save(update_fields=["model_improvement"])


def test_the_export_takes_only_patients_who_opted_in(reviewer_client, reviewer, owner, outsider, make_diagnosis):
    mine, theirs = make_diagnosis(owner, risk="high"), make_diagnosis(outsider, risk="low")
    services.review_agree_many(diagnoses=[mine], reviewer=reviewer)
    services.review_agree_many(diagnoses=[theirs], reviewer=reviewer)
    opt_in(owner)  # the outsider left the box as it was at sign-up: unticked

    response = run_action(reviewer_client, "export_reviewed_csv", [mine, theirs])
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["case_pseudonym"] for row in rows] == [pseudonym("case", mine.pk)]
    notice = reviewer_client.get(QUEUE_URL).content.decode()
    assert "Left out 1 reviewed case of patients who have not agreed to model improvement." in notice

    response = reviewer_client.post(QUEUE_URL, {"action": "export_reviewed_csv", "_selected_action": [str(theirs.pk)]},
                                    follow=True)
    assert "text/csv" not in response["Content-Type"]
    assert "Nothing to export: the patients of the 1 reviewed case have not agreed" in response.content.decode()


def test_it_exports_reviewed_cases_as_pseudonymous_csv(reviewer_client, reviewer, owner, outsider, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    first = make_diagnosis(owner, risk="high", mole=mole, age_days=10)
    second = make_diagnosis(owner, risk="low", mole=mole, age_days=5)
    theirs = make_diagnosis(outsider, risk="medium", age_days=1)
    unreviewed = make_diagnosis(owner, risk="medium")
    services.review_save(diagnosis=first, reviewer=reviewer, verdict="disagree", label="bkl", recommendation="monitor", note="Dear patient")
    services.review_agree_many(diagnoses=[second], reviewer=reviewer)
    services.review_agree_many(diagnoses=[theirs], reviewer=reviewer)
    opt_in(owner, outsider)

    response = run_action(reviewer_client, "export_reviewed_csv", [first, second, theirs, unreviewed])
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))

    assert [row["case_pseudonym"] for row in rows] == [pseudonym("case", d.pk) for d in (first, second, theirs)]
    # The case's id is on the patient's reports and in e-mailed links: not in the table.
    assert not any(str(d.pk)[:8] in body for d in (first, second, theirs))
    row = rows[0]
    assert (row["predicted_class"], row["clinician_label"], row["verdict"], row["recommendation"]) == (
        "mel",
        "bkl",
        "disagree",
        "monitor",
    )
    assert row["model_version"] == "test-model-1"
    # Days only: the reports show the times to the minute, which would find the row.
    assert row["created_on"] == timezone.localtime(first.created_at).date().isoformat()
    assert row["reviewed_on"] == timezone.localdate().isoformat()
    assert float(row["p_mel"]) == pytest.approx(0.62) and float(row["p_nv"]) == pytest.approx(0.2)
    assert float(row["malignant_probability"]) == pytest.approx(0.72)
    assert rows[1]["clinician_label"] == "nv"
    # Same patient, same pseudonym; another patient, another one; the same lesion is grouped.
    assert rows[0]["patient_pseudonym"] == rows[1]["patient_pseudonym"] != rows[2]["patient_pseudonym"]
    assert rows[0]["lesion_pseudonym"] == rows[1]["lesion_pseudonym"] and rows[2]["lesion_pseudonym"] == ""
    # No patient identifiers and no free text.
    for secret in ["patient", "outsider", "example.com", "Dear patient", "Left shoulder"]:
        assert secret not in body.split("\n", 1)[1], secret
    user_ids = {str(owner.pk), str(outsider.pk)}
    assert not any(value in user_ids for row in rows for value in row.values())


def test_the_export_is_streamed_its_rows_read_as_they_go_out(reviewer_client, reviewer, owner,
                                                             make_diagnosis):
    # Built whole before the first byte went out, the table of every reviewed case took seconds
    # and hundreds of megabytes.
    cases = [make_diagnosis(owner, risk=risk) for risk in ("high", "medium", "low")]
    for case in cases:
        services.review_agree_many(diagnoses=[case], reviewer=reviewer)
    opt_in(owner)

    response = run_action(reviewer_client, "export_reviewed_csv", cases)

    assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
    with CaptureQueriesContext(connection) as captured:
        lines = b"".join(response.streaming_content).decode().split("\r\n")
    assert len(captured) == 1  # the rows with their reviews, one query, once the download starts
    assert lines[0] == ",".join(CSV_HEADER) and lines[-1] == ""
    expected = [pseudonym("case", case.pk) for case in cases]
    assert [line.split(",")[0] for line in lines[1:-1]] == expected


def test_it_exports_nothing_when_none_selected_is_reviewed(reviewer_client, reviewer, owner, make_diagnosis):
    unreviewed = make_diagnosis(owner, risk="high")
    # Reviewed, then re-run with another model: the review is of figures no longer shown.
    rerun = make_diagnosis(owner, risk="high", model_version="old-model")
    services.review_agree_many(diagnoses=[rerun], reviewer=reviewer)
    services.diagnosis_requeue(diagnosis=rerun)
    finish(rerun, model_version="new-model")
    opt_in(owner)

    response = run_action(reviewer_client, "export_reviewed_csv", [unreviewed, rerun])
    assert response.status_code == 302
    messages = [str(m) for m in reviewer_client.get(QUEUE_URL).context["messages"]]
    assert "None of the selected cases has been reviewed (a review of a result that a re-run replaced does not " \
           "count until it is saved again)." in messages


# --- createreviewer ----------------------------------------------------------------------------


def test_it_creates_a_reviewer_account_without_prompting(monkeypatch):
    monkeypatch.setenv("DJANGO_REVIEWER_PASSWORD", "a long clinic secret")
    out = io.StringIO()
    call_command("createreviewer", "drgrey", "--email", "grey@example.com", "--noinput", stdout=out)
    user = get_user_model().objects.get(username="drgrey")
    assert user.is_staff and not user.is_superuser
    assert user.email == "grey@example.com"
    assert user.check_password("a long clinic secret")
    assert list(user.groups.values_list("name", flat=True)) == ["Reviewers"]
    assert "created" in out.getvalue()


def test_it_keeps_one_reviewers_group_with_exact_permissions(monkeypatch):
    group = Group.objects.get(name="Reviewers")
    group.permissions.clear()  # drifted, e.g. edited by hand
    call_command("createreviewer", "dra", "--password", "a long clinic secret", "--noinput")
    call_command("createreviewer", "drb", "--password", "a long clinic secret", "--noinput")
    assert Group.objects.filter(name="Reviewers").count() == 1
    assert set(group.permissions.values_list("codename", flat=True)) == set(services.REVIEWER_PERMISSIONS)
    assert group.user_set.count() == 2


def test_it_refuses_a_reviewer_without_password_or_with_a_weak_or_taken_name(owner, monkeypatch):
    monkeypatch.delenv("DJANGO_REVIEWER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="password"):
        call_command("createreviewer", "drc", "--noinput")
    with pytest.raises(CommandError, match="too common|too short"):
        call_command("createreviewer", "drc", "--password", "password", "--noinput")
    with pytest.raises(CommandError, match="already exists"):
        call_command("createreviewer", "patient", "--password", "a long clinic secret", "--noinput")
    owner.refresh_from_db()
    assert not owner.is_staff
    assert not get_user_model().objects.filter(username="drc").exists()


def test_it_prompts_for_what_is_missing(monkeypatch):
    from diagnoses.management.commands import createreviewer

    answers = iter(["drprompt", "prompt@example.com"])
    passwords = iter(["short", "short", "a long clinic secret", "a long clinic secret"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    monkeypatch.setattr(createreviewer.getpass, "getpass", lambda prompt="": next(passwords))
    monkeypatch.delenv("DJANGO_REVIEWER_PASSWORD", raising=False)
    err = io.StringIO()
    call_command("createreviewer", stdout=io.StringIO(), stderr=err)
    user = get_user_model().objects.get(username="drprompt")
    assert user.email == "prompt@example.com" and user.is_staff
    assert user.check_password("a long clinic secret")
    assert "too short" in err.getvalue()


# --- the patient's e-mail ---------------------------------------------------------------------


@pytest.fixture
def site_url(settings):
    settings.SITE_URL = "https://molesite.example.org"
    return settings.SITE_URL


def test_it_emails_the_patient_a_link_and_no_health_data_when_a_clinician_reviews(
    reviewer_client, owner, make_diagnosis, eager_celery, django_capture_on_commit_callbacks, mailoutbox, site_url
):
    diagnosis = make_diagnosis(owner, risk="high")
    with django_capture_on_commit_callbacks(execute=True):
        reviewer_client.post(
            change_url(diagnosis),
            review_post(diagnosis, verdict="disagree", label="bkl", recommendation="monitor", note="A seborrhoeic keratosis."),
        )

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["patient@example.com"]
    assert mail.subject == "A clinician has reviewed your mole check"
    assert f"{site_url}/diagnoses/{diagnosis.pk}/" in mail.body
    assert f"{site_url}/accounts/" in mail.body  # where to turn these e-mails off
    body = mail.body.lower()
    for private in ("seborrhoeic", "keratosis", "monitor", "bkl", "melanoma", "high", "%"):
        assert private not in body


def test_it_tells_the_patient_when_a_review_is_corrected(
    reviewer_client, admin_user, owner, make_diagnosis, eager_celery, django_capture_on_commit_callbacks, mailoutbox
):
    diagnosis = make_diagnosis(owner, risk="low")  # agreed with: a routine check
    with django_capture_on_commit_callbacks(execute=True):
        (review,) = services.review_agree_many(diagnoses=[diagnosis], reviewer=admin_user).reviews
    with django_capture_on_commit_callbacks(execute=True):
        reviewer_client.post(change_url(diagnosis), review_post(diagnosis, recommendation="monitor", existing=review))

    assert [m.subject for m in mailoutbox] == [
        "A clinician has reviewed your mole check",
        "The review of your mole check was updated",
    ]
    assert "has updated their review" in mailoutbox[1].body


def test_it_emails_each_patient_once_for_all_their_cases_marked_reviewed_in_bulk(
    reviewer_client, owner, outsider, make_diagnosis, eager_celery, django_capture_on_commit_callbacks, mailoutbox,
    site_url,
):
    mine = [make_diagnosis(owner, risk="low"), make_diagnosis(owner, risk="high")]
    theirs = make_diagnosis(outsider)
    with django_capture_on_commit_callbacks(execute=True):
        run_action(reviewer_client, "mark_reviewed", mine + [theirs, make_diagnosis(owner, status="running")])

    assert Review.objects.count() == 3
    by_patient = {m.to[0]: m for m in mailoutbox}
    assert len(mailoutbox) == 2 and set(by_patient) == {"patient@example.com", "outsider@example.com"}
    digest = by_patient["patient@example.com"]
    # the high one's review recommends a dermatologist soon (the low one's, a routine check)
    assert digest.subject == "A clinician asks you to act: please read the reviews of your mole checks"
    for diagnosis in mine:
        assert f"{site_url}/diagnoses/{diagnosis.pk}/" in digest.body
    assert str(theirs.pk) not in digest.body
    assert by_patient["outsider@example.com"].subject == "A clinician has reviewed your mole check"
    assert "high" not in digest.body.lower()


def test_it_still_sends_a_notice_queued_for_one_review_by_the_version_before_the_digest(
    reviewer, owner, make_diagnosis, mailoutbox
):
    from diagnoses.tasks import send_review_notice

    review = services.review_save(diagnosis=make_diagnosis(owner), reviewer=reviewer, verdict="agree",
                                  recommendation="routine", notify=False)  # no notice queued
    send_review_notice.apply(args=(review.pk,)).get()

    assert [m.subject for m in mailoutbox] == ["A clinician has reviewed your mole check"]


def test_it_sends_nothing_to_a_patient_who_turned_the_emails_off_or_has_no_address(
    reviewer, owner, outsider, make_diagnosis, eager_celery, django_capture_on_commit_callbacks, mailoutbox
):
    owner.review_emails = False
    owner.save()
    outsider.email = ""
    outsider.save()
    with django_capture_on_commit_callbacks(execute=True):
        for patient in (owner, outsider):
            services.review_agree_many(diagnoses=[make_diagnosis(patient)], reviewer=reviewer)

    assert Review.objects.count() == 2
    assert mailoutbox == []


def test_it_retries_the_email_while_the_mail_server_is_down(
    reviewer, owner, make_diagnosis, eager_celery, django_capture_on_commit_callbacks, mailoutbox, monkeypatch
):
    from django.core import mail

    from molesite import mail as molesite_mail

    attempts = []
    real_send = molesite_mail.send_mail

    def flaky_send(*args, **kwargs):
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("mail server down")
        return real_send(*args, **kwargs)

    monkeypatch.setattr(molesite_mail, "send_mail", flaky_send)
    with django_capture_on_commit_callbacks(execute=True):
        services.review_agree_many(diagnoses=[make_diagnosis(owner)], reviewer=reviewer)

    assert len(attempts) == 3
    assert len(mail.outbox) == 1


def test_it_keeps_the_review_when_the_notice_cannot_be_queued(
    reviewer_client, owner, make_diagnosis, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    from diagnoses.tasks import send_review_notice

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(send_review_notice, "delay", broker_down)
    diagnosis = make_diagnosis(owner, risk="high")
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer_client.post(change_url(diagnosis), review_post(diagnosis))

    assert response.status_code == 302
    assert Review.objects.filter(diagnosis=diagnosis).exists()
    assert "broker down" in caplog.text


@pytest.mark.parametrize("deleted", ["the check", "the account"])
def test_deleting_takes_the_admins_history_of_the_case_with_it(reviewer_client, owner, make_diagnosis, deleted):
    from django.contrib.admin.models import LogEntry

    diagnosis, kept = make_diagnosis(owner), make_diagnosis(owner)
    for case in (diagnosis, kept):
        assert reviewer_client.post(change_url(case), review_post(case)).status_code == 302
    # The admin's history names the patient ("patient's photo of ...") and the review saved.
    assert LogEntry.objects.filter(object_repr__contains=owner.username).count() == 2

    if deleted == "the check":
        services.diagnosis_delete(diagnosis=diagnosis)
        assert list(LogEntry.objects.values_list("object_id", flat=True)) == [str(kept.pk)]
    else:
        services.user_delete(user=owner)
        assert not LogEntry.objects.exists()


def test_deleting_a_check_whose_result_came_in_since_it_was_loaded_deletes_the_new_heatmap(
        owner, make_diagnosis, django_capture_on_commit_callbacks):
    loaded = make_diagnosis(owner, status="running")
    stored_meanwhile = make_diagnosis(owner)  # a finished row, to lend its heatmap to the loaded one
    Diagnosis.objects.filter(pk=loaded.pk).update(status="done", heatmap=stored_meanwhile.heatmap.name)
    assert not loaded.heatmap  # the copy the page loaded knows nothing of it
    storage = stored_meanwhile.heatmap.storage

    with django_capture_on_commit_callbacks(execute=True):
        services.diagnosis_delete(diagnosis=loaded)
    assert not storage.exists(stored_meanwhile.heatmap.name)


# --- verdict and label agree; the page says what it saved; the log keeps who wrote it --------


def case_page(client, diagnosis):
    response = client.get(change_url(diagnosis))
    assert response.status_code == 200
    return response


def messages_of(response):
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def test_agreeing_refuses_another_label_and_disagreeing_the_models_class(reviewer_client, reviewer, owner,
                                                                         make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="low")  # the model's class: nv, melanocytic nevus
    agree_mel = reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="agree", label="mel",
                                                                          recommendation="routine"))
    assert agree_mel.status_code == 200
    assert "Agreeing with the model takes its class, Melanocytic nevus" in agree_mel.content.decode()
    disagree_nv = reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="disagree", label="nv",
                                                                            recommendation="routine"))
    assert disagree_nv.status_code == 200
    assert "Melanocytic nevus is the model&#x27;s class" in disagree_nv.content.decode()
    assert not Review.objects.exists()

    # Agreeing with the model's own class is taken, and the service never stores another.
    ok = review_post(diagnosis, verdict="agree", label="nv", recommendation="routine")
    assert reviewer_client.post(change_url(diagnosis), ok).status_code == 302
    review = services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", label="mel",
                                  recommendation="routine", notify=False)
    assert Review.objects.get(pk=review.pk).label == "nv"


def test_a_review_of_an_earlier_result_is_not_offered_as_the_new_ones_verdict(reviewer_client, reviewer, owner,
                                                                               make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high", model_version="old-model")  # mel
    earlier = services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree",
                                   recommendation="dermatologist_soon", note="Come in.", notify=False)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(
        model_version="new-model", finished_at=timezone.now(), risk="low", predicted_class="nv",
        malignant_probability=0.05, probabilities=PROBABILITIES_FOR_RISK["low"])

    page = case_page(reviewer_client, diagnosis)
    form = page.context["inline_admin_formsets"][0].formset.forms[0]
    assert (form.initial["verdict"], form.initial["label"]) == ("", "")
    assert (form.initial["recommendation"], form.initial["note"]) == ("dermatologist_soon", "Come in.")
    assert ("The review on file was of an earlier result (model version old-model: agree with the model, "
            "label: Melanoma)") in page.content.decode()

    # Saved as the page shows it, it asks for a verdict; it never becomes "agree · Melanoma" on nv.
    as_shown = review_post(diagnosis, verdict="", label="", recommendation="dermatologist_soon", note="Come in.",
                           existing=earlier)
    response = reviewer_client.post(change_url(diagnosis), as_shown)
    assert response.status_code == 200
    assert Review.objects.get(pk=earlier.pk).model_version == "old-model"
    as_shown["review-0-verdict"] = "agree"
    assert reviewer_client.post(change_url(diagnosis), as_shown).status_code == 302
    saved = Review.objects.get(pk=earlier.pk)
    assert (saved.verdict, saved.label, saved.model_version) == ("agree", "nv", "new-model")


def test_a_save_that_stores_no_review_says_so_instead_of_success(reviewer_client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    empty = review_post(diagnosis, verdict="", label="", recommendation="", note="")
    response = reviewer_client.post(change_url(diagnosis), empty, follow=True)
    assert messages_of(response) == [("warning", "No review saved: choose a verdict and a recommendation.")]
    assert response.redirect_chain[-1][0] == change_url(diagnosis)  # still to review
    assert not Review.objects.exists()

    response = reviewer_client.post(change_url(diagnosis), review_post(diagnosis), follow=True)
    assert [level for level, _ in messages_of(response)] == ["success"]
    unchanged = review_post(diagnosis, label="mel", existing=Review.objects.get(diagnosis=diagnosis))  # as shown
    response = reviewer_client.post(change_url(diagnosis), unchanged, follow=True)
    assert messages_of(response) == [("warning", "No review saved: you changed nothing, and the review on file stands.")]

    # A case without a result has no form and no save buttons; a stray post saves nothing.
    failed = make_diagnosis(owner, status="failed")
    assert 'name="_save"' not in case_page(reviewer_client, failed).content.decode()
    assert 'name="_save"' in case_page(reviewer_client, diagnosis).content.decode()
    response = reviewer_client.post(change_url(failed), {"_save": "Save"}, follow=True)
    assert messages_of(response) == [
        ("warning", "No review saved: this case has no result to review (queued, running or failed).")]


def test_marking_none_as_reviewed_is_a_warning_not_a_success(reviewer_client, owner, make_diagnosis):
    failed = make_diagnosis(owner, status="failed")
    response = reviewer_client.post(QUEUE_URL, {"action": "mark_reviewed", "_selected_action": [str(failed.pk)]},
                                    follow=True)
    assert ("warning", "Marked 0 as reviewed.") in messages_of(response)
    done = make_diagnosis(owner, risk="high")
    response = reviewer_client.post(QUEUE_URL, {"action": "mark_reviewed", "_selected_action": [str(done.pk)]},
                                    follow=True)
    assert ("success", "Marked 1 as reviewed.") in messages_of(response)


def test_the_reviewers_name_outlives_their_account(reviewer_client, admin_client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    response = reviewer_client.post(change_url(diagnosis), review_post(diagnosis, recommendation="urgent"))
    assert response.status_code == 302
    assert Review.objects.get(diagnosis=diagnosis).reviewer_name == "dr-reviewer"

    reviewer.delete()
    review = Review.objects.get(diagnosis=diagnosis)
    assert review.reviewer is None
    log = admin_client.get(reverse("admin:diagnoses_review_changelist")).content.decode()
    assert "dr-reviewer (account deleted)" in log
    assert "dr-reviewer (account deleted)" in case_page(admin_client, diagnosis).content.decode()
    found = admin_client.get(reverse("admin:diagnoses_review_changelist"), {"q": "dr-reviewer"})
    assert list(found.context["cl"].result_list) == [review]
