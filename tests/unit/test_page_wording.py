"""The pages' wording, as the server writes it: photos of one mole taken the same day told apart
by their time, risk bands named alike everywhere, advice that does not repeat the sentence
before it, a refused sign-in said once, and the menu showing where the page belongs."""

import re
from datetime import datetime, timezone as tz

import pytest
from django.urls import reverse
from django.utils import formats, timezone

from diagnoses.models import Diagnosis, Mole

pytestmark = pytest.mark.django_db

# Two photos of one mole, taken the same day (the tests' time zone is UTC, pytest.ini).
MORNING = datetime(2026, 3, 4, 9, 15, tzinfo=tz.utc)
EVENING = datetime(2026, 3, 4, 17, 40, tzinfo=tz.utc)


def taken_at(diagnosis, when):
    Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=when, queued_at=when)
    diagnosis.created_at = when
    return diagnosis


def written(when):
    """A moment as the pages write it with the time: "4 Mar 2026, 09:15"."""
    return formats.date_format(timezone.localtime(when), "DATETIME_FORMAT")


def times(page):
    """The text of each <time> element, in the order of the page."""
    return re.findall(r"<time datetime=\"[^\"]+\">([^<]*)</time>", page)


def squashed(html):
    """The page's text with its tags and runs of white space each made one space."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def same_day(owner, make_diagnosis):
    """A mole photographed twice on one day: medium risk in the morning, high in the evening."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    morning = taken_at(make_diagnosis(owner, risk="medium", mole=mole), MORNING)
    evening = taken_at(make_diagnosis(owner, risk="high", mole=mole), EVENING)
    return mole, morning, evening


def test_the_moles_timeline_tells_two_photos_of_one_day_apart(owner_client, same_day):
    mole = same_day[0]
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert times(page) == [written(MORNING), written(EVENING)]
    assert f'alt="Left shoulder on {written(MORNING)}"' in page
    assert f'alt="Left shoulder on {written(EVENING)}"' in page


def test_the_compared_photos_headings_give_their_times(owner_client, same_day):
    mole = same_day[0]
    page = owner_client.get(reverse("diagnoses:mole_compare", args=[mole.pk])).content.decode()
    assert times(page) == [written(MORNING), written(EVENING)]  # Before, After


def test_the_reports_earlier_photos_give_their_time_and_name_the_risk_band(
        owner_client, same_day):
    _, morning, evening = same_day
    page = owner_client.get(reverse("diagnoses:report", args=[evening.pk])).content.decode()
    earlier = page[page.index('data-testid="earlier-photos"'):]
    assert times(earlier) == [written(MORNING)]
    badge = re.search(r'<span class="badge risk-badge[^"]*">([^<]*)</span>', earlier)
    assert badge.group(1) == "Medium risk"  # as on every other page, not "Medium"


def test_the_moles_warning_gives_the_advice_without_naming_the_band_again(
        owner_client, same_day):
    mole = same_day[0]
    page = squashed(owner_client.get(mole.get_absolute_url()).content.decode())
    assert (f"The photo of {written(EVENING)} is high risk , up from medium risk on the photo "
            "before. Please see a dermatologist within 2 weeks") in page
    assert "High estimated risk" not in page


def test_the_comparison_gives_the_advice_without_naming_the_band_again(owner_client, same_day):
    mole = same_day[0]
    page = squashed(owner_client.get(
        reverse("diagnoses:mole_compare", args=[mole.pk])).content.decode())
    assert ("The estimated risk went up, from medium to high. Please see a dermatologist within "
            "2 weeks") in page
    assert "High estimated risk" not in page


def test_a_refused_sign_in_says_why_in_its_summary(client, owner):
    page = client.post(reverse("login"), {"username": "patient", "password": "not the password"})
    summary = re.search(r'<div [^>]*id="form-errors"[^>]*>(.*?)</div>',
                        page.content.decode(), re.S).group(1)
    assert squashed(summary).strip() == (
        "You are not signed in. Please enter a correct username and password. Note that both "
        "fields may be case-sensitive.")


def test_a_refused_form_with_field_errors_points_below(client):
    page = client.post(reverse("signup"), {"username": "two words"})
    summary = re.search(r'<div [^>]*id="form-errors"[^>]*>(.*?)</div>',
                        page.content.decode(), re.S).group(1)
    assert squashed(summary).strip().startswith(
        "Your account was not created. Please correct the problems shown below.")


def current_page_link(page):
    """The main menu's link to the part of the site the page is in (aria-current: "page" on
    the list itself, "true" on a page within it), by its text."""
    return re.findall(r'<a class="nav-link[^"]*active" aria-current="(?:page|true)"[^>]*>([^<]*)</a>',
                      page)


@pytest.mark.parametrize("url_name, menu", [
    ("diagnoses:mole", "My moles"), ("diagnoses:mole_edit", "My moles"),
    ("diagnoses:mole_compare", "My moles"), ("diagnoses:detail", "My history"),
    ("diagnoses:report", "My history"), ("diagnoses:delete", "My history"),
])
def test_the_menu_shows_which_part_of_the_site_a_page_is_in(owner_client, same_day, url_name,
                                                            menu):
    mole, morning, _ = same_day
    pk = mole.pk if url_name.startswith("diagnoses:mole") else morning.pk
    page = owner_client.get(reverse(url_name, args=[pk])).content.decode()
    assert current_page_link(page) == [menu]
