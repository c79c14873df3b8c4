"""The address given at sign-up is confirmed by a link sent to it, as a new address is
(test_email_change.py): the patient is signed in and uploads at once, but until the link is
opened no password reset goes to the address, and the account page says so and sends the link
again. Also: the worker's log names a password reset's account by its id alone."""

import re
import time
from datetime import timedelta

import celery.app.task
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.tasks import send_password_reset_mail
from tests.conftest import ask_for_password_reset

PASSWORD = "a long pass phrase"
SIGN_UP = {"username": "ana", "email": "ana@example.com", "password1": PASSWORD,
           "password2": PASSWORD, "consent": "on"}
LINK_REFUSED = "This link no longer works"


def sign_up(client):
    response = client.post(reverse("signup"), SIGN_UP)
    assert response.status_code == 302 and response.url == reverse("diagnoses:new")
    return get_user_model().objects.get(username="ana")


def link_in(message) -> str:
    on_site_url = re.escape(settings.SITE_URL) + r"(/accounts/email/confirm/\S+)"
    return re.search(on_site_url, message.body).group(1)


def confirmed(user) -> bool:
    user.refresh_from_db()
    return user.email_confirmed_at is not None


# --- sign-up's link ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_sign_up_sends_one_link_and_leaves_the_address_unconfirmed(client, mailoutbox):
    user = sign_up(client)

    assert not confirmed(user)
    [message] = mailoutbox
    assert message.to == ["ana@example.com"]
    assert message.subject == "Confirm your e-mail address for molesite"
    # no username: the address may be a stranger's, mistyped
    assert "ana" not in message.body.replace(link_in(message), "")
    page = client.get(reverse("diagnoses:new")).content.decode()
    assert "We sent a link to ana@example.com" in page


@pytest.mark.django_db
def test_opening_the_link_confirms_the_address(client, mailoutbox):
    user = sign_up(client)

    page = client.get(link_in(mailoutbox[0]), follow=True)

    assert confirmed(user) and user.email == "ana@example.com"
    assert page.redirect_chain[-1][0] == reverse("account")
    assert "Your e-mail address ana@example.com is confirmed." in page.content.decode()
    assert len(mailoutbox) == 1  # no "your address was changed" notice


@pytest.mark.django_db
def test_a_tampered_or_someone_elses_link_is_refused(client, outsider_client, mailoutbox):
    user = sign_up(client)
    link = link_in(mailoutbox[0])

    for browser, url in [(client, link[:-3] + "xyz/"), (outsider_client, link)]:
        page = browser.get(url, follow=True)
        assert LINK_REFUSED in page.content.decode()
    assert not confirmed(user)
    # Ana is sent where the link is sent again
    assert client.get(link[:-3] + "xyz/").url == reverse("account")


@pytest.mark.django_db
def test_a_link_older_than_three_days_is_refused(client, mailoutbox, monkeypatch):
    user = sign_up(client)
    four_days_later = time.time() + 4 * 24 * 3600
    monkeypatch.setattr(signing.time, "time", lambda: four_days_later)

    page = client.get(link_in(mailoutbox[0]), follow=True).content.decode()

    assert not confirmed(user)
    assert "more than three days old" in page and "Send the link again" in page


@pytest.mark.django_db
def test_the_link_asks_to_sign_in_first(client, mailoutbox):
    """Whoever reads a mistyped address cannot confirm it: the link works for Ana signed in."""
    user = sign_up(client)

    response = Client().get(link_in(mailoutbox[0]))

    assert response.url.startswith(reverse("login")) and not confirmed(user)


# --- the account page -------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_account_page_says_the_address_is_unconfirmed_and_sends_the_link_again(client,
                                                                                  mailoutbox):
    user = sign_up(client)
    page = client.get(reverse("account")).content.decode()
    assert "is not confirmed yet" in page and reverse("email_confirm_resend") in page

    response = client.post(reverse("email_confirm_resend"))

    assert response.url == reverse("account")
    assert [message.to for message in mailoutbox] == [["ana@example.com"]] * 2
    client.get(link_in(mailoutbox[1]))
    assert confirmed(user)
    assert "is not confirmed yet" not in client.get(reverse("account")).content.decode()
    client.post(reverse("email_confirm_resend"))
    assert len(mailoutbox) == 2  # nothing left to confirm


@pytest.mark.django_db
def test_the_link_is_sent_at_most_three_times_an_hour(client, mailoutbox):
    sign_up(client)
    for _ in range(3):
        client.post(reverse("email_confirm_resend"))

    assert len(mailoutbox) == 3
    page = client.get(reverse("account")).content.decode()
    assert "Several links went to ana@example.com" in page


@pytest.mark.django_db
def test_an_email_change_confirms_the_new_address_and_tells_no_unconfirmed_one(client,
                                                                             mailoutbox):
    """A patient who mistyped the address puts it right: the new one is confirmed by its link,
    and the old one, perhaps a stranger's, is not told the username nor the new address."""
    user = sign_up(client)
    client.post(reverse("email_change"), {"email": "ana.right@example.com", "password": PASSWORD})

    client.get(link_in(mailoutbox[-1]))

    assert confirmed(user) and user.email == "ana.right@example.com"
    assert [message.to for message in mailoutbox] == [["ana@example.com"],
                                                      ["ana.right@example.com"]]


