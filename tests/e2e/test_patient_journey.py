"""A patient's whole journey in a real browser, at desktop and phone sizes: sign up, upload a
photo (a real one where ../shared has HAM10000's, else a generated one: see conftest.py), watch
the result appear without a reload, the heatmap, the report, the history, a mole's timeline,
the model page, the data export, deleting a result and the account."""

import base64
import io
import json
import re
import zipfile
from datetime import timedelta

import pillow_heif
import pytest
from django.utils import timezone
from PIL import Image
from playwright.sync_api import expect

from diagnoses.models import Diagnosis, Mole, Review
from ml import CLASS_NAMES

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long and private pass phrase"


def go(page, link_name):
    """Follow a link of the main navigation, opening the collapsed menu on a phone first."""
    toggler = page.locator(".navbar-toggler")
    if toggler.is_visible():
        toggler.click()
        # Bootstrap swaps "collapsing" for "show" once the menu has finished opening.
        expect(page.locator("#nav")).to_have_class(re.compile(r"\bshow\b"))
    page.locator("#nav").get_by_role("link", name=link_name, exact=True).click()


def sign_up(page, site, username="ana"):
    page.goto(site + "/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("E-mail address").fill(f"{username}@example.com")
    page.locator("[name=password1]").fill(PASSWORD)
    page.locator("[name=password2]").fill(PASSWORD)
    page.get_by_label("I agree that molesite keeps my photos").check()
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(f"Welcome, {username}!")).to_be_visible()


def upload(page, path, *, new_mole=None, mole=None):
    page.locator("input[name=image]").set_input_files(path)
    expect(page.locator("[data-preview-img]")).to_be_visible()
    if new_mole:
        page.get_by_label("Name of the new mole").fill(new_mole)
        page.get_by_label("Body site").select_option("back")
    if mole:
        page.get_by_label("Which mole is this?").select_option(label=mole)


def heic_of(path) -> bytes:
    """The photo at path re-encoded as HEIC, the format iPhones save."""
    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.open(path).save(out, format="HEIF", quality=90)
    return out.getvalue()


