"""Failed cases (a photo that could not be classified) at the review desk: no review can close
one, only a re-run or the new photo its patient was told to upload, so the desk ranks those still
waiting apart from the low ones, and one answered by a photo uploaded after it failed with the
cases that need nothing; says which is which in the Risk column; says on the case page what a
reviewer can do; never counts one as reviewed; and the clinicians' daily count gives a heads-up
of the photos that failed since the day before, not of every failure ever."""

from datetime import timedelta
from datetime import timezone as dt_timezone

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from django.utils.formats import date_format

from diagnoses import services
from diagnoses.models import Diagnosis, Review
from tests.unit.test_review_desk_safety import QUEUE_URL, change_url, queue

pytestmark = pytest.mark.django_db

NEEDS = "Failed — re-run, or wait for a new photo"
ANSWERED = "Failed — a newer photo followed"


def failed_case(owner, make_diagnosis, *, hours_ago=None, after_last_count=None, **kwargs):
    """A failed case as diagnosis_fail leaves it: its finished_at is when it failed, hours_ago,
    or after_last_count (a timedelta, negative for before) from the time yesterday's daily count
    was due, else when it was uploaded (make_diagnosis leaves a failed one's empty)."""
    diagnosis = make_diagnosis(owner, status="failed", **kwargs)
    if after_last_count is not None:
        failed_at = services.previous_daily_count(timezone.localdate()) + after_last_count
        uploaded_before(diagnosis, failed_at)
    elif hours_ago is not None:
        failed_at = timezone.now() - timedelta(hours=hours_ago)
    else:
        failed_at = diagnosis.created_at
    Diagnosis.objects.filter(pk=diagnosis.pk).update(finished_at=failed_at)
    return diagnosis


def uploaded_before(diagnosis, failed_at):
    """The photo uploaded a minute before it failed: a photo uploaded after its own failure would
    count as the newer photo that answers it."""
    Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=failed_at - timedelta(minutes=1))


def test_the_risk_column_says_what_a_failed_case_needs(reviewer_client, owner, make_diagnosis):
    low = make_diagnosis(owner, risk="low", age_days=1)
    failed = failed_case(owner, make_diagnosis)  # the patient's latest photo: still waiting

    html = reviewer_client.get(QUEUE_URL).content.decode()
    # the status field's own filter, plain: it lists every failed case, waiting or answered
    assert 'href="?status__exact=failed"' in html
    assert html.count(NEEDS) == 1  # the case's Risk column
    assert queue(reviewer_client, status__exact="failed") == [failed]
    assert queue(reviewer_client, status__exact="done") == [low]
    # in no risk band: the Risk filter follows the queue's rank, and a failed case has its own
    assert [queue(reviewer_client, risk__exact=band) for band in ("low", "medium", "high")] == [[low], [], []]


def test_the_case_page_of_a_failed_case_says_what_a_reviewer_can_do(reviewer_client, owner, make_diagnosis):
    done = make_diagnosis(owner, risk="low", age_days=1)
    failed = make_diagnosis(owner, status="failed")

    html = reviewer_client.get(change_url(failed)).content.decode()
    assert "Nothing to review: the photo could not be classified" in html
    assert "the classifier may have been unavailable" in html
    assert "the patient has been told to upload a new one" in html
    assert "ask the patient" not in html  # reviewers cannot reach patients
    assert f'href="{QUEUE_URL}?id__exact={failed.pk}"' in html
    assert "Nothing to review" not in reviewer_client.get(change_url(done)).content.decode()
    # the link lists that case alone, where the re-run action is
    response = reviewer_client.get(QUEUE_URL, {"id__exact": str(failed.pk)})
    assert list(response.context["cl"].result_list) == [failed]
    assert "requeue" in dict(response.context["action_form"].fields["action"].choices)


# --- answered by a later photo -----------------------------------------------------------------


def test_a_failed_case_answered_by_a_later_photo_no_longer_ranks_above_the_lows(reviewer_client, owner,
                                                                               outsider, make_diagnosis):
    """Tracked: a later photo of the same mole answers it, one of another mole does not.
    Untracked: any later photo of the patient's does. A photo from before, or another patient's,
    answers nothing. (Each fails as it is uploaded: failed_case.)"""
    shoulder = services.mole_create(owner=owner, name="Shoulder")
    back = services.mole_create(owner=owner, name="Back")
    medium = make_diagnosis(owner, risk="medium", age_days=2)
    tracked_answered = failed_case(owner, make_diagnosis, mole=shoulder, age_days=8)
    tracked_waiting = failed_case(owner, make_diagnosis, mole=back, age_days=7)
    untracked_answered = failed_case(owner, make_diagnosis, age_days=6)
    low_old = make_diagnosis(owner, risk="low", age_days=9)
    shoulder_before = make_diagnosis(owner, risk="low", mole=shoulder, age_days=10)  # before it
    new_of_shoulder = make_diagnosis(owner, risk="low", mole=shoulder, age_days=5)
    # untracked, with no later photo of its patient's: the later photos above are another's
    outsiders_failed = failed_case(outsider, make_diagnosis, age_days=20)
    queued = make_diagnosis(owner, status="queued", age_days=30)

    assert queue(reviewer_client) == [
        medium, outsiders_failed, tracked_waiting,  # the failed cases still waiting
        shoulder_before, low_old, new_of_shoulder,
        queued, tracked_answered, untracked_answered,  # with the cases that need nothing
    ]
    # the status filter's Failed, where the daily e-mail links: every failed case, waiting first
    assert queue(reviewer_client, status__exact="failed") == [
        outsiders_failed, tracked_waiting, tracked_answered, untracked_answered]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert html.count(ANSWERED) == 2 and html.count(NEEDS) == 2


