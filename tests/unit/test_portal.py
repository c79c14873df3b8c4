"""The patient portal from both sides: history filters, report, mole pages, about the model,
the upload's XHR path, data export and account deletion."""

import html
import io
import json
import os
import types
import uuid
import zipfile
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import views as accounts_views
from diagnoses import services
from diagnoses import views as diagnoses_views
from diagnoses.models import MOLE_NAME_TAKEN, RISK_ADVICE, Diagnosis, Mole, MoleQuerySet, Review
from tests.conftest import make_image_bytes

pytestmark = pytest.mark.django_db

PROBABILITIES = {"akiec": 0.05, "bcc": 0.05, "bkl": 0.1, "df": 0.05, "mel": 0.2, "nv": 0.5, "vasc": 0.05}


def make_diagnosis(owner, *, mole=None, status="done", risk="low", malignant=0.1, days_ago=0, heatmap=True):
    diagnosis = Diagnosis(owner=owner, mole=mole, status=status, sha256="0" * 64)
    diagnosis.image.save("photo.jpg", ContentFile(make_image_bytes()), save=False)
    diagnosis.thumbnail.save("thumb.jpg", ContentFile(make_image_bytes(size=(64, 64))), save=False)
    if status == "done":
        if heatmap:
            diagnosis.heatmap.save("heat.png", ContentFile(make_image_bytes(fmt="PNG")), save=False)
        diagnosis.risk, diagnosis.malignant_probability = risk, malignant
        diagnosis.probabilities, diagnosis.predicted_class = PROBABILITIES, "nv"
        diagnosis.model_version, diagnosis.finished_at = "test-model", timezone.now()
    diagnosis.save()
    if days_ago:
        Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
        diagnosis.refresh_from_db()
    return diagnosis


def history(client, **params):
    response = client.get(reverse("diagnoses:list"), params)
    assert response.status_code == 200
    return {d.pk for d in response.context["page"]}


# --- history filters ----------------------------------------------------------------------------

def test_it_filters_the_history_by_risk_status_mole_and_date(owner_client, owner):
    shoulder = Mole.objects.create(owner=owner, name="Shoulder")
    high = make_diagnosis(owner, mole=shoulder, risk="high", malignant=0.8, days_ago=40)
    low = make_diagnosis(owner, risk="low", days_ago=2)
    queued = make_diagnosis(owner, mole=shoulder, status="queued")

    assert history(owner_client) == {high.pk, low.pk, queued.pk}
    assert history(owner_client, risk="high") == {high.pk}
    assert history(owner_client, status="queued") == {queued.pk}
    assert history(owner_client, mole=str(shoulder.pk)) == {high.pk, queued.pk}
    assert history(owner_client, mole="none") == {low.pk}
    since = (timezone.localdate() - timedelta(days=10)).isoformat()
    assert history(owner_client, date_from=since) == {low.pk, queued.pk}
    assert history(owner_client, date_to=since) == {high.pk}
    assert history(owner_client, risk="low", mole=str(shoulder.pk)) == set()


def test_it_says_why_nothing_matches_a_from_date_after_the_to_date(owner_client, owner):
    make_diagnosis(owner, days_ago=5)
    today, week_ago = timezone.localdate(), timezone.localdate() - timedelta(days=7)

    reversed_page = owner_client.get(reverse("diagnoses:list"), {"date_from": today, "date_to": week_ago})
    assert "The <em>From</em> date is after the <em>To</em> date." in reversed_page.content.decode()
    empty_span = owner_client.get(reverse("diagnoses:list"), {"date_from": today, "date_to": today})
    assert "No photo matches these filters." in empty_span.content.decode()
    assert "date is after" not in empty_span.content.decode()


def test_it_ignores_a_bad_filter_value_and_another_users_mole(owner_client, owner, outsider):
    mine = make_diagnosis(owner)
    theirs_mole = Mole.objects.create(owner=outsider, name="Theirs")
    make_diagnosis(outsider, mole=theirs_mole)
    assert history(owner_client, risk="purple", date_from="yesterday") == {mine.pk}
    assert history(owner_client, mole=str(theirs_mole.pk)) == {mine.pk}
    assert b"Theirs" not in owner_client.get(reverse("diagnoses:list")).content


def test_it_keeps_the_filters_in_the_pagination_links(owner_client, owner):
    for _ in range(13):
        make_diagnosis(owner, risk="high", malignant=0.7)
    page = owner_client.get(reverse("diagnoses:list"), {"risk": "high"}).content.decode()
    assert "?risk=high&amp;page=2" in page


def test_it_filters_the_history_in_a_constant_number_of_queries(owner_client, owner):
    def count(n):
        Diagnosis.objects.all().delete()
        mole = Mole.objects.get_or_create(owner=owner, name="Arm")[0]
        Diagnosis.objects.bulk_create(
            Diagnosis(owner=owner, mole=mole, image="x.jpg", thumbnail="x.jpg", status="done", risk="high",
                      malignant_probability=0.9)
            for _ in range(n)
        )
        with CaptureQueriesContext(connection) as queries:
            owner_client.get(reverse("diagnoses:list"), {"risk": "high", "mole": str(mole.pk)})
        return len(queries)

    assert count(3) == count(40)


