"""Printing a shared report, or saving it as a PDF, in a real browser: browsers print the page's
address in the header or footer, and a shared report's address holds its token, a working link
to the patient's photos. No paper or PDF copy may carry it."""

import pytest

from diagnoses import services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Registered once the page has loaded, so after print.js's own listeners: each sees the address
# they leave.
RECORD_ADDRESSES = """() => {
  window.addresses = [];
  for (const name of ["beforeprint", "afterprint"]) {
    window.addEventListener(name, () => window.addresses.push([name, window.location.href]));
  }
}"""
# The shared report's page rule, as Chromium parsed molesite.css (its margin boxes included),
# and the page the body is on.
PRINTED_PAGE = """() => {
  const rules = [...document.styleSheets].flatMap(sheet => [...sheet.cssRules]);
  const named = rules.find(
    rule => rule instanceof CSSPageRule && rule.selectorText === "shared-report");
  const body = getComputedStyle(document.body);
  return {page: body.page, margin: named && named.style.margin,
          boxes: named && Object.fromEntries([...named.cssRules].map(box => [box.name, box.style.content])),
          padding: [body.paddingTop, body.paddingLeft], clone: body.boxDecorationBreak};
}"""


@pytest.fixture
def shared_report(site, owner, make_diagnosis):
    """The address of a shared report, and its token."""
    _, token = services.share_link_create(diagnosis=make_diagnosis(owner, risk="high"), days=7)
    return f"{site}/shared/{token}/", token


def test_while_printing_the_address_holds_no_token(page, site, shared_report):
    url, token = shared_report
    page.goto(url)
    page.evaluate(RECORD_ADDRESSES)

    page.pdf()  # Chromium's printing, its beforeprint and afterprint events included

    assert page.evaluate("window.addresses") == [
        ["beforeprint", f"{site}/shared/"], ["afterprint", url]]
    assert token in page.url  # the address bar holds the link again, for a reload or a bookmark


def test_the_page_prints_its_own_footer_where_chrome_puts_the_address(page, shared_report):
    page.goto(shared_report[0])
    page.emulate_media(media="print")

    printed = page.evaluate(PRINTED_PAGE)

    # Margin boxes of its own: Chrome then prints no footer of its own, where the address goes;
    # the page numbers tell a reader that a page 2 belongs to the report. The padding (with the
    # 1cm margin, 1.5cm all round) keeps the text off the paper's edge.
    assert printed == {
        "page": "shared-report", "margin": "1cm 0px",
        "boxes": {"bottom-left": '"Mole check report, shared by the patient"',
                  "bottom-right": '"Page " counter(page) " of " counter(pages)'},
        "padding": ["18.8976px", "56.6929px"],  # 0.5cm, 1.5cm
        "clone": "clone"}
