"""Production settings, read as a server reads them: in a fresh process, from environment
variables (settings are evaluated once, at import)."""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
# env.str("NAME"...), env.db("NAME"...), and the settings' own helpers env_bool("NAME"...) etc.
READ_BY_SETTINGS = re.compile(r"""\benv(?:\.\w+|_\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def env_example_values() -> dict:
    """The active NAME=value lines of .env.example: its production profile."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def documented_variables() -> set:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def run_django(args, tmp_path, **variables):
    """Run python with a clean configuration: only `variables`, none of the test run's own
    (a variable given as None is left unset)."""
    env = {k: v for k, v in os.environ.items() if k not in documented_variables() and k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="molesite.settings", VAR_DIR=str(tmp_path / "var"), **variables)
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def settings_of(tmp_path, names, **variables) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings;"
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}))"
    )
    out = run_django(["-c", code], tmp_path, **variables)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def production(**more) -> dict:
    return {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "molesite.example.org",
            "SITE_URL": "https://molesite.example.org",
            "DEFAULT_FROM_EMAIL": "molesite <noreply@molesite.example.org>", **more}


def test_it_refuses_to_start_in_production_without_a_site_url(tmp_path):
    """Every link in an e-mail starts with SITE_URL: without it, reset links would go to the
    local default, 127.0.0.1."""
    out = run_django(["manage.py", "check"], tmp_path, **production(SITE_URL=None))

    assert out.returncode != 0
    assert "SITE_URL must be set when DEBUG is off" in out.stderr


def test_it_refuses_to_start_in_production_without_a_secret_key(tmp_path):
    out = run_django(["manage.py", "check"], tmp_path, DEBUG="false")
    assert out.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off" in out.stderr


def test_it_passes_the_deploy_check_with_the_production_profile_of_env_example(tmp_path):
    variables = {**env_example_values(), "SECRET_KEY": secrets.token_urlsafe(50)}
    variables.pop("POSTGRES_PASSWORD")  # read by docker compose, not by the settings
    out = run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, **variables)
    assert out.returncode == 0, out.stderr
    assert "no issues" in out.stdout


def test_it_leaves_only_the_https_redirect_to_the_operator_by_default(tmp_path):
    """Everything but SECURE_SSL_REDIRECT is production-safe by default; that one would break
    plain-HTTP use (tests, a first look on a LAN), so .env.example turns it on instead."""
    out = run_django(["manage.py", "check", "--deploy"], tmp_path, **production())
    assert set(re.findall(r"\(security\.(\w+)\)", out.stderr + out.stdout)) == {"W008"}


SMTP_URL = "smtp+tls://molesite:secret@smtp.example.org:587"
SITE = {"SITE_URL": "https://molesite.example.org"}


def molesite_warnings(tmp_path, **variables) -> set:
    out = run_django(["manage.py", "check", "--deploy"], tmp_path, **variables)
    return set(re.findall(r"\((molesite\.\w+)\)", out.stderr + out.stdout))


def test_the_deploy_check_warns_of_e_mails_printed_into_the_logs_in_production(tmp_path):
    """The console backend prints a password reset's working link into `docker compose logs`."""
    locmem = "django.core.mail.backends.locmem.EmailBackend"
    assert molesite_warnings(tmp_path, **production(**SITE)) == {"molesite.W001"}
    in_memory = production(**SITE, EMAIL_BACKEND=locmem)
    assert molesite_warnings(tmp_path, **in_memory) == {"molesite.W001"}
    assert molesite_warnings(tmp_path, **production(**SITE, EMAIL_URL=SMTP_URL)) == set()
    assert molesite_warnings(tmp_path, DEBUG="true") == set()


@pytest.mark.parametrize(
    "allowed_hosts, warned",
    [
        ("molesite.example.org", False),
        (".example.org", False),
        ("*", False),
        ("other.example.org", True),
    ],
)
def test_the_deploy_check_warns_of_a_site_url_the_site_refuses(tmp_path, allowed_hosts, warned):
    """The links in the e-mails start with SITE_URL: its host must be an allowed one."""
    variables = production(**SITE, EMAIL_URL=SMTP_URL, ALLOWED_HOSTS=allowed_hosts)
    assert molesite_warnings(tmp_path, **variables) == ({"molesite.W002"} if warned else set())


@pytest.mark.parametrize(
    "sender, warned",
    [
        (None, True),  # the default, molesite <noreply@localhost>
        ("noreply@molesite", True),
        ("molesite <noreply@mail.localhost>", True),
        ("noreply@molesite.example.org", False),
        ("molesite <noreply@molesite.example.org>", False),
    ],
)
def test_the_deploy_check_warns_of_a_sender_on_no_real_mail_domain(tmp_path, sender, warned):
    """Mail servers refuse a sender on localhost, or take its e-mails for spam."""
    variables = production(**SITE, EMAIL_URL=SMTP_URL, DEFAULT_FROM_EMAIL=sender)
    assert molesite_warnings(tmp_path, **variables) == ({"molesite.W003"} if warned else set())
    assert molesite_warnings(tmp_path, DEBUG="true", DEFAULT_FROM_EMAIL=sender) == set()


