from django.contrib.auth import get_user_model
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from ml import CLASS_NAMES, CLASSES
from ml.quality import ISSUES

from ..images import upload_limits
from ..models import (
    BODY_SITES, CLASS_CHOICES, SHARE_LINK_DAYS, SHARE_LINK_DEFAULT_DAYS, Diagnosis,
    Mole, Review, ShareLink, StaffAccess, clean_mole_name,
)
from ..views import mole_photos_timeline, new_photo_asked_on

# Read-only text fields the database keeps as "" until known (or, for the account's `email`,
# when there is none: an account an administrator made without one); the API says null instead.
NULL_WHEN_BLANK = ("predicted_class", "risk", "model_version", "error", "label", "advice_source", "email")

# Whose advice `advice` is (NextStep.advice_source: Diagnosis.next_step's source, an earlier photo's
# review told apart), as `advice_source` gives it. Its "" before a result is null here.
ADVICE_SOURCES = [
    ("review", "A clinician's `review` of this result (its `of_earlier_result` false)."),
    ("earlier_review", "A `review` of an earlier result (`of_earlier_result` true) asking more than the "
                       "advice otherwise given: it stands until a clinician reviews the new result."),
    ("previous_photo", "An earlier photo of the mole (`previous_rated_higher` in the detail) rated in a higher "
                       "band: the highest rated since the last photo a clinician judged. A lower estimate now "
                       "does not cancel it."),
    ("previous_photo_review", "A clinician's review of an earlier photo of the mole (`previous_rated_higher` in "
                              "the detail; its `review` among the mole's photos), the last photo a clinician "
                              "judged, asking more than the advice otherwise given (urgent; a dermatologist "
                              "soon against low): `advice` names its recommendation. It stands until a "
                              "clinician reviews a later photo; a lower estimate now does not cancel it."),
    ("band", "The risk band's own advice."),
]


class BlankAsNullMixin:
    def to_representation(self, instance):
        data = super().to_representation(instance)
        for name in NULL_WHEN_BLANK:
            if data.get(name) == "":
                data[name] = None
        return data


# One float per lesion class, so the schema names all seven.
Probabilities = type(
    "Probabilities",
    (serializers.Serializer,),
    {code: serializers.FloatField(help_text=CLASS_NAMES[code]) for code in CLASSES},
)


class ReviewSerializer(BlankAsNullMixin, serializers.ModelSerializer):
    label = serializers.ChoiceField(
        choices=CLASS_CHOICES, allow_null=True, read_only=True, help_text="The clinician's own label."
    )
    # Declared for the schema: blank in the database (not recorded), null in the answer.
    model_version = serializers.CharField(
        allow_null=True, read_only=True,
        help_text="The model version whose result the clinician read; null when not recorded.",
    )
    # Review.is_of_an_earlier_result: the rule of the pages, the review desk (is_reviewed) and
    # Diagnosis.current_review.
    of_earlier_result = serializers.BooleanField(
        source="is_of_an_earlier_result", read_only=True,
        help_text="The review is of an earlier result of the photo: a re-run (another model version) has "
                  "replaced the result the clinician read, or is replacing it (the diagnosis' `model_version` "
                  "is null meanwhile). Once the new result is in, such a review is history, not a reading of "
                  "the result shown: it counts as no review, unless it asks more than the new advice "
                  "(`advice_source` `earlier_review`). While the diagnosis has no result (`queued`, "
                  "`running`, `failed`) it is the review the pages show: show it. "
                  "False for a review of the result shown, and for one whose `model_version` was not "
                  "recorded.",
    )

    class Meta:
        model = Review
        fields = ("verdict", "label", "recommendation", "note", "reviewed_at", "model_version", "of_earlier_result")
        read_only_fields = fields


