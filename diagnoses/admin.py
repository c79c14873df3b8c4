"""The clinicians' triage and review desk.

The Diagnosis changelist is the review queue; its change page is the case page, where the only
thing anyone can edit is the clinician's Review (saved through services.review_save). Patient
photos are shown through the owner-or-staff view `diagnoses:file`, never a public URL.
"""

import csv
import hashlib
import hmac

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from ml import CLASS_NAMES, CLASSES, MALIGNANT

from . import services
from .models import Diagnosis, Mole, Review, ReviewRevision, StaffAccess
from .services import (ANSWERED_LABEL, BAND_OF_RANK, EARLIER_REVIEW_RANKS, FAILED_LABEL, FAILED_RANK, QUEUE_RANK,
                       REVIEWED_AT_DESK, RISK_RANKS, Skip)
from .views import load_model_card

admin.site.site_header = "molesite review desk"
admin.site.site_title = "molesite review desk"
admin.site.index_title = "Clinician review"


def risk_colour(band: str) -> str:
    """The colour of a risk band's words at the desk, where the site's pages use Bootstrap's
    (models.RISK_COLOURS): a CSS variable that static/css/admin-review.css sets for the admin's
    light and dark themes, as Django's own colours are set."""
    return f"var(--risk-{band})"


def _band_words(diagnosis):
    """A finished case's risk band, in its colour (risk_colour)."""
    return format_html('<strong style="color:{}">{}</strong>', risk_colour(diagnosis.risk),
                       diagnosis.get_risk_display())


# One mark for "nothing here" on every admin page: Django's empty fields and the desk's own
# columns (a method's return value is shown as it is, so those return it themselves).
EMPTY = "—"
admin.site.empty_value_display = EMPTY
admin.site.enable_nav_sidebar = False  # the queue needs the width more

EARLIER_PHOTOS_SHOWN = 12
# The case page's fields that only a failed case has something in (DiagnosisAdmin.get_fieldsets).
FAILED_ONLY_FIELDS = {"error", "what_to_do"}
# The case page's fieldset of the review a case without a result (a re-run queued, running or
# failed) kept, read-only: what the patient's page still shows (DiagnosisAdmin.get_fieldsets).
REVIEW_SHOWN = "Review the patient sees"
# The case page's fieldset of the reviews a correction replaced, shown when there are any.
REVIEW_HISTORY = "Earlier versions of the review"


def _file_url(diagnosis, kind):
    return reverse("diagnoses:file", args=[diagnosis.pk, kind])


def _change_url(obj):
    return reverse(f"admin:diagnoses_{obj._meta.model_name}_change", args=[obj.pk])


