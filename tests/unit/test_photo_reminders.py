"""Photo reminders: a mole asks for a new photo every N months; the patient is e-mailed when one
is due, once per due date; the pages and the API show when the next photo is due."""

from datetime import date, timedelta
from unittest import mock

import pytest
from celery.schedules import crontab
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from diagnoses import services, tasks
from diagnoses.models import Mole, add_months
from tests.conftest import failing_first

pytestmark = pytest.mark.django_db


def tracked_mole(owner, *, name="Left shoulder", months=1, created_days_ago=0):
    mole = services.mole_create(owner=owner, name=name, recheck_months=months)
    if created_days_ago:
        Mole.objects.filter(pk=mole.pk).update(created_at=timezone.now() - timedelta(days=created_days_ago))
    return Mole.objects.get(pk=mole.pk)


def send(today=None):
    return services.photo_reminders_send(today=today)


# --- when a photo is due -------------------------------------------------------------------------

@pytest.mark.parametrize("day, months, due", [
    (date(2027, 1, 31), 1, date(2027, 2, 28)),
    (date(2028, 1, 31), 1, date(2028, 2, 29)),
    (date(2026, 11, 30), 3, date(2027, 2, 28)),
    (date(2026, 12, 15), 12, date(2027, 12, 15)),
    (date(2026, 8, 31), 6, date(2027, 2, 28)),
])
def test_it_adds_calendar_months_keeping_within_the_shorter_month(day, months, due):
    assert add_months(day, months) == due


def test_it_counts_the_due_date_from_the_last_photo_or_else_from_the_moles_creation(owner, make_diagnosis):
    mole = tracked_mole(owner, months=3, created_days_ago=50)
    assert mole.next_photo_due == add_months(timezone.localdate(mole.created_at), 3)

    make_diagnosis(owner, mole=mole, age_days=40)
    last = make_diagnosis(owner, mole=mole, age_days=10)
    assert Mole.objects.get(pk=mole.pk).next_photo_due == add_months(timezone.localdate(last.created_at), 3)

    services.mole_update(mole=mole, recheck_months=None)
    assert Mole.objects.get(pk=mole.pk).next_photo_due is None


def test_a_photo_whose_analysis_failed_does_not_put_the_reminder_off(owner, owner_client, make_diagnosis,
                                                                      mailoutbox):
    mole = tracked_mole(owner, months=1, created_days_ago=60)
    analysed = make_diagnosis(owner, mole=mole, age_days=40)
    make_diagnosis(owner, mole=mole, status="failed", age_days=1)  # "please upload it again"
    due = add_months(timezone.localdate(analysed.created_at), 1)
    assert Mole.objects.get(pk=mole.pk).next_photo_due == due
    assert Mole.objects.with_last_photo().get(pk=mole.pk).next_photo_due == due
    assert owner_client.get(mole.get_absolute_url()).context["mole"].next_photo_due == due  # the mole's page
    assert send() == 1 and len(mailoutbox) == 1

    make_diagnosis(owner, mole=mole, status="queued")  # a photo taken, its result on the way
    assert Mole.objects.get(pk=mole.pk).next_photo_due == add_months(timezone.localdate(), 1)


# --- the e-mails -----------------------------------------------------------------------------------

def test_it_emails_the_patient_once_when_a_mole_is_due(owner, make_diagnosis, mailoutbox):
    mole = tracked_mole(owner, name="Left shoulder", months=1)
    make_diagnosis(owner, mole=mole, age_days=40)

    assert send() == 1
    assert send() == 0  # the same due date is reminded once

    [email] = mailoutbox
    assert email.to == ["patient@example.com"]
    assert email.subject == "Time for a new photo of one of your moles"
    assert f"{django_settings.SITE_URL}{reverse('diagnoses:moles')}" in email.body
    assert "Left shoulder" not in email.body  # no health data in an e-mail
    assert Mole.objects.get(pk=mole.pk).reminded_for == mole.next_photo_due


