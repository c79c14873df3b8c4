"""The review desk never lowers the urgency of advice: bulk agreement's recommendations and the
cases it leaves for a one-by-one review, the queue's order, the patient's e-mail about a review
that asks them to act, and the clinician's warning when no e-mail will reach the patient."""

import pytest
from django.urls import reverse

from diagnoses import services
from diagnoses.models import Diagnosis, Review
from tests.unit.test_review import review_post

pytestmark = pytest.mark.django_db

QUEUE_URL = reverse("admin:diagnoses_diagnosis_changelist")


def change_url(diagnosis):
    return reverse("admin:diagnoses_diagnosis_change", args=[diagnosis.pk])


def mark_reviewed(client, diagnoses):
    client.post(QUEUE_URL, {"action": "mark_reviewed", "_selected_action": [str(d.pk) for d in diagnoses]})
    return [str(m) for m in client.get(QUEUE_URL).context["messages"]]


def after_a_higher_photo(owner, make_diagnosis, *, earlier="high", now="low"):
    """A tracked mole's photo rated `now`, taken after one rated `earlier`."""
    mole = services.mole_create(owner=owner, name="Left shoulder")
    before = make_diagnosis(owner, risk=earlier, mole=mole, age_days=10)
    return before, make_diagnosis(owner, risk=now, mole=mole, age_days=1)


# --- 1. agreeing in bulk -----------------------------------------------------------------------


def test_agreeing_with_a_medium_result_recommends_a_dermatologist_soon(reviewer_client, reviewer, owner,
                                                                       make_diagnosis):
    """The band's own advice sees a doctor within 4 weeks: not "monitor for changes"."""
    medium = make_diagnosis(owner, risk="medium")
    case_page = reviewer_client.get(change_url(medium)).content.decode()
    assert "Suggested for medium risk: See a dermatologist soon." in case_page

    assert mark_reviewed(reviewer_client, [medium])[0] == "Marked 1 as reviewed."
    assert Review.objects.get(diagnosis=medium).recommendation == Review.Recommendation.DERMATOLOGIST_SOON


def test_agreeing_in_bulk_leaves_poor_photos_and_results_after_a_higher_photo(reviewer_client, owner,
                                                                             make_diagnosis):
    poor = make_diagnosis(owner, risk="low")
    Diagnosis.objects.filter(pk=poor.pk).update(photo_issues=["dark"])
    before, after_higher = after_a_higher_photo(owner, make_diagnosis)
    plain = make_diagnosis(owner, risk="low")

    messages = mark_reviewed(reviewer_client, [poor, after_higher, plain])

    assert set(Review.objects.values_list("diagnosis_id", flat=True)) == {plain.pk}
    assert "Marked 1 as reviewed." in messages
    assert any(m.startswith("Left 2 for a one-by-one review: a photo that failed the quality check")
               for m in messages)
    assert not any(m.startswith("Skipped") for m in messages)


def test_agreeing_in_bulk_settles_a_result_after_a_higher_photo_a_clinician_judged(reviewer_client, reviewer,
                                                                                  owner, make_diagnosis):
    before, after_higher = after_a_higher_photo(owner, make_diagnosis)
    services.review_save(diagnosis=before, reviewer=reviewer, verdict="disagree", label="nv",
                         recommendation="routine")
    assert mark_reviewed(reviewer_client, [after_higher]) == ["Marked 1 as reviewed."]


# --- 2. the queue's order ----------------------------------------------------------------------


def queue(client, **params):
    return list(client.get(QUEUE_URL, params).context["cl"].result_list)


def test_the_queue_ranks_a_result_after_a_higher_photo_by_that_photo(reviewer_client, owner, make_diagnosis):
    medium = make_diagnosis(owner, risk="medium", age_days=20)
    high_before, low_after_high = after_a_higher_photo(owner, make_diagnosis)

    assert queue(reviewer_client) == [high_before, low_after_high, medium]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert html.count("ranked as the previous photo:") == 1
    assert "ranked as the previous photo: <strong" in html and ">high</strong></small>" in html
    # sorted by the Risk column, too (the two high ones in either order)
    assert set(queue(reviewer_client, o="3")[:2]) == {high_before, low_after_high}


