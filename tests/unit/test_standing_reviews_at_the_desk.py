"""A clinician's review kept through a re-run (Review.is_of_an_earlier_result) at the review desk,
as the patient's pages give it: on a case without a result (a re-run queued, running or failed)
the case page shows it read-only, without a form; on a new result no clinician has reviewed yet,
a pressing one stands (Diagnosis.next_step: urgent over any band, a dermatologist soon over low)
and the queue ranks the case by it, its Risk column says so, and the morning count counts it
where the queue ranks it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review
from tests.unit.test_review_desk_safety import QUEUE_URL, change_url, queue

pytestmark = pytest.mark.django_db

OLD, NEW = "model-1", "model-2"
SHOWN = "Review the patient sees"


def reviewed(diagnosis, reviewer, recommendation, *, note="Come today.", verdict="agree", label=""):
    return services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict=verdict, label=label,
                                recommendation=recommendation, note=note, notify=False)


def rerun(diagnosis, *, risk, model_version=NEW):
    """The case as a re-run with another model left it: its review kept, of the earlier result."""
    Diagnosis.objects.filter(pk=diagnosis.pk).update(model_version=model_version, risk=risk)
    diagnosis.refresh_from_db()
    return diagnosis


# --- A. the case page of a case without a result -----------------------------------------------


def shown_review(html):
    """The case page's fieldset of the review the patient sees, or None."""
    if SHOWN not in html:
        return None
    return html.split(SHOWN, 1)[1].split("</fieldset>", 1)[0]


def test_a_failed_re_run_shows_the_urgent_review_its_patient_still_sees(reviewer_client, owner_client, reviewer,
                                                                        owner, make_diagnosis):
    """The case the review found: the patient's page leads with the red "Urgent: see a doctor now
    ... Come today."; the case page said only that there was nothing to review."""
    case = make_diagnosis(owner, risk="high", model_version=OLD)
    reviewed(case, reviewer, "urgent", verdict="disagree", label="mel", note="Come today.\nBring the photo.")
    services.diagnosis_requeue(diagnosis=case)
    services.diagnosis_fail(diagnosis_id=case.pk, message=services.MESSAGE_UNREADABLE)
    patient_page = owner_client.get(case.get_absolute_url()).content.decode()
    assert "Urgent: see a doctor now" in patient_page and "Come today." in patient_page

    html = reviewer_client.get(change_url(case)).content.decode()
    review = shown_review(html)
    assert review is not None
    # as the patient's page words it (_review_body.html), the recommendation in red
    assert "<strong class=\"fs-5\">Urgent: see a doctor now</strong>" in review
    assert '<div class="shown-review pressing">' in review  # red by that class (admin-review.css)
    assert "disagree with the model" in review and "the clinician's reading: melanoma" in review
    assert "Come today.<br>Bring the photo." in review
    assert f"Reviewed by {reviewer.username} on " in review
    # what it was of, as the patient's page says it (_review_of_earlier_result.html)
    assert f"This review was of the result from model {OLD}; the photo's newer analysis did not complete." \
        in review
    assert review.count("The patient's page shows this review, with its recommendation, until a clinician "
                        "reviews a new result") == 1
    assert "Nothing to review: the photo could not be classified" in html  # what to do, as before
    assert "an administrator can contact them). The patient still sees the clinician&#x27;s review below." in html
    assert 'name="review-0-verdict"' not in html and "review-TOTAL_FORMS" not in html  # no form


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_re_run_under_way_shows_the_review_its_patient_sees(reviewer_client, reviewer, owner, make_diagnosis,
                                                              status):
    case = make_diagnosis(owner, risk="low", model_version=OLD)
    reviewed(case, reviewer, "routine", note="Looks fine.")
    services.diagnosis_requeue(diagnosis=case)
    Diagnosis.objects.filter(pk=case.pk).update(status=status)

    html = reviewer_client.get(change_url(case)).content.decode()
    review = shown_review(html)
    assert "<strong>Routine check</strong>" in review and "Looks fine." in review
    assert '<div class="shown-review">' in review  # not pressing: not red
    assert "the photo is being analysed again, and its new result is not in yet." in review
    assert 'name="review-0-verdict"' not in html


def test_a_review_saved_before_reviews_carried_a_model_version_is_shown_too(reviewer_client, reviewer, owner,
                                                                           make_diagnosis):
    case = make_diagnosis(owner, risk="medium", model_version=OLD)
    reviewed(case, reviewer, "dermatologist_soon", note="")
    Review.objects.filter(diagnosis=case).update(model_version="")
    services.diagnosis_requeue(diagnosis=case)

    review = shown_review(reviewer_client.get(change_url(case)).content.decode())
    assert "See a dermatologist soon" in review
    assert "the model version was not recorded" in review
    assert "This review was of the result from model" not in review  # no version to name


