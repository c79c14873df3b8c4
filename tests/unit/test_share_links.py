"""Share with a doctor: an expiring, read-only link to one check's report, made and stopped by
its owner on the result page or through the API, opened by anyone holding it."""

import copy
import hashlib
import io
import json
import logging
import logging.config
import re
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review, ShareLink
from tests.conftest import make_image_bytes, set_throttle_rate

SHARED_HEADERS = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer",
                  "X-Robots-Tag": "noindex, nofollow"}
GONE = "This link has expired, or the report is no longer shared. If you still need it, ask the patient."


@pytest.fixture
def patient(django_user_model):
    """A patient whose name appears nowhere else on a page (unlike "patient", the owner fixture's)."""
    return django_user_model.objects.create_user("ana-lopez", "ana@example.com", "correct horse battery",
                                                 first_name="Ana", last_name="Lopez", consented_at=timezone.now())


@pytest.fixture
def patient_client(patient):
    browser = Client()
    browser.force_login(patient)
    return browser


def share(client, diagnosis, days=7):
    """Make a link on the result page as a patient does; returns the page it lands on."""
    return client.post(reverse("diagnoses:share", args=[diagnosis.pk]), {"days": days}, follow=True)


def shown_token(page) -> str:
    found = re.search(r'id="new-share-url"[^>]*value="http://testserver/shared/([A-Za-z0-9_-]+)/"', page)
    assert found, "the new link should be on the page"
    return found.group(1)


def make_link(diagnosis, days=7):
    return services.share_link_create(diagnosis=diagnosis, days=days)


def shared(token, suffix=""):
    return f"/shared/{token}/{suffix}"


def assert_shared_headers(response):
    for header, value in SHARED_HEADERS.items():
        assert response[header] == value, header


PHOTO_ALT, HEATMAP_ALT = "The photo of the mole", "Grad-CAM heatmap over the photo"


def img_src(page, alt) -> str:
    """The src of the page's one <img> with this alt text."""
    tags = re.findall(rf'<img\b[^>]*\balt="{re.escape(alt)}"[^>]*>', page)
    assert len(tags) == 1, f"one image {alt!r} expected, found {len(tags)}"
    return re.search(r'\bsrc="([^"]+)"', tags[0]).group(1)


def served_bytes(client, url) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    return b"".join(response.streaming_content)


def stored_bytes(field) -> bytes:
    with field.open("rb") as stored:
        return stored.read()


# --- making a link on the result page -----------------------------------------------------------

def test_it_shows_a_new_link_once_and_keeps_only_its_hash(patient_client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient, risk="high")
    page = patient_client.get(diagnosis.get_absolute_url()).content.decode()
    assert "Share with a doctor" in page and 'value="7" selected' in page  # 7 days unless chosen

    response = share(patient_client, diagnosis, days=30)
    assert response.redirect_chain[-1][0] == diagnosis.get_absolute_url() + "#share"
    page = response.content.decode()
    token = shown_token(page)
    assert "Anyone with this link can see this result and its photo until it expires." in page
    assert "data-copy=\"new-share-url\" hidden" in page  # the Copy button is the script's to show

    link = ShareLink.objects.get()
    assert link.diagnosis == diagnosis and link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert abs(link.expires_at - (link.created_at + timedelta(days=30))) < timedelta(seconds=1)
    assert link.is_active and link.open_count == 0 and link.revoked_at is None
    # The token itself is nowhere in the database: not in the link's row, not in the session.
    assert token not in json.dumps(ShareLink.objects.values().get(), default=str)
    assert not any(token in json.dumps(s.get_decoded()) for s in Session.objects.all())

    again = patient_client.get(diagnosis.get_absolute_url()).content.decode()
    assert token not in again and 'id="new-share-url"' not in again  # shown once
    assert "Active" in again and "opened 0 times" in again and "Stop sharing" in again


def test_the_share_box_says_that_the_link_shows_the_moles_name(patient_client, patient, make_diagnosis):
    # The shared report names the mole (test_anyone_with_the_link_reads_...): the patient, who
    # may have named it after themselves, is told before making the link.
    mole = Mole.objects.create(owner=patient, name="Ana's left calf", body_site="lower extremity")
    tracked, untracked = make_diagnosis(patient, mole=mole), make_diagnosis(patient)
    box = patient_client.get(tracked.get_absolute_url()).content.decode()
    assert "the mole's name \"Ana&#x27;s left calf\" and body site" in box
    assert "the mole's name" not in patient_client.get(untracked.get_absolute_url()).content.decode()


