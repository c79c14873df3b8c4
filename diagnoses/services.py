"""Every write to the diagnoses domain goes through these functions (web views, API, admin)."""

import enum
import hashlib
import json
import logging
import math
import posixpath
import secrets
import shutil
import smtplib
import socket
import uuid
import zipfile
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import (DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, InterfaceError, OperationalError,
                       connection, transaction)
from django.db.models import (BooleanField, Case, CharField, Count, Exists, ExpressionWrapper, F, IntegerField,
                              OuterRef, Q, Subquery, Value, When)
from django.db.models.functions import Coalesce, Least
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import TokenProxy

from accounts.models import REVIEWERS_GROUP, ApiToken
from ml import CLASSES, MALIGNANT
from ml.errors import ImageError, ModelArtifactError
from ml.metrics import malignant_auc
from ml.preprocessing import to_rgb
from ml.quality import photo_issues
from molesite.mail import one_connection, send_templated_mail

from .images import sanitize_upload
from .models import (
    CLASS_CHOICES, LOW_RISK_ACRAL_ADVICE, RECOMMENDATION_ORDER, RISK_ORDER, SHARE_LINK_DAYS, Diagnosis, Mole,
    Review, ReviewRevision, ShareLink, StaffAccess, is_reviewed, normalise_mole_name,
)

logger = logging.getLogger(__name__)

# A row left "running" this long was orphaned by a dead worker; a redelivery may take it over.
STALE_RUNNING_AFTER = timedelta(minutes=10)
# A photo still queued this long after its task was sent (Diagnosis.sent_at) has most likely lost
# it (a broker restarted without keeping its queue): diagnoses_recover_lost sends the task again,
# at most once in this time. Also /healthz's limit on the patient's wait (Diagnosis.queued_at).
LOST_QUEUED_AFTER = timedelta(minutes=15)
# A photo that workers have started on this many times is not queued again when the last one
# died with it (killed for memory, say): it might take the next one down too.
MAX_ORPHANED_ATTEMPTS = 2
# One member of staff opening the same record again within this time is one access (a review
# saved, the page reloaded), not a line per page view in the patient's list.
STAFF_ACCESS_COALESCE = timedelta(minutes=30)

IS_REVIEWED = is_reviewed()  # a review of the result shown now, not of one a re-run replaced
# Reviewed as the desk counts it (the queue's order, its Reviewed filter and column, the export):
# a finished result with a review of it. A failed case never is, whatever review it kept: a
# review saved before reviews carried a model version counts, in IS_REVIEWED, as of any result,
# but no review closes a photo that has no result.
REVIEWED_AT_DESK = ExpressionWrapper(Q(status=Diagnosis.Status.DONE) & IS_REVIEWED, output_field=BooleanField())
# A failed case is answered once its patient has uploaded again after being told it failed
# (finished_at: diagnosis_fail and diagnoses_recover_lost set it), as its error message asked: a
# later photo of the same mole when it is tracked (one of another mole answers nothing), any later
# photo when it is not (nobody can tell which mole that was). After the failure, not after the
# upload: photos uploaded in a row during an outage all fail later, and none answers another.
# Whatever became of the later photo: if it failed too, it is the one that waits.
LATER_UPLOADS = Diagnosis.objects.filter(owner_id=OuterRef("owner_id"), created_at__gt=OuterRef("finished_at"))
ANSWERED = (Q(mole__isnull=True) & Exists(LATER_UPLOADS)) | Exists(LATER_UPLOADS.filter(mole_id=OuterRef("mole_id")))
FAILED_WAITING = Q(status=Diagnosis.Status.FAILED) & ~ANSWERED
# The queue's ranks, most pressing first: the risk bands, and between medium and low the failed
# cases still waiting (FAILED_RANK), which no review can close: each needs a re-run, or else
# the new photo its patient was told to upload, and its mole's risk is unknown, so it ranks
# above the lows, not among them. Last (NO_RANK) the cases with no result yet, and the failed
# ones answered by a later photo (ANSWERED): nothing is left to do on those.
RISK_RANKS = {Diagnosis.Risk.HIGH: 0, Diagnosis.Risk.MEDIUM: 1, Diagnosis.Risk.LOW: 3}
FAILED_RANK = 2
NO_RANK = 4
BAND_OF_RANK = {rank: band for band, rank in RISK_RANKS.items()}
# What the queue's Risk column calls a failed case still waiting, and one answered by a later
# photo; the query string of the status field's own filter (Failed), which lists both, waiting
# ones first (the queue's order), for the daily e-mail's link.
FAILED_LABEL = "Failed — re-run, or wait for a new photo"
ANSWERED_LABEL = "Failed — a newer photo followed"
FAILED_FILTER = "status__exact=failed"
RISK_RANK = Case(
    # first: a failed case has no result
    When(FAILED_WAITING, then=Value(FAILED_RANK)),
    When(status=Diagnosis.Status.FAILED, then=Value(NO_RANK)),  # answered
    *(When(risk=band, then=Value(rank)) for band, rank in RISK_RANKS.items()),
    default=Value(NO_RANK),
    output_field=IntegerField(),
)
# Diagnosis.judged_by_a_clinician as a query expression: a review of the result shown now that
# could tell from the photo. Its version test mirrors is_reviewed() (IS_REVIEWED: a review saved
# before reviews carried a model version is of any result), in one EXISTS, not IS_REVIEWED's and
# a second: it runs for each row the queue sorts, inside EARLIER_RANK.
JUDGED = Exists(
    Review.objects.filter(diagnosis=OuterRef("pk")).exclude(verdict=Review.Verdict.UNCLEAR)
    .filter(Q(model_version="") | Q(model_version=OuterRef("model_version")))
)
# The rank of a pressing review's recommendation (Review.is_pressing: RECOMMENDATION_ORDER): that
# of the most pressing band whose advice it asks at least as much as. Urgent ("see a doctor now")
# the high rank, a dermatologist soon the medium one; a routine one, or any other, none.
EARLIER_REVIEW_RANKS = {
    recommendation: RISK_RANKS[max((band for band in RISK_RANKS if RISK_ORDER[band] <= order), key=RISK_ORDER.get)]
    for recommendation, order in RECOMMENDATION_ORDER.items()
}
# A case's mole's finished photos before it (as Diagnosis.earlier_photos_of_mole has them).
EARLIER_PHOTOS = Diagnosis.objects.filter(mole_id=OuterRef("mole_id"), owner_id=OuterRef("owner_id"),
                                          status=Diagnosis.Status.DONE, created_at__lt=OuterRef("created_at"))
# The rank of an earlier photo's own advice (Diagnosis.advice_order): its band's, or, once a
# clinician judged it, their recommendation's when pressing (EARLIER_REVIEW_RANKS), else none.
PHOTO_ADVICE_RANK = Case(
    When(JUDGED, then=Case(*(When(review__recommendation=recommendation, then=Value(rank))
                             for recommendation, rank in EARLIER_REVIEW_RANKS.items()), default=Value(NO_RANK))),
    default=RISK_RANK,
    output_field=IntegerField(),
)
# When the last of a case's earlier photos that a clinician judged was taken, from inside a
# subquery over those photos (so OuterRef(OuterRef): the case's own columns). It depends on the
# case alone, so Postgres runs it once per case (an InitPlan), not once per earlier photo as a
# test for a judged photo between each one and the case would (the query 1.19x faster, the
# queue's page 1.08x, at 10,000 cases: bench/bench_queue.py).
LAST_JUDGED_AT = Subquery(
    Diagnosis.objects.filter(JUDGED, mole_id=OuterRef(OuterRef("mole_id")), owner_id=OuterRef(OuterRef("owner_id")),
                             status=Diagnosis.Status.DONE, created_at__lt=OuterRef(OuterRef("created_at")))
    .order_by("-created_at", "-pk").values("created_at")[:1]
)
# The rank of the earlier photo whose advice leads a case's (Diagnosis.leading_earlier_photo): the
# most pressing of the photos since the last one a clinician judged, that one included; NULL when
# there is none. A lower photo between does not end it.
# with none judged, each photo's own time: all of them
SINCE_LAST_JUDGED = (EARLIER_PHOTOS.filter(created_at__gte=Coalesce(LAST_JUDGED_AT, F("created_at")))
                     .annotate(rank=PHOTO_ADVICE_RANK))
