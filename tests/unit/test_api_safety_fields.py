"""What the pages show of a photo's safety, the API gives too: a mole's photos carry their review,
their advice and their risk band's change (as the mole's page), in as many queries for 3 photos as
for 12; a review says whether it is of an earlier result (Review.is_of_an_earlier_result); and
`advice_source` says whose advice `advice` is (Diagnosis.next_step's source: NextStep.advice_source)."""

import html

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review

pytestmark = pytest.mark.django_db

OLD, NEW = "model-1", "model-2"
DIAGNOSES = "/api/v1/diagnoses/"
MOLES = "/api/v1/moles/"


def review_of(diagnosis, *, model_version, recommendation="routine", verdict="agree"):
    """A clinician's review of the result the diagnosis had under model_version ("" when not
    recorded, as reviews saved before reviews carried one)."""
    return Review.objects.create(diagnosis=diagnosis, verdict=verdict, recommendation=recommendation,
                                 note="A note.", reviewed_at=timezone.now(), model_version=model_version)


@pytest.fixture
def mole(owner):
    return Mole.objects.create(owner=owner, name="Left shoulder")


@pytest.fixture
def timeline(owner, reviewer, mole, make_diagnosis):
    """A mole's photos, oldest first, whose advice comes from each source Diagnosis.next_step has:
    low (its band); high, unreviewed (its band: a rise); low after it (the photo before, rated
    higher); medium, reviewed (the review: a rise a clinician judged); low, re-run since its review
    asked for an urgent visit (the earlier review, which asks more); and one being re-run now, its
    review kept (a review of an earlier result while no result is there)."""
    first = make_diagnosis(owner, risk="low", mole=mole, age_days=50, model_version=NEW)
    rose = make_diagnosis(owner, risk="high", mole=mole, age_days=40, model_version=NEW)
    lower = make_diagnosis(owner, risk="low", mole=mole, age_days=30, model_version=NEW)
    reviewed = make_diagnosis(owner, risk="medium", mole=mole, age_days=20, model_version=NEW)
    review_of(reviewed, model_version=NEW)
    rerun = make_diagnosis(owner, risk="low", mole=mole, age_days=10, model_version=NEW)
    review_of(rerun, model_version=OLD, recommendation="urgent")
    running = make_diagnosis(owner, risk="high", mole=mole, age_days=5, model_version=NEW)
    services.review_save(diagnosis=running, reviewer=reviewer, verdict="agree", recommendation="dermatologist_soon",
                         notify=False)
    assert services.diagnosis_requeue(diagnosis=running)  # its task is sent on commit: never, here
    return [first, rose, lower, reviewed, rerun, running]


def fresh(diagnosis):
    """The diagnosis as a page would read it: from the database, its review with it."""
    return Diagnosis.objects.select_related("review", "mole").get(pk=diagnosis.pk)


# --- 1. a mole's photos: review, advice and the band's change, as on the mole's page ---------------


def test_each_photo_of_a_mole_gives_its_review_advice_and_band_change(owner_api, owner_client, mole, timeline):
    photos = owner_api.get(f"{MOLES}{mole.pk}/").json()["diagnoses"]

    assert [photo["id"] for photo in photos] == [str(d.pk) for d in timeline]
    for photo, diagnosis in zip(photos, map(fresh, timeline)):
        step = diagnosis.next_step()
        assert (photo["advice"], photo["advice_source"]) == (step.text, step.advice_source or None), diagnosis
        review = diagnosis.review_or_none
        if review is None:
            assert photo["review"] is None
        else:
            assert (photo["review"]["recommendation"], photo["review"]["note"]) == (review.recommendation, review.note)
            assert photo["review"]["of_earlier_result"] is review.is_of_an_earlier_result
    assert [photo["advice_source"] for photo in photos] == [
        "band", "band", "previous_photo", "review", "earlier_review", None]
    assert [photo["review"] and photo["review"]["of_earlier_result"] for photo in photos] == [
        None, None, None, False, True, True]
    # The page's arrows (mole_timeline): against the last finished photo; none on a pending one.
    assert [photo["risk_change"] for photo in photos] == [
        None,
        {"went_up": True, "from_risk": "low"},
        {"went_up": False, "from_risk": "high"},
        {"went_up": True, "from_risk": "low"},
        {"went_up": False, "from_risk": "medium"},
        None,
    ]
    # The mole's page gives the latest analysed photo's advice, led by its pressing review of an
    # earlier result: the same words as that photo's `advice`.
    page = html.unescape(owner_client.get(mole.get_absolute_url()).content.decode())
    section = page.split('data-testid="latest-next-step"', 1)[1].split("</section>", 1)[0]
    assert photos[4]["advice"] in section
    # The list of moles gives the same photos.
    [listed] = owner_api.get(MOLES).json()["results"]
    assert listed["diagnoses"] == photos


