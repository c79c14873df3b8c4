from django.db import migrations, models


def notices_sent_before(apps, schema_editor):
    """The reviews from before the field had their e-mail queued then, as far as anyone knows:
    not owed, or the check for lost photos would e-mail every patient about every review."""
    Review = apps.get_model("diagnoses", "Review")
    # The database being migrated (migrate --database), never the default one.
    reviews = Review.objects.using(schema_editor.connection.alias)
    reviews.update(notice_queued_at=models.F("reviewed_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("diagnoses", "0014_review_desk_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="review",
            name="notice_queued_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(notices_sent_before, migrations.RunPython.noop),
    ]
