"""What to do next, safely: the low band sends warning signs to a doctor; every finished result
says what its estimate cannot judge, and a low one on palms or soles asks for a doctor; a
clinician's pressing advice outlives a re-run rated lower; the result page, the report, the shared
report and the API give one piece of advice (Diagnosis.next_step); a result that arrives while its
page is open reads as on a fresh load; the report's catch rates say which photos they hold on."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import LOW_RISK_ACRAL_ADVICE, RISK_ADVICE, Diagnosis, Mole, Review
from diagnoses.views import load_model_card
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

OLD, NEW = "model-1", "model-2"
SCOPE = 'data-testid="estimate-scope"'


def text(client, url):
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def advice_after(page, heading):
    """The advice a page gives after its heading, as the patient reads it."""
    return html.unescape(page.split(f"<strong>{heading}</strong>", 1)[1].split("</div>", 1)[0]).strip()


def advice_everywhere(owner, owner_client, diagnosis):
    """{where: the advice}: the result page, the report, the shared report, the API's one check
    and its list."""
    _link, token = services.share_link_create(diagnosis=diagnosis, days=7, with_earlier_photos=False)
    api = token_client(owner)
    listed = {row["id"]: row["advice"] for row in api.get("/api/v1/diagnoses/").json()["results"]}
    return {
        "page": advice_after(text(owner_client, diagnosis.get_absolute_url()), "What to do next."),
        "report": advice_after(text(owner_client, reverse("diagnoses:report", args=[diagnosis.pk])),
                               "What to do next."),
        "shared": advice_after(text(Client(), reverse("shared_report", args=[token])),
                               "Advice the patient was given."),
        "api": api.get(f"/api/v1/diagnoses/{diagnosis.pk}/").json()["advice"],
        "api list": listed[str(diagnosis.pk)],
    }


def review_of(diagnosis, *, recommendation, model_version):
    return Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation=recommendation,
                                 note="", reviewed_at=timezone.now(), model_version=model_version)


def rerun(diagnosis, *, risk):
    """The diagnosis as a re-run with another model left it."""
    Diagnosis.objects.filter(pk=diagnosis.pk).update(model_version=NEW, risk=risk)
    diagnosis.refresh_from_db()
    return diagnosis


# --- 1. the low band's advice ------------------------------------------------------------------


def test_the_low_advice_sends_warning_signs_to_a_doctor_everywhere(owner, owner_client, make_diagnosis):
    low = RISK_ADVICE["low"]
    assert "once a month" in low
    assert "see a doctor if it changes in size, shape or colour, bleeds, itches or is new in adulthood" in low
    assert "whatever this estimate says" in low
    assert "take a new photo" not in low

    diagnosis = make_diagnosis(owner, risk="low")
    assert set(advice_everywhere(owner, owner_client, diagnosis).values()) == {low}


# --- 2. what the estimate cannot judge; palms and soles ----------------------------------------


def test_every_finished_result_says_what_its_estimate_cannot_judge(owner_client, owner, make_diagnosis):
    done, queued = make_diagnosis(owner, risk="high"), make_diagnosis(owner, status="queued")
    for url in (done.get_absolute_url(), reverse("diagnoses:report", args=[done.pk])):
        page = text(owner_client, url)
        assert page.count(SCOPE) == 1
        scope = html.unescape(page.split(SCOPE, 1)[1].split("</p>", 1)[0])
        assert "cannot see symptoms or changes" in scope
        assert "may be wrong on phone photos, darker skin, palms, soles and nails" in scope
        assert "if the mole has symptoms or worries you, see a doctor whatever it says" in scope
    assert SCOPE not in text(owner_client, queued.get_absolute_url())


def without_tokens(page):
    """A page with its CSRF tokens blanked: each rendering masks the token anew."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken"', page)


def outside_the_result(client, diagnosis):
    """The result page, without what its script swaps in and out of #result as the status
    changes (the status endpoint's fragment) and #result's data attributes: what a page opened
    while the photo was pending keeps once its result arrives."""
    fragment = without_tokens(client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()["html"])
    page = without_tokens(text(client, diagnosis.get_absolute_url()))
    assert page.count(fragment) == 1  # the page holds the fragment as the script swaps it in
    return re.sub(r'<div id="result" [^>]*>', '<div id="result">', page.replace(fragment, ""))


