"""Diagnosis.next_step decides what the patient does next; the mole page's note on a latest photo
rated lower, the API's `previous_rated_higher` and the share form follow it too, not the photo
rated higher on its own: a review of an earlier result (before a re-run) asking more than that
photo's advice leads instead, everywhere. The mole page gives its latest photo's next step as
that photo's result page does, where more than the photo's own band leads it, or the pressing
review of a newest photo whose re-run failed; in place of the alert on a rise only when it asks
as much."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from diagnoses import services
from diagnoses.models import RISK_ORDER, Diagnosis, Mole, Review
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
    """An urgent review of an earlier result of the latest photo, a "see a dermatologist soon" one
    of this result that could not tell from the photo, or the photo before rated higher: the mole
    page gives that photo's advice, with what leads it, in place of the alert on a rise no
    clinician judged: the latest photo's own (its band's advice is in the step), or the photo
    before's, which the note names with its advice."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="low", mole=mole, age_days=60, model_version=NEW)
    if source == "previous_photo":
        make_diagnosis(owner, risk="high", mole=mole, age_days=30, model_version=NEW)  # the rise
    latest = make_diagnosis(owner, risk="low" if source == "previous_photo" else "high", mole=mole,
                            age_days=1, model_version=OLD if source == "earlier_review" else NEW)
    if source == "earlier_review":
        review_of(latest, recommendation="urgent", model_version=OLD)
        rerun(latest, risk="high")  # the rise: the review was of other figures
    elif source == "review":
        review_of(latest, recommendation="dermatologist_soon", model_version=NEW)
        Review.objects.filter(diagnosis=latest).update(verdict="unclear")  # the rise, unjudged
    step = latest.next_step()
    assert step.source == source

    page = text(owner_client, mole.get_absolute_url())
    assert "↑ up from low" in page  # a rise, whose alert the step replaces
    assert page.count("What to do next.") == 1
    advice = advice_after(page, "What to do next.")
    assert advice == advice_after(text(owner_client, latest.get_absolute_url()), "What to do next.")
    assert advice == html.unescape(step.text)
    block = section(page)
    assert latest.get_absolute_url() in block.split("</h2>", 1)[0]  # "this photo" in it is this one
    assert block.index(LEADERS[source]) < block.index("What to do next.")
    assert "went up" not in page  # one piece of advice


def said(html_text):
    """A passage's text as read: tags dropped, runs of white space made one space."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", html_text))).strip()


def section(page):
    """The mole page's section on its latest photo's next step."""
    assert LATEST_STEP in page
    return page.split(LATEST_STEP, 1)[1].split("</section>", 1)[0]


RISE = "<strong>The estimated risk of this mole went up.</strong>"


@pytest.mark.parametrize("recommendation", ["routine", "dermatologist_soon", "urgent"])
def test_a_review_of_the_latest_photo_replaces_a_rise_alert_only_asking_as_much(
        owner, owner_client, make_diagnosis, recommendation):
    """Low, high (a rise no clinician judged), high, then low, reviewed: "See a dermatologist
    soon" asks less than the high photo's "within 2 weeks", and the alert on the rise stays, as
    under a routine check; "Urgent" asks more, and leads in its place."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="low", mole=mole, age_days=90, model_version=NEW)
    risen = make_diagnosis(owner, risk="high", mole=mole, age_days=60, model_version=NEW)
    make_diagnosis(owner, risk="high", mole=mole, age_days=30, model_version=NEW)
    latest = make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=NEW)
    review_of(latest, recommendation=recommendation, model_version=NEW)
    assert latest.next_step().source == "review"

    page = text(owner_client, mole.get_absolute_url())
    if recommendation == "urgent":
        assert "went up" not in page
        assert "Urgent: see a doctor now" in section(page)
    else:
        alert = page.split(RISE, 1)[1].split("</div>", 1)[0]
        assert risen.get_absolute_url() in alert and "see a dermatologist within 2 weeks" in alert
        assert LATEST_STEP not in page  # one piece of advice


def failed_rerun(diagnosis):
    """The diagnosis as a re-run that failed left it: its review kept, of an earlier result."""
    services.diagnosis_requeue(diagnosis=diagnosis)
    services.diagnosis_fail(diagnosis_id=diagnosis.pk, message=services.MESSAGE_UNREADABLE)
    diagnosis.refresh_from_db()
    return diagnosis


def requeued(diagnosis):
    """The diagnosis as a re-run still under way leaves it: its result cleared, its review kept."""
    assert services.diagnosis_requeue(diagnosis=diagnosis)
    diagnosis.refresh_from_db()
    return diagnosis


