"""/api/v1/auth/token/: tokens issued and revoked; session auth for the browser."""

import pytest
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from diagnoses.throttles import TokenRateThrottle
from tests.conftest import reset_password_by_email, set_throttle_rate, token_client

TOKEN = "/api/v1/auth/token/"
DIAGNOSES = "/api/v1/diagnoses/"


def test_it_issues_a_token_that_signs_requests_in(api_client, owner):
    response = api_client.post(TOKEN, {"username": "patient", "password": "correct horse battery"})

    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(user=owner).key == key
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get(DIAGNOSES).status_code == 200
    # Asking again returns the same token until it is revoked.
    again = token_client().post(TOKEN, {"username": "patient", "password": "correct horse battery"}, format="multipart")
    assert again.json() == {"token": key}


def test_it_refuses_a_wrong_password_with_400(api_client, owner):
    response = api_client.post(TOKEN, {"username": "patient", "password": "wrong"})

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert not Token.objects.exists()


def test_it_refuses_an_inactive_user(api_client, owner):
    owner.is_active = False
    owner.save()

    assert api_client.post(TOKEN, {"username": "patient", "password": "correct horse battery"}).status_code == 400


def test_it_revokes_the_token(owner_api, owner):
    assert owner_api.get(DIAGNOSES).status_code == 200

    assert owner_api.delete(TOKEN).status_code == 204

    assert not Token.objects.filter(user=owner).exists()
    refused = owner_api.get(DIAGNOSES)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Invalid token."}


def test_it_revokes_only_the_callers_token(owner_api, outsider_api, outsider):
    owner_api.delete(TOKEN)

    assert Token.objects.filter(user=outsider).exists()
    assert outsider_api.get(DIAGNOSES).status_code == 200


def test_it_revokes_the_token_when_the_password_is_changed(owner_api, owner_client, owner):
    response = owner_client.post(
        reverse("password_change"),
        {"old_password": "correct horse battery", "new_password1": "a fresh pass phrase", "new_password2": "a fresh pass phrase"},
    )

    assert response.status_code == 302
    assert owner_api.get(DIAGNOSES).status_code == 401
    assert owner_client.get(DIAGNOSES).status_code == 200  # the browser that changed it stays in


def test_it_revokes_the_token_when_the_password_is_reset_by_e_mail(owner_api, client, owner, mailoutbox):
    reset_password_by_email(client, mailoutbox, "patient@example.com", "a fresh pass phrase")

    assert owner_api.get(DIAGNOSES).status_code == 401


def test_it_revokes_the_token_when_an_administrator_disables_the_password(owner_api, owner):
    # The admin's "Password-based authentication: Disabled" calls set_unusable_password().
    form = AdminPasswordChangeForm(owner, {"usable_password": "false"})
    assert form.is_valid(), form.errors
    form.save()

    owner.refresh_from_db()
    assert not owner.has_usable_password()
    assert not Token.objects.filter(user=owner).exists()
    assert owner_api.get(DIAGNOSES).status_code == 401


def test_it_keeps_the_token_when_other_account_settings_change(owner_api, owner_client, owner):
    owner_client.post(reverse("account"), {})  # e-mails about reviews off

    owner.refresh_from_db()
    assert not owner.review_emails
    assert owner_api.get(DIAGNOSES).status_code == 200


def user_form(user, **changes):
    """The user admin's change form as it shows this user (is_active ticked while active)."""
    form = {"username": user.username, "email": user.email, "date_joined_0": "2026-01-01",
            "date_joined_1": "10:00:00", "review_emails": "on", "queue_emails": "on", **changes}
    return {name: value for name, value in form.items() if value is not None}


def test_deactivating_an_account_ends_its_token_and_sessions_for_good(admin_client, owner, outsider):
    patient_api, patient_browser = token_client(owner), Client()
    patient_browser.force_login(owner)
    outsider_api, outsider_browser = token_client(outsider), Client()
    outsider_browser.force_login(outsider)
    assert patient_api.get(DIAGNOSES).status_code == 200
    assert patient_browser.get(reverse("diagnoses:list")).status_code == 200
    change = reverse("admin:accounts_user_change", args=[owner.pk])

    assert admin_client.post(change, user_form(owner, is_active=None)).status_code == 302  # unticked
    owner.refresh_from_db()
    assert not owner.is_active and not Token.objects.filter(user=owner).exists()
    # reactivated: neither the token nor the browser's sign-in from before comes back
    assert admin_client.post(change, user_form(owner, is_active="on")).status_code == 302
    owner.refresh_from_db()
    assert owner.is_active
    assert patient_api.get(DIAGNOSES).status_code == 401
    assert patient_browser.get(reverse("diagnoses:list")).status_code == 302
    # others, and the administrator, stay signed in
    assert outsider_api.get(DIAGNOSES).status_code == 200
    assert outsider_browser.get(reverse("diagnoses:list")).status_code == 200
    assert admin_client.get(change).status_code == 200


