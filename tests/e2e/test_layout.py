"""The pages' layout at the widths people use, in a real browser: nothing wider than the screen
(no sideways scrolling on a phone), the menu on one line however long the user's name, the
tables, selects and buttons with room for what they hold."""

import json
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
# A user name as long as some people's (the form takes up to 150 characters, with no spaces).
LONG_NAME = "margaret_henderson_whitfield_2026"
# A phone; a tablet, the menu collapsed (800); laptops, the menu in the bar (992, 1200).
PHONE, WIDTHS = 390, [390, 800, 992, 1200]
# The page's width. Compared with the width the window was opened at, not window.innerWidth: a
# phone's browser (is_mobile) widens its layout viewport to a page wider than the screen, so
# innerWidth grows with the page and the two always agree.
PAGE_WIDTH = "() => document.documentElement.scrollWidth"


@pytest.fixture
def sized(browser, site):
    """sized(width): a new page of a browser window that wide (a phone's, touch and all, at
    390), closed after the test."""
    contexts = []

    def open_page(width):
        phone = width <= PHONE
        context = browser.new_context(viewport={"width": width, "height": 844 if phone else 800},
                                      is_mobile=phone, has_touch=phone)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def long_named(django_user_model):
    return django_user_model.objects.create_user(LONG_NAME, "margaret@example.com", PASSWORD,
                                                 consented_at=timezone.now())


@pytest.fixture
def long_named_clinician(db):
    """A clinician, whose menu has one more link (the review desk)."""
    return services.reviewer_create(username=LONG_NAME, password=PASSWORD)


def sign_in(page, site, username):
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_title("Your account")).to_be_attached()


# The texts of an element that the browser wrapped onto more than one line.
WRAPPED = """(element) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const wrapped = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
    if (tops.size > 1) wrapped.push(node.textContent.trim());
  }
  return wrapped;
}"""


def assert_fits_the_window(page):
    width, window = page.evaluate(PAGE_WIDTH), page.viewport_size["width"]
    assert width <= window, f"{page.url}: {width}px wide in a window of {window}px"


def open_the_menu(page):
    """Open the collapsed menu (a phone, a tablet); True if it was collapsed."""
    toggler = page.locator(".navbar-toggler")
    if not toggler.is_visible():
        return False
    toggler.click()
    expect(page.locator("#nav")).to_have_class(re.compile(r"\bshow\b"))
    return True


@pytest.mark.parametrize("who", ["long_named", "long_named_clinician"])
@pytest.mark.parametrize("width", WIDTHS)
def test_the_menu_fits_its_bar_with_a_long_user_name(sized, site, request, who, width):
    request.getfixturevalue(who)
    page = sized(width)
    sign_in(page, site, LONG_NAME)
    page.goto(site + "/diagnoses/")
    collapsed = open_the_menu(page)

    assert_fits_the_window(page)
    sign_out = page.locator("#nav").get_by_role("button", name="Sign out")
    box = sign_out.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    links = page.locator("#nav .nav-link").all()
    wrapped = [text for link in links for text in link.evaluate(WRAPPED)]
    assert wrapped == [], f"on more than one line: {wrapped}"
    if not collapsed:  # the bar's items side by side, on one row
        middles = {round(box["y"] + box["height"] / 2)
                   for box in (link.bounding_box() for link in links)}
        assert max(middles) - min(middles) <= 2, middles
    account = page.get_by_title("Your account")
    expect(account).to_contain_text(LONG_NAME)  # cut short on screen, whole for screen readers
    expect(account.get_by_title(LONG_NAME)).to_be_visible()  # and whole on hovering it


def test_the_printable_report_fits_a_phone_with_long_names(
        sized, site, long_named, make_diagnosis):
    mole = Mole.objects.create(owner=long_named, body_site="back",
                               name="Left shoulder blade, below the big freckle near the spine")
    result = make_diagnosis(long_named, risk="medium", mole=mole)
    page = sized(PHONE)
    sign_in(page, site, LONG_NAME)
    page.goto(f"{site}/diagnoses/{result.pk}/report/")

    assert_fits_the_window(page)
    meta = page.locator(".report-meta")
    right, inside = meta.evaluate("""(list) => {
      const body = list.closest(".card-body");
      return [list.getBoundingClientRect().right,
              body.getBoundingClientRect().right - parseFloat(getComputedStyle(body).paddingRight)];
    }""")
    assert right <= inside + 0.5, (right, inside)
    expect(meta).to_contain_text(LONG_NAME)


