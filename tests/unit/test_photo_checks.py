"""Photos too dark, too bright or out of focus: ml.quality flags them at upload, and the site,
the API, the report and the review desk say that their result is less reliable."""

import csv
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, ImageEnhance, ImageFilter

from diagnoses import services
from diagnoses.models import LOW_RISK_POOR_PHOTO_ADVICE, RISK_ADVICE, Diagnosis
from ml import quality
from ml.synthetic import draw_lesion


def lesion_photo(size=(600, 450)):
    """A sharp, evenly lit synthetic mole on skin, the size of a HAM10000 photo."""
    return draw_lesion("nv", size=size, seed=3)


def darker(image, factor=0.5):
    return ImageEnhance.Brightness(image).enhance(factor)


def jpeg(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


def upload(image, name="mole.jpg"):
    return SimpleUploadedFile(name, jpeg(image), content_type="image/jpeg")


# --- the checks ---------------------------------------------------------------------------------


def test_a_sharp_evenly_lit_photo_passes():
    assert quality.photo_issues(lesion_photo()) == []


def test_a_blurred_photo_is_out_of_focus_and_nothing_else():
    assert quality.photo_issues(lesion_photo().filter(ImageFilter.GaussianBlur(4))) == ["blurry"]


def test_a_dark_photo_is_dark_but_not_called_blurry():
    photo = lesion_photo().filter(ImageFilter.GaussianBlur(1.5))  # a little soft, sharp enough
    assert quality.photo_issues(photo) == []
    dark = darker(photo, 0.3)  # as it is, its Laplacian is an eighth of the photo's: "blurry"
    assert quality.photo_issues(dark) == ["dark"]
    # it is measured as if lit at the limit of "dark" (its rounded dark pixels add a little)
    at_the_limit = darker(photo, quality.DARK_BELOW / quality.measure(photo).brightness)
    assert quality.measure(dark).sharpness == pytest.approx(quality.measure(at_the_limit).sharpness, rel=0.2)


def test_an_overexposed_photo_is_too_bright():
    assert quality.photo_issues(ImageEnhance.Brightness(lesion_photo()).enhance(1.4)) == ["bright"]


def test_blur_that_the_models_input_size_hides_is_not_flagged():
    # a 2400x1800 phone photo slightly soft at full size is sharp once scaled to the model's input
    large = lesion_photo(size=(2400, 1800)).filter(ImageFilter.GaussianBlur(2))
    assert quality.photo_issues(large) == []
    assert quality.photo_issues(large.resize((600, 450)).filter(ImageFilter.GaussianBlur(4))) == ["blurry"]


def test_a_dark_and_blurred_photo_gets_both_in_a_fixed_order():
    assert quality.photo_issues(darker(lesion_photo().filter(ImageFilter.GaussianBlur(4)))) == ["dark", "blurry"]


def test_a_portrait_photo_is_measured_like_its_landscape_twin_not_squashed():
    photo = lesion_photo()
    portrait = photo.transpose(Image.Transpose.ROTATE_270)  # as a phone held upright takes it
    assert quality.measure(portrait) == quality.measure(photo)


# --- on the site --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_dark_upload_is_stored_with_its_issue_and_the_result_page_says_so(owner_client, owner):
    response = owner_client.post(reverse("diagnoses:new"), {"image": upload(darker(lesion_photo()))})

    diagnosis = Diagnosis.objects.get(owner=owner)
    assert diagnosis.photo_issues == ["dark"]
    page = owner_client.get(response["Location"]).content.decode()
    assert 'data-testid="photo-advice"' in page
    assert "This photo looks too dark." in page
    assert "Upload a better photo" in page
    history = owner_client.get(reverse("diagnoses:list")).content.decode()
    assert "Photo too dark" in history


@pytest.mark.django_db
def test_a_good_upload_has_no_issue_and_no_warning(owner_client, owner):
    response = owner_client.post(reverse("diagnoses:new"), {"image": upload(lesion_photo())})

    assert Diagnosis.objects.get(owner=owner).photo_issues == []
    page = owner_client.get(response["Location"]).content.decode()
    assert 'data-testid="photo-advice"' not in page
    assert 'data-testid="photo-issues"' not in owner_client.get(reverse("diagnoses:list")).content.decode()


@pytest.mark.parametrize(("issues", "said"), [
    (["grey"], "black-and-white"),
    (["dark", "grey"], "too dark and black-and-white"),
    (["dark", "blurry", "grey"], "too dark, out of focus and black-and-white"),
])
def test_the_photos_issues_read_as_a_list_of_them(issues, said):
    # "too dark and black and white" read as three issues, or as a photo too dark and too white
    assert Diagnosis(photo_issues=issues).photo_issues_text == said


@pytest.mark.django_db
def test_a_low_result_from_a_poor_photo_does_not_reassure(owner_client, owner, make_diagnosis):
    good = make_diagnosis(owner, risk="low")
    poor = make_diagnosis(owner, risk="low")
    Diagnosis.objects.filter(pk=poor.pk).update(photo_issues=["dark", "blurry"])
    poor.refresh_from_db()

    assert good.risk_advice == RISK_ADVICE["low"]
    assert poor.risk_advice == LOW_RISK_POOR_PHOTO_ADVICE
    assert poor.photo_advice.startswith("This photo looks too dark and out of focus.")
    assert "rates malignant moles lower" in poor.photo_advice
    page = owner_client.get(poor.get_absolute_url()).content.decode()
    assert "not good enough to rely on" in page
    # the advice is not shown in the reassuring green of a low result, nor the tip twice
    assert '<div class="alert alert-warning" role="note"><strong>What to do next.</strong>' in page
    assert page.count("holding the phone steady") == 1
    assert good.advice_colour == "success"
    report = owner_client.get(reverse("diagnoses:report", args=[poor.pk])).content.decode()
    assert "Photo quality." in report and "not good enough to rely on" in report


@pytest.mark.django_db
def test_a_higher_risk_keeps_its_advice_on_a_poor_photo(owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    diagnosis.photo_issues = ["bright"]

    assert diagnosis.risk_advice == RISK_ADVICE["high"]
    assert diagnosis.photo_advice.startswith("This photo looks too bright. On photos like it the model is less accurate.")


# --- the API ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_gives_the_issues_and_the_advice(owner_api, owner):
    response = owner_api.post("/api/v1/diagnoses/", {"image": upload(darker(lesion_photo()))}, format="multipart")

    assert response.status_code == 202
    body = response.json()
    assert body["photo_issues"] == ["dark"]
    assert body["photo_advice"].startswith("This photo looks too dark.")
    listed = owner_api.get("/api/v1/diagnoses/").json()["results"]
    assert [row["photo_issues"] for row in listed] == [["dark"]]
    good = owner_api.post("/api/v1/diagnoses/", {"image": upload(lesion_photo())}, format="multipart").json()
    assert (good["photo_issues"], good["photo_advice"]) == ([], "")


# --- the review desk and the exports ------------------------------------------------------------


QUEUE_URL = reverse("admin:diagnoses_diagnosis_changelist")


@pytest.mark.django_db
def test_the_review_desk_filters_and_shows_poor_photos(reviewer_client, owner, make_diagnosis):
    fine = make_diagnosis(owner, risk="medium")
    poor = make_diagnosis(owner, risk="low")
    Diagnosis.objects.filter(pk=poor.pk).update(photo_issues=["blurry"])

    listed = reviewer_client.get(QUEUE_URL, {"photo": "poor"}).context["cl"].result_list
    assert [d.pk for d in listed] == [poor.pk]
    listed = reviewer_client.get(QUEUE_URL, {"photo": "fine"}).context["cl"].result_list
    assert [d.pk for d in listed] == [fine.pk]
    case = reviewer_client.get(reverse("admin:diagnoses_diagnosis_change", args=[poor.pk])).content.decode()
    assert "Photo quality" in case and "out of focus" in case


@pytest.mark.django_db
def test_the_exports_carry_the_issues(reviewer_client, reviewer, owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="low")
    Diagnosis.objects.filter(pk=diagnosis.pk).update(photo_issues=["dark"])
    # a clinician's review at the case's own form: agreeing in bulk leaves a poor photo for that
    services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict="agree", recommendation="routine")
    owner.model_improvement = True  # opted in: the CSV export takes only such patients' checks
    owner.save(update_fields=["model_improvement"])

    response = reviewer_client.post(QUEUE_URL, {"action": "export_reviewed_csv", "_selected_action": [str(diagnosis.pk)]})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["photo_issues"] == "dark"

    archive = zipfile.ZipFile(io.BytesIO(b"".join(owner_client.get(reverse("account_export")).streaming_content)))
    assert json.loads(archive.read("data.json"))["diagnoses"][0]["photo_issues"] == ["dark"]


def test_every_issue_has_a_name_for_patients():
    from diagnoses.models import PHOTO_ISSUE_NAMES

    assert set(PHOTO_ISSUE_NAMES) == set(quality.ISSUES)


# --- photos stored before the check -------------------------------------------------------------


@pytest.mark.django_db
def test_checkphotos_records_the_issues_of_photos_stored_before_the_check(owner, make_diagnosis):
    from django.core.files.base import ContentFile
    from django.core.management import call_command

    dark, good, lost = (make_diagnosis(owner, risk="low") for _ in range(3))
    for diagnosis, photo in [(dark, darker(lesion_photo())), (good, lesion_photo())]:
        diagnosis.image.save("photo.jpg", ContentFile(jpeg(photo)))
    lost.image.storage.delete(lost.image.name)
    Diagnosis.objects.filter(pk=good.pk).update(photo_issues=["blurry"])  # as limits of old had it

    out = io.StringIO()
    call_command("checkphotos", stdout=out)

    assert out.getvalue().strip() == "2 photos checked, 2 changed, 1 could not be read (see the log)."
    issues = dict(Diagnosis.objects.values_list("pk", "photo_issues"))
    assert (issues[dark.pk], issues[good.pk], issues[lost.pk]) == (["dark"], [], [])
    call_command("checkphotos", stdout=out)
    assert out.getvalue().strip().endswith("2 photos checked, 0 changed, 1 could not be read (see the log).")


@pytest.mark.django_db
def test_checkphotos_reports_rows_whose_thumbnail_or_heatmap_is_missing(owner, make_diagnosis, caplog):
    """The check to run after a restore: rows whose files the restored images lack, each logged
    with its case; a check not done yet, which has no heatmap, lacks none."""
    from django.core.management import call_command

    whole, no_thumbnail, no_heatmap = (make_diagnosis(owner) for _ in range(3))
    queued = make_diagnosis(owner, status="queued")
    no_thumbnail.thumbnail.storage.delete(no_thumbnail.thumbnail.name)
    no_heatmap.heatmap.storage.delete(no_heatmap.heatmap.name)
    caplog.set_level("WARNING", logger="diagnoses.services")

    out = io.StringIO()
    call_command("checkphotos", stdout=out)

    assert out.getvalue().splitlines() == [
        "4 photos checked, 0 changed, 0 could not be read (see the log).",
        "2 thumbnails or heatmaps are missing from storage (see the log).",
    ]
    logged = {record.getMessage() for record in caplog.records if record.name == "diagnoses.services"}
    assert logged == {f"photo check: the thumbnail of {no_thumbnail.pk} is missing from storage",
                      f"photo check: the heatmap of {no_heatmap.pk} is missing from storage"}
    assert not any(str(d.pk) in message for d in (whole, queued) for message in logged)


@pytest.mark.django_db
def test_about_the_model_says_what_the_photo_check_does(client):
    page = client.get(reverse("about_model")).content.decode()
    assert 'data-testid="photo-check-limit"' in page and "darker or brighter than 99%" in page


@pytest.mark.django_db
def test_checkphotos_reports_and_deletes_stored_files_no_check_names(owner, make_diagnosis, caplog):
    """Files a full disk or a restore left behind, with no row to name them: photos of patients
    that deleting an account would never reach. One just written may be an upload's whose row
    is not committed yet: it is left alone."""
    import os
    import time

    from django.core.management import call_command

    kept = make_diagnosis(owner)
    storage = kept.image.storage
    old = time.time() - 2 * 3600
    for name in ("images/lost.jpg", "heatmaps/lost.png", "thumbnails/fresh.jpg"):
        storage.save(name, io.BytesIO(b"part of a photo"))
    for name in ("images/lost.jpg", "heatmaps/lost.png", kept.image.name, kept.thumbnail.name, kept.heatmap.name):
        os.utime(storage.path(name), (old, old))
    caplog.set_level("WARNING", logger="diagnoses.services")

    out = io.StringIO()
    call_command("checkphotos", stdout=out)
    assert out.getvalue().splitlines()[-1] == (
        "2 stored files named by no check (not deleted: --delete-orphans deletes them; see the log).")
    assert storage.exists("images/lost.jpg")
    logged = {r.getMessage() for r in caplog.records if "named by no diagnosis" in r.getMessage()}
    assert logged == {"photo check: heatmaps/lost.png is named by no diagnosis",
                      "photo check: images/lost.jpg is named by no diagnosis"}

    call_command("checkphotos", "--delete-orphans", stdout=io.StringIO())
    assert not storage.exists("images/lost.jpg") and not storage.exists("heatmaps/lost.png")
    assert storage.exists("thumbnails/fresh.jpg")
    assert all(storage.exists(f.name) for f in (kept.image, kept.thumbnail, kept.heatmap))