def test_the_review_shown_escapes_what_the_clinician_wrote(reviewer_client, reviewer, owner, make_diagnosis):
    case = make_diagnosis(owner, risk="low", model_version=OLD)
    reviewed(case, reviewer, "routine", note='<script>alert("x")</script>\nSecond line')
    services.diagnosis_requeue(diagnosis=case)

    review = shown_review(reviewer_client.get(change_url(case)).content.decode())
    assert "<script>" not in review
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;<br>Second line" in review


def test_the_case_page_shows_no_such_review_where_there_is_none_or_a_form_holds_it(reviewer_client, reviewer, owner,
                                                                                  make_diagnosis):
    failed = make_diagnosis(owner, status="failed")
    done = make_diagnosis(owner, risk="low", model_version=OLD)
    reviewed(done, reviewer, "urgent")
    rerun_done = rerun(reviewed(make_diagnosis(owner, risk="low", model_version=OLD), reviewer, "urgent").diagnosis,
                       risk="low")

    failed_page = reviewer_client.get(change_url(failed)).content.decode()
    assert shown_review(failed_page) is None and "still sees" not in failed_page
    for case in (done, rerun_done):  # a finished result: its review is in the form
        html = reviewer_client.get(change_url(case)).content.decode()
        assert shown_review(html) is None and 'name="review-0-verdict"' in html


# --- B. a standing pressing review in the queue and the morning count ----------------------------


def rerun_after(owner, reviewer, make_diagnosis, recommendation, *, was="high", now="low", age_days=1):
    """A case reviewed with recommendation, then re-run by another model: rated `now`."""
    case = make_diagnosis(owner, risk=was, model_version=OLD, age_days=age_days)
    reviewed(case, reviewer, recommendation)
    return rerun(case, risk=now)


def test_a_standing_urgent_review_ranks_a_low_re_run_high(reviewer_client, reviewer, owner, make_diagnosis):
    medium = make_diagnosis(owner, risk="medium", age_days=20)
    low = make_diagnosis(owner, risk="low", age_days=30)
    urgent_low = rerun_after(owner, reviewer, make_diagnosis, "urgent")

    assert queue(reviewer_client) == [urgent_low, medium, low]
    assert queue(reviewer_client, risk__exact="high") == [urgent_low]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert html.count("ranked by its earlier review:") == 1
    assert ('ranked by its earlier review: <strong style="color:var(--risk-high)">urgent: see a doctor now</strong>'
            in html)
    assert "ranked as the previous photo" not in html


def test_a_standing_review_asking_for_a_dermatologist_soon_ranks_a_low_re_run_medium(reviewer_client, reviewer,
                                                                                     owner, make_diagnosis):
    medium = make_diagnosis(owner, risk="medium", age_days=20)
    low = make_diagnosis(owner, risk="low", age_days=30)
    soon_low = rerun_after(owner, reviewer, make_diagnosis, "dermatologist_soon", age_days=25)
    soon_medium = rerun_after(owner, reviewer, make_diagnosis, "dermatologist_soon", now="medium", age_days=10)
    routine_low = rerun_after(owner, reviewer, make_diagnosis, "routine", age_days=40)  # adds nothing

    assert queue(reviewer_client) == [soon_low, medium, soon_medium, routine_low, low]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    # marked on the low case alone: the medium one ranks by its own band
    assert html.count("ranked by its earlier review:") == 1
    assert 'ranked by its earlier review: <strong style="color:var(--risk-medium)">see a dermatologist soon</strong>' in html


def test_the_new_results_review_ends_the_standing_reviews_rank(reviewer_client, reviewer, owner, make_diagnosis):
    medium = make_diagnosis(owner, risk="medium", age_days=20)
    urgent_low = rerun_after(owner, reviewer, make_diagnosis, "urgent")
    reviewed(urgent_low, reviewer, "routine", note="The new result: fine.")

    assert queue(reviewer_client) == [medium, urgent_low]
    assert "ranked by its earlier review" not in reviewer_client.get(QUEUE_URL).content.decode()


def test_the_morning_count_counts_a_standing_review_where_the_queue_ranks_it(owner, reviewer, make_diagnosis,
                                                                            mailoutbox):
    rerun_after(owner, reviewer, make_diagnosis, "urgent")
    rerun_after(owner, reviewer, make_diagnosis, "dermatologist_soon")
    rerun_after(owner, reviewer, make_diagnosis, "routine")
    make_diagnosis(owner, risk="low")

    assert services.review_queue_digest_send() == 1
    assert "- high risk: 1\n- medium risk: 1\n- low risk: 2\n" in mailoutbox[0].body