def test_it_walks_a_patient_through_the_site(page, site, shot, worker, ham_image):
    page.goto(site + "/")
    expect(page.get_by_role("heading", name="Worried about a mole?")).to_be_visible()
    shot(page, "01-home")
    page.goto(site + "/accounts/login/")
    shot(page, "02-sign-in")
    page.goto(site + "/accounts/signup/")
    shot(page, "03-sign-up")

    sign_up(page, site)
    assert page.url.endswith("/diagnoses/new/")
    shot(page, "04-upload-empty")
    upload(page, ham_image("ISIC_0024306.jpg"), new_mole="Left shoulder")
    shot(page, "05-upload-preview")
    page.get_by_role("button", name="Upload and analyse").click()

    # The result page opens while the photo is queued, then updates by itself.
    expect(page.get_by_text("Photo received.")).to_be_visible()
    expect(page.locator("#result")).to_have_attribute("data-status", "queued")
    expect(page.get_by_text("Queued…")).to_be_visible()
    shot(page, "06-result-queued")
    first_url = page.url
    page.evaluate("window.__notReloaded = true")
    # No worker has taken it for minutes: the page says the analysis is late, without a reload.
    Diagnosis.objects.update(queued_at=timezone.now() - timedelta(minutes=5))
    expect(page.locator("#result [data-testid=late]")).to_contain_text("taking longer than usual")
    expect(page.get_by_text("Photo received.")).to_have_count(0)  # "a few seconds" would contradict it
    shot(page, "06b-result-late")
    worker.run()
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True and page.url == first_url
    expect(page.locator("#result-announcer")).to_have_text(  # the result itself, not only "ready"
        re.compile(r"^Your result is ready: (Low|Medium|High) risk, [\d.]+% malignant probability\.$"))
    expect(page.get_by_text("Photo received.")).to_have_count(0)  # stale once the result is in
    # The estimate the worker stored, as the summary shows it (not one of the seven class bars).
    stored = Diagnosis.objects.get()
    summary = page.locator("#result .result-summary")
    expect(summary.get_by_test_id("malignant-probability")).to_have_text(
        f"{stored.malignant_probability * 100:.1f}%")
    expect(summary.locator("div", has_text="Predicted class:").locator("strong")).to_have_text(
        CLASS_NAMES[stored.predicted_class])
    expect(page.get_by_text("What to do next.")).to_be_visible()
    expect(page.get_by_test_id("photo-advice")).to_have_count(0)  # the photo passed its checks
    shot(page, "07-result")

    heatmap = page.locator(".heatmap-layer")
    expect(heatmap).to_have_css("opacity", "0")
    page.get_by_text("Show where the model looked").click()
    expect(heatmap).to_have_css("opacity", "1")
    shot(page, "08-result-heatmap")

    # The printable report: the button opens the print dialog; Chromium renders it as a PDF.
    page.get_by_role("link", name="Printable report").click()
    expect(page.get_by_role("heading", name="Mole check report")).to_be_visible()
    for alt, content_type in [("The photo of the mole", "image/jpeg"),
                              ("Grad-CAM heatmap over the photo", "image/png")]:
        src = page.get_by_alt_text(alt).evaluate("img => img.src")
        assert page.request.get(src).headers["content-type"] == content_type, alt
    shot(page, "09-report")
    page.evaluate("window.print = () => { window.__printed = true; }")
    page.get_by_role("button", name="Print / save as PDF").click()
    assert page.evaluate("window.__printed") is True
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000

    # A second photo of the same mole, picked from the list.
    go(page, "Check a mole")
    upload(page, ham_image("ISIC_0024307.jpg"), mole="Left shoulder (Back)")
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator("#result")).to_have_attribute("data-status", "queued")
    worker.run()
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=30_000)

    go(page, "My history")
    expect(page.locator(".history-row")).to_have_count(2)
    shot(page, "10-history")
    page.locator("summary", has_text="Filter").click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No photo matches these filters.")).to_be_visible()
    page.get_by_label("Status").select_option("done")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".history-row")).to_have_count(2)
    shot(page, "11-history-filtered")

    go(page, "My moles")
    expect(page.get_by_text("2 photos")).to_be_visible()
    shot(page, "12-moles")
    page.get_by_role("link", name="Left shoulder").click()
    expect(page.locator(".timeline-item")).to_have_count(2)
    expect(page.locator("#mole-chart")).to_be_visible()
    page.wait_for_function("() => window.Chart && Chart.getChart('mole-chart')")
    # the x axis is time, its ticks the photos' dates as the server wrote them
    chart = json.loads(page.locator("#mole-chart-data").text_content())
    assert page.evaluate("() => Chart.getChart('mole-chart').scales.x.type") == "linear"
    assert page.evaluate("() => Chart.getChart('mole-chart').scales.x.ticks.map(t => t.label)") == chart["labels"]
    shot(page, "13-mole-timeline")

    # The first and the latest photo side by side, with what changed.
    page.get_by_role("link", name="Compare photos").click()
    expect(page.locator(".photo-change")).to_contain_text("Malignant probability")
    expect(page.locator("img.result-photo")).to_have_count(2)
    shot(page, "13b-mole-compare")
    page.get_by_role("link", name="Left shoulder").last.click()

    # An e-mail reminder for the next photo of this mole, three months after the last one.
    page.get_by_role("link", name="Get an e-mail when a new photo is due").click()
    page.get_by_label("Photo reminder").select_option(label="Every 3 months")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("The mole was saved.")).to_be_visible()
    expect(page.locator(".photo-reminder")).to_contain_text("Next photo due")
    expect(page.locator(".photo-reminder")).to_contain_text("every 3 months")
    # ana never opened the link sent at sign-up: reminders go to confirmed addresses only
    expect(page.get_by_test_id("email-unconfirmed")).to_contain_text("not confirmed yet")

    go(page, "About the model")
    expect(page.get_by_role("heading", name="Confusion matrix")).to_be_visible()
    page.wait_for_function("() => window.Chart && Chart.getChart('roc-chart')")
    shot(page, "14-about-model")

    # Delete one result from the history, with its confirmation page.
    go(page, "My history")
    page.locator(".history-delete").first.click()
    expect(page.get_by_role("heading", name="Delete this result?")).to_be_visible()
    shot(page, "15-delete-result")
    page.get_by_role("button", name="Delete for good").click()
    expect(page.get_by_text("The photo and its result were deleted.")).to_be_visible()
    expect(page.locator(".history-row")).to_have_count(1)

    # The account page: download everything, then delete the account.
    go(page, "ana")
    expect(page.get_by_role("heading", name="Your account", exact=True)).to_be_visible()
    shot(page, "16-account")
    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("Download all my data")).click()
    archive = zipfile.ZipFile(io.BytesIO(open(download_info.value.path(), "rb").read()))
    data = json.loads(archive.read("data.json"))
    assert len(data["diagnoses"]) == 1 and data["moles"][0]["name"] == "Left shoulder"
    assert data["diagnoses"][0]["files"]["image"] in archive.namelist()

    page.get_by_role("link", name="Delete my account…").click()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("I understand").check()
    shot(page, "17-delete-account")
    page.get_by_role("button", name="Delete my account and data").click()
    expect(page.get_by_text("Your account, photos and results were deleted for good.")).to_be_visible()
    assert not Diagnosis.objects.exists()
    shot(page, "18-account-deleted")


