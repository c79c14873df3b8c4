"""Changing the account's e-mail address: asked with the password, confirmed by a link sent to
the new address, announced to the old one; links that are broken, old, someone else's, or for
an address the account no longer has change nothing."""

import re
import time

import pytest
from django.conf import settings
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from accounts import admin as accounts_admin
from accounts.views import EMAIL_CHANGE_SALT

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def ask(client, email, password=PASSWORD):
    return client.post(reverse("email_change"), {"email": email, "password": password})


def link_in(message) -> str:
    on_site_url = re.escape(settings.SITE_URL) + r"(/accounts/email/confirm/\S+)"
    return re.search(on_site_url, message.body).group(1)


def token_of(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[1]


def test_it_changes_the_address_once_the_link_sent_to_it_is_opened(owner_client, owner, mailoutbox):
    response = ask(owner_client, "new.address@example.com")

    assert response.status_code == 302 and response.url == reverse("account")
    assert [message.to for message in mailoutbox] == [["new.address@example.com"]]
    owner.refresh_from_db()
    assert owner.email == "patient@example.com"  # not before the link is opened

    page = owner_client.get(link_in(mailoutbox[0]), follow=True)

    owner.refresh_from_db()
    assert owner.email == "new.address@example.com"
    assert "Your e-mail address is now new.address@example.com." in page.content.decode()
    notice = mailoutbox[1]
    assert notice.to == ["patient@example.com"] and "new.address@example.com" in notice.body


def test_it_asks_for_the_password_and_a_new_address(owner_client, owner, mailoutbox):
    wrong = ask(owner_client, "new.address@example.com", password="not mine")
    same = ask(owner_client, "Patient@Example.com")

    assert wrong.status_code == same.status_code == 400
    assert "This is not your current password." in wrong.content.decode()
    assert "This is already your e-mail address." in same.content.decode()
    assert mailoutbox == []


def test_it_refuses_a_link_tampered_with_someone_elses_or_for_a_replaced_address(
    owner_client, outsider_client, owner, mailoutbox
):
    ask(owner_client, "new.address@example.com")
    link = link_in(mailoutbox[0])

    for browser, url in [(outsider_client, link), (owner_client, link[:-3] + "xyz/")]:
        response = browser.get(url)
        assert response.status_code == 302 and response.url == reverse("email_change")
    owner.refresh_from_db()
    assert owner.email == "patient@example.com"
    ask(owner_client, "third@example.com")
    owner_client.get(link_in(mailoutbox[-1]))  # the address changes to the third one

    response = owner_client.get(link)  # the first link only replaces patient@example.com

    assert response.url == reverse("email_change")
    owner.refresh_from_db()
    assert owner.email == "third@example.com"


def test_it_refuses_a_link_older_than_three_days(owner_client, owner, mailoutbox, monkeypatch):
    ask(owner_client, "new.address@example.com")
    four_days_later = time.time() + 4 * 24 * 3600
    monkeypatch.setattr(signing.time, "time", lambda: four_days_later)

    page = owner_client.get(link_in(mailoutbox[0]), follow=True)

    owner.refresh_from_db()
    assert owner.email == "patient@example.com"
    assert "more than three days old" in page.content.decode()


def test_it_sends_at_most_three_links_an_hour_to_one_address(owner_client, mailoutbox):
    for _ in range(4):
        ask(owner_client, "new.address@example.com")

    assert len(mailoutbox) == 3
    page = owner_client.get(reverse("account"))
    assert "Several links went to new.address@example.com within the hour" in page.content.decode()


def test_it_asks_to_sign_in_before_opening_the_link(owner_client, owner, mailoutbox):
    ask(owner_client, "new.address@example.com")

    response = Client().get(link_in(mailoutbox[0]))  # a mail client's link preview, say

    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    owner.refresh_from_db()
    assert owner.email == "patient@example.com"


def test_it_says_so_when_the_mail_server_is_down(owner_client, owner, monkeypatch):
    import smtplib

    def refuse(*args, **kwargs):
        raise smtplib.SMTPConnectError(421, "try later")

    monkeypatch.setattr("django.core.mail.backends.locmem.EmailBackend.send_messages", refuse)

    page = owner_client.post(
        reverse("email_change"), {"email": "new.address@example.com", "password": PASSWORD}, follow=True
    )

    assert page.status_code == 200
    assert "The e-mail could not be sent just now: nothing changed." in page.content.decode()


def test_the_link_holds_neither_the_current_address_nor_the_username(owner_client, mailoutbox):
    """The token is signed, not encrypted, and goes to an address not confirmed yet: whoever
    reads it there must not learn the account's address (nor its username)."""
    ask(owner_client, "new.address@example.com")

    payload = signing.b64_decode(token_of(link_in(mailoutbox[0])).split(":")[0].encode())

    assert b"new.address@example.com" in payload  # decoded as anyone could, without the key
    assert b"patient" not in payload  # "patient@example.com", and the username


def test_the_email_to_the_new_address_names_no_account(owner_client, mailoutbox):
    ask(owner_client, "new.address@example.com")

    message = mailoutbox[0]
    assert "patient" not in message.subject + message.body
    assert "your molesite account" in message.body


def test_a_link_stops_working_once_the_address_was_changed_another_way(owner_client, owner,
                                                                       mailoutbox):
    ask(owner_client, "new.address@example.com")
    owner.email = "changed.by.the.clinic@example.com"  # an administrator, say
    owner.save(update_fields=["email"])

    response = owner_client.get(link_in(mailoutbox[0]))

    assert response.url == reverse("email_change")
    owner.refresh_from_db()
    assert owner.email == "changed.by.the.clinic@example.com"


def test_a_link_from_before_the_hashed_address_asks_for_a_new_one(owner_client, owner):
    """Such links held the address itself; they live three days at most, and are refused."""
    token = signing.dumps({"user": owner.pk, "old": owner.email, "new": "new.address@example.com"},
                          salt=EMAIL_CHANGE_SALT)

    page = owner_client.get(reverse("email_change_confirm", args=[token]), follow=True)

    assert "This link no longer works" in page.content.decode()
    owner.refresh_from_db()
    assert owner.email == "patient@example.com"


def test_a_link_survives_a_rotation_of_the_secret_key(owner_client, owner, mailoutbox, settings):
    ask(owner_client, "new.address@example.com")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-key-" + "x" * 50

    owner_client.get(link_in(mailoutbox[0]))

    owner.refresh_from_db()
    assert owner.email == "new.address@example.com"


# --- the notice to the old address ------------------------------------------------------------

CONTACT = "Dr Smith's clinic, +44 20 7946 0000, help@clinic.example"


@pytest.mark.parametrize("contact", ["", CONTACT])
def test_the_notice_to_the_old_address_says_how_to_reach_the_clinic(owner_client, mailoutbox,
                                                                    settings, contact):
    """The e-mails come from a no-reply sender: the notice names the clinic's contact, when the
    site has one (CLINIC_CONTACT)."""
    settings.CLINIC_CONTACT = contact
    ask(owner_client, "new.address@example.com")
    owner_client.get(link_in(mailoutbox[0]))

    body = mailoutbox[1].body
    assert "All e-mails from molesite go there from now on" in body
    ending = f":\n{contact}\n" if contact else ".\n"
    assert "if you cannot sign in, contact the clinic that runs this site" + ending in body


def change_in_the_admin(admin_client, user, email):
    form = {"username": user.username, "email": email, "is_active": "on",
            "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00",
            "review_emails": "on", "queue_emails": "on"}
    return admin_client.post(reverse("admin:accounts_user_change", args=[user.pk]), form)


def test_an_address_the_clinic_changes_is_announced_to_the_old_one_after_the_save(
        admin_client, owner, mailoutbox, settings, django_capture_on_commit_callbacks):
    settings.CLINIC_CONTACT = CONTACT
    with django_capture_on_commit_callbacks() as after_the_commit:
        response = change_in_the_admin(admin_client, owner, "new.address@example.com")
    assert response.status_code == 302
    assert mailoutbox == []  # not before the change is saved for good
    for callback in after_the_commit:
        callback()

    [notice] = mailoutbox
    assert notice.to == ["patient@example.com"]
    assert ("The clinic has changed the e-mail address of your molesite account to "
            "new.address@example.com.") in notice.body
    assert f"contact the clinic that runs this site:\n{CONTACT}\n" in notice.body


def test_a_notice_that_fails_leaves_the_admins_change_saved(
        admin_client, owner, monkeypatch, django_capture_on_commit_callbacks, caplog):
    """Sent robustly after the commit: the change stands, the failure goes to the log."""
    def broken(**_):
        raise RuntimeError("template missing")

    monkeypatch.setattr(accounts_admin, "send_email_changed_notice", broken)
    with django_capture_on_commit_callbacks(execute=True):
        response = change_in_the_admin(admin_client, owner, "new.address@example.com")
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.email == "new.address@example.com"
    assert "template missing" in caplog.text


@pytest.mark.parametrize("confirmed", [True, False])
def test_the_admin_tells_nobody_of_an_address_unchanged_or_never_confirmed(
        admin_client, owner, mailoutbox, django_capture_on_commit_callbacks, confirmed):
    """An address never confirmed may be a stranger's, as when the patient changes it."""
    if not confirmed:
        type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        response = change_in_the_admin(admin_client, owner,
                                       owner.email if confirmed else "new.address@example.com")
    assert response.status_code == 302
    assert mailoutbox == []


# --- the change that waits for its link (the account page) ------------------------------------

def account_page(client) -> str:
    return client.get(reverse("account")).content.decode()


def when(value) -> str:
    return date_format(timezone.localtime(value), "DATETIME_FORMAT")


def another_device(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.mark.parametrize("confirmed", [False, True])
def test_the_account_page_says_a_change_waits_until_its_link_is_opened(owner_client, owner, mailoutbox,
                                                                      confirmed):
    """A patient whose address is unconfirmed (bob) asks for another: every later load of the
    account page, on any device, says which address waits and where the e-mails go meanwhile,
    and each "Send the link again" names the address it sends to."""
    if not confirmed:
        type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=None)
    ask(owner_client, "new.address@example.com")
    owner_client.get(reverse("account"))  # the one-off "We sent a link" message
    owner.refresh_from_db()

    for page in (account_page(owner_client), account_page(another_device(owner))):
        waits = (f"A link to confirm <strong>new.address@example.com</strong> was sent on\n      "
                 f"{when(owner.email_change_sent_at)}; until you open it, ")
        assert waits in page
        assert ("we keep\n      writing to" if confirmed else "your address stays") in page
        assert "Send the link again to new.address@example.com</button>" in page
        assert ("Send the link again to patient@example.com</button>" in page) is not confirmed
        assert "Send the link again</button>" not in page  # none that does not say where

    owner_client.get(link_in(mailoutbox[0]))

    page = account_page(owner_client)
    assert "A link to confirm" not in page and 'data-testid="email-change-pending"' not in page
    owner.refresh_from_db()
    assert owner.email_change_token == "" and owner.email_change_sent_at is None


def test_send_the_link_again_sends_it_to_the_new_address(owner_client, owner, mailoutbox):
    type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=None)
    ask(owner_client, "new.address@example.com")

    page = owner_client.post(reverse("email_confirm_resend"), {"address": "new.address@example.com"},
                             follow=True).content.decode()

    assert [message.to for message in mailoutbox] == [["new.address@example.com"]] * 2
    assert "We sent the link again to new.address@example.com" in page
    owner_client.get(link_in(mailoutbox[0]))  # the first link works still: the same change
    owner.refresh_from_db()
    assert owner.email == "new.address@example.com" and owner.email_confirmed_at is not None


