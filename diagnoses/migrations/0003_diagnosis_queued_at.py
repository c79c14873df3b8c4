import django.utils.timezone
from django.db import migrations, models


def queued_at_upload(apps, schema_editor):
    """Rows from before the field were last queued at upload, as far as anyone knows."""
    Diagnosis = apps.get_model("diagnoses", "Diagnosis")
    # The database being migrated (migrate --database), never the default one.
    diagnoses = Diagnosis.objects.using(schema_editor.connection.alias)
    diagnoses.update(queued_at=models.F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("diagnoses", "0002_review_model_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="diagnosis",
            name="queued_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now, help_text="When it last went into the queue: upload or re-run."
            ),
        ),
        migrations.RunPython(queued_at_upload, migrations.RunPython.noop),
    ]