def test_a_photo_before_its_result_has_neither_advice_nor_band_change(owner_api, owner, mole, make_diagnosis):
    make_diagnosis(owner, risk="high", mole=mole, age_days=2)
    make_diagnosis(owner, mole=mole, status="queued")

    first, queued = owner_api.get(f"{MOLES}{mole.pk}/").json()["diagnoses"]

    assert first["advice"] and first["advice_source"] == "band" and first["risk_change"] is None
    assert (queued["advice"], queued["advice_source"], queued["review"], queued["risk_change"]) == ("", None, None,
                                                                                                    None)


# Each mole's photos, oldest first, in turn: (risk or status, the model version of its review or
# None): as the timeline fixture's, each source of advice and a rise, a fall and a pending photo.
PATTERN = [("low", None), ("high", None), ("low", None), ("medium", NEW), ("low", OLD), ("queued", None)]


def moles_with_photos(owner, make_diagnosis, count):
    """count photos of two moles in all, oldest first, in turn, each mole's after PATTERN."""
    Diagnosis.objects.all().delete()
    moles = [Mole.objects.get_or_create(owner=owner, name=name)[0] for name in ("Back", "Arm")]
    photos = []
    for n in range(count):
        band, reviewed = PATTERN[n // 2 % len(PATTERN)]
        status = "queued" if band == "queued" else "done"
        photo = make_diagnosis(owner, risk="low" if status == "queued" else band, mole=moles[n % 2], status=status,
                               age_days=count - n, model_version=NEW)
        if reviewed:
            review_of(photo, model_version=reviewed, recommendation="routine" if reviewed == NEW else "urgent")
        photos.append(photo)
    return photos


@pytest.mark.parametrize("path", ["list", "detail"])
def test_a_moles_photos_come_in_as_many_queries_for_3_as_for_12(owner_api, owner, make_diagnosis, path):
    counts = {}
    for size in (3, 12):
        photos = moles_with_photos(owner, make_diagnosis, size)
        url = MOLES if path == "list" else f"{MOLES}{photos[0].mole_id}/"
        with CaptureQueriesContext(connection) as queries:
            response = owner_api.get(url)
        assert response.status_code == 200
        counts[size] = len(queries)
        body = response.json()
        rows = [row for mole in body["results"] for row in mole["diagnoses"]] if path == "list" else body["diagnoses"]
        assert len(rows) == (size if path == "list" else len(photos[0::2]))
        steps = {str(photo.pk): fresh(photo).next_step() for photo in photos}
        assert {row["id"]: (row["advice"], row["advice_source"]) for row in rows} == {
            row["id"]: (steps[row["id"]].text, steps[row["id"]].advice_source or None) for row in rows}
        if size == 12:  # what it costs: the photo before, and reviews of this result and of an earlier one
            assert {row["advice_source"] for row in rows} == {"band", "previous_photo", "review", "earlier_review",
                                                              None}
            assert {row["review"]["of_earlier_result"] for row in rows if row["review"]} == {False, True}
            assert {row["risk_change"]["went_up"] for row in rows if row["risk_change"]} == {False, True}

    # Token, then (the list) the count, the moles, their photos with their reviews.
    assert counts[3] == counts[12] == (4 if path == "list" else 3)


# --- 2. a review says whether it is of an earlier result -------------------------------------------


def reviews_everywhere(owner_api, diagnosis):
    """{where: the API's review of the diagnosis}: its detail, the list, its mole's photos."""
    listed = {row["id"]: row["review"] for row in owner_api.get(DIAGNOSES).json()["results"]}
    photos = {row["id"]: row["review"] for row in owner_api.get(f"{MOLES}{diagnosis.mole_id}/").json()["diagnoses"]}
    return {
        "detail": owner_api.get(f"{DIAGNOSES}{diagnosis.pk}/").json()["review"],
        "list": listed[str(diagnosis.pk)],
        "mole": photos[str(diagnosis.pk)],
    }


def test_a_review_says_when_it_is_of_an_earlier_result(owner_api, owner, reviewer, mole, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="low", mole=mole, model_version=OLD)
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", recommendation="routine",
                         notify=False)

    def flags():
        reviews = reviews_everywhere(owner_api, diagnosis)
        review = fresh(diagnosis).review
        assert {where: r["model_version"] for where, r in reviews.items()} == dict.fromkeys(reviews, OLD)
        # the pages' rule: a review of an earlier result counts as no review (current_review)
        assert (review.diagnosis.current_review is None) is review.is_of_an_earlier_result
        return {where: r["of_earlier_result"] for where, r in reviews.items()}, review.is_of_an_earlier_result

    assert flags() == (dict.fromkeys(["detail", "list", "mole"], False), False)  # of the result shown

    # Being re-run: the diagnosis' model_version is null meanwhile, the review of the old result.
    assert services.diagnosis_requeue(diagnosis=diagnosis)
    assert owner_api.get(f"{DIAGNOSES}{diagnosis.pk}/").json()["model_version"] is None
    assert flags() == (dict.fromkeys(["detail", "list", "mole"], True), True)

    # Re-run with another model.
    Diagnosis.objects.filter(pk=diagnosis.pk).update(status="done", risk="low", model_version=NEW)
    assert flags() == (dict.fromkeys(["detail", "list", "mole"], True), True)

    # Re-run with the same model again: the review is of the result shown.
    Diagnosis.objects.filter(pk=diagnosis.pk).update(model_version=OLD)
    assert flags() == (dict.fromkeys(["detail", "list", "mole"], False), False)