def test_it_does_not_remind_before_the_due_date(owner, make_diagnosis, mailoutbox):
    mole = tracked_mole(owner, months=3)
    make_diagnosis(owner, mole=mole, age_days=20)

    assert send() == 0
    assert send(today=mole.next_photo_due - timedelta(days=1)) == 0
    assert send(today=mole.next_photo_due) == 1
    assert len(mailoutbox) == 1


def test_it_reminds_again_when_the_photo_after_the_reminder_falls_due(owner, make_diagnosis, mailoutbox):
    mole = tracked_mole(owner, months=1)
    make_diagnosis(owner, mole=mole, age_days=35)
    assert send() == 1

    make_diagnosis(owner, mole=mole)  # the patient took the new photo
    assert send() == 0
    next_due = add_months(timezone.localdate(), 1)
    assert Mole.objects.get(pk=mole.pk).next_photo_due == next_due
    assert send(today=next_due) == 1
    assert len(mailoutbox) == 2


def test_it_sends_one_email_per_patient_for_all_their_due_moles(owner, outsider, make_diagnosis, mailoutbox):
    for name in ("Back", "Neck"):
        make_diagnosis(owner, mole=tracked_mole(owner, name=name, months=1), age_days=45)
    make_diagnosis(owner, mole=tracked_mole(owner, name="Recent", months=1), age_days=5)
    untracked = services.mole_create(owner=owner, name="No reminder")
    make_diagnosis(owner, mole=untracked, age_days=400)
    tracked_mole(outsider, name="Arm", months=6, created_days_ago=200)  # due without any photo

    assert send() == 2

    by_address = {email.to[0]: email for email in mailoutbox}
    assert by_address["patient@example.com"].subject == "Time for new photos of 2 of your moles"
    assert by_address["outsider@example.com"].subject == "Time for a new photo of one of your moles"
    assert Mole.objects.get(pk=untracked.pk).reminded_for is None


def test_the_email_counts_every_mole_due_as_my_moles_marks_them(owner, owner_client, make_diagnosis, mailoutbox):
    """A mole reminded of on its due date and still without a new photo is due all the same: the
    e-mail for another mole falling due counts it too, as My moles marks both, and names neither."""
    reminded, newly_due = (tracked_mole(owner, name=name, months=1) for name in ("Back", "Neck"))
    make_diagnosis(owner, mole=reminded, age_days=70)
    make_diagnosis(owner, mole=newly_due, age_days=31)
    Mole.objects.filter(pk=reminded.pk).update(reminded_for=Mole.objects.get(pk=reminded.pk).next_photo_due)

    assert send() == 1
    [email] = mailoutbox
    assert email.subject == "Time for new photos of 2 of your moles"
    assert "2 moles you follow are due for a new photo" in email.body
    assert "Back" not in email.body and "Neck" not in email.body
    assert owner_client.get(reverse("diagnoses:moles")).content.decode().count("New photo due") == 2
    assert send() == 0  # the earlier mole is not reminded of twice, nor the new one


def test_it_skips_accounts_without_an_address_or_no_longer_active(owner, outsider, mailoutbox):
    tracked_mole(owner, created_days_ago=60)
    tracked_mole(outsider, created_days_ago=60)
    type(owner).objects.filter(pk=owner.pk).update(email="")
    type(owner).objects.filter(pk=outsider.pk).update(is_active=False)

    assert send() == 0
    assert mailoutbox == []
    # not marked as reminded: an address added later gets the reminder
    type(owner).objects.filter(pk=owner.pk).update(email="patient@example.com")
    assert send() == 1


def test_it_keeps_the_reminder_for_the_next_run_when_the_mail_server_fails(owner, mailoutbox):
    mole = tracked_mole(owner, created_days_ago=60)
    with mock.patch("diagnoses.services.send_templated_mail", side_effect=ConnectionRefusedError):
        with pytest.raises(services.EmailsNotSent):  # for the task to retry
            send()
    assert Mole.objects.get(pk=mole.pk).reminded_for is None

    assert send() == 1
    assert len(mailoutbox) == 1