@pytest.mark.django_db
def test_an_email_change_confirms_the_new_address_of_a_confirmed_account(owner_client, owner,
                                                                         mailoutbox):
    a_year_ago = timezone.now() - timedelta(days=365)
    get_user_model().objects.filter(pk=owner.pk).update(email_confirmed_at=a_year_ago)
    owner_client.post(reverse("email_change"), {"email": "new.address@example.com",
                                                "password": "correct horse battery"})

    before = timezone.now()
    owner_client.get(link_in(mailoutbox[0]))

    owner.refresh_from_db()
    assert owner.email == "new.address@example.com" and owner.email_confirmed_at >= before


# --- password resets --------------------------------------------------------------------------

@pytest.mark.django_db
def test_no_password_reset_goes_to_an_unconfirmed_address(client, monkeypatch):
    sign_up(client)
    client.post(reverse("logout"))
    queued = []
    monkeypatch.setattr(send_password_reset_mail, "delay", lambda *args: queued.append(args))

    response = client.post(reverse("password_reset"), {"email": "ana@example.com"})

    # the answer every address gets, whether it has an account or not
    assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert queued == []


@pytest.mark.django_db
def test_a_password_reset_goes_to_the_address_once_confirmed(client, mailoutbox):
    sign_up(client)
    client.get(link_in(mailoutbox[0]))
    client.post(reverse("logout"))
    mailoutbox.clear()

    response = ask_for_password_reset(client, "ana@example.com")

    assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert [message.to for message in mailoutbox] == [["ana@example.com"]]
    assert "/accounts/password/reset/" in mailoutbox[0].body


@pytest.fixture
def sent_tasks(monkeypatch):
    """The options of each task sent, as Celery's Task.apply_async receives them."""
    sent = []
    monkeypatch.setattr(celery.app.task.Task, "apply_async",
                        lambda task, args=None, kwargs=None, **options: sent.append(options))
    return sent


@pytest.mark.django_db
def test_the_reset_task_is_logged_by_user_id_alone(client, owner, sent_tasks):
    """Celery logs a task's argsrepr and kwargsrepr when a worker receives it and when it
    succeeds or fails; the address, username and link must not reach the worker's log."""
    client.post(reverse("password_reset"), {"email": owner.email})

    [options] = sent_tasks
    assert options["argsrepr"] == f"(user_id={owner.pk})" and options["kwargsrepr"] == "{}"


def test_a_retried_reset_task_is_logged_by_user_id_alone(sent_tasks):
    """A retry (the mail server down) sends the task again, arguments and all."""
    args = ["Reset your molesite password", "Hello ana, ...", "ana@example.com", None, 7]
    send_password_reset_mail.push_request(id="task-id", args=args, kwargs={}, retries=0,
                                          is_eager=False, called_directly=False,
                                          delivery_info={})
    try:
        send_password_reset_mail.retry(exc=ConnectionRefusedError(), countdown=60, throw=False)
    finally:
        send_password_reset_mail.pop_request()

    [options] = sent_tasks
    assert options["argsrepr"] == "(user_id=7)" and options["kwargsrepr"] == "{}"


# --- who the site e-mails ---------------------------------------------------------------------

@pytest.mark.django_db
def test_only_active_accounts_with_a_confirmed_address_are_reachable(client, owner, outsider,
                                                                    reviewer):
    sign_up(client)  # ana, unconfirmed
    users = get_user_model().objects
    users.filter(pk=outsider.pk).update(is_active=False)
    users.create_user("no-address", "", "yet another secret")

    assert set(users.reachable_by_email()) == {owner, reviewer}  # made by create_user: confirmed
    assert list(users.reviewers().reachable_by_email()) == [reviewer]


@pytest.mark.django_db
def test_an_address_set_in_the_admin_is_confirmed(admin_client):
    user = sign_up(Client())  # admin_client is pytest-django's client
    form = {"username": "ana", "email": "ana.right@example.com", "is_active": "on",
            "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00",
            "review_emails": "on", "queue_emails": "on"}

    response = admin_client.post(reverse("admin:accounts_user_change", args=[user.pk]), form)

    assert response.status_code == 302
    assert confirmed(user) and user.email == "ana.right@example.com"


@pytest.mark.django_db(transaction=True)
def test_the_migration_takes_the_addresses_of_existing_accounts_as_confirmed():
    """They have been getting the site's e-mails all along."""
    before = ("accounts", "0011_model_improvement_off_before_opt_in")
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([before])
        User = executor.loader.project_state([before]).apps.get_model("accounts", "User")
        User.objects.create(username="early", email="early@example.com")
        User.objects.create(username="no-address", email="")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    users = get_user_model().objects
    assert users.get(username="early").email_confirmed_at is not None
    assert users.get(username="no-address").email_confirmed_at is None