# `step`: Diagnosis.next_step, worked out once a diagnosis by to_representation (with_next_step).
ADVICE_HELP = (
    "What to do next, as the result page and the report say it; empty until `done`. A clinician's `review` of "
    "this result leads; then one of an earlier result (its `of_earlier_result` true) asking more than the "
    "advice otherwise given, until a clinician reviews the new result; then the mole's earlier photo whose "
    "advice asks more, by its band or its clinician's review; else the risk band's own advice, which for a low "
    "result on an `acral` body site or from a photo with `photo_issues` says the estimate cannot be relied on. "
    "`advice_source` says which. The text is the pages', word for word."
)


def advice_field(help_text=ADVICE_HELP):
    return serializers.CharField(source="step.text", read_only=True, help_text=help_text)


def advice_source_field():
    return serializers.ChoiceField(
        source="step.advice_source", choices=ADVICE_SOURCES, allow_null=True, read_only=True,
        help_text="Whose advice `advice` is (Diagnosis.next_step's source); null until `done`. `review` and "
                  "`earlier_review` are a clinician's: show the `review` (its `recommendation` and `note`) with "
                  "the advice, as the pages do before it. `previous_photo_review` is a clinician's too, of an "
                  "earlier photo (`previous_rated_higher` in the detail), not this photo's estimate.",
    )


def review_field():
    return ReviewSerializer(
        allow_null=True, read_only=True,
        help_text="A clinician's reading, once there is one; kept through a re-run, then of an earlier result "
                  "(`of_earlier_result`).",
    )


def with_next_step(diagnosis):
    """The diagnosis with its Diagnosis.next_step as `step`, worked out once though `advice`,
    `advice_source` and the detail's `previous_rated_higher` all read it: it may ask the database
    for the photo before."""
    diagnosis.step = diagnosis.next_step()
    return diagnosis


def _file_url(diagnosis, kind, request):
    if not getattr(diagnosis, kind):
        return None
    return reverse(f"api:diagnosis-{kind}", args=[diagnosis.pk], request=request)


class DiagnosisSummarySerializer(BlankAsNullMixin, serializers.ModelSerializer):
    """A diagnosis as one point on a mole's timeline."""

    url = serializers.HyperlinkedIdentityField(view_name="api:diagnosis-detail")
    risk = serializers.ChoiceField(choices=Diagnosis.Risk.choices, allow_null=True, read_only=True)
    predicted_class = serializers.ChoiceField(choices=CLASS_CHOICES, allow_null=True, read_only=True)
    photo_issues = serializers.ListField(
        child=serializers.ChoiceField(choices=ISSUES), read_only=True,
        help_text="What the upload check found wrong with the photo (`dark`, `bright`, `blurry`, `grey`); "
                  "empty when nothing. On such photos the result is less reliable: see `photo_advice`.",
    )
    thumbnail = serializers.SerializerMethodField()
    model_version = serializers.CharField(
        allow_null=True, read_only=True,
        help_text="The model version that gave the result (null until there is one). Results of two versions "
                  "differ by the model too, not only by the mole: each version has its own risk thresholds.",
    )

    class Meta:
        model = Diagnosis
        fields = (
            "id",
            "url",
            "status",
            "created_at",
            "finished_at",
            "risk",
            "malignant_probability",
            "predicted_class",
            "photo_issues",
            "thumbnail",
            "model_version",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True, help_text="The 320-pixel preview (JPEG)."))
    def get_thumbnail(self, diagnosis):
        return _file_url(diagnosis, "thumbnail", self.context.get("request"))