def test_photos_uploaded_during_an_outage_do_not_answer_each_other(reviewer_client, owner, reviewer,
                                                                   make_diagnosis, mailoutbox):
    """The classifier is down: the patient uploads a photo, untracked, and another a minute later,
    and both fail once the retries are spent. The second came before the first failed, not after
    the patient was told: it answers nothing, and both wait for a re-run."""
    low = make_diagnosis(owner, risk="low", age_days=1)
    first, second = make_diagnosis(owner, status="queued"), make_diagnosis(owner, status="queued")
    for photo, minutes_ago in ((first, 30), (second, 29)):
        Diagnosis.objects.filter(pk=photo.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    for photo in (first, second):
        services.diagnosis_fail(diagnosis_id=photo.pk, message=services.MESSAGE_MODEL_UNAVAILABLE)

    assert queue(reviewer_client) == [first, second, low]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert html.count(NEEDS) == 2 and ANSWERED not in html
    assert "Select it in the queue" in reviewer_client.get(change_url(first)).content.decode()
    assert services.review_queue_digest_send() == 1
    assert "Heads-up: 2 photos could not be classified" in mailoutbox[0].body


def test_the_case_page_of_an_answered_failed_case_says_nothing_is_left_to_do(reviewer_client, owner,
                                                                            make_diagnosis):
    failed = failed_case(owner, make_diagnosis, age_days=3)
    make_diagnosis(owner, risk="low", age_days=1)

    html = reviewer_client.get(change_url(failed)).content.decode()
    assert "Nothing to do: the patient has uploaded a newer photo since" in html
    assert "Select it in the queue" not in html


# --- never reviewed at the desk ----------------------------------------------------------------


def test_a_failed_re_run_with_a_legacy_review_shows_unreviewed(reviewer_client, reviewer, owner, make_diagnosis):
    """A review saved before reviews carried a model version counts as of any result: not of a
    failed re-run's, which has none. The queue's order, its filter and its column agree."""
    reviewed = make_diagnosis(owner, risk="high", age_days=1)
    services.review_agree_many(diagnoses=[reviewed], reviewer=reviewer)
    legacy = make_diagnosis(owner, risk="low", age_days=2)
    services.review_agree_many(diagnoses=[legacy], reviewer=reviewer)
    Review.objects.filter(diagnosis=legacy).update(model_version="")
    services.diagnosis_requeue(diagnosis=legacy)
    services.diagnosis_fail(diagnosis_id=legacy.pk, message=services.MESSAGE_UNREADABLE)

    assert queue(reviewer_client) == [legacy, reviewed]
    assert queue(reviewer_client, reviewed="no") == [legacy]
    assert queue(reviewer_client, reviewed="yes") == [reviewed]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert html.count("icon-no.svg") == 1 and html.count("icon-yes.svg") == 1
    # nor is its review exported: it pairs a verdict with no result
    assert not Diagnosis.objects.filter(pk=legacy.pk).filter(services.REVIEWED_AT_DESK).exists()


# --- the daily count -----------------------------------------------------------------------------


FAILED_URL = django_settings.SITE_URL + QUEUE_URL + "?status__exact=failed"


def test_the_daily_count_counts_failed_cases_apart(owner, reviewer, make_diagnosis, mailoutbox):
    make_diagnosis(owner, risk="high")
    for name in ("Shoulder", "Back"):  # of two moles: neither answers the other
        failed_case(owner, make_diagnosis, mole=services.mole_create(owner=owner, name=name))

    assert services.review_queue_digest_send() == 1
    (email,) = mailoutbox
    assert email.subject == "1 case waits for review"
    assert "1 finished result waits for a clinician's review" in email.body  # the failed are apart
    since = services.previous_daily_count(timezone.localdate())
    assert ("Heads-up: 2 photos could not be classified since yesterday's count "
            f"({date_format(timezone.localtime(since), 'DATETIME_FORMAT')}), with no newer photo since. "
            "No review settles them: re-run them, as the classifier may have been unavailable. One that "
            "fails again needs a new photo, which its error message has already asked for. The failed cases, "
            f"those still waiting first:\n{FAILED_URL}\n"
            ) in email.body
    assert "patient" not in email.body  # counts only: no patient, no photo


def test_the_daily_count_goes_out_for_a_fresh_failure_alone(owner, reviewer, make_diagnosis, mailoutbox):
    failed_case(owner, make_diagnosis, after_last_count=timedelta(minutes=1), age_days=1)

    assert services.review_queue_digest_send() == 1
    (email,) = mailoutbox
    assert email.subject == "1 photo could not be classified since yesterday's count"
    assert "No finished result waits for a clinician's review" in email.body
    assert "The oldest has waited" not in email.body and "- low risk" not in email.body
    assert "Heads-up: 1 photo could not be classified since yesterday's count (" in email.body
    assert "No review settles it: re-run it," in email.body
    assert Diagnosis.objects.awaiting_review().count() == 0


def test_a_stale_failure_sends_no_daily_count(owner, reviewer, make_diagnosis, mailoutbox):
    """Failed before yesterday's count and still first in the queue: that count told of it."""
    failed_case(owner, make_diagnosis, after_last_count=-timedelta(minutes=1), age_days=2)

    assert services.review_queue_digest_send() == 0
    assert mailoutbox == []


def test_an_answered_failure_sends_no_daily_count(owner, reviewer, make_diagnosis, mailoutbox):
    failed_case(owner, make_diagnosis, hours_ago=1, age_days=1)
    make_diagnosis(owner, status="queued")  # the patient's new photo, not classified yet

    assert services.review_queue_digest_send() == 0
    assert mailoutbox == []


def test_the_daily_count_leaves_out_stale_and_answered_failures(owner, reviewer, make_diagnosis, mailoutbox):
    make_diagnosis(owner, risk="low")
    arm = services.mole_create(owner=owner, name="Arm")
    failed_case(owner, make_diagnosis, after_last_count=-timedelta(hours=6), mole=arm, age_days=2)  # stale
    shoulder = services.mole_create(owner=owner, name="Shoulder")
    failed_case(owner, make_diagnosis, hours_ago=1, mole=shoulder, age_days=1)
    make_diagnosis(owner, risk="low", mole=shoulder)  # answers the shoulder's failure
    back = services.mole_create(owner=owner, name="Back")
    failed_case(owner, make_diagnosis, mole=back)  # fresh and waiting: the only one counted

    assert services.review_queue_digest_send() == 1
    (email,) = mailoutbox
    assert email.subject == "2 cases wait for review"
    assert "Heads-up: 1 photo could not be classified" in email.body


@pytest.mark.parametrize("day, hours_between_counts", [("2026-10-25", 25), ("2026-03-29", 23), ("2026-06-14", 24)])
def test_each_failure_is_in_one_count_on_the_days_the_clocks_change(owner, reviewer, make_diagnosis, mailoutbox,
                                                                   settings, day, hours_between_counts):
    """London's clocks go back on 25 October 2026 (25 hours from one 8:00 to the next) and forward
    on 29 March (23): a failure in the first hour after a count, or in the last before the next,
    is told in the next count, and not in the one after."""
    from datetime import date

    settings.TIME_ZONE = "Europe/London"
    today = date.fromisoformat(day)
    # in UTC: two times of one zone subtract as wall-clock times
    counts = [services.previous_daily_count(today + timedelta(days=k)).astimezone(dt_timezone.utc) for k in (0, 1)]
    assert counts[1] - counts[0] == timedelta(hours=hours_between_counts)
    for failed_at in (counts[0] + timedelta(minutes=30), counts[1] - timedelta(minutes=30)):
        Diagnosis.objects.all().delete()
        photo = make_diagnosis(owner, status="failed")
        Diagnosis.objects.filter(pk=photo.pk).update(finished_at=failed_at)
        uploaded_before(photo, failed_at)
        told_on = []
        for when in (today, today + timedelta(days=1)):
            type(reviewer).objects.filter(pk=reviewer.pk).update(queue_email_sent_on=None)  # a new day
            reviewer.refresh_from_db()
            if services.review_queue_digest_send(today=when):
                told_on.append(when)
        assert told_on == [today], failed_at


def test_a_failure_after_a_late_count_is_in_the_next_one(owner, reviewer, make_diagnosis, mailoutbox):
    """Today's count ran late, behind the reminders (at 8:05, say): a photo that failed at 8:02
    was in it, and is in tomorrow's too, not lost between the two."""
    today = timezone.localdate()
    due_today = services.previous_daily_count(today + timedelta(days=1))
    photo = make_diagnosis(owner, status="failed")
    Diagnosis.objects.filter(pk=photo.pk).update(finished_at=due_today + timedelta(minutes=2))
    uploaded_before(photo, due_today + timedelta(minutes=2))

    assert services.review_queue_digest_send(today=today + timedelta(days=1)) == 1
    assert "Heads-up: 1 photo could not be classified" in mailoutbox[0].body
