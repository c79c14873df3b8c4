"""Fixtures shared by every test: private media in a temporary folder, users on both sides,
and a tiny classifier trained on the fly on synthetic lesions (never a hard-coded result)."""

import io

import pytest
from PIL import Image

from molesite.celery import app as celery_app


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    """Tests run without collectstatic, so the hashed-manifest storage has nothing to read."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def empty_cache(settings):
    """Every unit and browser test starts with an empty cache: API throttles, the sign-in count
    per address and the password-reset limit count from zero (the browser tests sign in from
    127.0.0.1 more often than the per-address limit allows in a minute). Only an in-memory
    cache is emptied: integration tests share Redis with the broker and must not flush it."""
    from django.core.cache import cache

    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        cache.clear()


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from ml import synthetic, training

    root = tmp_path_factory.mktemp("tiny-model")
    data_dir = synthetic.make_dataset(root / "data", per_class=12, seed=0)
    training.train(data_dir=data_dir, out_dir=root / "model", preset="tiny", seed=0)
    return root / "model"


@pytest.fixture
def tiny_model(settings, tiny_model_dir):
    settings.ML_MODEL_DIR = tiny_model_dir
    return tiny_model_dir


@pytest.fixture
def eager_celery():
    """Run queued tasks inline, as a worker would, when on_commit callbacks fire."""
    celery_app.conf.task_always_eager = True
    yield celery_app
    celery_app.conf.task_always_eager = False


def failing_first(times: int, send):
    """A stand-in for send_templated_mail whose first `times` calls fail as an unreachable mail
    server does; the later ones send."""
    calls = iter(range(times))

    def flaky(*args, **kwargs):
        if next(calls, None) is not None:
            raise ConnectionRefusedError
        return send(*args, **kwargs)

    return flaky


@pytest.fixture
def owner(django_user_model):
    """A patient who signed up (agreeing to the privacy notice, as sign-up asks)."""
    from django.utils import timezone

    return django_user_model.objects.create_user("patient", "patient@example.com", "correct horse battery",
                                                 consented_at=timezone.now())


@pytest.fixture
def outsider(django_user_model):
    from django.utils import timezone

    return django_user_model.objects.create_user("outsider", "outsider@example.com", "another long secret",
                                                 consented_at=timezone.now())


def ask_for_password_reset(client, email):
    """POST the forgotten-password form, its e-mail sent at once by the task a worker would run."""
    from django.urls import reverse

    celery_app.conf.task_always_eager = True
    try:
        return client.post(reverse("password_reset"), {"email": email})
    finally:
        celery_app.conf.task_always_eager = False


def reset_password_by_email(client, mailoutbox, email, new_password):
    """The forgotten-password flow as a patient follows it: ask for the e-mail, open its link,
    set the new password. Returns the answer to that last step."""
    from urllib.parse import urlsplit

    from django.urls import reverse

    response = ask_for_password_reset(client, email)
    assert response.status_code == 302 and len(mailoutbox) == 1
    link = next(line for line in mailoutbox[0].body.splitlines() if "/accounts/password/reset/" in line)
    form_url = client.get(urlsplit(link).path, follow=True).redirect_chain[-1][0]  # on SITE_URL
    return client.post(form_url, {"new_password1": new_password, "new_password2": new_password})


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_client(outsider):
    """A browser of its own, so a test can hold the owner's and the outsider's at once."""
    from django.test import Client

    other = Client()
    other.force_login(outsider)
    return other


def make_image_bytes(fmt="JPEG", size=(200, 150), colour=(180, 120, 90), **save_kwargs) -> bytes:
    image = Image.new("RGB", size, colour)
    # A darker blob in the middle, so the photo looks like a lesion on skin.
    for x in range(size[0] // 3, 2 * size[0] // 3):
        for y in range(size[1] // 3, 2 * size[1] // 3):
            image.putpixel((x, y), (70, 40, 30))
    out = io.BytesIO()
    image.save(out, format=fmt, **save_kwargs)
    return out.getvalue()


@pytest.fixture
def jpeg_bytes():
    return make_image_bytes()


# --- Clinician review (admin) ------------------------------------------------------------------

# Plausible classifier outputs by risk band, for rows the admin tests create directly.
PROBABILITIES_FOR_RISK = {
    "high": {"akiec": 0.04, "bcc": 0.06, "bkl": 0.05, "df": 0.01, "mel": 0.62, "nv": 0.2, "vasc": 0.02},
    "medium": {"akiec": 0.05, "bcc": 0.2, "bkl": 0.1, "df": 0.02, "mel": 0.1, "nv": 0.5, "vasc": 0.03},
    "low": {"akiec": 0.01, "bcc": 0.02, "bkl": 0.04, "df": 0.01, "mel": 0.02, "nv": 0.88, "vasc": 0.02},
}


@pytest.fixture
def reviewer(db):
    from diagnoses import services

    return services.reviewer_create(username="dr-reviewer", email="dr@example.com", password="a long clinic secret")


def pass_second_step(client, user):
    """Sign a test client's session through the staff's second sign-in step, as if a code from
    a confirmed authenticator app had been entered (accounts.views.two_step)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name="Test phone", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


