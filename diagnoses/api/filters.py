from datetime import UTC

from django import forms
from django.db.models import F
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter

from ..models import Diagnosis


class UTCDateTimeField(IsoDateTimeField):
    """ISO 8601, converted to UTC: Postgres refuses offsets of 16 hours or more (Python takes 23:59),
    and a moment outside the years 1–9999 once converted is the client's error, not a crash."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class UTCDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


def created_filter(lookup_expr, help_text):
    """A filter on the creation time. It takes what Django's parse_datetime reads, a date and time
    or a date alone (its midnight in TIME_ZONE): the schema says both, not date-time only. With
    its type given, drf-spectacular takes the description from there too."""
    moment = UTCDateTimeFilter(field_name="created_at", lookup_expr=lookup_expr, help_text=help_text)
    return extend_schema_field({
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
        "description": help_text,
    })(moment)


class DiagnosisFilter(filters.FilterSet):
    """Applied to the requesting user's own diagnoses only (the view's queryset)."""

    status = filters.ChoiceFilter(choices=Diagnosis.Status.choices)
    risk = filters.ChoiceFilter(choices=Diagnosis.Risk.choices)
    mole = filters.UUIDFilter(field_name="mole_id", help_text="Only the photos of this mole (its id).")
    created_after = created_filter(
        "gte", "ISO 8601, a date and time or a date alone (its midnight in the server's time zone, UTC by "
               "default), e.g. 2026-01-31T08:00:00Z or 2026-01-31.",
    )
    created_before = created_filter("lt", "ISO 8601, as `created_after`; this moment itself is excluded.")

    class Meta:
        model = Diagnosis
        fields = ("status", "risk", "mole", "created_after", "created_before")


# The orderable fields that can be NULL (a check not yet done has no probability nor finish time).
NULLABLE_ORDERING = {"finished_at", "malignant_probability"}


def nulls_last(key):
    """A DRF ordering key ("-name" or "name"), as an expression that sorts NULLs last either way
    for a nullable field; left to the database, Postgres puts them first when descending and
    SQLite first when ascending. Other keys stay plain, so that the default order (-created_at)
    still reads the history index (owner, -created_at) in its order."""
    name = key.lstrip("-")
    if name not in NULLABLE_ORDERING:
        return key
    return F(name).desc(nulls_last=True) if key.startswith("-") else F(name).asc(nulls_last=True)


def ordering_values(fields):
    """The values `ordering` takes, each field ascending then descending: the schema's enum, and
    the list a refusal names."""
    return [f"{sign}{name}" for name in fields for sign in ("", "-")]


class StableOrderingFilter(OrderingFilter):
    """The requested ordering, then newest first and id, so that pages never overlap on ties;
    NULLs last, the same on every database."""

    def remove_invalid_fields(self, queryset, fields, view, request):
        """A term that is not an orderable field is refused (400), as a bad filter's value is:
        DRF drops it, and a client that misspelt one got the default order without a word."""
        valid = [name for name, _ in self.get_valid_fields(queryset, view, {"request": request})]
        unknown = [term for term in fields if term.removeprefix("-") not in valid]
        if unknown:
            allowed = ", ".join(f'"{value}"' for value in ordering_values(valid))
            named = ", ".join(f'"{term}"' for term in unknown)
            raise ValidationError({self.ordering_param: [
                f"{named} is not an ordering we know: use one of {allowed}."]}, code="invalid_choice")
        return fields

    def get_ordering(self, request, queryset, view):
        ordering = list(super().get_ordering(request, queryset, view) or [])
        named = {key.lstrip("-") for key in ordering}
        return [*ordering, *(key for key in ("-created_at", "-pk") if key.lstrip("-") not in named)]

    def filter_queryset(self, request, queryset, view):
        return queryset.order_by(*map(nulls_last, self.get_ordering(request, queryset, view)))