def pseudonym(kind: str, value) -> str:
    """A stable pseudonymous id (keyed hash): groups rows by patient or lesion, names no one."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"{kind}:{value}".encode(), hashlib.sha256)
    return digest.hexdigest()[:16]


class ReviewedFilter(admin.SimpleListFilter):
    """Reviewed as the queue orders and the column marks (services.REVIEWED_AT_DESK): a failed
    case is under "Not reviewed", whatever review it kept."""
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return [("no", "Not reviewed"), ("yes", "Reviewed")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(~REVIEWED_AT_DESK)
        if self.value() == "yes":
            return queryset.filter(REVIEWED_AT_DESK)
        return queryset


class RiskFilter(admin.SimpleListFilter):
    """By the rank the queue orders by (queue_rank), so that "High" holds what the queue ranks
    high; failed cases, ranked apart (services.FAILED_RANK), have no band and are in none."""
    title = "risk"
    parameter_name = "risk__exact"  # the parameter of the field's own filter, which this replaced

    def lookups(self, request, model_admin):
        return Diagnosis.Risk.choices

    def queryset(self, request, queryset):
        if self.value() in RISK_RANKS:
            return queryset.filter(queue_rank=RISK_RANKS[self.value()])
        return queryset


class PhotoQualityFilter(admin.SimpleListFilter):
    title = "photo quality"
    parameter_name = "photo"

    def lookups(self, request, model_admin):
        return [("poor", "Dark, bright, blurred or black and white"), ("fine", "Passed the check")]

    def queryset(self, request, queryset):
        if self.value() == "poor":
            return queryset.exclude(photo_issues=[])
        if self.value() == "fine":
            return queryset.filter(photo_issues=[])
        return queryset


class ModelVersionFilter(admin.SimpleListFilter):
    """The model versions of the results, from the column's index; a case without a result
    (queued, running or failed) has none, and its choice says so rather than showing blank."""
    title = "model version"
    parameter_name = "model_version"  # the parameter of the field's own filter, which this replaced
    NO_RESULT = "-"  # not a version any model card gives (ml.inference), so never one's choice

    def lookups(self, request, model_admin):
        versions = (Diagnosis.objects.exclude(model_version="").order_by("model_version")
                    .values_list("model_version", flat=True).distinct())
        no_result = (self.NO_RESULT, "No result (queued, running or failed)")
        return [*((version, version) for version in versions), no_result]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(model_version="" if self.value() == self.NO_RESULT else self.value())


class ReviewForm(forms.ModelForm):
    # The review this form was shown with (its reviewed_at, empty for none), so that a save does
    # not overwrite a review another clinician saved while this one had the case open.
    seen_review = forms.CharField(required=False, widget=forms.HiddenInput)
    # The result this form was shown with (result_stamp), so that a review is never saved as of
    # a result a re-run replaced, or is still replacing, while this clinician had the case open.
    seen_result = forms.CharField(required=False, widget=forms.HiddenInput)
    STAMPS = ("seen_review", "seen_result")

    class Meta:
        model = Review
        fields = ["verdict", "label", "recommendation", "note"]

    def __init__(self, *args, diagnosis=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.diagnosis = diagnosis  # the case as the page loaded it: its predicted class (clean)
        if diagnosis is not None and self.instance.diagnosis_id == diagnosis.pk:
            self.instance.diagnosis = diagnosis  # for is_of_an_earlier_result, without a query of its own
        self.initial["seen_review"] = review_stamp(self.instance if self.instance.pk else None)
        self.initial["seen_result"] = result_stamp(diagnosis)
        if self.instance.pk and self.instance.is_of_an_earlier_result:
            self._ask_for_a_verdict_on_the_new_result()

    def _ask_for_a_verdict_on_the_new_result(self):
        # The verdict and label on file were of the result a re-run replaced: offered again, a
        # save "as shown" would agree with a class the model no longer gives. The recommendation
        # and note, advice to the patient, stay for the clinician to keep or change.
        review = self.instance
        self.initial["verdict"] = self.initial["label"] = ""
        earlier = review.get_verdict_display().lower()
        if review.label:
            earlier += f", label: {review.get_label_display()}"
        self.fields["verdict"].help_text = (
            f"The review on file was of an earlier result (model version {review.model_version}: {earlier}). "
            "Give your verdict and label on the result shown now."
        )

    def has_changed(self):
        # What the clinician wrote (the stamps alone differ when the case changed meanwhile), or a
        # review of an earlier result saved as it is: that reviews the result shown now.
        if self.instance.pk and self.instance.is_of_an_earlier_result:
            return True
        return any(name not in self.STAMPS for name in self.changed_data)

    def clean(self):
        cleaned = super().clean()
        if self.has_changed():
            self._refuse_a_review_saved_meanwhile(cleaned.get("seen_review") or "")
            self._refuse_a_result_replaced_meanwhile(cleaned.get("seen_result") or "")
        if cleaned.get("verdict") == Review.Verdict.DISAGREE and not cleaned.get("label"):
            self.add_error("label", "Give your own label when you disagree with the model.")
        if cleaned.get("verdict") == Review.Verdict.UNCLEAR and cleaned.get("label"):
            self.add_error("label", "Leave the label empty when you cannot tell from this photo.")
        self._refuse_a_label_against_the_verdict(cleaned.get("verdict"), cleaned.get("label"))
        return cleaned

    def _refuse_a_label_against_the_verdict(self, verdict, label):
        # The patient reads verdict and label together: "agree with the model · label: Melanoma"
        # on an nv result, or "disagree · label: Melanocytic nevus" on one, says two things at once.
        predicted = self.diagnosis.predicted_class if self.diagnosis is not None else ""
        if not predicted or not label:
            return
        name = CLASS_NAMES.get(predicted, predicted)
        if verdict == Review.Verdict.AGREE and label != predicted:
            self.add_error("label", f"Agreeing with the model takes its class, {name}: leave the label empty or "
                                    'choose it, or choose "Disagree with the model" to give yours.')
        if verdict == Review.Verdict.DISAGREE and label == predicted:
            self.add_error("label", f'{name} is the model\'s class: choose "Agree with the model", or give the '
                                    "label you read.")

    def _refuse_a_review_saved_meanwhile(self, seen: str):
        # Until this request's transaction ends (the admin validates and saves in one): a save at
        # the same moment from another clinician waits here, then sees this review.
        services.case_hold(self.instance.diagnosis_id)
        current = Review.objects.select_related("reviewer").filter(diagnosis_id=self.instance.diagnosis_id).first()
        if review_stamp(current) == seen:
            return
        if current is None:  # not seen: reviews are deleted only with their case
            raise forms.ValidationError("The review of this case changed while you had it open: reload the page.")
        raise forms.ValidationError(
            "%(who)s saved a review of this case at %(when)s, while you had it open (%(verdict)s; %(recommendation)s). "
            "Nothing of yours was saved: reload the page to read their review, then save yours again if you still "
            "want to change it.",
            code="review_saved_meanwhile",
            params={"who": _reviewer_name(current), "when": date_format(localtime(current.reviewed_at), "DATETIME_FORMAT"),
                    "verdict": current.get_verdict_display(),
                    "recommendation": current.get_recommendation_display().lower()},
        )

    def _refuse_a_result_replaced_meanwhile(self, seen: str):
        # Read after case_hold (above): a re-run queued at this moment waits for this save.
        current = (Diagnosis.objects.only("status", "model_version", "finished_at")
                   .filter(pk=self.instance.diagnosis_id).first())
        if current is None:  # the patient deleted it since the page was loaded: nothing to review
            raise forms.ValidationError("This case was deleted while you had it open. Nothing of yours was saved.",
                                        code="case_deleted_meanwhile")
        if result_stamp(current) == seen:
            return
        now = ("the new result is not in yet" if current.status != Diagnosis.Status.DONE
               else "its result is not the one you read")
        raise forms.ValidationError(
            "This case was classified again while you had it open, and %(now)s. Nothing of yours was saved: "
            "reload the page to read the result shown now, then save your review again.",
            code="result_replaced_meanwhile", params={"now": now},
        )

    def validate_unique(self):
        # A review saved meanwhile is reported by clean() above; Django's own "already exists"
        # would only repeat it less clearly.
        if not self.non_field_errors():
            super().validate_unique()


def review_stamp(review) -> str:
    return review.reviewed_at.isoformat() if review is not None else ""


def result_stamp(diagnosis) -> str:
    """The result a review form was shown with: its model version and when it came; "" before
    a result is done (a re-run clears it)."""
    if diagnosis is None or diagnosis.status != Diagnosis.Status.DONE:
        return ""
    return f"{diagnosis.model_version} {diagnosis.finished_at.isoformat()}"


# The review form's prefix on the case page: Django names an inline formset after the relation.
REVIEW_PREFIX = Review._meta.get_field("diagnosis").remote_field.get_accessor_name()


class ReviewInline(admin.StackedInline):
    model = Review
    form = ReviewForm
    fields = ["verdict", "label", "recommendation", "note", "reviewed_by", "reviewed_at", "model_version",
              "seen_review", "seen_result"]
    readonly_fields = ["reviewed_by", "reviewed_at", "model_version"]
    can_delete = False
    extra = 1
    max_num = 1
    verbose_name = "clinician review"
    verbose_name_plural = "clinician review"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        if obj is not None and obj.risk:
            suggested, why = services.suggested_recommendation(obj, obj.previous_photo_rated_higher())
            field = formset.form.base_fields["recommendation"]
            field.help_text = f"Suggested {why}: {Review.Recommendation(suggested).label}."
        return formset

    @admin.display(description="Reviewer")
    def reviewed_by(self, obj):
        return _reviewer_name(obj)


def _review_history(diagnosis):
    """The reviews of this case that corrections replaced (ReviewRevision), newest first: what
    the patient was told before, and by whom. None when the review was never corrected."""
    revisions = ReviewRevision.objects.filter(diagnosis=diagnosis).select_related("reviewer")
    rows = format_html_join("", "<tr>" + "<td>{}</td>" * 8 + "</tr>", (
        (date_format(localtime(r.reviewed_at), "DATETIME_FORMAT"), _reviewer_name(r),
         r.get_verdict_display(), r.get_label_display() or EMPTY, r.get_recommendation_display(), r.note or EMPTY,
         r.model_version or EMPTY, date_format(localtime(r.superseded_at), "DATETIME_FORMAT"))
        for r in revisions))
    if not rows:
        return None
    return format_html(
        '<table class="review-history"><thead><tr><th>Saved</th><th>Reviewer</th><th>Verdict</th><th>Label</th>'
        "<th>Recommendation</th><th>Note to the patient</th><th>Model version</th><th>Replaced</th></tr></thead>"
        "<tbody>{}</tbody></table>", rows)


def _reviewer_name(review):
    # Plain text: a link would lead reviewers to the user admin, which is not theirs.
    if review.reviewer_id:
        return review.reviewer.get_username()
    if review.reviewer_name:  # kept at the save (Review.reviewer_name)
        return f"{review.reviewer_name} (account deleted)"
    return EMPTY


class TitledList:
    """A list page headed by its own name (list_title), not Django's "Select case to change"."""

    list_title = ""

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": self.list_title, **(extra_context or {})})


