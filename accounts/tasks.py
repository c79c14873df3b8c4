"""The accounts' e-mails the worker sends (autodiscovered by molesite.celery)."""

import inspect
import logging

from celery import Task, shared_task
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives

from diagnoses.tasks import MAIL_RETRY

logger = logging.getLogger(__name__)


class LoggedByUserId(Task):
    """A task whose log lines name its user by id alone. Celery writes a task's arguments
    (argsrepr, kwargsrepr) into the worker's log when it receives the task, when it succeeds
    and when it fails; a reset e-mail's are the patient's address, username and link. Set here,
    on every sending (the form's delay(), each retry), not by each caller."""

    def apply_async(self, args=None, kwargs=None, **options):
        called = inspect.signature(self.run).bind_partial(*(args or ()), **(kwargs or {}))
        options.update(argsrepr=f"(user_id={called.arguments.get('user_id')})", kwargsrepr="{}")
        return super().apply_async(args, kwargs, **options)


@shared_task(base=LoggedByUserId, autoretry_for=(OSError,), **MAIL_RETRY)
def send_password_reset_mail(subject: str, body: str, to: str, html: str | None = None,
                             user_id: int | None = None) -> None:
    """A password-reset e-mail, rendered by the web process (accounts.forms.QueuedPasswordResetForm).
    Retried (MAIL_RETRY) while the mail server is unreachable (smtplib's errors are OSErrors).
    Not sent once the account it is for is deleted, deactivated or has another address meanwhile
    (its link would no longer work): a patient who deleted the account gets no mail about it."""
    if user_id is not None and not get_user_model().objects.reachable_by_email().filter(
            pk=user_id, email=to).exists():
        logger.info("password reset e-mail not sent: its account is gone or changed")
        return
    message = EmailMultiAlternatives(subject, body, None, [to])
    if html:
        message.attach_alternative(html, "text/html")
    message.send()
