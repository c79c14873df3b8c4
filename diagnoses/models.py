import calendar
import unicodedata
import uuid
from datetime import date, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from ml import CLASS_NAMES, CLASSES

# HAM10000's localisation list, so that a patient's body site means what the data means.
BODY_SITES = [
    ("abdomen", "Abdomen"),
    ("acral", "Acral (palms, soles)"),
    ("back", "Back"),
    ("chest", "Chest"),
    ("ear", "Ear"),
    ("face", "Face"),
    ("foot", "Foot"),
    ("genital", "Genital"),
    ("hand", "Hand"),
    ("lower extremity", "Leg"),
    ("neck", "Neck"),
    ("scalp", "Scalp"),
    ("trunk", "Trunk"),
    ("upper extremity", "Arm"),
    ("unknown", "Other / not sure"),
]
CLASS_CHOICES = [(code, CLASS_NAMES[code]) for code in CLASSES]

# An analysis takes seconds; one still pending after this is late.
LATE_AFTER = timedelta(minutes=1)

# Signs that need a doctor whatever a photo's estimate: the low band's advice sends them there,
# not back to the app for another photo.
WARNING_SIGNS = "changes in size, shape or colour, bleeds, itches or is new in adulthood"

# What to do at each risk band. RISK_ADVICE opens it with the band; a sentence that has just
# named the band (the mole page's "went up to high risk") takes the step alone.
RISK_NEXT_STEP = {
    "low": f"Keep an eye on it: look at it once a month, and see a doctor if it {WARNING_SIGNS}, "
    "whatever this estimate says.",
    "medium": "Have it looked at by a doctor or dermatologist within the next 4 weeks.",
    "high": "Please see a dermatologist within 2 weeks; bring this result with you.",
}
RISK_ADVICE = {risk: f"{risk.capitalize()} estimated risk. {step}"
               for risk, step in RISK_NEXT_STEP.items()}
RISK_COLOURS = {"low": "success", "medium": "warning", "high": "danger"}
RISK_ORDER = {"low": 0, "medium": 1, "high": 2}

# What ml.quality found wrong with a photo, as the patient reads it ("This photo looks ...").
# Hyphenated: joined to another issue by "and", "black and white" read as two issues of three.
PHOTO_ISSUE_NAMES = {"dark": "too dark", "bright": "too bright", "blurry": "out of focus",
                     "grey": "black-and-white"}
PHOTO_RETAKE_TIP = ("Take a new photo in colour, in good, even light (daylight, no flash, out of "
                    "direct sun), holding the phone steady until the mole is sharp.")
# A low result from such a photo replaces RISK_ADVICE["low"]: on photos darker, blurrier or
# greyer than the model's training photos, it rates malignant moles lower (see ml.quality). How
# to take a better photo is photo_advice's, shown beside it.
LOW_RISK_POOR_PHOTO_ADVICE = (
    "The estimated risk is low, but the photo is not good enough to rely on that: take a better one "
    f"and upload it. Until then, see a doctor if the mole {WARNING_SIGNS}."
)
# Body sites (BODY_SITES codes) of palms and soles: 7 of HAM10000's 10,015 photos ("foot" and
# "hand", 276 and 81, are the rest of them). A low result there replaces RISK_ADVICE["low"],
# and LOW_RISK_POOR_PHOTO_ADVICE too: this asks more.
ACRAL_BODY_SITES = {"acral"}
LOW_RISK_ACRAL_ADVICE = (
    "The estimated risk is low, but the model is least reliable on palms, soles and nails: it "
    "learned from very few photos of them. Have this mole checked by a doctor."
)
# How pressing a clinician's recommendation is, on RISK_ORDER's scale: above a band's number it
# asks more than that band's advice (dermatologist_soon over low; urgent, "see a doctor now",
# over every band, high's "within 2 weeks" included). The review queue ranks a standing review of
# an earlier result by it (services.EARLIER_REVIEW_RANKS), as next_step has the patient follow one.
RECOMMENDATION_ORDER = {"dermatologist_soon": 1, "urgent": 3}


MOLE_NAME_TAKEN = "You already track a mole with this name."
MOLE_NAME_MAX_LENGTH = 80  # Mole.name's max_length
# What a mole name drops besides control characters: the invisible format characters no script
# needs (soft hyphen, zero-width space, word joiners, byte-order mark, the bidi marks, embeddings
# and overrides that would flip the text after the name). Not every format character: Persian
# needs the zero-width non-joiner, emoji sequences the zero-width joiner and tag characters.
INVISIBLE_IN_MOLE_NAMES = frozenset(
    "\u00ad\u061c\u180e\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff\ufff9\ufffa\ufffb")


