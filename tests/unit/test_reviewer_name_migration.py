"""Upgrading to reviews that keep their reviewer's name (diagnoses 0020): the reviews already saved
take their reviewer's username, so that it stays when the account is deleted."""

import pytest

from diagnoses.models import Review
from tests.conftest import migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("diagnoses", "0019_mole_order_whatever_the_case")


def test_reviews_already_saved_take_their_reviewers_username(latest_schema_after, reviewer, owner, make_diagnosis):
    reviewed, orphaned = make_diagnosis(owner, risk="high"), make_diagnosis(owner, risk="low")
    old = migrate_to(BEFORE)
    OldReview = old.get_model("diagnoses", "Review")
    for diagnosis, by in ((reviewed, reviewer.pk), (orphaned, None)):
        OldReview.objects.create(diagnosis_id=diagnosis.pk, reviewer_id=by, verdict="agree", label="mel",
                                 recommendation="routine", reviewed_at=diagnosis.created_at, model_version="v")

    migrate_to_latest()

    names = dict(Review.objects.values_list("diagnosis_id", "reviewer_name"))
    assert names == {reviewed.pk: "dr-reviewer", orphaned.pk: ""}
    reviewer.delete()
    assert Review.objects.get(diagnosis=reviewed).reviewer_name == "dr-reviewer"
