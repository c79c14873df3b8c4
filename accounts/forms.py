import logging
import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth.forms import (
    AuthenticationForm, PasswordChangeForm, PasswordResetForm, SetPasswordForm, UserCreationForm,
)
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.text import format_lazy

from diagnoses.throttles import TokenRateThrottle
from molesite.mail import render_subject

from .models import User
from .validators import validate_address_sent_as_typed

logger = logging.getLogger(__name__)


class NoColonMixin:
    """Labels without Django's trailing colon, as everywhere else on the site."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class ErrorsTakeTheFocusMixin:
    """A refused form's summary (templates/_form_errors.html) takes the keyboard's focus, so no
    field of it autofocuses then: one autofocus a page, and a screen reader reads what went wrong
    before the field that Django's auth forms would focus."""

    def full_clean(self):
        super().full_clean()
        if self._errors:
            for field in self.fields.values():  # each form's own copies of the widgets
                field.widget.attrs.pop("autofocus", None)


def consent_field():
    """The agreement to the privacy notice: at sign-up, and at the next sign-in of an account
    made without it (AgreeForm)."""
    return forms.BooleanField(
        label="I agree that molesite keeps my photos and results, which are health data, to estimate the risk "
              "of my moles, show them to me, and let the clinic's clinicians review them.",
        help_text=format_lazy('How they are kept, who sees them and how to remove them: '
                              '<a href="{}" target="_blank" rel="noopener">the privacy notice</a> (opens in a new tab).',
                              reverse_lazy("privacy")),
        error_messages={"required": "Tick this box to go on: molesite cannot check a photo without it."},
    )


# What the account forms that ask for the current password say when it is wrong.
NOT_YOUR_PASSWORD = "This is not your current password."