def normalise_mole_name(name: str) -> str:
    """A mole name as stored: without control characters or INVISIBLE_IN_MOLE_NAMES, composed
    (NFC, so "Café" typed either way is one name), stripped. "" for a name of nothing visible,
    which the forms and the API then take as they take an empty name."""
    visible = "".join(char for char in name
                      if unicodedata.category(char) != "Cc" and char not in INVISIBLE_IN_MOLE_NAMES)
    return unicodedata.normalize("NFC", visible).strip()


def check_mole_name_length(name: str) -> None:
    """Raise a ValidationError for a normalised name longer than the column: composing can
    lengthen a name that passed the field's own check (U+0958 decomposes into two characters)."""
    MaxLengthValidator(MOLE_NAME_MAX_LENGTH)(name)


def clean_mole_name(name: str, *, owner, exclude_pk=None, taken_message: str = MOLE_NAME_TAKEN) -> str:
    """A mole name as the forms and the API take it: normalised (normalise_mole_name), refused
    with a ValidationError when composing made it too long (check_mole_name_length) or when the
    owner already tracks another mole by it in any case (name_taken; taken_message, code "unique").
    "" for a name of nothing visible, unchecked: each caller says what no name means (an untracked
    photo, or a required field)."""
    name = normalise_mole_name(name)
    if name:
        check_mole_name_length(name)
        if Mole.objects.name_taken(owner=owner, name=name, exclude_pk=exclude_pk):
            raise ValidationError(taken_message, code="unique")
    return name


def mole_name_key(name: str) -> str:
    """What two names that look the same share: the normalised name, case folded."""
    return unicodedata.normalize("NFC", normalise_mole_name(name).casefold())

# How often a patient may ask to be reminded to photograph a mole again, in months.
RECHECK_CHOICES = [(1, "Every month"), (3, "Every 3 months"), (6, "Every 6 months"), (12, "Every year")]


