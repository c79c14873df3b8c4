"""The latest e-mail change waiting for its link (User.email_change_token, email_change_sent_at),
so that the account page says a change is pending. Accounts start with none: a link sent before
this migration still works, unannounced, for its three days."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0013_user_email_reached_as_typed"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_change_token",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name="user",
            name="email_change_sent_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
