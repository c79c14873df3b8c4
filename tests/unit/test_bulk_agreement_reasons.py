"""Agreeing with the model in bulk decides once, per case, why it leaves a case alone: the service
returns those reasons (services.Skip) and the desk's messages come from them, not from a second
look at the cases; and it looks up each case's previous photo once."""

from collections import Counter
from unittest import mock

import pytest

from diagnoses import services
from diagnoses.models import Diagnosis, Review
from diagnoses.services import JUDGED, BulkAgreement, Skip
from tests.unit.test_review_desk_safety import after_a_higher_photo, mark_reviewed

pytestmark = pytest.mark.django_db


def agree(reviewer, diagnosis, verdict="agree", label=""):
    return services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict=verdict, label=label,
                                recommendation="routine", notify=False)


def test_it_returns_why_it_left_each_case_alone(reviewer, owner, make_diagnosis):
    plain = make_diagnosis(owner, risk="low")
    poor = make_diagnosis(owner, risk="low")
    Diagnosis.objects.filter(pk=poor.pk).update(photo_issues=["dark"])
    _before, after_higher = after_a_higher_photo(owner, make_diagnosis)
    failed = make_diagnosis(owner, status="failed")
    queued = make_diagnosis(owner, status="queued")
    reviewed = make_diagnosis(owner, risk="high")
    agree(reviewer, reviewed)
    rerun = make_diagnosis(owner, risk="high", model_version="model-2")
    agree(reviewer, rerun)
    # a review of the result before a re-run
    Review.objects.filter(diagnosis=rerun).update(model_version="model-1")
    deleted = make_diagnosis(owner, risk="low")
    services.diagnosis_delete(diagnosis=deleted)

    agreement = services.review_agree_many(
        diagnoses=[plain, poor, after_higher, failed, queued, reviewed, rerun, deleted], reviewer=reviewer)

    assert [review.diagnosis_id for review in agreement.reviews] == [plain.pk]
    assert agreement.skipped == Counter({Skip.NEEDS_A_LOOK: 2, Skip.FAILED: 1, Skip.EARLIER_RESULT: 1,
                                         Skip.NOT_DONE_OR_REVIEWED: 3})


def test_it_looks_up_each_cases_previous_photo_once(reviewer, owner, make_diagnosis):
    """needs_a_look and the recommendation both need it: one query on the mole's photos, not two."""
    cases = []
    for n in range(3):
        mole = services.mole_create(owner=owner, name=f"Mole {n}")
        make_diagnosis(owner, risk="low", mole=mole, age_days=10)  # lower before: none rated higher
        cases.append(make_diagnosis(owner, risk="medium", mole=mole, age_days=1))
    lookup = Diagnosis.previous_photo_rated_higher

    with mock.patch.object(Diagnosis, "previous_photo_rated_higher", autospec=True, side_effect=lookup) as looked:
        agreement = services.review_agree_many(diagnoses=cases, reviewer=reviewer)

    assert len(agreement.reviews) == 3
    assert sorted(call.args[0].pk for call in looked.call_args_list) == sorted(case.pk for case in cases)


def test_the_desk_says_what_the_service_found_without_looking_again(reviewer_client, owner, make_diagnosis):
    cases = [make_diagnosis(owner, risk="low") for _ in range(4)]
    found = BulkAgreement([], Counter({Skip.FAILED: 2, Skip.EARLIER_RESULT: 1, Skip.NOT_DONE_OR_REVIEWED: 1}))

    with mock.patch("diagnoses.services.review_agree_many", return_value=found):
        messages = mark_reviewed(reviewer_client, cases)

    assert messages == [
        "Marked 0 as reviewed.",
        "Skipped 1 whose review is of an earlier result: open each one, give your verdict on its new result and "
        "save its review again.",
        "Skipped 2 failed: no review settles them. Re-run them (the classifier may have been unavailable); "
        "one that fails again waits for the new photo its patient was told to upload.",
        "Skipped 1: not finished yet, or already reviewed.",
    ]


def test_a_reviewed_case_being_re_run_is_not_finished_yet_not_one_to_review_again(reviewer_client, reviewer, owner,
                                                                                  make_diagnosis):
    """Its review is of the result the re-run clears; with no result yet, there is nothing to save
    a review of: the desk must not say "save its review again"."""
    rerun = make_diagnosis(owner, risk="high")
    agree(reviewer, rerun)
    services.diagnosis_requeue(diagnosis=rerun)

    messages = mark_reviewed(reviewer_client, [rerun])

    assert messages == ["Marked 0 as reviewed.", "Skipped 1: not finished yet, or already reviewed."]