def add_months(day: date, months: int) -> date:
    """The same day of the month, months later; the month's last day where it is shorter
    (31 January + 1 month = 28 or 29 February)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


class MoleQuerySet(models.QuerySet):
    def name_taken(self, *, owner, name: str, exclude_pk=None) -> bool:
        """Whether the owner already tracks another mole by this name, in any case (mole_name_key;
        names are per owner). Compared here, not in SQL: SQLite lowers ASCII letters only."""
        key = mole_name_key(name)
        names = self.filter(owner=owner).exclude(pk=exclude_pk).values_list("name", flat=True)
        return any(mole_name_key(other) == key for other in names)

    def with_last_photo(self):
        """Annotates last_photo_at (the newest photo's upload time, or None; see
        photos_that_count), which Mole.next_photo_due reads without a query of its own."""
        return self.annotate(last_photo_at=models.Max("diagnoses__created_at",
                                                      filter=photos_that_count("diagnoses__")))


def photos_that_count(prefix: str = "") -> models.Q:
    """The photos that move a mole's photo reminder: all but those whose analysis failed, which
    ask the patient for another photo (a queued one is a photo taken, its result on the way)."""
    return ~models.Q(**{f"{prefix}status": "failed"})


class Mole(models.Model):
    """A lesion a patient follows over time; each photo of it is a Diagnosis."""

    objects = MoleQuerySet.as_manager()

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="moles")
    name = models.CharField(max_length=MOLE_NAME_MAX_LENGTH)
    body_site = models.CharField(max_length=20, choices=BODY_SITES, default="unknown")
    created_at = models.DateTimeField(auto_now_add=True)
    recheck_months = models.PositiveSmallIntegerField(
        "photo reminder", choices=RECHECK_CHOICES, null=True, blank=True,
        help_text="Months after the last photo when a reminder is e-mailed (1, 3, 6 or 12); null: no reminders.",
    )
    # The due date the last reminder was sent for: one e-mail per due date, and a new photo
    # (which moves the due date) makes the next one possible.
    reminded_for = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        # Alphabetical whatever the case ("apple" before "Zed"; SQLite, or a "C" collation, sorts
        # "name" alone by code point), ties by name: the admin, the upload form's and the history
        # filter's choices. A query with an aggregate drops it: the mole lists order_by the same.
        ordering = [Lower("name"), "name"]
        # In any case; the forms and the API (name_taken) also fold case beyond ASCII, which
        # SQLite's LOWER does not (Postgres's does, by the database's locale).
        constraints = [
            models.UniqueConstraint(Lower("name"), "owner", name="unique_mole_name_per_owner_any_case"),
        ]

    def __str__(self):
        return f"{self.name} ({self.get_body_site_display()})"

    def get_absolute_url(self):
        return reverse("diagnoses:mole", args=[self.pk])

    @property
    def next_photo_due(self) -> date | None:
        """The day a new photo is due: recheck_months after the last photo (photos_that_count;
        after the mole was created, while it has none), in the site's time zone; None without
        reminders."""
        if not self.recheck_months:
            return None
        if not hasattr(self, "last_photo_at"):
            self.last_photo_at = self.diagnoses.filter(photos_that_count()).aggregate(
                last=models.Max("created_at"))["last"]
        since = self.last_photo_at or self.created_at
        return add_months(timezone.localdate(since), self.recheck_months)

    @property
    def photo_overdue(self) -> bool:
        due = self.next_photo_due
        return due is not None and due <= timezone.localdate()


def is_reviewed():
    """Whether a diagnosis has a review of the result shown now, as a query expression. After a
    re-run with another model version the clinician's review (kept, with its note) is of an
    earlier result, so the case counts as unreviewed again."""
    return models.Exists(
        Review.objects.filter(diagnosis=models.OuterRef("pk")).filter(
            models.Q(model_version="") | models.Q(model_version=models.OuterRef("model_version"))
        )
    )


# The Mole attribute DiagnosisQuerySet.with_photos_before fills: its finished photos, oldest first.
MOLE_FINISHED_PHOTOS = "finished_photos"


class DiagnosisQuerySet(models.QuerySet):
    def awaiting_review(self):
        """Finished results no clinician has reviewed (is_reviewed)."""
        return self.filter(~is_reviewed(), status=Diagnosis.Status.DONE)

    def late(self):
        """The pending diagnoses that Diagnosis.is_late calls late, in one query."""
        cutoff = timezone.now() - LATE_AFTER
        waiting_since_queued = models.Q(status=Diagnosis.Status.QUEUED) | models.Q(
            status=Diagnosis.Status.RUNNING, started_at__isnull=True
        )
        # status__in as well, though the rest implies it: it lets the database find the few
        # pending rows through diagnosis_queue_idx (the queue counts them on every load) rather
        # than read every row.
        return self.filter(status__in=[Diagnosis.Status.QUEUED, Diagnosis.Status.RUNNING]).filter(
            (waiting_since_queued & models.Q(queued_at__lt=cutoff))
            | models.Q(status=Diagnosis.Status.RUNNING, started_at__lt=cutoff)
        )

    def with_photos_before(self):
        """Prefetches the finished photos of each row's mole, with their reviews, in one query:
        next_step reads each row's photo before from them (Diagnosis.photo_before), where a list
        would otherwise ask for it row by row."""
        finished = (Diagnosis.objects.filter(status=Diagnosis.Status.DONE).select_related("review")
                    .order_by("created_at", "pk"))  # as earlier_photos_of_mole
        return self.prefetch_related(models.Prefetch("mole__diagnoses", queryset=finished,
                                                     to_attr=MOLE_FINISHED_PHOTOS))


class Diagnosis(models.Model):
    objects = DiagnosisQuerySet.as_manager()

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Risk(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="diagnoses")
    mole = models.ForeignKey(Mole, null=True, blank=True, on_delete=models.SET_NULL, related_name="diagnoses")
    image = models.FileField(upload_to="images/")
    thumbnail = models.FileField(upload_to="thumbnails/")
    heatmap = models.FileField(upload_to="heatmaps/", blank=True)
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the uploaded file as received.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.CharField(max_length=300, blank=True, help_text="Shown to the patient when status is failed.")
    created_at = models.DateTimeField("uploaded", auto_now_add=True)  # the label the review desk shows
    # The start of the patient's wait, read by is_late, DiagnosisQuerySet.late and /healthz (check_queue): set by
    # an upload or a re-run only. The check for lost photos sending the task again keeps it (a clock restarted at
    # each resend would hide a backlog the workers never catch up with), as does queuing again a photo whose
    # worker died: that analysis gave the patient no result, so their wait goes on. sent_at says when to resend.
    queued_at = models.DateTimeField(
        default=timezone.now,
        help_text="When it went into the queue: upload or re-run. A resend, or a re-queue after a worker died, "
                  "keeps it: the patient's wait goes on.")
    # Read by the check for lost photos alone (services.diagnoses_recover_lost): it sends the task again
    # once LOST_QUEUED_AFTER has passed since, and sets it then.
    sent_at = models.DateTimeField(
        default=timezone.now,
        help_text="When its task was last sent to the workers: upload, re-run, or the check for lost photos.")
    started_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times a worker has started on it since it was last queued by hand.")
    finished_at = models.DateTimeField(null=True, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    probabilities = models.JSONField(default=dict, blank=True)
    malignant_probability = models.FloatField(null=True, blank=True)
    predicted_class = models.CharField(max_length=5, choices=CLASS_CHOICES, blank=True)
    risk = models.CharField(max_length=6, choices=Risk.choices, blank=True)
    photo_issues = models.JSONField(
        default=list, blank=True,
        help_text='What the upload check found wrong with the photo: "dark", "bright", "blurry", '
                  '"grey" (ml.quality).')

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "diagnoses"
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="diagnosis_history_idx"),
            # Also how /healthz and the check for lost photos find the few queued rows (status first): their
            # queued_at and sent_at are read from those rows alone, so neither needs an index of its own.
            models.Index(fields=["status", "risk"], name="diagnosis_queue_idx"),
            # The review queue's model version filter lists the distinct versions on every load:
            # read from this index, not from every row. (An Index, not db_index: on Postgres that
            # would add a second, LIKE index no query here uses.)
            models.Index(fields=["model_version"], name="diagnosis_version_idx"),
            # A mole's finished photos in time order, for the photos before a case's, which the
            # review queue looks up for each case it sorts (services.EARLIER_RANK: mole, status
            # done, created_at before): a range of this index, not a scan of every photo. Also
            # the photos before one on the patient's pages (earlier_photos_of_mole,
            # with_photos_before).
            models.Index(fields=["mole", "status", "created_at", "id"], name="diagnosis_mole_photos_idx"),
        ]

    def __str__(self):
        # What the review desk's case heading, breadcrumbs and admin log show: whose photo, when.
        uploaded = self.uploaded_text if self.created_at else "not saved"
        return f"{self.owner.get_username()}'s photo of {uploaded} ({self.get_status_display().lower()})"

    @property
    def uploaded_text(self) -> str:
        """When the photo was uploaded, as the pages write a time (DATETIME_FORMAT, TIME_ZONE)."""
        return date_format(timezone.localtime(self.created_at), "DATETIME_FORMAT")

    def get_absolute_url(self):
        return reverse("diagnoses:detail", args=[self.pk])

    @property
    def is_pending(self):
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def review_or_none(self):
        try:
            return self.review
        except Review.DoesNotExist:
            return None

    @property
    def current_review(self):
        """The clinician's review of the result shown now, or None. A review of an earlier result
        (Review.is_of_an_earlier_result: before a re-run with another model) is history: it
        counts as no review, as at the review desk (is_reviewed)."""
        review = self.review_or_none
        return None if review is None or review.is_of_an_earlier_result else review

    @property
    def new_photo_asked_for(self) -> bool:
        """A clinician reviewing this photo asked for a new one (Review.Recommendation.NEW_PHOTO)."""
        review = self.review_or_none
        return review is not None and review.asks_for_new_photo

    def previous_photo_rated_higher(self):
        """The earlier photo whose advice leads this one's (leading_earlier_photo), or None."""
        return self.leading_earlier_photo()[0]

    def leading_earlier_photo(self) -> tuple["Diagnosis | None", bool]:
        """(photo, whether it is the photo just before this one): the mole's earlier photo whose
        advice asks more than this one's band, when no clinician has reviewed this one; else
        (None, False). A lower estimate now does not cancel an earlier, higher one: the model can
        rate photos of one mole quite differently, and a lower photo after it does not either.
        So it is the highest-rated photo no clinician has judged since the last one a clinician
        judged (a review that could not tell from the photo, or of an earlier result, leaves a
        photo unjudged: current_review), the latest of them on a tie; or that judged photo, when
        its review asks more still (advice_order: urgent; a dermatologist soon against low),
        which stands until a clinician judges a later photo."""
        if self.status != self.Status.DONE or self.risk not in RISK_ORDER or self.current_review is not None:
            return None, False
        earlier = self.photos_before()
        leading, asked = None, RISK_ORDER[self.risk]
        for photo in reversed(earlier):  # newest first, back to the last photo a clinician judged
            if photo.advice_order > asked:
                leading, asked = photo, photo.advice_order
            if photo.judged_by_a_clinician:
                break
        return leading, leading is not None and leading == earlier[-1]

    @property
    def advice_order(self) -> int:
        """How much this photo's own advice asks, on RISK_ORDER's scale: its clinician's
        recommendation when one judged it (RECOMMENDATION_ORDER; -1, less than any band, when not
        pressing), else its band's (-1 without one)."""
        if self.judged_by_a_clinician:
            return RECOMMENDATION_ORDER.get(self.current_review.recommendation, -1)
        return RISK_ORDER.get(self.risk, -1)

    @property
    def judged_by_a_clinician(self) -> bool:
        """A clinician reviewed this result and could tell: their reading, not the model's band,
        is what the patient follows (a review that could not tell from the photo leaves it, as
        does a review of an earlier result: current_review)."""
        review = self.current_review
        return review is not None and review.verdict != Review.Verdict.UNCLEAR

    @property
    def advice_as_leader(self) -> "LeaderAdvice":
        """What this photo asks of the later photos it leads (leading_earlier_photo), in the words
        of the pages that say an act of the patient's ends it: its clinician's recommendation once
        one judged it, else its band's advice."""
        if self.judged_by_a_clinician:
            recommendation = self.current_review.get_recommendation_display()
            return LeaderAdvice(f"was reviewed by a clinician, who recommended \"{recommendation}\"",
                                f"\"{recommendation}\"", RISK_COLOURS["high"])
        return LeaderAdvice(f"was rated {self.get_risk_display().lower()} risk ({self.malignant_percent}%)",
                            self.risk_advice, self.risk_colour)

    def photo_before(self):
        """The last of earlier_photos_of_mole, with its review; None when there is none."""
        earlier = self.photos_before()
        return earlier[-1] if earlier else None

    def photos_before(self) -> list["Diagnosis"]:
        """earlier_photos_of_mole, with their reviews, as a list. Picked from the mole's photos
        when with_photos_before prefetched them, else asked for."""
        mole = self.mole if Diagnosis.mole.is_cached(self) else None  # not loaded just for this
        photos = getattr(mole, MOLE_FINISHED_PHOTOS, None)
        if photos is None:
            return list(self.earlier_photos_of_mole().select_related("review"))
        return [photo for photo in photos if photo.owner_id == self.owner_id and photo.created_at < self.created_at]

    def earlier_photos_of_mole(self):
        """The finished checks of the same tracked mole taken before this one, oldest first:
        what its printable report shows of how the mole changed (none when it is untracked)."""
        if self.mole_id is None:
            return Diagnosis.objects.none()
        return (Diagnosis.objects.filter(mole_id=self.mole_id, owner_id=self.owner_id, status=self.Status.DONE,
                                         created_at__lt=self.created_at)
                .order_by("created_at", "pk"))

    @property
    def is_late(self):
        """Pending for longer than LATE_AFTER (since it was queued, or since the worker took it):
        the workers are busy or down, and the result page says so instead of "a few seconds"."""
        if not self.is_pending:
            return False
        since = self.started_at if self.status == self.Status.RUNNING and self.started_at else self.queued_at
        return timezone.now() - since > LATE_AFTER

    @property
    def malignant_percent(self):
        if self.malignant_probability is None:
            return None
        return round(self.malignant_probability * 100, 1)

    @property
    def low_risk_unreliable_advice(self):
        """For a low result the model is least sure of, what replaces the band's advice: the
        mole is on a palm or sole (LOW_RISK_ACRAL_ADVICE), or the photo failed its check
        (LOW_RISK_POOR_PHOTO_ADVICE); else ""."""
        if self.risk != self.Risk.LOW:
            return ""
        if self.mole_id is not None and self.mole.body_site in ACRAL_BODY_SITES:
            return LOW_RISK_ACRAL_ADVICE
        return LOW_RISK_POOR_PHOTO_ADVICE if self.photo_issues else ""

    @property
    def risk_advice(self):
        """The risk band's own advice, whoever else advises (see next_step)."""
        return self.low_risk_unreliable_advice or RISK_ADVICE.get(self.risk, "")

    @property
    def risk_next_step(self):
        """risk_advice without the band it opens with, after a sentence that names the band."""
        # a replacement is given whole: its band is in its own words
        return self.low_risk_unreliable_advice or RISK_NEXT_STEP.get(self.risk, "")

    def next_step(self) -> "NextStep":
        """What to do next, as the result page, the report and the API's `advice` give it. By
        precedence: the clinician's review of this result (current_review); a review of an
        earlier result (before a re-run) asking more than the advice that would lead without it,
        which stands until a clinician reviews the new result; the mole's earlier photo whose advice
        asks more, by its band or its clinician's review (leading_earlier_photo); else the band's own
        advice (risk_advice)."""
        if self.status != self.Status.DONE or self.risk not in RISK_ORDER:
            return NextStep("", "", self.risk_colour)
        band = self.risk_advice
        # format_html: a page shows the text as it is, its quotes unescaped (the API too)
        if (review := self.current_review) is not None:
            # A pressing review is red as its own alert is, not the green of a low band it overrules.
            colour = RISK_COLOURS["high"] if review.is_pressing else self.advice_colour
            # Named, not "above": the API's `advice` gives the same words with nothing above them.
            if RECOMMENDATION_ORDER.get(review.recommendation, -1) > RISK_ORDER[self.risk]:
                # Asking more than the band ("now" against "within 2 weeks"): the band's timing
                # beside it would read as a second, slower deadline.
                return NextStep(format_html("Follow the clinician's recommendation, \"{}\": it asks more than the "
                                            "general advice for a {} estimated risk, and replaces it.",
                                            review.get_recommendation_display(), self.get_risk_display().lower()),
                                "review", colour)
            return NextStep(format_html("Follow the clinician's recommendation, \"{}\". The general advice for "
                                        "this risk band: {}", review.get_recommendation_display(), band),
                            "review", colour)
        previous, just_before = self.leading_earlier_photo()
        review = self.review_or_none  # None, or of an earlier result
        leading = previous.advice_order if previous else RISK_ORDER[self.risk]
        if review is not None and RECOMMENDATION_ORDER.get(review.recommendation, -1) > leading:
            return NextStep(format_html(
                "Follow the clinician's recommendation, \"{}\": it was given on an earlier result of "
                "this photo and stands until a clinician reviews the new result. For the new result alone "
                "the advice would be: {}", review.get_recommendation_display(), band),
                "earlier_review", RISK_COLOURS["high"])
        if previous is not None and previous.judged_by_a_clinician:
            # Led by that photo's review: it asks more than this band, and no clinician has judged a
            # later photo. Red, as a pressing review is everywhere. Undated: a report shared without
            # the earlier photos gives this text and must not tell when that photo was taken (the
            # pages name it beside the advice, _rated_higher_heading.html).
            earlier = previous.current_review
            return NextStep(format_html(
                "Follow the clinician's recommendation on an earlier photo of this mole, \"{}\": it asks more "
                "than this photo's {} estimated risk, and stands until a clinician reviews a later photo. For "
                "this photo alone the advice would be: {}", earlier.get_recommendation_display(),
                self.get_risk_display().lower(), band), "previous_photo", RISK_COLOURS["high"], previous, just_before)
        if previous is not None:
            return NextStep(format_html("Follow the advice for this mole's earlier photo, rated {} risk; for this "
                                        "photo alone it would be: {}", previous.get_risk_display().lower(), band),
                            "previous_photo", previous.risk_colour, previous, just_before)
        return NextStep(band, "band", self.advice_colour)

    @property
    def photo_issues_text(self):
        """The issues as the patient reads them: "too dark and out of focus"; empty when none."""
        names = [PHOTO_ISSUE_NAMES.get(code, code) for code in self.photo_issues]
        return " and ".join(filter(None, [", ".join(names[:-1]), *names[-1:]]))

    @property
    def photo_advice(self):
        """What the patient is told about a poor photo; empty when the photo passed the check."""
        if not self.photo_issues:
            return ""
        if {"dark", "blurry", "grey"} & set(self.photo_issues):
            effect = "the model rates malignant moles lower than it should, so this estimate may be too low"
        else:
            effect = "the model is less accurate"
        return f"This photo looks {self.photo_issues_text}. On photos like it {effect}. {PHOTO_RETAKE_TIP}"

    @property
    def risk_colour(self):
        return RISK_COLOURS.get(self.risk, "secondary")

    @property
    def advice_colour(self):
        """The colour of risk_advice: not the reassuring green of "low" when it cannot be relied on."""
        return RISK_COLOURS["medium"] if self.low_risk_unreliable_advice else self.risk_colour

    def class_breakdown(self):
        """(code, readable name, percent) for all 7 classes, most probable first."""
        rows = [(code, CLASS_NAMES[code], round(self.probabilities.get(code, 0.0) * 100, 1)) for code in CLASSES]
        return sorted(rows, key=lambda row: row[2], reverse=True)

    def stored_files(self):
        return [f for f in (self.image, self.thumbnail, self.heatmap) if f]