def test_it_lists_each_links_state_and_openings(patient_client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient)
    opened, token = make_link(diagnosis)
    expired, _ = make_link(diagnosis, days=1)
    withdrawn, _ = make_link(diagnosis)
    ShareLink.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    services.share_link_revoke(link=withdrawn)
    Client().get(shared(token))
    Client().get(shared(token))

    page = patient_client.get(diagnosis.get_absolute_url()).content.decode()
    links = page.split('data-testid="share-links"')[1]
    assert links.count("Stop sharing<") == 1  # only the active link can be stopped
    assert "Active" in links and "Expired" in links and "Withdrawn" in links
    assert "opened 2 times (last opened" in links and "opened 0 times" in links
    assert reverse("diagnoses:share_stop", args=[diagnosis.pk, opened.pk]) in links
    assert reverse("diagnoses:share_stop", args=[diagnosis.pk, expired.pk]) not in links


def test_it_stops_sharing_with_a_post(patient_client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient)
    link, token = make_link(diagnosis)
    stop = reverse("diagnoses:share_stop", args=[diagnosis.pk, link.pk])

    assert patient_client.get(stop).status_code == 405
    response = patient_client.post(stop, follow=True)
    assert "You stopped sharing this result" in response.content.decode()
    link.refresh_from_db()
    assert link.revoked_at is not None and link.state == "withdrawn"
    assert Client().get(shared(token)).status_code == 410


def test_stopping_a_link_on_the_result_page_goes_back_to_its_share_section(patient_client, patient,
                                                                          make_diagnosis):
    """Where the button was and the link now reads Withdrawn, as making one goes back there: not
    the top of the page."""
    diagnosis = make_diagnosis(patient)
    link, _token = make_link(diagnosis)
    response = patient_client.post(reverse("diagnoses:share_stop", args=[diagnosis.pk, link.pk]))
    assert response.status_code == 302 and response["Location"] == diagnosis.get_absolute_url() + "#share"
    made = patient_client.post(reverse("diagnoses:share", args=[diagnosis.pk]), {"days": 7})
    assert made["Location"] == response["Location"]


def test_who_has_opened_your_records_lists_the_links_of_every_check(patient_client, patient, outsider,
                                                                     make_diagnosis):
    shoulder = Mole.objects.create(owner=patient, name="Left shoulder")
    first, second = make_diagnosis(patient, mole=shoulder), make_diagnosis(patient)
    opened, token = make_link(first)
    withdrawn, _ = make_link(second, days=30)
    services.share_link_revoke(link=withdrawn)
    make_link(make_diagnosis(outsider))  # someone else's link is not listed
    Client().get(shared(token))
    Client().get(shared(token))

    page = patient_client.get(reverse("account_staff_access")).content.decode()
    links = page.split('data-testid="all-share-links"')[1].split("</section>")[0]
    assert links.count("<li") == 2
    assert f'href="{first.get_absolute_url()}#share"' in links and "(Left shoulder)" in links
    assert f'href="{second.get_absolute_url()}#share"' in links
    assert "Opened 2 times, last on" in links and "Opened 0 times" in links
    assert "Active" in links and "Withdrawn" in links
    assert links.count("Stop sharing<") == 1  # only the active one can be stopped
    assert "Nobody at the review desk has opened your records yet." in page

    account = patient_client.get(reverse("account")).content.decode()
    assert "1 active link you shared." in account


def test_it_stops_a_link_from_who_has_opened_your_records_and_goes_back_there(patient_client, patient,
                                                                              make_diagnosis):
    diagnosis = make_diagnosis(patient)
    (link, token), (other, _) = make_link(diagnosis), make_link(diagnosis)
    access_page = reverse("account_staff_access")
    stop = reverse("diagnoses:share_stop", args=[diagnosis.pk, link.pk])
    assert f'action="{stop}"' in patient_client.get(access_page).content.decode()

    response = patient_client.post(stop, {"next": access_page})
    assert response.status_code == 302 and response["Location"] == access_page
    assert Client().get(shared(token)).status_code == 410
    # Anywhere but this site, it goes back to the result page.
    response = patient_client.post(reverse("diagnoses:share_stop", args=[diagnosis.pk, other.pk]),
                                   {"next": "https://elsewhere.example/"})
    assert response["Location"] == diagnosis.get_absolute_url() + "#share"
    assert not ShareLink.objects.active().exists()
    page = patient_client.get(access_page).content.decode()
    assert "Stop sharing<" not in page and "You stopped sharing this result" in page


@pytest.mark.parametrize("status", ["queued", "running", "failed"])
def test_it_refuses_to_share_a_check_that_is_not_done(patient_client, patient, make_diagnosis, status):
    diagnosis = make_diagnosis(patient, status=status)
    assert "Share with a doctor" not in patient_client.get(diagnosis.get_absolute_url()).content.decode()

    page = share(patient_client, diagnosis).content.decode()
    assert ("still being analysed" if status != "failed" else "no result to share") in page
    assert not ShareLink.objects.exists()