def test_send_the_link_again_to_the_old_address_still_confirms_it(owner_client, owner, mailoutbox):
    type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=None)
    ask(owner_client, "new.address@example.com")

    owner_client.post(reverse("email_confirm_resend"), {"address": "patient@example.com"})
    owner_client.get(link_in(mailoutbox[1]))

    owner.refresh_from_db()
    assert [message.to for message in mailoutbox] == [["new.address@example.com"], ["patient@example.com"]]
    assert owner.email == "patient@example.com" and owner.email_confirmed_at is not None
    assert "A link to confirm <strong>new.address@example.com</strong>" in account_page(owner_client)


def test_a_newer_request_replaces_the_change_that_waited(owner_client, owner, mailoutbox):
    ask(owner_client, "first@example.com")
    ask(owner_client, "second@example.com")

    page = account_page(another_device(owner))
    assert "A link to confirm <strong>second@example.com</strong>" in page and "first@example.com" not in page
    sent = owner_client.post(reverse("email_confirm_resend"), {"address": "first@example.com"}, follow=True)
    assert "Nothing was sent" in sent.content.decode() and len(mailoutbox) == 2

    refused = owner_client.get(link_in(mailoutbox[0]), follow=True)  # first@'s link
    assert "This link no longer works" in refused.content.decode()
    owner.refresh_from_db()
    assert owner.email == "patient@example.com"
    owner_client.get(link_in(mailoutbox[1]))
    owner.refresh_from_db()
    assert owner.email == "second@example.com"


def test_the_change_no_longer_waits_once_its_link_no_longer_works(owner_client, owner, monkeypatch):
    ask(owner_client, "new.address@example.com")
    assert "A link to confirm" in account_page(owner_client)
    assert "A link to confirm <strong>new.address@example.com</strong>" in owner_client.get(
        reverse("email_change")).content.decode()

    owner.email = "changed.by.the.clinic@example.com"  # an administrator, say
    owner.save(update_fields=["email"])
    assert "A link to confirm" not in account_page(owner_client)

    owner.email = "patient@example.com"
    owner.save(update_fields=["email"])
    assert "A link to confirm" in account_page(owner_client)
    four_days_later = time.time() + 4 * 24 * 3600
    monkeypatch.setattr(signing.time, "time", lambda: four_days_later)
    assert "A link to confirm" not in account_page(owner_client)
