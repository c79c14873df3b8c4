"""Whether the account's e-mail address was confirmed (User.email_confirmed_at). The accounts made
before sign-up sent a confirmation link are taken as confirmed: they have been getting the site's
e-mails at that address all along, and would otherwise lose password resets and notices at once."""

from django.db import migrations, models
from django.utils import timezone


def confirm_existing_addresses(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    (User.objects.using(schema_editor.connection.alias).exclude(email="")
     .update(email_confirmed_at=timezone.now()))


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0011_model_improvement_off_before_opt_in"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_confirmed_at",
            field=models.DateTimeField(blank=True, editable=False, null=True,
                                       verbose_name="e-mail address confirmed"),
        ),
        migrations.RunPython(confirm_existing_addresses, migrations.RunPython.noop),
    ]
