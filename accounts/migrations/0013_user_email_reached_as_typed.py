"""User.email refuses an address the site's e-mails would not reach as typed
(accounts.validators): a validator only, no change to the table. Addresses stored before are
left as they are, and the admin still saves such a user: it checks the address only when it is
changed."""

import accounts.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0012_user_email_confirmed_at"),
    ]

    operations = [
        migrations.AlterField(
            model_name="user",
            name="email",
            field=models.EmailField(
                blank=True, max_length=254, verbose_name="email address",
                validators=[accounts.validators.validate_address_sent_as_typed],
            ),
        ),
    ]
