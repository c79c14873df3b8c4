"""molesite settings: one module, configured only from environment variables.

Defaults are the embedded mode (SQLite, media on disk, Celery over kombu's filesystem
transport) and are safe for production: DEBUG is off unless set, and without DEBUG a
SECRET_KEY is required.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env beside manage.py fills in only what the environment leaves unset (read_env never
# overwrites), as .env.example promises: `make run`'s DEBUG=true wins over a production .env.
# MOLESITE_ENV_FILE names another file (relative to BASE_DIR), or, empty, none: the tests and
# the benchmarks set it empty, so that a production .env in the checkout (SECURE_SSL_REDIRECT,
# ALLOWED_HOSTS, EMAIL_URL) does not leak into them. Read from the environment only.
ENV_FILE = os.environ.get("MOLESITE_ENV_FILE", ".env").strip()
if ENV_FILE:
    if (BASE_DIR / ENV_FILE).is_file():
        env.read_env(str(BASE_DIR / ENV_FILE))
    elif "MOLESITE_ENV_FILE" in os.environ:  # named, not the default: a typo must not go unseen
        raise ImproperlyConfigured(f"MOLESITE_ENV_FILE names no file: {BASE_DIR / ENV_FILE}.")


def env_bool(name: str, default: bool) -> bool:
    """A yes/no variable; a typo ("ture") is an error, never a silent False."""
    value = env.str(name, default="").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value = env.str(name, default="").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
    return number


# Runtime state of the embedded mode (database, broker queue, private media) lives here.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
        )
    SECRET_KEY = "django-insecure-local-development-only"
# Rotating the key: put the old one here for a while, so sessions and signed links survive.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The site's own page for a form that expired (diagnoses.api.errors.csrf_failure)
CSRF_FAILURE_VIEW = "diagnoses.api.errors.csrf_failure"

# HTTPS is terminated by a reverse proxy in front of gunicorn. Trust its X-Forwarded-Proto
# only when told there is one (the proxy must overwrite the header a client sends).
BEHIND_PROXY = env_bool("BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Off by default so plain-HTTP local runs and tests work; .env.example turns it on.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=not DEBUG)
# HSTS is only ever sent over HTTPS, so a production default costs plain-HTTP use nothing.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)

INSTALLED_APPS = [
    "accounts.admin_site.ClinicAdminConfig",  # django.contrib.admin, behind the second sign-in step
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "molesite.apps.SignInLockoutsConfig",  # axes, named for the admin index
    "django_otp",
    "molesite.apps.AuthenticatorAppsConfig",  # django_otp.plugins.otp_totp
    # django_otp.plugins.otp_static: one-time recovery codes, manage.py addstatictoken USERNAME
    "molesite.apps.RecoveryCodesConfig",
    "accounts",
    "diagnoses",
    "molesite.apps.MolesiteConfig",  # molesite.checks: deploy checks of e-mail and SITE_URL
]

MIDDLEWARE = [
    "molesite.middleware.healthz",  # before host checks and the HTTPS redirect: probes use IPs
    "molesite.middleware.access_log",
    "molesite.middleware.request_size_limit",  # before anything reads the body
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "molesite.middleware.no_store",  # below WhiteNoise: static files keep their caching
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): passed the second step
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.PrivacyAgreementMiddleware",  # after the user is known
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a refused sign-in into the lockout answer
]

ROOT_URLCONF = "molesite.urls"
WSGI_APPLICATION = "molesite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: Postgres in served mode via DATABASE_URL, SQLite in the embedded default.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker write concurrently: WAL plus IMMEDIATE transactions avoid
    # "database is locked" errors under that light concurrency.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT compilation: the review queue orders every case by per-row subqueries, whose
    # estimated cost grows with the table; past jit_optimize_above_cost (about 10,000 cases)
    # Postgres spent 1.0-1.5 s compiling a query that runs in 0.2 s (bench/bench_queue.py).
    # Added to any options DATABASE_URL gives (?options=-c statement_timeout=…).
    database_options = DATABASES["default"].setdefault("OPTIONS", {})
    database_options["options"] = f'{database_options.get("options", "")} -c jit=off'.strip()
DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Content-Security-Policy (django-csp) on every response: the site loads scripts, styles,
# fonts and images from itself only (no CDN), runs no inline script, and is never framed, so
# a script injected into a page, should escaping ever fail, would not run. Inline style
# attributes stay allowed for the bars whose width is a probability; the data: and blob:
# images are Bootstrap's icons and the upload preview.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Sign-in lockout (django-axes, accounts/lockout.py): after LOGIN_FAILURE_LIMIT wrong passwords
# for one username from one client address, that pair is refused for LOGIN_LOCKOUT_MINUTES, on
# the sign-in page, the admin's and POST /api/v1/auth/token/. Locking the pair, not the
# username alone, keeps a stranger from locking a patient out; a correct sign-in or a password
# reset clears the count. Failures are kept in the database, so all web processes share them.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", default=5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", default=15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # "try again in 15 minutes" stays true
AXES_DISABLE_ACCESS_LOG = True  # no log of every sign-in: less personal data kept
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
AXES_USERNAME_CALLABLE = "accounts.lockout.attempted_username"
# Fields axes masks in the failed attempt it keeps (post_data, shown in the admin): the
# password change's and the account deletion's password checks go through authenticate() too.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "password", "old_password", "new_password1",
                             "new_password2"]
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
LOGIN_URL = "login"
# Staff (clinicians, administrators) reach /admin/ only after a second sign-in step, a code
# from an authenticator app; patients' sign-in is unchanged.
STAFF_REQUIRE_2FA = env_bool("STAFF_REQUIRE_2FA", default=True)
OTP_TOTP_ISSUER = "molesite"  # the name authenticator apps show beside the codes
# The admin's device pages show no secret key, QR code or recovery code: whoever could read one
# could sign in as that clinician, their openings recorded under the clinician's name.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# A sign-in, and a staff member's second step with it, lasts SESSION_HOURS from the session's
# last change (the sign-in, mostly), not Django's two weeks: a clinic's shared computer must not
# stay signed in to patients' photos for days. The cookie is not renewed on every request
# (SESSION_SAVE_EVERY_REQUEST would cost a database write each time).
SESSION_COOKIE_AGE = env_int("SESSION_HOURS", default=12, minimum=1) * 3600
LOGIN_REDIRECT_URL = "diagnoses:list"
LOGOUT_REDIRECT_URL = "home"

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
if env.str("EMAIL_URL", default=""):
    # e.g. smtp+tls://user:password@smtp.example.org:587 — sets the backend, host, port, user, TLS.
    vars().update(env.email_url("EMAIL_URL"))
# Seconds an SMTP connect, send or answer may take: without it, a mail server that accepts the
# connection and never answers blocks the worker (one process, shared with the classifications)
# and the e-mail-change page forever. EMAIL_URL's "?timeout=" would land in an unused OPTIONS.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", default=10, minimum=1)
# E-mails with a link (password reset, confirming a new address) to one address per hour.
LINK_EMAILS_PER_HOUR = env_int("LINK_EMAILS_PER_HOUR", default=3, minimum=1)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="molesite <noreply@localhost>")
# How patients reach the clinic that runs the site, as free text (a name, a telephone number, an
# address): the e-mails come from a no-reply sender, so the privacy page and the notice to a
# replaced e-mail address name it. Empty: they say "the clinic that runs this site" alone.
CLINIC_CONTACT = env.str("CLINIC_CONTACT", default="").strip()
# The address patients open the site at, for every link in an e-mail: the worker's (it has no
# request to take the host from) and the web's (password reset, a new address), never the
# request's Host, which the client sets. Required when DEBUG is off, as SECRET_KEY: the local
# default would send patients reset links to 127.0.0.1.
if not DEBUG and not env.str("SITE_URL", default="").strip():
    raise ImproperlyConfigured(
        "SITE_URL must be set when DEBUG is off: the address patients open the site at, e.g. "
        "https://molesite.example.org (the links in e-mails start with it)."
    )
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").strip().rstrip("/")
_site = urlsplit(SITE_URL)
if _site.scheme not in {"http", "https"} or not _site.netloc:
    raise ImproperlyConfigured(f"SITE_URL must be an address like https://molesite.example.org, not {SITE_URL!r}.")

LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["molesite.formats"]  # "3 Dec 2026, 07:29" everywhere, the admin too
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# Static files are served by WhiteNoise (no CDN: the site must work offline).
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]

# Patient images are private: stored on disk outside any public URL and served only by
# views that check ownership. No MEDIA_URL route exists.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# A name missing from the manifest is hashed from the file in STATIC_ROOT, not refused (the
# tests swap the storage). Without DEBUG the files must be there: run collectstatic first, as
# the Docker image does; otherwise every page fails on its stylesheet (the 500 page falls back
# to a bare one: diagnoses.api.errors.server_error).
WHITENOISE_MANIFEST_STRICT = False
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", default=True)

# Uploads: the service refuses anything larger; this only bounds what is held in memory.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler",
                        "molesite.uploads.TemporaryFileWithShortName"]
# Whole request bodies above this are refused with 413 before Django reads them (a photo
# plus multipart overhead); non-file fields stay under Django's DATA_UPLOAD_MAX_MEMORY_SIZE.
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", default=25 * 1024 * 1024, minimum=1024 * 1024)

# Celery: Redis in served mode, kombu's filesystem transport (no server) by default.
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED_BROKER_FOLDERS = ()
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Redis hands an unacknowledged task (acks_late) to another worker after visibility_timeout:
    # above the daily e-mail batches' hour (CELERY_TASK_ANNOTATIONS), so none runs twice at once.
    # Socket timeouts (seconds) on the broker's connection too: a Redis that accepts connections
    # and then never answers would otherwise hold an upload's queueing until gunicorn's timeout.
    # With them, queueing gives up after about 5 s (kombu's OperationalError), the photo stays and
    # diagnoses_recover_lost queues it later. 5 s is above the worker's 1 s BRPOP poll.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600,
                                       "socket_timeout": 5, "socket_connect_timeout": 2}
    # Short socket timeouts (seconds, redis-py's connection pool options): a Redis that is down
    # or hangs costs the cache two seconds, after which the rate limits let it through
    # (diagnoses.throttles), rather than holding the web process for the kernel's TCP timeouts.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}}
else:
    BROKER_DIR = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # kombu otherwise writes its control files into the current directory.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The worker looks for new tasks this often (seconds): a result a patient waits for.
        "polling_interval": 0.2,
    }
    EMBEDDED_BROKER_FOLDERS = (BROKER_DIR / "queue", BROKER_DIR / "processed", BROKER_DIR / "control")
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A task that hangs (a stuck model call, a network read without timeout) would hold the worker
# and the queue behind it: after CELERY_TASK_TIME_LIMIT seconds its process is killed. A hard
# limit only: a soft one raises SoftTimeLimitExceeded, an Exception, which the classification's
# broad `except Exception` would report as "something went wrong", and which the mail tasks
# would neither retry nor use to give a claimed reminder back. Killed, the task is acknowledged
# and its diagnosis stays "running": diagnoses_recover_lost queues it again after
# STALE_RUNNING_AFTER (10 minutes), or fails it with MESSAGE_STOPPED after two attempts. The
# limit stays below those 10 minutes, so that no row is taken over while a worker is still on
# it, and far above the seconds a classification or an e-mail (EMAIL_TIMEOUT) takes.
CELERY_TASK_TIME_LIMIT = 300
# The daily e-mails are batches, an e-mail per patient due: an hour for them. Killed, a batch
# leaves the rest to the next day's run, which sends what has not gone out (the reminder being
# sent at that moment counts as gone out).
CELERY_TASK_ANNOTATIONS = {
    task: {"time_limit": 3600}
    for task in ("diagnoses.tasks.send_photo_reminders", "diagnoses.tasks.send_review_queue_digest")
}
# Two queues, so that no photo waits behind an e-mail: "celery" (the default) for the
# classifications and the short upkeep (the check for lost photos, the deletion of ended
# sessions), served by the workers that hold the model; "mail" for every task that sends e-mail
# (the daily batches, which may take up to their hour with a slow mail server, the review
# notices, the password resets), served in docker-compose.yml by the `mailer` service. `make run`'s
# one worker consumes both (Procfile: -Q celery,mail), as does a worker started without -Q: both
# are declared here. A new task goes to "celery" unless named below (tests/unit/test_mail_queue.py
# makes each new task choose). Each queue with the exchange and routing key of its own name, as
# Celery declares the default queue and one it creates for a route: tasks queued by a version
# before this split stay where they are, and run.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name), routing_key=name) for name in ("celery", "mail"))
MAIL_TASKS = (
    "diagnoses.tasks.send_photo_reminders",
    "diagnoses.tasks.send_review_queue_digest",
    "diagnoses.tasks.send_review_notice",
    "accounts.tasks.send_password_reset_mail",
)
CELERY_TASK_ROUTES = {task: {"queue": "mail"} for task in MAIL_TASKS}
# Workers log through LOGGING below (structured lines), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# What a task prints goes to stdout as it is, not through the log (whose formatters leave link
# tokens out): without EMAIL_URL, the e-mails the worker sends are printed, and the link of a
# password reset printed there must work, as the site's own printed e-mails' links do.
CELERY_WORKER_REDIRECT_STDOUTS = False
# Periodic work, sent by one `celery beat` (make run: the worker's --beat; docker-compose: the
# beat service): the daily e-mails at an hour of TIME_ZONE, the ended sessions' deletion at 3:30,
# the lost photos every 5 minutes. Its record of the last runs lives in VAR_DIR.
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
DAILY_EMAILS_HOUR = env_int("DAILY_EMAILS_HOUR", default=8)
if DAILY_EMAILS_HOUR > 23:
    raise ImproperlyConfigured(f"DAILY_EMAILS_HOUR must be an hour of the day, 0 to 23, not {DAILY_EMAILS_HOUR}.")
CELERY_BEAT_SCHEDULE = {
    "photo-reminders": {
        "task": "diagnoses.tasks.send_photo_reminders",
        "schedule": crontab(minute=0, hour=DAILY_EMAILS_HOUR),
    },
    "review-queue-digest": {
        "task": "diagnoses.tasks.send_review_queue_digest",
        "schedule": crontab(minute=0, hour=DAILY_EMAILS_HOUR),
    },
    # Photos whose task a broker restart lost, or whose worker died (services.diagnoses_recover_lost).
    "recover-lost-diagnoses": {
        "task": "diagnoses.tasks.recover_lost_diagnoses",
        "schedule": timedelta(minutes=5),
    },
    # The sessions' rows outlive their sign-ins (SESSION_HOURS) until deleted: at night, daily.
    "clear-expired-sessions": {
        "task": "diagnoses.tasks.clear_expired_sessions",
        "schedule": crontab(minute=30, hour=3),
    },
}

# The classifier artifact (model file + model_card.json) the workers load.
ML_MODEL_DIR = Path(env.str("ML_MODEL_DIR", default=str(BASE_DIR / "ml" / "artifacts")))


def env_rate(name: str, default: str) -> str:
    """A throttle rate, "<count>/<second|minute|hour|day>" (e.g. "30/hour")."""
    value = env.str(name, default=default).strip()
    count, _, period = value.partition("/")
    if not count.isdigit() or period not in {"second", "minute", "hour", "day"}:
        raise ImproperlyConfigured(f"{name} must look like 30/hour (per second, minute, hour or day), not {value!r}.")
    return value


# The REST API (/api/v1/). Token auth comes first so that an anonymous request gets 401 with
# `WWW-Authenticate: Token`, not 403. Only JSON: errors are JSON everywhere under /api/.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.AgreedToPrivacyNotice",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # One 404 body everywhere: {"detail": "Not found."}, not the model's name (diagnoses.api.errors).
    "EXCEPTION_HANDLER": "diagnoses.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_THROTTLE_RATES": {
        # Photo uploads per user (each costs a classification); token requests per client address;
        # openings of a report shared with a doctor (/shared/<token>/) per client address.
        "uploads": env_rate("API_UPLOAD_RATE", default="30/hour"),
        "token": env_rate("API_TOKEN_RATE", default="20/minute"),
        "shared": env_rate("SHARED_REPORT_RATE", default="30/minute"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # A client's address for the throttles (and the sign-in lockout): REMOTE_ADDR, or behind
    # the proxy the last X-Forwarded-For entry, the one the proxy appended. The rest of that
    # header is whatever the client sent, so it is never trusted.
    "NUM_PROXIES": 1 if BEHIND_PROXY else 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "molesite API",
    "DESCRIPTION": "Upload skin-mole photos and read their classification. A screening aid, not a diagnosis.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every property of an answer is required (an answer has them all); drf-spectacular's own
    # hook, the first, gives the enums their components. The refusals that come before any view
    # (413, 415) are written into every operation by a hook, not by each view.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "diagnoses.api.schema.document_refusals_of_any_request",
        "diagnoses.api.schema.require_response_properties",
    ],
    # The model's prediction and a clinician's label share the seven HAM10000 classes.
    "ENUM_NAME_OVERRIDES": {"LesionClassEnum": "diagnoses.models.CLASS_CHOICES",
                            "RiskEnum": "diagnoses.models.Diagnosis.Risk"},
}

# Production logs are one JSON object per line on stdout (LOG_FORMAT=plain for humans).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}.")
# In any case ("info"): logging itself knows its levels' names in capitals only, and refuses
# any other with a traceback that does not name the variable.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in LOG_LEVELS:
    raise ImproperlyConfigured(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                               f"not {env.str('LOG_LEVEL')!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "molesite.logging.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "molesite.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": LOG_FORMAT}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Celery gives its task loggers a plain-text handler of its own unless they have one.
    "loggers": {
        "celery.task": {"handlers": ["console"], "propagate": False},
        # Django's loggers (runserver's request lines, django.request's "Not Found" warnings)
        # through this console handler alone, whose formatters leave the tokens of share,
        # password-reset and e-mail confirmation links out (molesite.logging):
        # Django's own handlers would print them, and print each warning twice.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Axes logs each sign-in step at INFO; its warnings (a failure, a lockout) are enough.
        "axes": {"level": "WARNING"},
    },
}

# The embedded mode's folders must exist before the web process or a worker touches them.
for folder in (VAR_DIR, MEDIA_ROOT, *EMBEDDED_BROKER_FOLDERS):
    Path(folder).mkdir(parents=True, exist_ok=True)
