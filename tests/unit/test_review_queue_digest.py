"""The clinicians' morning count of the review queue, sent by celery beat."""

import smtplib
from datetime import date
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from diagnoses import services, tasks
from diagnoses.models import Diagnosis, Review
from tests.conftest import failing_first

pytestmark = pytest.mark.django_db

QUEUE_URL = django_settings.SITE_URL + reverse("admin:diagnoses_diagnosis_changelist")


@pytest.fixture
def queue(owner, reviewer, make_diagnosis):
    """Waiting: two high, one medium (one of them re-run after its review); not waiting: a
    reviewed low, a queued and a failed upload."""
    make_diagnosis(owner, risk="high", age_days=3)
    make_diagnosis(owner, risk="medium")
    rerun = make_diagnosis(owner, risk="high")
    review = services.review_save(diagnosis=rerun, reviewer=reviewer, verdict="agree", recommendation="monitor",
                                  notify=False)
    Review.objects.filter(pk=review.pk).update(model_version="before-the-rerun")
    reviewed = make_diagnosis(owner, risk="low")
    services.review_save(diagnosis=reviewed, reviewer=reviewer, verdict="agree", recommendation="routine",
                         notify=False)
    make_diagnosis(owner, status="queued")
    make_diagnosis(owner, status="failed")


def test_it_counts_what_waits_and_tells_each_clinician(queue, reviewer, mailoutbox):
    other = services.reviewer_create(username="dr-other", email="other@example.com", password="another clinic secret")

    assert services.review_queue_digest_send() == 2

    assert sorted(email.to[0] for email in mailoutbox) == ["dr@example.com", "other@example.com"]
    email = mailoutbox[0]
    assert email.subject == "3 cases wait for review"
    assert "- high risk: 2\n- medium risk: 1\n- low risk: 0\n" in email.body
    assert QUEUE_URL in email.body
    assert "patient" not in email.body  # counts only: no patient, no photo
    assert other.is_reviewer and Diagnosis.objects.awaiting_review().count() == 3


def test_it_leaves_out_patients_superusers_outside_the_group_and_those_who_said_no(
    queue, reviewer, owner, admin_user, mailoutbox
):
    type(reviewer).objects.filter(pk=reviewer.pk).update(queue_emails=False)
    gone = services.reviewer_create(username="dr-gone", email="gone@example.com", password="a long old secret")
    type(gone).objects.filter(pk=gone.pk).update(is_active=False)
    # staff in the group in name only: is_staff taken away
    former = services.reviewer_create(username="dr-former", email="former@example.com", password="a long old secret")
    type(former).objects.filter(pk=former.pk).update(is_staff=False)

    assert services.review_queue_digest_send() == 0
    assert mailoutbox == []


def test_it_sends_nothing_when_no_case_waits(reviewer, owner, make_diagnosis, mailoutbox):
    make_diagnosis(owner, status="queued")
    assert services.review_queue_digest_send() == 0
    assert mailoutbox == []


def test_it_sends_the_count_once_a_day(queue, reviewer, mailoutbox):
    assert services.review_queue_digest_send(today=date(2027, 3, 1)) == 1
    assert services.review_queue_digest_send(today=date(2027, 3, 1)) == 0
    assert services.review_queue_digest_send(today=date(2027, 3, 2)) == 1
    assert len(mailoutbox) == 2


def test_a_restarted_worker_does_not_tell_a_clinician_twice_the_same_day(queue, reviewer, mailoutbox):
    """The mark lives in the database: a retry or a redelivered task in another worker process
    (whose in-memory cache knows nothing of the first) sends nothing more that day."""
    from django.core.cache import cache

    assert services.review_queue_digest_send(today=date(2027, 3, 1)) == 1
    cache.clear()  # what a new worker process starts with, without REDIS_URL
    assert services.review_queue_digest_send(today=date(2027, 3, 1)) == 0
    assert len(mailoutbox) == 1


