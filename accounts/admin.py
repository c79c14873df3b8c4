from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class MolesiteUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (("E-mails", {"fields": ("review_emails",)}),)
