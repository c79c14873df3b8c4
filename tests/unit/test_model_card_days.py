"""The about-the-model page's "trained" and "fitted again" days are the clinic's (TIME_ZONE), as
every other date on the site, not the UTC day of the card's timestamp."""

import json

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

CARD = {"version": "v3", "temperature": 0.917464, "logit_offset": {"nv": 0.69},
        "created": "2026-12-05T23:30:00+00:00", "recalibrated": {"at": "2026-12-06T23:06:53+00:00"}}


def _page(client, settings, tmp_path, card):
    settings.ML_MODEL_DIR = tmp_path
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    return client.get(reverse("about_model")).content.decode()


def test_the_cards_days_are_the_clinics_days(client, settings, tmp_path):
    settings.TIME_ZONE = "Europe/Berlin"  # 23:30 UTC is 0:30 the next day there
    page = _page(client, settings, tmp_path, CARD)
    assert "trained 6 Dec 2026" in page
    assert "(fitted again 7 Dec 2026)</dd>" in page


def test_west_of_greenwich_the_day_can_be_the_one_before(client, settings, tmp_path):
    settings.TIME_ZONE = "America/New_York"
    page = _page(client, settings, tmp_path, {**CARD, "created": "2026-12-06T02:00:00+00:00"})
    assert "trained 5 Dec 2026" in page and "(fitted again 6 Dec 2026)</dd>" in page


@pytest.mark.parametrize("created, shown", [("2026-12-06", "trained 6 Dec 2026"),
                                            ("2026-12-06T23:30:00", "trained 6 Dec 2026"),  # no offset: as written
                                            ("last winter", "trained last winte ")])
def test_a_card_without_an_offset_or_a_date_is_shown_as_written(client, settings, tmp_path, created, shown):
    settings.TIME_ZONE = "Europe/Berlin"
    page = _page(client, settings, tmp_path, {"version": "v3", "created": created})
    assert shown.strip() in page