# One word as long as a German mole name can be (the form takes up to 80 characters), and an
# address as long as a hospital's.
LONG_MOLE_NAME = "Muttermalunterhalbdeslinkenschulterblatts"
LONG_ADDRESS = "firstname.lastname.department@university-hospital-example.org"


def test_long_mole_names_and_addresses_fit_a_phone(sized, site, long_named, make_diagnosis):
    long_named.email = LONG_ADDRESS
    long_named.save(update_fields=["email"])
    mole = Mole.objects.create(owner=long_named, body_site="back", name=LONG_MOLE_NAME)
    first = make_diagnosis(long_named, risk="low", mole=mole)
    latest = make_diagnosis(long_named, risk="medium", mole=mole)
    page = sized(PHONE)
    sign_in(page, site, LONG_NAME)
    for path in ("/diagnoses/", f"/diagnoses/moles/{mole.pk}/",
                 f"/diagnoses/moles/{mole.pk}/compare/?before={first.pk}&after={latest.pk}",
                 f"/diagnoses/{latest.pk}/", f"/diagnoses/{latest.pk}/delete/",
                 "/accounts/email/"):
        page.goto(site + path)
        assert_fits_the_window(page)


def test_the_model_pages_tables_fit_a_phone(sized, site, tiny_model):
    page = sized(PHONE)
    page.goto(site + "/about/model/")
    tables = page.locator(".table-responsive")
    expect(tables).to_have_count(2)  # the risk bands and the confusion matrix

    assert_fits_the_window(page)
    for table in tables.all():
        inner, outer = table.evaluate("(box) => [box.scrollWidth, box.clientWidth]")
        assert inner <= outer, f"{table.get_attribute('aria-labelledby')}: {inner} > {outer}px"


# The widest of a select's options, as its own font draws it, and the room it has for them.
OPTIONS_ROOM = """(select) => {
  const style = getComputedStyle(select);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const widest = Math.max(...[...select.options].map((o) => context.measureText(o.text).width));
  const room = select.clientWidth - parseFloat(style.paddingLeft)
    - parseFloat(style.paddingRight);
  return [widest, room];
}"""


@pytest.mark.parametrize("width", [PHONE, 800, 1280, 1440])
def test_the_new_moles_body_site_shows_its_options_whole(sized, site, long_named, width):
    page = sized(width)
    sign_in(page, site, LONG_NAME)
    page.goto(site + "/diagnoses/new/")

    widest, room = page.get_by_label("Body site").evaluate(OPTIONS_ROOM)
    assert widest <= room, f"the longest body site is {widest:.0f}px, in {room:.0f}px"
    assert_fits_the_window(page)


def test_the_result_pages_buttons_line_up_on_a_phone(sized, site, long_named, make_diagnosis):
    mole = Mole.objects.create(owner=long_named, name="Left shoulder", body_site="back")
    result = make_diagnosis(long_named, risk="low", mole=mole)
    page = sized(PHONE)
    sign_in(page, site, LONG_NAME)
    page.goto(f"{site}/diagnoses/{result.pk}/")

    group = page.locator("main > div").filter(
        has=page.get_by_role("link", name="Delete", exact=True))
    buttons = group.locator(".btn").all()
    assert len(buttons) == 4  # a new photo, the timeline, the reminder, delete
    edges = {(round(b["x"]), round(b["width"])) for b in (btn.bounding_box() for btn in buttons)}
    assert len(edges) == 1, edges  # one under the other, the whole width each
    assert_fits_the_window(page)


def test_the_mole_charts_legend_and_thresholds_read_as_the_page(
        sized, site, long_named, make_diagnosis, settings, tmp_path):
    # thresholds of whole percents: JSON writes 0.08 * 100 as 8, the page as 8.0
    (tmp_path / "model_card.json").write_text(json.dumps(
        {"version": "v1", "thresholds": {"medium": 0.08, "high": 0.309}}))
    settings.ML_MODEL_DIR = tmp_path
    mole = Mole.objects.create(owner=long_named, name="Left shoulder", body_site="back")
    make_diagnosis(long_named, risk="medium", mole=mole, age_days=30)
    make_diagnosis(long_named, risk="low", mole=mole)
    page = sized(1280)
    sign_in(page, site, LONG_NAME)
    page.goto(f"{site}/diagnoses/moles/{mole.pk}/")

    legend = page.locator("#mole-chart").evaluate("""(canvas) => {
      const chart = window.Chart.getChart(canvas);
      return chart.legend.legendItems.map((item) => [item.text, item.fillStyle]);
    }""")
    assert legend == [["Malignant probability", "#0b5ed7"],  # the line's blue, not a risk's
                      ["Medium risk from 8.0%", "#e0a800"], ["High risk from 30.9%", "#dc3545"]]