EARLIER_RANK = Subquery(SINCE_LAST_JUDGED.order_by("rank").values("rank")[:1])
# The recommendation of the earlier photo that leads a case, when a clinician judged it, for the
# queue's Risk column (admin): whether that review is what ranks the case; NULL when none.
EARLIER_PHOTO_REVIEW = Subquery(
    # the photo that leads, the latest on a tie as leading_earlier_photo has it; its review's
    # recommendation when a clinician judged it, else NULL
    SINCE_LAST_JUDGED.order_by("rank", "-created_at", "-pk")
    .annotate(recommendation=Case(When(JUDGED, then=F("review__recommendation")), default=Value(None),
                                  output_field=CharField()))
    .values("recommendation")[:1]
)
# The rank of a case's review of an earlier result (Review.is_of_an_earlier_result: kept through a
# re-run) when it is pressing; NULL when there is none, or it is not. One lookup of the case's
# own review (one-to-one, by its unique index), run for the unreviewed results alone (QUEUE_RANK).
EARLIER_REVIEW_RANK = Subquery(
    Review.objects.filter(diagnosis=OuterRef("pk"), recommendation__in=EARLIER_REVIEW_RANKS)
    .exclude(model_version="").exclude(model_version=OuterRef("model_version"))
    .annotate(rank=Case(*(When(recommendation=recommendation, then=Value(rank))
                          for recommendation, rank in EARLIER_REVIEW_RANKS.items()), output_field=IntegerField()))
    .values("rank")[:1]
)
# What the patient is told to follow (Diagnosis.next_step), in the queue: an unreviewed result
# ranks by the earlier photo whose advice leads it when that asks more (EARLIER_RANK),
# and by a pressing review of its earlier result, which stands until a clinician reviews the new
# one, when that asks more (EARLIER_REVIEW_RANKS): the most pressing of them. Annotated as
# queue_rank (admin.DiagnosisAdmin.get_queryset; its Risk column says which raised it).
QUEUE_RANK = Case(
    When(Q(~IS_REVIEWED, status=Diagnosis.Status.DONE),
         then=Least(RISK_RANK, Coalesce(EARLIER_RANK, Value(NO_RANK)),
                    Coalesce(EARLIER_REVIEW_RANK, Value(NO_RANK)))),
    default=RISK_RANK,
    output_field=IntegerField(),
)

# The worker cannot decode the copy the site stored itself: the site's fault, not the photo's,
# so the patient is not asked for a sharper or better-lit one (see diagnosis_classify).
MESSAGE_UNREADABLE = "We could not open the stored copy of this photo. Please upload it again."
MESSAGE_MODEL_UNAVAILABLE = "The classifier is not available right now. Our team has been told; please try again later."
MESSAGE_UNEXPECTED = "Something went wrong while analysing this photo. Please upload it again."
MESSAGE_GAVE_UP = "The analysis could not be completed after several attempts. Please upload the photo again later."
MESSAGE_STOPPED = ("The analysis of this photo kept stopping before it finished. Please upload it again, "
                   "or another photo of the mole.")


class EmailsNotSent(Exception):
    """The mail server failed for some e-mails of a batch; the others went out. Raised after the
    whole batch so that the Celery task retries later, and the retry sends only those missing."""

    def __init__(self, sent: int, failed: int):
        super().__init__(sent, failed)  # positional, so that it pickles as Celery's retries need
        self.sent, self.failed = sent, failed

    def __str__(self):
        return f"{self.failed} e-mail(s) not sent (the mail server failed), {self.sent} sent"


class TransientClassificationError(Exception):
    """A failure worth retrying (database or storage hiccup); the row is back in the queue."""


class ModelUnavailable(TransientClassificationError):
    """The worker cannot load the model artifact (a card and model copied in one after the other,
    a damaged file): the photo is fine and the operator can mend the artifact, so the task tries
    again for longer than after a hiccup before failing it with MESSAGE_MODEL_UNAVAILABLE."""


class MoleNameTaken(Exception):
    """The patient has another mole of that name. The forms and the API check the name first; a
    request from another tab or device can still take it in between, and the unique constraint
    decides: this is how the losing one hears of it."""


UNCHANGED = object()  # for an argument whose None means something (no reminders)


def mole_create(*, owner, name: str, body_site: str = "unknown", recheck_months: int | None = None) -> Mole:
    """Raises MoleNameTaken."""
    with _one_name_per_patient():
        return Mole.objects.create(owner=owner, name=normalise_mole_name(name), body_site=body_site,
                                   recheck_months=recheck_months)


def mole_update(*, mole: Mole, name: str | None = None, body_site: str | None = None, recheck_months=UNCHANGED) -> Mole:
    """Rename, move or change the photo reminder (recheck_months, None to stop it) of a mole.
    Raises MoleNameTaken."""
    if name is not None:
        mole.name = normalise_mole_name(name)
    if body_site is not None:
        mole.body_site = body_site
    if recheck_months is not UNCHANGED:
        mole.recheck_months = recheck_months
    with _one_name_per_patient():
        mole.save(update_fields=["name", "body_site", "recheck_months"])
    return mole


@contextmanager
def _one_name_per_patient():
    """The save in a savepoint, so that the caller's transaction (an upload's, making the mole)
    survives the constraint's refusal, as MoleNameTaken."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as error:
        raise MoleNameTaken from error


def mole_delete(*, mole: Mole) -> None:
    """Delete a tracked mole; its photos stay in the history, no longer grouped."""
    with transaction.atomic():
        # Under the mole's lock, as diagnosis_create files a photo: an upload to it that came
        # first commits first and its photo is then set untracked with the others (else the
        # deletion's deferred foreign-key check would fail on it); one that comes later is refused.
        mole_hold(mole.pk)
        mole.delete()


def mole_hold(mole_id) -> bool:
    """Lock the mole's row until the current transaction ends, so that filing a photo under it
    and deleting it happen one after the other; False when it is gone. Postgres; SQLite locks
    the whole database on write."""
    return Mole.objects.select_for_update().filter(pk=mole_id).exists()


def diagnosis_create(*, owner, image, mole: Mole | None = None, new_mole=None) -> Diagnosis:
    """Validate and store an uploaded photo, then queue its classification.

    new_mole, instead of mole: a function that makes the mole to file the photo under (one named
    with the upload), called in the transaction that stores the photo, so that a photo refused
    leaves no new mole behind.

    Raises django.core.exceptions.ValidationError (with a code) for a bad image, for the "mole"
    field when that mole was deleted meanwhile, or when the owner's account was; nothing is
    stored then.
    """
    if mole is not None and mole.owner_id != owner.pk:
        raise ValueError("A diagnosis can only be filed under the owner's own mole.")
    # Decoded and re-encoded before the transaction, and callers call this outside theirs: on
    # SQLite a transaction holds the database's write lock, which the worker and other uploads
    # would wait for (a second for a large photo).
    clean = sanitize_upload(image)
    name = uuid.uuid4().hex
    now = timezone.now()  # queued and sent at once (the task goes out at the commit)
    diagnosis = Diagnosis(owner=owner, mole=mole, sha256=clean.sha256, photo_issues=clean.photo_issues,
                          queued_at=now, sent_at=now)
    try:  # from the first file on: a full disk at the thumbnail leaves no photo behind
        _save_file(diagnosis.image, f"{name}.jpg", clean.image_jpeg)
        _save_file(diagnosis.thumbnail, f"{name}.jpg", clean.thumbnail_jpeg)
        with transaction.atomic():
            _refuse_an_account_deleted_meanwhile(owner)
            if new_mole is not None:
                diagnosis.mole = new_mole()
            diagnosis.save()
            _refuse_a_mole_deleted_meanwhile(diagnosis.mole)
            _send_classification(diagnosis.pk)
    except Exception:
        _delete_files(diagnosis.stored_files())
        raise
    return diagnosis


# The form field's message for a mole deleted (in another tab, through the API) after the upload
# form was filled in.
MOLE_DELETED = "This mole was deleted meanwhile: pick another one or name a new one."


# The upload's message for an account deleted (in another tab, by staff) while its photo was sent.
ACCOUNT_DELETED = "This account was deleted while the photo was being sent: it was not stored."


def _refuse_an_account_deleted_meanwhile(owner) -> None:
    """Raise a ValidationError if the owner's account no longer exists; else hold it until the
    photo is stored. Before the diagnosis row is written: Postgres checks its foreign key only
    at commit, taking no lock before, so a deletion could list the account's photos without this
    one, then cascade its row away and leave its files (or fail this commit: a 500). Here either
    the deletion waits for the photo and lists it, or the photo waits and is refused."""
    if not account_hold(owner.pk):
        raise ValidationError(ACCOUNT_DELETED, code="account_deleted")


def account_hold(user_id) -> bool:
    """Lock the account's row until the current transaction ends, so that storing a photo of
    its owner and deleting it happen one after the other; False when it is gone. FOR NO KEY
    UPDATE: two holders wait for each other, yet other transactions still check their foreign
    keys to the row (a mole made in another tab, a staff-access record written while a case is
    held), where FOR UPDATE would make them wait, and deadlock with a deletion waiting for their
    rows. Postgres; SQLite locks the whole database on write."""
    return get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).exists()


def _refuse_a_mole_deleted_meanwhile(mole: Mole | None) -> None:
    """Raise a ValidationError for the "mole" field if mole no longer exists. Checked after the
    diagnosis row is written and under the mole's lock, so that a deletion either came first
    (refused here, not as a foreign-key error at commit) or
    waits for this one and files the photo as untracked (on_delete SET_NULL)."""
    if mole is not None and not mole_hold(mole.pk):
        raise ValidationError({"mole": MOLE_DELETED}, code="mole_deleted")


def _send_classification(pk) -> None:
    """Queue the classifier's task for a diagnosis once the current transaction commits."""
    from .tasks import classify_diagnosis

    pk = str(pk)
    # robust: with the broker down, the photo is stored all the same (Django logs the failure);
    # the patient gets its page, not an error that invites a second upload, and
    # diagnoses_recover_lost sends the task once the photo has waited LOST_QUEUED_AFTER.
    transaction.on_commit(lambda: classify_diagnosis.delay(pk), robust=True)


