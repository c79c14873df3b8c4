"""0006 added model_improvement ticked for every account it found (default=True), and 0007 only
changed the default for accounts made after it: those patients were put into the model-improvement
export without being asked. Everyone who joined before 0007 was applied is taken out, whatever
they ticked since, even after 0007 (no record tells 0006's tick from their own): each of them
ticks the box again to be in the export (the README's upgrade note). 0006 now adds the field
unticked, so a database upgraded from before it is right already; this mends those upgraded with
the old 0006."""

from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder


def untick_accounts_from_before_opt_in(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    recorder = MigrationRecorder(schema_editor.connection)
    opt_in = recorder.migration_qs.filter(app="accounts", name="0007_model_improvement_opt_in")
    opt_in_applied = opt_in.values_list("applied", flat=True).first()
    accounts = User.objects.using(schema_editor.connection.alias).filter(model_improvement=True)
    if opt_in_applied is not None:  # without its record, no choice can be told from 0006's tick
        accounts = accounts.filter(date_joined__lt=opt_in_applied)
    accounts.update(model_improvement=False)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0010_forget_token_keys_in_admin_history"),
    ]

    operations = [
        migrations.RunPython(untick_accounts_from_before_opt_in, migrations.RunPython.noop),
    ]