def test_it_refuses_a_sixth_active_link(patient_client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient)
    links = [make_link(diagnosis)[0] for _ in range(services.SHARE_LINKS_PER_DIAGNOSIS)]

    page = share(patient_client, diagnosis).content.decode()
    assert "already has 5 active links" in page and 'id="new-share-url"' not in page
    assert ShareLink.objects.count() == 5
    # A link stopped or expired frees its place.
    services.share_link_revoke(link=links[0])
    ShareLink.objects.filter(pk=links[1].pk).update(expires_at=timezone.now())
    shown_token(share(patient_client, diagnosis).content.decode())
    shown_token(share(patient_client, diagnosis).content.decode())
    assert "already has 5 active links" in share(patient_client, diagnosis).content.decode()
    assert ShareLink.objects.active().count() == 5


def test_it_refuses_a_validity_not_offered(patient_client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient)
    assert "Choose how long the link works" in share(patient_client, diagnosis, days=365).content.decode()
    assert not ShareLink.objects.exists()
    with pytest.raises(ValueError):
        services.share_link_create(diagnosis=diagnosis, days=365)


def test_it_lets_nobody_else_share_or_stop_a_patients_check(outsider_client, client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient)
    link, _ = make_link(diagnosis)
    stop = reverse("diagnoses:share_stop", args=[diagnosis.pk, link.pk])

    assert outsider_client.post(reverse("diagnoses:share", args=[diagnosis.pk]), {"days": 7}).status_code == 404
    assert outsider_client.post(stop).status_code == 404
    assert client.post(stop).url.startswith(reverse("login"))  # not signed in
    assert ShareLink.objects.get().is_active and ShareLink.objects.count() == 1


def test_it_stops_only_a_link_of_the_check_named(patient_client, patient, make_diagnosis):
    mine, other = make_diagnosis(patient), make_diagnosis(patient)
    link, _ = make_link(other)
    assert patient_client.post(reverse("diagnoses:share_stop", args=[mine.pk, link.pk])).status_code == 404
    link.refresh_from_db()
    assert link.is_active


# --- the shared report --------------------------------------------------------------------------

def test_anyone_with_the_link_reads_the_report_without_the_patients_name(patient, make_diagnosis):
    mole = Mole.objects.create(owner=patient, name="Left calf", body_site="lower extremity")
    diagnosis = make_diagnosis(patient, risk="high", mole=mole)
    Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation="dermatologist_soon",
                          note="Please book a dermatologist.", reviewed_at=timezone.now())
    link, token = make_link(diagnosis)

    response = Client().get(shared(token))
    assert response.status_code == 200
    assert_shared_headers(response)
    page = response.content.decode()
    assert "72.0%" in page and "High risk" in page and "Melanoma" in page
    assert "Left calf" in page and "Leg" in page and "Please book a dermatologist." in page
    assert "test-model-1" in page and "This is not a diagnosis." in page and "All seven classes" in page
    assert "Shared by the patient" in page and "Link valid until" in page
    assert "ana-lopez" not in page and "Lopez" not in page and "ana@example.com" not in page
    assert "Back to the result" not in page and diagnosis.get_absolute_url() not in page
    assert img_src(page, PHOTO_ALT) == shared(token, "files/image/")
    assert img_src(page, HEATMAP_ALT) == shared(token, "files/heatmap/")
    link.refresh_from_db()
    assert link.open_count == 1 and link.last_opened_at is not None

    Client().get(shared(token, "files/image/"))  # the images are not openings
    Client().get(shared(token))
    link.refresh_from_db()
    assert link.open_count == 2

    yourself = Client()
    yourself.force_login(diagnosis.owner)  # the patient trying their own link
    assert yourself.get(shared(token)).status_code == 200
    link.refresh_from_db()
    assert link.open_count == 2


def test_each_report_shows_the_checks_photo_as_the_photo_and_its_heatmap_as_the_heatmap(
        patient_client, patient, make_diagnosis):
    make_diagnosis(patient)  # another check's files, which no report of this one may show
    diagnosis = make_diagnosis(patient, risk="high")
    _, token = make_link(diagnosis)
    own = patient_client.get(reverse("diagnoses:report", args=[diagnosis.pk])).content.decode()
    doctors = Client().get(shared(token)).content.decode()

    for page, reader, file_url in [
            (own, patient_client, lambda kind: reverse("diagnoses:file", args=[diagnosis.pk, kind])),
            (doctors, Client(), lambda kind: shared(token, f"files/{kind}/"))]:
        assert img_src(page, PHOTO_ALT) == file_url("image")
        assert img_src(page, HEATMAP_ALT) == file_url("heatmap")
        assert served_bytes(reader, img_src(page, PHOTO_ALT)) == stored_bytes(diagnosis.image)
        assert served_bytes(reader, img_src(page, HEATMAP_ALT)) == stored_bytes(diagnosis.heatmap)