class RecordsStaffAccess:
    """A ModelAdmin mixin: each time the change page of one of a patient's records is shown,
    services.staff_access_record notes who opened it. render_change_form runs only once the admin
    has found the object and checked the viewer's rights, so refused requests leave no trace."""

    def staff_access(self, obj) -> dict:
        """The patient, the record kind (StaffAccess.Record) and the diagnosis or mole of obj."""
        raise NotImplementedError

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            services.staff_access_record(staff=request.user, **self.staff_access(obj))
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)


# What bulk agreement tells the clinician of the cases it left alone, by reason (services.Skip),
# in this order: those to review one by one first, as they wait for a clinician.
SKIP_MESSAGES = {
    Skip.NEEDS_A_LOOK: "Left {n} for a one-by-one review: a photo that failed the quality check, a low result on a "
                       "palm or sole, or a case an earlier photo of its mole leads (rated higher, or by a "
                       "clinician's pressing review). Open each one and review it.",
    Skip.EARLIER_RESULT: "Skipped {n} whose review is of an earlier result: open each one, give your verdict "
                         "on its new result and save its review again.",
    Skip.FAILED: "Skipped {n} failed: no review settles them. Re-run them (the classifier may have been "
                 "unavailable); one that fails again waits for the new photo its patient was told to upload.",
    Skip.NOT_DONE_OR_REVIEWED: "Skipped {n}: not finished yet, or already reviewed.",
}


# The request attribute that says the case page's save stored a review (DiagnosisAdmin.save_formset).
REVIEW_SAVED = "_molesite_review_saved"


def _why_no_review_saved(diagnosis) -> str:
    if diagnosis.status != Diagnosis.Status.DONE:
        return "No review saved: this case has no result to review (queued, running or failed)."
    if diagnosis.current_review is not None:
        return "No review saved: you changed nothing, and the review on file stands."
    return "No review saved: choose a verdict and a recommendation."


