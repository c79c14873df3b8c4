"""The review desk's Risk filter and the clinicians' morning count rank a case as the queue does
(services.QUEUE_RANK); bulk agreement says apart the failed cases it cannot review."""

import pytest

from diagnoses import services
from diagnoses.models import Diagnosis
from tests.unit.test_review_desk_safety import QUEUE_URL, after_a_higher_photo, mark_reviewed, queue

pytestmark = pytest.mark.django_db


def test_the_risk_filter_holds_what_the_queue_ranks_in_that_band(reviewer_client, owner, make_diagnosis):
    high_before, low_after_high = after_a_higher_photo(owner, make_diagnosis)
    low = make_diagnosis(owner, risk="low")
    make_diagnosis(owner, status="failed")  # no band: in none of them

    assert queue(reviewer_client, risk__exact="high") == [high_before, low_after_high]
    assert queue(reviewer_client, risk__exact="low") == [low]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert all(f"?risk__exact={band}" in html for band in ("low", "medium", "high"))


def test_the_morning_count_counts_by_the_queues_rank(owner, reviewer, make_diagnosis, mailoutbox):
    after_a_higher_photo(owner, make_diagnosis)
    make_diagnosis(owner, status="failed")

    assert services.review_queue_digest_send() == 1
    assert "- high risk: 2\n- medium risk: 0\n- low risk: 0\n" in mailoutbox[0].body


def test_agreeing_in_bulk_says_apart_the_failed_cases(reviewer_client, reviewer, owner, make_diagnosis):
    failed = make_diagnosis(owner, status="failed")
    queued = make_diagnosis(owner, status="queued")
    plain = make_diagnosis(owner, risk="low")
    # reviewed, then re-run by another model, which failed: still nothing to review
    failed_after_review = make_diagnosis(owner, risk="low")
    services.review_save(diagnosis=failed_after_review, reviewer=reviewer, verdict="agree",
                         recommendation="routine", notify=False)
    Diagnosis.objects.filter(pk=failed_after_review.pk).update(status="failed", risk="", model_version="")

    messages = mark_reviewed(reviewer_client, [failed, queued, plain, failed_after_review])

    assert "Marked 1 as reviewed." in messages
    assert ("Skipped 2 failed: no review settles them. Re-run them (the classifier may have been unavailable); "
            "one that fails again waits for the new photo its patient was told to upload.") in messages
    assert "Skipped 1: not finished yet, or already reviewed." in messages
    assert not any("earlier result" in m for m in messages)
