"""Accessibility: axe-core (WCAG 2.1 A and AA rules) on every page a patient or a clinician
meets outside Django's own admin, and on the review desk's queue, case and agreement pages (our
content in them), on a phone and on a desktop; and what axe cannot check: focus, live regions,
hidden layers, the contrast of borders and focus rings."""

import base64
import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from django_otp.oath import TOTP
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


def sign_in_at_the_desk(page, site):
    """Sign the reviewer in at the review desk, through the second step: the authenticator app
    set up from the page's key, as a clinician does the first time (test_staff_pages.py)."""
    page.goto(site + "/admin/")
    page.get_by_label("Username").fill("dr-reviewer")
    page.get_by_label("Password").fill("a long clinic secret")
    page.get_by_role("button", name="Sign in").click()
    key = base64.b32decode(page.locator("[data-secret]").inner_text().replace(" ", ""))
    page.get_by_label("Code").fill(f"{TOTP(key).token():06d}")
    page.get_by_role("button", name="Confirm and continue").click()
    expect(page.get_by_text("Your authenticator app is set up")).to_be_visible()


# The desk's pages are checked within #content, which holds what our templates and admin.py write
# (the queue's columns, the case and its review form, the agreement figures): not Django's admin
# chrome around it, its header, sidebar and breadcrumbs, whose links axe finds told from their text
# by colour alone (link-in-text-block), Django's styling of .breadcrumbs, not ours to fix. Nor
# is the queue's "N results (Show all)" link, the same finding, in Django's own search form
# (admin/search_form.html, #changelist-search .quiet): left out too, and only it.
# No preload: axe would fetch the admin's stylesheets to read them, follow forms.css's relative
# @import of widgets.css from the page's address, and apply what it read as inline styles, which
# the site's Content-Security-Policy blocks (console errors); only a rule outside WCAG_AA
# (css-orientation-lock) reads them.
DESK_AXE = {**WCAG_AA, "preload": False}


def test_it_meets_wcag_aa_on_the_review_desk(page, site, owner, reviewer, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    case = make_diagnosis(owner, risk="high", mole=mole)
    Diagnosis.objects.filter(pk=case.pk).update(photo_issues=["dark"])  # its warning is checked too
    reviewed = make_diagnosis(owner, risk="medium", age_days=3)
    services.review_save(diagnosis=reviewed, reviewer=reviewer, verdict="disagree", label="mel",
                         recommendation="dermatologist_soon", notify=False)
    sign_in_at_the_desk(page, site)
    axe = Axe()
    found, reports = [], []
    for path in ["/admin/diagnoses/diagnosis/", f"/admin/diagnoses/diagnosis/{case.pk}/change/",
                 f"/admin/diagnoses/diagnosis/{reviewed.pk}/change/",
                 "/admin/diagnoses/review/agreement/"]:
        open_page(page, site + path)
        page.wait_for_load_state("networkidle")
        results = axe.run(page, options=DESK_AXE, context={
            "include": [["#content"]], "exclude": [["#changelist-search .quiet a"]]})
        lines = [f"{path}: {line}" for line in results.generate_snapshot().splitlines()]
        found += lines
        reports.append(results.generate_report() if lines else "")
    assert not found, "\n".join(found) + "\n" + "\n".join(r for r in reports if r)


# --- what axe cannot see: focus, live regions, hidden layers, contrast of borders and rings ----

def colour(css):
    """An opaque computed colour, "rgb(r, g, b)", as [r, g, b]."""
    values = [float(value) for value in re.findall(r"[\d.]+", css)]
    assert len(values) == 3 or values[3] == 1, f"{css} is not opaque"
    return values[:3]


def contrast(first, second):
    """WCAG's contrast ratio of two computed colours."""
    def luminance(css):
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
                  for c in (value / 255 for value in colour(css))]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def computed(locator, *properties):
    return locator.evaluate("(el, names) => names.map((name) => getComputedStyle(el)[name])",
                            list(properties))


def focus_by_keyboard(page, locator):
    """Focus as the Tab key does, which is when :focus-visible rings show (not after a click)."""
    locator.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    expect(locator).to_be_focused()


def test_the_menu_shows_the_keyboards_focus_on_its_blue_bar(page, site, owner):
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(site + "/diagnoses/")
    toggler = page.locator(".navbar-toggler")
    if toggler.is_visible():  # a phone: the menu opens first
        toggler.click()
        expect(page.locator("#nav")).to_have_class(re.compile(r"\bshow\b"))
    nav = page.locator("#nav")
    for control in [nav.get_by_role("link", name="My moles", exact=True),
                    nav.get_by_role("button", name="Sign out")]:
        focus_by_keyboard(page, control)
        # Bootstrap's ring is a pale shadow, 1.1 to 1.7:1 on the bar: a white outline instead
        expect(control).to_have_css("outline-style", "solid")
        expect(control).to_have_css("outline-width", "2px")
        expect(control).to_have_css("outline-color", "rgb(255, 255, 255)")
        expect(control).to_have_css("box-shadow", "none")


