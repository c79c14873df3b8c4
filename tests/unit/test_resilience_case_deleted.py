"""A patient deletes a case while a clinician saves its first review at the review desk: the
clinician is told the case is gone, not given a server error."""

import pytest

from diagnoses import services
from diagnoses.models import Diagnosis, Review
from tests.unit.test_review import change_url, review_post

# Outside a test transaction, as a served request: the admin's own transaction commits, and
# the database checks its foreign keys then.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_case_deleted_while_its_first_review_is_saved_is_refused_with_a_message(
        reviewer_client, owner, make_diagnosis, monkeypatch):
    diagnosis = make_diagnosis(owner, risk="high")
    posted = review_post(diagnosis, verdict="agree")
    hold = services.case_hold

    def deleted_by_the_patient_first(diagnosis_id):
        services.diagnosis_delete(diagnosis=Diagnosis.objects.get(pk=diagnosis_id))
        hold(diagnosis_id)

    monkeypatch.setattr(services, "case_hold", deleted_by_the_patient_first)
    response = reviewer_client.post(change_url(diagnosis), posted)

    assert response.status_code == 200
    assert "This case was deleted" in response.content.decode()
    assert not Diagnosis.objects.exists() and not Review.objects.exists()