@admin.register(Diagnosis)
class DiagnosisAdmin(TitledList, RecordsStaffAccess, admin.ModelAdmin):
    list_title = "Review queue"
    list_display = [
        "thumb",
        "patient",
        "risk_band",
        "malignant_percent",
        "predicted_class",
        "status",
        "photo_quality",
        "reviewed",
        "uploaded",
    ]
    list_display_links = ["thumb", "patient"]
    list_filter = [RiskFilter, "status", ReviewedFilter, PhotoQualityFilter, ModelVersionFilter, "created_at"]
    list_select_related = ["owner", "review"]
    # The address only whole ("=": iexact): reviewers are not shown patients' addresses, and
    # a match on a part of one would tell it a character at a time.
    search_fields = ["owner__username", "=owner__email"]
    search_help_text = "Search by the patient's username or whole e-mail address."
    # The queue: unreviewed cases first (a failed one always is); among them the highest risk
    # first (QUEUE_RANK), then the oldest.
    ordering = [REVIEWED_AT_DESK.asc(), QUEUE_RANK.asc(), F("created_at").asc()]
    list_per_page = 50
    # One COUNT per load, the filtered list's: not a second one of the whole table as well.
    show_full_result_count = False
    view_on_site = False  # the patient's result page is the patient's alone
    actions = ["mark_reviewed", "requeue", "export_reviewed_csv"]
    inlines = [ReviewInline]

    class Media:
        # the queue's columns and the case page's review form (static/css/admin-review.css)
        css = {"all": ["css/admin-review.css"]}

    fieldsets = [
        ("Photos", {"fields": [("photo", "heatmap_image")]}),
        (
            "Model output",
            {
                "fields": [
                    ("status", "photo_quality"),
                    "error",
                    "what_to_do",
                    ("risk_shown", "malignant_percent", "predicted_class"),
                    "probabilities_table",
                    ("model_version", "finished_at"),
                ]
            },
        ),
        (REVIEW_SHOWN, {"fields": ["shown_review"]}),
        (REVIEW_HISTORY, {"fields": ["review_history"]}),
        ("Patient", {"fields": [("patient", "mole_link", "created_at"), "earlier_photos"]}),
    ]
    # Nothing about a diagnosis is editable here, for anyone: not the model's output, not the photo.
    readonly_fields = [
        "photo",
        "heatmap_image",
        "status",
        "photo_quality",
        "error",
        "what_to_do",
        "risk_shown",
        "malignant_percent",
        "predicted_class",
        "probabilities_table",
        "model_version",
        "finished_at",
        "patient",
        "mole_link",
        "created_at",
        "earlier_photos",
        "shown_review",
        "review_history",
    ]

    # --- the queue -----------------------------------------------------------------------------

    @admin.display(description="Photo")
    def thumb(self, obj):
        # The image is the row's first link, and its alt text that link's name: the patient and
        # the time tell the rows apart for a screen reader (an id did not).
        return format_html(
            '<img src="{}" alt="Photo of {}, {}" width="48" height="48" loading="lazy" '
            'style="object-fit:cover;border-radius:4px">',
            _file_url(obj, "thumbnail"), obj.owner.get_username(), obj.uploaded_text,
        )

    @admin.display(description="Patient", ordering="owner__username")
    def patient(self, obj):
        # The row's second link: named for the case, not the patient alone, whose name repeats on
        # each of their rows
        return format_html('{}<span class="visually-hidden">: photo of {}</span>', obj.owner.get_username(),
                           obj.uploaded_text)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(queue_rank=QUEUE_RANK,
                                                      earlier_photo_review=services.EARLIER_PHOTO_REVIEW)

    @admin.display(description="Risk")
    def risk_shown(self, obj):
        """The case page's risk band, in the colour the queue gives it."""
        return _band_words(obj) if obj.risk else EMPTY

    @admin.display(description="Risk", ordering=QUEUE_RANK)
    def risk_band(self, obj):
        if obj.status == Diagnosis.Status.FAILED:  # why it ranks where it does (services.RISK_RANK)
            return FAILED_LABEL if obj.queue_rank == FAILED_RANK else ANSWERED_LABEL
        if not obj.risk:
            return EMPTY
        band = _band_words(obj)
        if obj.queue_rank >= RISK_RANKS[obj.risk]:
            return band
        ranked_as = BAND_OF_RANK[obj.queue_rank]
        review = obj.review_or_none  # list_select_related: no query of its own
        if (review is not None and review.is_of_an_earlier_result
                and EARLIER_REVIEW_RANKS.get(review.recommendation) == obj.queue_rank):
            # Ranked by its review of an earlier result, which stands until the new result is
            # reviewed (QUEUE_RANK). Named, too, where the previous photo rated higher ranks it the
            # same (a dermatologist soon after a medium photo, whose advice the patient's page gives).
            return format_html('{}<br><small>ranked by its earlier review: <strong style="color:{}">{}</strong>'
                               '</small>', band, risk_colour(ranked_as),
                               review.get_recommendation_display().lower())
        earlier_photo_review = getattr(obj, "earlier_photo_review", None)
        if EARLIER_REVIEW_RANKS.get(earlier_photo_review) == obj.queue_rank:
            # Ranked by a pressing review of an earlier photo of the mole, which stands until a
            # clinician judges a later photo (services.EARLIER_RANK)
            return format_html('{}<br><small>ranked by an earlier photo\'s review: <strong style="color:{}">{}</strong>'
                               '</small>', band, risk_colour(ranked_as),
                               Review.Recommendation(earlier_photo_review).label.lower())
        # Ranked by an earlier photo of the mole, rated higher (QUEUE_RANK)
        return format_html('{}<br><small>ranked as the previous photo: <strong style="color:{}">{}</strong></small>',
                           band, risk_colour(ranked_as), ranked_as.label.lower())

    @admin.display(description="Malignant %", ordering="malignant_probability")
    def malignant_percent(self, obj):
        return EMPTY if obj.malignant_percent is None else f"{obj.malignant_percent}%"

    @admin.display(description="Photo quality")
    def photo_quality(self, obj):
        """What the upload check found (ml.quality): a low result from such a photo is weak."""
        if not obj.photo_issues:
            return EMPTY
        return format_html('<strong style="color:{}">{}</strong>', risk_colour("medium"), obj.photo_issues_text)

    @admin.display(description="Reviewed", boolean=True, ordering=REVIEWED_AT_DESK)
    def reviewed(self, obj):
        # the Python side of REVIEWED_AT_DESK
        return obj.status == Diagnosis.Status.DONE and obj.current_review is not None

    @admin.display(description="Uploaded", ordering="created_at")
    def uploaded(self, obj):
        return format_html('<span title="{}">{}</span>', localtime(obj.created_at).isoformat(), obj.uploaded_text)

    def changelist_view(self, request, extra_context=None):
        # On GET only: an action's POST redirects here, and the warning would show twice.
        if request.method == "GET" and (late := Diagnosis.objects.late().count()):
            self.message_user(
                request,
                f"{late} photo{pluralize(late)} {pluralize(late, 'has,have')} waited more than a minute "
                "for the classifier: the workers may be down or overloaded. If this lasts, tell whoever "
                "runs molesite (the worker's log says why).",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(request, object_id, form_url, {"title": "Review case", **(extra_context or {})})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.status != Diagnosis.Status.DONE:
            # Nothing here to save without a result (no review form: get_inline_instances).
            context.update(show_save=False, show_save_and_continue=False)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def response_change(self, request, obj):
        # The admin would say "was changed successfully" of a save that stored nothing: the review
        # form left empty or unchanged, or a case without a result, which has no form.
        if getattr(request, REVIEW_SAVED, False):
            return super().response_change(request, obj)
        self.message_user(request, _why_no_review_saved(obj), messages.WARNING)
        return HttpResponseRedirect(request.get_full_path())  # the case page again: still to review

    def get_fieldsets(self, request, obj=None):
        """The error line and what to do only on a failed case: on any other they would be an
        empty '-'. The review the patient sees, read-only, only on a case without a result (a
        re-run queued, running or failed) that kept one: a finished result's is in the review form
        (ReviewInline), which a case without a result does not offer (get_inline_instances)."""
        failed = obj is not None and obj.status == Diagnosis.Status.FAILED
        review_shown = obj is not None and obj.status != Diagnosis.Status.DONE and obj.review_or_none is not None
        corrected = obj is not None and ReviewRevision.objects.filter(diagnosis=obj).exists()
        shown = {REVIEW_SHOWN: review_shown, REVIEW_HISTORY: corrected}
        return [(name, {**options, "fields": [f for f in options["fields"] if failed or f not in FAILED_ONLY_FIELDS]})
                for name, options in self.fieldsets if shown.get(name, True)]

    def staff_access(self, obj):
        return {"patient": obj.owner, "record": StaffAccess.Record.CASE, "diagnosis": obj}

    # --- the case page -------------------------------------------------------------------------

    @admin.display(description="Photo")
    def photo(self, obj):
        return _large_image(obj, "image", "The patient's photo")

    @admin.display(description="What to do")
    def what_to_do(self, obj):
        """A failed case's way out of the queue, in what a reviewer can do: no review closes it,
        and reviewers cannot reach patients (get_fieldsets shows this on failed cases only). The
        link lists it alone in the queue, where the re-run action is."""
        if obj.queue_rank != FAILED_RANK:  # answered by a later photo (services.ANSWERED)
            return ("Nothing to do: the patient has uploaded a newer photo since (of this mole, when it "
                    "is tracked), which is a case of its own.")
        queue = reverse("admin:diagnoses_diagnosis_changelist")
        # A review it kept from an earlier result is shown below (REVIEW_SHOWN): the patient sees it.
        kept = " The patient still sees the clinician's review below." if obj.review_or_none is not None else ""
        return format_html(
            'Nothing to review: the photo could not be classified (the patient was told the reason '
            'above). <a href="{}?id__exact={}">Select it in the queue</a> and re-run it (the action '
            '"Re-run classification with the current model"): the classifier may have been '
            "unavailable. If it fails again, the photo itself is the problem: the patient has been "
            "told to upload a new one, which will come as a new case (an administrator can contact "
            "them).{}", queue, obj.pk, kept)

    @admin.display(description="Review")
    def shown_review(self, obj):
        """The review the patient sees on a case without a result (REVIEW_SHOWN, get_fieldsets),
        through their page's own includes (admin/diagnoses/diagnosis/shown_review.html), with what
        only the desk says: who gave it, and until when the patient's page shows it."""
        return render_to_string("admin/diagnoses/diagnosis/shown_review.html", {
            "diagnosis": obj, "reviewer": _reviewer_name(obj.review)})

    @admin.display(description="Replaced by corrections")
    def review_history(self, obj):
        return _review_history(obj) or "None: the review on file was never corrected."

    @admin.display(description="Heatmap (where the model looked)")
    def heatmap_image(self, obj):
        return _large_image(obj, "heatmap", "Heatmap") if obj.heatmap else "No heatmap yet."

    @admin.display(description="Probabilities")
    def probabilities_table(self, obj):
        if not obj.probabilities:
            return EMPTY
        body = format_html_join(
            "",
            "<tr><th scope='row'>{}{}</th><td style='text-align:right'>{}%</td></tr>",
            ((name, " (malignant)" if code in MALIGNANT else "", f"{percent:.1f}")
             for code, name, percent in obj.class_breakdown()),
        )
        return format_html('<table class="probabilities"><thead><tr><th scope="col">Class</th>'
                           '<th scope="col" style="text-align:right">Probability</th></tr></thead>'
                           '<tbody>{}</tbody></table>', body)

    @admin.display(description="Mole")
    def mole_link(self, obj):
        if obj.mole is None:
            return EMPTY
        return format_html('<a href="{}">{}</a>', _change_url(obj.mole), obj.mole)

    @admin.display(description="Earlier photos of this mole")
    def earlier_photos(self, obj):
        if obj.mole_id is None:
            return "Not filed under a mole."
        earlier = (
            Diagnosis.objects.filter(mole_id=obj.mole_id, created_at__lt=obj.created_at)
            .select_related("review")
            .order_by("-created_at")[:EARLIER_PHOTOS_SHOWN]
        )
        return _thumbnail_strip(earlier) or "None: this is the first photo of this mole."

    # --- permissions and saving ----------------------------------------------------------------

    def has_add_permission(self, request):
        return False  # photos come from patients, through the upload service

    def get_inline_instances(self, request, obj=None):
        # Only a finished result can be reviewed. A review posted from a finished result is
        # taken in all the same, for ReviewForm to refuse, with a message, when a re-run has
        # queued the case since: left out, it would be dropped without a word.
        review_posted = request.method == "POST" and f"{REVIEW_PREFIX}-TOTAL_FORMS" in request.POST
        if obj is None or (obj.status != Diagnosis.Status.DONE and not review_posted):
            return []
        return super().get_inline_instances(request, obj)

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ReviewInline):
            kwargs["form_kwargs"] = {"diagnosis": obj}  # for the form's stamp of the result shown
        return kwargs

    def has_review_permission(self, request):
        return request.user.has_perms(["diagnoses.add_review", "diagnoses.change_review"])

    def save_model(self, request, obj, form, change):
        # No Diagnosis field is editable here; saving the row would only risk overwriting what
        # the worker wrote in the meantime.
        pass

    def save_formset(self, request, form, formset, change):
        if formset.model is not Review:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # saves nothing; lists what changed for the admin's history
        for review_form in formset.forms:
            if not review_form.has_changed():
                continue
            data = review_form.cleaned_data
            review = services.review_save(
                diagnosis=form.instance,
                reviewer=request.user,
                verdict=data["verdict"],
                label=data["label"],
                recommendation=data["recommendation"],
                note=data["note"],
            )
            setattr(request, REVIEW_SAVED, True)  # for response_change
            self._warn_of_patients_not_emailed(request, [review])

    def _warn_of_patients_not_emailed(self, request, reviews):
        """A review that asks the patient to act (Review.is_pressing) reaches them by e-mail only
        when services.review_notices_reach them: else the clinician must reach them another way."""
        patients = {review.diagnosis.owner for review in reviews if review.is_pressing}
        unreached = [patient for patient in patients if not services.review_notices_reach(patient)]
        if not unreached:
            return
        whom = unreached[0].get_username() if len(unreached) == 1 else f"{len(unreached)} patients"
        self.message_user(
            request, f"No e-mail will tell {whom} about the review asking them to act (no confirmed "
            "address, or review e-mails turned off): reach them another way.", messages.WARNING
        )

    def delete_model(self, request, obj):
        services.diagnosis_delete(diagnosis=obj)

    def delete_queryset(self, request, queryset):
        for diagnosis in queryset:
            services.diagnosis_delete(diagnosis=diagnosis)

    # --- actions -------------------------------------------------------------------------------

    @admin.action(description="Mark selected as reviewed (agree with the model)", permissions=["review"])
    def mark_reviewed(self, request, queryset):
        # The service reads each case again, under its lock, and says why it left any alone.
        agreement = services.review_agree_many(diagnoses=list(queryset.select_related(None)), reviewer=request.user)
        marked = len(agreement.reviews)
        # Nothing marked is no success: the warnings below say why.
        self.message_user(request, f"Marked {marked} as reviewed.", messages.SUCCESS if marked else messages.WARNING)
        for reason, message in SKIP_MESSAGES.items():
            if count := agreement.skipped[reason]:
                self.message_user(request, message.format(n=count), messages.WARNING)
        self._warn_of_patients_not_emailed(request, agreement.reviews)

    @admin.action(description="Re-run classification with the current model", permissions=["change"])
    def requeue(self, request, queryset):
        count = sum(services.diagnosis_requeue(diagnosis=diagnosis) for diagnosis in queryset)
        self.message_user(request, f"Queued {count} for classification again.", messages.SUCCESS)
        if skipped := queryset.count() - count:
            self.message_user(request, f"Skipped {skipped} already waiting or running.", messages.WARNING)

    @admin.action(description="Export reviewed cases as CSV (pseudonymous, for model improvement)", permissions=["view"])
    def export_reviewed_csv(self, request, queryset):
        # A review of a result a re-run replaced would pair its verdict with figures the
        # clinician never read: such a case counts as unreviewed here too, as in the queue.
        reviewed = queryset.filter(REVIEWED_AT_DESK)
        if not reviewed.exists():
            self.message_user(request, "None of the selected cases has been reviewed (a review of a result "
                              "that a re-run replaced does not count until it is saved again).", messages.WARNING)
            return None
        # Only the checks of patients who opted in (at sign-up or on their account page).
        left_out = reviewed.filter(owner__model_improvement=False).count()
        reviewed = reviewed.filter(owner__model_improvement=True).select_related("review").order_by("created_at")
        if not reviewed.exists():
            self.message_user(request, f"Nothing to export: the patients of the {left_out} reviewed case"
                              f"{pluralize(left_out)} have not agreed to model improvement.", messages.WARNING)
            return None
        if left_out:
            # Said before the download starts, shown on the next page the reviewer opens.
            self.message_user(request, f"Left out {left_out} reviewed case{pluralize(left_out)} of patients who "
                              "have not agreed to model improvement.", messages.WARNING)
        # Streamed as it is read: built whole first, the table of every reviewed case took seconds
        # and hundreds of megabytes before the first byte went out.
        response = StreamingHttpResponse(reviews_csv_lines(reviewed),
                                         content_type="text/csv; charset=utf-8")
        # Dated in TIME_ZONE, as its rows are.
        filename = f"molesite-reviews-{timezone.localtime():%Y%m%d-%H%M}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


