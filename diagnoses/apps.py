from django.apps import AppConfig


class DiagnosesConfig(AppConfig):
    name = "diagnoses"
    default_auto_field = "django.db.models.BigAutoField"
