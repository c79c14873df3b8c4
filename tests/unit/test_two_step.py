"""The second sign-in step of staff: the admin (review desk) and the patients' photos it shows
need a code from an authenticator app after the password; patients sign in as before."""

import base64
import re
import time
from io import StringIO
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

TWO_STEP = reverse("two_step")
QUEUE = reverse("admin:diagnoses_diagnosis_changelist")


def code_for(key: bytes, *, seconds_ahead=0) -> str:
    """What an authenticator app shows for this key now (or a time step later)."""
    totp = TOTP(key)
    totp.time = time.time() + seconds_ahead
    return f"{totp.token():06d}"


def admin_sign_in(client, username, password, next_url=QUEUE):
    """The review desk's sign-in form; returns the page the browser lands on."""
    response = client.post(f"{reverse('admin:login')}?next={quote(next_url)}",
                           {"username": username, "password": password, "next": next_url}, follow=True)
    assert response.status_code in (200, 400)
    return response


def secret_on(page: str) -> bytes:
    shown = re.search(r"data-secret>([A-Z2-7 ]+)<", page).group(1)
    return base64.b32decode(shown.replace(" ", ""))


def test_it_asks_a_clinician_to_set_up_an_authenticator_app_after_the_password(client, reviewer):
    response = admin_sign_in(client, "dr-reviewer", "a long clinic secret")

    assert response.redirect_chain[-1][0] == f"{TWO_STEP}?next={quote(QUEUE, safe='')}"
    page = response.content.decode()
    assert "Set up your authenticator app" in page and "<svg" in page
    assert client.get(QUEUE).status_code == 302  # the desk stays shut until the code
    # the QR code and the key are one secret, kept while the page is reloaded
    device = TOTPDevice.objects.get(user=reviewer, confirmed=False)
    assert secret_on(page) == device.bin_key
    assert secret_on(client.get(f"{TWO_STEP}?next={QUEUE}").content.decode()) == device.bin_key


def test_it_confirms_the_app_with_its_first_code_and_opens_the_desk(client, reviewer, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # no wait after the wrong code (a person takes longer)
    page = admin_sign_in(client, "dr-reviewer", "a long clinic secret").content.decode()
    key = secret_on(page)

    wrong = client.post(f"{TWO_STEP}?next={QUEUE}", {"code": "000000" if code_for(key) != "000000" else "111111"})
    assert wrong.status_code == 400 and "This code is not right" in wrong.content.decode()
    assert not TOTPDevice.objects.get(user=reviewer).confirmed

    right = client.post(f"{TWO_STEP}?next={QUEUE}", {"code": code_for(key)})
    assert right.status_code == 302 and right.url == QUEUE
    assert TOTPDevice.objects.get(user=reviewer).confirmed
    assert client.get(QUEUE).status_code == 200


def test_it_shows_each_new_session_a_key_of_its_own_and_forgets_the_others_once_one_is_confirmed(client, reviewer):
    # Someone who once had the password opens the setup page, and leaves without confirming it.
    stranger = Client()
    seen = secret_on(admin_sign_in(stranger, "dr-reviewer", "a long clinic secret").content.decode())
    assert secret_on(stranger.get(TWO_STEP).content.decode()) == seen  # kept while reloaded

    # The clinician signs in later and sets up the app with the key shown to them.
    shown = secret_on(admin_sign_in(client, "dr-reviewer", "a long clinic secret").content.decode())
    assert shown != seen
    assert secret_on(client.get(f"{TWO_STEP}?next={QUEUE}").content.decode()) == shown
    assert client.post(f"{TWO_STEP}?next={QUEUE}", {"code": code_for(shown)}).url == QUEUE
    assert [device.bin_key for device in TOTPDevice.objects.filter(user=reviewer)] == [shown]

    # The key the stranger saw gives no code that passes, at the next sign-in as on the page kept open.
    assert stranger.post(TWO_STEP, {"code": code_for(seen, seconds_ahead=30)}).status_code == 400
    again = Client()
    page = admin_sign_in(again, "dr-reviewer", "a long clinic secret").content.decode()
    assert "Enter your sign-in code" in page
    assert again.post(f"{TWO_STEP}?next={QUEUE}", {"code": code_for(seen, seconds_ahead=30)}).status_code == 400
    assert again.get(QUEUE).status_code == 302 and stranger.get(QUEUE).status_code == 302


def test_it_deletes_keys_shown_to_sessions_that_have_ended(client, reviewer, settings):
    from datetime import timedelta

    from django.utils import timezone

    stale = TOTPDevice.objects.create(user=reviewer, name="Authenticator app", confirmed=False)
    TOTPDevice.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE + 1))
    shown = secret_on(admin_sign_in(client, "dr-reviewer", "a long clinic secret").content.decode())
    assert [device.bin_key for device in TOTPDevice.objects.filter(user=reviewer)] == [shown]


