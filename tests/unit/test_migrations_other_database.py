"""`migrate --database other` fills in and deletes rows in that database only: the data steps of
diagnoses 0003 and 0015 and accounts 0010 once rewrote the default database's rows (and 0017's
must not)."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.core.management import call_command
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.authtoken.models import Token

from diagnoses.models import Diagnosis, Review
from tests.conftest import migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_THE_DATA_STEPS = [("diagnoses", "0002_review_model_version"), ("accounts", "0009_api_token")]


@pytest.fixture
def other_database(tmp_path):
    """A second database, SQLite in a file, migrated up to just before the data steps."""
    configured = connections.configure_settings({
        "default": connections.settings["default"],
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "other.sqlite3")},
    })
    connections.settings["other"] = configured["other"]
    # Opened here: the test case lets a connection it was not told of at its start be used only
    # once it is open (django.test.testcases' patched ensure_connection).
    connections["other"].connect()
    MigrationExecutor(connections["other"]).migrate(BEFORE_THE_DATA_STEPS)
    yield connections["other"]
    connections["other"].close()
    del connections["other"]
    del connections.settings["other"]


def test_migrating_another_database_leaves_the_default_ones_rows_alone(other_database, owner,
                                                                        make_diagnosis):
    diagnosis = make_diagnosis(owner)
    requeued_at = diagnosis.created_at + timedelta(hours=1)
    sent_again_at = requeued_at + timedelta(minutes=15)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(queued_at=requeued_at, sent_at=sent_again_at)
    # a review whose notice is owed
    review = Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation="monitor",
                                   reviewed_at=timezone.now(), notice_queued_at=None)
    token_entry = LogEntry.objects.create(user=owner, content_type=ContentType.objects.get_for_model(Token),
                                          object_id="1", object_repr="a token", action_flag=ADDITION)

    migrate_to_latest(other_database)

    assert Diagnosis.objects.get(pk=diagnosis.pk).queued_at == requeued_at  # not 0003's created_at
    assert Diagnosis.objects.get(pk=diagnosis.pk).sent_at == sent_again_at  # not 0017's queued_at
    assert Review.objects.get(pk=review.pk).notice_queued_at is None  # not 0015's reviewed_at
    assert LogEntry.objects.filter(pk=token_entry.pk).exists()  # not deleted by 0010


def test_migrating_another_database_keeps_its_reviewers_group_not_the_default_ones(other_database):
    from django.contrib.auth.models import Group

    from diagnoses.services import REVIEWER_PERMISSIONS, REVIEWERS_GROUP, reviewers_group_ensure

    reviewers = reviewers_group_ensure()
    reviewers.permissions.clear()  # as an operator might have, on the default database

    call_command("migrate", database="other", verbosity=0)  # post_migrate, as `migrate` sends it

    assert not reviewers.permissions.exists()
    in_other = Group.objects.using("other").get(name=REVIEWERS_GROUP)
    assert in_other.permissions.count() == len(REVIEWER_PERMISSIONS)
