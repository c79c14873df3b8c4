from datetime import date

from celery import shared_task
from celery.utils.log import get_task_logger
from celery.utils.time import get_exponential_backoff_interval
from django.core.management import call_command
from django.utils import timezone

from . import services

logger = get_task_logger(__name__)

MAX_RETRIES = 5
# An e-mail the mail server refused is tried again 1, 2, 4, 8 and 10 minutes later: a mail
# server's outage lasts minutes, not the seconds of Celery's default backoff.
MAIL_RETRY = {"max_retries": MAX_RETRIES, "retry_backoff": 60, "retry_backoff_max": 600, "retry_jitter": False}


# A model the worker cannot load is tried again 2, 4, 8, 10 and 10 minutes later (34 in all):
# an operator copying in a card and model one after the other, or mending a damaged artifact,
# takes minutes, and the photo itself can be classified once they are done.
MODEL_RETRY = {"factor": 120, "maximum": 600}


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def classify_diagnosis(self, diagnosis_id: str) -> None:
    """Thin wrapper: the work and its idempotence live in services.diagnosis_classify."""
    try:
        services.diagnosis_classify(diagnosis_id=diagnosis_id)
    except services.TransientClassificationError as exc:
        if self.request.retries >= self.max_retries:
            _give_up(diagnosis_id, exc, attempts=self.request.retries + 1)
            return
        raise self.retry(exc=exc, countdown=_retry_countdown(exc, self.request.retries))


def _retry_countdown(exc: Exception, retries: int) -> int:
    """Seconds before the next try: a database or storage hiccup passes in seconds, a model
    the worker cannot load waits for its operator (MODEL_RETRY)."""
    if isinstance(exc, services.ModelUnavailable):
        return get_exponential_backoff_interval(retries=retries, full_jitter=False, **MODEL_RETRY)
    return 2 ** (retries + 1)


def _give_up(diagnosis_id: str, exc: Exception, *, attempts: int) -> None:
    """Fail the photo once the retries are spent, telling the patient why as far as we know."""
    # Celery logs this run as succeeded: the ERROR line is ours to write.
    logger.error("classifying %s: gave up after %d attempts", diagnosis_id, attempts, exc_info=exc)
    unavailable = isinstance(exc, services.ModelUnavailable)
    message = services.MESSAGE_MODEL_UNAVAILABLE if unavailable else services.MESSAGE_GAVE_UP
    services.diagnosis_fail(diagnosis_id=diagnosis_id, message=message)


@shared_task(autoretry_for=(OSError,), **MAIL_RETRY)
def send_review_notice(review_ids: list[int] | int, updated: bool = False) -> None:
    """One e-mail for the reviews of one patient's checks. Retried (MAIL_RETRY) while the mail
    server is unreachable (smtplib's errors are OSErrors)."""
    if isinstance(review_ids, int):  # queued, one review a notice, by a version before the digest
        review_ids = [review_ids]
    services.review_notify(review_ids=review_ids, updated=updated)


def _send_daily(task, send, day: str | None) -> int:
    """A daily batch of e-mails: send(today=...) for the clinic's day when the task first ran.
    Those the mail server refused are sent by the retries (MAIL_RETRY, with the backoff Celery's
    autoretry_for would give), each run sending only what has not gone out; a retry carries that
    day (ISO 8601), so that one after midnight neither repeats yesterday's digest nor sends the
    new day's e-mails hours early."""
    today = date.fromisoformat(day) if day else timezone.localdate()
    try:
        return send(today=today)
    except services.EmailsNotSent as exc:
        countdown = get_exponential_backoff_interval(
            factor=task.retry_backoff, retries=task.request.retries, maximum=task.retry_backoff_max,
            full_jitter=task.retry_jitter)
        raise task.retry(exc=exc, kwargs={"day": today.isoformat()}, countdown=countdown)


@shared_task(bind=True, **MAIL_RETRY)
def send_photo_reminders(self, day: str | None = None) -> int:
    """Daily, from celery beat (settings.CELERY_BEAT_SCHEDULE): the patients' photo reminders."""
    return _send_daily(self, services.photo_reminders_send, day)


@shared_task(bind=True, **MAIL_RETRY)
def send_review_queue_digest(self, day: str | None = None) -> int:
    """Daily, from celery beat: tell the clinicians how many cases wait for review."""
    return _send_daily(self, services.review_queue_digest_send, day)


@shared_task
def recover_lost_diagnoses() -> dict:
    """Every few minutes, from celery beat: photos whose task was lost or whose worker died,
    then the clinicians' review e-mails that never reached the broker (logged, not returned)."""
    counts = services.diagnoses_recover_lost()
    services.review_notices_recover()
    return counts


@shared_task
def clear_expired_sessions() -> None:
    """Daily, from celery beat: delete the sessions whose sign-in has ended (SESSION_HOURS). The
    database keeps each session's row, with who signed in, until this runs; nothing else does."""
    call_command("clearsessions")