UNDER_WAY = "the photo is being analysed again, and its new result is not in yet"
# How a re-run of the newest photo left it: {ending: (make it so, its status, what the review of
# its earlier result then says, a part of that no other photo's section may say)}.
RERUN_ENDS = {
    "failed": (failed_rerun, "failed", "the photo's newer analysis did not complete", "did not complete"),
    "under way": (requeued, "queued", UNDER_WAY, "analysed again"),
}


# The failed newest photo's review against the latest analysed photo's next step: {case: (the
# analysed photos, oldest first, as (risk, the recommendation of a review of that result or None),
# the failed photo's review, whose advice the section gives: "failed", "analysed" or None)}.
FAILED_NEWEST = {
    "urgent over a medium rise": ([("low", None), ("medium", None)], "urgent", "failed"),
    "routine under a medium rise": ([("low", None), ("medium", None)], "routine", None),
    "soon as much as a medium rise": ([("low", None), ("medium", None)], "dermatologist_soon", "failed"),
    "soon over a low band": ([("low", None)], "dermatologist_soon", "failed"),
    "soon under a high band": ([("high", None)], "dermatologist_soon", None),
    "soon under a high photo rated higher": ([("high", None), ("low", None)], "dermatologist_soon", "analysed"),
    "soon as much as a medium photo rated higher": ([("medium", None), ("low", None)], "dermatologist_soon",
                                                    "failed"),
    "urgent over a high photo rated higher": ([("high", None), ("low", None)], "urgent", "failed"),
    "soon under an urgent review": ([("low", None), ("low", "urgent")], "dermatologist_soon", "analysed"),
    "soon as much as a review asking as much": ([("low", "dermatologist_soon")], "dermatologist_soon", "failed"),
    "urgent over a routine review of a high": ([("high", "routine")], "urgent", "failed"),
}


@pytest.mark.parametrize("ending", list(RERUN_ENDS))
@pytest.mark.parametrize("analysed, recommendation, leads", list(FAILED_NEWEST.values()), ids=list(FAILED_NEWEST))
def test_the_mole_page_gives_the_pressing_review_of_a_latest_photo_whose_re_run_failed_or_is_under_way(
        owner, owner_client, make_diagnosis, analysed, recommendation, leads, ending):
    """Its result page still gives the review, after the failure or the spinner: the mole page gives a pressing
    one too, naming that photo, not the one before it as "the latest", when it asks at least as
    much as what leads the latest analysed photo's next step: that photo's own pressing review,
    the photo before rated higher (its band), else its band. Else that step leads, in the
    section when more than its band leads it, as without the failed photo. Against a rise, as a
    review of the latest analysed photo: "Urgent" asks more than the medium rise's advice, whose
    alert it replaces; a routine check leaves the rise's alert."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    photos = []
    for age, (risk, analysed_review) in enumerate(reversed(analysed), start=1):
        photos.insert(0, make_diagnosis(owner, risk=risk, mole=mole, age_days=30 * age, model_version=NEW))
        if analysed_review:
            review_of(photos[0], recommendation=analysed_review, model_version=NEW)
    latest = make_diagnosis(owner, risk="high", mole=mole, age_days=1, model_version=OLD)
    review_of(latest, recommendation=recommendation, model_version=OLD)
    make_so, status, says, part = RERUN_ENDS[ending]
    make_so(latest)
    advice = latest.review.get_recommendation_display()
    assert latest.status == status and advice in text(owner_client, latest.get_absolute_url())
    rose = any(RISK_ORDER[after] > RISK_ORDER[before] for (before, _), (after, _) in zip(analysed, analysed[1:]))

    page = text(owner_client, mole.get_absolute_url())
    if leads is None:
        assert LATEST_STEP not in page and (RISE in page) is rose
        return
    block = section(page)
    heading = block.split("</h2>", 1)[0]
    assert "went up" not in page  # one piece of advice
    if leads == "failed":
        assert "The latest photo, of" in heading and latest.get_absolute_url() in heading
        assert advice in block and says in said(block)
    else:
        shown = photos[-1]
        shown.refresh_from_db()
        step = shown.next_step()
        assert "The latest analysed photo, of" in heading and shown.get_absolute_url() in heading
        assert block.index(LEADERS[step.source]) < block.index("What to do next.")
        assert advice_after(block, "What to do next.") == html.unescape(step.text)
        assert advice not in block and part not in block


def test_the_mole_page_calls_the_photo_it_advises_on_the_latest_analysed_when_a_newer_one_waits(
        owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="high", mole=mole, age_days=30, model_version=NEW)
    lower = make_diagnosis(owner, risk="low", mole=mole, age_days=10, model_version=NEW)
    make_diagnosis(owner, status="queued", mole=mole)  # the newest, not analysed yet
    assert lower.next_step().source == "previous_photo"

    page = text(owner_client, mole.get_absolute_url())
    heading = section(page).split("</h2>", 1)[0]
    assert "The latest analysed photo, of" in heading and lower.get_absolute_url() in heading
    assert "The latest analysed photo is rated lower than the one before." in page
    assert "The latest photo" not in page


@pytest.mark.parametrize("rerun_failed", [False, True])
def test_the_mole_pages_headings_stay_in_order_around_the_latest_photos_review(
        owner, owner_client, make_diagnosis, rerun_failed):
    """The review under the section's heading is headed one level below it; on its result page it
    keeps its own level, 2."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30, model_version=NEW)
    latest = make_diagnosis(owner, risk="high", mole=mole, age_days=1, model_version=OLD)
    review_of(latest, recommendation="urgent", model_version=OLD)
    if rerun_failed:
        failed_rerun(latest)
    else:
        rerun(latest, risk="high")

    page = text(owner_client, mole.get_absolute_url())
    assert re.findall(r"<h([1-6])\b", section(page)) == ["2", "3"]
    levels = [int(level) for level in re.findall(r"<h([1-6])\b", page)]
    assert all(after <= before + 1 for before, after in zip(levels, levels[1:])), levels
    result = text(owner_client, latest.get_absolute_url())
    assert '<h2 class="h6 mb-1">A clinician reviewed an earlier result of this photo' in result


