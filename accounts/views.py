import base64
import hashlib
import logging
import tempfile
import unicodedata
from datetime import timedelta
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from urllib.parse import urlsplit

import django_otp
import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import transaction
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from diagnoses import services
from diagnoses.models import ShareLink, is_reviewed
from diagnoses.throttles import CACHE_DOWN
from molesite.mail import send_templated_mail
from molesite.redirects import safe_next_url

from .forms import (
    AgreeForm, ChangePasswordForm, DeleteAccountForm, EmailChangeForm, LoginForm, QueuedPasswordResetForm,
    SecondStepForm, SettingsForm, SignUpForm, sign_in_refused_status,
)
from .validators import envelope_address

# A data export is built in memory up to this size and in a temporary file beyond it.
EXPORT_SPOOL_BYTES = 16 * 1024 * 1024
STAFF_ACCESS_PAGE_SIZE = 50

logger = logging.getLogger(__name__)
EMAIL_CHANGE_SALT = "accounts.email-change"
EMAIL_CHANGE_OLD_ADDRESS_SALT = "accounts.email-change.old-address"


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("diagnoses:list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Upload a photo of a mole to get started.")
        _ask_to_confirm_address(request, user)
        return redirect("diagnoses:new")
    return render(request, "accounts/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    form_class = LoginForm

    def get_redirect_url(self):
        # A signed-in visitor sent to ?next=<this page> would loop: Django raises (a 500).
        next_url = super().get_redirect_url()
        return "" if next_url and urlsplit(next_url).path == self.request.path else next_url

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, f"Signed in as {form.get_user().username}.")
        return response

    def form_invalid(self, form):
        return sign_in_refused_status(super().form_invalid(form), form)


@login_required
@require_http_methods(["GET", "POST"])
def agree(request):
    """The agreement to the privacy notice that sign-up asks for, for an account that lacks it
    (accounts.middleware.PrivacyAgreementMiddleware sends such an account here from any other page)."""
    next_url = safe_next_url(request, request.POST.get("next") or request.GET.get("next"),
                             reverse("diagnoses:list"))
    if not request.user.needs_privacy_agreement:
        return redirect(next_url)
    form = AgreeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        request.user.consented_at = timezone.now()
        request.user.save(update_fields=["consented_at"])
        return redirect(next_url)
    return render(request, "accounts/agree.html", {"form": form, "next": next_url})


class LogoutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are signed out.")
        return response


def mailbox_key(email: str) -> str:
    """One spelling for every way of writing the mailbox that email reaches: as the mailer sends
    it (envelope_address: "=?utf-8?q?sam?="@x.org is sam@x.org, пример.рф is in punycode), its
    local part decoded back, then folded as Django matches an address to an account (NFKC,
    casefold): "ſam@…" (a long s) finds sam's account on Postgres."""
    try:
        envelope = envelope_address(email.strip())
    except ValueError:  # not sendable at all: counted as written
        return _folded(email.strip())
    local, _, domain = envelope.rpartition("@")
    return _folded(f"{_decoded_local_part(local)}@{domain}")


def _decoded_local_part(local: str) -> str:
    """The mailer encodes a non-ASCII local part: "ſam" goes out as =?utf-8?q?=C5=BFam?=."""
    try:
        return str(make_header(decode_header(local)))
    except (HeaderParseError, ValueError, LookupError):
        return local


def _folded(address: str) -> str:
    return unicodedata.normalize("NFKC", address).casefold()


def link_email_allowed(email: str) -> bool:
    """At most LINK_EMAILS_PER_HOUR e-mails with a link (password reset, new address) to one
    mailbox in an hour (a fixed window, counted in the cache), so that nobody can flood an
    inbox, however the address is spelled (mailbox_key)."""
    key = "link-emails:" + hashlib.sha256(mailbox_key(email).encode()).hexdigest()
    try:
        cache.add(key, 0, timeout=60 * 60)
        return cache.incr(key) <= settings.LINK_EMAILS_PER_HOUR
    except CACHE_DOWN as exc:  # open, as the rate limits fail (diagnoses.throttles), not a 500
        logger.warning("link e-mail limit not applied: the cache is unreachable (%s: %s)",
                       type(exc).__name__, exc)
        return True