def test_a_result_that_arrives_while_its_page_is_open_reads_as_a_fresh_load(
        owner, owner_client, make_diagnosis):
    """The disclaimer's "see a doctor if ..." is for a page with no result yet; a finished one says
    it in _estimate_scope.html. Outside the fragment the script swaps, it would stay beside that
    once the result arrived: nothing there may depend on the status."""
    doctor_if = "See a doctor if a mole changes in size"
    diagnosis = make_diagnosis(owner, status="queued")
    while_pending = outside_the_result(owner_client, diagnosis)
    assert doctor_if in text(owner_client, diagnosis.get_absolute_url())

    Diagnosis.objects.filter(pk=diagnosis.pk).update(  # the result, as the worker stores it
        status="done", risk="low", probabilities={"nv": 0.9, "mel": 0.1}, malignant_probability=0.1,
        predicted_class="nv", model_version=NEW, finished_at=timezone.now())
    assert outside_the_result(owner_client, diagnosis) == while_pending
    page = text(owner_client, diagnosis.get_absolute_url())
    assert page.count(SCOPE) == 1 and doctor_if not in page
    assert page.count("This is not a diagnosis.") == 1


@pytest.mark.parametrize("photo_issues", [[], ["dark"]], ids=["good photo", "poor photo"])
def test_a_low_result_on_a_palm_or_sole_asks_for_a_doctor(owner, owner_client, make_diagnosis, photo_issues):
    sole = Mole.objects.create(owner=owner, name="Left sole", body_site="acral")
    diagnosis = make_diagnosis(owner, risk="low", mole=sole)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(photo_issues=photo_issues)
    diagnosis.refresh_from_db()

    assert "least reliable on palms, soles and nails" in LOW_RISK_ACRAL_ADVICE
    assert "checked by a doctor" in LOW_RISK_ACRAL_ADVICE
    assert set(advice_everywhere(owner, owner_client, diagnosis).values()) == {LOW_RISK_ACRAL_ADVICE}
    assert diagnosis.advice_colour == "warning"  # not the reassuring green of low


def test_only_a_palm_or_sole_changes_the_low_advice(owner, make_diagnosis):
    back = Mole.objects.create(owner=owner, name="Back", body_site="back")
    assert make_diagnosis(owner, risk="low", mole=back).next_step().text == RISK_ADVICE["low"]
    sole = Mole.objects.create(owner=owner, name="Sole", body_site="acral")
    assert make_diagnosis(owner, risk="medium", mole=sole).next_step().text == RISK_ADVICE["medium"]


# --- 3. a clinician's pressing advice through a re-run -----------------------------------------


@pytest.mark.parametrize(("recommendation", "new_risk", "stands"), [
    ("urgent", "low", True),
    ("dermatologist_soon", "low", True),
    ("urgent", "medium", True),
    ("dermatologist_soon", "medium", False),
    ("urgent", "high", True),  # "see a doctor now" asks more than high's "within 2 weeks"
    ("routine", "low", False),
])
def test_a_pressing_review_of_an_earlier_result_still_leads(
        owner, owner_client, make_diagnosis, recommendation, new_risk, stands):
    diagnosis = make_diagnosis(owner, risk="high", model_version=OLD)
    review = review_of(diagnosis, recommendation=recommendation, model_version=OLD)
    rerun(diagnosis, risk=new_risk)
    label = review.get_recommendation_display()

    step = diagnosis.next_step()
    assert step.source == ("earlier_review" if stands else "band")
    advice = advice_everywhere(owner, owner_client, diagnosis)
    assert set(advice.values()) == {step.text}
    if not stands:
        assert step.text == RISK_ADVICE[new_risk]
        return
    assert step.text.startswith(f'Follow the clinician\'s recommendation, "{label}"')
    assert "stands until a clinician reviews the new result" in step.text
    assert step.text.endswith(RISK_ADVICE[new_risk])
    # the review comes before the advice on the page and the report, and says it stands
    for url in (diagnosis.get_absolute_url(), reverse("diagnoses:report", args=[diagnosis.pk])):
        page = html.unescape(text(owner_client, url))
        assert page.index(label) < page.index("What to do next.")
        assert "this review's advice stands" in page


