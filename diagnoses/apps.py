from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DiagnosesConfig(AppConfig):
    name = "diagnoses"
    # the admin's section and breadcrumb name: "Home › Cases › Diagnoses", not "Diagnoses › Diagnoses"
    verbose_name = "Cases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # After `migrate` (once this app's permissions exist), keep the Reviewers group in sync.
        post_migrate.connect(_ensure_reviewers_group, sender=self)


def _ensure_reviewers_group(using, **kwargs):
    from .services import reviewers_group_ensure

    reviewers_group_ensure(using=using)