class LeaderAdvice(NamedTuple):
    """Diagnosis.advice_as_leader: what the photo was found ("was rated high risk (61.2%)"), the
    advice it gives, and its colour (Bootstrap's)."""

    summary: str
    advice: str
    colour: str


class NextStep(NamedTuple):
    """Diagnosis.next_step: the advice, whose it is, and its colour (Bootstrap's)."""

    text: str
    # "review" (of this result), "earlier_review" (of an earlier one, standing), "previous_photo"
    # (rated higher, then in previous), "band" (risk_advice); "" before a result
    source: str
    colour: str
    previous: Diagnosis | None = None
    # previous is the photo just before this one, not an older one: the pages say "the photo before"
    previous_is_last: bool = False

    @property
    def previous_review(self) -> "Review | None":
        """The review of previous whose recommendation leads, when its clinician judged it; else None."""
        return self.previous.current_review if self.previous is not None and self.previous.judged_by_a_clinician \
            else None

    @property
    def by_clinician(self) -> bool:
        """A clinician's review leads: the pages show it before the advice."""
        return self.source in ("review", "earlier_review")

    @property
    def advice_source(self) -> str:
        """Whose advice text is, as the API's `advice_source` gives it: source, but
        "previous_photo_review" where previous leads by its clinician's review (previous_review), as
        text then says: a clinician's advice, not the earlier photo's estimate. (The pages read
        previous_review beside source for it.)"""
        return "previous_photo_review" if self.previous_review is not None else self.source