def test_a_refused_sign_in_takes_the_focus_to_what_went_wrong(page, site, owner):
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill("patient")
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("Password").press("Enter")
    summary = page.get_by_role("alert").filter(has_text="You are not signed in.")
    expect(summary).to_be_focused()  # not the autofocused username, after the error


def test_form_fields_and_their_focus_ring_stand_out(page, site, owner):
    """WCAG 1.4.11: a field's edge and the focus ring at 3:1 against what is beside them."""
    page.goto(site + "/accounts/login/")
    card = computed(page.locator("form.card"), "backgroundColor")[0]
    field = page.get_by_label("Username")
    border, inside = computed(field, "borderTopColor", "backgroundColor")
    assert contrast(border, inside) >= 3 and contrast(border, card) >= 3, border
    field.focus()
    style, width, ring = computed(field, "outlineStyle", "outlineWidth", "outlineColor")
    assert style == "solid" and float(width.removesuffix("px")) >= 2, (style, width)
    assert contrast(ring, card) >= 3, ring

    sign_in(page, site, "patient", "correct horse battery")
    page.goto(site + "/diagnoses/new/")
    zone = page.locator("[data-dropzone]")
    border, inside = computed(zone, "borderTopColor", "backgroundColor")
    card = computed(page.locator("#upload-form"), "backgroundColor")[0]
    assert contrast(border, inside) >= 3 and contrast(border, card) >= 3, border


def test_the_upload_keeps_the_focus_and_says_how_it_goes(page, site, owner, photo):
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(site + "/diagnoses/new/")
    page.wait_for_selector("#upload-form.enhanced", state="attached")  # upload.js has run
    page.locator("input[name=image]").set_input_files(photo())
    posts = []
    # the upload is taken and never answered: the page stays as it is while a photo is sent
    page.route(re.compile(r".*/diagnoses/new/$"), lambda route: posts.append(route)
               if route.request.method == "POST" else route.continue_())
    button = page.get_by_role("button", name="Upload and analyse")
    button.focus()
    button.press("Enter")

    expect(page.locator("[data-progress-status]")).to_have_text(
        re.compile(r"^(Uploading…|Checking the photo…)$"))
    expect(button).to_be_focused()  # `disabled` would have dropped it
    expect(button).to_have_attribute("aria-disabled", "true")
    button.press("Enter")
    page.wait_for_timeout(1_000)  # a second POST would have started by now
    assert len(posts) == 1


def test_the_hidden_heatmap_is_hidden_from_screen_readers_too(page, site, owner, make_diagnosis):
    result = make_diagnosis(owner)
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(f"{site}/diagnoses/{result.pk}/")
    heatmap = page.get_by_role("img", name=re.compile("^Heatmap"))
    expect(heatmap).to_have_count(0)  # faded out, its alt text would still be read
    page.get_by_text("Show where the model looked").click()
    expect(heatmap).to_have_count(1)
    expect(heatmap).to_have_css("opacity", "1")


def test_the_result_page_tells_screen_readers_the_result(page, site, owner, make_diagnosis):
    pending = make_diagnosis(owner, status="queued")
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(f"{site}/diagnoses/{pending.pk}/")
    expect(page.locator("#result .pending-box")).to_be_visible()
    done = make_diagnosis(owner, risk="medium")  # its result, given to the pending photo
    Diagnosis.objects.filter(pk=pending.pk).update(
        status=Diagnosis.Status.DONE, risk=done.risk, probabilities=done.probabilities,
        malignant_probability=done.malignant_probability, predicted_class=done.predicted_class,
        model_version=done.model_version, finished_at=done.finished_at)
    pending.refresh_from_db()

    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=10_000)
    expect(page.locator("#result-announcer")).to_have_text(
        f"Your result is ready: Medium risk, {pending.malignant_percent}% malignant probability.")


def test_a_refused_field_has_a_red_edge(page, site):
    page.goto(site + "/accounts/signup/")
    page.get_by_label("Username").fill("two words")  # no spaces in a user name
    page.get_by_label("E-mail address").fill("ana@example.com")
    page.locator("[name=password1]").fill("a long and private pass phrase")
    page.locator("[name=password2]").fill("a long and private pass phrase")
    page.get_by_role("button", name="Create account").click()
    field = page.get_by_label("Username")
    expect(field).to_have_attribute("aria-invalid", "true")
    # Bootstrap's danger red (4.5:1 on white), not the grey edge of the fields that passed
    expect(field).to_have_css("border-top-color", "rgb(220, 53, 69)")
    expect(page.get_by_label("E-mail address")).not_to_have_css("border-top-color", "rgb(220, 53, 69)")


