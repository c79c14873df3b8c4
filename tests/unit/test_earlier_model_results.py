"""Results of different model versions: a review of an earlier result (before a re-run with
another model) counts as no review on the patient's pages, the report and the API; and pages that
compare two photos say when another model analysed one of them."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

OLD, NEW = "model-1", "model-2"


def review_of(diagnosis, *, model_version, recommendation="routine", note="Nothing to worry about."):
    """A clinician's review ("agree") of the result the diagnosis had under model_version."""
    return Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation=recommendation, note=note,
                                 reviewed_at=timezone.now(), model_version=model_version)


def rerun(diagnosis, *, risk, model_version=NEW):
    """The diagnosis as a re-run with another model left it: another version, maybe another band."""
    Diagnosis.objects.filter(pk=diagnosis.pk).update(model_version=model_version, risk=risk)
    diagnosis.refresh_from_db()
    return diagnosis


def page(client, url):
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def mole(owner):
    return Mole.objects.create(owner=owner, name="Left shoulder")


# --- 1. a review of an earlier result counts as none ------------------------------------------


@pytest.fixture
def reviewed_then_rated_high(owner, mole, make_diagnosis):
    """Photo A low; photo B low, reviewed "agree, routine check", then re-run: high."""
    make_diagnosis(owner, risk="low", mole=mole, age_days=30, model_version=OLD)
    photo_b = make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=OLD)
    review_of(photo_b, model_version=OLD)
    return rerun(photo_b, risk="high")


def test_the_result_page_gives_the_new_bands_advice_before_an_earlier_results_review(
        owner_client, reviewed_then_rated_high):
    result = page(owner_client, reviewed_then_rated_high.get_absolute_url())
    advice = result.split("<strong>What to do next.</strong>")[1].split("</div>")[0]
    assert "clinician" not in advice
    assert advice.strip().startswith("High estimated risk. Please see a dermatologist within 2 weeks")
    # The old review is still there, after the advice (not before it), as history.
    before_advice, history = result.split("<strong>What to do next.</strong>")
    assert "Routine check" not in before_advice
    assert "A clinician reviewed an earlier result of this photo" in history
    assert "Routine check" in history and "Nothing to worry about." in history
    assert 'data-testid="review-earlier-result"' in history


def test_a_review_of_the_result_shown_still_leads(owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high", model_version=NEW)
    review_of(diagnosis, model_version=NEW)
    result = page(owner_client, diagnosis.get_absolute_url())
    assert result.index("Reviewed by a clinician on") < result.index("What to do next.")
    assert 'Follow the clinician\'s recommendation, "' in result
    assert 'data-testid="review-earlier-result"' not in result


def test_the_mole_page_warns_of_a_rise_whose_review_was_of_an_earlier_result(
        owner_client, mole, reviewed_then_rated_high):
    mole_page = page(owner_client, mole.get_absolute_url())
    assert "↑ up from low" in mole_page
    assert "The estimated risk of this mole went up." in mole_page
    assert reviewed_then_rated_high.get_absolute_url() in mole_page.split("risk-rise")[1]

    Review.objects.filter(diagnosis=reviewed_then_rated_high).update(model_version=NEW)  # reviewed again
    assert "went up" not in page(owner_client, mole.get_absolute_url())


def test_the_history_marks_as_reviewed_only_a_review_of_the_result_shown(owner_client, reviewed_then_rated_high):
    assert "reviewed</span>" not in page(owner_client, reverse("diagnoses:list"))
    Review.objects.filter(diagnosis=reviewed_then_rated_high).update(model_version=NEW)
    assert "reviewed</span>" in page(owner_client, reverse("diagnoses:list"))


@pytest.mark.parametrize("reviewed", ["the lower photo", "the higher photo"])
def test_a_review_of_an_earlier_result_leaves_the_higher_rating_before_standing(
        owner_client, owner, mole, make_diagnosis, reviewed):
    higher = make_diagnosis(owner, risk="high", mole=mole, age_days=30, model_version=NEW)
    lower = make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=NEW)
    review_of(lower if reviewed == "the lower photo" else higher, model_version=OLD)

    assert lower.previous_photo_rated_higher() == higher
    result = page(owner_client, lower.get_absolute_url())
    assert 'data-testid="previous-rated-higher"' in result
    assert "Follow the advice for this mole's earlier photo, rated high risk; for this photo alone it would be" in result
    report = page(owner_client, reverse("diagnoses:report", args=[lower.pk]))
    assert 'data-testid="previous-rated-higher"' in report
    _link, token = services.share_link_create(diagnosis=lower, days=7, with_earlier_photos=False)
    shared = page(Client(), reverse("shared_report", args=[token]))
    assert 'data-testid="previous-rated-higher"' in shared
    body = token_client(owner).get(f"/api/v1/diagnoses/{lower.pk}/").json()
    assert body["previous_rated_higher"]["id"] == str(higher.pk)
    assert page(owner_client, mole.get_absolute_url()).count('data-testid="latest-rated-lower"') == 1


def test_the_report_names_a_review_of_an_earlier_result_as_such(owner_client, reviewed_then_rated_high):
    report = page(owner_client, reverse("diagnoses:report", args=[reviewed_then_rated_high.pk]))
    assert "Clinician review of an earlier result" in report
    assert "no clinician has reviewed that result yet" in report
    assert report.index("What to do next.") < report.index("Clinician review of an earlier result")


