"""The check that the site's e-mails reach an address as typed lives on User.email, so that staff
cannot store one the mailer would send elsewhere either: the admin's user page and createreviewer
refuse it as sign-up and the account page do (tests/unit/test_address_and_username_forms.py).
The admin checks it only when changed, so a user stored with one before still saves."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.validators import ADDRESS_NOT_SENT_AS_TYPED

pytestmark = pytest.mark.django_db

PASSWORD = "a long clinic secret"
# The mailer sends both to bob@example.org.
SENT_ELSEWHERE = ['"=?utf-8?q?bob?="@example.org', '"bob"@example.org']


def email_errors(user) -> list[ValidationError]:
    with pytest.raises(ValidationError) as refused:
        user.full_clean()
    return refused.value.error_dict.get("email", [])


@pytest.mark.parametrize("address", SENT_ELSEWHERE)
def test_the_user_model_refuses_an_address_the_mailer_would_send_elsewhere(address):
    [error] = email_errors(get_user_model()(username="bob", email=address, password="!"))

    assert error.code == "address_not_sent_as_typed"
    assert error.messages == [ADDRESS_NOT_SENT_AS_TYPED]


def test_the_user_model_takes_an_address_sent_as_typed():
    get_user_model()(username="bob", email="bob@example.org", password="!").full_clean()


def test_an_invalid_address_gets_one_message_not_two():
    [error] = email_errors(get_user_model()(username="bob", email="bob@", password="!"))

    assert error.code == "invalid"


@pytest.mark.parametrize("address", SENT_ELSEWHERE)
def test_the_admins_change_user_form_refuses_it(admin_client, owner, address):
    form = {"username": owner.username, "email": address, "is_active": "on",
            "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00",
            "review_emails": "on", "queue_emails": "on"}

    response = admin_client.post(reverse("admin:accounts_user_change", args=[owner.pk]), form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["email"] == [ADDRESS_NOT_SENT_AS_TYPED]
    owner.refresh_from_db()
    assert owner.email == "patient@example.com"


def test_the_admin_still_saves_a_user_whose_stored_address_it_would_now_refuse(
        admin_client, owner, mailoutbox):
    """An address stored before the check (by the admin, createreviewer or createsuperuser) is
    checked only when changed: the account can still be deactivated, its groups or staff status
    changed, without a new address (which would be stamped confirmed, the old one told)."""
    get_user_model().objects.filter(pk=owner.pk).update(email='"bob"@example.org')
    owner.refresh_from_db()
    confirmed_at = owner.email_confirmed_at
    form = {"username": owner.username, "email": '"bob"@example.org',  # is_active left off
            "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00",
            "review_emails": "on", "queue_emails": "on"}

    response = admin_client.post(reverse("admin:accounts_user_change", args=[owner.pk]), form)

    assert response.status_code == 302
    owner.refresh_from_db()
    assert not owner.is_active
    assert owner.email == '"bob"@example.org' and owner.email_confirmed_at == confirmed_at
    assert mailoutbox == []


@pytest.mark.parametrize("address", SENT_ELSEWHERE)
def test_createreviewer_refuses_it(address):
    with pytest.raises(CommandError, match="would not reach this address as typed"):
        call_command("createreviewer", "drbob", "--email", address, "--password", PASSWORD,
                     "--noinput")

    assert not get_user_model().objects.filter(username="drbob").exists()


def test_createreviewer_still_names_an_invalid_address():
    with pytest.raises(CommandError, match="'bob@' cannot be used: Enter a valid email address."):
        call_command("createreviewer", "drbob", "--email", "bob@", "--password", PASSWORD,
                     "--noinput")
