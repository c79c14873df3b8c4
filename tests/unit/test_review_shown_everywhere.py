"""One case reads alike on every surface: a clinician's review stays on the result page (and the
fragment its script swaps in), the report, the shared report and the mole's page while its case
is re-run; the result page gives the verdict and the label the report gives; Compare photos gives
the later photo's next step, not its band's advice alone, and a difference that matches the
percentages beside it; the history names a pressing review and colours a low band as its advice;
the warning signs read the same everywhere; a dead share link asks nothing that cannot work; the
report says "uploaded"."""

import html
import re
from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import WARNING_SIGNS, Diagnosis, Mole, Review, ShareLink
from tests.unit.test_advice_safety import NEW, OLD, advice_after, rerun, review_of, text
from tests.unit.test_next_step_everywhere import UNDER_WAY, requeued, said, section

pytestmark = pytest.mark.django_db

URGENT = "Urgent: see a doctor now"
NOTE = "Please see a dermatologist this week."


# --- 1. a review stays while its case is re-run ---------------------------------------------------


@pytest.fixture
def rerun_under_way(owner, reviewer, make_diagnosis):
    """(a high result reviewed urgent, then re-run and still queued; the token of a link to its
    report made before the re-run)."""
    diagnosis = make_diagnosis(owner, risk="high", model_version=OLD)
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", recommendation="urgent",
                         note=NOTE, notify=False)
    _link, token = services.share_link_create(diagnosis=diagnosis, days=7, with_earlier_photos=False)
    return requeued(diagnosis), token


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_review_stays_on_every_page_while_its_case_is_re_run(owner_client, rerun_under_way, status):
    diagnosis, token = rerun_under_way
    Diagnosis.objects.filter(pk=diagnosis.pk).update(status=status)
    status_url = reverse("diagnoses:status", args=[diagnosis.pk])
    pages = {
        "result page": text(owner_client, diagnosis.get_absolute_url()),
        "swapped in": owner_client.get(status_url).json()["html"],
        # The owner's report of a case being re-run goes to the result page (test_page_consistency).
        "shared report": text(Client(), reverse("shared_report", args=[token])),
    }
    for where, page in pages.items():
        read = said(page)
        assert URGENT in read and NOTE in read, where
        assert f"This review was of the result from model {OLD}; {UNDER_WAY}." in read, where
        assert "did not complete" not in read, where
    # The spinner first, as the failure message of a failed re-run comes first.
    assert pages["result page"].index("pending-box") < pages["result page"].index(URGENT)


def test_the_fragment_swapped_in_once_the_re_run_is_done_keeps_the_review(owner_client, rerun_under_way):
    diagnosis, _token = rerun_under_way
    Diagnosis.objects.filter(pk=diagnosis.pk).update(  # the result, as the worker stores it
        status="done", risk="low", probabilities={"nv": 0.9, "mel": 0.1}, malignant_probability=0.1,
        predicted_class="nv", model_version=NEW, finished_at=timezone.now())
    fragment = owner_client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()
    assert fragment["status"] == "done"
    read = said(fragment["html"])
    assert URGENT in read and NOTE in read and UNDER_WAY not in read
    assert f"model {NEW} has analysed the photo again since" in read


def test_a_failed_re_run_still_says_it_did_not_complete(owner_client, rerun_under_way):
    diagnosis, _token = rerun_under_way
    services.diagnosis_fail(diagnosis_id=diagnosis.pk, message=services.MESSAGE_MODEL_UNAVAILABLE)
    read = said(text(owner_client, diagnosis.get_absolute_url()))
    assert "the photo's newer analysis did not complete." in read and UNDER_WAY not in read


def test_the_mole_page_gives_the_pressing_review_of_a_newest_photo_being_re_run(
        owner, owner_client, reviewer, make_diagnosis):
    """The patient was e-mailed to read it now; the mole page gave nothing while the re-run waited."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30, model_version=NEW)
    newest = make_diagnosis(owner, risk="low", mole=mole, age_days=1, model_version=OLD)
    services.review_save(diagnosis=newest, reviewer=reviewer, verdict="disagree", label="mel",
                         recommendation="urgent", note=NOTE, notify=False)
    requeued(newest)

    block = section(text(owner_client, mole.get_absolute_url()))
    heading = block.split("</h2>", 1)[0]
    assert "The latest photo, of" in heading and newest.get_absolute_url() in heading
    read = said(block)
    assert URGENT in read and NOTE in read and UNDER_WAY in read
    assert "What to do next." not in read  # no result to advise on


# --- 2. the verdict and the label on the result page -----------------------------------------------


def review_body(page, after):
    """The review's recommendation, verdict and label, after the heading it starts under."""
    return said(page.split(after, 1)[1].split('data-testid="review-recommendation">', 1)[1].split("</p>", 1)[0])


