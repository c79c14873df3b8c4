"""A later photo whose advice an earlier photo's clinician review leads (Diagnosis.leading_earlier_photo:
that review asks more than the later photo's band, and no clinician has judged a later photo): the
API's `advice_source` says a clinician's review of an earlier photo leads, as `advice` does, not the
earlier photo's estimate; and the share form says the report names that review, not a rating."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from diagnoses import services
from diagnoses.models import Mole
from tests.conftest import token_client
from tests.unit.test_advice_safety import text

pytestmark = pytest.mark.django_db


def reviewed(diagnosis, reviewer, recommendation):
    return services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", label="",
                                recommendation=recommendation, note="", notify=False)


@pytest.fixture(params=["by_review", "by_band"])
def case(request, owner, reviewer, make_diagnosis):
    """(earlier photo, later low photo, whether the earlier one leads by its review): a high photo a
    clinician judged urgent, or one no clinician judged, then a low one."""
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    earlier = make_diagnosis(owner, risk="high", mole=mole, age_days=30)
    if request.param == "by_review":
        reviewed(earlier, reviewer, "urgent")
    later = make_diagnosis(owner, risk="low", mole=mole, age_days=1)
    step = later.next_step()
    assert (step.source, step.previous) == ("previous_photo", earlier)
    by_review = request.param == "by_review"
    assert (step.previous_review is not None) is by_review
    # what `advice` says: the clinician's recommendation, or the earlier photo's rating
    assert ("clinician's recommendation" in step.text) is by_review
    return earlier, later, by_review


def test_advice_source_says_an_earlier_photos_review_leads_when_the_advice_names_it(owner, case):
    earlier, later, by_review = case
    api = token_client(owner)
    expected = "previous_photo_review" if by_review else "previous_photo"
    detail = api.get(f"/api/v1/diagnoses/{later.pk}/").json()
    listed = {row["id"]: row for row in api.get("/api/v1/diagnoses/").json()["results"]}[str(later.pk)]
    photos = {row["id"]: row for row in api.get(f"/api/v1/moles/{later.mole_id}/").json()["diagnoses"]}
    for body in (detail, listed, photos[str(later.pk)]):
        assert (body["advice"], body["advice_source"]) == (later.next_step().text, expected)
    # either way the detail names the earlier photo whose advice leads
    assert detail["previous_rated_higher"]["id"] == str(earlier.pk)
    # and the earlier photo's own advice is its review's, or its band's
    assert photos[str(earlier.pk)]["advice_source"] == ("review" if by_review else "band")


def test_the_schema_describes_the_earlier_photos_review_as_a_source(api_client):
    schema = api_client.get("/api/v1/schema/", {"format": "json"}).json()
    sources = schema["components"]["schemas"]["AdviceSourceEnum"]
    assert set(sources["enum"]) == {"review", "earlier_review", "previous_photo", "previous_photo_review", "band"}
    described = schema["components"]["schemas"]["DiagnosisDetail"]["properties"]["advice_source"]["description"]
    assert "`previous_photo_review`" in described


def test_the_share_form_names_what_leads_as_the_result_page_does(owner_client, case):
    earlier, later, by_review = case
    page = html.unescape(text(owner_client, later.get_absolute_url()))
    form = page.split('id="share-heading"', 1)[1].split("</p>", 1)[0]
    rated = "though it says that an earlier photo of this mole was rated high risk, as this result's advice does"
    review = ('though it says that a clinician who reviewed an earlier photo of this mole recommended '
              '"Urgent: see a doctor now", as this result\'s advice does')
    assert (rated in form, review in form) == (not by_review, by_review)
    # which is what the report shared without the earlier photos says
    _link, token = services.share_link_create(diagnosis=later, days=7, with_earlier_photos=False)
    shared = text(Client(), reverse("shared_report", args=[token]))
    assert ("A clinician reviewed an earlier photo of this mole, not shared in this report," in shared) is by_review
    assert ("not shared in this report, was rated <strong>high risk</strong>" in shared) is not by_review


def test_stop_tracking_says_again_what_leads_in_the_words_of_the_mole_page(owner_client, case):
    """The mole page's box before untracking and the message after it name the same advice: the
    clinician's "Urgent" when the review leads (the band's two-week advice was given instead)."""
    earlier, later, by_review = case
    def said(page):  # the words, as the patient reads them
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())

    page = said(text(owner_client, reverse("diagnoses:mole", args=[later.mole_id])))
    after = said(owner_client.post(reverse("diagnoses:mole_delete", args=[later.mole_id]),
                                   follow=True).content.decode())
    lead = earlier.advice_as_leader
    for words in (page, after):
        assert lead.summary in words and lead.advice in words
    assert ('recommended "Urgent: see a doctor now"' in after) is by_review
    assert ("see a dermatologist within 2 weeks" in after) is not by_review


def test_a_report_shared_without_the_earlier_photos_does_not_date_them(case):
    """The patient left the earlier photos out of the link: the advice names the clinician's
    recommendation on an earlier photo, not when that photo was taken (to the minute, it tells a
    visit the patient chose not to share)."""
    earlier, later, by_review = case
    _, token = services.share_link_create(diagnosis=later, days=7, with_earlier_photos=False)
    page = html.unescape(Client().get(f"/shared/{token}/").content.decode())
    taken = date_format(timezone.localtime(earlier.created_at), "DATETIME_FORMAT")
    assert taken not in page and date_format(timezone.localtime(earlier.created_at), "DATE_FORMAT") not in page
    assert ('recommendation on an earlier photo of this mole, "Urgent: see a doctor now"' in page) is by_review
