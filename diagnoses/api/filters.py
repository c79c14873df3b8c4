from datetime import UTC

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
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


class DiagnosisFilter(filters.FilterSet):
    """Applied to the requesting user's own diagnoses only (the view's queryset)."""

    status = filters.ChoiceFilter(choices=Diagnosis.Status.choices)
    risk = filters.ChoiceFilter(choices=Diagnosis.Risk.choices)
    mole = filters.UUIDFilter(field_name="mole_id", help_text="Only the photos of this mole (its id).")
    created_after = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="ISO 8601, e.g. 2026-01-31 or 2026-01-31T08:00:00Z."
    )
    created_before = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="ISO 8601; this moment itself is excluded."
    )

    class Meta:
        model = Diagnosis
        fields = ("status", "risk", "mole", "created_after", "created_before")


class StableOrderingFilter(OrderingFilter):
    """The requested ordering, then newest first and id, so that pages never overlap on ties."""

    def get_ordering(self, request, queryset, view):
        ordering = list(super().get_ordering(request, queryset, view) or [])
        named = {key.lstrip("-") for key in ordering}
        return [*ordering, *(key for key in ("-created_at", "-pk") if key.lstrip("-") not in named)]
