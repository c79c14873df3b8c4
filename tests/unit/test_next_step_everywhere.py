"""Diagnosis.next_step decides what the patient does next; the mole page's note on a latest photo
rated lower, the API's `previous_rated_higher` and the share form follow it too, not the photo
rated higher on its own: a review of an earlier result (before a re-run) asking more than that
photo's advice leads instead, everywhere. The mole page gives its latest photo's next step as
that photo's result page does, where more than the photo's own band leads it."""

import html

import pytest
from django.test import Client
from django.urls import reverse

from diagnoses import services
from diagnoses.models import Mole
from tests.conftest import token_client
from tests.unit.test_advice_safety import NEW, OLD, advice_after, advice_everywhere, rerun, review_of, text

pytestmark = pytest.mark.django_db

NOTE = 'data-testid="latest-rated-lower"'
LATEST_STEP = 'data-testid="latest-next-step"'
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


# What leads each next step, before its advice: on the result page, and on the mole page.
LEADERS = {"earlier_review": 'data-testid="review-earlier-result"', "review": "Reviewed by a clinician on",
           "previous_photo": 'data-testid="latest-rated-lower"'}


@pytest.mark.parametrize("source", list(LEADERS))
def test_the_mole_page_gives_its_latest_photos_next_step_as_its_result_page_does(
        owner, owner_client, make_diagnosis, source):
    """An urgent review of an earlier result of the latest photo, one of this result, or the photo
    before rated higher: the mole page gives that photo's advice, with what leads it, in place of
    the alert on the rise (its band's advice, which the pressing review outweighs)."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="high" if source == "previous_photo" else "low", mole=mole, age_days=30,
                   model_version=NEW)
    latest = make_diagnosis(owner, risk="low" if source == "previous_photo" else "high", mole=mole,
                            age_days=1, model_version=OLD if source == "earlier_review" else NEW)
    if source == "earlier_review":
        review_of(latest, recommendation="urgent", model_version=OLD)
        rerun(latest, risk="high")  # went up from low: an alert on the rise, without the fix
    elif source == "review":
        review_of(latest, recommendation="urgent", model_version=NEW)
    step = latest.next_step()
    assert step.source == source

    page = text(owner_client, mole.get_absolute_url())
    assert page.count("What to do next.") == 1
    advice = advice_after(page, "What to do next.")
    assert advice == advice_after(text(owner_client, latest.get_absolute_url()), "What to do next.")
    assert advice == html.unescape(step.text)
    block = page.split(LATEST_STEP, 1)[1].split("</section>", 1)[0]
    assert latest.get_absolute_url() in block.split("</h2>", 1)[0]  # "this photo" in it is this one
    assert block.index(LEADERS[source]) < block.index("What to do next.")
    assert "went up" not in page  # one piece of advice

