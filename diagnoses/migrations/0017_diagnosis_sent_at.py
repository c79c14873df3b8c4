import django.utils.timezone
from django.db import migrations, models


def sent_when_last_queued(apps, schema_editor):
    """Rows from before the field had their task last sent when queued_at says: until now the check
    for lost photos moved queued_at when it sent one again. (The wait of a photo it sent again
    before this migration stays shortened; it ends with that photo's analysis.)"""
    Diagnosis = apps.get_model("diagnoses", "Diagnosis")
    # The database being migrated (migrate --database), never the default one.
    diagnoses = Diagnosis.objects.using(schema_editor.connection.alias)
    # The queued rows alone: only the check for lost photos reads sent_at, and only of those (a
    # running one gets it when queued again, a finished one at its re-run). Not every row, rewritten
    # while AddField's lock holds the table, uploads and pages waiting on it.
    diagnoses.filter(status="queued").update(sent_at=models.F("queued_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("diagnoses", "0016_mole_name_any_case"),
    ]

    operations = [
        migrations.AddField(
            model_name="diagnosis",
            name="sent_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now,
                help_text="When its task was last sent to the workers: upload, re-run, or the check for lost photos.",
            ),
        ),
        migrations.RunPython(sent_when_last_queued, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="diagnosis",
            name="queued_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now,
                help_text="When it went into the queue: upload or re-run. A resend, or a re-queue after a worker "
                "died, keeps it: the patient's wait goes on.",
            ),
        ),
    ]
