"""Failed cases (a photo that could not be classified) at the review desk: no review can close
one, only a re-run or a new photo, so the desk ranks them apart from the low ones, names them in
the status filter and the Risk column, says on the case page what to do, and the clinicians'
daily count counts them apart."""

import pytest
from django.conf import settings as django_settings

from diagnoses import services
from diagnoses.models import Diagnosis
from tests.unit.test_review_desk_safety import QUEUE_URL, change_url, queue

pytestmark = pytest.mark.django_db

NEEDS = "Failed — needs a re-run or a new photo"


def test_the_status_filter_and_the_risk_column_say_what_a_failed_case_needs(reviewer_client, owner,
                                                                            make_diagnosis):
    failed = make_diagnosis(owner, status="failed")
    low = make_diagnosis(owner, risk="low")

    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert 'href="?status__exact=failed"' in html
    assert html.count(NEEDS) == 2  # the filter's choice, the case's Risk column
    assert queue(reviewer_client, status__exact="failed") == [failed]
    assert queue(reviewer_client, status__exact="done") == [low]
    # in no risk band: the Risk filter follows the queue's rank, and a failed case has its own
    assert [queue(reviewer_client, risk__exact=band) for band in ("low", "medium", "high")] == [[low], [], []]


def test_the_case_page_of_a_failed_case_says_how_to_deal_with_it(reviewer_client, owner, make_diagnosis):
    failed = make_diagnosis(owner, status="failed")
    done = make_diagnosis(owner, risk="low")

    html = reviewer_client.get(change_url(failed)).content.decode()
    assert "Nothing to review: the photo could not be classified" in html
    assert "ask the patient for a new photo" in html
    assert f'href="{QUEUE_URL}?id__exact={failed.pk}"' in html
    assert "Nothing to review" not in reviewer_client.get(change_url(done)).content.decode()
    # the link lists that case alone, where the re-run action is
    response = reviewer_client.get(QUEUE_URL, {"id__exact": str(failed.pk)})
    assert list(response.context["cl"].result_list) == [failed]
    assert "requeue" in dict(response.context["action_form"].fields["action"].choices)


FAILED_URL = django_settings.SITE_URL + QUEUE_URL + "?status__exact=failed"


def test_the_daily_count_counts_failed_cases_apart(owner, reviewer, make_diagnosis, mailoutbox):
    make_diagnosis(owner, risk="high")
    make_diagnosis(owner, status="failed")
    make_diagnosis(owner, status="failed")

    assert services.review_queue_digest_send() == 1
    (email,) = mailoutbox
    assert email.subject == "1 case waits for review"
    assert "- high risk: 1\n- medium risk: 0\n- low risk: 0\n" in email.body  # not among the bands
    assert ("2 photos could not be classified (failed): no review can settle them. Re-run them, or ask for a "
            f"new photo:\n{FAILED_URL}\n") in email.body
    assert "patient" not in email.body  # counts only


def test_the_daily_count_goes_out_for_failed_cases_alone(owner, reviewer, make_diagnosis, mailoutbox):
    make_diagnosis(owner, status="failed")

    assert services.review_queue_digest_send() == 1
    (email,) = mailoutbox
    assert email.subject == "1 failed case needs a re-run or a new photo"
    assert "No finished result waits for a clinician's review" in email.body
    assert "The oldest has waited" not in email.body and "- low risk" not in email.body
    assert "1 photo could not be classified (failed): no review can settle it. Re-run it," in email.body
    assert Diagnosis.objects.awaiting_review().count() == 0
