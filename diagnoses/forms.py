from django import forms
from django.conf import settings

from .images import ACCEPTED_NAMES, upload_limits
from .models import (
    BODY_SITES, MOLE_NAME_MAX_LENGTH, RECHECK_CHOICES, SHARE_LINK_DAYS, SHARE_LINK_DEFAULT_DAYS,
    Diagnosis, Mole, clean_mole_name, normalise_mole_name,
)

# The file pickers' filter. The explicit HEIC/HEIF/AVIF entries and extensions make the file
# dialogs of browsers that do not know those types offer iPhone and AVIF photos too.
IMAGE_ACCEPT = "image/jpeg,image/png,image/webp,image/heic,image/heif,image/avif,.heic,.heif,.avif,image/*"

NEW_MOLE_NAME_TAKEN = "You already track a mole with this name: pick it from the list."


class UploadForm(forms.Form):
    image = forms.FileField(
        label="Photo of the mole",
        widget=forms.ClearableFileInput(attrs={"accept": IMAGE_ACCEPT}),
    )
    mole = forms.ModelChoiceField(
        queryset=Mole.objects.none(),
        required=False,
        label="Which mole is this?",
        empty_label="— not tracked / a new mole —",
    )
    new_mole_name = forms.CharField(
        max_length=MOLE_NAME_MAX_LENGTH, required=False, label="Name of the new mole",
        widget=forms.TextInput(attrs={"placeholder": "e.g. Left shoulder"}),
    )
    new_mole_body_site = forms.ChoiceField(choices=BODY_SITES, required=False, label="Body site", initial="unknown")

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        self.owner = owner
        self.fields["mole"].queryset = Mole.objects.filter(owner=owner)
        image = self.fields["image"]
        image.help_text = f"{upload_limits()}. Close up, in focus, in good light."
        # upload.js checks a chosen file against the same limits before sending it
        image.widget.attrs.update({"data-max-bytes": settings.MAX_UPLOAD_BYTES, "data-accepted": ACCEPTED_NAMES})

    def clean(self):
        cleaned = super().clean()
        # A name of nothing visible is no name, as an empty one: the photo is not tracked.
        name = normalise_mole_name(cleaned.get("new_mole_name") or "")
        if cleaned.get("mole") and name:
            # Whatever the name, it is one too many: this error alone, not "pick it from the list".
            self.add_error("new_mole_name", "Choose an existing mole or name a new one, not both.")
        else:
            try:
                clean_mole_name(name, owner=self.owner, taken_message=NEW_MOLE_NAME_TAKEN)
            except forms.ValidationError as error:
                self.add_error("new_mole_name", error)
        cleaned["new_mole_name"] = name
        return cleaned


UNTRACKED = "none"


class HistoryFilterForm(forms.Form):
    """The GET filters of the history page; invalid values are ignored, never an error page."""

    risk = forms.ChoiceField(required=False, choices=[("", "Any risk"), *Diagnosis.Risk.choices])
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Diagnosis.Status.choices])
    mole = forms.ChoiceField(required=False, label="Mole")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        moles = Mole.objects.filter(owner=owner).values_list("pk", "name")
        self.fields["mole"].choices = [("", "Any mole"), (UNTRACKED, "Untracked photos")] + [
            (str(pk), name) for pk, name in moles
        ]
        for field in self.fields.values():
            is_choice = isinstance(field, forms.ChoiceField)
            field.widget.attrs["class"] = "form-select" if is_choice else "form-control"

    def filter(self, queryset):
        self.is_valid()  # a bad field drops out of cleaned_data; the others still filter
        data = self.cleaned_data
        if data.get("risk"):
            queryset = queryset.filter(risk=data["risk"])
        if data.get("status"):
            queryset = queryset.filter(status=data["status"])
        if data.get("mole") == UNTRACKED:
            queryset = queryset.filter(mole__isnull=True)
        elif data.get("mole"):
            queryset = queryset.filter(mole_id=data["mole"])
        if data.get("date_from"):
            queryset = queryset.filter(created_at__date__gte=data["date_from"])
        if data.get("date_to"):
            queryset = queryset.filter(created_at__date__lte=data["date_to"])
        return queryset

    @property
    def dates_reversed(self):
        """Whether From is after To: no photo can match, and the page says why."""
        data = getattr(self, "cleaned_data", {})
        return bool(data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"])

    @property
    def is_filtering(self):
        return self.is_bound and any(self.data.get(name) for name in self.fields)


class MoleForm(forms.ModelForm):
    recheck_months = forms.TypedChoiceField(
        label="Photo reminder", choices=[("", "No reminders"), *RECHECK_CHOICES], coerce=int, empty_value=None,
        required=False,
        help_text="We e-mail you when a new photo of this mole is due, counted from its last photo.",
    )

    class Meta:
        model = Mole
        fields = ("name", "body_site", "recheck_months")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)

    def clean_name(self):
        name = clean_mole_name(self.cleaned_data["name"], owner=self.instance.owner, exclude_pk=self.instance.pk)
        if not name:  # nothing visible: refused as an empty name is
            raise forms.ValidationError(self.fields["name"].error_messages["required"], code="required")
        return name


class ShareLinkForm(forms.Form):
    days = forms.TypedChoiceField(choices=SHARE_LINK_DAYS, coerce=int, initial=SHARE_LINK_DEFAULT_DAYS,
                                  label="The link works for", widget=forms.Select(attrs={"class": "form-select"}))
    # Off unless ticked: the earlier photos are more than the check the patient chose to share.
    with_earlier_photos = forms.BooleanField(required=False,
                                             widget=forms.CheckboxInput(attrs={"class": "form-check-input"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