class ClinicContactMixin:
    """The clinic's contact (CLINIC_CONTACT, "" when unset) on the reset pages: a link goes only to a
    confirmed address (QueuedPasswordResetForm.get_users), so whoever never confirmed theirs is
    told to ask the clinic, on every answer alike, which says nothing of any address."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "clinic_contact": settings.CLINIC_CONTACT}


class PasswordResetView(ClinicContactMixin, auth_views.PasswordResetView):
    form_class = QueuedPasswordResetForm

    @property
    def extra_email_context(self):
        # The link starts with SITE_URL, as the worker's e-mails' links do, never with the
        # request's Host: a forged (allowed) Host would otherwise send the token elsewhere.
        return {"site_url": settings.SITE_URL}

    def form_valid(self, form):
        if link_email_allowed(form.cleaned_data["email"]):
            return super().form_valid(form)
        # The same answer as when the e-mail is sent: the page never says whether an address
        # has an account, nor how often it was asked for.
        logger.warning("password reset e-mail not sent: the hourly limit for this address is reached")
        return redirect(self.get_success_url())


class PasswordResetDoneView(ClinicContactMixin, auth_views.PasswordResetDoneView):
    pass


def _send_account_mail(template: str, context: dict, to: str) -> bool:
    """accounts/email/<template>, sent from the web process. False when the mail server could
    not be reached (smtplib's errors are OSErrors)."""
    try:
        send_templated_mail(f"accounts/email/{template}", context, to)
    except OSError:
        logger.exception("could not send the %s e-mail", template)
        return False
    return True


# The old address's keyed hash: Signer checks it under SECRET_KEY or a key it replaced
# (SECRET_KEY_FALLBACKS), so that a link survives a key rotation, as its own signature does.
# Made per use: a Signer takes the keys the settings hold when it is made.
def _old_address_signer() -> signing.Signer:
    return signing.Signer(salt=EMAIL_CHANGE_OLD_ADDRESS_SALT)


def _is_hash_of(old_hash: str, email: str) -> bool:
    signer = _old_address_signer()
    try:
        signer.unsign(f"{email}{signer.sep}{old_hash}")
    except signing.BadSignature:
        return False
    return True


def email_change_token(*, user, new_email: str) -> str:
    """A signed, dated token for the link that confirms an address: a new one (an e-mail change)
    or the one the account has (sign-up's, where new_email is user.email). It holds a keyed hash
    of the address it replaces, not the address: the token is signed, not encrypted, and goes to
    the new, unconfirmed address. It works only while that is still the account's address."""
    old_hash = _old_address_signer().signature(user.email)
    data = {"user": user.pk, "old_hash": old_hash, "new": new_email}
    return signing.dumps(data, salt=EMAIL_CHANGE_SALT)


def email_change_verify(*, token: str, user) -> str | None:
    """The new address a link confirms, or None when the link is broken, older than
    PASSWORD_RESET_TIMEOUT (three days, as a password-reset link), for another account, or for
    an address the account no longer has (a link that was used, or superseded), or, for a new
    address, when a change to another one was asked for since (only the latest change waits:
    pending_email_change; a link sent again for the same address, and one from before changes
    were kept, still work). Links from before the token held a hash instead of the address (three
    days at most) are refused too: the page asks for a new one."""
    try:
        data = signing.loads(token, salt=EMAIL_CHANGE_SALT, max_age=settings.PASSWORD_RESET_TIMEOUT)
    except signing.BadSignature:  # expired links included
        return None
    if data.get("user") != user.pk or not _is_hash_of(str(data.get("old_hash", "")), user.email):
        return None
    new_email = data.get("new")
    if (new_email != user.email and user.email_change_token
            and new_email != _link_address(user.email_change_token, user)):
        return None
    return new_email


@login_required
@require_http_methods(["GET", "POST"])
def email_change(request):
    """Asks for the new address and the password, and sends a confirmation link to the new
    address: the address changes only once its owner has opened that link."""
    form = EmailChangeForm(request.POST or None, request=request)
    if request.method == "POST" and form.is_valid():
        new_email = form.cleaned_data["email"]
        if not link_email_allowed(new_email):
            messages.error(
                request, f"Several links went to {new_email} within the hour: open one of them, or try again later."
            )
            return redirect("account")
        if not _send_email_change_link(request.user, new_email):
            messages.error(
                request, "The e-mail could not be sent just now: nothing changed. Try again in a few minutes."
            )
            return redirect("email_change")
        messages.info(request, f"We sent a link to {new_email}: open it to confirm the change.")
        return redirect("account")
    return render(request, "accounts/email_change.html",
                  {"form": form, "pending_change": pending_email_change(request.user)},
                  status=400 if form.errors else 200)


def _send_confirmation_link(*, user, address: str, template: str) -> str | None:
    """accounts/email/<template>, with the link that confirms address for user's account
    (email_change_token), sent to address: its token, or None when the mail server could not be
    reached."""
    # On SITE_URL, as the worker's links, never on the request's Host (which a client sets).
    token = email_change_token(user=user, new_email=address)
    link = settings.SITE_URL + reverse("email_change_confirm", args=[token])
    # No username in it: the address is not confirmed yet, and may not be the patient's.
    return token if _send_account_mail(template, {"link": link}, address) else None


def _send_email_change_link(user, new_email: str) -> bool:
    """Sends the link that changes user's address to new_email, and keeps it as the change that
    waits (pending_email_change), replacing an earlier one. False when it could not be sent."""
    token = _send_confirmation_link(user=user, address=new_email, template="email_change_confirm")
    if token is None:
        return False
    user.email_change_token, user.email_change_sent_at = token, timezone.now()
    user.save(update_fields=["email_change_token", "email_change_sent_at"])
    return True


def pending_email_change(user) -> dict | None:
    """The e-mail change that waits for its link, while that link still works (email_change_verify:
    three days, and the account's address unchanged since): {"address", "sent_at", "until"}, for
    the account page. None when there is none, or its link no longer works."""
    if not user.email_change_token:
        return None
    address = email_change_verify(token=user.email_change_token, user=user)
    if address is None or address == user.email:
        return None
    sent_at = user.email_change_sent_at
    return {"address": address, "sent_at": sent_at,
            "until": sent_at + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)}


