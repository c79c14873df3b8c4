"""Dates in the e-mails as the pages write them (molesite/formats: "4 Jul 2026, 00:30"), in the
clinic's time zone, the daily queue count's wording, and the clinic's contact."""

from datetime import UTC, datetime

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from diagnoses import services
from diagnoses.models import Diagnosis

pytestmark = pytest.mark.django_db

# 23:30 and 23:45 UTC on 3 July: just after midnight on 4 July in London (summer time).
FIRST, SECOND = datetime(2026, 7, 3, 23, 30, tzinfo=UTC), datetime(2026, 7, 3, 23, 45, tzinfo=UTC)


@pytest.fixture
def in_london(settings):
    settings.TIME_ZONE = "Europe/London"


def reviewed(owner, reviewer, make_diagnosis, uploaded):
    diagnosis = make_diagnosis(owner)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=uploaded)
    return services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree",
                                recommendation="routine", notify=False)


def test_a_review_notice_tells_two_photos_of_one_day_apart_by_their_time(
        in_london, owner, reviewer, make_diagnosis, mailoutbox):
    reviews = [reviewed(owner, reviewer, make_diagnosis, moment) for moment in (FIRST, SECOND)]

    assert services.review_notify(review_ids=[review.pk for review in reviews])
    assert services.review_notify(review_ids=[reviews[1].pk])

    both, one = (email.body for email in mailoutbox)
    assert "- the photo of 4 Jul 2026, 00:30: " in both and "- the photo of 4 Jul 2026, 00:45: " in both
    assert "the photo you uploaded on 4 Jul 2026, 00:45." in one


def test_the_queue_count_dates_its_oldest_case_as_the_pages_do(
        in_london, owner, reviewer, make_diagnosis, mailoutbox):
    waiting = make_diagnosis(owner, risk="high")
    Diagnosis.objects.filter(pk=waiting.pk).update(finished_at=FIRST)

    assert services.review_queue_digest_send() == 1

    body = mailoutbox[0].body
    assert "The oldest has waited since 4 Jul 2026, 00:30." in body
    assert "each day" in body and "morning" not in body  # DAILY_EMAILS_HOUR may be any hour
    # where to switch it off, linked
    account_url = django_settings.SITE_URL + reverse("account")
    assert f"untick the box\non your account page: {account_url}\n" in body


def test_the_privacy_notice_names_the_clinics_contact_when_set(client, settings):
    settings.CLINIC_CONTACT = "Skin clinic, +44 20 7946 0000, help@clinic.example"
    assert "ask them about anything here: Skin clinic, +44 20 7946 0000" in (
        client.get(reverse("privacy")).content.decode())

    settings.CLINIC_CONTACT = ""
    assert "ask them about anything here." in client.get(reverse("privacy")).content.decode()


def test_the_privacy_notice_answers_head_too(client):
    """As the TemplateView it was: uptime monitors and link checkers send HEAD."""
    assert client.head(reverse("privacy")).status_code == 200