def test_the_mole_page_picks_the_photo_before_from_the_photos_it_holds(
        owner, owner_client, make_diagnosis, monkeypatch):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="high", mole=mole, age_days=30, model_version=NEW)
    make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=NEW)
    monkeypatch.setattr(Diagnosis, "earlier_photos_of_mole",
                        lambda self: pytest.fail("the photo before, asked for again"))
    assert NOTE in text(owner_client, mole.get_absolute_url())


@pytest.mark.parametrize("recommendation, colour", [("urgent", "danger"), ("dermatologist_soon", "danger"),
                                                    ("routine", "success")])
def test_what_to_do_next_under_a_pressing_review_of_a_low_result_is_not_green(
        owner, owner_client, make_diagnosis, recommendation, colour):
    low = make_diagnosis(owner, risk="low")
    review_of(low, recommendation=recommendation, model_version=low.model_version)
    low.refresh_from_db()
    assert low.next_step().colour == colour
    page = owner_client.get(reverse("diagnoses:detail", args=[low.pk])).content.decode()
    assert f'<div class="alert alert-{colour}" role="note"><strong>What to do next.</strong>' in page


# --- the earlier photo that leads: not only the photo before, and a clinician's pressing review -------


def photos(owner, make_diagnosis, *specs, name="Back"):
    """A tracked mole's finished photos, oldest first, ten days apart: each spec a band, or
    (band, recommendation) for one a clinician judged (agreed) with that recommendation."""
    mole = Mole.objects.create(owner=owner, name=name)
    made = []
    for age, spec in zip(range(10 * len(specs), 0, -10), specs):
        band, recommendation = (spec, None) if isinstance(spec, str) else spec
        photo = make_diagnosis(owner, risk=band, mole=mole, age_days=age)
        if recommendation:
            review_of(photo, recommendation=recommendation, model_version=photo.model_version)
        made.append(photo)
    return made


def leading(diagnosis):
    return Diagnosis.objects.get(pk=diagnosis.pk).previous_photo_rated_higher()


@pytest.mark.parametrize("specs, leader", [
    (["high", "medium", "low"], 0),  # the highest since, not the photo before
    (["high", "low", "low"], 0),  # a lower photo between does not end it
    (["low", "high", "low", "low"], 1),
    (["medium", "high", "medium", "low"], 1),
    ([("high", "urgent"), "low"], 0),  # a clinician's pressing review outlives a lower photo
    ([("high", "urgent"), "low", "low"], 0),
    ([("high", "urgent"), "high"], 0),  # urgent asks more than high's "within 2 weeks"
    ([("medium", "dermatologist_soon"), "low"], 0),
    ([("high", "urgent"), "medium", "low"], 0),  # urgent asks more than the medium photo between
    ([("high", "dermatologist_soon"), "high", "low"], 1),  # the high photo asks more than the review
    (["high", ("low", "urgent"), "low"], 1),  # the last judged photo ends the search for others
])
def test_the_earlier_photo_that_leads_is_the_most_pressing_since_the_last_one_judged(
        owner, make_diagnosis, specs, leader):
    made = photos(owner, make_diagnosis, *specs)
    assert leading(made[-1]) == made[leader]


