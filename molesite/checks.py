"""molesite's own deploy checks (`manage.py check --deploy`): settings that start fine but
would be unsafe or broken in production. Registered by molesite.apps.MolesiteConfig."""

from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.http.request import split_domain_port, validate_host

# Backends that keep e-mails on this host: the console one prints them on stdout, where the
# worker's password-reset and e-mail-change links would land in `docker compose logs` as they
# are (the log's redaction never sees what a task prints); locmem ones are simply lost.
UNSENT_EMAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
}


@register(Tags.security, deploy=True)
def check_email_backend(app_configs, **kwargs):
    if settings.DEBUG or settings.EMAIL_BACKEND not in UNSENT_EMAIL_BACKENDS:
        return []
    return [
        Warning(
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND} with DEBUG off: e-mails are not sent, and "
            "the console backend prints working password-reset links into the logs.",
            hint="Set EMAIL_URL to the clinic's SMTP server, e.g. "
            "smtp+tls://user:password@smtp.example.org:587.",
            id="molesite.W001",
        )
    ]


@register(Tags.security, deploy=True)
def check_site_url_host(app_configs, **kwargs):
    # The links in e-mails start with SITE_URL: a host the site refuses (400) breaks them all.
    host, _ = split_domain_port(urlsplit(settings.SITE_URL).netloc)
    if host and validate_host(host, settings.ALLOWED_HOSTS):
        return []
    return [
        Warning(
            f"SITE_URL ({settings.SITE_URL}) is not on a host in ALLOWED_HOSTS: the links in "
            "e-mails would be refused.",
            hint="Set SITE_URL to the address patients open the site at, with its host in "
            "ALLOWED_HOSTS.",
            id="molesite.W002",
        )
    ]


@register(Tags.security, deploy=True)
def check_sender_domain(app_configs, **kwargs):
    # The default sender, noreply@localhost, names no real mail domain (nor does one without a
    # dot, or under .localhost): mail servers refuse such a sender, or file its e-mails
    # (password resets, review notices) as spam.
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2].lower().rstrip(".")
    if settings.DEBUG or ("." in domain and not domain.endswith(".localhost")):
        return []
    return [
        Warning(
            f"DEFAULT_FROM_EMAIL ({settings.DEFAULT_FROM_EMAIL}) is not on a real mail domain: "
            "e-mails from it would be refused or taken for spam.",
            hint="Set DEFAULT_FROM_EMAIL to an address on the clinic's own mail domain, e.g. "
            "molesite <noreply@molesite.example.org>.",
            id="molesite.W003",
        )
    ]
