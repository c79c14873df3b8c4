"""DRF's token admin, replaced by ApiTokenAdmin in 0009, wrote each token's key into the admin's
history (LogEntry.object_repr is str(token), the key): a working credential kept there, and
shown in *Recent actions*. Those entries are deleted."""

from django.db import migrations


def forget_token_keys(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    LogEntry = apps.get_model("admin", "LogEntry")
    # The database being migrated (migrate --database), never the default one.
    alias = schema_editor.connection.alias
    token_types = ContentType.objects.using(alias).filter(app_label="authtoken",
                                                          model__in=["token", "tokenproxy"])
    LogEntry.objects.using(alias).filter(content_type__in=token_types).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0009_api_token"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forget_token_keys, migrations.RunPython.noop)]
