"""The pages' scripts when things go wrong, and the pages without them, in a real browser: a
photo the server would refuse, a status request that never answers or keeps failing, a file
dropped beside the drop zone, screen readers told of the notices, and a browser with
JavaScript off."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from diagnoses.models import Diagnosis

from .conftest import VIEWPORTS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STATUS = re.compile(r".*/status/$")
MAX_BYTES = 20 * 1024 * 1024  # settings.MAX_UPLOAD_BYTES


def sign_in(page, site, owner):
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_title("Your account")).to_be_attached()


def open_upload_form(page, site, owner):
    sign_in(page, site, owner)
    page.goto(site + "/diagnoses/new/")
    page.wait_for_selector("#upload-form.enhanced", state="attached")  # upload.js has run


def open_pending_result(page, site, owner, make_diagnosis):
    """The owner signed in, on the result page of a photo still queued; returns that photo."""
    pending = make_diagnosis(owner, status="queued")
    sign_in(page, site, owner)
    page.goto(f"{site}/diagnoses/{pending.pk}/")
    expect(page.locator("#result .pending-box")).to_be_visible()
    return pending


def site_down(page):
    """Every status request answers 503 from now on; returns the polling-trouble notice."""
    page.allow_console_error(r"status of 503")
    page.route(STATUS, lambda route: route.fulfill(status=503, body="Service Unavailable"))
    return page.get_by_test_id("polling-trouble")


def test_it_does_not_send_a_photo_the_server_would_refuse(page, site, owner):
    open_upload_form(page, site, owner)
    posts = []
    page.on("request", lambda request: posts.append(request.url)
            if request.method == "POST" and request.url.endswith("/diagnoses/new/") else None)
    warning = page.locator("[data-client-error]")

    for chosen, message in [
        ({"name": "big.jpg", "mimeType": "image/jpeg", "buffer": b"\0" * (MAX_BYTES + 1)},
         "This photo is larger than 20 MB."),
        ({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"a note, not a photo\n"},
         "This file is not a photo."),
    ]:
        page.locator("input[name=image]").set_input_files(chosen)
        expect(warning).to_contain_text(message)
        page.get_by_role("button", name="Upload and analyse").click()
        page.wait_for_timeout(1_000)  # a POST would have started by now
        assert posts == [], f"{chosen['name']} was sent"
        expect(warning).to_contain_text(message)  # still there, not cleared by the click
        expect(page.locator("[data-progress]")).to_be_hidden()


def test_the_result_page_gives_up_on_a_status_request_that_never_answers(page, site, owner,
                                                                         make_diagnosis):
    open_pending_result(page, site, owner, make_diagnosis)
    page.route(STATUS, lambda route: None)  # taken, never answered

    trouble = page.get_by_test_id("polling-trouble")
    expect(trouble).to_contain_text("cannot be reached just now", timeout=20_000)
    expect(page.locator("#result .pending-box")).to_be_visible()  # still waiting, still asking


def test_the_result_page_tells_screen_readers_when_the_site_cannot_be_reached(page, site, owner,
                                                                              make_diagnosis):
    open_pending_result(page, site, owner, make_diagnosis)
    expect(site_down(page)).to_be_visible(timeout=20_000)
    expect(page.locator("#result-announcer")).to_contain_text("cannot be reached")


def test_the_result_page_tells_screen_readers_when_the_analysis_is_late(page, site, owner,
                                                                        make_diagnosis):
    open_pending_result(page, site, owner, make_diagnosis)
    # No worker has taken it for minutes: the next answer says it is late.
    Diagnosis.objects.update(queued_at=timezone.now() - timedelta(minutes=5))
    expect(page.locator("#result [data-testid=late]")).to_be_visible(timeout=10_000)
    expect(page.locator("#result-announcer")).to_contain_text("taking longer than usual")


def test_the_result_page_drops_the_trouble_notice_when_it_stops_asking(page, site, owner,
                                                                       make_diagnosis):
    open_pending_result(page, site, owner, make_diagnosis)
    trouble = site_down(page)
    expect(trouble).to_be_visible(timeout=20_000)

    page.allow_console_error(r"status of 404 \(Not Found\)")
    page.unroute(STATUS)
    page.route(STATUS, lambda route: route.fulfill(status=404, body="Not Found"))
    expect(page.get_by_test_id("polling-stopped")).to_contain_text("no longer there",
                                                                   timeout=10_000)
    expect(trouble).to_have_count(0)  # "keeps trying" no longer holds


def test_only_the_take_a_photo_input_opens_the_camera(page, site, owner):
    open_upload_form(page, site, owner)
    expect(page.locator("input[name=image]")).to_have_attribute("capture", "environment")
    # "Choose a file" opens the other input, which offers the gallery
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Choose a file").click()
    assert chooser.value.element.evaluate("input => input.id") == "gallery-input"
    assert chooser.value.element.get_attribute("capture") is None


def drag_and_drop_on_the_heading(page, fill_transfer):
    """Whether the page prevented the browser's default for a dragover and a drop, on the h1,
    of a DataTransfer filled by the JavaScript statement fill_transfer (on `transfer`)."""
    return page.evaluate("""() => {
        const transfer = new DataTransfer();
        %s;
        const heading = document.querySelector("h1");
        return ["dragover", "drop"].map((type) => {
            const event = new DragEvent(type, { bubbles: true, cancelable: true,
                                                dataTransfer: transfer });
            heading.dispatchEvent(event);
            return event.defaultPrevented;
        });
    }""" % fill_transfer)


def test_a_file_dropped_beside_the_drop_zone_does_not_replace_the_page(page, site, owner):
    open_upload_form(page, site, owner)
    prevented = drag_and_drop_on_the_heading(
        page, 'transfer.items.add(new File(["not sent"], "mole.jpg", { type: "image/jpeg" }))')
    assert prevented == [True, True]  # the browser does not open the file in place of the form


def test_dragged_text_still_drops_into_a_field(page, site, owner):
    open_upload_form(page, site, owner)
    prevented = drag_and_drop_on_the_heading(
        page, 'transfer.setData("text/plain", "Left shoulder")')
    assert prevented == [False, False]  # only files are kept from replacing the page


def test_the_menu_and_its_sign_out_work_without_javascript(browser, site, owner, make_diagnosis):
    result = make_diagnosis(owner)
    context = browser.new_context(**VIEWPORTS["phone"], java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sign_in(page, site, owner)
        page.goto(site + "/diagnoses/")
        nav = page.locator("#nav")
        expect(nav.get_by_role("link", name="My moles", exact=True)).to_be_visible()
        expect(nav.get_by_role("button", name="Sign out")).to_be_visible()
        expect(page.locator(".navbar-toggler")).to_be_hidden()  # it would open nothing
        page.goto(f"{site}/diagnoses/{result.pk}/report/")
        expect(page.get_by_role("heading", name="Mole check report")).to_be_visible()
        expect(page.locator("[data-print]")).to_be_hidden()  # print.js does not run

        nav.get_by_role("button", name="Sign out").click()
        expect(page.get_by_text("You are signed out.")).to_be_visible()
        expect(page.locator(".alert .btn-close")).to_be_hidden()  # it would close nothing
    finally:
        context.close()
