"""Upgrading to Diagnosis.sent_at (diagnoses 0017): a photo already queued had its task last sent
when its queued_at says (the check for lost photos moved queued_at when it sent one again), so
the check sends it again no sooner than it would have before the upgrade."""

from datetime import timedelta

import pytest
from django.utils import timezone

from diagnoses.models import Diagnosis
from tests.conftest import migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("diagnoses", "0016_mole_name_any_case")


def test_a_row_from_before_the_field_was_last_sent_when_last_queued(latest_schema_after, owner):
    OldDiagnosis = migrate_to(BEFORE).get_model("diagnoses", "Diagnosis")
    queued_at = timezone.now() - timedelta(minutes=7)
    old = OldDiagnosis.objects.create(owner_id=owner.pk, image="images/x.jpg", thumbnail="thumbnails/x.jpg",
                                      sha256="0" * 64, status="queued", queued_at=queued_at)

    migrate_to_latest()

    assert Diagnosis.objects.filter(pk=old.pk).values("queued_at", "sent_at").get() == {
        "queued_at": queued_at, "sent_at": queued_at}