def test_it_shows_upload_errors_next_to_the_field_without_leaving_the_page(page, site, shot, worker,
                                                                           photo):
    sign_up(page, site, username="ben")
    page.allow_console_error(r"status of 400 \(Bad Request\)")
    # A file that says it is not an image is flagged before sending, in the server's words
    # (once upload.js has taken the form over: it marks it "enhanced").
    page.wait_for_selector("#upload-form.enhanced", state="attached")
    page.locator("input[name=image]").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"a note, not a photo\n"}
    )
    expect(page.locator("[data-client-error]")).to_have_text(
        "This file is not a photo. Please choose a JPEG, PNG, WebP, HEIC or AVIF image.")
    expect(page.locator("[data-preview-name]")).to_contain_text("notes.txt")
    expect(page.locator("[data-preview-missing]")).to_be_hidden()  # no "cannot preview this photo"
    expect(page.locator("[data-preview-img]")).to_be_hidden()
    # Not a photo, though it claims to be one: the server refuses it, the form says why.
    page.locator("input[name=image]").set_input_files(
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"this is text, not a photo\n" * 40}
    )
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator("#upload-errors")).to_be_visible()
    expect(page.locator(".upload-field .errorlist")).to_contain_text("not an image we can read")
    assert page.url.endswith("/diagnoses/new/")
    shot(page, "20-upload-error")

    # A photo dropped on the drop zone is previewed and uploaded like a chosen one.
    with open(photo(), "rb") as chosen:
        encoded = base64.b64encode(chosen.read()).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            return transfer;
        }""",
        encoded,
    )
    page.dispatch_event("[data-dropzone]", "drop", {"dataTransfer": transfer})
    expect(page.locator("[data-preview-name]")).to_contain_text("dropped.jpg")
    page.get_by_label("Name of the new mole").fill("Back")
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator("#result")).to_be_visible()

    # A mistake in another field keeps the chosen photo; fixing it uploads.
    go(page, "Check a mole")
    upload(page, photo(), new_mole="Back")
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.get_by_text("You already track a mole with this name")).to_be_visible()
    expect(page.locator("[data-preview-img]")).to_be_visible()
    shot(page, "21-upload-field-error")
    page.get_by_label("Name of the new mole").fill("")
    page.get_by_label("Which mole is this?").select_option(label="Back (Other / not sure)")
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator("#result")).to_have_attribute("data-status", "queued")
    assert Diagnosis.objects.count() == 2

    # An iPhone photo (HEIC), which Chromium cannot decode: the page says there is no preview
    # instead of a broken image, and the upload works all the same.
    go(page, "Check a mole")
    page.locator("input[name=image]").set_input_files(
        {"name": "IMG_0001.HEIC", "mimeType": "image/heic", "buffer": heic_of(photo())}
    )
    expect(page.locator("[data-preview-missing]")).to_be_visible()
    expect(page.locator("[data-preview-img]")).to_be_hidden()
    expect(page.locator("[data-preview-name]")).to_contain_text("IMG_0001.HEIC")
    shot(page, "22-upload-heic")
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator("#result")).to_have_attribute("data-status", "queued")
    worker.run()
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=30_000)
    assert Diagnosis.objects.count() == 3


def chart_points(page):
    """The mole chart's photo points as drawn: [(x pixel, y pixel)], and its x axis' pixel span."""
    page.wait_for_function("() => window.Chart && Chart.getChart('mole-chart')")
    points = page.evaluate(
        "() => Chart.getChart('mole-chart').getDatasetMeta(0).data.map(p => [p.x, p.y])")
    left, right = page.evaluate("() => { const x = Chart.getChart('mole-chart').scales.x; return [x.left, x.right]; }")
    return points, (left, right)


def test_it_previews_a_photo_chosen_before_the_upload_script_ran(page, site, photo):
    """On a slow connection the patient may pick the photo before upload.js has run; its
    preview must show once the script arrives (the change event was missed)."""
    sign_up(page, site)
    page.route("**/js/upload.js", lambda route: route.fulfill(body="", content_type="text/javascript"))  # not yet
    page.goto(site + "/diagnoses/new/")
    page.locator("input[name=image]").set_input_files(photo("left-shoulder.jpg"))
    expect(page.locator("[data-preview-img]")).to_be_hidden()
    page.unroute("**/js/upload.js")
    page.add_script_tag(url=site + "/static/js/upload.js")
    expect(page.locator("[data-preview-img]")).to_be_visible()
    expect(page.locator("[data-preview-name]")).to_contain_text("left-shoulder.jpg")


def test_it_draws_a_moles_photos_taken_at_one_moment_side_by_side(page, site, owner, make_diagnosis):
    """Two shots in a row have no time between them: the chart spaces them by order instead of
    piling them onto an axis of no length (which drew nothing at all)."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    first = make_diagnosis(owner, risk="high", mole=mole)
    second = make_diagnosis(owner, risk="low", mole=mole)
    Diagnosis.objects.filter(pk=second.pk).update(created_at=first.created_at)
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()

    page.goto(f"{site}/diagnoses/moles/{mole.pk}/")
    (high_x, high_y), (low_x, low_y) = sorted(chart_points(page)[0], key=lambda point: point[1])
    left, right = chart_points(page)[1]
    assert abs(high_x - low_x) > (right - left) / 2, "the two photos should sit apart"
    assert all(left - 1 <= x <= right + 1 for x in (high_x, low_x)), "both photos inside the chart"

    # Photos days apart keep the time axis: one 90 days back, one 10 days back, one today sit
    # in proportion to the days between them.
    Diagnosis.objects.filter(pk=first.pk).update(created_at=first.created_at - timedelta(days=90))
    Diagnosis.objects.filter(pk=second.pk).update(created_at=first.created_at - timedelta(days=10))
    make_diagnosis(owner, risk="medium", mole=mole)
    page.reload()
    xs = sorted(x for x, _ in chart_points(page)[0])
    assert (xs[2] - xs[1]) / (xs[2] - xs[0]) == pytest.approx(10 / 90, abs=0.02)