def _ask_to_confirm_address(request, user) -> None:
    """Sends the link that confirms the address the account has (given at sign-up, unconfirmed),
    and says so: at sign-up, and from the account page's "Send the link again"."""
    if not link_email_allowed(user.email):
        messages.error(request, f"Several links went to {user.email} within the hour: open one of "
                                "them, or try again later.")
    elif _send_confirmation_link(user=user, address=user.email, template="address_confirm"):
        messages.info(request, f"We sent a link to {user.email}: open it to confirm that this "
                               "address is yours.")
    else:
        messages.error(request, "The e-mail with the link could not be sent just now: send it "
                                "again from your account page in a few minutes.")


@login_required
@require_POST
def email_confirm_resend(request):
    """The account page's "Send the link again": to the account's address while it is unconfirmed,
    or, with address set to it, to the new address of the e-mail change that waits (a new link,
    which then waits instead). An address the page named that is neither (any more) gets nothing."""
    user = request.user
    address = request.POST.get("address")
    pending = pending_email_change(user)
    if pending and address == pending["address"]:
        _send_email_change_link_again(request, pending["address"])
    elif address not in (None, user.email):
        messages.error(request, "Nothing was sent: the change to that address no longer waits for "
                                "its link. This page says what does.")
    elif user.email and user.email_confirmed_at is None:
        _ask_to_confirm_address(request, user)
    elif user.email:
        messages.info(request, f"Nothing was sent: {user.email} is already confirmed.")
    return redirect("account")


def _send_email_change_link_again(request, new_email: str) -> None:
    if not link_email_allowed(new_email):
        messages.error(request, f"Several links went to {new_email} within the hour: open one of "
                                "them, or try again later.")
    elif _send_email_change_link(request.user, new_email):
        messages.info(request, f"We sent the link again to {new_email}: open it to confirm the change.")
    else:
        messages.error(request, "The e-mail with the link could not be sent just now: try again in "
                                "a few minutes.")


def _link_address(token: str, user) -> str | None:
    """The address a link was sent to, whatever its age or the address it replaces; None when
    it is broken or for another account. To tell a used link from a bad one, and which change
    waits (email_change_verify)."""
    try:
        data = signing.loads(token, salt=EMAIL_CHANGE_SALT)
    except signing.BadSignature:
        return None
    return data.get("new") if data.get("user") == user.pk else None