CSV_HEADER = [
    "case_pseudonym",
    "patient_pseudonym",
    "lesion_pseudonym",
    "created_on",  # days, not times (see reviews_csv_lines)
    "model_version",
    "predicted_class",
    "malignant_probability",
    *(f"p_{code}" for code in CLASSES),
    "photo_issues",
    "clinician_label",
    "verdict",
    "recommendation",
    "reviewed_on",
]


class EchoBuffer:
    """What csv.writer writes to, keeping nothing: its writerow returns the line written."""

    def write(self, line):
        return line


def reviews_csv_lines(diagnoses):
    """The CSV, a line at a time: one row per reviewed diagnosis (a queryset, read in chunks,
    with select_related("review")); no name, username, e-mail or note (free text may identify)."""
    writer = csv.writer(EchoBuffer())
    yield writer.writerow(CSV_HEADER)
    for diagnosis in diagnoses.iterator(chunk_size=2000):
        review = diagnosis.review
        yield writer.writerow(
            [
                # Not the id: it is on the patient's printed and shared reports and in e-mailed links,
                # so it would tie the row, and through the patient's code all their rows, to them.
                pseudonym("case", diagnosis.pk),
                pseudonym("patient", diagnosis.owner_id),
                pseudonym("lesion", diagnosis.mole_id) if diagnosis.mole_id else "",
                # The day alone: the reports show the time to the minute, which would find the row.
                localtime(diagnosis.created_at).date().isoformat(),
                diagnosis.model_version,
                diagnosis.predicted_class,
                "" if diagnosis.malignant_probability is None else f"{diagnosis.malignant_probability:.6f}",
                *(f"{diagnosis.probabilities.get(code, 0.0):.6f}" for code in CLASSES),
                " ".join(diagnosis.photo_issues),
                review.label,
                review.verdict,
                review.recommendation,
                localtime(review.reviewed_at).date().isoformat(),
            ]
        )


