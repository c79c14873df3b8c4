"""Two clinicians saving a review of one case at the same moment, on the real Postgres."""

from django.db import transaction

from diagnoses import services
from diagnoses.models import Review
from tests.integration.conftest import run_held_in_another_thread
from tests.unit.test_review import change_url, review_post


def another_clinician_saving(diagnosis, reviewer):
    """Another desk request, between its check and its commit when the test goes on (it holds the
    case as the desk's check does); it saves an "agree, urgent" review half a second later."""

    def save(hold):
        with transaction.atomic():
            services.case_hold(diagnosis.pk)
            hold()
            services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree",
                                 recommendation="urgent", notify=False)

    return run_held_in_another_thread(save)


def test_a_review_saved_at_the_same_moment_is_not_overwritten(transactional_db, reviewer_client, admin_user, owner,
                                                              make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    other = another_clinician_saving(diagnosis, admin_user)
    # Shown before the other review existed. Without the desk's hold this request would pass the
    # check (no review yet) and then deadlock with, or overwrite, the other clinician's save.
    response = reviewer_client.post(change_url(diagnosis), review_post(diagnosis, verdict="disagree", label="nv",
                                                                      recommendation="routine"))
    other.join(10)

    assert response.status_code == 200
    assert "admin saved a review of this case at" in response.content.decode()
    kept = Review.objects.get(diagnosis=diagnosis)
    assert (kept.verdict, kept.recommendation, kept.reviewer) == ("agree", "urgent", admin_user)


def test_marking_reviewed_in_bulk_at_the_same_moment_leaves_the_other_review(transactional_db, reviewer, admin_user,
                                                                             owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="low")  # bulk agreement would recommend a routine check
    other = another_clinician_saving(diagnosis, admin_user)
    made = services.review_agree_many(diagnoses=[diagnosis], reviewer=reviewer)
    other.join(10)

    assert made.reviews == []
    kept = Review.objects.get(diagnosis=diagnosis)
    assert (kept.recommendation, kept.reviewer) == ("urgent", admin_user)