def test_it_asks_for_a_better_photo_when_the_photo_is_too_dark(page, site, shot, worker, ham_image,
                                                                too_dark):
    dark = too_dark(ham_image("ISIC_0027190.jpg"))  # checked: the site calls it too dark, only that
    sign_up(page, site)
    upload(page, dark, new_mole="Back of the knee")
    page.get_by_role("button", name="Upload and analyse").click()

    advice = page.get_by_test_id("photo-advice")
    expect(advice).to_contain_text("This photo looks too dark.")
    worker.run()
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=30_000)
    expect(advice).to_be_visible()  # still there with the result
    shot(page, "20-result-dark-photo")
    page.get_by_role("link", name="Upload a better photo").click()
    expect(page.get_by_label("Which mole is this?")).to_have_value(str(Mole.objects.get().pk))
    page.goto(site + "/diagnoses/")
    expect(page.get_by_test_id("photo-issues")).to_have_text("Photo too dark")


def open_a_pending_result(page, site, owner, make_diagnosis, pending=None):
    """The owner signed in, on the result page of a photo still queued (pending, else a new one);
    returns that photo."""
    pending = pending or make_diagnosis(owner, status="queued")
    page.goto(site + "/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{site}/diagnoses/{pending.pk}/")
    expect(page.locator("#result .pending-box")).to_be_visible()
    return pending


