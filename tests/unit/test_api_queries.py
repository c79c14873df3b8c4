"""The diagnoses API's cost: its list works out each row's `advice` (Diagnosis.next_step, which
looks at the mole's photo before) in as many queries for 3 rows as for 12, and one diagnosis
works out what to do next once, though `advice` and `previous_rated_higher` both give it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from diagnoses.models import Diagnosis, Mole

pytestmark = pytest.mark.django_db

LIST = "/api/v1/diagnoses/"


def tracked_unreviewed_photos(owner, make_diagnosis, count):
    """count finished, unreviewed photos of two moles, oldest first, high and low in turn: each
    has a photo before (but the first of each mole), and every other one was rated higher."""
    Diagnosis.objects.all().delete()
    moles = [Mole.objects.get_or_create(owner=owner, name=name)[0] for name in ("Back", "Arm")]
    return [make_diagnosis(owner, risk="high" if n % 4 < 2 else "low", mole=moles[n % 2], age_days=count - n)
            for n in range(count)]


def listed(owner_api):
    """The list in one page, and the queries it took."""
    with CaptureQueriesContext(connection) as queries:
        response = owner_api.get(LIST, {"page_size": 100})
    assert response.status_code == 200
    return response.json()["results"], len(queries)


def test_the_list_gives_advice_in_as_many_queries_for_3_rows_as_for_12(owner_api, owner, make_diagnosis):
    counts = {}
    for size in (3, 12):
        photos = tracked_unreviewed_photos(owner, make_diagnosis, size)
        rows, counts[size] = listed(owner_api)
        assert len(rows) == size
        # what it costs is the advice as next_step gives it, some rows after the photo before
        advice = {str(photo.pk): photo.next_step() for photo in photos}
        assert {row["id"]: row["advice"] for row in rows} == {pk: step.text for pk, step in advice.items()}
        assert {step.source for step in advice.values()} == {"band", "previous_photo"}

    assert counts[3] == counts[12]


def test_the_detail_works_out_what_to_do_next_once(owner_api, owner, make_diagnosis, monkeypatch):
    before, latest = tracked_unreviewed_photos(owner, make_diagnosis, 4)[1::2]  # Arm's: high, low
    next_step, worked_out = Diagnosis.next_step, []

    def counted(diagnosis):
        worked_out.append(diagnosis.pk)
        return next_step(diagnosis)

    monkeypatch.setattr(Diagnosis, "next_step", counted)
    body = owner_api.get(f"{LIST}{latest.pk}/").json()

    assert body["previous_rated_higher"]["id"] == str(before.pk)
    assert body["advice"].startswith("Follow the advice for this mole's earlier photo, rated high risk")
    assert worked_out == [latest.pk]
