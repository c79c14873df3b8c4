"""Addresses and usernames read as the mailer and web sign-in read them: an address the mailer
would send to another mailbox than the one typed ("=?utf-8?q?bob?="@x.org goes to bob@x.org) is
refused wherever one is typed, and the hourly limit on link e-mails counts every spelling of one
mailbox together; the API's token endpoint takes a full-width username as web sign-in does."""

import base64

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.validators import ADDRESS_NOT_SENT_AS_TYPED
from tests.conftest import ask_for_password_reset

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
TOKEN = "/api/v1/auth/token/"
VICTIM = "victim@example.com"
# Each is delivered to victim@example.com by Django's mailer (sanitize_address decodes it).
ENCODED_VICTIM = [
    '"=?utf-8?q?victim?="@example.com',
    f'"=?utf-8?b?{base64.b64encode(b"victim").decode()}?="@example.com',
    '"=?utf-8?q?=76ictim?="@example.com',
    '"=?iso-8859-1?q?victim?="@example.com',
    '"=?us-ascii?q?=76=69ctim?="@example.com',
    "=?utf-8?q?victim?=@example.com",
    '"victim"@example.com',
]
# Sent as something else than typed: a non-ASCII local part goes out as an encoded word.
NOT_SENT_AS_TYPED = [*ENCODED_VICTIM, "\u017fam@example.com", "=?utf-8?q?=C5=BFam?=@example.com",
                     "=?utf-8?b?####?=@example.com"]


def ask_for_a_new_address(client, email):
    return client.post(reverse("email_change"), {"email": email, "password": PASSWORD})


def email_errors(response) -> list[str]:
    return list(response.context["form"].errors.get("email", []))


@pytest.mark.parametrize("address", NOT_SENT_AS_TYPED)
def test_the_e_mail_change_refuses_an_address_the_mailer_would_send_elsewhere(
        owner_client, mailoutbox, address):
    response = ask_for_a_new_address(owner_client, address)

    assert response.status_code == 400 and email_errors(response) == [ADDRESS_NOT_SENT_AS_TYPED]
    assert mailoutbox == []


@pytest.mark.parametrize("address", NOT_SENT_AS_TYPED)
def test_sign_up_refuses_an_address_the_mailer_would_send_elsewhere(client, mailoutbox, address):
    response = client.post(reverse("signup"), {"username": "ana", "email": address, "password1": PASSWORD,
                                               "password2": PASSWORD, "consent": "on"})

    assert response.status_code == 200 and email_errors(response) == [ADDRESS_NOT_SENT_AS_TYPED]
    assert not get_user_model().objects.filter(username="ana").exists() and mailoutbox == []


def test_the_password_reset_refuses_an_address_the_mailer_would_send_elsewhere(
        client, owner, mailoutbox):
    response = ask_for_password_reset(client, '"=?utf-8?q?patient?="@example.com')

    assert response.status_code == 200 and email_errors(response) == [ADDRESS_NOT_SENT_AS_TYPED]
    assert mailoutbox == []


@pytest.mark.parametrize("address", ["ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
                                     "ivan@xn--e1afmkfd.xn--p1ai", "o'brien+tag@Example.ORG"])
def test_an_address_sent_as_typed_is_taken(owner_client, mailoutbox, address):
    """A domain in punycode is the same mailbox: an internationalised one is taken."""
    response = ask_for_a_new_address(owner_client, address)

    assert response.status_code == 302 and len(mailoutbox) == 1


def test_encoded_spellings_of_one_address_get_no_links_beyond_the_hourly_limit(
        owner_client, mailoutbox):
    """The reviewer's flood: the plain address four times, then its encoded spellings."""
    for address in [VICTIM] * 4 + ENCODED_VICTIM:
        ask_for_a_new_address(owner_client, address)

    assert [message.to for message in mailoutbox] == [[VICTIM]] * 3


@pytest.mark.parametrize("spelling", [*ENCODED_VICTIM, "VICTIM@EXAMPLE.COM", "\u017fam@example.com"])
def test_the_limit_counts_every_spelling_of_one_mailbox_together(spelling):
    """Old rows may hold such spellings (addresses taken before they were refused)."""
    from accounts.views import link_email_allowed, mailbox_key

    plain = "sam@example.com" if "\u017f" in spelling else VICTIM
    assert mailbox_key(spelling) == mailbox_key(plain)
    assert [link_email_allowed(plain) for _ in range(3)] == [True] * 3
    assert not link_email_allowed(spelling)


def test_the_limit_counts_an_internationalised_domain_with_its_punycode():
    from accounts.views import link_email_allowed

    allowed = [link_email_allowed(address) for address in
               ["ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", "ivan@XN--E1AFMKFD.xn--p1ai",
                "ivan@xn--e1afmkfd.xn--p1ai", "ivan@\u041f\u0420\u0418\u041c\u0415\u0420.\u0440\u0444"]]
    assert allowed == [True] * 3 + [False]


# --- the API's token endpoint -----------------------------------------------------------------

FULL_WIDTH_FOO = "\uff46\uff4f\uff4f"  # "foo" in full-width letters: NFKC makes it foo


@pytest.fixture
def foo():
    """Signed up as ｆｏｏ: sign-up stores the NFKC form, foo."""
    Client().post(reverse("signup"), {"username": FULL_WIDTH_FOO, "email": "foo@example.com",
                                      "password1": PASSWORD, "password2": PASSWORD, "consent": "on"})
    return get_user_model().objects.get(username="foo")


def test_the_token_endpoint_takes_a_full_width_username_as_web_sign_in_does(api_client, foo):
    assert Client().post(reverse("login"), {"username": FULL_WIDTH_FOO, "password": PASSWORD}).status_code == 302

    response = api_client.post(TOKEN, {"username": FULL_WIDTH_FOO, "password": PASSWORD}, format="json")

    assert response.status_code == 200 and "token" in response.json()
    assert not AccessAttempt.objects.exists()


def test_the_lockout_counts_a_full_width_username_as_the_accounts_own(api_client, foo):
    """Wrong passwords typed as ｆｏｏ and as foo are one count, as on the sign-in page."""
    answers = [api_client.post(TOKEN, {"username": name, "password": "wrong"}, format="json").status_code
               for name in [FULL_WIDTH_FOO, "foo"] * 2 + [FULL_WIDTH_FOO]]

    assert answers == [400, 400, 400, 400, 429]
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {"foo"}


def test_the_token_endpoint_still_refuses_a_body_without_a_username(api_client):
    response = api_client.post(TOKEN, {"password": PASSWORD}, format="json")

    assert response.status_code == 400
    assert response.json() == {"username": ["This field is required."]}