def test_a_review_without_a_model_version_is_of_the_result_shown(owner_api, owner, mole, make_diagnosis):
    """As the desk's is_reviewed: a review saved before reviews carried a model version."""
    diagnosis = make_diagnosis(owner, risk="high", mole=mole, model_version=NEW)
    review_of(diagnosis, model_version="")

    reviews = reviews_everywhere(owner_api, diagnosis)

    assert {where: (r["model_version"], r["of_earlier_result"]) for where, r in reviews.items()} == dict.fromkeys(
        reviews, (None, False))
    assert Diagnosis.objects.awaiting_review().count() == 0


# --- 3. whose advice `advice` is ------------------------------------------------------------------


def test_advice_source_says_whose_advice_it_is_in_the_detail_and_the_list(owner_api, timeline):
    listed = {row["id"]: row for row in owner_api.get(DIAGNOSES).json()["results"]}
    for diagnosis in map(fresh, timeline):
        step = diagnosis.next_step()
        detail = owner_api.get(f"{DIAGNOSES}{diagnosis.pk}/").json()
        for body in (detail, listed[str(diagnosis.pk)]):
            assert (body["advice"], body["advice_source"]) == (step.text, step.advice_source or None)
        # a clinician's advice (review or earlier_review) comes with the review to show beside it
        assert (detail["advice_source"] in ("review", "earlier_review")) is step.by_clinician
        assert step.by_clinician <= (detail["review"] is not None)
        # the photo rated higher, whose advice leads, is there too
        assert (detail["advice_source"] in ("previous_photo", "previous_photo_review")) is (
            detail["previous_rated_higher"] is not None)
    assert [listed[str(d.pk)]["advice_source"] for d in timeline] == [
        "band", "band", "previous_photo", "review", "earlier_review", None]


def test_the_schema_documents_the_new_fields_with_their_types(api_client, timeline):
    schema = api_client.get("/api/v1/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]

    def resolve(node):
        return components[node["$ref"].rsplit("/", 1)[1]]

    review = components["Review"]
    assert {key: review["properties"]["of_earlier_result"][key] for key in ("type", "readOnly")} == {
        "type": "boolean", "readOnly": True}
    assert "of_earlier_result" in review["required"]

    sources = components["AdviceSourceEnum"]
    assert sources["type"] == "string"
    # every source next_step gives (an earlier photo's review told apart: NextStep.advice_source), and
    # no other; the timeline has each but that review, which test_advice_led_by_an_earlier_photos_review has
    steps = {fresh(diagnosis).next_step().advice_source for diagnosis in timeline} - {""}
    assert set(sources["enum"]) == steps | {"previous_photo_review"} == {
        "review", "earlier_review", "previous_photo", "previous_photo_review", "band"}
    for name in ("Diagnosis", "DiagnosisDetail"):
        source = components[name]["properties"]["advice_source"]
        assert source["nullable"] and source["readOnly"], name
        assert [resolve(one) for one in source["oneOf"]] == [sources, components["NullEnum"]], name
        assert "advice_source" in components[name]["required"], name

    photos = components["Mole"]["properties"]["diagnoses"]
    photo = resolve(photos["items"])
    new = {"review", "advice", "advice_source", "risk_change"}
    assert new <= set(photo["properties"]) and new <= set(photo["required"])
    assert resolve(photo["properties"]["review"]["allOf"][0]) == review
    assert photo["properties"]["advice"]["type"] == "string"
    assert [resolve(one) for one in photo["properties"]["advice_source"]["oneOf"]] == [sources, components["NullEnum"]]
    change = photo["properties"]["risk_change"]
    assert change["nullable"]
    change = resolve(change["allOf"][0])
    assert change["properties"]["went_up"]["type"] == "boolean"
    assert resolve(change["properties"]["from_risk"]["allOf"][0])["enum"] == ["low", "medium", "high"]
    assert set(change["required"]) == {"went_up", "from_risk"}
    # what a mole's photo had before stays (only fields added), as does the photo rated higher
    assert set(components["DiagnosisSummary"]["properties"]) < set(photo["properties"])
    assert "advice" not in components["DiagnosisSummary"]["properties"]