def said(html_text):
    """A passage's text as read: tags dropped, runs of white space made one space."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", html_text))).strip()


@pytest.mark.parametrize("recommendation", ["routine", "urgent"])
def test_the_page_and_the_report_say_what_a_review_of_an_earlier_result_was_of_alike(
        owner_client, owner, make_diagnosis, recommendation):
    """One sentence (_review_of_earlier_result.html), whether the review's advice leads or not."""
    diagnosis = make_diagnosis(owner, risk="high", model_version=OLD)
    review_of(diagnosis, model_version=OLD, recommendation=recommendation)
    rerun(diagnosis, risk="low")
    result = page(owner_client, diagnosis.get_absolute_url())
    on_page = said(result.split('data-testid="review-earlier-result">', 1)[1].split("</p>", 1)[0])
    report = page(owner_client, reverse("diagnoses:report", args=[diagnosis.pk]))
    in_report = said(report.split("Clinician review of an earlier result", 1)[1]
                     .split('<p class="small">', 1)[1].split("</p>", 1)[0])
    assert on_page == in_report
    assert on_page.startswith(f"This review was of the result from model {OLD}; model {NEW} has "
                              "analysed the photo again since, and no clinician has reviewed that "
                              "result yet: ")
    assert on_page.endswith("this review's advice stands, as it asks more than the new result's."
                            if recommendation == "urgent"
                            else "the advice above is that of its risk band.")


# --- 2. comparing results of different model versions -------------------------------------------


@pytest.fixture
def same_probability_other_model(owner, mole, make_diagnosis):
    """45% medium from the earlier model, then 45% high from the current one (lower thresholds)."""
    before = make_diagnosis(owner, risk="medium", mole=mole, age_days=30, model_version=OLD)
    after = make_diagnosis(owner, risk="high", mole=mole, age_days=0, model_version=NEW)
    Diagnosis.objects.filter(pk__in=[before.pk, after.pk]).update(malignant_probability=0.45)
    return before, after


def test_the_compare_page_says_when_another_model_analysed_a_photo(owner_client, mole, same_probability_other_model):
    compare = page(owner_client, reverse("diagnoses:mole_compare", args=[mole.pk]))
    assert "45.0% → 45.0%\n  (no change)" in compare
    note = compare.split('data-testid="compare-model-changed">')[1].split("</span>")[0]
    assert "different versions of the model" in note and OLD in note and NEW in note
    assert "part or all of the change may come from the model" in note

    Diagnosis.objects.filter(mole=mole).update(model_version=NEW)
    assert "compare-model-changed" not in page(owner_client, reverse("diagnoses:mole_compare", args=[mole.pk]))


def test_the_reports_earlier_photos_name_another_model_version(owner_client, owner, mole, make_diagnosis,
                                                               same_probability_other_model):
    before, after = same_probability_other_model
    make_diagnosis(owner, risk="medium", mole=mole, age_days=10, model_version=NEW)  # not named
    _link, token = services.share_link_create(diagnosis=after, days=7, with_earlier_photos=True)
    for report in (page(owner_client, reverse("diagnoses:report", args=[after.pk])),
                   page(Client(), reverse("shared_report", args=[token]))):
        section = report.split('data-testid="earlier-photos"')[1].split("</section>")[0]
        assert 'data-testid="earlier-photos-other-model"' in section
        assert section.count('data-testid="earlier-photo-model"') == 1
        assert f"Model {OLD}" in section and f"Model {NEW}" not in section

    Diagnosis.objects.filter(mole=mole).update(model_version=NEW)
    report = page(owner_client, reverse("diagnoses:report", args=[after.pk]))
    assert "earlier-photo-model" not in report and "earlier-photos-other-model" not in report


def test_the_api_gives_the_model_version_of_each_photo_of_a_mole(owner, mole, same_probability_other_model):
    before, after = same_probability_other_model
    api = token_client(owner)
    timeline = api.get(f"/api/v1/moles/{mole.pk}/").json()["diagnoses"]
    assert [(row["id"], row["model_version"]) for row in timeline] == [(str(before.pk), OLD), (str(after.pk), NEW)]

    Diagnosis.objects.filter(pk=after.pk).update(risk="low")
    higher = api.get(f"/api/v1/diagnoses/{after.pk}/").json()["previous_rated_higher"]
    assert (higher["id"], higher["model_version"]) == (str(before.pk), OLD)

    schema = api.get("/api/v1/schema/", {"format": "json"}).json()
    assert "model_version" in schema["components"]["schemas"]["DiagnosisSummary"]["properties"]


def test_the_earlier_results_review_names_the_advice_that_leads(owner_client, owner, mole,
                                                                make_diagnosis):
    """A review of an earlier result, below advice that follows a photo rated higher: its note
    says whose advice that is, not the band's."""
    make_diagnosis(owner, risk="high", mole=mole, age_days=30, model_version=NEW)
    lower = make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=NEW)
    review_of(lower, model_version=OLD)

    for url in (lower.get_absolute_url(), reverse("diagnoses:report", args=[lower.pk])):
        text = page(owner_client, url)
        assert "the advice above is that of the mole's earlier photo, rated higher" in text
        assert "the advice above is that of its risk band" not in text
        assert "the advice above is that of their risk band" not in text