def test_the_history_pages_checks_uploaded_at_the_same_moment_each_once(owner_client, owner,
                                                                        monkeypatch):
    monkeypatch.setattr(diagnoses_views, "HISTORY_PAGE_SIZE", 1)
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)  # made in this order
    Diagnosis.objects.bulk_create(Diagnosis(id=pk, owner=owner, image="x.jpg", thumbnail="x.jpg")
                                  for pk in (first, second))
    Diagnosis.objects.update(created_at=timezone.now())

    responses = [owner_client.get(reverse("diagnoses:list"), {"page": n}) for n in (1, 2)]
    pages = [[d.pk for d in response.context["page"]] for response in responses]

    # Newest first, then the greater id, as the API: with the time alone, the database may give
    # the two in either order to each page's query (Postgres does), one shown twice, one never.
    assert pages == [[second], [first]]


# --- result page and report ---------------------------------------------------------------------

def test_it_shows_the_heatmap_toggle_and_the_report_link_on_a_finished_result(owner_client, owner):
    diagnosis = make_diagnosis(owner, risk="high", malignant=0.62)
    page = owner_client.get(diagnosis.get_absolute_url()).content.decode()
    assert reverse("diagnoses:file", args=[diagnosis.pk, "heatmap"]) in page
    assert "heatmap-toggle" in page
    assert reverse("diagnoses:report", args=[diagnosis.pk]) in page


def test_a_file_missing_from_storage_answers_404_and_is_logged_with_its_case(owner_client, owner, owner_api,
                                                                            caplog):
    """A row that outlived its file (images restored from a backup older than the database's):
    a broken image on the page, not a server error; the log names the case, not the patient."""
    diagnosis = make_diagnosis(owner, risk="high", malignant=0.62)
    diagnosis.heatmap.storage.delete(diagnosis.heatmap.name)
    caplog.set_level("WARNING", logger="diagnoses.views")

    assert owner_client.get(reverse("diagnoses:file", args=[diagnosis.pk, "heatmap"])).status_code == 404
    assert owner_api.get(f"/api/v1/diagnoses/{diagnosis.pk}/heatmap/").status_code == 404
    assert owner_client.get(reverse("diagnoses:file", args=[diagnosis.pk, "image"])).status_code == 200

    logged = [record.getMessage() for record in caplog.records if record.name == "diagnoses.views"]
    assert logged == [f"heatmap of {diagnosis.pk} is missing from storage"] * 2
    assert not any(owner.email in record.getMessage() for record in caplog.records)


def test_it_renders_a_printable_report_for_the_owner(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Left calf", body_site="lower extremity")
    diagnosis = make_diagnosis(owner, mole=mole, risk="medium", malignant=0.3)
    Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation="monitor",
                          note="Looks regular; photograph again in 3 months.", reviewed_at=timezone.now())
    page = owner_client.get(reverse("diagnoses:report", args=[diagnosis.pk])).content.decode()
    assert "Print / save as PDF" in page
    assert "30.0%" in page and "Medium risk" in page and "Left calf" in page
    assert "Melanocytic nevus" in page and "test-model" in page
    assert "photograph again in 3 months" in page
    assert "not a diagnosis" in page


def test_a_report_gives_the_models_figures_only_for_a_result_of_the_model_in_use(owner_client, owner):
    from diagnoses.views import load_model_card

    in_use = load_model_card()["version"]
    current, earlier = make_diagnosis(owner), make_diagnosis(owner)
    Diagnosis.objects.filter(pk=current.pk).update(model_version=in_use)

    def about_this_estimate(diagnosis):
        page = owner_client.get(reverse("diagnoses:report", args=[diagnosis.pk])).content.decode()
        return page.split("About this estimate", 1)[1].split("</section>", 1)[0]

    assert "which catches" in about_this_estimate(current) and "earlier version" not in about_this_estimate(current)
    # Banded at its own model's thresholds: the card's, today's, would misstate them.
    older = about_this_estimate(earlier)
    assert "which catches" not in older and "% malignant probability" not in older
    assert f"An earlier version of the model than the one in use now ({in_use})" in older


def test_it_hides_the_report_from_an_outsider(outsider_client, owner):
    diagnosis = make_diagnosis(owner)
    assert outsider_client.get(reverse("diagnoses:report", args=[diagnosis.pk])).status_code == 404


def test_it_says_a_pending_report_is_not_ready(owner_client, owner):
    diagnosis = make_diagnosis(owner, status="queued")
    response = owner_client.get(reverse("diagnoses:report", args=[diagnosis.pk]), follow=True)
    assert response.redirect_chain == [(diagnosis.get_absolute_url(), 302)]
    assert "still being analysed" in response.content.decode()


# --- upload: the XHR path -----------------------------------------------------------------------

