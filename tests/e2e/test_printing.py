"""Printing a patient's pages, or saving them as a PDF, in a real browser: what is no use on paper
(links to other pages, buttons, forms, the heatmap's switch) is left out, nothing is cut at the
paper's edge, and a result fits one A4 page. (The reports: test_shared_report_print.py.)"""

import re

import pytest
from playwright.sync_api import expect

from diagnoses.models import Mole

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"  # the owner fixture's
# About the margins a browser prints with unless told otherwise (Chrome's "Default").
BROWSER_MARGINS = {side: "1cm" for side in ("top", "right", "bottom", "left")}
# Whether the page shows any of each selector's elements (under print emulation: on paper).
SHOWN = """(selectors) => Object.fromEntries(selectors.map((selector) => [selector,
  [...document.querySelectorAll(selector)].some((element) => element.checkVisibility())]))"""


@pytest.fixture
def owners_page(browser, site, owner):
    """A desktop browser's page, signed in as the owner fixture's patient."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_title("Your account")).to_be_attached()
    yield page
    context.close()


def page_count(pdf: bytes) -> int:
    """The pages of a PDF that Chromium printed (its page objects are not compressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", pdf))


def test_a_result_prints_on_one_a4_page_without_its_controls(owners_page, site, owner, make_diagnosis):
    # A low photo after a high one: the result with the most to say, the earlier photo's advice.
    mole = Mole.objects.create(owner=owner, name="Left upper back below the shoulder blade", body_site="back")
    make_diagnosis(owner, risk="high", mole=mole, age_days=30)
    result = make_diagnosis(owner, risk="low", mole=mole)
    page = owners_page
    page.goto(f"{site}/diagnoses/{result.pk}/")
    expect(page.get_by_test_id("previous-rated-higher")).to_be_visible()
    page.emulate_media(media="print")

    shown = page.evaluate(SHOWN, ["nav[aria-label=breadcrumb]", ".heatmap-toggle",
                                  ".photo-figure figcaption", "#share", ".progress-bar"])
    assert shown == {"nav[aria-label=breadcrumb]": False, ".heatmap-toggle": False,
                     ".photo-figure figcaption": False, "#share": False, ".progress-bar": True}
    # Browsers print no backgrounds unless told: the probability bars are backgrounds.
    assert page.locator(".progress-bar").first.evaluate("(bar) => getComputedStyle(bar).printColorAdjust") == "exact"
    for margins in ({}, BROWSER_MARGINS):
        pdf = page.pdf(format="A4", print_background=False, **({"margin": margins} if margins else {}))
        assert page_count(pdf) == 1, margins

    # The heatmap switched on prints, and its caption (what the red areas mean), not the switch.
    page.emulate_media(media="screen")
    page.get_by_text("Show where the model looked").click()
    page.emulate_media(media="print")
    assert page.evaluate(SHOWN, [".heatmap-toggle", ".photo-figure figcaption"]) == {
        ".heatmap-toggle": False, ".photo-figure figcaption": True}


def test_the_mole_page_prints_without_its_buttons_and_its_whole_timeline(
        owners_page, site, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Right shin", body_site="lower extremity")
    for days in range(90, 0, -10):  # nine photos: wider than the paper in one row
        make_diagnosis(owner, risk="low", mole=mole, age_days=days)
    page = owners_page
    page.goto(f"{site}/diagnoses/moles/{mole.pk}/")
    buttons = ["New photo of this mole", "Compare photos", "Edit"]
    for name in buttons:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    page.emulate_media(media="print")

    for name in buttons:
        expect(page.get_by_role("link", name=name, exact=True, include_hidden=True)).to_have_css("display", "none")
    assert page.evaluate(SHOWN, ["nav[aria-label=breadcrumb]", ".photo-reminder", "details:has(form)"]) == {
        "nav[aria-label=breadcrumb]": False, ".photo-reminder": False, "details:has(form)": False}
    # Printed at an A4 page's width (with the browser's margins), every photo is within it.
    page.set_viewport_size({"width": 718, "height": 1000})
    edges = page.locator(".timeline-item").evaluate_all(
        "(items) => items.map((item) => item.getBoundingClientRect().right)")
    width = page.locator(".timeline").evaluate("(list) => list.getBoundingClientRect().right")
    assert len(edges) == 9 and max(edges) <= width + 0.5, (edges, width)