def _large_image(diagnosis, kind, alt):
    return format_html(
        '<a href="{0}" target="_blank" rel="noopener"><img src="{0}" alt="{1}" '
        'style="max-width:360px;max-height:360px;border-radius:4px"></a>',
        _file_url(diagnosis, kind),
        alt,
    )


def _thumbnail_strip(diagnoses):
    return format_html_join(
        "",
        '<a href="{0}" style="display:inline-block;margin:0 8px 8px 0;text-align:center">'
        '<img src="{1}" alt="Photo of {2}" width="96" height="96" loading="lazy" style="object-fit:cover;border-radius:4px">'
        "<br><small>{2} · {3}{4}</small></a>",
        (
            (
                _change_url(diagnosis),
                _file_url(diagnosis, "thumbnail"),
                date_format(localtime(diagnosis.created_at)),  # the day where the clinic is
                diagnosis.get_risk_display() or diagnosis.get_status_display(),
                _review_mark(diagnosis),
            )
            for diagnosis in diagnoses
        ),
    )


def _review_mark(diagnosis):
    """How a photo in the strip was reviewed: the reason for a photo that follows it, when the
    clinician asked for a new one."""
    if diagnosis.current_review is None:
        return ""
    return " · new photo asked for" if diagnosis.new_photo_asked_for else " · reviewed"


