from axes.models import AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin  # registers TOTPDevice, replaced below
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.admin import TokenAdmin  # registers TokenProxy, replaced below
from rest_framework.authtoken.models import TokenProxy

from diagnoses import services
from diagnoses.admin import RecordsStaffAccess
from diagnoses.models import StaffAccess

from .models import ApiToken, User
from .views import send_email_changed_notice


class RefusesSecretLookups:
    """Refuses changelist filters on secrets. The admin takes a filter on any local field from the
    address (?key__startswith=a3), and the count it shows (1 or 0) tells the secret a character
    at a time, to anyone with the view permission, unrecorded."""

    secret_lookups: tuple[str, ...] = ()

    def lookup_allowed(self, lookup, value, request=None):
        return not lookup.startswith(self.secret_lookups) and super().lookup_allowed(lookup, value, request)


class MolesiteUserChangeForm(UserChangeForm):
    """Checks the address (User.email's validators) only when it is changed. One stored before
    the check (accounts.validators) must not block deactivating the account or changing its
    groups or staff status: changing the address would stamp the new one confirmed and tell
    the old one (MolesiteUserAdmin.save_model)."""

    def _get_validation_exclusions(self):
        # Django's list of fields full_clean() leaves out (no public hook for this).
        exclude = super()._get_validation_exclusions()
        if "email" not in self.changed_data:
            exclude.add("email")
        return exclude


@admin.register(User)
class MolesiteUserAdmin(RecordsStaffAccess, RefusesSecretLookups, UserAdmin):
    form = MolesiteUserChangeForm
    secret_lookups = ("auth_token",)  # the patient's API login (Django's refuses "password")
    fieldsets = UserAdmin.fieldsets + (
        ("E-mails", {"fields": ("email_confirmed_at", "review_emails", "queue_emails")}),
        ("Model improvement", {"fields": ("model_improvement",)}),
    )
    readonly_fields = ("model_improvement",  # the patient's own choice, on their account page
                       "email_confirmed_at")

    def staff_access(self, obj):
        return {"patient": obj, "record": StaffAccess.Record.ACCOUNT}

    # An address the clinic sets (a patient's mistyped one put right, a new clinician's) is
    # taken as confirmed, as create_user takes it: staff vouch for it, and a patient who cannot
    # sign in could not open a link anyway. The confirmed address it replaces is told, as when
    # the patient changes it (one never confirmed may be a stranger's): a change the patient did
    # not ask for must not go unseen. After the commit: the admin saves in a transaction that
    # may still be undone (an inline's error), and an e-mail cannot be.
    def save_model(self, request, obj, form, change):
        if "email" in form.changed_data:
            old_email = form.initial.get("email", "") if change and obj.email_confirmed_at else ""
            obj.email_confirmed_at = timezone.now() if obj.email else None
            if old_email and obj.email:
                def notice():  # a function: robust on_commit logs a failure by its __qualname__
                    send_email_changed_notice(user=obj, old_email=old_email, by_clinic=True)

                transaction.on_commit(notice, robust=True)
        super().save_model(request, obj, form, change)

    # Through the service, as the patient's own "Delete my account": the photos, thumbnails and
    # heatmaps go from the disk too (Django's delete would leave them, with no row naming them).
    def delete_model(self, request, obj):
        services.user_delete(user=obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            services.user_delete(user=user)


# The sign-in lockout keeps only its current failures (Access attempts); it logs no sign-ins
# (AXES_DISABLE_ACCESS_LOG) nor failure history, so those two lists would stay empty.
admin.site.unregister(AccessLog)
admin.site.unregister(AccessFailureLog)


# DRF's token list shows every patient's API key: a working credential that would let whoever
# reads it use the API as the patient, outside "Who has opened your records". Here staff see
# whose token exists and since when, and can revoke it (delete); nobody can read or make one.
admin.site.unregister(TokenProxy)


@admin.register(ApiToken)
class ApiTokenAdmin(RefusesSecretLookups, TokenAdmin):
    list_display = ("user", "created")
    fields = ("user", "created")
    readonly_fields = ("user", "created")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    # The token's primary key is its key: the admin's pop-up mode writes it into every row
    # (data-popup-opener) and _to_field refers to it, and a filter on it (key__startswith=…)
    # would tell it by the counts. None of these is needed here.
    secret_lookups = ("key", "pk")

    def changeform_view(self, request, *args, **kwargs):
        refuse_key_reference(request)
        return super().changeform_view(request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        refuse_key_reference(request)
        return super().changelist_view(request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        refuse_key_reference(request)
        return super().delete_view(request, *args, **kwargs)


# OTP_ADMIN_HIDE_SENSITIVE_DATA keeps a clinician's authenticator key off django-otp's pages,
# but not out of its changelist's filters: with the key, codes can be made for their account.
admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class AuthenticatorAdmin(RefusesSecretLookups, TOTPDeviceAdmin):
    secret_lookups = ("key",)


def refuse_key_reference(request):
    if IS_POPUP_VAR in request.GET or TO_FIELD_VAR in request.GET:
        raise PermissionDenied
