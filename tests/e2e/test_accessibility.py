"""Accessibility: axe-core (WCAG 2.1 A and AA rules) on every page a patient or a clinician
meets outside Django's own admin, on a phone and on a desktop."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, StaffAccess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def open_page(page, url, status=200):
    """Go to url, which must answer with status there and then: a redirect (to the sign-in
    page, say) would have axe audit another page in its stead, and pass."""
    response = page.goto(url)
    assert response is not None, f"{url}: no response"
    assert (response.status, page.url) == (status, url), (
        f"{url}: expected {status} there, got {response.status} at {page.url}")


def violations(page, axe, url, status=200):
    """axe's findings on the page at url (see open_page)."""
    open_page(page, url, status)
    page.wait_for_load_state("networkidle")
    results = axe.run(page, options=WCAG_AA)
    return [f"{url}: {line}" for line in results.generate_snapshot().splitlines()], results


def sign_in(page, site, username, password):
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    # signed in: the navigation links to the account, by name (the sign-in page has no such link)
    expect(page.get_by_title("Your account")).to_contain_text(username)


def test_it_meets_wcag_aa_on_the_patients_pages(page, site, owner, reviewer, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back", recheck_months=3)
    make_diagnosis(owner, risk="low", mole=mole, age_days=120)
    result = make_diagnosis(owner, risk="high", mole=mole, age_days=100)
    Diagnosis.objects.filter(pk=result.pk).update(photo_issues=["dark"])  # its warnings are checked too
    pending = make_diagnosis(owner, status="queued")
    lower = make_diagnosis(owner, risk="low", mole=mole, age_days=50)  # says the photo before was rated higher
    services.staff_access_record(staff=reviewer, patient=owner, record=StaffAccess.Record.CASE, diagnosis=result)
    services.staff_access_record(staff=reviewer, patient=owner, record=StaffAccess.Record.MOLE, mole=mole)
    # the result page lists its links; the shared report shows the mole's earlier photo
    _, shared_token = services.share_link_create(diagnosis=result, days=7, with_earlier_photos=True)
    withdrawn, withdrawn_token = services.share_link_create(diagnosis=result, days=1)
    services.share_link_revoke(link=withdrawn)
    page.allow_console_error(r"status of 410 \(Gone\)")  # the withdrawn link's page
    axe = Axe()
    found, reports = [], []

    for path, status in [("/", 200), ("/accounts/signup/", 200), ("/accounts/login/", 200),
                         ("/accounts/password/reset/", 200), ("/about/model/", 200),
                         ("/privacy/", 200), (f"/shared/{shared_token}/", 200),
                         (f"/shared/{withdrawn_token}/", 410)]:
        lines, results = violations(page, axe, site + path, status)
        found += lines
        reports.append(results.generate_report() if lines else "")
    sign_in(page, site, "patient", "correct horse battery")
    for path in [
        "/diagnoses/new/", f"/diagnoses/{result.pk}/", f"/diagnoses/{lower.pk}/",
        f"/diagnoses/{pending.pk}/", f"/diagnoses/{result.pk}/report/",
        f"/diagnoses/{result.pk}/delete/", "/diagnoses/", "/diagnoses/moles/",
        f"/diagnoses/moles/{mole.pk}/", f"/diagnoses/moles/{mole.pk}/edit/",
        f"/diagnoses/moles/{mole.pk}/compare/", "/accounts/", "/accounts/email/",
        "/accounts/password/", "/accounts/delete/", "/accounts/access/",
    ]:
        lines, results = violations(page, axe, site + path)
        found += lines
        reports.append(results.generate_report() if lines else "")
    # A new share link, shown once after it is made.
    open_page(page, f"{site}/diagnoses/{result.pk}/")
    page.get_by_role("button", name="Create a link").click()
    page.wait_for_selector("#new-share-url")
    results = axe.run(page, options=WCAG_AA)
    lines = [f"new share link: {line}" for line in results.generate_snapshot().splitlines()]
    found += lines
    reports.append(results.generate_report() if lines else "")

    assert not found, "\n".join(found) + "\n" + "\n".join(r for r in reports if r)


def test_it_meets_wcag_aa_on_the_clinicians_second_step(page, site, reviewer):
    sign_in(page, site, "dr-reviewer", "a long clinic secret")
    lines, results = violations(page, Axe(), site + "/accounts/two-step/")
    assert not lines, results.generate_report()
