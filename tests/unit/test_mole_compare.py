"""Two photos of one mole side by side, and what changed between them."""

import html
from datetime import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnoses.models import Diagnosis, Mole

pytestmark = pytest.mark.django_db


def compare_url(mole, **params):
    url = reverse("diagnoses:mole_compare", args=[mole.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


@pytest.fixture
def shoulder(owner, make_diagnosis):
    """A mole photographed three times: low (0.05 malignant), low, then medium (0.35)."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    photos = [make_diagnosis(owner, risk="low", mole=mole, age_days=90),
              make_diagnosis(owner, risk="low", mole=mole, age_days=30),
              make_diagnosis(owner, risk="medium", mole=mole, age_days=0)]
    return mole, photos


def test_it_compares_the_first_and_the_latest_photo_by_default(owner_client, shoulder):
    mole, (first, middle, latest) = shoulder
    response = owner_client.get(compare_url(mole))
    assert response.status_code == 200
    assert (response.context["before"], response.context["after"]) == (first, latest)
    page = response.content.decode()
    assert "90 days apart." in page
    assert "Malignant probability 5.0% → 35.0%" in page and "up 30.0 points" in page
    assert "The estimated risk went up, from low to medium" in page
    assert 'class="alert alert-danger photo-change"' in page
    assert reverse("diagnoses:file", args=[first.pk, "image"]) in page
    assert reverse("diagnoses:file", args=[latest.pk, "image"]) in page
    assert compare_url(mole) in owner_client.get(mole.get_absolute_url()).content.decode()


def test_it_compares_the_photos_chosen_in_time_order(owner_client, shoulder):
    mole, (first, middle, latest) = shoulder
    response = owner_client.get(compare_url(mole, before=latest.pk, after=first.pk))
    assert (response.context["before"], response.context["after"]) == (first, latest)

    response = owner_client.get(compare_url(mole, before=first.pk, after=middle.pk))
    page = response.content.decode()
    assert "60 days apart." in page and "no change" in page and "The risk band is the same (low)" in page


def test_it_says_a_falling_risk_without_alarm(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Back")
    make_diagnosis(owner, risk="medium", mole=mole, age_days=30)
    make_diagnosis(owner, risk="low", mole=mole)
    page = owner_client.get(compare_url(mole)).content.decode()
    assert "down 30.0 points" in page and "The risk band went down, from medium to low." in page
    assert "30 days apart." in page
    assert "alert-danger" not in page


def test_it_refuses_photos_of_another_mole_or_patient(owner_client, outsider_client, owner, shoulder, make_diagnosis):
    mole, (first, middle, latest) = shoulder
    elsewhere = make_diagnosis(owner, risk="high")
    assert owner_client.get(compare_url(mole, before=elsewhere.pk)).status_code == 404
    assert owner_client.get(compare_url(mole, after="not-an-id")).status_code == 404
    assert outsider_client.get(compare_url(mole)).status_code == 404


def test_it_asks_for_a_second_photo_before_comparing(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Back")
    make_diagnosis(owner, mole=mole)
    page = owner_client.get(compare_url(mole)).content.decode()
    assert "Comparing needs two photos of this mole; it has one." in page
    assert compare_url(mole) not in owner_client.get(mole.get_absolute_url()).content.decode()


def test_it_shows_a_pending_photo_picked_without_a_change_summary(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Back")
    first = make_diagnosis(owner, mole=mole, age_days=10)
    make_diagnosis(owner, mole=mole, age_days=5)
    queued = make_diagnosis(owner, mole=mole, status="queued")
    response = owner_client.get(compare_url(mole, before=first.pk, after=queued.pk))
    assert response.status_code == 200 and response.context["change"] is None
    assert "apart" not in response.content.decode()
    assert "Queued…" in response.content.decode()
    assert "No change to show: the later photo is still being analysed." in response.content.decode()


@pytest.mark.parametrize("statuses, said", [
    (("failed", "failed"), "Comparing needs two analysed photos of this mole; it has none. A photo that could not "
                           "be analysed is not compared: upload another."),
    (("done", "queued"), "Comparing needs two analysed photos of this mole; it has one. A photo still being "
                         "analysed can be compared once its result is in."),
])
def test_it_offers_no_comparison_without_two_analysed_photos(owner_client, owner, make_diagnosis, statuses, said):
    """Not two "not analysed" photos side by side: the mole's page offers no Compare, and asked
    for all the same the comparison sends the patient back to it, saying why."""
    mole = Mole.objects.create(owner=owner, name="Back")
    for age_days, status in zip((10, 2), statuses):
        make_diagnosis(owner, mole=mole, status=status, age_days=age_days)
    assert compare_url(mole) not in owner_client.get(mole.get_absolute_url()).content.decode()

    response = owner_client.get(compare_url(mole))
    assert response.status_code == 302 and response.url == mole.get_absolute_url()
    assert said in html.unescape(owner_client.get(response.url).content.decode())

    for _ in range(2 - statuses.count("done")):  # two analysed photos
        make_diagnosis(owner, mole=mole)
    assert compare_url(mole) in owner_client.get(mole.get_absolute_url()).content.decode()
    assert owner_client.get(compare_url(mole)).status_code == 200


def test_it_compares_the_analysed_photos_by_default_and_marks_the_others(owner_client, shoulder,
                                                                         make_diagnosis, owner):
    mole, (first, middle, latest) = shoulder
    failed = make_diagnosis(owner, mole=mole, status="failed")
    response = owner_client.get(compare_url(mole))
    assert (response.context["before"], response.context["after"]) == (first, latest)
    assert "Malignant probability 5.0% → 35.0%" in response.content.decode()
    assert "· not analysed</option>" in response.content.decode()

    chosen = owner_client.get(compare_url(mole, before=first.pk, after=failed.pk)).content.decode()
    assert "No change to show: the later photo could not be analysed." in chosen
    same = owner_client.get(compare_url(mole, before=first.pk, after=first.pk)).content.decode()
    assert "These are the same photo" in same and "apart" not in same


def test_it_says_nothing_changed_for_one_photo_picked_twice_only_that_it_is_the_same(owner_client, shoulder):
    """Not "Taken the same day. 5.0% → 5.0% (no change)" above "These are the same photo"."""
    mole, (first, middle, latest) = shoulder
    response = owner_client.get(compare_url(mole, before=middle.pk, after=middle.pk))
    assert response.status_code == 200 and response.context["change"] is None
    page = response.content.decode()
    assert "These are the same photo: choose two different ones." in page
    assert "photo-change" not in page and "Taken the same day" not in page and "no change" not in page


def test_it_says_when_two_photos_were_taken_the_same_day(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Back")
    make_diagnosis(owner, mole=mole)
    make_diagnosis(owner, mole=mole)
    assert "Taken the same day." in owner_client.get(compare_url(mole)).content.decode()


def test_it_says_when_a_change_may_come_from_a_poor_photo(owner_client, shoulder):
    mole, (first, middle, latest) = shoulder
    assert "compare-photo-issues" not in owner_client.get(compare_url(mole)).content.decode()

    Diagnosis.objects.filter(pk=first.pk).update(photo_issues=["dark"])
    page = owner_client.get(compare_url(mole)).content.decode()
    assert "The earlier photo looks too dark: part of the change may come from the photos" in page

    Diagnosis.objects.filter(pk=latest.pk).update(photo_issues=["bright", "blurry"])
    page = owner_client.get(compare_url(mole)).content.decode()
    assert "The earlier photo looks too dark, the later one too bright and out of focus: part" in page


def test_it_counts_calendar_days_as_the_photos_dates_read(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    evening, morning = make_diagnosis(owner, mole=mole), make_diagnosis(owner, mole=mole)
    local = timezone.get_current_timezone()
    Diagnosis.objects.filter(pk=evening.pk).update(created_at=datetime(2026, 3, 1, 20, 0, tzinfo=local))
    Diagnosis.objects.filter(pk=morning.pk).update(created_at=datetime(2026, 3, 2, 9, 0, tzinfo=local))
    page = owner_client.get(compare_url(mole)).content.decode()
    assert "1 day apart." in page and "Taken the same day." not in page
