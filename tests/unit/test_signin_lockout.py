"""Sign-in lockout: wrong passwords for one username from one address pause that pair, on the
site's sign-in page, the admin's and the API's token endpoint; the client's address is never
taken from what the client wrote in X-Forwarded-For."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.conftest import reset_password_by_email, set_throttle_rate, token_client

pytestmark = pytest.mark.django_db

RIGHT = "correct horse battery"
TOKEN = "/api/v1/auth/token/"


def sign_in(client, password, username="patient"):
    return client.post(reverse("login"), {"username": username, "password": password})


def lock(client, username="patient"):
    """Five wrong passwords (the default limit): the fifth answer is already the lockout."""
    answers = [sign_in(client, "wrong guess", username).status_code for _ in range(5)]
    assert answers == [200, 200, 200, 200, 429]


def test_it_pauses_sign_in_after_five_wrong_passwords_even_for_the_right_one(client, owner):
    lock(client)

    response = sign_in(client, RIGHT)

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    page = response.content.decode()
    assert "Sign-in paused" in page and "try again in 15 minutes" in page
    assert reverse("password_reset") in page
    assert 14 * 60 < int(response["Retry-After"]) <= 15 * 60


def test_it_pauses_only_that_username_from_that_address(client, owner, outsider):
    lock(client)

    assert sign_in(client, "another long secret", username="outsider").status_code == 302
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    assert sign_in(elsewhere, RIGHT).status_code == 302


def test_it_lets_the_patient_in_again_after_the_cool_off(client, owner):
    lock(client)
    # Fifteen minutes and a second pass since the last recorded failure.
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= timedelta(minutes=15, seconds=1)
        attempt.save()

    assert sign_in(client, RIGHT).status_code == 302


def test_it_tells_when_the_pause_ends_with_failures_from_two_browsers(owner):
    """Axes keeps a row per browser (user agent), dated by its last failure, and pauses while
    the rows within the cool-off add up to the limit: the pause ends when the older row leaves
    it, not a cool-off after the newest failure."""
    first, second = Client(HTTP_USER_AGENT="browser one"), Client(HTTP_USER_AGENT="browser two")
    assert [sign_in(first, "wrong guess").status_code for _ in range(4)] == [200] * 4
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=10))

    refused = sign_in(second, "wrong guess")  # the fifth failure, from the other browser

    assert refused.status_code == 429 and AccessAttempt.objects.count() == 2
    assert 4 * 60 < int(refused["Retry-After"]) <= 5 * 60
    assert "try again in 5 minutes" in refused.content.decode()
    # and axes lets the patient in then: the first browser's four left the cool-off, one is left
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=5, seconds=1))
    assert sign_in(second, RIGHT).status_code == 302


def test_it_does_not_extend_the_pause_for_retries_while_paused(client, owner):
    lock(client)
    last_failure = AccessAttempt.objects.get().attempt_time

    for _ in range(3):
        assert sign_in(client, "wrong guess").status_code == 429

    assert AccessAttempt.objects.get().attempt_time == last_failure


def test_it_clears_the_count_on_a_successful_sign_in(client, owner):
    for _ in range(4):
        sign_in(client, "wrong guess")
    assert sign_in(client, RIGHT).status_code == 302
    client.post(reverse("logout"))

    for _ in range(4):
        assert sign_in(client, "wrong guess").status_code == 200
    assert sign_in(client, RIGHT).status_code == 302


def test_it_lifts_the_pause_on_a_password_reset_by_e_mail(client, owner, mailoutbox):
    lock(client)

    response = reset_password_by_email(client, mailoutbox, "patient@example.com", "a fresh pass phrase")

    assert response.status_code == 302 and client.session["_auth_user_id"] == str(owner.pk)
    client.post(reverse("logout"))
    assert not AccessAttempt.objects.exists()
    assert sign_in(client, "a fresh pass phrase").status_code == 302


def test_it_counts_admin_sign_ins_with_the_sites(client, reviewer):
    for _ in range(4):
        sign_in(client, "wrong guess", username="dr-reviewer")

    response = client.post(reverse("admin:login"), {"username": "dr-reviewer", "password": "wrong guess"})

    assert response.status_code == 429


def test_it_pauses_the_api_token_endpoint_with_a_json_answer(api_client, owner):
    answers = [api_client.post(TOKEN, {"username": "patient", "password": "wrong"}) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [400, 400, 400, 400, 429]

    refused = api_client.post(TOKEN, {"username": "patient", "password": RIGHT})

    assert refused.status_code == 429
    assert refused.json() == {
        "detail": "Too many failed sign-ins for this username from your address: try again in 15 minutes."
    }
    assert 14 * 60 < int(refused["Retry-After"]) <= 15 * 60
    assert not Token.objects.exists()
    # The site's sign-in page counts the same failures.
    assert sign_in(Client(), RIGHT).status_code == 429


def test_it_takes_the_limit_and_the_pause_from_the_settings(client, owner, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)

    assert sign_in(client, "wrong guess").status_code == 200
    response = sign_in(client, "wrong guess")

    assert response.status_code == 429
    assert "try again in 1 minute." in response.content.decode()
    assert int(response["Retry-After"]) <= 60


def test_it_ignores_a_client_written_x_forwarded_for_when_counting(owner):
    for number in range(5):
        browser = Client(HTTP_X_FORWARDED_FOR=f"203.0.113.{number}")
        sign_in(browser, "wrong guess")

    assert sign_in(Client(HTTP_X_FORWARDED_FOR="203.0.113.99"), RIGHT).status_code == 429


def test_it_ignores_a_client_written_x_forwarded_for_when_throttling_tokens(api_client, owner, settings):
    rates = {"uploads": "30/hour", "token": "2/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    credentials = {"username": "patient", "password": RIGHT}

    answers = [
        token_client().post(TOKEN, credentials, HTTP_X_FORWARDED_FOR=f"203.0.113.{number}").status_code
        for number in range(3)
    ]

    assert answers == [200, 200, 429]


def test_it_counts_each_client_address_behind_the_proxy(owner, settings):
    # The proxy appends the address it saw; what comes before is the client's own writing.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    attacker = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.66")
    lock(attacker)

    patient = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert sign_in(patient, RIGHT).status_code == 302
    assert AccessAttempt.objects.get().ip_address == "203.0.113.66"


def test_one_address_cannot_spray_a_password_over_many_usernames(client, owner, reviewer, settings):
    """Sign-ins per address (API_TOKEN_RATE), one count for the site's page, the admin's and the
    API's token requests; the lockout alone (per username) would let every username be tried."""
    set_throttle_rate(settings, "token", "3/minute")
    answers = [sign_in(client, "Winter2026!", username=f"user{number}").status_code for number in range(3)]
    assert answers == [200, 200, 200]

    refused = sign_in(client, RIGHT)  # even the right password, from this address
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    assert "Too many sign-ins from your address: try again in 1 minute." in refused.content.decode()
    assert 0 < int(refused["Retry-After"]) <= 60
    admin = client.post(reverse("admin:login"), {"username": "dr-reviewer", "password": "a long clinic secret"})
    assert admin.status_code == 429 and "_auth_user_id" not in client.session
    assert "Too many sign-ins from your address" in admin.content.decode()
    assert token_client().post(TOKEN, {"username": "patient", "password": RIGHT}).status_code == 429
    assert not AccessAttempt.objects.filter(username="patient").exists()  # refused before the password was read
    # another address is counted apart
    assert sign_in(Client(REMOTE_ADDR="198.51.100.7"), RIGHT).status_code == 302