def test_a_scripts_deactivation_by_update_ends_the_sign_ins_too(owner, outsider, django_user_model):
    patient_api, patient_browser = token_client(owner), Client()
    patient_browser.force_login(owner)
    outsider_api = token_client(outsider)

    django_user_model.objects.filter(pk=owner.pk).update(is_active=False)
    django_user_model.objects.filter(pk=owner.pk).update(is_active=True)

    assert patient_api.get(DIAGNOSES).status_code == 401
    assert patient_browser.get(reverse("diagnoses:list")).status_code == 302
    assert outsider_api.get(DIAGNOSES).status_code == 200

    # bulk_update() writes an expression, not False
    outsider_browser = Client()
    outsider_browser.force_login(outsider)
    outsider.is_active = False
    django_user_model.objects.bulk_update([outsider], ["is_active"])
    django_user_model.objects.filter(pk=outsider.pk).update(is_active=True)
    assert outsider_api.get(DIAGNOSES).status_code == 401
    assert outsider_browser.get(reverse("diagnoses:list")).status_code == 302


def test_it_answers_401_with_www_authenticate_to_a_bad_token(api_client, owner):
    api_client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    response = api_client.get(DIAGNOSES)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert api_client.delete(TOKEN).status_code == 401


def test_it_accepts_the_sites_session(owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)

    response = owner_client.get(DIAGNOSES)

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(diagnosis.pk)]


def test_it_requires_the_csrf_token_for_session_writes(owner, api_client):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)

    response = browser.post("/api/v1/moles/", {"name": "Back"})

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_it_throttles_token_requests(api_client, owner, settings):
    set_throttle_rate(settings, "token", "3/minute")
    for _ in range(3):
        assert api_client.post(TOKEN, {"username": "patient", "password": "guess"}).status_code == 400

    refused = api_client.post(TOKEN, {"username": "patient", "password": "correct horse battery"})

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"]


def test_it_throttles_token_requests_that_carry_a_valid_token(owner_api, owner, settings):
    # One wrong password for each of many usernames stays under the sign-in lockout's count
    # (per username); the throttle per address must catch it, signed in or not.
    set_throttle_rate(settings, "token", "3/minute")
    for username in ("alice", "bob", "carol"):
        assert owner_api.post(TOKEN, {"username": username, "password": "guess"}).status_code == 400

    refused = owner_api.post(TOKEN, {"username": "dave", "password": "guess"})

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    # Counted per client address: another address still gets its token.
    elsewhere = token_client(owner).post(TOKEN, {"username": "patient", "password": "correct horse battery"},
                                         REMOTE_ADDR="192.0.2.7")
    assert elsewhere.status_code == 200


def test_the_token_throttle_counts_a_signed_in_client_too(rf, owner, settings):
    # Whatever the view authenticates, the throttle itself keys on the address alone.
    set_throttle_rate(settings, "token", "1/minute")
    request = rf.post(TOKEN)
    request.user = owner

    assert TokenRateThrottle().allow_request(request, None)
    assert not TokenRateThrottle().allow_request(request, None)


@pytest.mark.parametrize("header", ["Token 0123456789abcdef0123456789abcdef01234567", "Token"])
def test_it_issues_a_token_whatever_authorization_header_the_post_carries(api_client, owner, header):
    # A client that kept a revoked token must be able to sign in again without dropping it.
    api_client.credentials(HTTP_AUTHORIZATION=header)

    response = api_client.post(TOKEN, {"username": "patient", "password": "correct horse battery"})

    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=owner).key}
    # Revoking still needs the token itself.
    assert api_client.delete(TOKEN).status_code == 401


def test_it_ignores_the_sites_session_when_issuing_a_token(owner_client, outsider):
    # Signed in on the site as one user, a POST for another's password answers that user's token
    # (and needs no CSRF token: it changes nothing that the session owns).
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = owner_client.cookies

    response = browser.post(TOKEN, {"username": "outsider", "password": "another long secret"},
                            content_type="application/json")

    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=outsider).key}


ACCOUNT = "/api/v1/account/"


def test_it_reads_and_changes_the_account_settings(owner_api, owner, outsider, api_client):
    body = owner_api.get(ACCOUNT).json()
    assert body["username"] == "patient" and body["email"] == "patient@example.com"
    assert body["review_emails"] is True and body["model_improvement"] is False and body["consented_at"]

    changed = owner_api.patch(ACCOUNT, {"model_improvement": True, "email": "new@example.com",
                                        "username": "someone-else"})
    assert changed.status_code == 200 and changed.json()["model_improvement"] is True
    owner.refresh_from_db()
    outsider.refresh_from_db()
    # The setting changed; the address and name did not (read-only: the site confirms a new address).
    assert (owner.model_improvement, owner.email, owner.username) == (True, "patient@example.com", "patient")
    assert outsider.model_improvement is False

    assert owner_api.patch(ACCOUNT, {"review_emails": "maybe"}).status_code == 400
    assert owner_api.put(ACCOUNT, {"review_emails": False}).status_code == 405
    assert api_client.get(ACCOUNT).status_code == 401


def test_it_gives_null_for_the_address_of_an_account_without_one(django_user_model, api_client):
    # An administrator can make an account without an address; the schema says `format: email`,
    # so "" would not match it: null, which the schema allows.
    from django.utils import timezone

    made = django_user_model.objects.create_user("no-address", "", "a long secret", consented_at=timezone.now())
    api = token_client(made)

    assert api.get(ACCOUNT).json()["email"] is None
    assert api.patch(ACCOUNT, {"review_emails": False}).json()["email"] is None
    email = api_client.get("/api/v1/schema/", {"format": "json"}).json()["components"]["schemas"]["Account"][
        "properties"]["email"]
    assert (email["type"], email["format"], email["nullable"]) == ("string", "email", True)
