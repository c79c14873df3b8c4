"""/api/v1/diagnoses/: upload, poll, list with filters, files, delete — from both sides."""

import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review
from ml import CLASSES
from tests.conftest import make_image_bytes, set_throttle_rate

LIST = "/api/v1/diagnoses/"


def detail(diagnosis, suffix=""):
    return f"/api/v1/diagnoses/{diagnosis.pk}/{suffix}"


def photo(data, name="mole.jpg"):
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def stored_files(media_root):
    return sorted(p for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


# --- upload -----------------------------------------------------------------------------------


def test_it_accepts_an_upload_with_202_and_a_location(owner_api, owner, jpeg_bytes, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = owner_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart")

    assert response.status_code == 202
    body = response.json()
    diagnosis = Diagnosis.objects.get(pk=body["id"])
    assert diagnosis.owner == owner and diagnosis.status == "queued"
    assert body["status"] == "queued"
    assert body["url"] == f"http://testserver/api/v1/diagnoses/{diagnosis.pk}/"
    assert response["Location"] == body["url"]
    assert type(response["Location"]) is str  # wsgiref refuses a str subclass (DRF's Hyperlink)
    assert response["Retry-After"] == "2"  # when to poll it first, as the site's page does
    assert len(queued) == 1  # the classification is queued once the row is committed


def test_it_accepts_an_iphone_heic_upload_and_stores_a_jpeg(owner_api):
    heic = make_image_bytes(fmt="HEIF", quality=90)
    upload = SimpleUploadedFile("IMG_0001.HEIC", heic, content_type="image/heic")

    response = owner_api.post(LIST, {"image": upload}, format="multipart")

    assert response.status_code == 202
    stored = owner_api.get(detail(Diagnosis.objects.get(), "image/"))
    assert stored.status_code == 200 and stored["Content-Type"] == "image/jpeg"
    assert b"".join(stored.streaming_content if stored.streaming else [stored.content])[:3] == b"\xff\xd8\xff"


def test_it_files_an_upload_under_the_owners_mole(owner_api, owner, jpeg_bytes):
    mole = services.mole_create(owner=owner, name="Left shoulder")
    response = owner_api.post(LIST, {"image": photo(jpeg_bytes), "mole": str(mole.pk)}, format="multipart")

    assert response.status_code == 202
    assert response.json()["mole"] == str(mole.pk)
    assert Diagnosis.objects.get().mole == mole


def test_it_refuses_to_file_an_upload_under_another_users_mole(outsider_api, owner, jpeg_bytes, private_media):
    mole = services.mole_create(owner=owner, name="Left shoulder")
    response = outsider_api.post(LIST, {"image": photo(jpeg_bytes), "mole": str(mole.pk)}, format="multipart")

    assert response.status_code == 400
    assert list(response.json()) == ["mole"]
    assert not Diagnosis.objects.exists()
    assert stored_files(private_media) == []


def test_another_patients_mole_and_an_unknown_id_are_refused_in_the_same_words(owner_api, outsider, jpeg_bytes,
                                                                               private_media):
    """Patient's words, not DRF's 'Invalid pk "…" - object does not exist.', and the same for a
    mole that exists and one that does not: the answer never tells which."""
    theirs = services.mole_create(owner=outsider, name="Left shoulder")
    unknown = "de635ecd-1b7e-4c1a-9a51-2f0c8d3e4b6a"

    answers = [owner_api.post(LIST, {"image": photo(jpeg_bytes), "mole": mole_id}, format="multipart")
               for mole_id in (str(theirs.pk), unknown)]

    assert [answer.status_code for answer in answers] == [400, 400]
    assert [answer.json() for answer in answers] == [{"mole": ["No mole of yours has this id."]}] * 2
    assert not Diagnosis.objects.exists() and stored_files(private_media) == []


@pytest.mark.parametrize("mole_id", ["not-a-uuid", "de635ecd-1b7e-4c1a-9a51", "Left shoulder"])
def test_a_mole_id_that_is_not_an_id_is_refused_in_words(owner_api, jpeg_bytes, mole_id):
    response = owner_api.post(LIST, {"image": photo(jpeg_bytes), "mole": mole_id}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"mole": ["This is not a mole's id: give the id of one of your moles, or none."]}
    assert not Diagnosis.objects.exists()


def test_an_upload_while_the_broker_is_down_is_kept_queued_for_the_recovery_job(
        owner_api, jpeg_bytes, monkeypatch, django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    from diagnoses import tasks

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.classify_diagnosis, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart")

    assert response.status_code == 202  # not a 500 that invites a second upload of a kept photo
    assert Diagnosis.objects.get().status == Diagnosis.Status.QUEUED  # diagnoses_recover_lost's


def test_it_refuses_an_upload_to_a_mole_deleted_after_the_request_was_checked(owner_api, owner, jpeg_bytes,
                                                                               private_media, monkeypatch):
    mole = services.mole_create(owner=owner, name="Left shoulder")
    create = services.diagnosis_create

    def deleted_by_another_request_first(**kwargs):
        Mole.objects.filter(pk=mole.pk).delete()
        return create(**kwargs)

    monkeypatch.setattr(services, "diagnosis_create", deleted_by_another_request_first)
    response = owner_api.post(LIST, {"image": photo(jpeg_bytes), "mole": str(mole.pk)}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"mole": [services.MOLE_DELETED]}
    assert not Diagnosis.objects.exists() and stored_files(private_media) == []


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"this is plain text, not a photo\n" * 20, "notes.jpg", "not an image"),
        (make_image_bytes()[:-600], "truncated.jpg", "damaged or incomplete"),
        (make_image_bytes(fmt="GIF"), "anim.gif", "Unsupported image type"),
        (b"", "empty.jpg", "empty"),
    ],
    ids=["text-renamed-jpg", "truncated-jpeg", "gif", "empty"],
)
def test_it_refuses_a_bad_file_naming_the_image_field(owner_api, private_media, data, name, reason):
    response = owner_api.post(LIST, {"image": photo(data, name)}, format="multipart")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    errors = response.json()
    assert list(errors) == ["image"]
    assert reason in errors["image"][0]
    assert not Diagnosis.objects.exists()
    assert stored_files(private_media) == []