def test_the_result_page_gives_the_verdict_and_the_label_the_report_gives(
        owner, owner_client, reviewer, make_diagnosis):
    """A high melanoma result a clinician disagrees with, as a mole, routine: "Routine check" above
    the band's "see a dermatologist within 2 weeks" contradicts it without the disagreement."""
    diagnosis = make_diagnosis(owner, risk="high")
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="disagree", label="nv",
                         recommendation="routine", note="A harmless mole.", notify=False)
    _link, token = services.share_link_create(diagnosis=diagnosis, days=7, with_earlier_photos=False)
    expected = "Routine check · disagree with the model · the clinician's reading: melanocytic nevus"

    page = text(owner_client, diagnosis.get_absolute_url())
    assert review_body(page, "Reviewed by a clinician on") == expected
    fragment = owner_client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()["html"]
    assert review_body(fragment, "Reviewed by a clinician on") == expected
    for report in (text(owner_client, reverse("diagnoses:report", args=[diagnosis.pk])),
                   text(Client(), reverse("shared_report", args=[token]))):
        assert review_body(report, "Clinician review") == expected
        assert "A harmless mole." in report


def test_a_review_that_could_not_tell_says_so_on_the_result_page(owner, owner_client, reviewer, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="medium")
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         notify=False)
    page = text(owner_client, diagnosis.get_absolute_url())
    assert review_body(page, "Reviewed by a clinician on") == "Take a new photo · cannot tell from this photo"


# --- 3. Compare photos -----------------------------------------------------------------------------


def compare(client, mole):
    return text(client, reverse("diagnoses:mole_compare", args=[mole.pk]))


def compared_step(page):
    assert 'data-testid="compare-next-step"' in page
    return page.split('data-testid="compare-next-step"', 1)[1].split("</section>", 1)[0]


@pytest.mark.parametrize("verdict, recommendation", [("agree", "urgent"), ("disagree", "routine")])
def test_compare_gives_the_review_of_a_risen_photo_not_its_bands_advice_alone(
        owner, owner_client, reviewer, make_diagnosis, verdict, recommendation):
    mole = Mole.objects.create(owner=owner, name="Back")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    risen = make_diagnosis(owner, risk="high", mole=mole, age_days=1)
    services.review_save(diagnosis=risen, reviewer=reviewer, verdict=verdict, recommendation=recommendation,
                         label="nv" if verdict == "disagree" else "", notify=False)
    step = Diagnosis.objects.get(pk=risen.pk).next_step()
    assert step.source == "review"

    page = compare(owner_client, mole)
    change = page.split("photo-change", 1)[1].split("</div>", 1)[0]
    assert "The estimated risk went up, from low to high." in change
    assert "within 2 weeks" not in change  # the band's advice alone, weaker than urgent or overruled
    block = compared_step(page)
    assert risen.get_absolute_url() in block.split("</h2>", 1)[0]
    assert Review.Recommendation(recommendation).label in html.unescape(block)
    assert f"{Review.Verdict(verdict).label.lower()}" in said(block)
    assert block.index("Reviewed by a clinician on") < block.index("What to do next.")
    assert advice_after(block, "What to do next.") == html.unescape(step.text)
    assert advice_after(block, "What to do next.") == advice_after(
        text(owner_client, risen.get_absolute_url()), "What to do next.")


