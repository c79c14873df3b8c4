"""A review of an earlier result (before a re-run with another model), below advice that follows
the mole's earlier photo: when that photo leads by its clinician's review (NextStep.previous_review),
the note says so, as the rated-higher note does (_rated_higher_advice.html), not "rated higher"."""

import html

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnoses.models import Mole, Review

pytestmark = pytest.mark.django_db

OLD, NEW = "model-1", "model-2"


def _review(diagnosis, *, model_version, recommendation):
    return Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation=recommendation,
                                 note="", reviewed_at=timezone.now(), model_version=model_version)


def _note(page):
    return " ".join(page.split("This review was of the result from model", 1)[1].split("</p>", 1)[0].split())


def test_the_earlier_results_review_says_a_clinicians_review_of_the_earlier_photo_leads(
        owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    earlier = make_diagnosis(owner, risk="low", mole=mole, age_days=30, model_version=NEW)
    review = _review(earlier, model_version=NEW, recommendation="urgent")  # of its result: it stands
    later = make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=NEW)
    _review(later, model_version=OLD, recommendation="routine")  # of a result before a re-run
    step = later.next_step()
    assert step.source == "previous_photo" and step.previous_review == review

    for url in (later.get_absolute_url(), reverse("diagnoses:report", args=[later.pk])):
        page = " ".join(html.unescape(owner_client.get(url).content.decode()).split())
        # the note's sentence, on the result page (_review.html) and the report (_report_review.html)
        note = page.split("This review was of the result from model", 1)[1].split("</p>", 1)[0]
        assert "rated higher" not in note
        assert ("the advice above is that of a clinician who reviewed the mole's earlier photo and recommended "
                "<strong>Urgent: see a doctor now</strong>") in note


def test_an_earlier_photo_rated_higher_without_a_review_is_still_said_so(owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="high", mole=mole, age_days=30, model_version=NEW)
    later = make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=NEW)
    _review(later, model_version=OLD, recommendation="routine")
    assert later.next_step().previous_review is None
    note = _note(html.unescape(owner_client.get(later.get_absolute_url()).content.decode()))
    assert "the advice above is that of the mole's earlier photo, rated higher" in note
    assert "a clinician who reviewed the mole's earlier photo" not in note