def test_it_requires_an_image(owner_api):
    response = owner_api.post(LIST, {}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"image": ["No file was submitted."]}


def test_it_takes_uploads_as_multipart_only(owner_api):
    response = owner_api.post(LIST, {"image": "aGVsbG8="}, format="json")

    assert response.status_code == 415
    assert "detail" in response.json()


def test_it_refuses_an_anonymous_upload_with_401(api_client, jpeg_bytes, private_media):
    response = api_client.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert not Diagnosis.objects.exists()
    assert stored_files(private_media) == []


def test_it_throttles_uploads_per_user_with_429_and_retry_after(owner_api, outsider_api, jpeg_bytes, settings):
    set_throttle_rate(settings, "uploads", "2/hour")
    for _ in range(2):
        assert owner_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart").status_code == 202

    refused = owner_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart")

    assert refused.status_code == 429
    assert 3500 <= int(refused["Retry-After"]) <= 3600
    assert refused.json()["detail"].startswith("Too many uploads: the limit is 2/hour.")
    assert Diagnosis.objects.count() == 2
    # The limit is per user, and reading is never throttled.
    assert outsider_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart").status_code == 202
    assert owner_api.get(LIST).status_code == 200


def test_it_counts_the_sites_upload_form_and_the_api_against_one_limit(owner_api, owner_client, jpeg_bytes, settings):
    set_throttle_rate(settings, "uploads", "2/hour")
    form_url = reverse("diagnoses:new")
    assert owner_client.post(form_url, {"image": photo(jpeg_bytes)}).status_code == 302  # to the result
    assert owner_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart").status_code == 202

    refused = owner_client.post(form_url, {"image": photo(jpeg_bytes)})
    assert refused.status_code == 429
    assert 3500 <= int(refused["Retry-After"]) <= 3600
    page = refused.content.decode()
    assert "at most 2 per hour can be analysed. Please try again in 60 minutes." in page
    assert "Please correct" not in page  # nothing about the photo is wrong
    by_script = owner_client.post(form_url, {"image": photo(jpeg_bytes)}, headers={"x-requested-with": "XMLHttpRequest"})
    assert by_script.status_code == 429 and "Please try again" in by_script.content.decode()
    assert owner_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart").status_code == 429
    assert Diagnosis.objects.count() == 2