def test_the_shared_report_gives_the_advice_as_what_the_patient_was_told(patient_client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient, risk="high")
    Diagnosis.objects.filter(pk=diagnosis.pk).update(photo_issues=["dark"])
    _, token = make_link(diagnosis)

    page = Client().get(shared(token)).content.decode()
    assert "Advice the patient was given." in page and "Photo quality, as the patient was told." in page
    assert "What to do next." not in page
    own = patient_client.get(reverse("diagnoses:report", args=[diagnosis.pk])).content.decode()
    assert "What to do next." in own and "Advice the patient was given." not in own


def test_a_report_keeps_the_higher_advice_of_the_photo_before(patient_client, patient, make_diagnosis):
    """A low photo after a high one: the patient was told to follow the high one's advice (the
    result page), and every report says so, a shared one without the earlier photos too."""
    mole = Mole.objects.create(owner=patient, name="Left calf", body_site="lower extremity")
    high = make_diagnosis(patient, risk="high", mole=mole, age_days=20)
    low = make_diagnosis(patient, risk="low", mole=mole)
    _, plain = services.share_link_create(diagnosis=low, days=7)
    _, with_earlier = services.share_link_create(diagnosis=low, days=7, with_earlier_photos=True)
    follow = "Follow the advice for this mole's earlier photo, rated high risk; for this photo alone it would be: Low estimated risk"

    own = patient_client.get(reverse("diagnoses:report", args=[low.pk])).content.decode()
    assert f"What to do next.</strong> {follow}" in own
    for page in (own, Client().get(shared(with_earlier)).content.decode()):
        note = page.split('data-testid="previous-rated-higher"')[1].split("</div>")[0]
        assert "high risk</strong> (72.0% malignant probability)" in note
        assert "follow the advice for that photo: High estimated risk. Please see a dermatologist" in note
    for token in (plain, with_earlier):
        page = Client().get(shared(token)).content.decode()
        note = page.split('data-testid="previous-rated-higher"')[1].split("</div>")[0]
        assert "as the patient was told" in note and "High estimated risk. Please see a dermatologist" in note
        assert f"Advice the patient was given.</strong> {follow}" in page
        assert high.get_absolute_url() not in page and low.get_absolute_url() not in page
    plain_page = Client().get(shared(plain)).content.decode()
    # made without the earlier photos: their band, which the advice names anyway, not their estimate
    assert "not shared in this report, was rated <strong>high risk</strong>" in plain_page
    assert "72.0%" not in plain_page
    assert 'data-testid="previous-rated-higher"' not in (
        patient_client.get(reverse("diagnoses:report", args=[high.pk])).content.decode())
    # and the share section tells the patient so before a link is made
    result = patient_client.get(low.get_absolute_url()).content.decode()
    assert "though it says that an earlier photo of this mole was rated high risk" in result


def test_it_serves_the_photo_and_heatmap_of_that_check_only(patient, make_diagnosis):
    diagnosis, other = make_diagnosis(patient), make_diagnosis(patient)
    Path(other.image.path).write_bytes(make_image_bytes(colour=(20, 200, 20)))  # so that a mix-up shows
    _, token = make_link(diagnosis)
    anyone = Client()
    photo = Path(diagnosis.image.path).read_bytes()

    image = anyone.get(shared(token, "files/image/"))
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert_shared_headers(image)
    assert b"".join(image.streaming_content) == photo
    heatmap = anyone.get(shared(token, "files/heatmap/"))
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"
    for kind in ("thumbnail", "sha256", "nothing"):
        assert anyone.get(shared(token, f"files/{kind}/")).status_code == 404
    # The link opens its own check only: the other one's files stay behind the sign-in.
    assert anyone.get(reverse("diagnoses:file", args=[other.pk, "image"])).url.startswith(reverse("login"))
    tampered = anyone.get(f"{shared(token, 'files/image/')}?pk={other.pk}&diagnosis={other.pk}")
    assert b"".join(tampered.streaming_content) == photo


def test_a_shared_file_missing_from_storage_answers_404_with_the_shared_headers(patient, make_diagnosis):
    """As on the patient's own pages (serve_file): a broken image in the doctor's report, not a
    server error."""
    diagnosis = make_diagnosis(patient)
    _, token = make_link(diagnosis)
    diagnosis.image.storage.delete(diagnosis.image.name)

    missing = Client().get(shared(token, "files/image/"))

    assert missing.status_code == 404
    assert_shared_headers(missing)
    assert Client().get(shared(token, "files/heatmap/")).status_code == 200


