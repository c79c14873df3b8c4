"""Upgrading puts nobody into the model-improvement export who did not tick the box: not the
accounts 0006 found (it once added the field ticked), nor those it ticked on a database
already upgraded with that 0006 (0011 unticks everyone who joined before 0007, the opt-in)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.migrations.recorder import MigrationRecorder

from tests.conftest import migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_THE_FIELD = ("accounts", "0005_user_consented_at")
THE_FIELD = ("accounts", "0006_user_model_improvement")
BEFORE_THE_UNTICKING = ("accounts", "0010_forget_token_keys_in_admin_history")


def test_an_account_from_before_the_field_is_left_out_of_the_export(latest_schema_after):
    User = migrate_to(BEFORE_THE_FIELD).get_model("accounts", "User")
    User.objects.create(username="early", email="early@example.com")

    ticked_by_0006 = migrate_to(THE_FIELD).get_model("accounts", "User").objects.get(username="early")
    assert ticked_by_0006.model_improvement is False
    migrate_to_latest()

    assert get_user_model().objects.get(username="early").model_improvement is False


def test_accounts_ticked_by_the_old_0006_are_unticked_and_later_choices_kept(latest_schema_after):
    opt_in_applied = MigrationRecorder.Migration.objects.get(
        app="accounts", name="0007_model_improvement_opt_in").applied
    User = migrate_to(BEFORE_THE_UNTICKING).get_model("accounts", "User")
    # as the old 0006 left an account it found, and a patient who ticked the box after 0007
    User.objects.create(username="early", model_improvement=True,
                        date_joined=opt_in_applied - timedelta(days=30))
    User.objects.create(username="late", model_improvement=True,
                        date_joined=opt_in_applied + timedelta(seconds=1))

    migrate_to_latest()

    ticked = dict(get_user_model().objects.values_list("username", "model_improvement"))
    assert ticked == {"early": False, "late": True}
