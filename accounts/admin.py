from axes.models import AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from diagnoses.admin import RecordsStaffAccess
from diagnoses.models import StaffAccess

from .models import User


@admin.register(User)
class MolesiteUserAdmin(RecordsStaffAccess, UserAdmin):
    fieldsets = UserAdmin.fieldsets + (
        ("E-mails", {"fields": ("review_emails", "queue_emails")}),
        ("Model improvement", {"fields": ("model_improvement",)}),
    )
    readonly_fields = ("model_improvement",)  # the patient's own choice, on their account page

    def staff_access(self, obj):
        return {"patient": obj, "record": StaffAccess.Record.ACCOUNT}


# The sign-in lockout keeps only its current failures (Access attempts); it logs no sign-ins
# (AXES_DISABLE_ACCESS_LOG) nor failure history, so those two lists would stay empty.
admin.site.unregister(AccessLog)
admin.site.unregister(AccessFailureLog)