def test_a_pressing_review_of_an_earlier_result_outweighs_a_lower_rating_before(
        owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="medium", mole=mole, age_days=30, model_version=NEW)
    diagnosis = make_diagnosis(owner, risk="high", mole=mole, age_days=1, model_version=OLD)
    review_of(diagnosis, recommendation="urgent", model_version=OLD)
    rerun(diagnosis, risk="low")

    assert diagnosis.next_step().source == "earlier_review"
    assert 'data-testid="previous-rated-higher"' not in text(owner_client, diagnosis.get_absolute_url())


# --- 4. one piece of advice: page, report and API ----------------------------------------------


def test_the_api_gives_the_pages_advice_after_a_photo_rated_higher(owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="high", mole=mole, age_days=30)
    lower = make_diagnosis(owner, risk="low", mole=mole)

    advice = advice_everywhere(owner, owner_client, lower)
    assert advice["page"].startswith("Follow the advice for this mole's earlier photo, rated high risk")
    assert set(advice.values()) == {lower.next_step().text}


def test_the_api_gives_the_pages_advice_after_a_review(owner, owner_client, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="low")
    review_of(diagnosis, recommendation="monitor", model_version=diagnosis.model_version)

    advice = advice_everywhere(owner, owner_client, diagnosis)
    assert advice["page"].startswith('Follow the clinician\'s recommendation, "')
    assert set(advice.values()) == {diagnosis.next_step().text}


@pytest.mark.parametrize(("recommendation", "risk", "replaced"), [
    ("urgent", "high", True),  # "see a doctor now", not beside "within 2 weeks"
    ("urgent", "low", True),
    ("dermatologist_soon", "low", True),  # not beside "look at it once a month"
    ("dermatologist_soon", "medium", False),  # asks as much as "within the next 4 weeks"
    ("routine", "high", False),  # asks less: the band's advice stays beside it
])
def test_a_review_asking_more_than_the_band_replaces_the_bands_advice_everywhere(
        owner, owner_client, make_diagnosis, recommendation, risk, replaced):
    diagnosis = make_diagnosis(owner, risk=risk)
    review = review_of(diagnosis, recommendation=recommendation, model_version=diagnosis.model_version)
    label = review.get_recommendation_display()

    advice = advice_everywhere(owner, owner_client, diagnosis)
    assert set(advice.values()) == {diagnosis.next_step().text}  # page, report, shared report, API
    said = advice["page"]
    assert said.startswith(f'Follow the clinician\'s recommendation, "{label}"')
    if replaced:
        assert said == (f'Follow the clinician\'s recommendation, "{label}": it asks more than the general '
                        f"advice for a {risk} estimated risk, and replaces it.")
        assert RISK_ADVICE[risk] not in said and "The general advice for this risk band" not in said
    else:
        assert said.endswith(f"The general advice for this risk band: {RISK_ADVICE[risk]}")


def test_the_api_gives_no_advice_before_a_result(owner, make_diagnosis):
    queued = make_diagnosis(owner, status="queued")
    assert token_client(owner).get(f"/api/v1/diagnoses/{queued.pk}/").json()["advice"] == ""


# --- 5. the report's figures ---------------------------------------------------------------------


def test_the_reports_catch_rates_say_which_photos_they_hold_on(owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, model_version=load_model_card()["version"])
    page = text(owner_client, reverse("diagnoses:report", args=[diagnosis.pk]))
    about = page.split("About this estimate", 1)[1].split("</section>", 1)[0]
    assert "which catches" in about
    assert ("Those figures come from the dermatoscope photos the thresholds were set on; on new photos "
            "and phone photos, fewer malignant lesions may be caught.") in about
