from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, UserCreationForm

from .models import User


class NoColonMixin:
    """Labels without Django's trailing colon, as everywhere else on the site."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class SignUpForm(NoColonMixin, UserCreationForm):
    email = forms.EmailField(
        required=True,
        help_text="Used to reset your password and to tell you when a clinician has reviewed one of "
        "your checks (you can turn that off on your account page).",
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class LoginForm(NoColonMixin, AuthenticationForm):
    pass


class ChangePasswordForm(NoColonMixin, PasswordChangeForm):
    pass


class CurrentPasswordForm(NoColonMixin, forms.Form):
    """A form that asks for the password again: a left-open session must not be enough."""

    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("This is not your current password.")
        return password


class DeleteAccountForm(CurrentPasswordForm):
    confirm = forms.BooleanField(label="I understand that my photos, results and account are deleted for good.")


class EmailChangeForm(CurrentPasswordForm):
    email = forms.EmailField(
        label="New e-mail address",
        help_text="We send a link to it; the change is made when you open that link.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    field_order = ["email", "password"]

    def clean_email(self):
        email = self.cleaned_data["email"]
        if email.lower() == self.user.email.lower():
            raise forms.ValidationError("This is already your e-mail address.")
        return email


class NotificationsForm(NoColonMixin, forms.ModelForm):
    class Meta:
        model = User
        fields = ("review_emails",)
        widgets = {"review_emails": forms.CheckboxInput(attrs={"class": "form-check-input"})}