class SignUpForm(ErrorsTakeTheFocusMixin, NoColonMixin, UserCreationForm):
    # No validator of its own: this ModelForm's model validation runs User.email's
    # (accounts.validators); one here would only run the same check twice.
    email = forms.EmailField(
        required=True,
        label="E-mail address",  # the site's words (the e-mail change and password reset pages)
        help_text="Used to reset your password and to tell you when a clinician has reviewed one of "
        "your checks (you can turn that off on your account page). We send a link to it to "
        "confirm that it is yours.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    consent = consent_field()

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email", "model_improvement")
        widgets = {"model_improvement": forms.CheckboxInput(attrs={"class": "form-check-input"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        improvement = self.fields["model_improvement"]
        improvement.help_text = f"{improvement.help_text} Optional, off unless you tick it; you can change it later on your account page."
        # As the password change and reset pages say it (NewPasswordAgainMixin), not Django's
        # "Enter the same password as before, for verification."
        self.fields["password2"].help_text = "Type the password again."

    def save(self, commit=True):
        self.instance.consented_at = timezone.now()
        return super().save(commit=commit)


class SignInRateMixin:
    """At most API_TOKEN_RATE password sign-ins per client address, counted with the API's token
    requests (diagnoses.throttles.TokenRateThrottle): one address cannot try a password on many
    usernames, which the lockout (one username from one address) does not stop. Counted before
    the password is checked; refused, the form says when to try again, retry_after (seconds)
    tells the view, which answers 429 (sign_in_refused_status)."""

    retry_after = None

    def clean(self):
        throttle = TokenRateThrottle()
        if not throttle.allow_request(self.request, None):
            self.retry_after = max(1, math.ceil(throttle.wait() or 1))
            minutes = math.ceil(self.retry_after / 60)
            raise forms.ValidationError(
                f"Too many sign-ins from your address: try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                code="throttled")
        return super().clean()


def sign_in_refused_status(response, form):
    """A sign-in refused by SignInRateMixin answers 429 with Retry-After, as the lockout's does."""
    if form is not None and form.retry_after:
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after)
    return response


class LoginForm(ErrorsTakeTheFocusMixin, NoColonMixin, SignInRateMixin, AuthenticationForm):
    pass


class AdminLoginForm(SignInRateMixin, AdminAuthenticationForm):
    """The admin's sign-in form (accounts.admin_site), counted with the site's."""


class AgreeForm(ErrorsTakeTheFocusMixin, NoColonMixin, forms.Form):
    consent = consent_field()


def is_current_password(request, user, password: str) -> bool:
    """Checked as a sign-in is, through authenticate(), so that the sign-in lockout counts wrong
    guesses here too: a left-open session must not allow guessing the password without end
    (after LOGIN_FAILURE_LIMIT the page answers with the lockout, as the sign-in page does)."""
    signed_in_as = authenticate(request, username=user.get_username(), password=password)
    return signed_in_as is not None and signed_in_as.pk == user.pk


class QueuedPasswordResetForm(ErrorsTakeTheFocusMixin, NoColonMixin, PasswordResetForm):
    """Django's form, its e-mail sent by the worker: sent from the request, the answer would take
    an SMTP round trip longer when the address has an account, and tell so (the page never says
    it); and a mail server that is down delays the e-mail (retried) instead of failing the page."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Django's field and widget kept, labelled in the site's words (not Django's "Email");
        # each form has its own copy of the list.
        self.fields["email"].label = "E-mail address"
        self.fields["email"].validators.append(validate_address_sent_as_typed)

    def get_users(self, email):
        # Only to a confirmed address: one mistyped at sign-up may be a stranger's, whose reset
        # link would hand them the account. The page answers the same either way.
        return (user for user in super().get_users(email) if user.email_confirmed_at is not None)

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email,
                  html_email_template_name=None):
        from .tasks import send_password_reset_mail

        subject = render_subject(subject_template_name, context)
        body = render_to_string(email_template_name, context)
        html = render_to_string(html_email_template_name, context) if html_email_template_name else None
        try:
            send_password_reset_mail.delay(subject, body, to_email, html, context["user"].pk)
        except Exception:  # the broker unreachable: the page answers as always (nothing said)
            logger.exception("password reset e-mail not queued: the broker is unreachable")


class NewPasswordAgainMixin:
    """The confirmation's help text, Django's "Enter the same password as before" read as the
    old password on the change and reset pages: it is the new one, typed again."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["new_password2"].help_text = "Type the new password again."


class ChangePasswordForm(ErrorsTakeTheFocusMixin, NoColonMixin, NewPasswordAgainMixin, PasswordChangeForm):
    error_messages = {
        **PasswordChangeForm.error_messages,
        "password_incorrect": NOT_YOUR_PASSWORD,
    }

    def __init__(self, user, *args, request, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request
        # Django's "Old password", beside "New password", reads as any earlier one.
        self.fields["old_password"].label = "Current password"

    def clean_old_password(self):
        old_password = self.cleaned_data["old_password"]
        if not is_current_password(self.request, self.user, old_password):
            raise forms.ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


class CurrentPasswordForm(ErrorsTakeTheFocusMixin, NoColonMixin, forms.Form):
    """A form that asks for the password again: a left-open session must not be enough."""

    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args, request, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        self.user = request.user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not is_current_password(self.request, self.user, password):
            raise forms.ValidationError(NOT_YOUR_PASSWORD)
        return password


class DeleteAccountForm(CurrentPasswordForm):
    confirm = forms.BooleanField(label="I understand that my photos, results and account are deleted for good.")


class EmailChangeForm(CurrentPasswordForm):
    email = forms.EmailField(
        max_length=254,  # the column's: a longer address would fail at the confirmation (Postgres)
        label="New e-mail address",
        help_text="We send a link to it; the change is made when you open that link.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        validators=[validate_address_sent_as_typed],
    )
    field_order = ["email", "password"]

    def clean_email(self):
        email = self.cleaned_data["email"]
        if email.lower() == self.user.email.lower():
            raise forms.ValidationError("This is already your e-mail address.")
        return email


class NewPasswordForm(ErrorsTakeTheFocusMixin, NoColonMixin, NewPasswordAgainMixin, SetPasswordForm):
    """The new password from a reset link."""


class SettingsForm(NoColonMixin, forms.ModelForm):
    """The account page's settings: the e-mails a user gets (the review queue's daily count only
    for clinicians), and whether their reviewed checks go into the model-improvement export."""

    EMAIL_FIELDS = ("review_emails", "queue_emails")

    class Meta:
        model = User
        fields = ("review_emails", "queue_emails", "model_improvement")
        widgets = {name: forms.CheckboxInput(attrs={"class": "form-check-input"}) for name in fields}

    def __init__(self, *args, instance, **kwargs):
        super().__init__(*args, instance=instance, **kwargs)
        if not instance.is_reviewer:
            del self.fields["queue_emails"]

    def email_fields(self):
        return [self[name] for name in self.EMAIL_FIELDS if name in self.fields]


class SecondStepForm(ErrorsTakeTheFocusMixin, NoColonMixin, forms.Form):
    """A code from the authenticator app (or a one-time recovery code), checked against the
    devices that devices() returns inside a transaction: it locks them, so that two requests
    cannot use one code, and keeps each device's count of wrong codes (django-otp makes a
    device wait longer after each one)."""

    code = forms.CharField(
        label="Code", max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )

    def __init__(self, *args, devices, **kwargs):
        super().__init__(*args, **kwargs)
        self.devices = devices
        self.device = None

    def clean_code(self):
        code = "".join(self.cleaned_data["code"].split())
        with transaction.atomic():  # left normally: a wrong code's count must be kept
            candidates = list(self.devices())
            waiting = [device for device in candidates if not device.verify_is_allowed()[0]]
            self.device = next((device for device in candidates if device.verify_token(code)), None)
        if self.device is None:
            if waiting and len(waiting) == len(candidates):
                raise forms.ValidationError("Too many wrong codes. Wait a little, then enter the newest code.")
            raise forms.ValidationError(
                "This code is not right. Enter the newest code the app shows (it changes every 30 seconds); "
                "if it keeps failing, check that the phone's clock is set automatically."
            )
        return code