@pytest.mark.parametrize("how", ["expired", "withdrawn"])
def test_an_expired_or_withdrawn_link_is_gone(patient, make_diagnosis, how):
    link, token = make_link(make_diagnosis(patient))
    if how == "expired":
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        services.share_link_revoke(link=link)

    response = Client().get(shared(token))
    assert response.status_code == 410
    assert_shared_headers(response)
    assert GONE in response.content.decode()
    assert Client().get(shared(token, "files/image/")).status_code == 410
    link.refresh_from_db()
    assert link.open_count == 0


def test_the_links_of_a_deactivated_account_are_gone(patient, make_diagnosis):
    """An account the clinic closed (is_active off) shares nothing any more, as if each of its
    links had been withdrawn: the report, its files and its earlier photos."""
    mole = Mole.objects.create(owner=patient, name="Left calf")
    earlier = make_diagnosis(patient, mole=mole, age_days=30)
    link, token = services.share_link_create(diagnosis=make_diagnosis(patient, mole=mole), days=7,
                                             with_earlier_photos=True)
    pages = [shared(token), shared(token, "files/image/"), shared(token, f"earlier/{earlier.pk}/")]
    assert [Client().get(page).status_code for page in pages] == [200, 200, 200]
    patient.is_active = False
    patient.save(update_fields=["is_active"])

    responses = [Client().get(page) for page in pages]

    assert [response.status_code for response in responses] == [410, 410, 410]
    assert GONE in responses[0].content.decode()
    assert_shared_headers(responses[0])
    link.refresh_from_db()
    assert link.open_count == 1  # the opening before, none since


def test_an_unknown_token_is_not_found(db):
    response = Client().get(shared("not-a-token-anybody-was-given"))
    assert response.status_code == 404
    assert_shared_headers(response)
    # said to a doctor without an account, not as the patients' "another account" page
    assert "It may be incomplete" in response.content.decode()
    assert "another account" not in response.content.decode()
    assert Client().get(shared("not-a-token", "files/image/")).status_code == 404


def test_a_deleted_check_takes_its_links_with_it(patient, make_diagnosis, django_capture_on_commit_callbacks):
    diagnosis = make_diagnosis(patient)
    _, token = make_link(diagnosis)
    assert Client().get(shared(token)).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        services.diagnosis_delete(diagnosis=diagnosis)
    assert not ShareLink.objects.exists()
    assert Client().get(shared(token)).status_code == 404
    assert Client().get(shared(token, "files/image/")).status_code == 404


def test_it_answers_only_get(patient, make_diagnosis):
    _, token = make_link(make_diagnosis(patient))
    response = Client().post(shared(token))
    assert response.status_code == 405
    assert_shared_headers(response)


def test_it_limits_openings_per_client_address(patient, make_diagnosis, settings):
    set_throttle_rate(settings, "shared", "3/minute")
    link, token = make_link(make_diagnosis(patient))
    anyone = Client(REMOTE_ADDR="203.0.113.7")

    assert anyone.get(shared("a-guess")).status_code == 404  # guesses count too
    assert [anyone.get(shared(token)).status_code for _ in range(3)] == [200, 200, 429]
    refused = anyone.get(shared(token))
    assert int(refused["Retry-After"]) > 0 and "Please try again" in refused.content.decode()
    assert_shared_headers(refused)
    assert anyone.get(shared(token, "files/image/")).status_code == 200  # the page's images are not openings
    assert Client(REMOTE_ADDR="198.51.100.2").get(shared(token)).status_code == 200  # another address
    link.refresh_from_db()
    assert link.open_count == 3


def test_trying_tokens_on_the_image_addresses_counts_as_opening_reports(patient, make_diagnosis, settings):
    set_throttle_rate(settings, "shared", "3/minute")
    expired, expired_token = make_link(make_diagnosis(patient))
    ShareLink.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    _, token = make_link(make_diagnosis(patient))
    guesser = Client(REMOTE_ADDR="203.0.113.7")

    answers = [guesser.get(shared("a-guess", "files/image/")).status_code,
               guesser.get(shared("b-guess", f"earlier/{Diagnosis.objects.first().pk}/")).status_code,
               guesser.get(shared(expired_token, "files/heatmap/")).status_code]
    assert answers == [404, 404, 410]
    for refused in (guesser.get(shared("c-guess", "files/image/")),
                    guesser.get(shared("d-guess", f"earlier/{Diagnosis.objects.first().pk}/")),
                    guesser.get(shared(token))):  # and the reports themselves, on the same count
        assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
        assert_shared_headers(refused)
    assert Client(REMOTE_ADDR="198.51.100.2").get(shared(token, "files/image/")).status_code == 200


