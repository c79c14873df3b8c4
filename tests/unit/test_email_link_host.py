"""The links in the e-mails the web process sends (a password reset, the confirmation of a new
address) start with SITE_URL, as the worker's do, whatever Host the request named: a client
that sends another host the site answers to must not get a link to it, holding a live token."""

import pytest
from django.urls import reverse

from tests.conftest import ask_for_password_reset

pytestmark = pytest.mark.django_db

SITE_URL = "https://molesite.example.org"
OTHER_HOST = "other.example.org"


@pytest.fixture
def another_allowed_host(settings):
    settings.SITE_URL = SITE_URL
    settings.ALLOWED_HOSTS = ["molesite.example.org", OTHER_HOST]


def test_a_password_reset_link_is_on_site_url(client, owner, mailoutbox, another_allowed_host):
    client.defaults["HTTP_HOST"] = OTHER_HOST

    ask_for_password_reset(client, "patient@example.com")

    body = mailoutbox[0].body
    assert f"{SITE_URL}/accounts/password/reset/" in body and OTHER_HOST not in body


def test_a_new_address_confirmation_link_is_on_site_url(owner_client, mailoutbox,
                                                         another_allowed_host):
    form = {"email": "new.address@example.com", "password": "correct horse battery"}

    owner_client.post(reverse("email_change"), form, HTTP_HOST=OTHER_HOST)

    body = mailoutbox[0].body
    assert f"{SITE_URL}/accounts/email/confirm/" in body and OTHER_HOST not in body