def _delete_files(files) -> None:
    for stored in files:
        stored.storage.delete(stored.name)


def _save_file(stored, filename: str, content: bytes) -> None:
    """stored.save(filename, content), the model saved later. On a failure (a full disk) the
    part already written is deleted: FileSystemStorage leaves it, under a name stored.name is
    not given, that no row would ever name (a fragment of a patient's photo). filename is a new
    uuid4, so the name the storage is asked to write is the one it writes."""
    name = stored.field.generate_filename(stored.instance, filename)
    try:
        stored.save(filename, ContentFile(content), save=False)
    except BaseException:
        try:
            stored.storage.delete(name)
        except OSError:
            logger.exception("the part written of %s could not be deleted", name)
        raise


def diagnosis_requeue(*, diagnosis: Diagnosis) -> bool:
    """Classify again (e.g. with a newer model): clear the result and queue the task.

    Returns False, changing nothing, for a diagnosis already queued or running, or deleted since
    it was loaded (update(), as save() would re-insert a row the patient deleted). The result
    goes with the heatmap, so that no page or API answer shows an old estimate beside a new
    status; a clinician's review is kept (see Review.is_of_an_earlier_result).
    """
    waiting = [Diagnosis.Status.QUEUED, Diagnosis.Status.RUNNING]
    now = timezone.now()
    cleared = {  # a new wait: the last one ended with a result (or a failure)
        "status": Diagnosis.Status.QUEUED, "queued_at": now, "sent_at": now, "started_at": None,
        "finished_at": None, "attempts": 0, "error": "", "heatmap": "", "model_version": "",
        "probabilities": {}, "malignant_probability": None, "predicted_class": "", "risk": "",
    }
    with transaction.atomic():
        # The heatmap of the row under its lock, the one cleared here, not that of diagnosis as
        # loaded (the admin's action loads every case first): a re-run finished since brought
        # another, which no row would name any more.
        current = (Diagnosis.objects.select_for_update().filter(pk=diagnosis.pk)
                   .exclude(status__in=waiting).only("heatmap").first())
        if current is None:
            return False
        Diagnosis.objects.filter(pk=current.pk).update(**cleared)
        if current.heatmap:
            old_heatmap = [current.heatmap]
            transaction.on_commit(lambda: _delete_files(old_heatmap))
        _send_classification(diagnosis.pk)
    for field, value in cleared.items():
        setattr(diagnosis, field, value)
    return True


def diagnosis_delete(*, diagnosis: Diagnosis) -> None:
    """Delete a diagnosis, its review, share links and admin history and, once the deletion is
    committed, its stored files."""
    with transaction.atomic():
        # The files as they are under the row's lock, not as when diagnosis was loaded: a result
        # the worker stored meanwhile brought a heatmap (a later one finds no row to store to).
        locked = Diagnosis.objects.select_for_update().filter(pk=diagnosis.pk).first()
        if locked is None:
            return
        files = locked.stored_files()
        _forget_admin_history({Diagnosis: [locked.pk], ShareLink: locked.share_links.values_list("pk", flat=True)})
        locked.delete()
        transaction.on_commit(lambda: _delete_files(files))


def _forget_admin_history(pks_by_model: dict) -> None:
    """Delete the admin's history rows (LogEntry) of these records ({model: primary keys}).

    They name the patient (Diagnosis.__str__ is what they keep, reviews included) and would
    outlive the records, to which LogEntry is tied only by the key as text: no cascade."""
    of_these = Q(pk__in=[])
    for model, pks in pks_by_model.items():
        # the admin records a proxy (ApiToken) under its own content type
        content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
        of_these |= Q(content_type=content_type, object_id__in=[str(pk) for pk in pks])
    LogEntry.objects.filter(of_these).delete()


# --- Sharing a report with a doctor -----------------------------------------------------------

# Active links one check may have at once: enough for a GP, a dermatologist and a second
# opinion, few enough that an old link is withdrawn before yet another is made.
SHARE_LINKS_PER_DIAGNOSIS = 5


