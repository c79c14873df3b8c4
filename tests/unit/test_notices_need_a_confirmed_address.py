"""The e-mails diagnoses sends (review notices, photo reminders, the queue count) go to confirmed
addresses only: one mistyped at sign-up may be a stranger's."""

from datetime import timedelta

import pytest
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Mole

pytestmark = pytest.mark.django_db


def unconfirm(user):
    type(user).objects.filter(pk=user.pk).update(email_confirmed_at=None)


def test_no_photo_reminder_goes_to_an_unconfirmed_address(owner, outsider, mailoutbox):
    for patient in (owner, outsider):
        mole = services.mole_create(owner=patient, name="Back", recheck_months=1)
        Mole.objects.filter(pk=mole.pk).update(created_at=timezone.now() - timedelta(days=60))
    unconfirm(owner)

    assert services.photo_reminders_send() == 1
    assert [m.to for m in mailoutbox] == [["outsider@example.com"]]


def test_no_review_notice_goes_to_an_unconfirmed_address(owner, reviewer, make_diagnosis, mailoutbox):
    review = services.review_save(diagnosis=make_diagnosis(owner), reviewer=reviewer, verdict="agree",
                                  recommendation="routine", notify=False)
    unconfirm(owner)
    assert services.review_notify(review_ids=[review.pk]) is False and mailoutbox == []
    type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=timezone.now())
    assert services.review_notify(review_ids=[review.pk]) is True


def test_no_queue_count_goes_to_an_unconfirmed_address(owner, reviewer, make_diagnosis, mailoutbox):
    make_diagnosis(owner, risk="high")
    unconfirm(reviewer)
    assert services.review_queue_digest_send() == 0
    assert mailoutbox == []
    type(reviewer).objects.filter(pk=reviewer.pk).update(email_confirmed_at=timezone.now())
    assert services.review_queue_digest_send() == 1 and mailoutbox[0].to == [reviewer.email]
