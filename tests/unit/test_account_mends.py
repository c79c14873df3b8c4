"""Account pages, mended: each refusal said once and in the page's own words, the lockout met on
an account form leading back to the account, a used e-mail link opened again."""

import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

RIGHT = "correct horse battery"


def test_a_wrong_password_on_the_delete_page_is_said_in_the_summary_and_the_field_only(owner_client):
    response = owner_client.post(reverse("account_delete"), {"password": "wrong", "confirm": "on"})

    page = response.content.decode()
    assert response.status_code == 400
    assert "see the message below" not in page  # no flash message besides the summary
    assert page.count("Your account was not deleted.") == 1
    assert page.count("This is not your current password.") == 1


def test_the_password_change_page_says_current_and_new_not_old_and_as_before(owner_client):
    page = owner_client.get(reverse("password_change")).content.decode()

    assert "Current password" in page and "Old password" not in page
    assert "Type the new password again." in page and "same password as before" not in page
    wrong = owner_client.post(reverse("password_change"), {
        "old_password": "wrong", "new_password1": "a new long pass phrase", "new_password2": "a new long pass phrase"})
    assert "This is not your current password." in wrong.content.decode()


def test_the_reset_page_asks_for_the_new_password_again_in_the_same_words(client, owner, mailoutbox):
    from tests.conftest import ask_for_password_reset

    ask_for_password_reset(client, "patient@example.com")
    link = re.search(r"https?://\S+/accounts/password/reset/\S+", mailoutbox[0].body).group(0)
    form = client.get(link.split(settings.SITE_URL, 1)[-1], follow=True).content.decode()

    assert "Type the new password again." in form and "same password as before" not in form


def test_the_lockout_on_an_account_form_leads_back_to_the_account(owner_client):
    for _ in range(5):
        response = owner_client.post(reverse("email_change"), {"email": "new@example.com", "password": "wrong"})

    page = response.content.decode()
    assert response.status_code == 429 and response["Retry-After"]
    assert "Too many wrong passwords: this form is paused for 15 minutes." in page
    assert f'href="{reverse("account")}"' in page and "Back to your account" in page
    assert "Sign-in paused" not in page
    # signed out, the sign-in page's lockout is as before
    for _ in range(5):
        signed_out = Client().post(reverse("login"), {"username": "patient", "password": "wrong"})
    assert "Sign-in paused" in signed_out.content.decode()


def test_a_used_email_change_link_opened_again_says_the_address_is_confirmed(owner_client, owner, mailoutbox):
    owner_client.post(reverse("email_change"), {"email": "new.address@example.com", "password": RIGHT})
    link = re.search(re.escape(settings.SITE_URL) + r"(/accounts/email/confirm/\S+)", mailoutbox[0].body).group(1)
    owner_client.get(link)

    again = owner_client.get(link, follow=True)

    page = again.content.decode()
    assert again.redirect_chain[-1][0] == reverse("account")
    assert "This address is already confirmed." in page and "no longer works" not in page
    owner.refresh_from_db()
    assert owner.email == "new.address@example.com"


@pytest.mark.parametrize("code, said", [
    ("000000", "That code was not accepted, so the app is not set up yet."),
    ("", "No code was entered."),
])
def test_a_wrong_second_step_code_says_the_code_was_not_accepted_and_offers_a_way_out(
        client, reviewer, settings, code, said):
    """Setting up the app: the summary says what was refused, the code (not "the review desk is not
    open yet", which reads as if the desk were closed), and the field's own message says why."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    client.force_login(reviewer)

    response = client.post(reverse("two_step"), {"code": code})

    page = response.content.decode()
    assert response.status_code == 400
    summary = page.split('id="form-errors"', 1)[1].split("</div>", 1)[0]
    assert said in summary and "not open" not in page and "You are not signed in yet." not in page
    assert ("This code is not right." if code else "This field is required.") in page
    assert f'href="{reverse("account")}"' in page


def test_a_wrong_sign_in_code_says_the_code_was_not_accepted(client, reviewer, settings):
    """Signing in with an app already set up: the same, without "set up"."""
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    device = TOTPDevice.objects.create(user=reviewer, name="Authenticator app", confirmed=True)
    client.force_login(reviewer)
    wrong = "000000" if f"{TOTP(device.bin_key).token():06d}" != "000000" else "111111"

    page = client.post(reverse("two_step"), {"code": wrong}).content.decode()

    summary = page.split('id="form-errors"', 1)[1].split("</div>", 1)[0]
    assert "That code was not accepted." in summary and "set up" not in summary
    assert "This code is not right." in page and "not open" not in page