class ShareLinkRefused(Exception):
    """A share link cannot be made; the message says why, in the patient's words."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def share_link_create(*, diagnosis: Diagnosis, days: int, with_earlier_photos: bool = False) -> tuple[ShareLink, str]:
    """Make a link that lets anyone holding it read this finished check's report for `days`
    days (one of SHARE_LINK_DAYS), with the mole's earlier photos (Diagnosis.earlier_photos_of_mole)
    when asked. Returns the link and its token, which is stored only as a
    hash: the caller shows it once. Raises ShareLinkRefused for a check not done, or one that
    already has SHARE_LINKS_PER_DIAGNOSIS active links."""
    if days not in dict(SHARE_LINK_DAYS):
        raise ValueError(f"a share link lasts {', '.join(str(d) for d, _ in SHARE_LINK_DAYS)} days, not {days}")
    with transaction.atomic():
        # Locked, so that two requests at once cannot both take the last free place.
        diagnosis = Diagnosis.objects.select_for_update().get(pk=diagnosis.pk)
        if diagnosis.is_pending:
            raise ShareLinkRefused("This check is still being analysed: it can be shared once its result is ready.")
        if diagnosis.status != Diagnosis.Status.DONE:
            raise ShareLinkRefused("This check has no result to share: its analysis did not complete.")
        if diagnosis.share_links.active().count() >= SHARE_LINKS_PER_DIAGNOSIS:
            raise ShareLinkRefused(f"This check already has {SHARE_LINKS_PER_DIAGNOSIS} active links, the most it "
                                   "can have: stop sharing one of them first.")
        token = secrets.token_urlsafe(32)
        now = timezone.now()
        link = ShareLink.objects.create(diagnosis=diagnosis, token_hash=_token_hash(token), created_at=now,
                                        expires_at=now + timedelta(days=days),
                                        with_earlier_photos=with_earlier_photos)
    return link, token


def share_link_find(*, token: str) -> ShareLink | None:
    """The link whose token this is, active or not (the caller tells an expired or withdrawn
    link, ShareLink.is_active, or one whose owner's account is deactivated, from none at all);
    None for a token no link has. Only the hash is looked up, so the database never compares
    the token itself."""
    related = ("diagnosis__owner", "diagnosis__mole", "diagnosis__review")
    return (ShareLink.objects.select_related(*related)
            .filter(token_hash=_token_hash(token)).first())


def share_link_record_opening(*, link: ShareLink) -> None:
    """Count one opening of the report through this link (in the database, so that openings at
    the same moment all count)."""
    ShareLink.objects.filter(pk=link.pk).update(open_count=F("open_count") + 1, last_opened_at=timezone.now())


def share_link_revoke(*, link: ShareLink) -> ShareLink:
    """Stop the link from opening the report; a link withdrawn already keeps its first time."""
    ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    link.refresh_from_db(fields=["revoked_at"])
    return link


def write_user_export(*, user, out) -> None:
    """Everything stored about a user, as a zip written to the binary file object out: data.json
    (account, moles, results with their reviews and share links, who at the review desk opened
    their records) plus every photo, thumbnail and heatmap. Each stored file is copied in chunks
    and kept as is (ZIP_STORED: JPEG and PNG are compressed already), so neither memory nor time
    grows with recompressing a long history."""
    diagnoses = list(user.diagnoses.select_related("mole", "review").prefetch_related("share_links", "review_revisions")
                     .order_by("created_at"))
    data = {
        "exported_at": _isoformat(timezone.now()),
        "account": {"username": user.username, "email": user.email,
                    "email_confirmed_at": _isoformat(user.email_confirmed_at),
                    "date_joined": _isoformat(user.date_joined),
                    "consented_at": _isoformat(user.consented_at), "review_emails": user.review_emails,
                    "model_improvement": user.model_improvement, "queue_emails": user.queue_emails},
        "moles": [
            {"id": str(m.pk), "name": m.name, "body_site": m.body_site,
             "created_at": _isoformat(m.created_at),
             "recheck_months": m.recheck_months}
            for m in user.moles.order_by("created_at")
        ],
        "diagnoses": [],
        "staff_accesses": [
            {"at": _isoformat(a.at), "staff": a.staff_name, "record": a.record,
             "diagnosis_id": str(a.diagnosis_id) if a.diagnosis_id else None,
             "mole_id": str(a.mole_id) if a.mole_id else None}
            for a in user.staff_accesses.order_by("at")
        ],
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for d in diagnoses:
            files = {}
            for kind, stored in (("image", d.image), ("thumbnail", d.thumbnail), ("heatmap", d.heatmap)):
                if not stored:
                    continue
                # dated as uploaded (the zip's default is 1 Jan 1980), in the clinic's time
                entry = zipfile.ZipInfo(f"{kind}s/{d.pk}{'.png' if kind == 'heatmap' else '.jpg'}",
                                        date_time=timezone.localtime(d.created_at).timetuple()[:6])
                arcname = entry.filename
                try:
                    with stored.open("rb") as source, archive.open(entry, "w") as target:
                        shutil.copyfileobj(source, target)
                except OSError:
                    logger.warning("export: %s of %s is missing from storage", kind, d.pk)
                    continue
                files[kind] = arcname
            review = getattr(d, "review", None)
            data["diagnoses"].append({
                "id": str(d.pk), "mole_id": str(d.mole_id) if d.mole_id else None,
                "created_at": _isoformat(d.created_at), "status": d.status, "error": d.error,
                "finished_at": _isoformat(d.finished_at),
                "model_version": d.model_version, "risk": d.risk, "malignant_probability": d.malignant_probability,
                "predicted_class": d.predicted_class, "probabilities": d.probabilities,
                "photo_issues": d.photo_issues, "sha256": d.sha256, "files": files,
                "review": None if review is None else {
                    "verdict": review.verdict, "label": review.label, "recommendation": review.recommendation,
                    "note": review.note, "reviewed_at": _isoformat(review.reviewed_at),
                    "model_version": review.model_version,
                },
                # what corrections replaced: the patient may have read it, or been e-mailed about it
                "earlier_reviews": [
                    {"verdict": r.verdict, "label": r.label, "recommendation": r.recommendation, "note": r.note,
                     "reviewed_at": _isoformat(r.reviewed_at), "model_version": r.model_version,
                     "replaced_at": _isoformat(r.superseded_at)}
                    for r in sorted(d.review_revisions.all(), key=lambda r: r.reviewed_at)
                ],
                # when each link was made, until when it worked, how often it was opened; never
                # its token or hash
                "share_links": [
                    {"created_at": _isoformat(link.created_at),
                     "expires_at": _isoformat(link.expires_at),
                     "revoked_at": _isoformat(link.revoked_at), "with_earlier_photos": link.with_earlier_photos,
                     "open_count": link.open_count,
                     "last_opened_at": _isoformat(link.last_opened_at)}
                    for link in sorted(d.share_links.all(), key=lambda link: link.created_at)
                ],
            })
        archive.writestr("data.json", json.dumps(data, indent=2, ensure_ascii=False),
                         compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("README.txt", _export_readme(), compress_type=zipfile.ZIP_DEFLATED)


def _export_readme() -> str:
    """What the export holds, in words: data.json's codes are the model's."""
    classes = "\n".join(f"  {code:6} {name}{' (malignant)' if code in MALIGNANT else ''}"
                         for code, name in CLASS_CHOICES)
    return (
        "Your molesite data\n\n"
        "data.json     your account, your moles, every check with its result, the clinicians'\n"
        "              reviews (and, as earlier_reviews, those a clinician's correction\n"
        "              replaced), the links you made to share a report, and who at the clinic\n"
        "              opened your records. Times are the clinic's, with their offset.\n"
        "images/       your photos, as stored (named by the check's id)\n"
        "thumbnails/   their small previews\n"
        "heatmaps/     where the model looked (Grad-CAM over the photo)\n\n"
        "In data.json, malignant_probability and probabilities are fractions (0.097 is 9.7%);\n"
        "risk is the band shown (low, medium, high); predicted_class and the probabilities'\n"
        "keys are these codes:\n" + classes + "\n\n"
        "molesite is a screening aid, not a diagnosis.\n"
    )


def _isoformat(moment):
    """A stored time as the export writes it: in TIME_ZONE with its offset, the clinic's day and
    time, as the pages, the API and the review desk's CSV give them (None stays None)."""
    return timezone.localtime(moment).isoformat() if moment else None


def user_delete(*, user) -> None:
    """Delete a user with all their moles, diagnoses, reviews, share links and admin history;
    files go once that is committed."""
    with transaction.atomic():
        # The account first: a photo being stored for it meanwhile commits before, and is listed
        # below with the others, or waits and is refused (diagnosis_create).
        if not account_hold(user.pk):
            return
        # Listed under the rows' locks, as in diagnosis_delete.
        diagnoses = list(Diagnosis.objects.select_for_update().filter(owner=user))
        files = [f for d in diagnoses for f in d.stored_files()]
        _forget_admin_history({
            get_user_model(): [user.pk],
            # The admin keys a token by its user: "API token of alice", or, from before molesite
            # replaced DRF's token admin, the key itself (migration accounts 0010 removes those).
            ApiToken: [user.pk],
            TokenProxy: [user.pk],
            Mole: user.moles.values_list("pk", flat=True),
            Diagnosis: [d.pk for d in diagnoses],
            ShareLink: ShareLink.objects.filter(diagnosis__owner=user).values_list("pk", flat=True),
        })
        user.delete()
        transaction.on_commit(lambda: _delete_files(files))


def diagnosis_claim(*, diagnosis_id) -> bool:
    """Atomically move a queued (or orphaned running) diagnosis to running. False: not ours to run."""
    now = timezone.now()
    claimable = Q(status=Diagnosis.Status.QUEUED) | Q(
        status=Diagnosis.Status.RUNNING, started_at__lt=now - STALE_RUNNING_AFTER
    )
    updated = Diagnosis.objects.filter(claimable, pk=diagnosis_id).update(
        status=Diagnosis.Status.RUNNING, started_at=now, error="", attempts=F("attempts") + 1
    )
    return updated == 1


def diagnosis_fail(*, diagnosis_id, message: str) -> None:
    Diagnosis.objects.filter(pk=diagnosis_id).exclude(status=Diagnosis.Status.DONE).update(
        status=Diagnosis.Status.FAILED, error=message, finished_at=timezone.now()
    )


def diagnoses_recover_lost() -> dict:
    """Photos whose analysis nobody is doing any more, found every few minutes by celery beat.

    Queued, its task last sent LOST_QUEUED_AFTER ago (Diagnosis.sent_at): the task is sent again
    (a second copy is harmless: the first to claim the row runs it). Running for
    STALE_RUNNING_AFTER: the worker died with it, and the redelivered task found the row freshly
    claimed and left; it is queued again, unless workers have started on it
    MAX_ORPHANED_ATTEMPTS times (Diagnosis.attempts), when it fails with MESSAGE_STOPPED instead
    of taking another worker down. Either way queued_at, the start of the patient's wait, is
    left as it is (see Diagnosis.queued_at): only sent_at says when the task last went out.
    Returns the counts {"resent", "requeued", "failed"}.
    """
    now = timezone.now()
    counts = {"resent": 0, "requeued": 0, "failed": 0}
    # Found through diagnosis_queue_idx (status first): the queued rows are few, sent_at is read from those.
    queued = Diagnosis.objects.filter(status=Diagnosis.Status.QUEUED, sent_at__lt=now - LOST_QUEUED_AFTER)
    orphaned = Diagnosis.objects.filter(status=Diagnosis.Status.RUNNING, started_at__lt=now - STALE_RUNNING_AFTER)
    for pk in queued.values_list("pk", flat=True):
        # Conditional updates: a worker that claims the row meanwhile keeps it.
        if queued.filter(pk=pk).update(sent_at=now):
            _send_classification(pk)
            counts["resent"] += 1
    for pk in orphaned.filter(attempts__lt=MAX_ORPHANED_ATTEMPTS).values_list("pk", flat=True):
        if orphaned.filter(pk=pk).update(status=Diagnosis.Status.QUEUED, sent_at=now, started_at=None):
            _send_classification(pk)
            counts["requeued"] += 1
    counts["failed"] = orphaned.filter(attempts__gte=MAX_ORPHANED_ATTEMPTS).update(
        status=Diagnosis.Status.FAILED, error=MESSAGE_STOPPED, finished_at=now
    )
    if any(counts.values()):
        logger.warning("photos left without analysis: %(resent)d sent to the workers again, "
                       "%(requeued)d queued again after a worker died, %(failed)d failed", counts)
    return counts


def diagnoses_check_photos() -> dict:
    """Run the upload's photo check (ml.quality) on every stored photo and record what it finds:
    for photos uploaded before the check existed, or after its limits changed. Also see that each
    row's thumbnail and heatmap are in storage: after a restore, a row may name a file that the
    image backup lacks (pages would show a broken image). Returns the counts {"checked",
    "changed", "unreadable", "missing"}: photos unreadable or missing, and thumbnails and heatmaps
    missing, each logged with its diagnosis and left as it is."""
    counts = {"checked": 0, "changed": 0, "unreadable": 0, "missing": 0}
    for diagnosis in _every_photo():
        for kind in ("thumbnail", "heatmap"):
            named = getattr(diagnosis, kind)
            if named and not named.storage.exists(named.name):
                logger.warning("photo check: the %s of %s is missing from storage", kind, diagnosis.pk)
                counts["missing"] += 1
        try:
            with diagnosis.image.open("rb") as stored:
                found = photo_issues(to_rgb(stored))
        except (OSError, ImageError) as exc:
            logger.warning("photo check: the photo of %s cannot be read (%s)", diagnosis.pk, exc)
            counts["unreadable"] += 1
            continue
        counts["checked"] += 1
        if found != diagnosis.photo_issues:
            Diagnosis.objects.filter(pk=diagnosis.pk).update(photo_issues=found)
            counts["changed"] += 1
    return counts


# A file this young may be an upload's whose row is not committed yet (the files are written
# first): never taken for one that no row names.
ORPHAN_MIN_AGE = timedelta(hours=1)


def orphaned_files(*, delete: bool = False) -> list[str]:
    """The files in the photo folders (images/, thumbnails/, heatmaps/) that no diagnosis names,
    older than ORPHAN_MIN_AGE: left by a version that did not clean up after a full disk, or by
    a restore of images newer than the database. Each is a photo of a patient (a heatmap is one
    blended) that account deletion would never reach; with delete, they go. Logged by name."""
    named = set()
    for row in Diagnosis.objects.values_list("image", "thumbnail", "heatmap"):
        named.update(name for name in row if name)
    storage = Diagnosis._meta.get_field("image").storage
    cutoff = timezone.now() - ORPHAN_MIN_AGE
    orphans = []
    for folder in ("images", "thumbnails", "heatmaps"):
        try:
            _, files = storage.listdir(folder)
        except FileNotFoundError:  # no photo stored yet
            continue
        for filename in files:
            name = f"{folder}/{filename}"
            if name not in named and _older_than(storage, name, cutoff):
                orphans.append(name)
    for name in sorted(orphans):
        logger.warning("photo check: %s is named by no diagnosis%s", name, "; deleted" if delete else "")
        if delete:
            storage.delete(name)
    return sorted(orphans)


def _older_than(storage, name, cutoff) -> bool:
    """Whether the file was last written before cutoff; False for one gone since the folder was
    listed (the site and worker run beside the check: a refused upload's files, a re-run's old
    heatmap are deleted any time)."""
    try:
        return storage.get_modified_time(name) < cutoff
    except FileNotFoundError:
        return False


def _every_photo(page_size: int = 200):
    """Every diagnosis with its files and photo issues, read a page at a time by primary key,
    each page whole before its photos are checked. Not iterator(): its query stays open between photos,
    and on SQLite that open read makes the check's own UPDATE fail ("database is locked") once
    another process (the worker, an upload) has committed a write since it began."""
    photos = Diagnosis.objects.only("pk", "image", "thumbnail", "heatmap", "photo_issues").order_by("pk")
    page = list(photos[:page_size])
    while page:
        yield from page
        page = list(photos.filter(pk__gt=page[-1].pk)[:page_size])


def diagnosis_classify(*, diagnosis_id) -> Diagnosis | None:
    """Run the classifier on one diagnosis. Idempotent: a finished one is left alone.

    Raises TransientClassificationError (after putting the row back in the queue) for
    failures worth retrying, ModelUnavailable when the model cannot be loaded; any other
    failure ends as `failed` with a readable message.
    """
    try:
        claimed = diagnosis_claim(diagnosis_id=diagnosis_id)
    except DatabaseError as exc:  # nothing claimed, nothing to put back: the task's retry claims it
        logger.warning("transient failure claiming %s: %s", diagnosis_id, exc, exc_info=True)
        _forget_a_lost_connection(exc)
        raise TransientClassificationError(str(exc)) from exc
    if not claimed:
        logger.info("diagnosis %s is not queued; nothing to do", diagnosis_id)
        return None
    try:
        diagnosis = Diagnosis.objects.get(pk=diagnosis_id)
        image_bytes = _read_stored_photo(diagnosis)
        prediction, heatmap_png = _explain(image_bytes)
        if _store_result(diagnosis, prediction, heatmap_png):
            diagnosis.refresh_from_db()
            return diagnosis
    except Diagnosis.DoesNotExist:  # the patient deleted it since the claim: nothing went wrong
        logger.info("diagnosis %s was deleted while it was being classified", diagnosis_id)
    except StoredPhotoMissing:
        if Diagnosis.objects.filter(pk=diagnosis_id).exists():
            # The row names a file the storage does not hold (a backup restored without its
            # photos, a file deleted by hand): no retry brings it back, and it is the site's
            # fault, for whoever watches the ERROR lines.
            logger.exception("the stored photo of %s is missing", diagnosis_id)
            diagnosis_fail(diagnosis_id=diagnosis_id, message=MESSAGE_UNREADABLE)
        else:  # deleted with its row since the claim
            logger.info("diagnosis %s was deleted while it was being classified", diagnosis_id)
    except (DatabaseError, OSError) as exc:
        logger.warning("transient failure classifying %s: %s", diagnosis_id, exc, exc_info=True)
        _forget_a_lost_connection(exc)
        _give_back_the_claim(diagnosis_id)
        raise TransientClassificationError(str(exc)) from exc
    except ImageError:
        # The stored photo is one the site decoded and re-encoded itself: that it cannot be
        # decoded now is the site's fault (a preprocessing bug, storage that damaged it), not
        # the patient's, and must reach whoever watches the ERROR lines.
        logger.exception("the stored photo of %s cannot be decoded", diagnosis_id)
        diagnosis_fail(diagnosis_id=diagnosis_id, message=MESSAGE_UNREADABLE)
    except ModelArtifactError as exc:
        logger.error("the model artifact in %s is unusable, %s goes back to the queue: %s",
                     settings.ML_MODEL_DIR, diagnosis_id, exc)
        _give_back_the_claim(diagnosis_id)
        raise ModelUnavailable(str(exc)) from exc
    except Exception:
        logger.exception("classifying %s failed", diagnosis_id)
        diagnosis_fail(diagnosis_id=diagnosis_id, message=MESSAGE_UNEXPECTED)
    return None


class StoredPhotoMissing(Exception):
    """The storage holds no file by the name the diagnosis gives its photo."""


def _read_stored_photo(diagnosis: Diagnosis) -> bytes:
    """The stored photo's bytes; StoredPhotoMissing where its folder is there but the file is
    not. Any other OSError stays one, a missing folder included (a network share that went away):
    a storage that fails for a moment is worth a retry, a missing file is not."""
    try:
        with diagnosis.image.open("rb") as stored:
            return stored.read()
    except FileNotFoundError as exc:
        folder = posixpath.dirname(diagnosis.image.name)
        if diagnosis.image.storage.exists(folder):
            raise StoredPhotoMissing(diagnosis.image.name) from exc
        raise


# What a connection the database dropped (a restart, a failover, a network cut) raises: every
# later query on it fails the same way until it is closed and Django opens a new one.
CONNECTION_LOST = (OperationalError, InterfaceError)


def _forget_a_lost_connection(exc: Exception) -> None:
    """Close the worker's connection after exc if it may be dead, so that the next query (the
    claim given back, the retry's claim) opens a new one. Not inside a transaction: that
    connection and its transaction are the caller's to end."""
    if isinstance(exc, CONNECTION_LOST) and not connection.in_atomic_block:
        connection.close()


def _give_back_the_claim(diagnosis_id) -> None:
    """Back in the queue, the claim uncounted: attempts counts the workers that died on the
    photo (MAX_ORPHANED_ATTEMPTS), and this one did not. With the database still unreachable
    the row stays running, for diagnoses_recover_lost: the task retries all the same."""
    try:
        Diagnosis.objects.filter(pk=diagnosis_id, status=Diagnosis.Status.RUNNING).update(
            status=Diagnosis.Status.QUEUED, started_at=None, attempts=F("attempts") - 1
        )
    except DatabaseError as exc:
        logger.warning("could not put %s back in the queue: %s", diagnosis_id, exc)
        _forget_a_lost_connection(exc)


def _explain(image_bytes: bytes):
    from ml.inference import get_classifier

    return get_classifier(settings.ML_MODEL_DIR).explain(image_bytes)


def _store_result(diagnosis: Diagnosis, prediction, heatmap_png: bytes) -> bool:
    heatmap = _save_heatmap(diagnosis, heatmap_png)
    # update() on the running row, not save(): save() would re-insert a diagnosis the patient
    # deleted while it was being classified.
    try:
        stored = Diagnosis.objects.filter(pk=diagnosis.pk, status=Diagnosis.Status.RUNNING).update(
            heatmap=heatmap,
            probabilities={code: float(prediction.probabilities[code]) for code in CLASSES},
            malignant_probability=float(prediction.malignant_probability),
            predicted_class=prediction.predicted_class,
            risk=prediction.risk,
            model_version=prediction.model_version,
            status=Diagnosis.Status.DONE,
            finished_at=timezone.now(),
        )
    except DatabaseError:  # retried with a new heatmap: this one is deleted unless the row names it
        if heatmap and not _row_names_heatmap(diagnosis.pk, heatmap):
            _delete_files([diagnosis.heatmap])
        raise
    if not stored and heatmap:
        _delete_files([diagnosis.heatmap])
    return bool(stored)


def _row_names_heatmap(diagnosis_id, heatmap: str) -> bool:
    """Whether the row names heatmap: the update may have committed before its answer was lost
    (a connection dropped at that moment), and then the finished result shows this file. True
    when the database cannot say: an orphan is found by checkphotos, a deleted heatmap is gone."""
    try:
        return Diagnosis.objects.filter(pk=diagnosis_id, heatmap=heatmap).exists()
    except DatabaseError as exc:
        _forget_a_lost_connection(exc)
        return True


def _save_heatmap(diagnosis: Diagnosis, heatmap_png: bytes) -> str:
    """Store the heatmap; returns its name, or "" when the storage refused it (a full disk). The
    result is then stored without one, as pages and the API show it: the heatmap is an aid to
    reading it, and retrying the whole classification for it would end in MESSAGE_GAVE_UP."""
    try:
        _save_file(diagnosis.heatmap, f"{uuid.uuid4().hex}.png", heatmap_png)
    except OSError:
        logger.exception("the heatmap of %s could not be stored: its result is kept without one",
                         diagnosis.pk)
        return ""
    return diagnosis.heatmap.name


# --- Clinician review -------------------------------------------------------------------------

# Exactly what a clinician needs in the admin. change_diagnosis is needed to save the review
# form on the case page and to re-run a classification; the admin makes every Diagnosis field
# read-only, so it never lets anyone edit the model's output or the patient's photo.
REVIEWER_PERMISSIONS = (
    "view_diagnosis",
    "change_diagnosis",
    "view_mole",
    "view_review",
    "add_review",
    "change_review",
)
# The recommendation a clinician who agrees with the model gives by default, by risk band: never
# less pressing than the band's own advice (models.RISK_NEXT_STEP: medium sees a doctor within 4
# weeks, high a dermatologist within 2).
RECOMMENDATION_FOR_RISK = {
    Diagnosis.Risk.LOW: Review.Recommendation.ROUTINE,
    Diagnosis.Risk.MEDIUM: Review.Recommendation.DERMATOLOGIST_SOON,
    Diagnosis.Risk.HIGH: Review.Recommendation.DERMATOLOGIST_SOON,
}


def review_save(
    *, diagnosis: Diagnosis, reviewer, verdict: str, recommendation: str, label: str = "", note: str = "",
    notify: bool = True,
) -> Review:
    """Record (or correct) a clinician's review; stamps the reviewer and the time, and (unless
    notify is False, for a caller that notifies itself) queues the patient's e-mail.

    Agreeing means the clinician's label is the model's predicted class, whatever label is given
    (the review form refuses another); "cannot tell from this photo" (Review.Verdict.UNCLEAR)
    takes no label.
    """
    if diagnosis.status != Diagnosis.Status.DONE:
        raise ValueError("Only a finished diagnosis can be reviewed.")
    if verdict == Review.Verdict.UNCLEAR and label:
        raise ValueError("A review that cannot tell from the photo takes no label.")
    if verdict == Review.Verdict.AGREE:
        # Never "agree with the model · label: Melanoma" on an nv result (a label kept from a
        # review of an earlier result, before a re-run, included).
        label = diagnosis.predicted_class
    now = timezone.now()
    with transaction.atomic():
        _keep_the_review_it_corrects(diagnosis, now)
        review, created = Review.objects.update_or_create(
            diagnosis=diagnosis,
            defaults=_review_fields(diagnosis, reviewer, verdict, label, recommendation, note, now),
        )
    diagnosis.review = review
    if notify:
        _queue_review_notice([review], updated=not created)
    return review


def _keep_the_review_it_corrects(diagnosis: Diagnosis, now) -> None:
    """The review on file, if any, copied into ReviewRevision before a correction overwrites it:
    the patient may have read it (and been e-mailed about it). Its row locked until the save
    commits, so two corrections at once each keep the one they replace."""
    earlier = Review.objects.select_for_update().filter(diagnosis=diagnosis).first()
    if earlier is not None:
        ReviewRevision.of(earlier, superseded_at=now).save()


def _review_fields(diagnosis, reviewer, verdict, label, recommendation, note, now) -> dict:
    return {
        "reviewer": reviewer,
        # kept when the account is deleted
        "reviewer_name": reviewer.get_username() if reviewer is not None else "",
        "verdict": verdict,
        "label": label,
        "recommendation": recommendation,
        "note": note.strip(),
        "reviewed_at": now,
        "model_version": diagnosis.model_version,
    }


def _queue_review_notice(reviews: list[Review], *, updated: bool) -> None:
    """One e-mail, after the commit, for these reviews of one patient's checks."""
    pks = [review.pk for review in reviews]
    # robust: with the broker down the clinician's save stands (Django logs the failure), and
    # review_notices_recover queues the e-mail once the notice has been owed LOST_NOTICE_AFTER.
    transaction.on_commit(lambda: _send_review_notice(pks, updated), robust=True)


def _send_review_notice(pks: list, updated: bool) -> None:
    """Hand the e-mail about these reviews to the broker, then record it on them: a review
    whose notice_queued_at is still None, or older than its reviewed_at, is owed one."""
    from .tasks import send_review_notice

    send_review_notice.delay(pks, updated)
    Review.objects.filter(pk__in=pks).update(notice_queued_at=timezone.now())


# A review saved this long ago whose e-mail was never handed to the broker (it was down at the
# save) is owed one: the on_commit hand-over has long had its chance.
LOST_NOTICE_AFTER = timedelta(minutes=15)


def review_notices_recover() -> int:
    """Queue the e-mails owed for reviews saved over LOST_NOTICE_AFTER ago (see Review.
    notice_queued_at), one per patient, as review_agree_many does; run with
    diagnoses_recover_lost. Whether the patient is told is review_notify's to decide, as for
    any notice. Returns how many were queued; with the broker still down, none are (logged)."""
    from .tasks import send_review_notice

    owed = Review.objects.filter(Q(notice_queued_at__isnull=True) | Q(notice_queued_at__lt=F("reviewed_at")))
    late = (owed.filter(reviewed_at__lt=timezone.now() - LOST_NOTICE_AFTER)
            .order_by("reviewed_at").values_list("pk", "diagnosis__owner_id", "notice_queued_at"))
    by_patient = defaultdict(list)
    for pk, patient_id, queued_at in late:
        by_patient[patient_id].append((pk, queued_at))
    queued = 0
    for reviews in by_patient.values():
        pks = [pk for pk, _ in reviews]
        # Taken before the e-mail is queued, on the condition that they are still owed: a
        # sweep running beside this one (or a clinician's save of them) finds them taken.
        now = timezone.now()
        if not owed.filter(pk__in=pks).update(notice_queued_at=now):
            continue
        # "updated" as the clinician's save would have said: one review told of before
        updated = len(reviews) == 1 and reviews[0][1] is not None
        try:
            send_review_notice.delay(pks, updated)
        except Exception:
            for pk, queued_at in reviews:  # owed again, as they were
                Review.objects.filter(pk=pk, notice_queued_at=now).update(notice_queued_at=queued_at)
            logger.warning("review notices owed: still not queued (the broker is down?)", exc_info=True)
            break
        queued += 1
    if queued:
        logger.warning("%d review notice(s) queued that the broker had missed", queued)
    return queued


def review_notify(*, review_ids, updated: bool = False) -> bool:
    """E-mail the patient that a clinician has reviewed (or, for one check, updated the review
    of) one or more of their checks, in one e-mail, unless they have no address or turned these
    e-mails off. The e-mail holds links and no health data: what the clinician wrote is shown
    only after signing in. Returns whether an e-mail went out."""
    # a review deleted (with its diagnosis) before the worker got here is left out
    reviews = list(Review.objects.select_related("diagnosis__owner").filter(pk__in=review_ids)
                   .order_by("diagnosis__created_at"))
    if not reviews:
        return False
    patient = reviews[0].diagnosis.owner
    if any(review.diagnosis.owner_id != patient.pk for review in reviews):
        raise ValueError("one review notice is for the checks of one patient")
    if not review_notices_reach(patient):
        return False
    context = {
        "username": patient.username,
        "checks": [
            {"uploaded": review.diagnosis.created_at, "pressing": review.is_pressing,
             "url": settings.SITE_URL + reverse("diagnoses:detail", args=[review.diagnosis_id])}
            for review in reviews
        ],
        # How many ask the patient to act (see a dermatologist soon, urgent): the e-mail says so
        # first, though still not what the clinician wrote.
        "pressing": sum(review.is_pressing for review in reviews),
        "clinic_contact": settings.CLINIC_CONTACT,
        "updated": updated,
        "account_url": settings.SITE_URL + reverse("account"),
    }
    send_templated_mail("diagnoses/email/review_notice", context, patient.email)
    return True


def review_notices_reach(patient) -> bool:
    """Whether review_notify e-mails this patient: review e-mails on, and an active account with a
    confirmed address (User.objects.reachable_by_email): an address mistyped at sign-up may be a
    stranger's, and would learn when this patient's checks are reviewed."""
    return patient.review_emails and get_user_model().objects.reachable_by_email().filter(pk=patient.pk).exists()


# A mail server that cannot be reached, or stops answering (EMAIL_TIMEOUT): a daily batch stops
# at the first such failure and leaves the rest to its retry, rather than holding the worker
# (and the photos queued behind it) for a timeout per recipient. Any other failure, such as a
# recipient the server refuses (SMTPRecipientsRefused), is that recipient's alone.
MAIL_SERVER_DOWN = (ConnectionError, TimeoutError, socket.gaierror, smtplib.SMTPConnectError,
                    smtplib.SMTPServerDisconnected)


def photo_reminders_send(*, today: date | None = None) -> int:
    """E-mail every patient with moles due for a new photo (Mole.next_photo_due on or before
    today): one e-mail per patient, at most one per due date of each mole, to active accounts
    with a confirmed address. Returns how many e-mails went out. A mail server that fails leaves
    that patient's moles unreminded, for the task's retry (EmailsNotSent) or the next run."""
    today = today or timezone.localdate()
    patients = get_user_model().objects.reachable_by_email()  # active, address confirmed
    moles = (Mole.objects.with_last_photo().select_related("owner")
             .filter(recheck_months__isnull=False, owner__in=patients))
    due_by_patient = defaultdict(list)
    # Every mole due, reminded or not: the e-mail counts them all, as My moles marks them all
    # (Mole.photo_overdue), where a mole reminded of earlier and still without a photo would
    # have it say one when the page shows two.
    overdue = defaultdict(int)
    # A chunk at a time, keeping only the moles due: every mole with a reminder is read. The
    # loop writes nothing (the claims and e-mails come after it), so the open read is safe on
    # SQLite too (see _every_photo).
    for mole in moles.iterator(chunk_size=2000):
        due = mole.next_photo_due
        if due > today:
            continue
        overdue[mole.owner] += 1
        if mole.reminded_for is None or mole.reminded_for < due:
            due_by_patient[mole.owner].append((mole, due))
    recipients = [(patient, due_moles, overdue[patient]) for patient, due_moles in due_by_patient.items()]
    return _send_to_each(recipients, _send_photo_reminder, "photo reminder")


def _send_to_each(recipients: list[tuple], send_one, what: str) -> int:
    """A daily batch: send_one(user, *rest) for each (user, *rest) in recipients; it returns
    whether an e-mail went out, and on a failure gives its claim back and raises. Returns how
    many went out; raises EmailsNotSent, for the task's retry, when some did not."""
    with one_connection():  # the worker waits for one connection set-up, not one per e-mail
        sent, failed = _send_each(recipients, send_one, what)
    if failed:
        raise EmailsNotSent(sent, failed)
    return sent


def _send_each(recipients: list[tuple], send_one, what: str) -> tuple[int, int]:
    """_send_to_each's e-mails, one by one: how many went out, and how many did not."""
    sent = failed = 0
    for done, (user, *rest) in enumerate(recipients):
        try:
            sent += send_one(user, *rest)
        except MAIL_SERVER_DOWN:  # the others would wait for it too: left to the retry
            logger.warning("%s not sent from user %s on: the mail server is unreachable", what, user.pk,
                           exc_info=True)
            failed += len(recipients) - done
            break
        except Exception:  # this recipient's alone (an address the server or the library refuses)
            logger.warning("%s to user %s not sent", what, user.pk, exc_info=True)
            failed += 1
    return sent, failed


def _send_photo_reminder(patient, due_moles: list[tuple[Mole, date]], due_count: int) -> bool:
    """Claim each mole's due date first (a conditional update, so that two runs at once send
    one e-mail), then send, saying how many moles are due (due_count: those reminded of before
    and still due too); on a mail failure, give the claims back and raise it. Returns whether an
    e-mail went out (none when another run claimed them all)."""
    claimed = []
    for mole, due in due_moles:
        not_yet = Q(reminded_for__isnull=True) | Q(reminded_for__lt=due)
        if Mole.objects.filter(not_yet, pk=mole.pk).update(reminded_for=due):
            claimed.append((mole, due))
    if not claimed:
        return False
    context = {
        "username": patient.username,
        "count": due_count,
        "moles_url": settings.SITE_URL + reverse("diagnoses:moles"),
    }
    try:
        send_templated_mail("diagnoses/email/photo_reminder", context, patient.email)
    except Exception:
        for mole, due in claimed:
            Mole.objects.filter(pk=mole.pk, reminded_for=due).update(reminded_for=mole.reminded_for)
        raise
    return True


def case_hold(diagnosis_id) -> None:
    """Lock the case's row until the current transaction ends, so that reviews of one case are
    saved one after the other: whoever comes second sees the first's review when it checks for
    one (the desk's form, review_agree_many). Postgres; SQLite locks the whole database on write."""
    list(Diagnosis.objects.select_for_update().filter(pk=diagnosis_id).only("pk"))


class Skip(enum.Enum):
    """Why agreeing with the model left a case alone (review_agree_many counts them): the desk
    tells the clinician what to do with each."""

    NEEDS_A_LOOK = "needs a look"  # needs_a_look: for a review one by one, at the desk's form
    EARLIER_RESULT = "reviewed an earlier result"  # its review is to be saved again, of this one
    FAILED = "failed"  # nothing to review: a re-run, or a new photo from the patient
    NOT_DONE_OR_REVIEWED = "not done or reviewed"  # queued, running or deleted; or reviewed


def _agree_or_skip(*, diagnosis: Diagnosis, reviewer) -> Review | Skip:
    """The agreement saved, recommending what suggested_recommendation gives, its patient not
    told yet (review_agree_many tells each once); or why none was (Skip): the case as it is now,
    under its lock, is failed, not done, has a review already (even one saved a moment ago:
    never overwritten), or needs_a_look."""
    with transaction.atomic():
        case_hold(diagnosis.pk)
        # As it is now, not as the list loaded it: a re-run queued meanwhile has no result to agree
        # with, and the review must carry the model version of the result it agrees with. Its
        # review comes in the same query, read after the hold: one saved meanwhile is seen.
        diagnosis = Diagnosis.objects.filter(pk=diagnosis.pk).select_related("owner", "mole", "review").first()
        if skip := _why_no_agreement(diagnosis):
            return skip
        previous = diagnosis.previous_photo_rated_higher()  # a query: asked once, for both below
        if needs_a_look(diagnosis, previous):
            return Skip.NEEDS_A_LOOK
        return review_save(
            diagnosis=diagnosis,
            reviewer=reviewer,
            verdict=Review.Verdict.AGREE,
            recommendation=suggested_recommendation(diagnosis, previous)[0],
            notify=False,
        )


def _why_no_agreement(diagnosis: Diagnosis | None) -> Skip | None:
    """Why no agreement can be saved for the case as it is now (None: deleted meanwhile), with
    its review loaded; None when one can. A failed case says so even with a review (of the
    result before a re-run that failed): what it needs is a re-run or a new photo."""
    if diagnosis is None:
        return Skip.NOT_DONE_OR_REVIEWED
    if diagnosis.status == Diagnosis.Status.FAILED:
        return Skip.FAILED
    if diagnosis.status != Diagnosis.Status.DONE:
        return Skip.NOT_DONE_OR_REVIEWED
    review = diagnosis.review_or_none
    if review is None:
        return None
    return Skip.EARLIER_RESULT if review.is_of_an_earlier_result else Skip.NOT_DONE_OR_REVIEWED


def needs_a_look(diagnosis: Diagnosis, previous: Diagnosis | None) -> bool:
    """A finished, unreviewed result that agreeing in bulk must not settle: its photo failed the
    upload check, a low band the model is least sure of (a palm or sole: the patient is told to
    see a doctor), or an earlier photo of the mole leads its advice, by its higher band or its
    clinician's review (previous: the caller's diagnosis.previous_photo_rated_higher(), a query it
    makes once)."""
    return bool(diagnosis.photo_issues) or bool(diagnosis.low_risk_unreliable_advice) or previous is not None


def suggested_recommendation(diagnosis: Diagnosis, previous: Diagnosis | None) -> tuple[str, str]:
    """(recommendation, why) that agreeing with the model gives, never less than the patient is
    told without a review: the band's (RECOMMENDATION_FOR_RISK), the higher band's of the mole's
    earlier photo whose advice leads (previous: the caller's diagnosis.previous_photo_rated_higher()),
    or that photo's review's recommendation when it leads by it, a dermatologist soon for a low
    result on a palm or sole (LOW_RISK_ACRAL_ADVICE)."""
    if previous is not None and previous.judged_by_a_clinician:  # it leads by its review: never less than that
        review = previous.current_review
        return (review.recommendation,
                f"as a clinician's review of an earlier photo of the mole asks "
                f"\"{review.get_recommendation_display()}\"")
    if previous is not None:
        return (RECOMMENDATION_FOR_RISK[previous.risk],
                f"as an earlier photo of the mole was rated {previous.get_risk_display().lower()} risk")
    if diagnosis.low_risk_unreliable_advice == LOW_RISK_ACRAL_ADVICE:
        return Review.Recommendation.DERMATOLOGIST_SOON, "for a low result on a palm or sole"
    recommendation = RECOMMENDATION_FOR_RISK.get(diagnosis.risk, Review.Recommendation.MONITOR)
    return recommendation, f"for {diagnosis.get_risk_display().lower()} risk"


class BulkAgreement(NamedTuple):
    """review_agree_many's answer: the reviews made, and how many cases it left alone for each
    reason."""

    reviews: list[Review]
    skipped: Counter  # of Skip


def review_agree_many(*, diagnoses, reviewer) -> BulkAgreement:
    """Agree with the model on each diagnosis, recommending what its risk band suggests
    (suggested_recommendation), leaving out those that need_a_look; then one e-mail per patient
    for all of their checks reviewed here, not one per check. Returns the reviews made, with why
    the others were left (each decided once, as the case was when its turn came: _agree_or_skip)."""
    reviews, skipped = [], Counter()
    for diagnosis in diagnoses:
        agreed = _agree_or_skip(diagnosis=diagnosis, reviewer=reviewer)
        if isinstance(agreed, Review):
            reviews.append(agreed)
        else:
            skipped[agreed] += 1
    by_patient = defaultdict(list)
    for review in reviews:
        by_patient[review.diagnosis.owner_id].append(review)
    for patient_reviews in by_patient.values():
        _queue_review_notice(patient_reviews, updated=False)
    return BulkAgreement(reviews, skipped)


def staff_access_record(*, staff, patient, record: str, diagnosis=None, mole=None) -> StaffAccess | None:
    """Record that staff opened one of patient's records at the review desk (StaffAccess), unless
    it is the staff member's own record or they opened the same one within STAFF_ACCESS_COALESCE.
    Returns the new row, or None."""
    if staff.pk == patient.pk:
        return None
    target = {"staff": staff, "patient": patient, "record": record, "diagnosis": diagnosis, "mole": mole}
    if StaffAccess.objects.filter(**target, at__gte=timezone.now() - STAFF_ACCESS_COALESCE).exists():
        return None
    # A record deleted meanwhile (by the patient, while a clinician saved its review: the desk
    # shows the page again with the form's message) is not opened: its row would fail the
    # foreign key at commit, a server error in place of that message.
    for model, opened in ((Diagnosis, diagnosis), (Mole, mole)):
        if opened is not None and not model.objects.filter(pk=opened.pk).exists():
            return None
    return StaffAccess.objects.create(**target, staff_name=staff.get_full_name() or staff.get_username())


def review_queue_digest_send(*, today: date | None = None) -> int:
    """E-mail each clinician (an active reviewer, User.objects.reviewers(), with a confirmed
    address and queue_emails on) how many finished results wait for review, by risk band, and
    since when, and apart from them, as a heads-up, how many photos failed since the day before's
    count and still wait (previous_daily_count), with a link to the queue; nothing when neither.
    Once a day each: a second run on the same day (a redelivered task, a second beat, the retry
    after a mail failure, EmailsNotSent) sends only to those not told yet. Returns how many e-mails
    went out."""
    today = today or timezone.localdate()
    waiting = Diagnosis.objects.awaiting_review()
    # By the rank the queue orders by (QUEUE_RANK); finished results only, so none failed.
    counts = dict(waiting.annotate(rank=QUEUE_RANK).values_list("rank").annotate(n=Count("pk")).order_by())
    total = sum(counts.values())
    since = previous_daily_count(today)
    failed = Diagnosis.objects.filter(FAILED_WAITING, finished_at__gte=since).count()
    if not total and not failed:
        return 0
    oldest = waiting.order_by("finished_at").values_list("finished_at", flat=True).first()
    queue_url = settings.SITE_URL + reverse("admin:diagnoses_diagnosis_changelist")
    context = {
        "total": total,
        "bands": [(band.label, counts.get(rank, 0)) for band, rank in RISK_RANKS.items()],
        "oldest": oldest,
        "failed": failed,
        "failed_since": since,
        "queue_url": queue_url,
        "failed_url": f"{queue_url}?{FAILED_FILTER}",
        "account_url": settings.SITE_URL + reverse("account"),
    }
    clinicians = (get_user_model().objects.reviewers().reachable_by_email()
                  .filter(queue_emails=True))
    return _send_to_each([(clinician, context, today) for clinician in clinicians], _send_queue_digest,
                         "review queue digest")


def previous_daily_count(today: date):
    """When the daily e-mails of the clinic's day before today were due: DAILY_EMAILS_HOUR on the
    clinic's clock. The count's heads-up takes the failures since then: a failure is in the next
    count whenever this one runs (late, behind the reminders, or after a retry), and the 23 or 25
    hours of a day the clocks change are counted as they are (a fixed 24 hours lost the first
    hour of the 25, and told twice the last of the 23). An old failure, still first in the
    queue, is not mailed to everyone daily."""
    day_before = datetime.combine(today - timedelta(days=1), time(hour=settings.DAILY_EMAILS_HOUR))
    return timezone.make_aware(day_before)


def _send_queue_digest(clinician, context: dict, today: date) -> bool:
    """Claim today's digest for the clinician first (a conditional update, so that runs in other
    processes see it), then send; on a failure, give the claim back and raise. Returns whether
    an e-mail went out (none when another run claimed it)."""
    users = get_user_model().objects
    if not users.filter(pk=clinician.pk).exclude(queue_email_sent_on=today).update(queue_email_sent_on=today):
        return False
    try:
        send_templated_mail("diagnoses/email/review_queue", {**context, "username": clinician.username},
                            clinician.email)
    except Exception:
        users.filter(pk=clinician.pk, queue_email_sent_on=today).update(
            queue_email_sent_on=clinician.queue_email_sent_on)  # given back, for the retry
        raise
    return True


def review_agreement() -> list[dict]:
    """How the model's results compare with what clinicians read in the same photos, per model
    version, the most recently reviewed first. Only reviews of the result they read count (not
    those of a result a re-run has since replaced). Rates are None where nothing was counted."""
    # Each review as a row of the few columns the figures read, not as a Review and its
    # Diagnosis: every review ever saved is read, and as objects they took seconds and hundreds
    # of megabytes at clinic scale.
    reviews = (
        Review.objects.filter(diagnosis__status=Diagnosis.Status.DONE)
        .filter(model_version=F("diagnosis__model_version")).exclude(model_version="")
        .order_by("-reviewed_at")
        .annotate(risk=F("diagnosis__risk"), predicted_class=F("diagnosis__predicted_class"),
                  malignant_probability=F("diagnosis__malignant_probability"),
                  photo_issues=F("diagnosis__photo_issues"))
        .values_list("model_version", "verdict", "label", "reviewed_at", "risk", "predicted_class",
                     "malignant_probability", "photo_issues", named=True)
    )
    by_version = defaultdict(list)  # keeps the order of each version's latest review
    for review in reviews:
        by_version[review.model_version].append(review)
    return [_agreement_figures(version, version_reviews) for version, version_reviews in by_version.items()]


def _share(hits, of):
    return float(np.mean(hits)) if len(of) else None


def _agreement_figures(version: str, reviews: list) -> dict:
    """One version's figures from review_agreement's rows (a review's fields and its diagnosis'
    risk, predicted_class, malignant_probability and photo_issues), the latest review first."""
    judged = [review for review in reviews if review.verdict != Review.Verdict.UNCLEAR]
    labelled = [review for review in judged if review.label]
    malignant = np.array([review.label in MALIGNANT for review in labelled], dtype=bool)
    risks = np.array([review.risk for review in labelled])
    probabilities = np.array([review.malignant_probability for review in labelled], dtype=float)
    poor_photo = np.array([bool(review.photo_issues) for review in labelled], dtype=bool)
    rated_up = np.isin(risks, ["medium", "high"])
    confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)  # clinician's label x model's class
    for review in labelled:
        confusion[CLASSES.index(review.label), CLASSES.index(review.predicted_class)] += 1
    auc = malignant_auc(probabilities, malignant) if labelled else float("nan")
    return {
        "version": version,
        "reviews": len(reviews),
        "last_reviewed_at": reviews[0].reviewed_at,
        # of the reviews with a verdict: a photo the clinician could not read says nothing of the model
        "unclear": len(reviews) - len(judged),
        "verdict_agree": _share([r.verdict == Review.Verdict.AGREE for r in judged], judged),
        "labelled": len(labelled),
        "same_class": _share([r.label == r.predicted_class for r in labelled], labelled),
        "malignant": int(malignant.sum()),
        "benign": int((~malignant).sum()),
        # the risk bands against the clinicians' malignant labels: sensitivity and specificity
        "malignant_flagged": _share(rated_up[malignant], risks[malignant]),
        "malignant_high": _share(risks[malignant] == "high", risks[malignant]),
        # the same on photos that passed the photo check and on those it flagged: whether, in
        # this clinic's photos too, the flagged ones hide malignant moles from the model
        "malignant_passed_photo": int((malignant & ~poor_photo).sum()),
        "malignant_flagged_passed_photo": _share(rated_up[malignant & ~poor_photo], risks[malignant & ~poor_photo]),
        "malignant_poor_photo": int((malignant & poor_photo).sum()),
        "malignant_flagged_poor_photo": _share(rated_up[malignant & poor_photo], risks[malignant & poor_photo]),
        "benign_low": _share(risks[~malignant] == "low", risks[~malignant]),
        "malignant_auc": None if math.isnan(auc) else auc,
        "confusion": confusion.tolist(),
    }


def reviewers_group_ensure(using=DEFAULT_DB_ALIAS):
    """Create the Reviewers group if needed and give it exactly REVIEWER_PERMISSIONS, in the
    database using (the one `migrate --database` migrated, after it)."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.using(using).get_or_create(name=REVIEWERS_GROUP)
    permissions = Permission.objects.using(using).filter(content_type__app_label="diagnoses",
                                                         codename__in=REVIEWER_PERMISSIONS)
    group.permissions.set(permissions)
    return group


def reviewer_create(*, username: str, email: str = "", password: str):
    """Create a staff account in the Reviewers group (never a superuser)."""
    from django.contrib.auth import get_user_model

    with transaction.atomic():
        group = reviewers_group_ensure()
        user = get_user_model().objects.create_user(username=username, email=email, password=password, is_staff=True)
        user.groups.add(group)
    return user
