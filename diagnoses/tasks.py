from celery import shared_task
from celery.utils.log import get_task_logger

from . import services

logger = get_task_logger(__name__)

MAX_RETRIES = 5


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def classify_diagnosis(self, diagnosis_id: str) -> None:
    """Thin wrapper: the work and its idempotence live in services.diagnosis_classify."""
    try:
        services.diagnosis_classify(diagnosis_id=diagnosis_id)
    except services.TransientClassificationError as exc:
        if self.request.retries >= self.max_retries:
            services.diagnosis_fail(diagnosis_id=diagnosis_id, message=services.MESSAGE_GAVE_UP)
            return
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1))


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=MAX_RETRIES)
def send_review_notice(review_ids: list[int] | int, updated: bool = False) -> None:
    """One e-mail for the reviews of one patient's checks. Retried with growing delays while
    the mail server is unreachable (smtplib's errors are OSErrors)."""
    if isinstance(review_ids, int):  # queued, one review a notice, by a version before the digest
        review_ids = [review_ids]
    services.review_notify(review_ids=review_ids, updated=updated)


# The daily e-mails: a mail server that fails for some is tried again for those, 1, 2, 4, 8 and
# 10 minutes later (EmailsNotSent); each run sends only what has not gone out.
DAILY_EMAILS_RETRY = {"autoretry_for": (services.EmailsNotSent,), "max_retries": MAX_RETRIES,
                      "retry_backoff": 60, "retry_backoff_max": 600, "retry_jitter": False}


@shared_task(**DAILY_EMAILS_RETRY)
def send_photo_reminders() -> int:
    """Daily, from celery beat (settings.CELERY_BEAT_SCHEDULE): the patients' photo reminders."""
    return services.photo_reminders_send()


@shared_task(**DAILY_EMAILS_RETRY)
def send_review_queue_digest() -> int:
    """Daily, from celery beat: tell the clinicians how many cases wait for review."""
    return services.review_queue_digest_send()
