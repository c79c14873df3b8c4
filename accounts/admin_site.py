"""The admin (the clinicians' review desk and user administration) behind a second sign-in
step: staff sign in with their password, then with a code from an authenticator app
(django-otp's TOTP devices), unless settings.STAFF_REQUIRE_2FA is off."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode


def second_step_passed(request) -> bool:
    """Whether this session may use the admin as far as the second step goes (OTPMiddleware
    marks a session verified once a code from one of the user's devices was accepted)."""
    return not settings.STAFF_REQUIRE_2FA or request.user.is_verified()


class ClinicAdminSite(admin.AdminSite):
    def has_permission(self, request):
        return super().has_permission(request) and second_step_passed(request)

    @property
    def login_form(self):
        # Imported here: this module is loaded before the apps' models are.
        from .forms import AdminLoginForm

        return AdminLoginForm

    def login(self, request, extra_context=None):
        """Staff already signed in with their password go on to the code (or to setting up
        their authenticator app), then back to the page they asked for."""
        user = request.user
        if user.is_active and user.is_staff and not second_step_passed(request):
            next_url = request.GET.get("next") or reverse("admin:index")
            return redirect(f"{reverse('two_step')}?{urlencode({'next': next_url})}")
        from .forms import sign_in_refused_status

        response = super().login(request, extra_context)
        # The form counted against the sign-ins of this address (SignInRateMixin): 429 when refused.
        return sign_in_refused_status(response, (getattr(response, "context_data", None) or {}).get("form"))

    def password_change(self, request, extra_context=None):
        """The site's own page (accounts.views.PasswordChangeView): one form to change a password,
        whose check of the current one counts wrong guesses toward the sign-in lockout, as the
        admin's own form (AdminSite's) would not."""
        return redirect("password_change")


class ClinicAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.ClinicAdminSite"
