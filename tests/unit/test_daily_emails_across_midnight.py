"""The daily e-mails' retries keep the day their task began on: a batch started before midnight
and retried after it neither tells a clinician twice nor sends the new day's reminders early."""

import itertools
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest
from django.utils import timezone

from diagnoses import services, tasks
from diagnoses.models import Mole

pytestmark = pytest.mark.django_db

EVENING = date(2027, 3, 1)


@pytest.fixture
def clock():
    """The clinic's calendar as timezone.localdate() reads it, moved on by the test (a date
    given to it is converted as ever)."""
    real_localdate = timezone.localdate
    calendar = {"today": EVENING}

    def localdate(value=None, timezone=None):
        return calendar["today"] if value is None else real_localdate(value, timezone)

    with mock.patch.object(timezone, "localdate", localdate):
        yield calendar


def down_until_midnight(calendar, send, failing_call):
    """A stand-in for send_templated_mail: its failing_call-th call finds the mail server down,
    and the retry runs after midnight; the others send."""
    calls = itertools.count(1)

    def flaky(*args, **kwargs):
        if next(calls) == failing_call:
            calendar["today"] += timedelta(days=1)
            raise TimeoutError
        return send(*args, **kwargs)

    return flaky


def test_a_digest_retried_after_midnight_tells_nobody_twice(clock, reviewer, owner, make_diagnosis,
                                                            mailoutbox):
    make_diagnosis(owner, risk="high")
    services.reviewer_create(username="dr-other", email="other@example.com",
                             password="another clinic secret")
    flaky = down_until_midnight(clock, services.send_templated_mail, failing_call=2)

    with mock.patch("diagnoses.services.send_templated_mail", side_effect=flaky):
        assert tasks.send_review_queue_digest.apply().get() == 1  # apply() runs the retry at once

    assert sorted(email.to[0] for email in mailoutbox) == ["dr@example.com", "other@example.com"]


def test_reminders_retried_after_midnight_leave_the_new_days_to_its_run(clock, owner, outsider,
                                                                        mailoutbox):
    def tracked(patient, created):
        mole = services.mole_create(owner=patient, name="Back", recheck_months=1)
        midnight = datetime.combine(created, datetime.min.time(), UTC)
        Mole.objects.filter(pk=mole.pk).update(created_at=midnight)

    tracked(owner, date(2027, 1, 20))  # due since 20 February
    tracked(outsider, date(2027, 2, 2))  # due on 2 March: the next day's run
    flaky = down_until_midnight(clock, services.send_templated_mail, failing_call=1)

    with mock.patch("diagnoses.services.send_templated_mail", side_effect=flaky):
        assert tasks.send_photo_reminders.apply().get() == 1

    assert [email.to for email in mailoutbox] == [[owner.email]]
    assert tasks.send_photo_reminders() == 1  # 2 March's own run
    assert [email.to for email in mailoutbox] == [[owner.email], [outsider.email]]