def test_a_reports_images_load_whole_yet_are_counted(patient, make_diagnosis, settings):
    """A page view is one opening and 2 + N image requests (photo, heatmap, N earlier photos):
    the images have a count of their own, ten times the openings', so that even a page with more
    earlier photos than SHARED_REPORT_RATE's openings loads whole, a few times over."""
    mole = Mole.objects.create(owner=patient, name="Left calf")
    for age in range(40, 5, -1):  # 35 earlier photos
        make_diagnosis(patient, mole=mole, age_days=age)
    link, token = services.share_link_create(diagnosis=make_diagnosis(patient, mole=mole), days=7,
                                             with_earlier_photos=True)
    doctor = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(3):  # opened, and reloaded twice
        page = doctor.get(shared(token)).content.decode()
        images = re.findall(r'<img\b[^>]*\bsrc="(/shared/[^"]+)"', page)
        assert len(images) == 2 + 35
        assert [doctor.get(url).status_code for url in images] == [200] * len(images)

    set_throttle_rate(settings, "shared", "3/minute")  # 30 images a minute
    scraper = Client(REMOTE_ADDR="198.51.100.9")
    fetched = [scraper.get(shared(token, "files/image/")).status_code for _ in range(31)]
    assert fetched == [200] * 30 + [429]
    assert scraper.get(shared(token)).status_code == 200  # its openings are counted apart