def test_the_queue_loads_standing_reviews_in_the_same_number_of_queries(reviewer_client, reviewer, owner,
                                                                        make_diagnosis):
    def count_queries():
        with CaptureQueriesContext(connection) as captured:
            reviewer_client.get(QUEUE_URL)
        return len(captured)

    make_diagnosis(owner, risk="low")
    few = count_queries()
    for recommendation in ["urgent", "dermatologist_soon", "routine", "urgent"]:
        rerun_after(owner, reviewer, make_diagnosis, recommendation)
    assert count_queries() == few


# --- the queue's rank (SQL) is the advice the patient is told to follow (Python) ----------------


EARLIER_PHOTO = [None, "low", "medium", "high", "high judged", "high unclear"]
REVIEW = [None, "this result", "earlier routine", "earlier monitor", "earlier dermatologist_soon", "earlier urgent",
          "legacy urgent"]


def expected_rank(case):
    """The queue's rank as Diagnosis.next_step says what leads: a review of this result, the band;
    a standing review of an earlier result, its EARLIER_REVIEW_RANKS; the photo before, rated
    higher, that photo's band, or its clinician's pressing review, its EARLIER_REVIEW_RANKS; else
    the case's own."""
    step = case.next_step()
    if step.source == "earlier_review":
        return services.EARLIER_REVIEW_RANKS[case.review.recommendation]
    if step.source == "previous_photo" and step.previous_review is not None:
        return services.EARLIER_REVIEW_RANKS[step.previous_review.recommendation]
    if step.source == "previous_photo":
        return services.RISK_RANKS[step.previous.risk]
    return services.RISK_RANKS[case.risk]


def test_the_queues_rank_is_the_rank_of_the_advice_the_patient_follows(owner, reviewer, make_diagnosis):
    """Over every band, photo before (none, each band, judged or not) and review (none, of this
    result, of an earlier one of each kind, one saved before reviews carried a model version)."""
    cases = []
    for risk in ("low", "medium", "high"):
        for earlier in EARLIER_PHOTO:
            for review in REVIEW:
                mole = Mole.objects.create(owner=owner, name=f"{risk} {earlier} {review}")
                if earlier is not None:
                    before = make_diagnosis(owner, risk=earlier.split()[0], mole=mole, age_days=10)
                    if earlier.endswith("judged"):
                        reviewed(before, reviewer, "routine")
                    elif earlier.endswith("unclear"):
                        reviewed(before, reviewer, "new_photo", verdict="unclear")
                case = make_diagnosis(owner, risk=risk, mole=mole, age_days=1, model_version=OLD)
                if review is not None:
                    reviewed(case, reviewer, review.split()[-1] if review != "this result" else "routine")
                    if review == "legacy urgent":
                        Review.objects.filter(diagnosis=case).update(model_version="")
                    elif review.startswith("earlier"):
                        Diagnosis.objects.filter(pk=case.pk).update(model_version=NEW)
                cases.append(case.pk)

    checked = Diagnosis.objects.filter(pk__in=cases).select_related("review", "mole")
    assert ranked_otherwise(checked) == []
    assert len(cases) == 3 * len(EARLIER_PHOTO) * len(REVIEW)
    # the grid holds each way a case is ranked
    assert {case.next_step().source for case in checked} == {"review", "earlier_review", "previous_photo", "band"}


def ranked_otherwise(cases):
    """(mole, rank, expected) of the cases the queue's SQL rank puts elsewhere than the rule in
    Python (expected_rank) does."""
    ranks = dict(Diagnosis.objects.filter(pk__in=[case.pk for case in cases]).annotate(rank=services.QUEUE_RANK)
                 .values_list("pk", "rank"))
    return [(case.mole.name, ranks[case.pk], expected_rank(case)) for case in cases
            if ranks[case.pk] != expected_rank(case)]


# Earlier photos of the mole, oldest first: a band, or "band recommendation" for one a clinician
# agreed with, "band recommendation unclear" for one they could not tell from.
CHAINS = [
    ["high", "medium"], ["high", "low"], ["high", "low", "low"], ["low", "high", "low", "low"],
    ["high urgent"], ["high urgent", "low"], ["high urgent", "medium", "low"], ["high urgent", "low routine"],
    ["high dermatologist_soon"], ["medium dermatologist_soon", "low"], ["high dermatologist_soon", "high", "low"],
    ["high", "low urgent"], ["high", "low routine", "low"], ["high", "low urgent unclear"],
    ["high urgent", "low routine unclear", "low"],
]


