"""The accounts' e-mails the worker sends (autodiscovered by molesite.celery)."""

from celery import shared_task
from django.core.mail import EmailMultiAlternatives

from diagnoses.tasks import MAIL_RETRY


@shared_task(autoretry_for=(OSError,), **MAIL_RETRY)
def send_password_reset_mail(subject: str, body: str, to: str, html: str | None = None) -> None:
    """A password-reset e-mail, rendered by the web process (accounts.forms.QueuedPasswordResetForm).
    Retried (MAIL_RETRY) while the mail server is unreachable (smtplib's errors are OSErrors)."""
    message = EmailMultiAlternatives(subject, body, None, [to])
    if html:
        message.attach_alternative(html, "text/html")
    message.send()