def test_the_token_requests_count_toward_the_sign_ins_of_the_address(client, owner, settings):
    set_throttle_rate(settings, "token", "2/minute")
    for _ in range(2):
        token_client().post(TOKEN, {"username": "patient", "password": RIGHT})
    assert sign_in(client, RIGHT).status_code == 429
    assert client.post(reverse("admin:login"), {"username": "patient", "password": RIGHT}).status_code == 429


def test_it_lists_the_current_failures_in_the_admin_and_no_empty_logs(admin_client):
    client = admin_client

    index = client.get(reverse("admin:index")).content.decode()

    assert "Access attempts" in index
    assert "Access logs" not in index and "Access failures" not in index


@pytest.mark.parametrize("page, field, extra", [
    ("account_delete", "password", {}),
    ("email_change", "password", {"email": "new@example.com"}),
    ("password_change", "old_password", {"new_password1": "a new long pass phrase", "new_password2": "a new long pass phrase"}),
])
def test_a_left_open_session_cannot_guess_the_password_without_end(owner_client, owner, page, field, extra):
    """The pages that ask for the password again count wrong guesses as the sign-in page does."""
    answers = [owner_client.post(reverse(page), {field: "wrong guess", **extra}).status_code for _ in range(5)]
    assert answers[:4] == [400 if page != "password_change" else 200] * 4 and answers[4] == 429

    response = owner_client.post(reverse(page), {field: RIGHT, **extra})  # the right one, too late

    # the form's pause, not the sign-in page's, for a patient who is signed in
    assert response.status_code == 429 and "this form is paused for 15 minutes" in response.content.decode()
    owner.refresh_from_db()
    assert owner.email == "patient@example.com" and owner.check_password(RIGHT)
    assert sign_in(Client(), RIGHT).status_code == 429  # the same lock as the sign-in page's, from this address