def test_the_queue_ranks_by_the_result_itself_once_the_earlier_photo_is_judged(reviewer_client, reviewer, owner,
                                                                              make_diagnosis):
    medium = make_diagnosis(owner, risk="medium", age_days=20)
    high_before, low_after_high = after_a_higher_photo(owner, make_diagnosis)
    services.review_save(diagnosis=high_before, reviewer=reviewer, verdict="disagree", label="nv",
                         recommendation="routine")

    assert queue(reviewer_client) == [medium, low_after_high, high_before]
    assert "ranked as the previous photo" not in reviewer_client.get(QUEUE_URL).content.decode()


def test_the_queue_ranks_failed_cases_apart_above_the_low_ones(reviewer_client, owner, make_diagnosis):
    """Not among the lows, where they went unseen: no review closes one, and its risk is unknown
    (while no later photo of its mole answers it: test_failed_cases_at_the_desk)."""
    low_new = make_diagnosis(owner, risk="low", age_days=1)
    mole = services.mole_create(owner=owner, name="Left shoulder")
    failed = make_diagnosis(owner, status="failed", mole=mole, age_days=5)
    low_old = make_diagnosis(owner, risk="low", age_days=9)
    queued = make_diagnosis(owner, status="queued", age_days=20)
    medium = make_diagnosis(owner, risk="medium", age_days=2)

    assert queue(reviewer_client) == [medium, failed, low_old, low_new, queued]


# --- 3. the patient's e-mail and the clinician's warning ---------------------------------------


@pytest.fixture
def notices(eager_celery, django_capture_on_commit_callbacks, mailoutbox):
    """Run what the request queues after its commit (the e-mail) and return the outbox."""
    def send(post):
        with django_capture_on_commit_callbacks(execute=True):
            response = post()
        return response, mailoutbox
    return send


def save_review(client, diagnosis, recommendation, note="Come in this week: it has changed."):
    return client.post(change_url(diagnosis), review_post(diagnosis, recommendation=recommendation, note=note),
                       follow=True)


@pytest.mark.parametrize("recommendation", ["urgent", "dermatologist_soon"])
def test_a_review_asking_the_patient_to_act_says_so_first_with_the_clinics_contact(
        reviewer_client, owner, make_diagnosis, notices, settings, recommendation):
    settings.CLINIC_CONTACT = "Skin clinic, +44 20 7946 0000"
    diagnosis = make_diagnosis(owner, risk="high")
    _, outbox = notices(lambda: save_review(reviewer_client, diagnosis, recommendation))

    (mail,) = outbox
    assert mail.subject == "A clinician asks you to act: please read the review of your mole check"
    first = mail.body.split("\n")[2]  # after "Hello patient," and a blank line
    assert "asks you to act on it: please open the result and read the review now" in first
    assert "contact the clinic: Skin clinic, +44 20 7946 0000" in mail.body
    # none of the clinician's words, nor the result
    for private in ("come in", "changed", "urgent", "dermatologist", "high"):
        assert private not in mail.body.lower()


def test_a_routine_review_reads_as_before_without_the_contact(reviewer_client, owner, make_diagnosis, notices,
                                                               settings):
    settings.CLINIC_CONTACT = "Skin clinic, +44 20 7946 0000"
    diagnosis = make_diagnosis(owner, risk="low")
    _, outbox = notices(lambda: save_review(reviewer_client, diagnosis, "routine", note=""))

    assert outbox[0].subject == "A clinician has reviewed your mole check"
    assert "act" not in outbox[0].body.split() and "Skin clinic" not in outbox[0].body


