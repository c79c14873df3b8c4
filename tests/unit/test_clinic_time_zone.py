"""Times where the clinic is (TIME_ZONE): the patient's data export and the names of the
downloads give the clinic's day and time, as the pages, the API and the review desk's CSV do."""

import io
import json
import re
import zipfile
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review

pytestmark = pytest.mark.django_db

# 23:30 UTC on 4 March: half past midnight on 5 March in Berlin.
JUST_AFTER_MIDNIGHT_IN_BERLIN = datetime(2025, 3, 4, 23, 30, tzinfo=UTC)
ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT")


def moments(value):
    """Every date and time (ISO 8601) in a parsed JSON document."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from moments(item)
    elif isinstance(value, str) and ISO_MOMENT.match(value):
        yield value


def zone_on_another_day() -> str:
    """A time zone whose date is not UTC's at this moment, at least an hour from its midnight
    (UTC+14 from 11:00 UTC on, UTC-12 before): a name dated in UTC gives another day there."""
    return "Etc/GMT-14" if timezone.now().hour >= 11 else "Etc/GMT+12"


def test_the_data_export_gives_every_time_where_the_clinic_is(owner_client, owner, reviewer,
                                                              make_diagnosis, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    mole = Mole.objects.create(owner=owner, name="Back")
    diagnosis = make_diagnosis(owner, mole=mole)
    Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation="monitor",
                          reviewed_at=timezone.now())
    services.share_link_create(diagnosis=diagnosis, days=7)
    services.staff_access_record(staff=reviewer, patient=owner, record="case", diagnosis=diagnosis)
    Mole.objects.filter(pk=mole.pk).update(created_at=JUST_AFTER_MIDNIGHT_IN_BERLIN)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=JUST_AFTER_MIDNIGHT_IN_BERLIN)

    body = b"".join(owner_client.get(reverse("account_export")).streaming_content)
    data = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("data.json"))

    # the day the patient's pages show, not the day before
    assert data["moles"][0]["created_at"] == "2025-03-05T00:30:00+01:00"
    assert data["diagnoses"][0]["created_at"] == "2025-03-05T00:30:00+01:00"
    written = list(moments(data))
    # exported_at, email_confirmed_at, date_joined, consented_at, the mole's, the check's two, the
    # review's, the link's two and the staff access's
    assert len(written) == 11
    for moment in written:
        assert moment == timezone.localtime(datetime.fromisoformat(moment)).isoformat()


def test_the_data_export_is_named_after_the_clinics_day(owner_client, settings):
    settings.TIME_ZONE = zone_on_another_day()

    response = owner_client.get(reverse("account_export"))

    name = f'filename="molesite-patient-{timezone.localdate():%Y%m%d}.zip"'
    assert name in response["Content-Disposition"]


def test_the_review_desks_csv_is_named_after_the_clinics_day(reviewer_client, reviewer, owner,
                                                             make_diagnosis, settings):
    settings.TIME_ZONE = zone_on_another_day()
    diagnosis = make_diagnosis(owner)
    services.review_agree_many(diagnoses=[diagnosis], reviewer=reviewer)
    owner.model_improvement = True
    owner.save(update_fields=["model_improvement"])

    response = reviewer_client.post(reverse("admin:diagnoses_diagnosis_changelist"), {
        "action": "export_reviewed_csv", "_selected_action": [str(diagnosis.pk)]})

    assert response["Content-Type"].startswith("text/csv")
    name = f'filename="molesite-reviews-{timezone.localdate():%Y%m%d}-'
    assert name in response["Content-Disposition"]
