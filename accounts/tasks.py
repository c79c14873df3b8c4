"""The accounts' e-mails the worker sends (autodiscovered by molesite.celery)."""

import logging

from celery import shared_task
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives

from diagnoses.tasks import MAIL_RETRY

logger = logging.getLogger(__name__)


@shared_task(autoretry_for=(OSError,), **MAIL_RETRY)
def send_password_reset_mail(subject: str, body: str, to: str, html: str | None = None,
                             user_id: int | None = None) -> None:
    """A password-reset e-mail, rendered by the web process (accounts.forms.QueuedPasswordResetForm).
    Retried (MAIL_RETRY) while the mail server is unreachable (smtplib's errors are OSErrors).
    Not sent once the account it is for is deleted, deactivated or has another address meanwhile
    (its link would no longer work): a patient who deleted the account gets no mail about it."""
    if user_id is not None and not get_user_model().objects.filter(
            pk=user_id, is_active=True, email=to).exists():
        logger.info("password reset e-mail not sent: its account is gone or changed")
        return
    message = EmailMultiAlternatives(subject, body, None, [to])
    if html:
        message.attach_alternative(html, "text/html")
    message.send()