def test_it_gives_smtp_a_timeout_read_from_the_environment(tmp_path):
    """A mail server that accepts and never answers must not block the worker forever; an
    EMAIL_URL does not unset it (django-environ puts its ?timeout= into OPTIONS)."""
    code = ("import django; django.setup(); from django.core.mail import get_connection;"
            "print(get_connection('django.core.mail.backends.smtp.EmailBackend').timeout)")
    default = run_django(["-c", code], tmp_path, **production(EMAIL_URL=SMTP_URL))
    assert default.returncode == 0, default.stderr
    assert default.stdout.split()[-1] == "10"
    variables = production(EMAIL_URL=SMTP_URL, EMAIL_TIMEOUT="30")
    assert settings_of(tmp_path, ["EMAIL_TIMEOUT"], **variables) == {"EMAIL_TIMEOUT": 30}


def test_a_hung_task_is_killed_before_its_diagnosis_counts_as_orphaned():
    """Hard limits only (a soft one would be caught by the classification's `except Exception`);
    a killed classification stays "running" for diagnoses_recover_lost, which takes it over
    after STALE_RUNNING_AFTER: the limit must end the task before then."""
    import accounts.tasks
    import diagnoses.tasks
    from django.conf import settings

    from diagnoses.services import STALE_RUNNING_AFTER

    assert getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", None) is None
    assert settings.CELERY_TASK_TIME_LIMIT == 300 < STALE_RUNNING_AFTER.total_seconds()
    assert diagnoses.tasks.classify_diagnosis.time_limit == 300
    assert accounts.tasks.send_password_reset_mail.time_limit == 300
    assert diagnoses.tasks.send_photo_reminders.time_limit == 3600  # a batch of e-mails
    assert diagnoses.tasks.send_review_queue_digest.time_limit == 3600


def test_it_defaults_to_secure_cookies_and_hsts_without_debug(tmp_path):
    names = ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT",
             "SECURE_PROXY_SSL_HEADER"]
    assert settings_of(tmp_path, names, **production()) == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    debug = settings_of(tmp_path, names, DEBUG="true")
    assert not debug["SESSION_COOKIE_SECURE"] and debug["SECURE_HSTS_SECONDS"] == 0


def test_it_trusts_the_proxy_header_and_keeps_old_keys_only_when_told(tmp_path):
    found = settings_of(
        tmp_path, ["SECURE_PROXY_SSL_HEADER", "SECRET_KEY_FALLBACKS"],
        **production(BEHIND_PROXY="true", SECRET_KEY_FALLBACKS="old-key-1,old-key-2"),
    )
    assert found == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECRET_KEY_FALLBACKS": ["old-key-1", "old-key-2"],
    }


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("SECURE_COOKIES", "ture", "SECURE_COOKIES must be true or false, not 'ture'"),
        ("DEBUG", "ture", "DEBUG must be true or false, not 'ture'"),
        ("CONN_MAX_AGE", "60s", "CONN_MAX_AGE must be a whole number, not '60s'"),
        ("MAX_REQUEST_BYTES", "25MB", "MAX_REQUEST_BYTES must be a whole number, not '25MB'"),
        ("MAX_REQUEST_BYTES", "1000", "MAX_REQUEST_BYTES must be at least 1048576, not 1000"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or plain, not 'xml'"),
        ("SITE_URL", "molesite.example.org", "SITE_URL must be an address like https://molesite.example.org"),
        ("DAILY_EMAILS_HOUR", "24", "DAILY_EMAILS_HOUR must be an hour of the day, 0 to 23, not 24"),
        ("DAILY_EMAILS_HOUR", "9am", "DAILY_EMAILS_HOUR must be a whole number, not '9am'"),
        ("EMAIL_TIMEOUT", "10s", "EMAIL_TIMEOUT must be a whole number, not '10s'"),
        ("EMAIL_TIMEOUT", "0", "EMAIL_TIMEOUT must be at least 1, not 0"),
        ("SESSION_HOURS", "0", "SESSION_HOURS must be at least 1, not 0"),
    ],
)
def test_it_refuses_to_start_with_a_bad_value(tmp_path, name, value, message):
    out = run_django(["manage.py", "check"], tmp_path, **production(**{name: value}))
    assert out.returncode != 0
    assert f"ImproperlyConfigured: {message}" in out.stderr