@admin.register(Mole)
class MoleAdmin(TitledList, RecordsStaffAccess, admin.ModelAdmin):
    list_title = "Tracked moles"
    list_display = ["name", "body_site", "patient", "created_at"]
    list_select_related = ["owner"]
    list_filter = ["body_site"]
    search_fields = ["name", "owner__username", "=owner__email"]  # the address only whole, as the queue's
    search_help_text = "Search by the mole's name, the patient's username or whole e-mail address."
    fields = ["name", "body_site", "patient", "created_at", "recheck_months", "next_photo_due", "photos"]
    readonly_fields = fields
    view_on_site = False  # the mole's page on the site is the patient's alone

    @admin.display(description="Patient", ordering="owner__username")
    def patient(self, obj):
        return obj.owner.get_username()

    @admin.display(description="Next photo due")
    def next_photo_due(self, obj):
        return obj.next_photo_due or "No reminder."

    @admin.display(description="Photos, newest first")
    def photos(self, obj):
        return _thumbnail_strip(obj.diagnoses.select_related("review").order_by("-created_at")) or "None."

    def has_add_permission(self, request):
        return False  # moles are the patient's own records

    def has_change_permission(self, request, obj=None):
        return False  # ... which the desk reads (view_mole) and never edits, superusers included

    def has_delete_permission(self, request, obj=None):
        return False  # ... nor deletes: the patient does (services.mole_delete), or with the account

    def staff_access(self, obj):
        return {"patient": obj.owner, "record": StaffAccess.Record.MOLE, "mole": obj}


