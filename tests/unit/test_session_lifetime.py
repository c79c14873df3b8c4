"""A sign-in lasts SESSION_HOURS (12 by default) from the sign-in, a patient's and a clinician's
past the second step alike, not Django's two weeks, and not until the browser is closed; the
ended ones are deleted from the database each night."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from .test_settings_production import production, settings_of
from .test_two_step import QUEUE, TWO_STEP, admin_sign_in, code_for

pytestmark = pytest.mark.django_db

TWELVE_HOURS = 12 * 3600


def cookie_max_age(response) -> int:
    return int(response.cookies[settings.SESSION_COOKIE_NAME]["max-age"])


def test_a_patients_sign_in_lasts_twelve_hours(client, owner):
    form = {"username": "patient", "password": "correct horse battery"}

    response = client.post(reverse("login"), form)

    assert response.status_code == 302
    assert cookie_max_age(response) == TWELVE_HOURS
    # and on the server's side, so that a cookie kept longer than it was sent for opens nothing
    left = Session.objects.get(session_key=client.session.session_key).expire_date - timezone.now()
    assert timedelta(hours=12) - timedelta(minutes=1) < left <= timedelta(hours=12)


def test_a_clinicians_second_step_lasts_no_longer(client, reviewer):
    device = TOTPDevice.objects.create(user=reviewer, name="Phone", confirmed=True)
    admin_sign_in(client, "dr-reviewer", "a long clinic secret")

    response = client.post(f"{TWO_STEP}?next={QUEUE}", {"code": code_for(device.bin_key)})

    assert response.url == QUEUE
    assert cookie_max_age(response) == TWELVE_HOURS


def test_session_hours_sets_how_long_a_sign_in_lasts(tmp_path):
    found = settings_of(tmp_path, ["SESSION_COOKIE_AGE"], **production(SESSION_HOURS="2"))

    assert found == {"SESSION_COOKIE_AGE": 2 * 3600}


def test_ended_sign_ins_are_deleted_every_night_from_celery_beat(client, owner, outsider):
    from molesite.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["clear-expired-sessions"]
    app.loader.import_default_modules()
    assert entry["schedule"].day_of_week == set(range(7))
    client.force_login(owner)
    live = client.session.session_key
    ended = Client()
    ended.force_login(outsider)
    Session.objects.filter(session_key=ended.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1))

    app.tasks[entry["task"]]()

    assert list(Session.objects.values_list("session_key", flat=True)) == [live]
    assert client.get(reverse("account")).status_code == 200  # still signed in