def test_a_result_that_arrives_while_its_page_is_open_reads_as_on_a_fresh_load(page, site, shot, owner,
                                                                             make_diagnosis):
    """The page chose its disclaimer's "see a doctor if ..." while the photo was pending; once the
    result (with its own such sentence, estimate-scope) is swapped in, it must not stay."""
    pending = open_a_pending_result(page, site, owner, make_diagnosis)
    doctor_if = page.get_by_text("See a doctor if a mole changes in size")
    expect(doctor_if).to_have_count(1)
    Diagnosis.objects.filter(pk=pending.pk).update(  # the result, as the worker stores it
        status="done", risk="low", probabilities={"nv": 0.9, "mel": 0.1}, malignant_probability=0.1,
        predicted_class="nv", model_version="test-model-1", finished_at=timezone.now())
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=15_000)
    shot(page, "result-arrived-while-open")
    expect(page.get_by_test_id("estimate-scope")).to_have_count(1)
    expect(doctor_if).to_have_count(0)
    main_text = ("() => { const main = document.getElementById('main').cloneNode(true);"
                 " main.querySelector('#result-announcer').remove();"  # says what just arrived
                 " return main.textContent.replace(/\\s+/g, ' ').trim(); }")
    swapped = page.evaluate(main_text)
    page.reload()
    expect(page.locator("#result [data-risk]")).to_be_visible()
    assert page.evaluate(main_text) == swapped


def test_a_review_stays_on_the_result_page_while_its_case_is_re_run_and_after(page, site, shot, owner,
                                                                             make_diagnosis):
    """The patient was e-mailed to read an urgent review now; the case is re-run meanwhile. The
    page opened while it waits gives the review under the spinner, and keeps it when the new
    result is swapped in."""
    diagnosis = make_diagnosis(owner, risk="high", model_version="test-model-1")
    Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation="urgent", note="Come in this week.",
                          reviewed_at=timezone.now(), model_version="test-model-1")
    Diagnosis.objects.filter(pk=diagnosis.pk).update(  # as services.diagnosis_requeue leaves it
        status="queued", queued_at=timezone.now(), finished_at=None, heatmap="", model_version="",
        probabilities={}, malignant_probability=None, predicted_class="", risk="")
    open_a_pending_result(page, site, owner, make_diagnosis, pending=diagnosis)
    result = page.locator("#result")
    expect(result.get_by_test_id("review-recommendation")).to_contain_text("Urgent: see a doctor now")
    expect(result.get_by_text("the photo is being analysed again")).to_be_visible()
    shot(page, "result-re-run-with-review")
    Diagnosis.objects.filter(pk=diagnosis.pk).update(  # the result, as the worker stores it
        status="done", risk="low", probabilities={"nv": 0.9, "mel": 0.1}, malignant_probability=0.1,
        predicted_class="nv", model_version="test-model-2", finished_at=timezone.now())
    expect(page.locator("#result [data-risk]")).to_be_visible(timeout=15_000)
    expect(result.get_by_test_id("review-recommendation")).to_contain_text("Urgent: see a doctor now")
    expect(result.get_by_text("Come in this week.")).to_be_visible()
    expect(result.get_by_text("model test-model-2 has analysed the photo again since")).to_be_visible()


@pytest.mark.parametrize("how", ["deleted", "signed out"])
def test_the_result_page_stops_waiting_and_says_why_when_asking_again_cannot_help(page, site, owner,
                                                                                  make_diagnosis, how):
    pending = open_a_pending_result(page, site, owner, make_diagnosis)

    if how == "deleted":  # from another tab or device
        page.allow_console_error(r"status of 404 \(Not Found\)")
        pending.delete()
        expected = "This check is no longer there"
    else:  # the session ended elsewhere: the status answers with the sign-in page
        page.context.clear_cookies()
        expected = "You are no longer signed in"
    stopped = page.get_by_test_id("polling-stopped")
    expect(stopped).to_contain_text(expected, timeout=10_000)
    expect(page.locator("#result .pending-box")).to_have_count(0)
    # No more requests: the page does not ask again every few seconds for ever.
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.wait_for_timeout(6_000)
    assert not [url for url in requests if "/status/" in url]


def test_the_result_page_says_when_the_site_cannot_be_reached_and_recovers(page, site, owner,
                                                                          make_diagnosis):
    open_a_pending_result(page, site, owner, make_diagnosis)

    page.allow_console_error(r"status of 503")
    down = re.compile(r".*/status/$")
    page.route(down, lambda route: route.fulfill(status=503, body="Service Unavailable"))
    trouble = page.get_by_test_id("polling-trouble")
    expect(trouble).to_contain_text("cannot be reached just now", timeout=20_000)
    expect(page.locator("#result .pending-box")).to_be_visible()  # still waiting, still asking
    page.unroute(down)
    expect(trouble).to_have_count(0, timeout=10_000)  # answered again: the notice goes