@pytest.mark.parametrize("specs", [
    [("high", "urgent"), ("low", "routine"), "low"],  # a clinician judged a later photo: theirs leads
    [("high", "routine"), "low"],  # judged, asking no more than the band: no carrying
    [("medium", "dermatologist_soon"), "medium"],  # asks as much as the medium band, not more
    ["high", ("medium", "monitor"), "low"],
    ["low", "low"],
])
def test_nothing_earlier_leads_once_a_clinician_judged_a_photo_asking_no_more(owner, make_diagnosis, specs):
    made = photos(owner, make_diagnosis, *specs)
    assert leading(made[-1]) is None
    assert made[-1].next_step().source == "band"


def test_an_urgent_review_of_an_earlier_photo_leads_a_lower_photo_everywhere(owner, owner_client, make_diagnosis):
    """high (agreed: urgent), then low: the low photo's page, report, API, the mole page and
    My moles all give the clinician's recommendation, not "Low estimated risk"."""
    high, low = photos(owner, make_diagnosis, ("high", "urgent"), "low", name="Neck")
    step = Diagnosis.objects.get(pk=low.pk).next_step()
    assert (step.source, step.previous, step.colour) == ("previous_photo", high, "danger")
    assert '"Urgent: see a doctor now"' in step.text and "stands until a clinician reviews a later photo" in step.text
    assert set(advice_everywhere(owner, owner_client, low).values()) == {step.text}
    page = html.unescape(text(owner_client, low.get_absolute_url()))
    assert "A clinician's review of an earlier photo of this mole still leads" in page
    assert "recommended <strong>Urgent: see a doctor now</strong>" in page
    assert "The photo before this one was rated higher" not in page
    mole_page = html.unescape(text(owner_client, low.mole.get_absolute_url()))
    assert "A clinician's review of an earlier photo asks more than the latest photo's estimate." in mole_page
    cards = html.unescape(text(owner_client, reverse("diagnoses:moles")))
    assert "A clinician's review of an earlier photo asks: Urgent: see a doctor now" in cards
    history = html.unescape(text(owner_client, reverse("diagnoses:list")))
    assert "A clinician's review of an earlier photo asks: Urgent: see a doctor now" in history


def test_an_older_photo_rated_higher_is_not_called_the_photo_before(owner, owner_client, make_diagnosis):
    high, _medium, low = photos(owner, make_diagnosis, "high", "medium", "low")
    step = low.next_step()
    assert (step.previous, step.previous_is_last) == (high, False)
    page = html.unescape(text(owner_client, low.get_absolute_url()))
    assert "An earlier photo of this mole was rated higher" in page
    assert "The photo before this one was rated higher" not in page
    assert "follow the advice for that photo: " + high.risk_advice in page
    report = html.unescape(text(owner_client, reverse("diagnoses:report", args=[low.pk])))
    assert "An earlier photo of this mole was rated higher" in report
    mole_page = html.unescape(text(owner_client, low.mole.get_absolute_url()))
    assert "The latest photo is rated lower than an earlier one." in mole_page
    assert "follow the advice for the earlier photo: " + high.risk_advice in mole_page
    # the photo just before keeps its heading
    assert "The photo before this one was rated higher" in html.unescape(
        text(owner_client, _medium.get_absolute_url()))


@pytest.mark.parametrize("specs", [["high", "low", "low"], ["low", "high", "low", "low"]])
def test_a_second_lower_photo_keeps_the_higher_photos_advice_on_every_page(owner, owner_client, make_diagnosis,
                                                                          specs):
    made = photos(owner, make_diagnosis, *specs)
    high, latest = made[specs.index("high")], made[-1]
    step = latest.next_step()
    assert step.previous == high
    assert set(advice_everywhere(owner, owner_client, latest).values()) == {step.text}
    mole_page = html.unescape(text(owner_client, latest.mole.get_absolute_url()))
    assert NOTE in mole_page and "went up" not in mole_page  # one piece of advice: the note, not the rise
    cards = html.unescape(text(owner_client, reverse("diagnoses:moles")))
    assert "An earlier photo was rated high risk: see its advice" in cards