def test_judged_is_a_review_of_the_result_shown_that_could_tell(reviewer, owner, make_diagnosis):
    """services.JUDGED, built from IS_REVIEWED, says what Diagnosis.judged_by_a_clinician says."""
    cases = {name: make_diagnosis(owner, risk="low") for name in
             ("none", "agreed", "disagreed", "unclear", "agreed_earlier", "unclear_earlier", "unversioned")}
    agree(reviewer, cases["agreed"])
    agree(reviewer, cases["disagreed"], verdict="disagree", label="mel")
    agree(reviewer, cases["unclear"], verdict="unclear")
    agree(reviewer, cases["agreed_earlier"])
    agree(reviewer, cases["unclear_earlier"], verdict="unclear")
    agree(reviewer, cases["unversioned"])
    Review.objects.filter(diagnosis__in=[cases["agreed_earlier"], cases["unclear_earlier"]]).update(model_version="old")
    # a review saved before reviews carried a model version counts as of the result shown
    Review.objects.filter(diagnosis=cases["unversioned"]).update(model_version="")

    judged = set(Diagnosis.objects.filter(JUDGED).values_list("pk", flat=True))
    by_python = {d.pk for d in Diagnosis.objects.select_related("review") if d.judged_by_a_clinician}
    assert judged == by_python == {cases[name].pk for name in ("agreed", "disagreed", "unversioned")}


def photos_of_one_mole(owner, reviewer, make_diagnosis, *specs, name="Neck"):
    """Finished photos of one mole, oldest first: a band, or (band, recommendation) for one a
    clinician agreed with, recommending that."""
    mole = services.mole_create(owner=owner, name=name)
    made = []
    for age, spec in zip(range(10 * len(specs), 0, -10), specs):
        band, recommendation = (spec, None) if isinstance(spec, str) else spec
        made.append(make_diagnosis(owner, risk=band, mole=mole, age_days=age))
        if recommendation:
            services.review_save(diagnosis=made[-1], reviewer=reviewer, verdict="agree",
                                 recommendation=recommendation, notify=False)
    return made


@pytest.mark.parametrize("specs", [
    [("high", "urgent"), "low"],  # a pressing review of an earlier photo leads the low one
    [("high", "urgent"), "low", "low"],
    [("medium", "dermatologist_soon"), "low"],
    ["high", "low", "low"],  # the high photo leads both lows, not only the one after it
    ["high", "medium", "low"],
])
def test_it_leaves_a_case_an_earlier_photo_leads_for_a_review_one_by_one(reviewer, owner, make_diagnosis, specs):
    case = photos_of_one_mole(owner, reviewer, make_diagnosis, *specs)[-1]

    agreement = services.review_agree_many(diagnoses=[case], reviewer=reviewer)

    assert agreement.reviews == [] and agreement.skipped == Counter({Skip.NEEDS_A_LOOK: 1})
    assert not Review.objects.filter(diagnosis=case).exists()


def test_its_suggestion_never_asks_less_than_the_earlier_photos_review(reviewer, owner, make_diagnosis):
    """What the case page suggests, and a bulk agreement would save: the review's recommendation."""
    case = photos_of_one_mole(owner, reviewer, make_diagnosis, ("high", "urgent"), "low", "low")[-1]
    recommendation, why = services.suggested_recommendation(case, case.previous_photo_rated_higher())
    assert recommendation == Review.Recommendation.URGENT
    assert why == 'as a clinician\'s review of an earlier photo of the mole asks "Urgent: see a doctor now"'
    case = photos_of_one_mole(owner, reviewer, make_diagnosis, "high", "low", "low", name="Back")[-1]
    assert services.suggested_recommendation(case, case.previous_photo_rated_higher())[0] == "dermatologist_soon"


def test_a_review_of_a_later_photo_ends_what_an_earlier_one_asked(reviewer, owner, make_diagnosis):
    case = photos_of_one_mole(owner, reviewer, make_diagnosis, ("high", "urgent"), ("low", "routine"), "low")[-1]

    agreement = services.review_agree_many(diagnoses=[case], reviewer=reviewer)

    assert [review.recommendation for review in agreement.reviews] == ["routine"]