@login_required
@require_GET
def email_change_confirm(request, token):
    """Where a confirmation link leads: one for a new address (an e-mail change) changes the
    account's to it; one for the address it has (sign-up) leaves it. Either way it is confirmed."""
    user = request.user
    new_email = email_change_verify(token=token, user=user)
    if new_email is None and user.email_confirmed_at and _link_address(token, user) == user.email:
        # A used link opened again (the mail, the browser's history): the change is made.
        messages.info(request, "This address is already confirmed.")
        return redirect("account")
    if new_email is None:
        messages.error(
            request,
            "This link no longer works: it is more than three days old, your address has changed "
            "or you asked for another one since it was sent, or it was sent for another account. "
            "Ask for a new one below.",
        )
        # An unconfirmed address's link is sent again from the account page.
        return redirect("email_change" if user.email_confirmed_at else "account")
    if new_email == user.email:
        _confirm_address(user)
        messages.success(request, f"Your e-mail address {new_email} is confirmed.")
        return redirect("account")
    # Told of the change only when confirmed: one mistyped at sign-up may be a stranger's.
    old_email = user.email if user.email_confirmed_at else ""
    user.email = new_email
    # The change made, none waits: the link of any other one no longer works (the address it
    # replaces is gone).
    user.email_change_token, user.email_change_sent_at = "", None
    _confirm_address(user, "email_change_token", "email_change_sent_at")
    if old_email:
        send_email_changed_notice(user=user, old_email=old_email)
    messages.success(request, f"Your e-mail address is now {new_email}.")
    return redirect("account")


def send_email_changed_notice(*, user, old_email: str, by_clinic: bool = False) -> bool:
    """Tells old_email, the account's confirmed address until now, that user.email replaced it,
    so that a change the patient did not make does not go unseen: theirs, or the clinic's in the
    admin (by_clinic). Best effort: the change itself is made. False when it could not be sent."""
    context = {"user": user, "new_email": user.email, "by_clinic": by_clinic,
               "clinic_contact": settings.CLINIC_CONTACT}
    return _send_account_mail("email_changed_notice", context, old_email)


def _confirm_address(user, *also_saved: str) -> None:
    user.email_confirmed_at = timezone.now()
    user.save(update_fields=["email", "email_confirmed_at", *also_saved])


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ChangePasswordForm
    success_url = reverse_lazy("account")

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    user = request.user
    form = SettingsForm(request.POST if request.method == "POST" else None, instance=user)
    if form.is_valid():
        form.save()
        messages.success(request, settings_saved_message(user, form))
        return redirect("account")
    counts = {
        "diagnoses": user.diagnoses.count(),
        "moles": user.moles.count(),
        # as the history marks them: a review of an earlier result (before a re-run) is none
        "reviewed": user.diagnoses.filter(is_reviewed()).count(),
    }
    has_app = user.is_staff and has_sign_in_codes(user)
    context = {"counts": counts, "form": form, "has_authenticator": has_app,
               "pending_change": pending_email_change(user),
               "staff_accesses": user.staff_accesses.count(), "last_staff_access": user.staff_accesses.first(),
               "active_share_links": ShareLink.objects.of_owner(user).active().count()}
    return render(request, "accounts/account.html", context)


def settings_saved_message(user, form) -> str:
    """What the save changed, in words."""
    def on_off(value):
        return "on" if value else "off"

    said = {
        "review_emails": f"E-mails about clinician reviews are {on_off(user.review_emails)}.",
        "queue_emails": f"The daily count of the review queue is {on_off(user.queue_emails)}.",
        "model_improvement": "Your reviewed checks can go into the table used to improve the model."
        if user.model_improvement else "Your checks are left out of the table used to improve the model.",
    }
    return " ".join(said[name] for name in form.changed_data if name in said) or "Nothing changed."


@login_required
@require_GET
def account_staff_access(request):
    """Who opened the user's records: the review desk (diagnoses.StaffAccess), each time, and the
    links the user shared (diagnoses.ShareLink), how often and when last."""
    accesses = request.user.staff_accesses.select_related("diagnosis", "mole")
    page = Paginator(accesses, STAFF_ACCESS_PAGE_SIZE).get_page(request.GET.get("page"))
    # With the first page only: the links are few (at most 5 active a check) and not paged.
    share_links = ShareLink.objects.of_owner(request.user).select_related("diagnosis__mole") if page.number == 1 else []
    return render(request, "accounts/staff_access.html", {"page": page, "share_links": share_links})


@login_required
@require_GET
def account_export(request):
    """All of the user's data: a zip with data.json and every stored image. It is built in a
    temporary file (in memory while small, on disk beyond EXPORT_SPOOL_BYTES) and streamed."""
    archive = tempfile.SpooledTemporaryFile(max_size=EXPORT_SPOOL_BYTES)
    try:
        services.write_user_export(user=request.user, out=archive)
    except BaseException:
        archive.close()
        raise
    archive.seek(0)
    stamp = timezone.localdate().strftime("%Y%m%d")  # the clinic's day, as data.json's times
    return FileResponse(archive, as_attachment=True, content_type="application/zip",
                        filename=f"molesite-{request.user.username}-{stamp}.zip")


