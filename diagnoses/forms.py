from django import forms

from .models import BODY_SITES, Mole


class UploadForm(forms.Form):
    image = forms.FileField(
        label="Photo of the mole",
        help_text="JPEG, PNG or WebP, up to 20 MB. Close up, in focus, in good light.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp,image/*", "capture": "environment"}),
    )
    mole = forms.ModelChoiceField(
        queryset=Mole.objects.none(),
        required=False,
        label="Which mole is this?",
        empty_label="— not tracked / a new mole —",
    )
    new_mole_name = forms.CharField(
        max_length=80, required=False, label="Or track it as a new mole named", help_text='e.g. "Left shoulder"'
    )
    new_mole_body_site = forms.ChoiceField(choices=BODY_SITES, required=False, label="Body site", initial="unknown")

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.fields["mole"].queryset = Mole.objects.filter(owner=owner)

    def clean(self):
        cleaned = super().clean()
        name = (cleaned.get("new_mole_name") or "").strip()
        if cleaned.get("mole") and name:
            self.add_error("new_mole_name", "Choose an existing mole or name a new one, not both.")
        elif name and Mole.objects.filter(owner=self.owner, name=name).exists():
            self.add_error("new_mole_name", "You already track a mole with this name: pick it from the list.")
        cleaned["new_mole_name"] = name
        return cleaned
