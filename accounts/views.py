import hashlib
import logging
import tempfile

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import FileResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from diagnoses import services

from .forms import ChangePasswordForm, DeleteAccountForm, LoginForm, NotificationsForm, SignUpForm

# A data export is built in memory up to this size and in a temporary file beyond it.
EXPORT_SPOOL_BYTES = 16 * 1024 * 1024

logger = logging.getLogger(__name__)


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("diagnoses:list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Upload a photo of a mole to get started.")
        return redirect("diagnoses:new")
    return render(request, "accounts/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    form_class = LoginForm

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, f"Signed in as {form.get_user().username}.")
        return response


class LogoutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are signed out.")
        return response


def reset_email_allowed(email: str) -> bool:
    """At most PASSWORD_RESET_EMAILS_PER_HOUR reset e-mails to one address in an hour (a fixed
    window, counted in the cache), so that nobody can flood a patient's inbox."""
    key = "password-reset:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()
    cache.add(key, 0, timeout=60 * 60)
    return cache.incr(key) <= settings.PASSWORD_RESET_EMAILS_PER_HOUR


class PasswordResetView(auth_views.PasswordResetView):
    def form_valid(self, form):
        if reset_email_allowed(form.cleaned_data["email"]):
            return super().form_valid(form)
        # The same answer as when the e-mail is sent: the page never says whether an address
        # has an account, nor how often it was asked for.
        logger.warning("password reset e-mail not sent: the hourly limit for this address is reached")
        return redirect(self.get_success_url())


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ChangePasswordForm
    success_url = reverse_lazy("account")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    user = request.user
    form = NotificationsForm(request.POST if request.method == "POST" else None, instance=user)
    if form.is_valid():
        form.save()
        state = "on" if user.review_emails else "off"
        messages.success(request, f"E-mails about clinician reviews are {state}.")
        return redirect("account")
    counts = {
        "diagnoses": user.diagnoses.count(),
        "moles": user.moles.count(),
        "reviewed": user.diagnoses.filter(review__isnull=False).count(),
    }
    return render(request, "accounts/account.html", {"counts": counts, "form": form})


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
    stamp = timezone.now().strftime("%Y%m%d")
    response = FileResponse(archive, as_attachment=True, content_type="application/zip",
                            filename=f"molesite-{request.user.username}-{stamp}.zip")
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request):
    form = DeleteAccountForm(request.POST or None, user=request.user)
    if request.method == "POST":
        if form.is_valid():
            user = request.user
            logout(request)
            services.user_delete(user=user)
            messages.success(request, "Your account, photos and results were deleted for good.")
            return redirect("home")
        messages.error(request, "Your account was not deleted: see the message below.")
    return render(request, "accounts/delete.html", {"form": form}, status=400 if form.errors else 200)