class ReviewReading(models.Model):
    """What a clinician's review says, stated once for the review on file (Review) and for the
    corrected ones kept (ReviewRevision), so that a revision keeps a review's fields as the review
    had them. The rest differs between the two: a review is one per diagnosis, its reviewer's
    reviews_written, its reviewed_at indexed for the Reviews log."""

    class Verdict(models.TextChoices):
        AGREE = "agree", "Agree with the model"
        DISAGREE = "disagree", "Disagree with the model"
        # The photo does not show enough to agree or disagree (blur, glare, framing): no label,
        # and left out of the agreement figures.
        UNCLEAR = "unclear", "Cannot tell from this photo"

    class Recommendation(models.TextChoices):
        ROUTINE = "routine", "Routine check"
        MONITOR = "monitor", "Monitor for changes"
        NEW_PHOTO = "new_photo", "Take a new photo"
        DERMATOLOGIST_SOON = "dermatologist_soon", "See a dermatologist soon"
        URGENT = "urgent", "Urgent: see a doctor now"

    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    label = models.CharField("clinician's label", max_length=5, choices=CLASS_CHOICES, blank=True)
    recommendation = models.CharField(max_length=20, choices=Recommendation.choices)
    note = models.TextField("note to the patient", blank=True)
    # The model version whose result the clinician read: a re-run may replace that result.
    model_version = models.CharField("model version reviewed", max_length=100, blank=True)

    class Meta:
        abstract = True