def test_it_shows_a_done_result_after_the_worker_ran(
    owner_api, jpeg_bytes, tiny_model, eager_celery, django_capture_on_commit_callbacks
):
    from ml.inference import get_classifier

    with django_capture_on_commit_callbacks(execute=True):
        created = owner_api.post(LIST, {"image": photo(jpeg_bytes)}, format="multipart")

    result = owner_api.get(created["Location"]).json()
    assert result["status"] == "done"
    # the classifier's prediction for the photo as stored (sanitized), as the worker stored it
    with Diagnosis.objects.get(pk=created.json()["id"]).image.open("rb") as stored:
        expected = get_classifier(tiny_model).predict(stored.read())
    assert result["probabilities"] == expected.probabilities  # the same floats, through JSON
    assert result["malignant_probability"] == expected.malignant_probability
    assert result["predicted_class"] == expected.predicted_class
    assert (result["risk"], result["model_version"]) == (expected.risk, expected.model_version)
    heatmap = owner_api.get(result["heatmap"])
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"


# --- read -------------------------------------------------------------------------------------


def test_it_shows_a_done_diagnosis_with_its_review(owner_api, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    Review.objects.create(
        diagnosis=diagnosis,
        verdict="agree",
        label="mel",
        recommendation="dermatologist_soon",
        note="Please book an appointment.",
        reviewed_at=timezone.now(),
        model_version="test-model-1",
    )

    body = owner_api.get(detail(diagnosis)).json()

    assert body["id"] == str(diagnosis.pk)
    assert body["status"] == "done"
    assert body["risk"] == "high"
    assert body["predicted_class"] == "mel"
    assert body["malignant_probability"] == pytest.approx(diagnosis.malignant_probability)
    assert body["probabilities"] == pytest.approx(diagnosis.probabilities)
    assert set(body["probabilities"]) == set(CLASSES)
    assert body["model_version"] == "test-model-1"
    assert body["error"] is None and body["late"] is False
    assert body["finished_at"] and body["created_at"]
    assert "dermatologist" in body["advice"]
    assert body["image"] == f"http://testserver{detail(diagnosis, 'image/')}"
    assert body["heatmap"] == f"http://testserver{detail(diagnosis, 'heatmap/')}"
    assert body["review"]["verdict"] == "agree"
    assert body["review"]["label"] == "mel"
    assert body["review"]["recommendation"] == "dermatologist_soon"
    assert body["review"]["note"] == "Please book an appointment."
    assert body["review"]["reviewed_at"]
    assert body["review"]["model_version"] == "test-model-1"


def test_it_shows_a_queued_diagnosis_without_a_result(owner_api, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, status="queued")

    body = owner_api.get(detail(diagnosis)).json()

    assert body["status"] == "queued"
    for field in ("probabilities", "malignant_probability", "predicted_class", "risk", "model_version"):
        assert body[field] is None, field
    assert body["heatmap"] is None
    assert body["review"] is None
    assert body["finished_at"] is None
    assert body["late"] is False

    Diagnosis.objects.filter(pk=diagnosis.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    assert owner_api.get(detail(diagnosis)).json()["late"] is True


@pytest.mark.parametrize("status", ["queued", "running"])
def test_it_says_when_to_ask_again_while_a_diagnosis_is_pending(owner_api, owner, make_diagnosis, status):
    pending = make_diagnosis(owner, status=status)

    assert owner_api.get(detail(pending))["Retry-After"] == "2"
    # Once there is an answer, there is nothing to poll for.
    Diagnosis.objects.filter(pk=pending.pk).update(status="done", finished_at=timezone.now())
    assert "Retry-After" not in owner_api.get(detail(pending))
    assert "Retry-After" not in owner_api.get(detail(make_diagnosis(owner, status="failed")))


def test_it_shows_why_an_analysis_failed(owner_api, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, status="queued")
    services.diagnosis_fail(diagnosis_id=diagnosis.pk, message=services.MESSAGE_UNREADABLE)

    body = owner_api.get(detail(diagnosis)).json()

    assert body["status"] == "failed"
    assert body["error"] == services.MESSAGE_UNREADABLE


@pytest.mark.parametrize(
    ("kind", "content_type"), [("image", "image/jpeg"), ("thumbnail", "image/jpeg"), ("heatmap", "image/png")]
)
def test_it_serves_the_images_to_the_owner_only(owner_api, outsider_api, owner, make_diagnosis, kind, content_type):
    diagnosis = make_diagnosis(owner)
    url = owner_api.get(detail(diagnosis)).json()[kind]

    served = owner_api.get(url, HTTP_ACCEPT=content_type)
    assert served.status_code == 200
    assert served["Content-Type"] == content_type
    assert served["Cache-Control"] == "private, no-store"  # no copy left in a shared computer's cache
    assert b"".join(served.streaming_content) == getattr(diagnosis, kind).open("rb").read()

    hidden = outsider_api.get(url, HTTP_ACCEPT=content_type)
    assert hidden.status_code == 404
    assert hidden["Content-Type"] == "application/json"


def test_it_has_no_heatmap_before_the_analysis_is_done(owner_api, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, status="running")

    assert owner_api.get(detail(diagnosis, "heatmap/")).status_code == 404


def test_it_hides_a_diagnosis_from_an_outsider(outsider_api, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)

    response = outsider_api.get(detail(diagnosis))

    assert response.status_code == 404
    assert "detail" in response.json()


def test_it_answers_401_to_anonymous_readers(api_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)
    for url in (LIST, detail(diagnosis), detail(diagnosis, "image/")):
        response = api_client.get(url)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"] == "Token"
        assert response.json() == {"detail": "Authentication credentials were not provided."}


# --- list, pagination, filters ----------------------------------------------------------------


def ids(response):
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_it_lists_only_the_owners_diagnoses_newest_first(owner_api, outsider_api, owner, outsider, make_diagnosis):
    old = make_diagnosis(owner, age_days=3)
    new = make_diagnosis(owner, age_days=1)
    theirs = make_diagnosis(outsider)

    assert ids(owner_api.get(LIST)) == [str(new.pk), str(old.pk)]
    assert ids(outsider_api.get(LIST)) == [str(theirs.pk)]


def test_it_paginates_the_list(owner_api, owner, make_diagnosis):
    made = [make_diagnosis(owner, age_days=days) for days in (1, 2, 3)]

    first = owner_api.get(LIST, {"page_size": 2}).json()
    assert first["count"] == 3
    assert first["previous"] is None
    assert [row["id"] for row in first["results"]] == [str(d.pk) for d in made[:2]]
    second = owner_api.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == [str(made[2].pk)]
    assert second["next"] is None and second["previous"]

    beyond = owner_api.get(LIST, {"page": 99})
    assert beyond.status_code == 404
    assert beyond.json() == {"detail": "Invalid page."}


def test_it_filters_by_status_risk_and_mole(owner_api, owner, outsider, make_diagnosis):
    mole = services.mole_create(owner=owner, name="Back")
    high = make_diagnosis(owner, risk="high", mole=mole)
    low = make_diagnosis(owner, risk="low")
    queued = make_diagnosis(owner, status="queued", mole=mole)
    theirs_mole = services.mole_create(owner=outsider, name="Back")
    make_diagnosis(outsider, risk="high", mole=theirs_mole)

    assert ids(owner_api.get(LIST, {"status": "queued"})) == [str(queued.pk)]
    assert ids(owner_api.get(LIST, {"risk": "high"})) == [str(high.pk)]
    assert ids(owner_api.get(LIST, {"risk": "low", "status": "done"})) == [str(low.pk)]
    assert set(ids(owner_api.get(LIST, {"mole": str(mole.pk)}))) == {str(high.pk), str(queued.pk)}
    assert ids(owner_api.get(LIST, {"mole": str(theirs_mole.pk)})) == []


def test_it_filters_by_creation_time(owner_api, owner, make_diagnosis):
    old = make_diagnosis(owner, age_days=10)
    recent = make_diagnosis(owner, age_days=2)
    today = make_diagnosis(owner)
    week_ago = (timezone.now() - timedelta(days=7)).isoformat()
    # a bare date is midnight where the clinic is (TIME_ZONE), so yesterday is the clinic's too
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()

    assert ids(owner_api.get(LIST, {"created_after": week_ago})) == [str(today.pk), str(recent.pk)]
    assert ids(owner_api.get(LIST, {"created_before": week_ago})) == [str(old.pk)]
    assert ids(owner_api.get(LIST, {"created_after": week_ago, "created_before": yesterday})) == [str(recent.pk)]


def test_it_orders_by_malignant_probability(owner_api, owner, make_diagnosis):
    low = make_diagnosis(owner, risk="low")
    high = make_diagnosis(owner, risk="high")
    medium = make_diagnosis(owner, risk="medium")

    assert ids(owner_api.get(LIST, {"ordering": "-malignant_probability"})) == [str(d.pk) for d in (high, medium, low)]
    assert ids(owner_api.get(LIST, {"ordering": "malignant_probability"})) == [str(d.pk) for d in (low, medium, high)]


@pytest.mark.parametrize("field", ["malignant_probability", "finished_at"])
@pytest.mark.parametrize("sign", ["-", ""], ids=["descending", "ascending"])
def test_it_orders_checks_without_a_result_last_either_way(owner_api, owner, make_diagnosis, field, sign):
    # A queued check has neither: NULL, which Postgres sorts first descending and SQLite first
    # ascending. A patient asking for the most worrying first must get results, not the queue.
    queued = make_diagnosis(owner, status="queued")
    low = make_diagnosis(owner, risk="low", age_days=2)
    high = make_diagnosis(owner, risk="high", age_days=1)
    results = [high, low] if sign else [low, high]  # high was made (and finished) last

    assert ids(owner_api.get(LIST, {"ordering": f"{sign}{field}"})) == [str(d.pk) for d in (*results, queued)]


def test_it_asks_the_database_for_nulls_last(owner_api, owner, make_diagnosis):
    # The test above runs on SQLite; Postgres gets the same ordering only if the SQL asks for it.
    make_diagnosis(owner)
    with CaptureQueriesContext(connection) as queries:
        assert owner_api.get(LIST, {"ordering": "-malignant_probability"}).status_code == 200

    listed = [query["sql"] for query in queries if '"malignant_probability" DESC' in query["sql"]]
    assert listed and all('"malignant_probability" DESC NULLS LAST' in sql for sql in listed)


def test_it_takes_any_utc_offset_python_can_read(owner_api, owner, make_diagnosis):
    # Postgres itself refuses offsets of 16 hours or more; the filter converts to UTC first.
    diagnosis = make_diagnosis(owner)

    assert ids(owner_api.get(LIST, {"created_after": "2000-01-01T00:00:00+22:04"})) == [str(diagnosis.pk)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "finished"}, "status"),
        ({"risk": "extreme"}, "risk"),
        ({"mole": "not-a-uuid"}, "mole"),
        ({"created_after": "last tuesday"}, "created_after"),
        ({"created_before": "0001-01-01T00:00:00+05:00"}, "created_before"),  # before year 1 in UTC
    ],
)
def test_it_refuses_a_bad_filter_with_400(owner_api, params, field):
    response = owner_api.get(LIST, params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("ordering", ["risk", "created_at,risk", "-malignant_probability,", "--created_at"])
def test_it_refuses_an_unknown_ordering_naming_the_ones_it_takes(owner_api, owner, make_diagnosis, ordering):
    # DRF's OrderingFilter drops an unknown field: the default order, as if it had been taken.
    make_diagnosis(owner)
    schema = owner_api.get("/api/v1/schema/", {"format": "json"}).json()
    parameter = next(p for p in schema["paths"][LIST]["get"]["parameters"] if p["name"] == "ordering")

    response = owner_api.get(LIST, {"ordering": ordering})

    assert response.status_code == 400
    [message] = response.json()["ordering"]
    assert sorted(re.findall(r'"([^"]+)"', message.split("use one of ")[1])) == sorted(parameter["schema"]["enum"])
    assert "400" in schema["paths"][LIST]["get"]["responses"]
    # Known ones, one or a comma list as DRF takes them, still sort.
    assert owner_api.get(LIST, {"ordering": "-finished_at,created_at"}).status_code == 200


# --- delete -----------------------------------------------------------------------------------


def test_it_deletes_a_diagnosis_and_its_files(
    owner_api, owner, make_diagnosis, private_media, django_capture_on_commit_callbacks
):
    diagnosis = make_diagnosis(owner)
    assert len(stored_files(private_media)) == 3

    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.delete(detail(diagnosis))

    assert response.status_code == 204
    assert not Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    assert stored_files(private_media) == []
    assert owner_api.get(detail(diagnosis)).status_code == 404


def test_it_refuses_to_delete_another_users_diagnosis(outsider_api, owner, make_diagnosis, private_media):
    diagnosis = make_diagnosis(owner)

    response = outsider_api.delete(detail(diagnosis))

    assert response.status_code == 404
    assert Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    assert len(stored_files(private_media)) == 3