def test_one_email_for_several_checks_marks_those_to_act_on(reviewer_client, owner, make_diagnosis, notices):
    low, high = make_diagnosis(owner, risk="low", age_days=2), make_diagnosis(owner, risk="high", age_days=1)
    _, outbox = notices(lambda: mark_reviewed(reviewer_client, [low, high]))

    (mail,) = outbox
    assert mail.subject == "A clinician asks you to act: please read the reviews of your mole checks"
    assert "asks you to act on one of them" in mail.body.split("\n")[2]
    marked = [line for line in mail.body.splitlines() if "(please act on this one)" in line]
    assert len(marked) == 1 and f"/diagnoses/{high.pk}/" in marked[0]


def unconfirmed(user):
    type(user).objects.filter(pk=user.pk).update(email_confirmed_at=None)


def emails_off(user):
    type(user).objects.filter(pk=user.pk).update(review_emails=False)


def no_address(user):
    type(user).objects.filter(pk=user.pk).update(email="")


@pytest.mark.parametrize("unreachable", [unconfirmed, emails_off, no_address])
def test_the_clinician_is_warned_when_a_review_asking_to_act_will_not_be_emailed(
        reviewer_client, owner, make_diagnosis, notices, unreachable):
    diagnosis = make_diagnosis(owner, risk="high")
    unreachable(owner)
    response, outbox = notices(lambda: save_review(reviewer_client, diagnosis, "urgent"))

    assert outbox == [] and Review.objects.filter(diagnosis=diagnosis).exists()
    warnings = [str(m) for m in response.context["messages"] if "No e-mail will tell" in str(m)]
    assert warnings == ["No e-mail will tell patient about the review asking them to act (no confirmed address, "
                        "or review e-mails turned off): reach them another way."]


def test_no_warning_when_the_patient_is_emailed_or_need_not_act(reviewer_client, owner, outsider,
                                                                 make_diagnosis, notices):
    emailed = make_diagnosis(owner, risk="high")
    unconfirmed(outsider)
    routine = make_diagnosis(outsider, risk="low")
    for diagnosis, recommendation in ((emailed, "urgent"), (routine, "routine")):
        response, _ = notices(lambda: save_review(reviewer_client, diagnosis, recommendation))
        assert not any("No e-mail will tell" in str(m) for m in response.context["messages"])


def test_agreeing_in_bulk_warns_of_patients_no_email_will_tell(reviewer_client, owner, outsider, make_diagnosis,
                                                               notices):
    emails_off(owner)
    no_address(outsider)
    cases = [make_diagnosis(owner, risk="medium"), make_diagnosis(outsider, risk="high"),
             make_diagnosis(outsider, risk="low")]
    messages, outbox = notices(lambda: mark_reviewed(reviewer_client, cases))

    assert outbox == [] and Review.objects.count() == 3
    assert "No e-mail will tell 2 patients about the review asking them to act (no confirmed address, " \
           "or review e-mails turned off): reach them another way." in messages


# --- 4. what agreeing suggests: never less than the patient is told without a review -----------


def test_a_low_result_on_a_palm_or_sole_is_left_out_of_bulk_and_suggests_a_dermatologist(
        reviewer_client, owner, make_diagnosis):
    """Its patient is told to have it checked by a doctor: "routine check" would undercut that."""
    sole = services.mole_create(owner=owner, name="Left sole", body_site="acral")
    low = make_diagnosis(owner, risk="low", mole=sole)
    case_page = reviewer_client.get(change_url(low)).content.decode()
    assert "Suggested for a low result on a palm or sole: See a dermatologist soon." in case_page

    mark_reviewed(reviewer_client, [low])
    assert not Review.objects.filter(diagnosis=low).exists()


def test_a_low_result_after_a_higher_photo_suggests_that_photos_recommendation(reviewer_client, owner,
                                                                                make_diagnosis):
    _before, low = after_a_higher_photo(owner, make_diagnosis)
    case_page = reviewer_client.get(change_url(low)).content.decode()
    assert "an earlier photo of the mole was rated high risk: See a dermatologist soon." in case_page
