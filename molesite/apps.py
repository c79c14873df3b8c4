"""molesite's own app (for its system checks), and the third-party apps under the names staff
read on the admin index, in place of their labels (AXES, OTP_TOTP, OTP_STATIC). The app labels
stay the same, so their tables and migrations are unchanged."""

from axes.apps import AppConfig as AxesAppConfig
from django.apps import AppConfig
from django_otp.plugins.otp_static.apps import DefaultConfig as StaticTokenAppConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPAppConfig


class MolesiteConfig(AppConfig):
    """No models: installed so that `manage.py check --deploy` runs molesite.checks."""

    name = "molesite"

    def ready(self):
        from . import checks  # noqa: F401  (registers the checks)


class SignInLockoutsConfig(AxesAppConfig):
    verbose_name = "Sign-in lockouts"


class AuthenticatorAppsConfig(TOTPAppConfig):
    verbose_name = "Two-step sign-in: authenticator apps"


class RecoveryCodesConfig(StaticTokenAppConfig):
    verbose_name = "Two-step sign-in: recovery codes"