def test_a_refused_sign_in_says_why_once(page, site, owner):
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill("patient")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    summary = page.get_by_role("alert").filter(has_text="You are not signed in.")
    expect(summary).to_contain_text("Please enter a correct username and password.")
    # in the summary, which takes the focus, and not again in a second red box below it
    expect(page.get_by_text("Please enter a correct username and password.")
           .locator("visible=true")).to_have_count(1)
    expect(page.locator(".alert-danger, .errorlist").locator("visible=true")).to_have_count(1)


def test_checkboxes_switches_and_selects_stand_out_outside_the_form_stack(page, site, owner, make_diagnosis):
    """Bootstrap's classed fields (here the result page's heatmap switch and share form) get the
    grey edge and the blue outline of the .form-stack fields, not #dee2e6 (1.3:1) and a pale ring."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    result = make_diagnosis(owner, risk="medium", mole=mole)
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(f"{site}/diagnoses/{result.pk}/")
    white = "rgb(255, 255, 255)"
    page_background = computed(page.locator("body"), "backgroundColor")[0]
    switch = page.get_by_label("Show where the model looked")
    for field in [switch, page.get_by_label("Also show the 1 earlier photo"),
                  page.get_by_label("The link works for")]:
        border, inside = computed(field, "borderTopColor", "backgroundColor")
        assert contrast(border, inside) >= 3 and contrast(border, page_background) >= 3, border
        focus_by_keyboard(page, field)
        style, width, ring, shadow = computed(field, "outlineStyle", "outlineWidth", "outlineColor", "boxShadow")
        assert (style, width, shadow) == ("solid", "2px", "none"), (style, width, shadow)
        assert contrast(ring, white) >= 3 and contrast(ring, page_background) >= 3, ring
        assert computed(field, "borderTopColor")[0] == border  # not Bootstrap's pale focused edge
    # the off switch's knob in the same grey, not 25% black (1.8:1)
    assert "6c757d" in computed(switch, "backgroundImage")[0]


def test_a_refused_consent_box_has_a_red_edge(page, site):
    page.goto(site + "/accounts/signup/")
    page.get_by_label("Username").fill("ana")
    page.get_by_label("E-mail address").fill("ana@example.com")
    page.locator("[name=password1]").fill("a long and private pass phrase")
    page.locator("[name=password2]").fill("a long and private pass phrase")
    page.get_by_role("button", name="Create account").click()  # the privacy notice not agreed to
    consent = page.locator("[name=consent]")
    expect(consent).to_have_attribute("aria-invalid", "true")
    expect(consent).to_have_css("border-top-color", "rgb(220, 53, 69)")
    focus_by_keyboard(page, consent)
    expect(consent).to_have_css("border-top-color", "rgb(220, 53, 69)")  # focused too
    expect(consent).to_have_css("outline-style", "solid")
    # the box beside it, not refused: the fields' grey edge, 4.7:1 on white
    expect(page.locator("[name=model_improvement]")).to_have_css("border-top-color", "rgb(108, 117, 125)")


def test_a_new_share_link_and_a_closed_message_keep_the_focus(page, site, owner, make_diagnosis):
    """The link shown only once takes the focus, named by its label; stopping a link goes back
    to the share section; closing the message that says so leaves the focus on the content,
    not on <body>, where the next Tab would begin again from the menu."""
    result = make_diagnosis(owner, risk="medium")
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(f"{site}/diagnoses/{result.pk}/")
    page.get_by_role("button", name="Create a link").click()
    link = page.locator("#new-share-url")
    expect(link).to_be_focused()
    expect(link).to_have_accessible_name("Your new link: copy it now, it is shown only this once")
    expect(link).to_have_accessible_description(
        "Anyone with this link can see this result and its photo until it expires.")

    page.get_by_role("button", name="Stop sharing").click()
    expect(page).to_have_url(f"{site}/diagnoses/{result.pk}/#share")
    message = page.get_by_role("status").filter(has_text="You stopped sharing this result")
    close = message.get_by_role("button", name="Close")
    focus_by_keyboard(page, close)
    close.press("Enter")
    expect(message).to_have_count(0)
    expect(page.locator("#main")).to_be_focused()


def test_a_chosen_photo_keeps_the_focus_and_is_said(page, site, owner, photo):
    """The preview replaces "Choose a file": the focus goes to its "Change", not to <body>, and
    the status region says which photo was chosen (the preview's name is no live region)."""
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(site + "/diagnoses/new/")
    page.wait_for_selector("#upload-form.enhanced", state="attached")  # upload.js has run
    choose = page.get_by_role("button", name="Choose a file")
    choose.focus()
    with page.expect_file_chooser() as chooser:
        choose.press("Enter")
    chooser.value.set_files(photo("mole.jpg"))
    change = page.locator("[data-preview]").get_by_role("button", name="Change")
    expect(change).to_be_focused()
    expect(page.locator("[data-progress-status]")).to_have_text("Photo chosen: mole.jpg")
    # another photo through "Change": the focus stays there, the region names the new one
    with page.expect_file_chooser() as chooser:
        change.press("Enter")
    chooser.value.set_files(photo("another.jpg"))
    expect(page.locator("[data-progress-status]")).to_have_text("Photo chosen: another.jpg")
    expect(change).to_be_focused()


def test_the_uploads_own_message_is_tied_to_the_field(page, site, owner, photo):
    """The script's message ("choose a photo first", not a photo, too large) is named by the field
    (aria-describedby, after its help text) and marks it invalid while it shows."""
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(site + "/diagnoses/new/")
    page.wait_for_selector("#upload-form.enhanced", state="attached")
    field = page.locator("input[name=image]")
    expect(field).to_have_attribute("aria-describedby", "id_image_helptext")
    expect(field).not_to_have_attribute("aria-invalid", "true")

    page.get_by_role("button", name="Upload and analyse").click()
    message = page.locator("#id_image_client_error")
    expect(message).to_have_text("Please choose or take a photo first.")
    expect(field).to_have_attribute("aria-describedby", "id_image_helptext id_image_client_error")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile(r"Please choose or take a photo first\.$"))

    field.set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"a note\n"})
    expect(message).to_contain_text("This file is not a photo.")
    expect(field).to_have_attribute("aria-describedby", "id_image_helptext id_image_client_error")
    expect(field).to_have_attribute("aria-invalid", "true")

    field.set_input_files(photo("mole.jpg"))  # a photo: the message and the marks go
    expect(message).to_be_hidden()
    expect(field).to_have_attribute("aria-describedby", "id_image_helptext")
    expect(field).not_to_have_attribute("aria-invalid", "true")