def test_it_stops_at_an_unreachable_mail_server_and_skips_only_a_refused_address(owner, outsider,
                                                                                   mailoutbox):
    tracked_mole(owner, created_days_ago=60)
    tracked_mole(outsider, created_days_ago=60)
    with mock.patch("diagnoses.services.send_templated_mail", side_effect=ConnectionRefusedError) as down:
        with pytest.raises(services.EmailsNotSent) as raised:
            send()
    assert down.call_count == 1 and (raised.value.sent, raised.value.failed) == (0, 2)

    real_send = services.send_templated_mail

    def refusing(template, context, to):
        if to == owner.email:
            raise ValueError("Invalid address")  # the mail library's, this recipient's alone
        real_send(template, context, to)

    with mock.patch("diagnoses.services.send_templated_mail", side_effect=refusing):
        with pytest.raises(services.EmailsNotSent) as raised:
            send()
    assert (raised.value.sent, raised.value.failed) == (1, 1)
    assert [email.to for email in mailoutbox] == [[outsider.email]]
    assert send() == 1  # the refused one's claim was given back


def test_its_task_tries_again_while_the_mail_server_fails(owner, mailoutbox):
    tracked_mole(owner, created_days_ago=60)
    flaky = failing_first(1, services.send_templated_mail)
    with mock.patch("diagnoses.services.send_templated_mail", side_effect=flaky):
        assert tasks.send_photo_reminders.apply().get() == 1  # apply() runs the retry at once
    assert len(mailoutbox) == 1


def test_it_sends_the_reminders_every_day_from_celery_beat(owner, mailoutbox):
    from molesite.celery import app

    entry = django_settings.CELERY_BEAT_SCHEDULE["photo-reminders"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].hour == {django_settings.DAILY_EMAILS_HOUR}
    assert entry["schedule"].day_of_week == set(range(7))

    tracked_mole(owner, created_days_ago=60)
    assert app.tasks[entry["task"]]() == 1 == len(mailoutbox)
    assert tasks.send_photo_reminders() == 0


# --- the pages -------------------------------------------------------------------------------------

def test_it_sets_and_stops_a_photo_reminder_on_the_mole_edit_page(owner_client, owner, make_diagnosis):
    mole = services.mole_create(owner=owner, name="Back")
    last = make_diagnosis(owner, mole=mole, age_days=3)
    url = reverse("diagnoses:mole_edit", args=[mole.pk])
    assert "No photo reminder" in owner_client.get(mole.get_absolute_url()).content.decode()

    response = owner_client.post(url, {"name": "Back", "body_site": "back", "recheck_months": "3"}, follow=True)
    page = response.content.decode()
    assert "The mole was saved." in page
    assert Mole.objects.get(pk=mole.pk).recheck_months == 3
    due = add_months(timezone.localdate(last.created_at), 3)
    assert f"Next photo due <strong class=\"text-body\">{due.day} {due:%b %Y}</strong>" in page
    assert "every 3 months: we e-mail you that day" in page

    owner_client.post(url, {"name": "Back", "body_site": "back", "recheck_months": ""})
    assert Mole.objects.get(pk=mole.pk).recheck_months is None


def test_it_offers_a_reminder_on_the_result_of_a_tracked_mole_without_one(owner_client, owner, make_diagnosis):
    mole = services.mole_create(owner=owner, name="Back")
    diagnosis = make_diagnosis(owner, mole=mole)
    offer = f'href="{reverse("diagnoses:mole_edit", args=[mole.pk])}">Remind me to photograph it again'
    assert offer in owner_client.get(diagnosis.get_absolute_url()).content.decode()

    services.mole_update(mole=mole, recheck_months=3)
    assert offer not in owner_client.get(diagnosis.get_absolute_url()).content.decode()
    untracked = make_diagnosis(owner)
    assert "Remind me" not in owner_client.get(untracked.get_absolute_url()).content.decode()