def upload(data, name="mole.jpg"):
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def test_it_answers_an_xhr_upload_with_the_result_url(owner_client, owner, jpeg_bytes, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = owner_client.post(
            reverse("diagnoses:new"), {"image": upload(jpeg_bytes)}, headers={"x-requested-with": "XMLHttpRequest"}
        )
    assert response.status_code == 201
    diagnosis = Diagnosis.objects.get(owner=owner)
    assert response.json() == {"redirect": diagnosis.get_absolute_url()}


def test_it_answers_a_bad_xhr_upload_with_the_form_and_its_message(owner_client):
    response = owner_client.post(
        reverse("diagnoses:new"), {"image": upload(b"plain text, not a photo" * 10)},
        headers={"x-requested-with": "XMLHttpRequest"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "not an image we can read" in html and 'name="image"' in html
    assert "<html" not in html  # a fragment that replaces the form, not a page
    assert not Diagnosis.objects.exists()


def test_it_tells_the_upload_page_and_its_script_the_limits_the_server_applies(owner_client, settings):
    settings.MAX_UPLOAD_BYTES = 5 * 1_048_576
    settings.MAX_UPLOAD_PIXELS = 12_000_000
    page = owner_client.get(reverse("diagnoses:new")).content.decode()
    assert ("JPEG, PNG, WebP, HEIC or AVIF, up to 5 MB and 12 megapixels, at least 120 pixels on the "
            "shorter side.") in page
    assert f'data-max-bytes="{5 * 1_048_576}"' in page
    assert 'data-accepted="JPEG, PNG, WebP, HEIC or AVIF"' in page


def test_it_preselects_the_mole_when_adding_a_photo_to_it(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Back")
    page = owner_client.get(reverse("diagnoses:new"), {"mole": str(mole.pk)}).content.decode()
    assert f'<option value="{mole.pk}" selected>' in page


# --- mole pages ---------------------------------------------------------------------------------

def test_it_lists_only_my_moles_with_their_photo_counts(owner_client, owner, outsider):
    arm = Mole.objects.create(owner=owner, name="Right arm", body_site="upper extremity")
    make_diagnosis(owner, mole=arm)
    make_diagnosis(owner, mole=arm, risk="medium", malignant=0.3)
    Mole.objects.create(owner=outsider, name="Their nose")
    response = owner_client.get(reverse("diagnoses:moles"))
    page = response.content.decode()
    assert "Right arm" in page and "2 photos" in page and "Medium risk" in page
    assert "Their nose" not in page


def test_it_lists_my_moles_by_name(owner_client, owner):
    for name in ("Zeta", "Alpha", "Mid"):  # created out of order: the query must sort
        make_diagnosis(owner, mole=Mole.objects.create(owner=owner, name=name, recheck_months=1))
    response = owner_client.get(reverse("diagnoses:moles"))
    page = response.content.decode()
    assert page.index("Alpha") < page.index("Mid") < page.index("Zeta")
    assert response.context["moles"].ordered  # by the query, not by the index SQLite happens to use


def test_my_moles_reads_only_the_latest_photo_of_each_mole(owner_client, owner):
    # The page shows one photo per mole: reading every photo of every mole to find it made the
    # page slower with each photo a patient took.
    arm, leg = (Mole.objects.create(owner=owner, name=name) for name in ("Arm", "Leg"))
    for days_ago in (30, 20, 10):
        make_diagnosis(owner, mole=arm, days_ago=days_ago)
    latest = make_diagnosis(owner, mole=arm, risk="high", malignant=0.7)
    only = make_diagnosis(owner, mole=leg)

    response = owner_client.get(reverse("diagnoses:moles"))

    moles = {mole.name: mole for mole in response.context["moles"]}
    assert [photo.pk for photo in moles["Arm"].photos_newest_first] == [latest.pk]
    assert [photo.pk for photo in moles["Leg"].photos_newest_first] == [only.pk]
    page = response.content.decode()
    assert "4 photos" in page and "High risk" in page
    assert reverse("diagnoses:file", args=[latest.pk, "thumbnail"]) in page


def test_it_shows_a_mole_timeline_oldest_first_with_its_chart(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    old = make_diagnosis(owner, mole=mole, malignant=0.1, days_ago=60)
    new = make_diagnosis(owner, mole=mole, malignant=0.15, days_ago=1)
    response = owner_client.get(mole.get_absolute_url())
    page = response.content.decode()
    assert page.index(str(old.pk)) < page.index(str(new.pk))
    assert response.context["chart"]["values"] == [10.0, 15.0]
    assert response.context["chart"]["days"] == [0.0, pytest.approx(59, abs=0.01)]  # spaced by time
    assert 'id="mole-chart"' in page and "chart.umd.min.js" in page
    assert "went up" not in page


def test_the_chart_says_when_its_threshold_lines_are_not_those_some_photos_were_banded_at(owner_client, owner):
    from diagnoses.views import load_model_card

    mole = Mole.objects.create(owner=owner, name="Shoulder")
    make_diagnosis(owner, mole=mole, days_ago=60)  # "test-model": not the card's
    make_diagnosis(owner, mole=mole, days_ago=1)
    note = 'data-testid="earlier-model-note"'
    assert note in owner_client.get(mole.get_absolute_url()).content.decode()

    Diagnosis.objects.filter(mole=mole).update(model_version=load_model_card()["version"])
    assert note not in owner_client.get(mole.get_absolute_url()).content.decode()


def test_it_warns_when_a_later_photo_rises_by_a_risk_band(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    make_diagnosis(owner, mole=mole, risk="low", malignant=0.05, days_ago=90)
    make_diagnosis(owner, mole=mole, status="failed", days_ago=50)
    risen = make_diagnosis(owner, mole=mole, risk="medium", malignant=0.3, days_ago=30)
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "The estimated risk of this mole went up" in page
    assert "up from low" in page and risen.get_absolute_url() in page

    make_diagnosis(owner, mole=mole, risk="low", malignant=0.1, days_ago=1)
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "up from low" in page and risen.get_absolute_url() in page
    # The last photo fell back to low: marked, and the medium one still stands until reviewed,
    # in one alert that names it (not a second one saying it went up).
    assert "↓ down from medium" in page
    assert "The latest photo is rated lower than the one before." in page
    assert "follow the advice for the earlier photo" in page
    assert "went up" not in page


def test_the_mole_page_gives_one_piece_of_advice_when_the_risk_rose_then_fell_twice(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    make_diagnosis(owner, mole=mole, risk="low", malignant=0.05, days_ago=90)
    risen = make_diagnosis(owner, mole=mole, risk="high", malignant=0.6, days_ago=60)
    make_diagnosis(owner, mole=mole, risk="medium", malignant=0.3, days_ago=30)
    make_diagnosis(owner, mole=mole, risk="low", malignant=0.1, days_ago=1)
    page = html.unescape(owner_client.get(mole.get_absolute_url()).content.decode())
    # The high photo's advice alone, not the medium photo's later deadline: the latest photo's
    # advice follows the high photo (the highest since, Diagnosis.leading_earlier_photo), in the
    # note, which names it, in place of the rise's alert (the same photo and advice).
    assert "The latest photo is rated lower than an earlier one." in page and risen.get_absolute_url() in page
    assert "follow the advice for the earlier photo: " + risen.risk_advice in page
    assert "went up" not in page and "was <strong>medium risk</strong>" not in page


def test_it_lets_a_review_end_the_latest_rated_lower_note_on_the_mole_page(owner_client, owner, reviewer):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    make_diagnosis(owner, mole=mole, risk="high", malignant=0.6, days_ago=30)
    latest = make_diagnosis(owner, mole=mole, risk="low", malignant=0.1, days_ago=1)
    assert "The latest photo is rated lower" in owner_client.get(mole.get_absolute_url()).content.decode()
    services.review_save(diagnosis=latest, reviewer=reviewer, verdict="agree", label="nv", recommendation="routine")
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "The latest photo is rated lower" not in page and "↓ down from high" in page


def test_a_rise_a_clinician_has_judged_gives_no_alert_on_the_mole_page(owner_client, owner, reviewer):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    make_diagnosis(owner, mole=mole, risk="low", malignant=0.05, days_ago=60)
    risen = make_diagnosis(owner, mole=mole, risk="high", malignant=0.6, days_ago=30)
    assert "The estimated risk of this mole went up" in owner_client.get(mole.get_absolute_url()).content.decode()

    services.review_save(diagnosis=risen, reviewer=reviewer, verdict="unclear", recommendation="new_photo")
    assert "The estimated risk of this mole went up" in owner_client.get(mole.get_absolute_url()).content.decode()
    services.review_save(diagnosis=risen, reviewer=reviewer, verdict="disagree", label="nv", recommendation="routine")
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    assert "went up" not in page and "Please see a dermatologist" not in page


def test_it_hides_mole_pages_from_an_outsider(outsider_client, owner):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    assert outsider_client.get(reverse("diagnoses:mole_edit", args=[mole.pk])).status_code == 404
    assert outsider_client.post(reverse("diagnoses:mole_edit", args=[mole.pk]), {"name": "Mine", "body_site": "back"}).status_code == 404
    assert outsider_client.post(reverse("diagnoses:mole_delete", args=[mole.pk])).status_code == 404
    assert Mole.objects.get(pk=mole.pk).name == "Shoulder"


def test_a_refused_rename_shows_the_mole_as_saved_and_a_lost_race_the_forms_message(owner_client, owner,
                                                                                       monkeypatch):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    Mole.objects.create(owner=owner, name="Back")
    url = reverse("diagnoses:mole_edit", args=[mole.pk])
    response = owner_client.post(url, {"name": "Shoulder two", "body_site": "nowhere"})
    assert response.status_code == 400
    assert "<title>Edit Shoulder ·" in response.content.decode()

    # Another tab renamed a mole to this name after the form checked it: the constraint decides.
    monkeypatch.setattr(MoleQuerySet, "name_taken", lambda self, **kwargs: False)
    response = owner_client.post(url, {"name": "Back", "body_site": "back"})
    assert response.status_code == 400 and MOLE_NAME_TAKEN in response.content.decode()
    assert Mole.objects.get(pk=mole.pk).name == "Shoulder"


def test_it_renames_a_mole_and_refuses_a_duplicate_name(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    Mole.objects.create(owner=owner, name="Back")
    url = reverse("diagnoses:mole_edit", args=[mole.pk])
    assert owner_client.post(url, {"name": "Back", "body_site": "back"}).status_code == 400
    response = owner_client.post(url, {"name": "Left shoulder", "body_site": "back"}, follow=True)
    assert "The mole was saved." in response.content.decode()
    mole.refresh_from_db()
    assert (mole.name, mole.body_site) == ("Left shoulder", "back")


def test_it_stops_tracking_a_mole_but_keeps_its_photos(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    diagnosis = make_diagnosis(owner, mole=mole)
    response = owner_client.post(reverse("diagnoses:mole_delete", args=[mole.pk]))
    assert response.status_code == 302 and response.url == reverse("diagnoses:moles")
    assert not Mole.objects.filter(pk=mole.pk).exists()
    assert Diagnosis.objects.get(pk=diagnosis.pk).mole is None


MALIGNANT_OF = {"low": 0.05, "medium": 0.2, "high": 0.6}


@pytest.mark.parametrize("risks, named", [
    (("high", "low"), 0),  # the later low photo's advice follows the high one
    (("low", "high", "medium", "low"), 1),  # the rise's alert leads over the medium photo's advice
    (("low", "low"), None),
    (("low", "high"), None),  # the newest photo's own band leads
], ids=["rated lower", "rise leads", "steady", "risen last"])
def test_stopping_tracking_says_the_photos_are_no_longer_compared_and_names_the_advice_it_drops(
        owner_client, owner, risks, named):
    """Untracked, a later photo no longer follows an earlier one rated higher (photo_before needs
    the mole): before the patient confirms, the page says the photos will no longer be compared
    and names the earlier photo whose advice the page gives, with that advice; the message after
    says it again. What untracking does is unchanged: the photos stay, untracked."""
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    photos = [make_diagnosis(owner, mole=mole, risk=risk, malignant=MALIGNANT_OF[risk], days_ago=len(risks) - i)
              for i, risk in enumerate(risks)]
    page = owner_client.get(mole.get_absolute_url()).content.decode()
    confirm = html.unescape(page.split("Stop tracking this mole</summary>", 1)[1].split("</details>", 1)[0])
    assert "Its photos will no longer be compared with each other:" in confirm
    assert confirm.index("compared with each other") < confirm.index("<button")
    if named is None:
        assert 'data-testid="untracking-drops"' not in confirm
    else:
        earlier = photos[named]
        drops = confirm.split('data-testid="untracking-drops"', 1)[1].split("</div>", 1)[0]
        assert f"was rated {earlier.risk} risk ({earlier.malignant_percent}%)</strong>" in drops
        assert RISK_ADVICE[earlier.risk] in drops and earlier.get_absolute_url() in drops
        assert confirm.index("untracking-drops") < confirm.index("<button")

    response = owner_client.post(reverse("diagnoses:mole_delete", args=[mole.pk]), follow=True)
    told = html.unescape(response.content.decode())
    assert ("You no longer track “Shoulder”. Its photos stay in your history, no longer compared with each other."
            in told)
    assert (named is not None) is ("until a doctor has seen the mole, follow its advice" in told)
    if named is not None:
        assert RISK_ADVICE[photos[named].risk] in told
    assert all(photo.mole_id is None for photo in Diagnosis.objects.filter(pk__in=[p.pk for p in photos]))
    assert Diagnosis.objects.filter(owner=owner).count() == len(photos)


@pytest.mark.parametrize("risks, deleted, following", [
    (("high", "low"), 0, 1),  # the later low photo's advice follows the high one
    (("high", "low"), 1, None),  # deleting the later photo ends nothing it gives of another
    (("low", "low"), 0, None),
], ids=["rated higher", "the later one", "steady"])
def test_deleting_a_photo_whose_advice_a_later_photo_follows_names_that_photo_and_the_advice(
        owner_client, owner, risks, deleted, following):
    """Deleting the photo rated higher ends the advice the later photo follows (its photo before
    is gone): as Stop tracking does, the confirmation names the later photo and the advice, and
    the message after says it again."""
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    photos = [make_diagnosis(owner, mole=mole, risk=risk, malignant=MALIGNANT_OF[risk], days_ago=len(risks) - i)
              for i, risk in enumerate(risks)]
    gone = photos[deleted]
    url = reverse("diagnoses:delete", args=[gone.pk])
    confirm = html.unescape(owner_client.get(url).content.decode())
    if following is None:
        assert 'data-testid="deleting-drops"' not in confirm
    else:
        later = Diagnosis.objects.get(pk=photos[following].pk)
        assert later.next_step().previous == gone
        drops = confirm.split('data-testid="deleting-drops"', 1)[1].split("</div>", 1)[0]
        assert f"was rated {gone.risk} risk ({gone.malignant_percent}%)</strong>" in drops
        assert later.get_absolute_url() in drops and RISK_ADVICE[gone.risk] in drops
        assert "Once you delete this photo, that later photo will no longer point you to it" in drops
        assert confirm.index("deleting-drops") < confirm.index("Delete for good")

    told = html.unescape(owner_client.post(url, follow=True).content.decode())
    assert "The photo and its result were deleted." in told
    assert (following is not None) is ("followed its advice and no longer does" in told)
    if following is not None:
        assert f"The photo you deleted was rated {gone.risk} risk ({gone.malignant_percent}%)." in told
        assert RISK_ADVICE[gone.risk] in told
        assert Diagnosis.objects.get(pk=photos[following].pk).next_step().source == "band"
    assert not Diagnosis.objects.filter(pk=gone.pk).exists()


def test_deleting_a_photo_whose_urgent_review_a_later_photo_follows_names_the_review_not_the_band(
        owner_client, owner, reviewer):
    # A clinician's urgent recommendation on a low photo leads the later low one: the confirmation
    # and the message must give that recommendation, in red, not the band's "keep an eye on it".
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    reviewed = make_diagnosis(owner, mole=mole, risk="low", malignant=MALIGNANT_OF["low"], days_ago=2)
    services.review_save(diagnosis=reviewed, reviewer=reviewer, verdict="agree", recommendation="urgent")
    later = make_diagnosis(owner, mole=mole, risk="low", malignant=MALIGNANT_OF["low"], days_ago=1)
    assert later.next_step().previous_review is not None

    url = reverse("diagnoses:delete", args=[reviewed.pk])
    confirm = html.unescape(owner_client.get(url).content.decode())
    drops = confirm.split('data-testid="deleting-drops"', 1)[0].rsplit("<div", 1)[1] + \
        confirm.split('data-testid="deleting-drops"', 1)[1].split("</div>", 1)[0]
    assert "alert-danger" in drops and RISK_ADVICE["low"] not in drops
    assert 'was reviewed by a clinician, who recommended "Urgent: see a doctor now"' in drops
    told = html.unescape(owner_client.post(url, follow=True).content.decode())
    assert 'keep following that advice: "Urgent: see a doctor now"' in told and RISK_ADVICE["low"] not in told


# --- about the model ----------------------------------------------------------------------------

def test_it_shows_the_model_card_figures(client, tiny_model):
    card = json.loads((tiny_model / "model_card.json").read_text())
    page = client.get(reverse("about_model")).content.decode()
    assert card["version"] in page
    assert f"{round(card['validation']['balanced_accuracy'] * 100, 1)}%" in page
    low, high = card["validation"]["intervals"]["balanced_accuracy"]
    assert f'95% interval <span class="text-nowrap">{round(low * 100, 1)}–{round(high * 100, 1)}%</span>' in page
    assert "Confusion matrix" in page and 'id="roc-data"' in page
    assert "Checkpoint" in page and "moving average (decay 0.9," in page
    assert "the photo and its mirror image" in page  # the tiny preset's two test-time views
    assert "Limits" in page and "not a diagnosis" in page.lower()


def test_the_recall_per_class_keeps_each_figure_with_its_percent_sign(client, tiny_model):
    """On a phone a long class name beside its figure broke "68.8" from "%": each figure stays on
    one line, as on the result page's class bars."""
    card = json.loads((tiny_model / "model_card.json").read_text())
    page = client.get(reverse("about_model")).content.decode()
    recall = page.split('id="recall-title"', 1)[1].split("</section>", 1)[0]
    figures = [round(value * 100, 1) for value in card["validation"]["per_class_recall"].values()
               if value is not None]
    assert figures
    for figure in figures:
        assert f'<span class="fw-semibold text-nowrap">{figure}%</span>' in recall
    assert recall.count("%</span>") == recall.count('text-nowrap">')


@pytest.mark.parametrize("tau, text", [(-0.2, "towards common classes (τ = -0.20"), (0.0, "the most probable class</dd>"),
                                       (0.35, "towards rare classes (τ = +0.35")])
def test_it_says_how_the_shown_class_is_picked(client, settings, tmp_path, tau, text):
    settings.ML_MODEL_DIR = tmp_path
    card = {"version": "v2", "training": {"precision": "mixed_bfloat16"}, "decision": {"tau": tau}}
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    page = client.get(reverse("about_model")).content.decode()
    assert "Class shown" in page and text in page
    assert "mixed: bfloat16 arithmetic, float32 weights" in page  # not the card's code


@pytest.mark.parametrize("fields, text", [
    ({}, "temperature scaling, T = 0.917</dd>"),
    ({"logit_offset": {"nv": 0.69}, "recalibrated": {"at": "2026-12-06T23:06:53+00:00"}},
     "undoes training&#x27;s class weighting, then temperature scaling, T = 0.917 (fitted again "
     "6 Dec 2026)</dd>")])  # the day as the pages write one
def test_it_says_how_the_probabilities_are_calibrated(client, settings, tmp_path, fields, text):
    settings.ML_MODEL_DIR = tmp_path
    card = {"version": "v3", "temperature": 0.917464, **fields}
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    page = client.get(reverse("about_model")).content.decode()
    assert "Calibration" in page and text in page


def test_it_explains_when_there_is_no_model_card(client, settings, tmp_path):
    settings.ML_MODEL_DIR = tmp_path
    assert "not available" in client.get(reverse("about_model")).content.decode()
    (tmp_path / "model_card.json").write_text('{"version": "v1", "validation": {"confusion_matrix": [1, 2]}, "thresholds": 3}')
    page = client.get(reverse("about_model"))
    assert page.status_code == 200 and "v1" in page.content.decode()


def test_it_parses_the_card_once_and_again_only_when_a_new_one_is_shipped(client, settings, tmp_path, monkeypatch):
    settings.ML_MODEL_DIR = tmp_path
    card_path = tmp_path / "model_card.json"
    card_path.write_text(json.dumps({"version": "first-model", "thresholds": {"medium": 0.2, "high": 0.5}}))
    parsed = []
    # a stand-in for the json module in diagnoses.views only, so that other parsing isn't counted
    counting_json = types.SimpleNamespace(**vars(json))
    counting_json.loads = lambda text: parsed.append(1) or json.loads(text)
    monkeypatch.setattr("diagnoses.views.json", counting_json)
    for _ in range(3):
        assert "first-model" in client.get(reverse("about_model")).content.decode()
    assert len(parsed) == 1
    card_path.write_text(json.dumps({"version": "second-model-shipped", "thresholds": {"medium": 0.2, "high": 0.5}}))
    assert "second-model-shipped" in client.get(reverse("about_model")).content.decode()
    assert len(parsed) == 2


# --- account: export and deletion ---------------------------------------------------------------

@pytest.mark.parametrize("spool_bytes", [16 * 1024 * 1024, 1024], ids=["in-memory", "spilled-to-disk"])
def test_it_exports_all_my_data_as_a_zip(owner_client, owner, outsider, monkeypatch, spool_bytes):
    monkeypatch.setattr(accounts_views, "EXPORT_SPOOL_BYTES", spool_bytes)
    mole = Mole.objects.create(owner=owner, name="Shoulder", recheck_months=3)
    mine = make_diagnosis(owner, mole=mole, risk="high", malignant=0.7)
    Review.objects.create(diagnosis=mine, verdict="agree", recommendation="urgent", note="Please come in.",
                          reviewed_at=timezone.now())
    make_diagnosis(owner, status="queued")
    theirs = make_diagnosis(outsider)

    response = owner_client.get(reverse("account_export"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    archive = zipfile.ZipFile(io.BytesIO(body))
    data = json.loads(archive.read("data.json"))
    assert data["account"]["username"] == "patient" and data["account"]["review_emails"] is True
    assert data["account"]["model_improvement"] is False
    assert [(m["name"], m["recheck_months"]) for m in data["moles"]] == [("Shoulder", 3)]
    assert len(data["diagnoses"]) == 2
    exported = next(d for d in data["diagnoses"] if d["id"] == str(mine.pk))
    assert exported["malignant_probability"] == 0.7 and exported["review"]["note"] == "Please come in."
    with mine.image.open("rb") as stored:
        assert archive.read(exported["files"]["image"]) == stored.read()
    # photos are copied as they are (already compressed), not deflated again
    assert archive.getinfo(exported["files"]["image"]).compress_type == zipfile.ZIP_STORED
    assert exported["files"]["heatmap"] in archive.namelist()
    assert not any(str(theirs.pk) in name for name in archive.namelist())
    # dated as uploaded, not 1 Jan 1980; and a README that says what the codes are
    uploaded = timezone.localtime(mine.created_at).timetuple()[:5]  # a zip keeps even seconds
    assert archive.getinfo(exported["files"]["image"]).date_time[:5] == uploaded
    readme = archive.read("README.txt").decode()
    assert "mel    Melanoma (malignant)" in readme and "0.097 is 9.7%" in readme


def test_it_asks_for_the_password_before_deleting_an_account(owner_client, owner):
    response = owner_client.post(reverse("account_delete"), {"password": "wrong", "confirm": "on"})
    assert response.status_code == 400 and "not your current password" in response.content.decode()
    assert type(owner).objects.filter(pk=owner.pk).exists()


def test_it_deletes_the_account_with_all_its_data_and_files(owner_client, owner, outsider, django_capture_on_commit_callbacks):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    mine = [make_diagnosis(owner, mole=mole), make_diagnosis(owner, status="queued")]
    theirs = make_diagnosis(outsider)
    paths = [f.path for d in mine for f in d.stored_files()]
    assert paths and all(os.path.exists(p) for p in paths)

    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("account_delete"), {"password": "correct horse battery", "confirm": "on"})
    assert response.status_code == 302 and response.url == reverse("home")
    assert not type(owner).objects.filter(pk=owner.pk).exists()
    assert not Diagnosis.objects.filter(owner_id=owner.pk).exists() and not Mole.objects.filter(pk=mole.pk).exists()
    assert not any(os.path.exists(p) for p in paths)
    assert all(os.path.exists(f.path) for f in theirs.stored_files())
    assert owner_client.get(reverse("diagnoses:list")).status_code == 302  # signed out


def test_it_turns_the_review_emails_off_and_on_from_the_account_page(owner_client, owner, outsider):
    page = owner_client.get(reverse("account")).content.decode()
    assert 'name="review_emails"' in page and "checked" in page.split('name="review_emails"')[1].split(">")[0]

    response = owner_client.post(reverse("account"), {}, follow=True)  # an unticked box sends nothing
    assert "E-mails about clinician reviews are off." in response.content.decode()
    owner.refresh_from_db()
    assert owner.review_emails is False

    owner_client.post(reverse("account"), {"review_emails": "on"})
    owner.refresh_from_db()
    outsider.refresh_from_db()
    assert owner.review_emails is True and outsider.review_emails is True


def improvement_box_ticked(client) -> bool:
    return "checked" in client.get(reverse("account")).content.decode().split('name="model_improvement"')[1].split(">")[0]


def test_a_patient_opts_in_and_out_of_the_model_improvement_export_on_the_account_page(owner_client, owner):
    assert not improvement_box_ticked(owner_client)  # off until the patient ticks it, as the notice says

    response = owner_client.post(reverse("account"), {"review_emails": "on", "model_improvement": "on"}, follow=True)
    said = response.content.decode()
    assert "Your reviewed checks can go into the table used to improve the model." in said
    assert "E-mails about clinician reviews" not in said  # unchanged, so not said
    owner.refresh_from_db()
    assert owner.model_improvement is True and owner.review_emails is True
    assert improvement_box_ticked(owner_client)

    said = owner_client.post(reverse("account"), {"review_emails": "on"}, follow=True).content.decode()
    assert "Your checks are left out of the table used to improve the model." in said
    owner.refresh_from_db()
    assert owner.model_improvement is False and not improvement_box_ticked(owner_client)


def test_it_needs_a_sign_in_for_the_account_pages(client):
    for name in ("account", "account_export", "account_delete", "diagnoses:moles"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_it_flashes_a_message_on_sign_in_and_sign_out(client, owner):
    response = client.post(reverse("login"), {"username": "patient", "password": "correct horse battery"}, follow=True)
    assert "Signed in as patient" in response.content.decode()
    response = client.post(reverse("logout"), follow=True)
    assert "You are signed out" in response.content.decode()


# --- a lower estimate after a higher one ----------------------------------------------------------

def test_it_keeps_the_earlier_advice_when_a_later_photo_is_rated_lower(owner_client, owner, api_client):
    from rest_framework.authtoken.models import Token

    mole = Mole.objects.create(owner=owner, name="Right forearm")
    high = make_diagnosis(owner, mole=mole, risk="high", malignant=0.64, days_ago=20)
    make_diagnosis(owner, mole=mole, status="failed", days_ago=10)  # no result: not the one compared
    low = make_diagnosis(owner, mole=mole, risk="low", malignant=0.02, days_ago=1)

    page = owner_client.get(low.get_absolute_url()).content.decode()
    note = page.split('data-testid="previous-rated-higher"')[1].split("</div>")[0]
    assert "The photo before this one was rated higher" in note and "high risk" in note and "64.0%" in note
    assert "Please see a dermatologist within 2 weeks" in note and high.get_absolute_url() in note
    assert "Follow the advice for this mole's earlier photo, rated high risk; for this photo alone it would be: Low estimated risk" in page
    assert 'data-testid="previous-rated-higher"' not in owner_client.get(high.get_absolute_url()).content.decode()

    api_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    body = api_client.get(f"/api/v1/diagnoses/{low.pk}/").json()
    assert body["previous_rated_higher"]["id"] == str(high.pk) and body["previous_rated_higher"]["risk"] == "high"
    assert api_client.get(f"/api/v1/diagnoses/{high.pk}/").json()["previous_rated_higher"] is None


def test_a_review_that_cannot_tell_leaves_the_higher_rating_standing(owner, reviewer):

    mole = Mole.objects.create(owner=owner, name="Right forearm")
    high = make_diagnosis(owner, mole=mole, risk="high", malignant=0.64, days_ago=20)
    low = make_diagnosis(owner, mole=mole, risk="low", malignant=0.02, days_ago=1)
    services.review_save(diagnosis=high, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         notify=False)
    assert low.previous_photo_rated_higher() == high


@pytest.mark.parametrize("case", ["rated lower before", "same band", "earlier reviewed", "this one reviewed",
                                  "another mole", "untracked"])
def test_it_says_nothing_when_no_unreviewed_earlier_photo_was_rated_higher(owner_client, owner, case):
    mole = Mole.objects.create(owner=owner, name="Right forearm")
    earlier_risk = {"rated lower before": "low", "same band": "medium"}.get(case, "high")
    earlier_mole = Mole.objects.create(owner=owner, name="Back") if case == "another mole" else mole
    earlier = make_diagnosis(owner, mole=earlier_mole, risk=earlier_risk, malignant=0.5, days_ago=20)
    later = make_diagnosis(owner, mole=None if case == "untracked" else mole, risk="medium", malignant=0.3, days_ago=1)
    reviewed = {"earlier reviewed": earlier, "this one reviewed": later}.get(case)
    if reviewed:
        Review.objects.create(diagnosis=reviewed, verdict="agree", recommendation="monitor", reviewed_at=timezone.now())

    assert later.previous_photo_rated_higher() is None
    assert 'data-testid="previous-rated-higher"' not in owner_client.get(later.get_absolute_url()).content.decode()