# The right edge of an element, and that of the content of its nearest ancestor matching a
# selector (inside its padding and border): an element that fits its box ends before it.
RIGHT_EDGES = """(element, selector) => {
  const box = element.closest(selector);
  const style = getComputedStyle(box);
  return [element.getBoundingClientRect().right,
          box.getBoundingClientRect().right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth)];
}"""


def assert_within(element, selector):
    right, inside = element.evaluate(RIGHT_EDGES, selector)
    assert right <= inside + 0.5, f"{right}px, past the {selector}'s {inside}px"


@pytest.mark.parametrize("width", [PHONE, 1280])
def test_a_photos_issues_badge_wraps_within_its_box(sized, site, long_named, make_diagnosis, width):
    """"Photo too dark and out of focus" is wider than the room a phone leaves it: it wraps, not
    under the history's delete button, past a mole's card or widening a timeline card."""
    mole = Mole.objects.create(owner=long_named, name="Left shoulder", body_site="back")
    make_diagnosis(long_named, risk="low", mole=mole, age_days=30)
    poor = make_diagnosis(long_named, risk="low", mole=mole)
    untracked = make_diagnosis(long_named, risk="medium")
    Diagnosis.objects.filter(pk__in=[poor.pk, untracked.pk]).update(photo_issues=["dark", "blurry"])
    page = sized(width)
    sign_in(page, site, LONG_NAME)

    page.goto(site + "/diagnoses/")
    rows = page.locator(".history-row").filter(has=page.get_by_test_id("photo-issues"))
    expect(rows).to_have_count(2)
    for row in rows.all():
        badge = row.get_by_test_id("photo-issues")
        expect(badge).to_have_text("Photo too dark and out of focus")
        assert_within(badge, ".flex-grow-1")
        box, delete = badge.bounding_box(), row.locator(".history-delete").bounding_box()
        assert box["x"] + box["width"] <= delete["x"], (box, delete)  # not under the delete button
    assert_fits_the_window(page)

    page.goto(site + "/diagnoses/moles/")
    assert_within(page.get_by_test_id("photo-issues"), ".mole-card")
    assert_fits_the_window(page)

    page.goto(f"{site}/diagnoses/moles/{mole.pk}/")
    for item in page.locator(".timeline-item").all():
        wide, basis = item.evaluate(
            "(li) => [li.getBoundingClientRect().width, parseFloat(getComputedStyle(li).flexBasis)]")
        assert wide <= basis + 0.5, f"a timeline card {wide}px wide, its basis {basis}px"
    assert_within(page.get_by_test_id("photo-issues"), ".card")
    assert_fits_the_window(page)


def test_the_agreement_page_scrolls_its_confusion_table_not_the_page_on_a_phone(
        sized, site, settings, reviewer, long_named, make_diagnosis):
    """The label-against-class table (eight columns) is wider than a phone: it scrolls in its own
    box, which the keyboard reaches, and the page does not scroll sideways."""
    settings.STAFF_REQUIRE_2FA = False  # the second step is test_staff_pages.py's
    for label, risk in (("mel", "high"), ("nv", "low"), ("bcc", "medium")):
        case = make_diagnosis(long_named, risk=risk)
        Review.objects.create(diagnosis=case, verdict="disagree", label=label, recommendation="routine",
                              reviewed_at=timezone.now(), model_version=case.model_version)
    page = sized(PHONE)
    page.goto(site + "/admin/login/?next=/admin/diagnoses/review/agreement/")
    page.get_by_label("Username").fill("dr-reviewer")
    page.get_by_label("Password").fill("a long clinic secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("table.agreement-confusion")).to_be_visible()

    assert_fits_the_window(page)
    scroller = page.locator(".agreement-confusion-scroll")
    inner, outer = scroller.evaluate("(box) => [box.scrollWidth, box.clientWidth]")
    assert inner > outer, "the table fits a phone: this test no longer shows what it is for"
    assert scroller.get_attribute("tabindex") == "0"


def test_the_recall_figures_stay_whole_on_a_phone(sized, site):
    """"68.8" and "%" on one line beside "Actinic keratosis / intraepithelial carcinoma", as the
    result page's class bars keep theirs (the shipped model card's figures)."""
    page = sized(PHONE)
    page.goto(site + "/about/model/")
    figures = page.locator("section[aria-labelledby=recall-title] .class-bar .fw-semibold")
    expect(figures).to_have_count(7)
    wrapped = [text for figure in figures.all() for text in figure.evaluate(WRAPPED)]
    assert wrapped == [], f"on more than one line: {wrapped}"
    assert_fits_the_window(page)