def give_result(pending, make_diagnosis, owner):
    """Store a medium result for the pending diagnosis, as the worker would."""
    done = make_diagnosis(owner, risk="medium")
    Diagnosis.objects.filter(pk=pending.pk).update(
        status=Diagnosis.Status.DONE, risk=done.risk, probabilities=done.probabilities,
        malignant_probability=done.malignant_probability, predicted_class=done.predicted_class,
        model_version=done.model_version, finished_at=done.finished_at)


def test_the_result_arriving_keeps_the_focus_that_was_in_what_it_replaced(page, site, owner,
                                                                          make_diagnosis):
    """The late notice's link to My history goes when the result comes in: the focus on it
    goes to the result box, not to <body>, where the next Tab would begin again from the menu."""
    from datetime import timedelta

    from django.utils import timezone

    late = make_diagnosis(owner, status="queued")
    Diagnosis.objects.filter(pk=late.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(f"{site}/diagnoses/{late.pk}/")
    link = page.locator('#result [data-testid="late"]').get_by_role("link", name="My history")
    link.focus()
    give_result(late, make_diagnosis, owner)
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=15_000)
    expect(page.locator("#result")).to_be_focused()
    page.keyboard.press("Tab")  # on into the result, not back at the menu
    assert page.evaluate("document.activeElement.closest('#result') !== null")


def test_the_result_arriving_leaves_the_focus_that_was_elsewhere(page, site, owner, make_diagnosis):
    pending = make_diagnosis(owner, status="queued")
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(f"{site}/diagnoses/{pending.pk}/")
    delete = page.get_by_role("link", name="Delete", exact=True)
    delete.focus()
    give_result(pending, make_diagnosis, owner)
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=15_000)
    expect(delete).to_be_focused()


def test_the_dropped_photo_received_notice_keeps_the_focus(page, site, owner, photo, worker):
    """"Photo received…" goes when the result comes in: focus on its ✕ goes to the result box."""
    sign_in(page, site, "patient", "correct horse battery")
    page.goto(site + "/diagnoses/new/")
    page.wait_for_selector("#upload-form.enhanced", state="attached")
    page.locator("input[name=image]").set_input_files(photo("mole.jpg"))
    page.get_by_role("button", name="Upload and analyse").click()
    notice = page.locator('[data-notice~="analysis-pending"]')
    close = notice.get_by_role("button", name="Close")
    close.focus()
    worker.run()
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=20_000)
    expect(notice).to_have_count(0)
    expect(page.locator("#result")).to_be_focused()