@pytest.fixture
def reviewer_client(reviewer):
    from django.test import Client

    browser = Client()
    browser.force_login(reviewer)
    pass_second_step(browser, reviewer)
    return browser


@pytest.fixture
def admin_client(client, admin_user):
    """pytest-django's admin_client, through the second sign-in step the admin asks of staff."""
    client.force_login(admin_user)
    pass_second_step(client, admin_user)
    return client


def row_colour(n: int) -> tuple[int, int, int]:
    """A skin tone of its own for the n-th row a test makes (400 before one repeats), so that
    comparing the bytes served with a row's stored files tells rows apart. Row 0 has
    make_image_bytes' colour; none is darker, so the photo check (ml.quality) passes them all."""
    return 180 + 3 * (n % 20), 120 + 3 * (n // 20 % 20), 90


@pytest.fixture
def make_diagnosis(db):
    """Create a Diagnosis row with real stored JPEGs: done with a given risk band, or another
    status. Each row's photo, thumbnail and heatmap differ from every other row's (row_colour)."""
    import itertools
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.utils import timezone

    from diagnoses.models import Diagnosis
    from ml import MALIGNANT

    rows = itertools.count()

    def make(owner, *, risk="low", status="done", mole=None, age_days=0, model_version="test-model-1"):
        colour = row_colour(next(rows))
        diagnosis = Diagnosis(owner=owner, mole=mole, sha256="0" * 64, status=status)
        diagnosis.image.save("photo.jpg", ContentFile(make_image_bytes(colour=colour)), save=False)
        thumbnail = make_image_bytes(size=(64, 48), colour=colour)
        diagnosis.thumbnail.save("thumb.jpg", ContentFile(thumbnail), save=False)
        if status == Diagnosis.Status.DONE:
            probabilities = PROBABILITIES_FOR_RISK[risk]
            heatmap = make_image_bytes(fmt="PNG", colour=colour)
            diagnosis.heatmap.save("heat.png", ContentFile(heatmap), save=False)
            diagnosis.probabilities = probabilities
            diagnosis.malignant_probability = sum(probabilities[code] for code in MALIGNANT)
            diagnosis.predicted_class = max(probabilities, key=probabilities.get)
            diagnosis.risk = risk
            diagnosis.model_version = model_version
            diagnosis.finished_at = timezone.now()
        diagnosis.save()
        if age_days:
            created_at = timezone.now() - timedelta(days=age_days)
            Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=created_at, queued_at=created_at)
            diagnosis.created_at = created_at
        return diagnosis

    return make


# --- REST API ----------------------------------------------------------------------------------


def set_throttle_rate(settings, scope, rate):
    """Set one of REST_FRAMEWORK's throttle rates (uploads, token, shared) for a test."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], scope: rate},
    }


def token_client(user=None):
    """A DRF test client, signed in with an API token when given a user."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    api = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api


@pytest.fixture
def api_client(db):
    """An anonymous API client."""
    return token_client()


@pytest.fixture
def owner_api(api_client, owner):
    return token_client(owner)


@pytest.fixture
def outsider_api(api_client, outsider):
    return token_client(outsider)


def migrate_to(target, connection=None):
    """Migrates the test database (or connection's) to target, an (app, migration) pair; returns
    the models as they were there."""
    from django.db import connection as default_connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection or default_connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def migrate_to_latest(connection=None):
    from django.db import connection as default_connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection or default_connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def latest_schema_after():
    """Whatever a test does, the database goes back to the latest migrations."""
    yield
    migrate_to_latest()