class DiagnosisSerializer(DiagnosisSummarySerializer):
    """One uploaded photo and, once its analysis is done, the result."""

    probabilities = serializers.SerializerMethodField()
    error = serializers.CharField(
        allow_null=True, read_only=True, help_text="Why the analysis failed (status `failed`)."
    )
    advice = advice_field(ADVICE_HELP + " The detail gives the photo rated higher in `previous_rated_higher`.")
    advice_source = advice_source_field()
    photo_advice = serializers.CharField(
        read_only=True, help_text="What is wrong with the photo and how to take a better one; empty when nothing."
    )
    late = serializers.BooleanField(
        source="is_late", read_only=True,
        help_text="Still `queued` or `running` after a minute: the workers are busy or down; the photo waits safely.",
    )
    image = serializers.SerializerMethodField()
    heatmap = serializers.SerializerMethodField()
    review = review_field()

    class Meta(DiagnosisSummarySerializer.Meta):
        fields = (
            *DiagnosisSummarySerializer.Meta.fields,
            "mole",
            "probabilities",
            "error",
            "advice",
            "advice_source",
            "photo_advice",
            "late",
            "image",
            "heatmap",
            "review",
        )
        read_only_fields = fields

    def to_representation(self, diagnosis):
        return super().to_representation(with_next_step(diagnosis))

    @extend_schema_field(Probabilities(allow_null=True, help_text="All seven classes (status `done`)."))
    def get_probabilities(self, diagnosis):
        if diagnosis.status != Diagnosis.Status.DONE:
            return None
        return {code: diagnosis.probabilities.get(code, 0.0) for code in CLASSES}

    @extend_schema_field(OpenApiTypes.URI)
    def get_image(self, diagnosis):
        return _file_url(diagnosis, "image", self.context.get("request"))

    @extend_schema_field(serializers.URLField(allow_null=True, help_text="Grad-CAM overlay (PNG), once done."))
    def get_heatmap(self, diagnosis):
        return _file_url(diagnosis, "heatmap", self.context.get("request"))


class DiagnosisDetailSerializer(DiagnosisSerializer):
    """One diagnosis read on its own. `previous_rated_higher` is left out of the list by choice:
    the list keeps its fields stable for clients."""

    # Diagnosis.next_step's photo: set only when `advice` follows it, so the two never disagree
    previous_rated_higher = DiagnosisSummarySerializer(
        source="step.previous", allow_null=True, read_only=True,
        help_text="The mole's earlier photo whose advice `advice` follows, when no clinician has reviewed this "
                  "one: the photo rated in the highest band above this one's since the last photo a clinician "
                  "judged (a review that could not tell leaves a photo unjudged, as does a review of an earlier "
                  "result, whose `model_version` is not the diagnosis'), or that judged photo when its "
                  "review asks more (urgent; a dermatologist soon against low: `advice` names it, and "
                  "`advice_source` is `previous_photo_review`), until a clinician reviews a later photo; and "
                  "no review of an earlier result of this one asks more "
                  "(`advice` gives that review's instead); null otherwise. A lower estimate now does not "
                  "cancel it: follow that advice until a doctor has seen the mole.",
    )

    class Meta(DiagnosisSerializer.Meta):
        fields = (*DiagnosisSerializer.Meta.fields, "previous_rated_higher")
        read_only_fields = fields


# An upload's `mole` that is none of the patient's moles: the same words for an id no mole has
# and another patient's mole, so that the answer never tells that a mole exists.
NOT_YOUR_MOLE = "No mole of yours has this id."
NOT_A_MOLE_ID = "This is not a mole's id: give the id of one of your moles, or none."


class DiagnosisUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text=f"{upload_limits()}.")
    mole = serializers.PrimaryKeyRelatedField(
        queryset=Mole.objects.none(), required=False, allow_null=True, help_text="One of your moles (its id).",
        # a malformed id is refused by this field in these words, not by the database's in Django's
        pk_field=serializers.UUIDField(error_messages={"invalid": NOT_A_MOLE_ID}),
        error_messages={"does_not_exist": NOT_YOUR_MOLE, "incorrect_type": NOT_A_MOLE_ID},
    )

    def __init__(self, *args, owner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["mole"].queryset = Mole.objects.filter(owner_id=getattr(owner, "pk", None))


class RiskChangeSerializer(serializers.Serializer):
    """A finished photo in another risk band than the mole's finished photo before it, as the
    mole's page marks it (diagnoses.views.mole_timeline's BandChange)."""

    went_up = serializers.BooleanField(read_only=True, help_text="Up (true) or down (false).")
    from_risk = serializers.ChoiceField(choices=Diagnosis.Risk.choices, read_only=True,
                                        help_text="The risk band of the finished photo before.")


class MolePhotoSerializer(DiagnosisSummarySerializer):
    """One photo on a mole's timeline, with what the mole's page shows of it: its risk band's
    change, the clinician's review and what to do next."""

    review = review_field()
    advice = advice_field()
    advice_source = advice_source_field()
    # `band_change`: set on each photo by MoleSerializer.to_representation
    risk_change = RiskChangeSerializer(
        source="band_change", allow_null=True, read_only=True,
        help_text="How its risk band differs from the mole's finished photo before (photos not `done` are "
                  "skipped); null when the same, when it is not `done`, or for the first. The mole's page warns "
                  "of the latest rise (`went_up`) that no clinician has judged: no `review` with "
                  "`of_earlier_result` false and a `verdict` other than `unclear`.",
    )

    class Meta(DiagnosisSummarySerializer.Meta):
        fields = (*DiagnosisSummarySerializer.Meta.fields, "review", "advice", "advice_source", "risk_change")
        read_only_fields = fields

    def to_representation(self, diagnosis):
        return super().to_representation(with_next_step(diagnosis))


class MoleSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:mole-detail")
    # `photos`: set by to_representation
    diagnoses = MolePhotoSerializer(source="photos", many=True, read_only=True, help_text="Oldest first.")
    next_photo_due = serializers.DateField(
        read_only=True, allow_null=True,
        help_text="The day a new photo is due (recheck_months after the last one), or null without reminders.",
    )
    new_photo_requested = serializers.SerializerMethodField(
        help_text="A clinician reviewing the latest photo asked for a new one (its review's recommendation is "
                  "`new_photo`); false again once a newer photo is analysed (`done`): one still `queued` or "
                  "`running`, or `failed`, has not answered the request.")

    class Meta:
        model = Mole
        fields = ("id", "url", "name", "body_site", "recheck_months", "next_photo_due", "new_photo_requested",
                  "created_at", "diagnoses")
        read_only_fields = ("id", "url", "new_photo_requested", "created_at", "diagnoses")
        extra_kwargs = {
            # A wrong body site names the right ones: a client should not have to read the schema.
            "body_site": {"error_messages": {"invalid_choice": (
                '"{input}" is not a body site we know: use one of '
                + ", ".join(f'"{code}"' for code, _ in BODY_SITES) + ".")}},
            # Its choices say it all. The model field's range validators (0 to the database's
            # largest small integer) add nothing to them, and in the schema a minimum and maximum
            # beside the enum, the maximum SQLite's 2**63 - 1.
            "recheck_months": {"validators": []},
        }

    def to_representation(self, mole):
        if "diagnoses" in getattr(mole, "_prefetched_objects_cache", {}):
            mole.photos = list(mole.diagnoses.all())  # MoleViewSet's: oldest first, with their reviews
        else:  # a mole just created
            mole.photos = list(mole.diagnoses.select_related("review").order_by("created_at", "pk"))
        # As the mole's page: each photo's band change, with the finished photos set on the mole,
        # so that no photo's `advice` asks the database.
        for photo, change in mole_photos_timeline(mole, mole.photos):
            photo.band_change = change
        return super().to_representation(mole)

    def get_new_photo_requested(self, mole) -> bool:
        return new_photo_asked_on(mole.photos) is not None  # as the mole's page and My moles say it

    def validate_name(self, name):
        # clean_mole_name raises Django's ValidationError: DRF's to_internal_value makes it this
        # field's error, its message and code kept ("unique" when taken, "max_length" too long).
        exclude_pk = self.instance.pk if self.instance is not None else None
        name = clean_mole_name(name, owner=self.context["request"].user, exclude_pk=exclude_pk)
        if not name:  # nothing visible: refused as a blank name is
            self.fields["name"].fail("blank")
        return name


class StaffAccessSerializer(serializers.ModelSerializer):
    staff = serializers.CharField(source="staff_name", read_only=True,
                                  help_text="The name of the member of staff, as it was then.")
    diagnosis = serializers.HyperlinkedRelatedField(
        view_name="api:diagnosis-detail", read_only=True, allow_null=True,
        help_text="The check opened; null for a mole or the account, or a check since deleted.",
    )
    mole = serializers.HyperlinkedRelatedField(
        view_name="api:mole-detail", read_only=True, allow_null=True,
        help_text="The mole opened; null for a check or the account, or a mole since deleted.",
    )

    class Meta:
        model = StaffAccess
        fields = ("at", "staff", "record", "diagnosis", "mole")
        read_only_fields = fields  # a list to read, never written through the API


class ShareLinkSerializer(serializers.ModelSerializer):
    """A link to one check's report for someone without an account. Never its token: that is in
    `url`, given once, when the link is made."""

    state = serializers.ChoiceField(
        choices=ShareLink.State.choices, read_only=True,
        help_text="`active` (it opens the report), `expired` or `withdrawn` (you stopped sharing).",
    )
    open_count = serializers.IntegerField(read_only=True, help_text="How many times the report was opened with it.")
    diagnosis = serializers.HyperlinkedRelatedField(
        view_name="api:diagnosis-detail", read_only=True, help_text="The diagnosis whose report it opens.",
    )

    class Meta:
        model = ShareLink
        fields = ("id", "diagnosis", "state", "created_at", "expires_at", "revoked_at", "with_earlier_photos",
                  "open_count", "last_opened_at")
        read_only_fields = fields


class ShareLinkCreatedSerializer(ShareLinkSerializer):
    url = serializers.URLField(
        read_only=True,
        help_text="The report's address, to send to the doctor. Given only in this answer: only a hash of its "
                  "token is kept.",
    )

    class Meta(ShareLinkSerializer.Meta):
        fields = (*ShareLinkSerializer.Meta.fields, "url")
        read_only_fields = fields


class ShareLinkCreateSerializer(serializers.Serializer):
    days = serializers.ChoiceField(choices=SHARE_LINK_DAYS, default=SHARE_LINK_DEFAULT_DAYS,
                                   help_text="How long the link works, in days.")
    with_earlier_photos = serializers.BooleanField(
        default=False, help_text="Whether the report also shows the earlier photos of the diagnosis' mole (with their "
                                 "estimates), so the doctor sees how it changed.")


class AccountSerializer(BlankAsNullMixin, serializers.ModelSerializer):
    """The account's settings a patient may change here; the address changes on the site, where
    a link to the new address confirms it."""

    # Declared for the schema: blank in the database (none given), null in the answer.
    email = serializers.EmailField(
        allow_null=True, read_only=True,
        help_text="The account's e-mail address; null when it has none (an account made by an "
                  "administrator without one). It changes on the site.",
    )

    class Meta:
        model = get_user_model()
        fields = ("username", "email", "date_joined", "consented_at", "review_emails", "model_improvement")
        read_only_fields = ("username", "date_joined", "consented_at")


# --- the answers other than success (the schema's; every one is JSON) --------------------------


class ErrorSerializer(serializers.Serializer):
    """A refusal or an error: what went wrong, in words."""

    detail = serializers.CharField(help_text="What went wrong, for a person to read.")


class FieldErrorsSerializer(serializers.Serializer):
    """A 400's body for invalid fields. Its keys are the request's field names, which no field
    of a serializer can say: FieldErrorsSchema writes its schema."""


class FieldErrorsSchema(OpenApiSerializerExtension):
    target_class = FieldErrorsSerializer

    def map_serializer(self, auto_schema, direction):
        return {
            "type": "object",
            "description": "Invalid fields: each one's messages, under its name "
                           "(`non_field_errors` for those of no one field).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        }