class ReadOnlyLogAdmin(admin.ModelAdmin):
    """A log the application writes: read in the admin, never added to, edited or deleted there."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Review)
class ReviewAdmin(TitledList, RecordsStaffAccess, ReadOnlyLogAdmin):
    """A read-only log of reviews; reviews are written on the case page only. A review's page
    shows the patient's case (its name, the clinician's reading), so opening it is recorded."""

    list_title = "Reviews log"
    list_display = ["diagnosis_link", "reviewed_by", "verdict", "label", "recommendation", "reviewed_at",
                    "model_version", "of_earlier_result"]
    fields = ["diagnosis_link", "reviewed_by", "verdict", "label", "recommendation", "note", "reviewed_at",
              "model_version", "of_earlier_result", "review_history"]
    readonly_fields = fields
    list_select_related = ["reviewer", "diagnosis__owner"]
    # The address only whole, as the queue's; the reviewer also by the name kept when their
    # account was deleted (Review.reviewer_name).
    search_fields = ["diagnosis__owner__username", "=diagnosis__owner__email", "reviewer__username", "reviewer_name"]
    search_help_text = "Search by the patient's username or whole e-mail address, or the reviewer's username."
    # The reviewed_at filter gives the date ranges (today, past 7 days, this month, this year);
    # no date_hierarchy, whose years and months come from every row on each load.
    list_filter = ["verdict", "recommendation", "label", "reviewed_at"]
    ordering = ["-reviewed_at"]
    change_list_template = "admin/diagnoses/review/change_list.html"  # + a link to the agreement page

    def get_urls(self):
        agreement = path("agreement/", self.admin_site.admin_view(self.agreement_view),
                         name="diagnoses_review_agreement")
        return [agreement, *super().get_urls()]

    def agreement_view(self, request):
        """The model against the clinicians' reviews, per model version (services.review_agreement)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        versions = services.review_agreement()
        for figures in versions:
            figures["confusion_rows"] = [(CLASS_NAMES[code], row) for code, row in zip(CLASSES, figures["confusion"])]
        context = {
            **self.admin_site.each_context(request),
            "title": "The model against the clinicians",
            "opts": self.model._meta,
            "versions": versions,
            "class_names": [(code, CLASS_NAMES[code]) for code in CLASSES],
            "current_version": (load_model_card() or {}).get("version"),
        }
        return TemplateResponse(request, "admin/diagnoses/review/agreement.html", context)

    def staff_access(self, obj):
        return {"patient": obj.diagnosis.owner, "record": StaffAccess.Record.CASE, "diagnosis": obj.diagnosis}

    class Media:
        # the log's case column, and a review's earlier versions on its page (admin-review.css)
        css = {"all": ["css/admin-review.css"]}

    @admin.display(description="Case")
    def diagnosis_link(self, obj):
        # Whose photo and when: the case's own name (Diagnosis.__str__) adds its status, which is
        # not the review's, and wraps the column over seven lines.
        diagnosis = obj.diagnosis
        return format_html('<a href="{}">{}, <span class="when">{}</span></a>', _change_url(diagnosis),
                           diagnosis.owner.get_username(), diagnosis.uploaded_text)

    @admin.display(description="Reviewer", ordering="reviewer__username")
    def reviewed_by(self, obj):
        return _reviewer_name(obj)

    @admin.display(description="Earlier versions, replaced by corrections")
    def review_history(self, obj):
        return _review_history(obj.diagnosis_id) or "None."

    @admin.display(description="Of an earlier result")
    def of_earlier_result(self, obj):
        """A re-run with another model version has replaced the result it read (the queue counts
        the case as unreviewed again): diagnosis is loaded with the row (list_select_related).
        In words: a boolean column's red cross read as an alarm on every review of the result in
        hand, the usual case."""
        return "Yes: re-run since" if obj.is_of_an_earlier_result else EMPTY


@admin.register(StaffAccess)
class StaffAccessAdmin(ReadOnlyLogAdmin):
    """The desk's access log, read-only and for administrators: reviewers get no permission on
    it (REVIEWER_PERMISSIONS), and nobody may edit or delete it."""

    list_display = ["at", "staff_name", "patient", "record", "opened"]
    list_select_related = ["patient"]
    list_filter = ["record", "at"]
    search_fields = ["staff_name", "staff__username", "patient__username", "patient__email"]
    search_help_text = "Search by the staff member's name or username, or the patient's username or e-mail address."
    date_hierarchy = "at"
    fields = ["at", "staff_name", "patient", "record", "opened"]
    readonly_fields = fields

    @admin.display(description="Opened")
    def opened(self, obj):
        for kind, pk in (("diagnosis", obj.diagnosis_id), ("mole", obj.mole_id)):
            if pk:
                return format_html('<a href="{}">{}</a>', reverse(f"admin:diagnoses_{kind}_change", args=[pk]), pk)
        return EMPTY if obj.record == StaffAccess.Record.ACCOUNT else "since deleted by the patient"