def test_it_goes_on_to_the_next_clinician_when_one_email_fails(queue, reviewer, mailoutbox):
    services.reviewer_create(username="dr-other", email="other@example.com", password="another clinic secret")
    real_send = services.send_templated_mail

    def flaky(template, context, to):
        if to == "dr@example.com":  # this recipient alone refused
            raise smtplib.SMTPRecipientsRefused({to: (550, b"mailbox unavailable")})
        real_send(template, context, to)

    with mock.patch("diagnoses.services.send_templated_mail", side_effect=flaky):
        with pytest.raises(services.EmailsNotSent) as raised:  # for the task to retry
            services.review_queue_digest_send()
    assert (raised.value.sent, raised.value.failed) == (1, 1)
    assert [email.to for email in mailoutbox] == [["other@example.com"]]

    # the retry tells only the clinician who was not told
    assert services.review_queue_digest_send() == 1
    assert [email.to for email in mailoutbox] == [["other@example.com"], ["dr@example.com"]]


def test_it_leaves_the_rest_to_the_retry_when_the_mail_server_is_unreachable(queue, reviewer, mailoutbox):
    services.reviewer_create(username="dr-other", email="other@example.com", password="another clinic secret")
    with mock.patch("diagnoses.services.send_templated_mail", side_effect=TimeoutError) as send:
        with pytest.raises(services.EmailsNotSent) as raised:
            services.review_queue_digest_send()
    # one wait for the server, not one per clinician; both left for the retry
    assert send.call_count == 1 and (raised.value.sent, raised.value.failed) == (0, 2)
    assert services.review_queue_digest_send() == 2


def test_its_task_tries_again_while_the_mail_server_fails(queue, reviewer, mailoutbox):
    flaky = failing_first(2, services.send_templated_mail)
    with mock.patch("diagnoses.services.send_templated_mail", side_effect=flaky) as send:
        # apply() runs the retries at once, where a worker waits 1, then 2 minutes
        assert tasks.send_review_queue_digest.apply().get() == 1
    assert send.call_count == 3
    assert [email.to for email in mailoutbox] == [["dr@example.com"]]


def test_its_task_waits_longer_each_time_and_gives_up_after_five_retries(queue, reviewer):
    task = tasks.send_review_queue_digest
    with mock.patch("diagnoses.services.send_templated_mail", side_effect=TimeoutError) as send, \
            mock.patch.object(task, "retry", wraps=task.retry) as retry:
        with pytest.raises(services.EmailsNotSent):
            task.apply().get()
    assert send.call_count == 6
    # 1, 2, 4, 8 and 10 minutes later (MAIL_RETRY), for the day the first run took; the sixth
    # call of retry gives up
    waits = [call.kwargs["countdown"] for call in retry.call_args_list]
    assert waits[:5] == [60, 120, 240, 480, 600] and len(waits) == 6
    days = {call.kwargs["kwargs"]["day"] for call in retry.call_args_list}
    assert days == {timezone.localdate().isoformat()}


def test_it_is_queued_by_celery_beat_every_morning(queue, reviewer, mailoutbox):
    from molesite.celery import app

    entry = django_settings.CELERY_BEAT_SCHEDULE["review-queue-digest"]
    app.loader.import_default_modules()
    assert entry["schedule"].hour == {django_settings.DAILY_EMAILS_HOUR}
    assert app.tasks[entry["task"]]() == 1 == len(mailoutbox)


def test_it_lets_a_clinician_turn_the_count_off_on_the_account_page(reviewer, owner, client):
    client.force_login(reviewer)
    page = client.get(reverse("account")).content.decode()
    assert 'name="queue_emails"' in page
    response = client.post(reverse("account"), {"review_emails": "on"}, follow=True)
    assert "The daily count of the review queue is off." in response.content.decode()
    reviewer.refresh_from_db()
    assert reviewer.queue_emails is False and reviewer.review_emails is True

    client.force_login(owner)
    assert 'name="queue_emails"' not in client.get(reverse("account")).content.decode()