class Review(ReviewReading):
    """A clinician's reading of one diagnosis, shown to the patient."""

    diagnosis = models.OneToOneField(Diagnosis, on_delete=models.CASCADE, related_name="review")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="reviews_written"
    )
    # The reviewer's username as it was at the save (services.review_save), as StaffAccess keeps
    # staff_name: who wrote the review stays known when their account is deleted.
    reviewer_name = models.CharField(max_length=150, blank=True, editable=False)
    reviewed_at = models.DateTimeField(db_index=True)  # the Reviews log's order and date filter
    # When the patient's e-mail about the latest save was handed to the broker. None, or before
    # reviewed_at, while it is owed (the broker was down): services.review_notices_recover, in
    # the same beat task as the check for lost photos, queues it again.
    notice_queued_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self):
        return f"Review of {self.diagnosis}"

    @property
    def is_of_an_earlier_result(self):
        return bool(self.model_version) and self.model_version != self.diagnosis.model_version

    @property
    def is_pressing(self):
        return self.recommendation in RECOMMENDATION_ORDER

    @property
    def asks_for_new_photo(self):
        return self.recommendation == self.Recommendation.NEW_PHOTO


class ReviewRevision(ReviewReading):
    """A review as it stood before a clinician corrected it (services.review_save): what the
    patient was told, by whom and when stays on record, at the desk and in the patient's data
    download, though their pages show only the review on file."""

    diagnosis = models.ForeignKey(Diagnosis, on_delete=models.CASCADE, related_name="review_revisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reviewer_name = models.CharField(max_length=150, blank=True)
    reviewed_at = models.DateTimeField()
    superseded_at = models.DateTimeField()

    class Meta:
        ordering = ["-reviewed_at"]

    def __str__(self):
        return f"Earlier review of {self.diagnosis_id}"

    # The fields a revision copies from the review it keeps: who, when, and all ReviewReading states.
    COPIED = ("reviewer_id", "reviewer_name", "reviewed_at",
              *(field.attname for field in ReviewReading._meta.local_fields))

    @classmethod
    def of(cls, review: Review, superseded_at) -> "ReviewRevision":
        return cls(diagnosis_id=review.diagnosis_id, superseded_at=superseded_at,
                   **{field: getattr(review, field) for field in cls.COPIED})


class StaffAccess(models.Model):
    """A member of staff opened one of a patient's records at the review desk (a check's case
    page, a mole's page, the account). Kept so that the patient can see who looked, and an
    administrator can audit the desk; goes with the patient's account, outlives the staff's."""

    class Record(models.TextChoices):
        CASE = "case", "A check"
        MOLE = "mole", "A tracked mole"
        ACCOUNT = "account", "The account"

    patient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_accesses")
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # The name shown to the patient, as it was then: it stays when the staff account is deleted.
    staff_name = models.CharField(max_length=300)
    record = models.CharField("what was opened", max_length=10, choices=Record.choices)
    # Kept when the patient deletes that check or mole: the access happened all the same.
    diagnosis = models.ForeignKey(Diagnosis, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    mole = models.ForeignKey(Mole, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField("when", default=timezone.now, db_index=True)

    class Meta:
        # Newest first, then by id: accesses at the same moment keep one order across the pages
        # of the patient's list (accounts.views.account_staff_access).
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["patient", "-at"], name="staffaccess_patient_at")]
        verbose_name = "staff access to a patient's records"
        verbose_name_plural = "staff accesses to patients' records"

    def __str__(self):
        return f"{self.staff_name} opened {self.get_record_display().lower()} of user {self.patient_id}"


# How long a patient may let a doctor read a check through a link, in days (7 unless chosen).
SHARE_LINK_DAYS = [(1, "1 day"), (7, "7 days"), (30, "30 days")]
SHARE_LINK_DEFAULT_DAYS = 7


class ShareLinkQuerySet(models.QuerySet):
    def active(self):
        """The links that open the report now: neither withdrawn nor expired (ShareLink.is_active)."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())

    def of_owner(self, user):
        """Every link to any of the user's checks, newest first."""
        return self.filter(diagnosis__owner=user).order_by("-created_at", "-pk")


class ShareLink(models.Model):
    """A read-only link to one check's report for someone without an account (the patient's
    doctor). Only the SHA-256 of its token is kept: the token itself is shown to the patient
    once, when the link is made, and a stolen database opens no report."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        WITHDRAWN = "withdrawn", "Withdrawn"

    objects = ShareLinkQuerySet.as_manager()

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    diagnosis = models.ForeignKey(Diagnosis, on_delete=models.CASCADE, related_name="share_links")
    token_hash = models.CharField(max_length=64, unique=True, editable=False,
                                  help_text="SHA-256 (hex) of the link's token; the token is never stored.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField("withdrawn at", null=True, blank=True)
    with_earlier_photos = models.BooleanField(
        default=False, help_text="The report also shows the mole's earlier photos and their estimates.")
    open_count = models.PositiveIntegerField("times opened", default=0)
    last_opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Share link of diagnosis {self.diagnosis_id} ({self.state})"

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return self.State.WITHDRAWN
        if self.expires_at <= timezone.now():
            return self.State.EXPIRED
        return self.State.ACTIVE

    @property
    def is_active(self) -> bool:
        return self.state == self.State.ACTIVE

