"""Mole names unique per patient in any case, and stored as the forms and the API now store them
(diagnoses.models.normalise_mole_name): composed, without control or invisible format characters,
stripped. Names that then collide are told apart first: the oldest mole keeps its name, the
others get " (2)", " (3)" and so on."""

import unicodedata
from collections import defaultdict

import django.db.models.functions.text
from django.db import migrations, models

MAX_LENGTH = 80  # Mole.name's
UNNAMED = "Unnamed mole"  # for a name of nothing visible, which the forms and the API now refuse


# The rule as it is at this migration (a migration keeps its own copy, whatever models.py becomes).
INVISIBLE = frozenset(
    "\u00ad\u061c\u180e\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff\ufff9\ufffa\ufffb")


def normalise(name):
    visible = "".join(char for char in name
                      if unicodedata.category(char) != "Cc" and char not in INVISIBLE)
    # composing can lengthen a name (U+0958 decomposes into two characters): cut to the column
    return unicodedata.normalize("NFC", visible).strip()[:MAX_LENGTH].rstrip() or UNNAMED


def keys_of(database_lower):
    """keys(name): what name shares with every name it clashes with, by the forms' rule (case
    folded) and by the database's (its LOWER(), which the constraint uses; Postgres lowers "İ"
    to "i" where Python's casefold keeps it apart)."""
    def keys(name):
        return {("folded", unicodedata.normalize("NFC", name.casefold())),
                ("database", database_lower(name))}
    return keys


def lower_in(connection):
    def database_lower(name):
        with connection.cursor() as cursor:
            cursor.execute("SELECT LOWER(%s)", [name])
            return cursor.fetchone()[0]
    return database_lower


def with_suffix(name, number):
    """name (number), the name cut short where the whole would pass MAX_LENGTH."""
    suffix = f" ({number})"
    return name[:MAX_LENGTH - len(suffix)].rstrip() + suffix


def new_names(moles, keys):
    """{mole: its name} for one patient's moles, oldest first: the first of each name keeps it;
    the others get the lowest suffix that no other mole's name (kept or given) has."""
    names, taken, renamed = {}, set(), []
    for mole in moles:
        name = normalise(mole.name)
        if keys(name) & taken:
            renamed.append((mole, name))
        else:
            names[mole] = name
            taken |= keys(name)
    for mole, name in renamed:
        names[mole] = first_free(name, taken, keys)
        taken |= keys(names[mole])
    return names


def first_free(name, taken, keys):
    number = 2
    while keys(with_suffix(name, number)) & taken:
        number += 1
    return with_suffix(name, number)


def normalise_and_tell_apart(apps, schema_editor):
    # The database being migrated (migrate --database), never the default one.
    moles = apps.get_model("diagnoses", "Mole").objects.using(schema_editor.connection.alias)
    moles_by_owner = defaultdict(list)
    for mole in moles.order_by("created_at", "pk"):
        moles_by_owner[mole.owner_id].append(mole)
    keys = keys_of(lower_in(schema_editor.connection))
    for owners_moles in moles_by_owner.values():
        for mole, name in new_names(owners_moles, keys).items():
            if name != mole.name:
                moles.filter(pk=mole.pk).update(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("diagnoses", "0015_review_notice_queued_at"),
    ]

    operations = [
        # Dropped first: a name normalised may for a moment match another until that one is renamed.
        migrations.RemoveConstraint(model_name="mole", name="unique_mole_name_per_owner"),
        migrations.RunPython(normalise_and_tell_apart, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="mole",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"), models.F("owner"),
                name="unique_mole_name_per_owner_any_case",
            ),
        ),
    ]
