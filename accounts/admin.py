from axes.models import AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from diagnoses import services
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
