"""Redis down while the site serves: the rate limits, kept in the cache, let requests through
rather than answer 500, so that an upload is stored and queued for when Redis is back. The
cache is the served one (the settings' RedisCache and its options) pointed at a closed port."""

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from diagnoses import tasks, throttles
from diagnoses.models import Diagnosis
from tests.conftest import ask_for_password_reset
from tests.unit.test_settings_production import production, settings_of

pytestmark = pytest.mark.django_db

CLOSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused at once


@pytest.fixture(scope="module")
def served_caches(tmp_path_factory):
    """settings.CACHES as a served site reads it (REDIS_URL set), with Redis unreachable."""
    tmp_path = tmp_path_factory.mktemp("served")
    return settings_of(tmp_path, ["CACHES"], **production(REDIS_URL=CLOSED_PORT))["CACHES"]


@pytest.fixture
def redis_down(served_caches):
    with override_settings(CACHES=served_caches):
        yield


@pytest.fixture
def sent(monkeypatch):
    """The classification tasks queued (the broker is another matter: it is up here)."""
    queued = []
    monkeypatch.setattr(tasks.classify_diagnosis, "delay", queued.append)
    return queued


def photo(data):
    return SimpleUploadedFile("mole.jpg", data, content_type="image/jpeg")


def cache_warnings(caplog):
    return [r for r in caplog.records if r.name == throttles.logger.name and r.levelname == "WARNING"]


def test_the_served_cache_gives_up_on_redis_within_seconds(served_caches):
    assert served_caches["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert served_caches["default"]["OPTIONS"] == {"socket_connect_timeout": 2, "socket_timeout": 2}


def test_an_upload_form_post_is_stored_and_queued_with_redis_down(
        redis_down, owner_client, jpeg_bytes, sent, caplog, django_capture_on_commit_callbacks):
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("diagnoses:new"), {"image": photo(jpeg_bytes)})

    diagnosis = Diagnosis.objects.get()
    assert response.status_code == 302 and response["Location"] == diagnosis.get_absolute_url()
    assert diagnosis.status == Diagnosis.Status.QUEUED and sent == [str(diagnosis.pk)]
    assert len(cache_warnings(caplog)) == 1  # one line per request, not one per cache call


def test_an_api_upload_is_stored_and_queued_with_redis_down(
        redis_down, owner_api, jpeg_bytes, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.post("/api/v1/diagnoses/", {"image": photo(jpeg_bytes)}, format="multipart")

    assert response.status_code == 202
    assert sent == [str(Diagnosis.objects.get().pk)]


def test_a_shared_report_opens_with_redis_down(redis_down, client, owner, make_diagnosis, caplog):
    from diagnoses import services

    _, token = services.share_link_create(diagnosis=make_diagnosis(owner), days=7)
    with caplog.at_level(logging.WARNING):
        response = client.get(reverse("shared_report", args=[token]))

    assert response.status_code == 200
    assert len(cache_warnings(caplog)) == 1


def test_sign_in_and_a_shared_reports_images_work_with_redis_down(redis_down, client, owner, make_diagnosis):
    from diagnoses import services

    _, token = services.share_link_create(diagnosis=make_diagnosis(owner), days=7)
    assert client.get(reverse("shared_file", args=[token, "image"])).status_code == 200
    assert client.get(reverse("shared_file", args=["a-guess", "image"])).status_code == 404
    response = client.post(reverse("login"), {"username": "patient", "password": "correct horse battery"})
    assert response.status_code == 302


def test_a_token_request_is_answered_with_redis_down(redis_down, api_client, owner):
    response = api_client.post("/api/v1/auth/token/", {"username": "patient", "password": "correct horse battery"})

    assert response.status_code == 200 and response.json()["token"]


def test_a_password_reset_is_sent_with_redis_down(redis_down, client, owner, mailoutbox, caplog):
    from accounts import views as account_views

    with caplog.at_level(logging.WARNING):
        response = ask_for_password_reset(client, owner.email)

    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert [m.to for m in mailoutbox] == [[owner.email]]
    assert [r.levelname for r in caplog.records if r.name == account_views.logger.name] == ["WARNING"]