def test_the_request_log_leaves_the_token_out(patient, make_diagnosis, caplog):
    caplog.set_level("INFO", logger="molesite.request")
    _, token = make_link(make_diagnosis(patient))
    Client().get(shared(token))
    Client().get(shared(token, "files/image/"))

    paths = [record.path for record in caplog.records if record.name == "molesite.request"]
    assert paths == ["/shared/<token>/", "/shared/<token>/files/image/"]
    assert not any(token in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("formatter", ["plain", "json"])
def test_no_log_line_holds_a_token(settings, formatter):
    """Other loggers than the request log see the path too: runserver's request lines,
    django.request's warnings and the request object they carry as an extra."""
    # a copy: configuring a formatter pops its "()" from the dict it is given
    format_line = logging.config.DictConfigurator(settings.LOGGING).configure_formatter(
        copy.deepcopy(settings.LOGGING["formatters"][formatter])).format
    token = "pWXs_N6FZCFR3jJouTvbvB0jHAySqEpHwkIqqyZNJXQ"
    server = logging.LogRecord("django.server", logging.INFO, "", 0, '"%s" %s %s',
                               (f"GET /shared/{token}/files/heatmap/ HTTP/1.1", 200, 33264), None)
    gone = logging.LogRecord("django.request", logging.WARNING, "", 0, "Gone: %s", (f"/shared/{token}/",), None)
    gone.request = f"<WSGIRequest: GET '/shared/{token}/'>"
    for record in (server, gone):
        line = format_line(record)
        assert token not in line and "/shared/<token>/" in line, line
    for logger in ("django", "django.server"):  # not through Django's own handlers
        assert settings.LOGGING["loggers"][logger]["handlers"] == ["console"]


# --- the mole's earlier photos on the report -----------------------------------------------------

@pytest.fixture
def mole_history(patient, outsider, make_diagnosis):
    """A mole photographed three times (the middle photo's analysis failed), a later photo, a photo of
    another mole and another patient's; returns (earlier photos, the check shared, the others)."""
    mole = Mole.objects.create(owner=patient, name="Left calf", body_site="lower extremity")
    first = make_diagnosis(patient, risk="low", mole=mole, age_days=200)
    make_diagnosis(patient, status="failed", mole=mole, age_days=150)
    second = make_diagnosis(patient, risk="medium", mole=mole, age_days=100)
    shared_check = make_diagnosis(patient, risk="high", mole=mole, age_days=10)
    later = make_diagnosis(patient, risk="low", mole=mole)
    other_mole = make_diagnosis(patient, mole=Mole.objects.create(owner=patient, name="Back"), age_days=300)
    someone_elses = make_diagnosis(outsider, age_days=300)
    return [first, second], shared_check, [later, other_mole, someone_elses]


def earlier_section(page):
    return page.split('data-testid="earlier-photos"')[1].split("</section>")[0] if "earlier-photos" in page else ""


def test_the_owners_report_shows_the_moles_earlier_photos_oldest_first(patient_client, mole_history):
    (first, second), shared_check, others = mole_history
    page = patient_client.get(reverse("diagnoses:report", args=[shared_check.pk])).content.decode()
    section = earlier_section(page)
    assert "2 photos of Left calf uploaded before this one" in section
    urls = re.findall(r'src="([^"]+)"', section)
    assert urls == [reverse("diagnoses:file", args=[d.pk, "thumbnail"]) for d in (first, second)]
    assert "5.0%" in section and "35.0%" in section and "Low" in section and "Medium" in section
    assert not any(str(d.pk) in section for d in others)
    first_report = patient_client.get(reverse("diagnoses:report", args=[first.pk])).content.decode()
    assert earlier_section(first_report) == ""  # nothing before the first photo


def test_a_link_shows_the_earlier_photos_only_when_made_with_them(patient_client, mole_history):
    (first, second), shared_check, others = mole_history
    page = patient_client.get(shared_check.get_absolute_url()).content.decode()
    assert "Also show the 2 earlier photos of Left calf" in page
    assert 'name="with_earlier_photos"' in page and "checked" not in page.split('name="with_earlier_photos"')[1][:40]

    plain_token = shown_token(share(patient_client, shared_check).content.decode())
    response = patient_client.post(reverse("diagnoses:share", args=[shared_check.pk]),
                                   {"days": 7, "with_earlier_photos": "on"}, follow=True)
    with_token = shown_token(response.content.decode())
    assert "with the earlier photos" in response.content.decode()
    assert [link.with_earlier_photos for link in ShareLink.objects.order_by("created_at")] == [False, True]

    doctor = Client()
    assert earlier_section(doctor.get(shared(plain_token)).content.decode()) == ""
    assert doctor.get(shared(plain_token, f"earlier/{first.pk}/")).status_code == 404

    section = earlier_section(doctor.get(shared(with_token)).content.decode())
    assert re.findall(r'src="([^"]+)"', section) == [shared(with_token, f"earlier/{d.pk}/") for d in (first, second)]
    photo = doctor.get(shared(with_token, f"earlier/{first.pk}/"))
    assert photo.status_code == 200 and photo["Content-Type"] == "image/jpeg"
    # first's own thumbnail: every row's differs (make_diagnosis), the shared check's included
    assert b"".join(photo.streaming_content) == stored_bytes(first.thumbnail)
    assert stored_bytes(first.thumbnail) != stored_bytes(shared_check.thumbnail)
    assert_shared_headers(photo)
    for other in [*others, shared_check]:  # a later photo, another mole's, another patient's, the check itself
        assert doctor.get(shared(with_token, f"earlier/{other.pk}/")).status_code == 404
    assert doctor.get(shared(with_token, "earlier/not-a-uuid/")).status_code == 404

    services.share_link_revoke(link=ShareLink.objects.get(with_earlier_photos=True))
    assert doctor.get(shared(with_token, f"earlier/{first.pk}/")).status_code == 410


def test_a_check_without_earlier_photos_offers_no_such_choice(patient_client, patient, make_diagnosis):
    untracked = make_diagnosis(patient)
    page = patient_client.get(untracked.get_absolute_url()).content.decode()
    assert "Share with a doctor" in page and "with_earlier_photos" not in page


# --- the REST API ------------------------------------------------------------------------------

def links_url(diagnosis):
    return f"/api/v1/diagnoses/{diagnosis.pk}/share-links/"


def test_the_api_makes_lists_and_revokes_links(owner_api, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="medium")

    made = owner_api.post(links_url(diagnosis), {"days": 1})
    assert made.status_code == 201
    body = made.json()
    token = re.fullmatch(r"http://testserver/shared/([A-Za-z0-9_-]+)/", body["url"]).group(1)
    link = ShareLink.objects.get(pk=body["id"])
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert body["state"] == "active" and body["open_count"] == 0 and body["revoked_at"] is None
    assert abs(link.expires_at - link.created_at - timedelta(days=1)) < timedelta(seconds=1)
    assert Client().get(body["url"]).status_code == 200
    assert owner_api.post(links_url(diagnosis), {}).json()["expires_at"]  # 7 days unless said

    listed = owner_api.get(links_url(diagnosis))
    assert listed.status_code == 200 and listed.json()["count"] == 2
    first = listed.json()["results"][1]
    assert first["id"] == str(link.pk) and first["open_count"] == 1 and first["last_opened_at"]
    assert "url" not in first and token not in listed.content.decode() and link.token_hash not in listed.content.decode()

    revoked = owner_api.post(f"{links_url(diagnosis)}{link.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["state"] == "withdrawn" and revoked.json()["revoked_at"]
    assert Client().get(body["url"]).status_code == 410
    assert owner_api.post(f"{links_url(diagnosis)}{link.pk}/revoke/").json() == revoked.json()  # idempotent


def test_the_api_refuses_bad_days_and_a_check_not_done(owner_api, owner, make_diagnosis):
    done, queued = make_diagnosis(owner), make_diagnosis(owner, status="queued")

    bad = owner_api.post(links_url(done), {"days": 3})
    assert bad.status_code == 400 and "days" in bad.json()
    refused = owner_api.post(links_url(queued), {"days": 7})
    assert refused.status_code == 409 and "still being analysed" in refused.json()["detail"]
    for _ in range(services.SHARE_LINKS_PER_DIAGNOSIS):
        assert owner_api.post(links_url(done), {"days": 7}).status_code == 201
    sixth = owner_api.post(links_url(done), {"days": 7})
    assert sixth.status_code == 409 and "already has 5 active links" in sixth.json()["detail"]


def test_the_api_shows_and_revokes_links_to_their_owner_only(owner_api, outsider_api, api_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)
    link, _ = make_link(diagnosis)
    revoke = f"{links_url(diagnosis)}{link.pk}/revoke/"

    assert outsider_api.get(links_url(diagnosis)).status_code == 404
    assert outsider_api.post(links_url(diagnosis), {"days": 7}).status_code == 404
    assert outsider_api.post(revoke).status_code == 404
    assert api_client.get(links_url(diagnosis)).status_code == 401
    assert owner_api.post(f"/api/v1/diagnoses/{diagnosis.pk}/share-links/not-a-uuid/revoke/").status_code == 404
    other = make_diagnosis(owner)
    assert owner_api.post(f"{links_url(other)}{link.pk}/revoke/").status_code == 404  # not that check's link
    assert ShareLink.objects.count() == 1 and ShareLink.objects.get().is_active


def test_the_api_lists_the_links_of_all_the_owners_checks(owner_api, outsider_api, api_client, owner, outsider,
                                                          make_diagnosis):
    first, second = make_diagnosis(owner), make_diagnosis(owner)
    older, token = make_link(first)
    newer, _ = make_link(second)
    theirs, _ = make_link(make_diagnosis(outsider))
    Client().get(shared(token))

    listed = owner_api.get("/api/v1/share-links/")
    assert listed.status_code == 200 and listed.json()["count"] == 2
    rows = listed.json()["results"]
    assert [row["id"] for row in rows] == [str(newer.pk), str(older.pk)]  # newest first
    assert rows[0]["diagnosis"] == f"http://testserver/api/v1/diagnoses/{second.pk}/"
    assert rows[1]["diagnosis"] == f"http://testserver/api/v1/diagnoses/{first.pk}/" and rows[1]["open_count"] == 1
    assert token not in listed.content.decode() and "url" not in rows[0]
    assert [row["id"] for row in outsider_api.get("/api/v1/share-links/").json()["results"]] == [str(theirs.pk)]
    assert api_client.get("/api/v1/share-links/").status_code == 401
    assert owner_api.post("/api/v1/share-links/", {"days": 7}).status_code == 405  # made on a diagnosis


def test_the_api_makes_a_link_with_the_earlier_photos(owner_api, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left calf")
    earlier = make_diagnosis(owner, mole=mole, age_days=30)
    diagnosis = make_diagnosis(owner, risk="high", mole=mole)

    assert owner_api.post(links_url(diagnosis), {"days": 7}).json()["with_earlier_photos"] is False
    made = owner_api.post(links_url(diagnosis), {"days": 7, "with_earlier_photos": True}, format="json")
    assert made.status_code == 201 and made.json()["with_earlier_photos"] is True
    page = Client().get(made.json()["url"]).content.decode()
    assert f"earlier/{earlier.pk}/" in page
    listed = owner_api.get("/api/v1/share-links/").json()["results"]
    assert [row["with_earlier_photos"] for row in listed] == [True, False]


# --- the patient's data ------------------------------------------------------------------------

def test_the_data_export_holds_the_links_without_their_tokens(patient_client, patient, make_diagnosis):
    diagnosis = make_diagnosis(patient)
    opened, token = make_link(diagnosis)
    withdrawn, other_token = make_link(diagnosis, days=30)
    Client().get(shared(token))
    services.share_link_revoke(link=withdrawn)

    archive = zipfile.ZipFile(io.BytesIO(b"".join(patient_client.get(reverse("account_export")).streaming_content)))
    text = archive.read("data.json").decode()
    links = json.loads(text)["diagnoses"][0]["share_links"]
    assert [(link["open_count"], link["revoked_at"] is not None) for link in links] == [(1, False), (0, True)]
    assert set(links[0]) == {"created_at", "expires_at", "revoked_at", "with_earlier_photos", "open_count",
                             "last_opened_at"}
    assert links[0]["last_opened_at"] and links[1]["last_opened_at"] is None
    for secret in (token, other_token, opened.token_hash, withdrawn.token_hash):
        assert secret not in text


def test_deleting_the_account_deletes_its_links(patient_client, patient, outsider, make_diagnosis):
    _, token = make_link(make_diagnosis(patient))
    theirs, _ = make_link(make_diagnosis(outsider))

    response = patient_client.post(reverse("account_delete"), {"password": "correct horse battery", "confirm": "on"})
    assert response.status_code == 302
    assert list(ShareLink.objects.all()) == [theirs]
    assert not Diagnosis.objects.filter(owner_id=patient.pk).exists()
    assert Client().get(shared(token)).status_code == 404
