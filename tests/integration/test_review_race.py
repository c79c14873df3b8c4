"""Two clinicians saving a review of one case at the same moment, on the real Postgres."""

import threading

from django.db import connection, transaction

from diagnoses import services
from diagnoses.models import Diagnosis, Review
from tests.unit.test_review import change_url, review_post


def test_a_review_saved_at_the_same_moment_is_not_overwritten(transactional_db, reviewer_client, admin_user, owner,
                                                              make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    holding, release = threading.Event(), threading.Event()

    def other_clinician():
        """Another desk request, between its check and its commit (it holds the case as the
        desk's check does) when this one posts; it commits half a second later."""
        try:
            with transaction.atomic():
                list(Diagnosis.objects.select_for_update().filter(pk=diagnosis.pk))
                holding.set()
                release.wait(10)
                services.review_save(diagnosis=diagnosis, reviewer=admin_user, verdict="agree",
                                     recommendation="urgent", notify=False)
        finally:
            connection.close()

    other = threading.Thread(target=other_clinician)
    other.start()
    assert holding.wait(10)
    threading.Timer(0.5, release.set).start()
    # Shown before the other review existed. Without the desk's hold this request would pass the
    # check (no review yet) and then deadlock with, or overwrite, the other clinician's save.
    response = reviewer_client.post(change_url(diagnosis), review_post(verdict="disagree", label="nv",
                                                                       recommendation="routine"))
    other.join(10)

    assert response.status_code == 200
    assert "admin saved a review of this case at" in response.content.decode()
    kept = Review.objects.get(diagnosis=diagnosis)
    assert (kept.verdict, kept.recommendation, kept.reviewer) == ("agree", "urgent", admin_user)
