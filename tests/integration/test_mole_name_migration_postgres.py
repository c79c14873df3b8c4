"""Migration 0016 on Postgres, whose LOWER() the new constraint uses: names that only Postgres
lowers alike ("İris" and "Iris": Python's casefold keeps the dotted capital apart) are told
apart before the unique index is built, where they once stopped the upgrade."""

from datetime import timedelta

import pytest
from django.utils import timezone

from diagnoses.models import Mole
from tests.conftest import migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)


def test_names_postgres_lowers_alike_are_told_apart(latest_schema_after, owner):
    OldMole = migrate_to(("diagnoses", "0015_review_notice_queued_at")).get_model("diagnoses", "Mole")
    older = OldMole.objects.create(owner_id=owner.pk, name="Iris")
    newer = OldMole.objects.create(owner_id=owner.pk, name="\u0130ris")
    OldMole.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(days=1))

    migrate_to_latest()

    assert Mole.objects.get(pk=older.pk).name == "Iris"
    assert Mole.objects.get(pk=newer.pk).name == "\u0130ris (2)"