def test_it_asks_for_a_code_at_each_sign_in_and_refuses_one_used_before(client, reviewer):
    device = TOTPDevice.objects.create(user=reviewer, name="Phone", confirmed=True)

    response = admin_sign_in(client, "dr-reviewer", "a long clinic secret")
    page = response.content.decode()
    assert "Enter your sign-in code" in page and "<svg" not in page and "data-secret" not in page
    code = code_for(device.bin_key)
    assert client.post(f"{TWO_STEP}?next={QUEUE}", {"code": code}).url == QUEUE
    assert client.get(QUEUE).status_code == 200

    # someone who read the code over the clinician's shoulder, with the password too
    other = Client()
    admin_sign_in(other, "dr-reviewer", "a long clinic secret")
    replay = other.post(f"{TWO_STEP}?next={QUEUE}", {"code": code})
    assert replay.status_code == 400
    assert other.get(QUEUE).status_code == 302


def test_it_slows_down_guessing_of_codes(client, reviewer, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60  # a wait no slow machine outlasts within the test
    device = TOTPDevice.objects.create(user=reviewer, name="Phone", confirmed=True)
    admin_sign_in(client, "dr-reviewer", "a long clinic secret")
    right = code_for(device.bin_key)
    wrong = "000000" if right != "000000" else "111111"

    for _ in range(3):
        client.post(TWO_STEP, {"code": wrong})
    response = client.post(TWO_STEP, {"code": right})

    assert response.status_code == 400
    assert "Too many wrong codes" in response.content.decode()
    assert client.get(QUEUE).status_code == 302


def test_it_takes_a_one_time_recovery_code_from_the_command_line_once(client, reviewer):
    TOTPDevice.objects.create(user=reviewer, name="Lost phone", confirmed=True)
    out = StringIO()
    call_command("addstatictoken", "dr-reviewer", stdout=out)
    recovery = out.getvalue().strip()

    admin_sign_in(client, "dr-reviewer", "a long clinic secret")
    assert client.post(TWO_STEP, {"code": recovery}).status_code == 302
    assert client.get(QUEUE).status_code == 200

    other = Client()
    admin_sign_in(other, "dr-reviewer", "a long clinic secret")
    assert other.post(TWO_STEP, {"code": recovery}).status_code == 400


def test_it_offers_a_new_app_once_the_lost_one_is_deleted_and_its_recovery_code_used(client, reviewer):
    lost = TOTPDevice.objects.create(user=reviewer, name="Lost phone", confirmed=True)
    out = StringIO()
    call_command("addstatictoken", "dr-reviewer", stdout=out)
    admin_sign_in(client, "dr-reviewer", "a long clinic secret")
    assert client.post(TWO_STEP, {"code": out.getvalue().strip()}).status_code == 302
    lost.delete()  # by an administrator; the recovery-code device stays, with no code left

    other = Client()
    page = admin_sign_in(other, "dr-reviewer", "a long clinic secret").content.decode()

    assert "Set up your authenticator app" in page and "<svg" in page
    assert "Not set up yet" in other.get(reverse("account")).content.decode()


def test_it_keeps_the_patients_photos_from_staff_who_skipped_the_second_step(client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)
    photo = reverse("diagnoses:file", args=[diagnosis.pk, "image"])
    client.post(reverse("login"), {"username": "dr-reviewer", "password": "a long clinic secret"})  # the site's form

    assert client.get(photo).status_code == 404
    assert client.get(reverse("admin:diagnoses_diagnosis_change", args=[diagnosis.pk])).status_code == 302


def test_it_leaves_patients_sign_in_unchanged_and_shows_them_no_second_step(client, owner):
    response = client.post(reverse("login"), {"username": "patient", "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.get(reverse("diagnoses:list")).status_code == 200
    assert client.get(TWO_STEP).status_code == 404
    assert not TOTPDevice.objects.exists()


def test_it_never_sends_a_clinician_off_site_after_the_code(client, reviewer):
    device = TOTPDevice.objects.create(user=reviewer, name="Phone", confirmed=True)
    admin_sign_in(client, "dr-reviewer", "a long clinic secret")
    response = client.post(f"{TWO_STEP}?next=https://evil.example.org/", {"code": code_for(device.bin_key)})
    assert response.status_code == 302 and response.url == reverse("admin:index")


def test_it_opens_the_desk_on_the_password_alone_when_the_second_step_is_turned_off(client, reviewer, settings):
    settings.STAFF_REQUIRE_2FA = False
    admin_sign_in(client, "dr-reviewer", "a long clinic secret")
    assert client.get(QUEUE).status_code == 200


def test_it_tells_staff_on_their_account_page_whether_the_app_is_set_up(client, reviewer, owner):
    client.force_login(reviewer)
    assert "Not set up yet" in client.get(reverse("account")).content.decode()
    TOTPDevice.objects.create(user=reviewer, name="Phone", confirmed=True)
    assert "On: your authenticator app gives the code." in client.get(reverse("account")).content.decode()
    client.force_login(owner)
    assert "Two-step sign-in" not in client.get(reverse("account")).content.decode()