def test_it_refuses_a_reminder_interval_it_does_not_offer(owner_client, owner):
    mole = services.mole_create(owner=owner, name="Back", recheck_months=1)
    response = owner_client.post(reverse("diagnoses:mole_edit", args=[mole.pk]),
                                 {"name": "Back", "body_site": "back", "recheck_months": "2"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert Mole.objects.get(pk=mole.pk).recheck_months == 1


def test_it_marks_the_moles_due_for_a_photo_on_their_pages(owner_client, owner, make_diagnosis):
    due = tracked_mole(owner, name="Due one", months=3)
    make_diagnosis(owner, mole=due, age_days=100)
    later = tracked_mole(owner, name="Later one", months=12)
    make_diagnosis(owner, mole=later, age_days=10)

    page = owner_client.get(due.get_absolute_url()).content.decode()
    assert "A new photo of this mole is due" in page
    assert f'{reverse("diagnoses:new")}?mole={due.pk}' in page
    assert "A new photo of this mole is due" not in owner_client.get(later.get_absolute_url()).content.decode()

    listing = owner_client.get(reverse("diagnoses:moles")).content.decode()
    assert listing.count("New photo due") == 1
    assert listing.index("Due one") < listing.index("New photo due") < listing.index("Later one")
    assert "Next photo " in listing


def test_it_says_a_reminder_needs_an_email_address(owner_client, owner):
    mole = tracked_mole(owner)
    type(owner).objects.filter(pk=owner.pk).update(email="")
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "no e-mail address, so no reminder can be sent" in page
    assert reverse("email_change") in page


def test_it_promises_no_reminder_to_an_address_not_confirmed_yet(owner_client, owner):
    mole = tracked_mole(owner)
    assert "we e-mail you that day" in owner_client.get(mole.get_absolute_url()).content.decode()

    type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=None)  # signed up, not opened
    page = owner_client.get(mole.get_absolute_url()).content.decode()

    assert "we e-mail you that day" not in page
    assert "confirmed yet, so no reminder can be sent" in page
    assert f'<a href="{reverse("account")}">your account page</a>' in page
    assert services.photo_reminders_send(today=mole.next_photo_due) == 0  # as the page says


def test_it_lists_moles_with_reminders_in_a_constant_number_of_queries(owner_client, owner, make_diagnosis):
    def queries():
        with CaptureQueriesContext(connection) as context:
            assert owner_client.get(reverse("diagnoses:moles")).status_code == 200
        return len(context.captured_queries)

    make_diagnosis(owner, mole=tracked_mole(owner, name="Mole 0"), age_days=40)
    one = queries()
    for index in range(1, 4):
        make_diagnosis(owner, mole=tracked_mole(owner, name=f"Mole {index}"), age_days=40)
    assert queries() == one


# --- the API ---------------------------------------------------------------------------------------

def test_it_sets_a_reminder_through_the_api(owner_api, owner, make_diagnosis):
    created = owner_api.post("/api/v1/moles/", {"name": "Arm", "recheck_months": 6}, format="json")
    assert created.status_code == 201
    assert created.json()["recheck_months"] == 6
    mole = Mole.objects.get()
    assert created.json()["next_photo_due"] == add_months(timezone.localdate(mole.created_at), 6).isoformat()

    last = make_diagnosis(owner, mole=mole, age_days=2)
    body = owner_api.get(f"/api/v1/moles/{mole.pk}/").json()
    assert body["next_photo_due"] == add_months(timezone.localdate(last.created_at), 6).isoformat()

    stopped = owner_api.patch(f"/api/v1/moles/{mole.pk}/", {"recheck_months": None}, format="json")
    assert stopped.status_code == 200
    assert (stopped.json()["recheck_months"], stopped.json()["next_photo_due"]) == (None, None)
    assert Mole.objects.get(pk=mole.pk).name == "Arm"


def test_it_refuses_an_unknown_reminder_interval_through_the_api(owner_api, owner):
    mole = services.mole_create(owner=owner, name="Arm")
    response = owner_api.patch(f"/api/v1/moles/{mole.pk}/", {"recheck_months": 2}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["recheck_months"]
    assert Mole.objects.get(pk=mole.pk).recheck_months is None
