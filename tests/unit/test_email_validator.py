"""The check that the site's e-mails reach an address as typed lives on User.email, so that staff
cannot store one the mailer would send elsewhere either: the admin's user page and createreviewer
refuse it as sign-up and the account page do (tests/unit/test_address_and_username_forms.py),
and so do the manager's create_user() and create_superuser(), which scripts and
services.reviewer_create() call. The admin checks it only when changed, so a user stored with one
before still saves."""

import asyncio

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import REVIEWERS_GROUP
from accounts.validators import ADDRESS_NOT_SENT_AS_TYPED
from diagnoses import services

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


def refused_by_the_manager(create) -> ValidationError:
    with pytest.raises(ValidationError) as refused:
        create()
    assert not get_user_model().objects.exists()
    return refused.value


# An encoded word unquoted: sent as typed, but a mail server may decode it (accounts.validators).
@pytest.mark.parametrize("address", [*SENT_ELSEWHERE, "=?utf-8?q?bob?=@example.org"])
def test_create_user_refuses_an_address_the_mailer_would_send_elsewhere(address):
    """A manager runs no field validators of its own: a script's create_user() stored such an
    address, taken as confirmed, that the site would then mail to bob@example.org."""
    error = refused_by_the_manager(
        lambda: get_user_model().objects.create_user("bob", address, PASSWORD))

    assert [e.code for e in error.error_list] == ["address_not_sent_as_typed"]
    assert error.messages == [ADDRESS_NOT_SENT_AS_TYPED]


@pytest.mark.parametrize("address", SENT_ELSEWHERE)
def test_create_superuser_refuses_it(address):
    error = refused_by_the_manager(
        lambda: get_user_model().objects.create_superuser("root", address, PASSWORD))

    assert error.messages == [ADDRESS_NOT_SENT_AS_TYPED]


def test_acreate_user_refuses_it():
    async def create():
        return await get_user_model().objects.acreate_user("bob", SENT_ELSEWHERE[0], PASSWORD)

    # Refused before the save, the one step that would need the database from another thread.
    error = refused_by_the_manager(lambda: asyncio.run(create()))

    assert error.messages == [ADDRESS_NOT_SENT_AS_TYPED]


def test_create_user_still_names_an_invalid_address_with_one_message():
    error = refused_by_the_manager(lambda: get_user_model().objects.create_user("bob", "bob@", PASSWORD))

    assert [e.code for e in error.error_list] == ["invalid"]


@pytest.mark.parametrize("address", ["bob@example.org", "bob@EXAMPLE.org", "bob@bücher.example"])
def test_create_user_takes_an_address_sent_as_typed(address):
    user = get_user_model().objects.create_user("bob", address, PASSWORD)

    user.refresh_from_db()
    assert user.email == address.replace("EXAMPLE", "example")  # the domain lower-cased, as Django does
    assert user.email_confirmed_at is not None


@pytest.mark.parametrize("address", ["", None])
def test_create_user_and_create_superuser_still_take_no_address(address):
    users = get_user_model().objects
    made = [users.create_user("bob", address, PASSWORD), users.create_superuser("root", address, PASSWORD)]

    for user in made:
        user.refresh_from_db()
        assert user.email == "" and user.email_confirmed_at is None


@pytest.mark.parametrize("address", SENT_ELSEWHERE)
def test_reviewer_create_refuses_it(address):
    """services.reviewer_create() makes its account with create_user(): a script calling it gets
    the check that createreviewer runs before it."""
    error = refused_by_the_manager(
        lambda: services.reviewer_create(username="drbob", email=address, password=PASSWORD))

    assert error.messages == [ADDRESS_NOT_SENT_AS_TYPED]


def test_reviewer_create_still_takes_a_plain_address_or_none():
    with_address = services.reviewer_create(username="drbob", email="bob@example.org", password=PASSWORD)
    without = services.reviewer_create(username="drsue", password=PASSWORD)

    assert with_address.email == "bob@example.org" and without.email == ""
    assert set(get_user_model().objects.filter(groups__name=REVIEWERS_GROUP)) == {with_address, without}
