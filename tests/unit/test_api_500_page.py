"""The bare 500 page (diagnoses.api.errors.BARE_SERVER_ERROR_PAGE, when the site's own 500 page
cannot be rendered either) is titled as it is headed, as templates/500.html is."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_bare_500_page_is_titled_as_it_is_headed(settings, tmp_path):
    # Without collectstatic and with DEBUG off, base.html's stylesheet cannot be named: the page
    # fails, and so does the 500 page built on base.html (as in test_log_privacy).
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "never-collected"
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
    response = Client(raise_request_exception=False).get("/privacy/")

    page = response.content.decode()
    assert response.status_code == 500 and "<!doctype html>" in page  # the bare page, not base.html's
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    (heading,) = re.findall(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    assert title == f"{heading} · molesite" == "Something went wrong on our side · molesite"
