"""Browser tests: the live Django server in a thread, driven by the system's headless Chromium
through Playwright's sync API. A test fails on any console error or on any request that would
leave localhost (the site must work offline)."""

import io
import os
import re
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a
# thread with a running loop unless told that this is safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("E2E_SCREENSHOTS", "/tmp/shots"))
# Real photos where the machine has ../shared (never in a clean clone, as in CI): the tests that
# prefer one fall back to a generated photo. HAM10000_IMAGES=/nowhere runs them as CI does.
HAM_IMAGES = Path(os.environ.get(
    "HAM10000_IMAGES",
    Path(__file__).resolve().parents[3] / "shared" / "data" / "ham10000" / "images"))
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("CI"):  # CI installs it (.ci/run): missing, the run is broken
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def site(live_server, settings):
    # The live server speaks plain HTTP; production's Secure cookies would not come back.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    settings.SECURE_SSL_REDIRECT = False
    return live_server.url


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def viewport(request):
    return request.param


@pytest.fixture
def page(browser, viewport, site):
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context(**VIEWPORTS[viewport], accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems, allowed = [], []

    def on_console(message):
        if message.type == "error" and not any(re.search(pattern, message.text) for pattern in allowed):
            problems.append(f"console error on {page.url}: {message.text}")

    def on_request(request):
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob"):
            return
        if parts.hostname not in {h.strip("[]") for h in LOCAL_HOSTS}:
            problems.append(f"request leaving localhost: {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error on {page.url}: {error}"))
    page.on("request", on_request)
    # A test that provokes an error on purpose (a refused upload answers 400, which Chromium
    # logs) names the message it expects; anything else still fails the test.
    page.allow_console_error = allowed.append
    yield page
    # No request of the page's in flight when the test's database is flushed: the live server
    # shares the test's SQLite connection, and a flush while a reloaded page still fetched its
    # photos failed with "database table is locked" on a busy machine. (At once where the page
    # is idle already.)
    try:
        page.wait_for_load_state("networkidle", timeout=5_000)
    except PlaywrightError:  # a closed page, or one still busy after 5 s: closed all the same
        pass
    context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def shot(viewport):
    """shot(page, name): a full-page screenshot in /tmp/shots/ (never in the repository)."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        page.screenshot(path=str(SHOTS / f"{viewport}-{name}.png"), full_page=True)

    return take


def checked_upload(data: bytes, name: str):
    """The site's own upload checks (diagnoses.images.sanitize_upload: decoding, then
    ml.quality's photo checks) on a photo's bytes; returns what they made of it."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from diagnoses.images import sanitize_upload

    return sanitize_upload(SimpleUploadedFile(name, data, content_type="image/jpeg"))


@pytest.fixture(scope="session")
def generated_photos(tmp_path_factory):
    """generated_photos(name): a synthetic mole on skin (ml.synthetic), 600x450 like a HAM10000
    photo, saved as a JPEG of that name in a temporary folder; the same name, the same photo.
    It must pass the site's upload checks with no photo issue, so an upload of it reaches a
    result without advice to retake it."""
    from ml.synthetic import draw_lesion

    folder = tmp_path_factory.mktemp("photos")

    def path(name="mole.jpg"):
        found = folder / name
        if not found.is_file():
            out = io.BytesIO()
            # a distinct photo for each name (a mole's two photos differ), stable between runs
            draw_lesion("nv", size=(600, 450), seed=zlib.crc32(name.encode())).save(
                out, format="JPEG", quality=92)
            issues = checked_upload(out.getvalue(), name).photo_issues
            assert issues == [], f"the generated photo {name} fails the photo checks: {issues}"
            found.write_bytes(out.getvalue())
        return str(found)

    return path


@pytest.fixture
def photo(generated_photos):
    """photo(name): a generated photo of a mole (see generated_photos), for the tests that need
    any photo that passes the upload checks."""
    return generated_photos


@pytest.fixture
def ham_image(generated_photos):
    """ham_image(name): shared/data/ham10000/images/<name>, a real dermatoscopic photo, for the
    tests that would rather upload a real one; a generated photo of that name (see
    generated_photos) where the machine has no HAM10000 images, as in a clean clone."""

    def path(name="ISIC_0024306.jpg"):
        found = HAM_IMAGES / name
        return str(found) if found.is_file() else generated_photos(name)

    return path


@pytest.fixture
def too_dark(tmp_path):
    """too_dark(path): a copy of the photo at path with its brightness scaled by 0.4, which the
    site's upload checks call too dark and nothing else; returns the copy's path."""
    from PIL import Image, ImageEnhance

    def darken(path, factor=0.4):
        dark = tmp_path / f"dark-{Path(path).name}"
        with Image.open(path) as original:
            ImageEnhance.Brightness(original.convert("RGB")).enhance(factor).save(dark, quality=92)
        issues = checked_upload(dark.read_bytes(), dark.name).photo_issues
        assert issues == ["dark"], f"{dark.name} darkened {factor}x: the checks found {issues}"
        return str(dark)

    return darken


@pytest.fixture
def worker(monkeypatch, tiny_model):
    """Stands in for the Celery worker: uploads queue their task here, and run() executes the
    real task (tiny real model) from the test, while the page is open and polling."""
    from diagnoses.tasks import classify_diagnosis

    queued = []
    monkeypatch.setattr(classify_diagnosis, "delay", lambda pk: queued.append(pk))

    class Worker:
        def run(self):
            while queued:
                classify_diagnosis.apply(args=[queued.pop(0)])

    return Worker()
