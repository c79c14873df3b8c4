"""Upgrading to names unique in any case (diagnoses 0016): each patient's names are normalised as
the forms now store them, and those that then collide are told apart, the oldest mole keeping
its name, before the database refuses a name in another case."""

from datetime import timedelta

import pytest
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Mole
from tests.conftest import migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("diagnoses", "0015_review_notice_queued_at")
# "Left shoulder" in Persian: its zero-width non-joiner is part of the spelling, kept.
PERSIAN = "\u0634\u0627\u0646\u0647\u200c\u06cc \u0686\u067e"


def make_moles(OldMole, owner, names):
    """Moles of owner by these names, each a day younger than the one before; their ids."""
    start = timezone.now() - timedelta(days=len(names))
    ids = []
    for age, name in enumerate(names):
        mole = OldMole.objects.create(owner_id=owner.pk, name=name)
        OldMole.objects.filter(pk=mole.pk).update(created_at=start + timedelta(days=age))
        ids.append(mole.pk)
    return ids


def names_of(ids):
    names = dict(Mole.objects.values_list("pk", "name"))
    return [names[pk] for pk in ids]


def test_look_alike_names_are_told_apart_the_oldest_keeping_its_own(latest_schema_after, owner, outsider):
    OldMole = migrate_to(BEFORE).get_model("diagnoses", "Mole")
    owners = make_moles(OldMole, owner, [
        "Left arm", "Left arm (2)", "left arm", "LEFT ARM", "Caf\u00e9", "Cafe\u0301",
        "\u200b", "\ufeff", "a\u202eb", "x" * 80, "X" * 80, " Back ", PERSIAN, "\u0958" * 80,
    ])
    outsiders = make_moles(OldMole, outsider, ["left ARM"])

    migrate_to_latest()

    assert names_of(owners) == [
        "Left arm", "Left arm (2)", "left arm (3)", "LEFT ARM (4)", "Caf\u00e9", "Caf\u00e9 (2)",
        "Unnamed mole", "Unnamed mole (2)", "ab", "x" * 80, "X" * 76 + " (2)", "Back", PERSIAN,
        "\u0915\u093c" * 40,  # composed, each letter is two characters: cut to the column's 80
    ]
    assert names_of(outsiders) == ["left ARM"]


def test_the_database_then_refuses_a_name_in_another_case(latest_schema_after, owner):
    OldMole = migrate_to(BEFORE).get_model("diagnoses", "Mole")
    make_moles(OldMole, owner, ["Back"])
    migrate_to_latest()

    with pytest.raises(services.MoleNameTaken):
        services.mole_create(owner=owner, name="BACK")