@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request):
    form = DeleteAccountForm(request.POST or None, request=request)
    if request.method == "POST":
        if form.is_valid():
            user = request.user
            logout(request)
            services.user_delete(user=user)
            messages.success(request, "Your account, photos and results were deleted for good.")
            return redirect("home")
        # No flash message too: the form's summary already says it was not deleted, and why.
    return render(request, "accounts/delete.html", {"form": form}, status=400 if form.errors else 200)


# --- the second sign-in step of staff (see accounts.admin_site) ---------------------------------

@login_required
@require_http_methods(["GET", "POST"])
def two_step(request):
    """After the password, a code from the staff member's authenticator app; the first time,
    setting that app up with a QR code. Patients have no second step."""
    if not request.user.is_staff:
        raise Http404
    next_url = safe_next_url(request, request.GET.get("next"), reverse("admin:index"))
    if request.user.is_verified():
        return redirect(next_url)
    if has_sign_in_codes(request.user):
        return _second_step_code(request, next_url)
    return _second_step_setup(request, next_url)


def has_sign_in_codes(user) -> bool:
    """Whether the user has something to give a code with: a confirmed authenticator app, or
    recovery codes (manage.py addstatictoken) not all used yet. Not django_otp.user_has_device():
    it counts a recovery-code device whose codes are used up, which, once a lost phone's app is
    deleted, would ask for a code for ever and never offer to set up a new app."""
    return (TOTPDevice.objects.devices_for_user(user, confirmed=True).exists()
            or StaticDevice.objects.devices_for_user(user, confirmed=True)
            .filter(token_set__isnull=False).exists())


def _second_step_code(request, next_url):
    form = SecondStepForm(request.POST or None,
                          devices=lambda: django_otp.devices_for_user(request.user, for_verify=True))
    if request.method == "POST" and form.is_valid():
        django_otp.login(request, form.device)
        return redirect(next_url)
    return render(request, "accounts/two_step.html", {"form": form, "setup": False},
                  status=400 if form.errors else 200)


# The session's own pending (unconfirmed) authenticator device, by its id.
PENDING_DEVICE_SESSION_KEY = "accounts.two_step.pending_device"


def _second_step_setup(request, next_url):
    """A pending (unconfirmed) device of this session's own, with a key no other session was
    shown, so that reloading keeps the same QR code (its id is kept in the session) while someone
    else who once had the password and opened this page never saw the key the clinician confirms.
    It is confirmed by the first code it gives, and that deletes the user's other pending ones."""
    pending = TOTPDevice.objects.filter(user=request.user, confirmed=False,
                                        pk=request.session.get(PENDING_DEVICE_SESSION_KEY)).first()
    if pending is None:
        # Those shown to sessions that have ended (SESSION_COOKIE_AGE) can no longer be confirmed.
        ended = timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE)
        TOTPDevice.objects.filter(user=request.user, confirmed=False, created_at__lt=ended).delete()
        pending = TOTPDevice.objects.create(user=request.user, name="Authenticator app", confirmed=False)
        request.session[PENDING_DEVICE_SESSION_KEY] = pending.pk
    form = SecondStepForm(request.POST or None,
                          devices=lambda: TOTPDevice.objects.select_for_update().filter(pk=pending.pk))
    if request.method == "POST" and form.is_valid():
        request.session.pop(PENDING_DEVICE_SESSION_KEY, None)
        with transaction.atomic():
            # One at a time per user (the user's row locked): of two sessions confirming at once,
            # the second finds the first's app set up, and asks for its code instead.
            get_user_model().objects.select_for_update().filter(pk=request.user.pk).exists()
            if has_sign_in_codes(request.user):
                pending.delete()
                return redirect(request.get_full_path())
            TOTPDevice.objects.filter(pk=pending.pk).update(confirmed=True)
            # The keys other sessions were shown (someone else's, or the clinician's own in
            # another browser) never give a code from now on.
            TOTPDevice.objects.filter(user=request.user, confirmed=False).exclude(pk=pending.pk).delete()
        form.device.confirmed = True
        django_otp.login(request, form.device)
        logger.info("user %s set up an authenticator app", request.user.pk)
        messages.success(request, "Your authenticator app is set up: from now on, signing in to the review desk "
                                  "asks for its code.")
        return redirect(next_url)
    secret = base64.b32encode(pending.bin_key).decode()
    context = {
        "form": form, "setup": True,
        "qr_svg": segno.make(pending.config_url, error="m").svg_inline(
            scale=4, light="white", title="QR code for the authenticator app"),
        "secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
    }
    return render(request, "accounts/two_step.html", context, status=400 if form.errors else 200)
