"""What reaches the logs when things go wrong: no e-mail address from a mail server's refusal,
one access-log line for a 500 while the session store is down, and a 500 page even when the
site's own cannot be rendered."""

import copy
import json
import logging.config
import smtplib

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import Client

REFUSED = "bob.new@example.org"


def formatter(name):
    # a copy: configuring a formatter pops its "()" from the dict it is given
    return logging.config.DictConfigurator(settings.LOGGING).configure_formatter(
        copy.deepcopy(settings.LOGGING["formatters"][name]))


@pytest.mark.parametrize("name", ["plain", "json"])
def test_no_log_line_holds_an_e_mail_address_the_mail_server_refused(name):
    """smtplib's refusal is an OSError the e-mail tasks retry: its text names the address, and
    Celery's retry lines and the final traceback repeat it."""
    refusal = smtplib.SMTPRecipientsRefused({REFUSED: (550, f"5.1.1 <{REFUSED}>: no such user".encode())})
    try:
        raise refusal
    except smtplib.SMTPRecipientsRefused:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("celery.app.trace", logging.INFO, "", 0, "Retry in 60s: %r",
                               (refusal,), exc_info)
    record.data = {"exc": repr(refusal)}  # Celery passes its fields as an extra

    line = formatter(name).format(record)

    assert REFUSED not in line
    assert "SMTPRecipientsRefused" in line and "<e-mail>" in line
    if name == "json":
        assert json.loads(line)["level"] == "INFO"  # still one JSON object


@pytest.mark.parametrize("name", ["plain", "json"])
@pytest.mark.parametrize("address", ["hans@müller.de", "first.last+tag@sub.example.co.uk"])
def test_no_log_line_holds_an_address_with_a_non_ascii_letter_or_subdomains(name, address):
    record = logging.LogRecord("accounts", logging.INFO, "", 0, "sent to %s", (address,), None)
    line = formatter(name).format(record)
    assert address not in line and "sent to <e-mail>" in line


@pytest.mark.parametrize("name", ["plain", "json"])
@pytest.mark.parametrize("kept", ["celery@worker1 ready.", "celery@ip-10-0-0-5.ec2.internal ready.",
                                  "connecting to postgres@127.0.0.1",
                                  "GET /search/?q=a=?b?=c 200"])  # no encoded word before an @
def test_a_workers_name_or_a_host_is_not_taken_for_an_e_mail_address(name, kept):
    record = logging.LogRecord("celery", logging.INFO, "", 0, kept, (), None)
    assert kept in formatter(name).format(record)


@pytest.mark.django_db
def test_a_500_while_the_session_store_is_down_is_logged_once_with_its_headers(monkeypatch, caplog):
    """The view fails on the session; the access log asked for the user again and failed too,
    so Django answered a fresh 500 past the inner middleware, logged twice and unlogged."""
    caplog.set_level("INFO")

    def database_down(self):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr("django.contrib.sessions.backends.db.SessionStore.load", database_down)
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = "x" * 32

    response = client.get("/about/model/")

    assert response.status_code == 500
    assert "Content-Security-Policy" in response.headers
    assert "no-store" in response.headers["Cache-Control"]
    requests = [r for r in caplog.records if r.name == "molesite.request"]
    assert [(r.path, r.status, r.user_id) for r in requests] == [("/about/model/", 500, None)]
    assert len([r for r in caplog.records if r.name == "django.request" and r.levelname == "ERROR"]) == 1


@pytest.mark.django_db
def test_the_500_page_falls_back_to_a_bare_one_when_its_own_cannot_be_rendered(settings, tmp_path,
                                                                              caplog):
    """Without collectstatic and with DEBUG off, the manifest storage cannot name base.html's
    stylesheet: the page fails, and so would the 500 page built on base.html."""
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "never-collected"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    response = Client(raise_request_exception=False).get("/privacy/")

    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content
    assert "Content-Security-Policy" in response.headers
    assert any(r.getMessage() == "the 500 page could not be rendered" for r in caplog.records)