def test_it_takes_the_log_level_in_any_case_and_refuses_an_unknown_one(tmp_path):
    """LOG_LEVEL=info is INFO; a level logging does not know is refused with a message that names
    the variable, as the other settings' are, not with logging's traceback at start."""
    for value, level in [("info", "INFO"), ("Warning", "WARNING"), ("DEBUG", "DEBUG")]:
        logging = settings_of(tmp_path, ["LOGGING"], **production(LOG_LEVEL=value))["LOGGING"]
        assert logging["root"]["level"] == level, value

    out = run_django(["manage.py", "check"], tmp_path, **production(LOG_LEVEL="verbose"))
    assert out.returncode != 0
    assert ("ImproperlyConfigured: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
            "not 'verbose'.") in out.stderr


def settings_copy(tmp_path, names) -> str:
    """Code that runs a copy of the settings in tmp_path, so that the .env beside it is the
    test's own, and prints `names`' values as JSON."""
    (tmp_path / "molesite").mkdir()
    shutil.copy(ROOT / "molesite" / "settings.py", tmp_path / "molesite" / "settings.py")
    copy = tmp_path / "molesite" / "settings.py"
    return (f"import json, runpy; s = runpy.run_path({str(copy)!r});"
            f"print(json.dumps({{n: s.get(n) for n in {list(names)!r}}}))")


def test_the_environment_wins_over_the_env_file_beside_manage_py(tmp_path):
    """As .env.example promises: `make run` sets DEBUG=true over a production .env (the deploy
    steps' copy of .env.example), which fills in only what the environment leaves unset."""
    code = settings_copy(tmp_path, ["DEBUG", "TIME_ZONE"])
    (tmp_path / ".env").write_text("DEBUG=false\nTIME_ZONE=Europe/Paris\n")

    out = run_django(["-c", code], tmp_path, DEBUG="true", MOLESITE_ENV_FILE=None)

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"DEBUG": True, "TIME_ZONE": "Europe/Paris"}


PRODUCTION_ENV_FILE = ("SECURE_SSL_REDIRECT=true\nALLOWED_HOSTS=molesite.example.org\n"
                       f"EMAIL_URL={SMTP_URL}\nTIME_ZONE=Europe/Paris\n")
FROM_THE_FILE = ["SECURE_SSL_REDIRECT", "ALLOWED_HOSTS", "EMAIL_HOST", "TIME_ZONE"]


def test_the_tests_read_no_env_file_beside_manage_py(tmp_path):
    """A production .env in the checkout (the deploy steps' copy of .env.example) would turn on
    the HTTPS redirect, refuse the test client's host and send e-mails through the clinic's
    server: the tests' environment (pytest.ini) names no file, MOLESITE_ENV_FILE=""."""
    assert os.environ["MOLESITE_ENV_FILE"] == ""
    code = settings_copy(tmp_path, FROM_THE_FILE)
    (tmp_path / ".env").write_text(PRODUCTION_ENV_FILE)

    out = run_django(["-c", code], tmp_path, DEBUG="true")

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {
        "SECURE_SSL_REDIRECT": False,
        "ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"],
        "EMAIL_HOST": None,
        "TIME_ZONE": "UTC",
    }


def test_molesite_env_file_names_the_file_to_read_and_refuses_a_missing_one(tmp_path):
    code = settings_copy(tmp_path, FROM_THE_FILE)
    (tmp_path / "production.env").write_text(PRODUCTION_ENV_FILE)
    (tmp_path / ".env").write_text("TIME_ZONE=Europe/Berlin\n")

    out = run_django(["-c", code], tmp_path, DEBUG="true", MOLESITE_ENV_FILE="production.env")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {
        "SECURE_SSL_REDIRECT": True,
        "ALLOWED_HOSTS": ["molesite.example.org"],
        "EMAIL_HOST": "smtp.example.org",
        "TIME_ZONE": "Europe/Paris",
    }

    missing = run_django(["-c", code], tmp_path, DEBUG="true", MOLESITE_ENV_FILE="prod.env")
    assert missing.returncode != 0
    assert "ImproperlyConfigured: MOLESITE_ENV_FILE names no file" in missing.stderr


def test_it_logs_one_json_object_per_line_on_stdout(tmp_path):
    code = (
        "import logging, django; django.setup();"
        "logging.getLogger('molesite.test').warning('queued %s', 'abc', extra={'diagnosis_id': 'abc'})"
    )
    out = run_django(["-c", code], tmp_path, **production())
    assert out.returncode == 0, out.stderr
    entry = json.loads(out.stdout.splitlines()[-1])
    assert entry["level"] == "WARNING" and entry["logger"] == "molesite.test"
    assert entry["message"] == "queued abc" and entry["diagnosis_id"] == "abc"
    assert entry["time"].endswith("+00:00")


def test_it_documents_every_variable_the_settings_and_compose_file_read():
    read = set(READ_BY_SETTINGS.findall((ROOT / "molesite" / "settings.py").read_text()))
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "POSTGRES_PASSWORD", "PORT"} <= read
    assert read - documented_variables() == set()
