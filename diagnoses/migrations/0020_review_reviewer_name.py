"""Review.reviewer_name: who wrote a review, kept when their account is deleted (the reviewer
foreign key is then set to NULL). Filled here for the reviews already saved whose reviewer's
account still exists; a review whose account is gone already stays without a name."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill_reviewer_names(apps, schema_editor):
    Review = apps.get_model("diagnoses", "Review")
    User = Review._meta.get_field("reviewer").related_model  # the historical user model
    # One UPDATE, not a save per review (an update cannot follow the foreign key itself).
    username = Subquery(User.objects.filter(pk=OuterRef("reviewer_id")).values("username")[:1])
    Review.objects.filter(reviewer__isnull=False).update(reviewer_name=username)


class Migration(migrations.Migration):

    dependencies = [
        ('diagnoses', '0019_mole_order_whatever_the_case'),
    ]

    operations = [
        migrations.AddField(
            model_name='review',
            name='reviewer_name',
            field=models.CharField(blank=True, editable=False, max_length=150),
        ),
        migrations.RunPython(fill_reviewer_names, migrations.RunPython.noop, elidable=True),
    ]
