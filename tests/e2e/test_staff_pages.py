"""The pages the patient's journey does not walk, in a real browser under the site's
Content-Security-Policy: the clinicians' review desk, the API docs and the sign-in pause. The
`page` fixture fails a test on any console error, which is how Chromium reports a script or a
style that the policy blocked."""

import base64
import re

import pytest
from django_otp.oath import TOTP
from playwright.sync_api import expect

from diagnoses.models import Mole, Review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PATIENT_PASSWORD = "correct horse battery"


def test_it_lets_a_clinician_review_a_case_at_the_desk(page, site, shot, owner, reviewer, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    case = make_diagnosis(owner, risk="high", mole=mole)

    page.goto(site + "/admin/")
    page.get_by_label("Username").fill("dr-reviewer")
    page.get_by_label("Password").fill("a long clinic secret")
    page.get_by_role("button", name="Sign in").click()
    # The second step, the first time: the authenticator app is set up from the page's key.
    expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    expect(page.locator(".qr-code svg")).to_be_visible()
    shot(page, "admin-two-step-setup")
    key = base64.b32decode(page.locator("[data-secret]").inner_text().replace(" ", ""))
    page.get_by_label("Code").fill(f"{TOTP(key).token():06d}")
    page.get_by_role("button", name="Confirm and continue").click()
    expect(page.get_by_text("Your authenticator app is set up")).to_be_visible()
    page.goto(site + "/admin/diagnoses/diagnosis/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    shot(page, "admin-queue")

    page.goto(f"{site}/admin/diagnoses/diagnosis/{case.pk}/change/")
    expect(page.get_by_alt_text(re.compile("Photo of"))).to_be_visible()  # the earlier photo
    # one review per case: its heading, without the inline's per-form line ("Clinician review: #1")
    expect(page.locator("#review-heading")).to_have_text("Clinician review")
    expect(page.locator("#review-group").get_by_text("#1")).to_be_hidden()
    # ...set like the page's own fieldset headings, not in the inline group's capitals
    style = "h => [getComputedStyle(h).textTransform, getComputedStyle(h).fontSize]"
    heading, fieldset_heading = page.locator("#review-heading"), page.locator("h2.fieldset-heading").first
    assert heading.evaluate(style) == fieldset_heading.evaluate(style)
    page.locator("#id_review-0-verdict").select_option("agree")
    page.locator("#id_review-0-recommendation").select_option("dermatologist_soon")
    shot(page, "admin-case")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert Review.objects.get(diagnosis=case).recommendation == "dermatologist_soon"
    shot(page, "admin-case-saved")

    page.goto(site + "/admin/diagnoses/review/")  # the log of reviews
    expect(page.locator("#result_list tbody tr")).to_have_count(1)

    page.get_by_role("link", name="The model against the clinicians").click()
    expect(page.locator(".agreement-version")).to_have_count(1)
    expect(page.locator(".agreement-version")).to_contain_text("Verdict “agree with the model”")
    shot(page, "admin-agreement")


def test_it_renders_the_api_docs(page, site, owner):
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill("patient")
    page.get_by_label("Password").fill(PATIENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.goto(site + "/api/v1/docs/")

    expect(page.get_by_text("molesite API").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/diagnoses/").first).to_be_visible()


def test_it_pauses_sign_in_after_five_wrong_passwords(page, site, shot, owner):
    for attempt in range(5):
        page.goto(site + "/accounts/login/")
        page.get_by_label("Username").fill("patient")
        page.get_by_label("Password").fill("wrong guess")
        if attempt == 4:
            page.allow_console_error(r"status of 429")  # Chromium logs the refused sign-in
        page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()
    expect(page.get_by_role("link", name="Reset my password")).to_be_visible()
    shot(page, "signin-paused")
