"""Accessibility in the markup the server sends: links whose names, read alone (a screen reader's
list of links), tell one from another; the menu's link to a section marked as the current page
only on that page; the upload field's place for the script's message; the review desk's help
text link told from its text by more than colour. Browser behaviour (focus, the script's own
attributes) is in tests/e2e/test_accessibility.py."""

import re
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnoses.models import Diagnosis, Mole

pytestmark = pytest.mark.django_db


def text(html: str) -> str:
    """What a screen reader reads of an element's content: its text, hidden spans included."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def history_names(page: str):
    """Each history row's link to its result and its delete button, by accessible name."""
    results = [text(m) for m in re.findall(
        r'<a class="fw-semibold stretched-link[^"]*" href="[^"]*">(.*?)</a>', page, re.S)]
    deletes = re.findall(r'<a class="[^"]*history-delete"[^>]*aria-label="([^"]*)"', page)
    return results, deletes


def test_history_rows_of_the_same_minute_have_links_of_their_own(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    minute = datetime(2026, 12, 7, 21, 56, tzinfo=dt_timezone.utc)
    rows = [make_diagnosis(owner, risk="medium", mole=mole), make_diagnosis(owner, risk="high"),
            make_diagnosis(owner, risk="high"), make_diagnosis(owner, status="queued")]
    for seconds, row in enumerate(rows):
        Diagnosis.objects.filter(pk=row.pk).update(created_at=minute + timedelta(seconds=seconds * 7))

    with timezone.override("UTC"):
        results, deletes = history_names(owner_client.get(reverse("diagnoses:list")).content.decode())

    assert len(results) == len(deletes) == 4
    assert len(set(results)) == 4 and len(set(deletes)) == 4, (results, deletes)
    # newest first; each delete button names the mole (or none), the time and what the result is
    assert results[0] == "Untracked mole, 7 Dec 2026, 21:56:21"
    assert deletes == [
        "Delete the photo of an untracked mole, 7 Dec 2026, 21:56:21, queued",
        "Delete the photo of an untracked mole, 7 Dec 2026, 21:56:14, high risk",
        "Delete the photo of an untracked mole, 7 Dec 2026, 21:56:07, high risk",
        "Delete the photo of Left shoulder, 7 Dec 2026, 21:56:00, medium risk",
    ]


def test_the_compare_pages_two_result_links_say_which_photo(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    before = make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    after = make_diagnosis(owner, risk="medium", mole=mole)
    page = owner_client.get(reverse("diagnoses:mole_compare", args=[mole.pk])).content.decode()

    names = [text(m) for m in re.findall(r'<a class="ms-auto" href="[^"]*">(.*?)</a>', page, re.S)]

    from django.utils import formats

    def written(d):
        return formats.date_format(timezone.localtime(d.created_at), "DATETIME_FORMAT")

    assert names == [f"The full result of the before photo, {written(before)}",
                     f"The full result of the after photo, {written(after)}"]


def current_links(page: str):
    """The main menu's links marked current: (aria-current's value, the link's text)."""
    return re.findall(r'<a class="nav-link[^"]*active" aria-current="([^"]*)"[^>]*>([^<]*)</a>', page)


@pytest.mark.parametrize("url_name, menu, current", [
    ("diagnoses:list", "My history", "page"), ("diagnoses:moles", "My moles", "page"),
    ("diagnoses:detail", "My history", "true"), ("diagnoses:report", "My history", "true"),
    ("diagnoses:delete", "My history", "true"), ("diagnoses:mole", "My moles", "true"),
    ("diagnoses:mole_edit", "My moles", "true"), ("diagnoses:mole_compare", "My moles", "true"),
])
def test_the_menu_says_current_page_only_on_the_page_it_links_to(owner_client, owner, make_diagnosis,
                                                                url_name, menu, current):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    make_diagnosis(owner, risk="low", mole=mole, age_days=30)
    latest = make_diagnosis(owner, risk="medium", mole=mole)
    args = [] if url_name in ("diagnoses:list", "diagnoses:moles") else [
        mole.pk if url_name.startswith("diagnoses:mole") else latest.pk]
    page = owner_client.get(reverse(url_name, args=args)).content.decode()
    assert current_links(page) == [(current, menu)]


def test_the_upload_fields_script_message_has_an_id_to_be_named_by(owner_client):
    page = owner_client.get(reverse("diagnoses:new")).content.decode()
    box = re.search(r'<div class="client-error"[^>]*>', page).group(0)
    assert 'id="id_image_client_error"' in box and 'role="alert"' in box


def test_the_agreement_pages_help_link_is_underlined(reviewer_client):
    page = reviewer_client.get("/admin/diagnoses/review/agreement/").content.decode()
    help_text = re.search(r'<p class="help">(.*?)</p>', page, re.S).group(1)
    links = re.findall(r"<a [^>]*>", help_text)
    assert links and all('style="text-decoration: underline"' in link for link in links)
