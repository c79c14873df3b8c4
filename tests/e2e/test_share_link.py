"""Share with a doctor in a real browser, at desktop and phone sizes: the patient makes a link
on a result (with the mole's earlier photo), a doctor opens it in a browser of their own with
no account, the patient sees the opening and stops sharing on Who has opened your records, and
the link says so."""

import pytest
from playwright.sync_api import expect

from diagnoses.models import Mole, ShareLink

from .conftest import VIEWPORTS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def served(img):
    """The answer to a request for the file the <img> shows (in its page's browser context)."""
    return img.page.request.get(img.evaluate("img => img.src"))


def stored_bytes(field) -> bytes:
    with field.open("rb") as stored:
        return stored.read()


def test_a_patient_shares_a_result_with_a_doctor_and_stops_sharing(page, browser, viewport, site, shot, owner,
                                                                  make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    earlier_check = make_diagnosis(owner, risk="medium", mole=mole, age_days=90)
    diagnosis = make_diagnosis(owner, risk="high", mole=mole)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()

    page.goto(f"{site}/diagnoses/{diagnosis.pk}/")
    expect(page.get_by_role("heading", name="Share with a doctor")).to_be_visible()
    page.get_by_label("Also show the 1 earlier photo of Left shoulder").check()
    page.get_by_label("The link works for").select_option(label="30 days")
    page.get_by_role("button", name="Create a link").click()
    link_field = page.get_by_label("Your new link")
    expect(link_field).to_be_visible()
    expect(page.get_by_text("Anyone with this link can see this result and its photo")).to_be_visible()
    url = link_field.input_value()
    assert url.startswith(site + "/shared/")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    shot(page, "30-share-link-made")

    # The doctor: another browser, nobody signed in.
    doctor = browser.new_context(**VIEWPORTS[viewport])
    try:
        report = doctor.new_page()
        response = report.goto(url)
        assert response.status == 200 and response.headers["referrer-policy"] == "no-referrer"
        expect(report.get_by_role("heading", name="Mole check report")).to_be_visible()
        expect(report.get_by_text("Shared by the patient")).to_be_visible()
        expect(report.get_by_text("72.0%")).to_be_visible()
        expect(report.get_by_text("Left shoulder (Back)")).to_be_visible()
        expect(report.locator("form[action='/accounts/logout/']")).to_have_count(0)  # nobody signed in
        photo = report.get_by_alt_text("The photo of the mole")
        expect(photo).to_be_visible()
        assert photo.evaluate("img => img.naturalWidth") > 0
        heatmap = report.get_by_alt_text("Grad-CAM heatmap over the photo")
        assert heatmap.evaluate("img => img.naturalWidth") > 0
        # Each image is this check's own file of its kind: the photo a JPEG, the heatmap a PNG.
        photo_file, heatmap_file = served(photo), served(heatmap)
        assert photo_file.headers["content-type"] == "image/jpeg"
        assert photo_file.body() == stored_bytes(diagnosis.image)
        assert heatmap_file.headers["content-type"] == "image/png"
        assert heatmap_file.body() == stored_bytes(diagnosis.heatmap)
        earlier = report.get_by_test_id("earlier-photos")
        expect(earlier.get_by_text("35.0%")).to_be_visible()  # the earlier photo's estimate
        earlier_photo = earlier.get_by_role("img")
        assert earlier_photo.evaluate("img => img.naturalWidth") > 0
        assert served(earlier_photo).body() == stored_bytes(earlier_check.thumbnail)
        shot(report, "31-shared-report")

        # The patient sees the opening on the result and on Who has opened your records, and
        # stops sharing from there.
        page.reload()
        expect(page.get_by_label("Your new link")).to_have_count(0)  # shown once
        expect(page.get_by_text("opened 1 time (last opened")).to_be_visible()
        page.goto(site + "/accounts/")
        expect(page.get_by_text("1 active link you shared.")).to_be_visible()
        page.get_by_role("link", name="Who has opened your records").click()
        shared_links = page.get_by_test_id("all-share-links")
        expect(shared_links.get_by_text("Opened 1 time, last on")).to_be_visible()
        expect(shared_links.get_by_role("link", name="(Left shoulder)")).to_be_visible()
        shared_links.get_by_role("button", name="Stop sharing").click()
        expect(page).to_have_url(site + "/accounts/access/")
        expect(page.get_by_text("You stopped sharing this result")).to_be_visible()
        expect(shared_links.get_by_text("Withdrawn", exact=True)).to_be_visible()
        assert ShareLink.objects.get().revoked_at is not None
        shot(page, "32-share-link-stopped")

        # The link no longer opens the report.
        response = report.goto(url)
        assert response.status == 410
        expect(report.get_by_text("This link has expired, or the report is no longer shared")).to_be_visible()
        expect(report.get_by_text("72.0%")).to_have_count(0)
        shot(report, "33-shared-report-withdrawn")
    finally:
        doctor.close()
