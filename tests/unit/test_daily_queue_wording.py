"""The clinicians' queue e-mail goes out at DAILY_EMAILS_HOUR, which may be any hour: the account
page's box and the message of its save say "each day"/"daily", as the e-mail does, not "morning"."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_queue_email_box_and_its_saved_message_say_each_day_not_morning(reviewer, client, settings):
    settings.DAILY_EMAILS_HOUR = 17
    client.force_login(reviewer)
    page = client.get(reverse("account")).content.decode()
    assert "E-mail me each day how many cases wait for review" in page
    assert "morning" not in page.lower()

    saved = client.post(reverse("account"), {"review_emails": "on"}, follow=True).content.decode()
    assert "The daily count of the review queue is off." in saved
    assert "morning" not in saved.lower()
    saved = client.post(reverse("account"), {"review_emails": "on", "queue_emails": "on"},
                        follow=True).content.decode()
    assert "The daily count of the review queue is on." in saved