def test_the_admins_password_change_is_the_sites_form_with_the_same_pause(reviewer_client, reviewer):
    """The desk's "Change password" leads to the site's page; its own form, which no lockout
    counted, changes nothing, however many guesses come before the right password."""
    admin_page = reverse("admin:password_change")
    new = {"new_password1": "a new long pass phrase", "new_password2": "a new long pass phrase"}
    answer = reviewer_client.get(admin_page)
    assert answer.status_code == 302 and answer.url == reverse("password_change")

    for number in range(12):
        reviewer_client.post(admin_page, {"old_password": f"guess {number}", **new})
    reviewer_client.post(admin_page, {"old_password": "a long clinic secret", **new})
    reviewer.refresh_from_db()
    assert reviewer.check_password("a long clinic secret")

    # on the site's page the fifth wrong guess pauses the form, and the right one then changes nothing
    answers = [reviewer_client.post(reverse("password_change"), {"old_password": f"guess {number}", **new}).status_code
               for number in range(5)]
    assert answers == [200, 200, 200, 200, 429]
    assert reviewer_client.post(reverse("password_change"),
                                {"old_password": "a long clinic secret", **new}).status_code == 429
    reviewer.refresh_from_db()
    assert reviewer.check_password("a long clinic secret")


def test_it_keeps_no_password_typed_into_a_failed_check(owner_client, owner):
    typed = {"old_password": "correct horse batterY", "new_password1": "My new secret 2026",
             "new_password2": "My new secret 2026"}
    response = owner_client.post(reverse("password_change"), typed)
    assert response.status_code == 200  # the wrong current password, refused
    kept = " ".join(AccessAttempt.objects.values_list("post_data", flat=True))
    assert kept and not any(secret in kept for secret in typed.values())


def test_a_username_longer_than_the_lockouts_column_is_a_wrong_sign_in_not_an_error(client, owner):
    response = sign_in(client, "wrong guess", username="x" * 300)
    assert response.status_code == 200  # Postgres refused the 300 characters: a 500
    assert [len(name) for name in AccessAttempt.objects.values_list("username", flat=True)] == [255]
    assert token_client().post(TOKEN, {"username": "y" * 300, "password": "wrong"}).status_code == 400