def test_the_queues_rank_is_the_rank_of_the_earlier_photo_that_leads(owner, reviewer, make_diagnosis):
    """Over chains of earlier photos: the highest since the last one a clinician judged, and that
    one's pressing review, rank a case as its patient's pages have them follow it
    (Diagnosis.leading_earlier_photo), with or without a standing review of its own."""
    cases = []
    for risk in ("low", "medium", "high"):
        for chain in CHAINS:
            for review in (None, "earlier urgent", "earlier dermatologist_soon"):
                mole = Mole.objects.create(owner=owner, name=f"{risk} {chain} {review}")
                for age, spec in zip(range(10 * len(chain) + 1, 1, -10), chain):
                    band, *judged = spec.split()
                    before = make_diagnosis(owner, risk=band, mole=mole, age_days=age)
                    if judged:
                        reviewed(before, reviewer, judged[0], verdict=judged[1] if judged[1:] else "agree")
                case = make_diagnosis(owner, risk=risk, mole=mole, age_days=1, model_version=OLD)
                if review is not None:
                    reviewed(case, reviewer, review.split()[-1])
                    Diagnosis.objects.filter(pk=case.pk).update(model_version=NEW)
                cases.append(case.pk)

    checked = Diagnosis.objects.filter(pk__in=cases).select_related("review", "mole")
    assert ranked_otherwise(checked) == []
    # the grid holds cases led by an earlier photo's band and by an earlier photo's review
    steps = [case.next_step() for case in checked]
    assert any(step.previous_review is not None for step in steps)
    assert any(step.previous is not None and step.previous_review is None and not step.previous_is_last
               for step in steps)


def test_an_urgent_review_of_an_earlier_photo_ranks_a_later_low_one_high(reviewer_client, reviewer, owner,
                                                                         make_diagnosis):
    medium = make_diagnosis(owner, risk="medium", age_days=20)
    mole = Mole.objects.create(owner=owner, name="Neck")
    high = make_diagnosis(owner, risk="high", mole=mole, age_days=10)
    reviewed(high, reviewer, "urgent")
    low = make_diagnosis(owner, risk="low", mole=mole, age_days=1)

    assert queue(reviewer_client)[:2] == [low, medium]
    page = reviewer_client.get(QUEUE_URL).content.decode()
    assert "ranked by an earlier photo's review: <strong" in page
    assert ">urgent: see a doctor now</strong></small>" in page
    assert queue(reviewer_client, risk__exact="high") == [low, high]  # the reviewed high one after it
    # a clinician's review of the low photo ends it
    reviewed(low, reviewer, "routine", verdict="disagree", label="nv")
    later = make_diagnosis(owner, risk="low", mole=mole)
    assert later.next_step().source == "band"
    assert "ranked by an earlier photo" not in reviewer_client.get(QUEUE_URL).content.decode()


def test_the_risk_column_names_the_photo_that_leads_when_a_later_one_ties_with_a_review(
        reviewer_client, reviewer, owner, make_diagnosis):
    # A medium photo reviewed "dermatologist soon", a later unreviewed medium, then a low: the later
    # medium leads (the latest on a tie), as the patient's page says, so the column names its band.
    mole = Mole.objects.create(owner=owner, name="Neck")
    reviewed(make_diagnosis(owner, risk="medium", mole=mole, age_days=20), reviewer, "dermatologist_soon")
    make_diagnosis(owner, risk="medium", mole=mole, age_days=10)
    low = make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    assert low.next_step().previous_review is None

    page = reviewer_client.get(QUEUE_URL, {"id__exact": low.pk}).content.decode()
    assert "ranked as the previous photo: <strong" in page and "ranked by an earlier photo" not in page


def test_a_standing_review_moves_no_case_without_a_result(reviewer_client, reviewer, owner, make_diagnosis):
    """Failed, it ranks as failed cases do; queued, with the cases that need nothing."""
    low = make_diagnosis(owner, risk="low", age_days=30)
    failed = rerun_after(owner, reviewer, make_diagnosis, "urgent", age_days=5)
    services.diagnosis_requeue(diagnosis=failed)
    Diagnosis.objects.filter(pk=failed.pk).update(status="failed", finished_at=timezone.now())
    queued = rerun_after(owner, reviewer, make_diagnosis, "urgent", age_days=6)
    services.diagnosis_requeue(diagnosis=queued)

    assert queue(reviewer_client) == [failed, low, queued]


# --- the photos before each case, through an index ------------------------------------------------


def test_the_queue_finds_the_photo_before_each_case_through_an_index(owner, make_diagnosis):
    """services.EARLIER_RANK runs for each case the queue sorts: the mole's finished photos before
    it, found through a range of (mole, status, created_at, id), not by reading every photo of the
    mole."""
    from tests.unit.test_admin import indexed_columns

    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="high", mole=mole, age_days=3)
    make_diagnosis(owner, risk="low", mole=mole, age_days=1)

    assert ("mole_id", "status", "created_at", "id") in indexed_columns(Diagnosis)
    if connection.vendor == "sqlite":  # Postgres reads a table this small whole, whatever its indexes
        plan = Diagnosis.objects.annotate(queue_rank=services.QUEUE_RANK).order_by("queue_rank").explain()
        assert "diagnosis_mole_photos_idx" in plan
