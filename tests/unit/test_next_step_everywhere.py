"""Diagnosis.next_step decides what the patient does next; the mole page's note on a latest photo
rated lower, the API's `previous_rated_higher` and the share form follow it too, not the photo
rated higher on its own: a review of an earlier result (before a re-run) asking more than that
photo's advice leads instead, everywhere."""

import html

import pytest
from django.test import Client
from django.urls import reverse

from diagnoses import services
from diagnoses.models import Mole
from tests.conftest import token_client
from tests.unit.test_advice_safety import NEW, OLD, advice_everywhere, rerun, review_of, text

pytestmark = pytest.mark.django_db

NOTE = 'data-testid="latest-rated-lower"'
SHARE_PROMISE = "though it says that an earlier photo of this mole was rated"


@pytest.fixture(params=["urgent", "dermatologist_soon"])
def case(request, owner, make_diagnosis):
    """(the medium photo before, the latest photo): high with a review, re-run as low. "Urgent"
    asks more than the medium photo's advice and leads; "See a dermatologist soon" does not, and
    the medium photo's advice leads."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    previous = make_diagnosis(owner, risk="medium", mole=mole, age_days=30, model_version=NEW)
    latest = make_diagnosis(owner, risk="high", mole=mole, age_days=1, model_version=OLD)
    review_of(latest, recommendation=request.param, model_version=OLD)
    rerun(latest, risk="low")
    assert latest.previous_photo_rated_higher() == previous
    expected = "earlier_review" if request.param == "urgent" else "previous_photo"
    assert latest.next_step().source == expected
    return previous, latest


def test_the_mole_page_gives_the_earlier_photos_advice_only_when_it_leads(owner_client, case):
    previous, latest = case
    leads = latest.next_step().source == "previous_photo"
    page = html.unescape(text(owner_client, latest.mole.get_absolute_url()))
    assert (NOTE in page) is leads
    assert ("follow the advice for the earlier photo" in page) is leads
    assert "↓ down from medium" in page  # the timeline still marks the fall
    assert "went up" not in page


def test_the_apis_previous_rated_higher_is_the_photo_whose_advice_it_gives(owner, owner_client, case):
    previous, latest = case
    step = latest.next_step()
    body = token_client(owner).get(f"/api/v1/diagnoses/{latest.pk}/").json()
    assert body["advice"] == step.text
    assert set(advice_everywhere(owner, owner_client, latest).values()) == {step.text}
    if step.source == "previous_photo":
        assert body["previous_rated_higher"]["id"] == str(previous.pk)
    else:
        assert body["previous_rated_higher"] is None


def test_the_share_form_promises_the_earlier_rating_only_when_the_report_gives_it(owner_client, case):
    previous, latest = case
    leads = latest.next_step().source == "previous_photo"
    form = html.unescape(text(owner_client, latest.get_absolute_url())).split('id="share-heading"', 1)[1]
    assert (f"{SHARE_PROMISE} medium risk" in form) is leads
    _link, token = services.share_link_create(diagnosis=latest, days=7, with_earlier_photos=False)
    shared = text(Client(), reverse("shared_report", args=[token]))
    assert ('data-testid="previous-rated-higher"' in shared) is leads
    assert ("was rated <strong>medium risk</strong>" in shared) is leads