def test_compare_gives_the_earlier_photos_advice_on_a_fall_as_the_result_page_does(
        owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Back")
    higher = make_diagnosis(owner, risk="high", mole=mole, age_days=30)
    lower = make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    assert lower.next_step().source == "previous_photo"

    page = compare(owner_client, mole)
    assert "The risk band went down, from high to low." in page
    block = compared_step(page)
    assert 'data-testid="previous-rated-higher"' in block and higher.get_absolute_url() in block
    assert "follow the advice for that photo: " + higher.risk_advice in said(block)
    assert advice_after(block, "What to do next.") == advice_after(
        text(owner_client, lower.get_absolute_url()), "What to do next.")
    levels = [int(level) for level in re.findall(r"<h([1-6])\b", page)]
    assert all(after <= before + 1 for before, after in zip(levels, levels[1:])), levels


def test_compare_gives_the_bands_advice_on_a_rise_its_band_leads(owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Back")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    make_diagnosis(owner, risk="high", mole=mole, age_days=1)
    page = compare(owner_client, mole)
    assert "Please see a dermatologist within 2 weeks" in page.split("photo-change", 1)[1].split("</div>", 1)[0]
    assert 'data-testid="compare-next-step"' not in page


def test_compares_difference_is_that_of_the_percentages_it_shows(owner, owner_client, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Back")
    before = make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    after = make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    Diagnosis.objects.filter(pk=before.pk).update(malignant_probability=0.07949)  # 7.9%
    Diagnosis.objects.filter(pk=after.pk).update(malignant_probability=0.08451)  # 8.5%, 0.502 points up
    page = compare(owner_client, mole)
    assert "Malignant probability 7.9% → 8.5%" in page
    assert "up 0.6 points" in page


# --- 4. the lists ----------------------------------------------------------------------------------


def history_row(client, diagnosis):
    page = text(client, reverse("diagnoses:list"))
    return page.split(diagnosis.get_absolute_url(), 1)[1].split("history-delete", 1)[0]


@pytest.mark.parametrize("recommendation", ["urgent", "dermatologist_soon"])
def test_the_history_names_a_pressing_review_in_red_not_a_green_reviewed(
        owner, owner_client, make_diagnosis, recommendation):
    diagnosis = make_diagnosis(owner, risk="low")
    review_of(diagnosis, recommendation=recommendation, model_version=diagnosis.model_version)
    row = history_row(owner_client, diagnosis)
    label = Review.Recommendation(recommendation).label
    assert f'<span class="text-danger-emphasis fw-semibold" data-testid="review-pressing">{label}</span>' in row
    assert "reviewed</span>" not in row


def test_the_history_marks_a_routine_review_reviewed(owner, owner_client, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    review_of(diagnosis, recommendation="routine", model_version=diagnosis.model_version)
    row = history_row(owner_client, diagnosis)
    assert '<span class="text-success-emphasis">reviewed</span>' in row and "review-pressing" not in row


@pytest.mark.parametrize("how", ["under way", "failed", "done, still leading", "done, not leading"])
def test_the_history_names_a_pressing_review_of_an_earlier_result_where_its_page_leads_with_it(
        owner, owner_client, make_diagnosis, how):
    """Where its result page gives it first (a re-run under way or failed; a new result whose
    advice asks less), the row names it; once the new result asks as much, it is history."""
    diagnosis = make_diagnosis(owner, risk="high", model_version=OLD)
    review_of(diagnosis, recommendation="dermatologist_soon", model_version=OLD)
    if how == "done, still leading":
        rerun(diagnosis, risk="low")
    elif how == "done, not leading":
        rerun(diagnosis, risk="medium")
    else:
        requeued(diagnosis)
        if how == "failed":
            services.diagnosis_fail(diagnosis_id=diagnosis.pk, message=services.MESSAGE_MODEL_UNAVAILABLE)
    row = history_row(owner_client, diagnosis)
    assert ("See a dermatologist soon" in row) is (how != "done, not leading")
    assert "reviewed</span>" not in row


def test_the_history_names_pressing_reviews_in_a_constant_number_of_queries(owner, owner_client, make_diagnosis):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    mole = Mole.objects.create(owner=owner, name="Arm")

    def count(n):
        Diagnosis.objects.all().delete()
        for age in range(n):
            diagnosis = make_diagnosis(owner, risk="high", mole=mole, age_days=age + 1, model_version=OLD)
            review_of(diagnosis, recommendation="dermatologist_soon", model_version=OLD)
            rerun(diagnosis, risk="low")
        with CaptureQueriesContext(connection) as queries:
            page = text(owner_client, reverse("diagnoses:list"))
        assert page.count('data-testid="review-pressing"') == n
        return len(queries)

    assert count(2) == count(6)


EARLIER_MARK = 'data-testid="earlier-rated-higher"'


def earlier_mark(risk):
    """The lists' mark of an earlier photo rated higher whose advice leads, in its band's colour."""
    colour = {"medium": "warning", "high": "danger"}[risk]
    return (f'<div class="small fw-semibold text-{colour}-emphasis mt-1" {EARLIER_MARK}>An earlier photo was '
            f"rated {risk} risk: see its advice</div>")


def mole_card(client, mole):
    page = text(client, reverse("diagnoses:moles"))
    return page.split(mole.get_absolute_url(), 1)[1].split('<div class="col">', 1)[0]


@pytest.mark.parametrize("earlier_risk", ["high", "medium"])
def test_the_lists_mark_a_photo_rated_lower_whose_advice_follows_an_earlier_one(
        owner, owner_client, make_diagnosis, reviewer, earlier_risk):
    """A low photo after one rated higher: its result page and its mole's page say to follow the
    earlier photo's advice (Diagnosis.next_step, mole_alerts), so its history row and its mole's
    card, whose badge reads "Low risk", say so too, in the earlier band's colour; until a clinician
    judges the low photo, as the pages then give the review's advice."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    earlier = make_diagnosis(owner, risk=earlier_risk, mole=mole, age_days=30)
    latest = make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    steady = Mole.objects.create(owner=owner, name="Back")
    make_diagnosis(owner, risk="low", mole=steady, age_days=30)  # two lows: nothing to follow
    make_diagnosis(owner, risk="low", mole=steady, age_days=1)
    assert latest.next_step().previous == earlier
    assert "follow the advice for the earlier photo" in html.unescape(text(owner_client, mole.get_absolute_url()))

    assert earlier_mark(earlier_risk) in history_row(owner_client, latest)
    assert EARLIER_MARK not in history_row(owner_client, earlier)
    card = mole_card(owner_client, mole)
    assert '<span class="badge text-bg-success">Low risk</span>' in card and earlier_mark(earlier_risk) in card
    assert EARLIER_MARK not in mole_card(owner_client, steady)

    services.review_save(diagnosis=latest, reviewer=reviewer, verdict="agree", recommendation="routine")
    assert EARLIER_MARK not in text(owner_client, reverse("diagnoses:list"))
    assert EARLIER_MARK not in text(owner_client, reverse("diagnoses:moles"))


def test_a_moles_card_marks_the_rise_its_page_warns_of_above_a_lower_newest_photo(
        owner, owner_client, make_diagnosis, reviewer):
    """Low, high (a rise no clinician judged), then low reviewed "routine check": the mole's page
    warns of the high photo (mole_alerts), so its card says an earlier photo was rated high, though
    the newest photo's own page follows its review (and its history row has no mark)."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    make_diagnosis(owner, risk="low", mole=mole, age_days=60)
    make_diagnosis(owner, risk="high", mole=mole, age_days=30)
    latest = make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    services.review_save(diagnosis=latest, reviewer=reviewer, verdict="agree", recommendation="routine")
    assert "The estimated risk of this mole went up." in text(owner_client, mole.get_absolute_url())

    assert earlier_mark("high") in mole_card(owner_client, mole)
    assert EARLIER_MARK not in history_row(owner_client, latest)


def test_the_lists_mark_earlier_photos_rated_higher_in_a_constant_number_of_queries(
        owner, owner_client, make_diagnosis):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(n, url):
        Diagnosis.objects.all().delete()
        Mole.objects.all().delete()
        for index in range(n):
            mole = Mole.objects.create(owner=owner, name=f"Mole {index}")
            make_diagnosis(owner, risk="high", mole=mole, age_days=30)
            make_diagnosis(owner, risk="low", mole=mole, age_days=1)
        with CaptureQueriesContext(connection) as queries:
            page = text(owner_client, url)
        assert page.count(EARLIER_MARK) == n
        return len(queries)

    for url in (reverse("diagnoses:list"), reverse("diagnoses:moles")):
        assert count(2, url) == count(5, url), url


@pytest.mark.parametrize("body_site, photo_issues, colour", [
    ("acral", [], "warning"), ("back", ["dark"], "warning"), ("back", [], "success")])
def test_a_low_badge_has_the_colour_of_its_advice_in_every_list(
        owner, owner_client, make_diagnosis, body_site, photo_issues, colour):
    """A low result on a palm or sole, or from a poor photo: its result page's What to do next is in
    the warning colour, and so is its badge wherever photos are listed, not a reassuring green."""
    mole = Mole.objects.create(owner=owner, name="Sole", body_site=body_site)
    make_diagnosis(owner, risk="low", mole=mole, age_days=30)  # a photo to compare it with
    diagnosis = make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(photo_issues=photo_issues)
    diagnosis.refresh_from_db()
    assert diagnosis.next_step().colour == diagnosis.advice_colour == colour
    badge = f'<span class="badge text-bg-{colour}">Low risk</span>'
    assert f'<div class="alert alert-{colour}" role="note"><strong>What to do next.</strong>' in text(
        owner_client, diagnosis.get_absolute_url())
    for url in (reverse("diagnoses:list"), reverse("diagnoses:moles"), mole.get_absolute_url(),
                reverse("diagnoses:mole_compare", args=[mole.pk])):
        assert badge in text(owner_client, url), url


# --- 5. the warning signs --------------------------------------------------------------------------


def signs():
    phrase = render_to_string("_warning_signs.txt")
    assert phrase == phrase.strip() and "\n" not in phrase  # a phrase inside a sentence
    return phrase


def test_the_warning_signs_are_those_of_the_low_bands_advice_and_worry():
    def listed(phrase):
        return set(phrase.replace(" or ", ", ").split(", "))

    assert listed(signs()) - listed(WARNING_SIGNS) == {"worries you"}
    assert listed(WARNING_SIGNS) <= listed(signs())


def test_every_page_and_e_mail_gives_the_warning_signs_in_one_wording(owner, owner_client, make_diagnosis):
    phrase = signs()
    pending = make_diagnosis(owner, status="queued")
    mole = Mole.objects.create(owner=owner, name="Back")
    make_diagnosis(owner, risk="low", mole=mole, age_days=2)
    make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    pages = {
        "home": text(Client(), reverse("home")),
        "about the model": text(Client(), reverse("about_model")),
        "pending result": text(owner_client, pending.get_absolute_url()),
        "compare": compare(owner_client, mole),
    }
    for where, page in pages.items():
        read = said(page)
        assert f"If a mole {phrase}, see a doctor." in read, where  # the footer
        assert "after age 30" not in read and "changes, bleeds" not in read, where
    assert f"See a doctor if a mole {phrase}, whatever this page says." in said(pages["pending result"])
    assert f"If a mole {phrase}, see a doctor whatever the result." in said(pages["home"])
    assert f"If a mole {phrase}, see a doctor whatever the result." in said(pages["about the model"])
    assert f"If a mole {phrase}, see a doctor whatever the figures say." in said(pages["compare"])

    reminder = render_to_string("diagnoses/email/photo_reminder.txt",
                                {"username": "patient", "count": 1, "moles_url": "https://x/"})
    assert f"If a mole\n{phrase},\nsee a doctor without waiting for a reminder." in reminder
    notice = render_to_string("diagnoses/email/review_notice.txt", {
        "username": "patient", "account_url": "https://x/a",
        "checks": [{"uploaded": timezone.now(), "url": "https://x/d", "pressing": False}]})
    assert f"See a doctor if a mole\n{phrase}.\n" in notice
    assert all(len(line) <= 100 for line in (reminder + notice).splitlines())


# --- 6. a dead share link; the upload time ---------------------------------------------------------


@pytest.mark.parametrize("how", ["expired", "withdrawn", "account deactivated"])
def test_a_dead_share_link_asks_for_nothing_that_cannot_work(patient_of_link, how):
    link, token = patient_of_link
    if how == "expired":
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif how == "withdrawn":
        services.share_link_revoke(link=link)
    else:
        owner = link.diagnosis.owner
        owner.is_active = False
        owner.save(update_fields=["is_active"])
    response = Client().get(reverse("shared_report", args=[token]))
    assert response.status_code == 410
    read = said(response.content.decode())
    assert "This link has expired, or the report is no longer shared. If you still need it, ask the patient." in read
    assert "new one" not in read and "by the patient" not in read


@pytest.fixture
def patient_of_link(owner, make_diagnosis):
    return services.share_link_create(diagnosis=make_diagnosis(owner, risk="low"), days=7,
                                      with_earlier_photos=False)


def test_the_report_says_when_the_photo_was_uploaded_not_taken(owner_client, patient_of_link):
    link, token = patient_of_link
    for report in (text(owner_client, reverse("diagnoses:report", args=[link.diagnosis.pk])),
                   text(Client(), reverse("shared_report", args=[token]))):
        assert "<dt>Uploaded</dt>" in report and "Photo taken" not in report
