"""Accessibility in the pages' markup, as the server sends it: a refused account form announced
and focused, one id per error list, the sign-up address offered by the browser, and a result's
tab title of its own. What needs a browser (focus rings, live regions) is in
tests/e2e/test_accessibility.py."""

import re
from collections import Counter
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import formats, timezone

from diagnoses.models import Mole
from tests.conftest import ask_for_password_reset

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # the owner's (tests/conftest.py)


class Elements(HTMLParser):
    """Each element's tag and attributes, in the order of the document."""

    def __init__(self, page: str):
        super().__init__()
        self.found = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def with_id(self, element_id):
        return [(tag, attrs) for tag, attrs in self.found if attrs.get("id") == element_id]


def elements(response) -> Elements:
    return Elements(response.content.decode())


# --- a refused form: its summary is announced and takes the focus -------------------------------

def refused_sign_in(client, request):
    request.getfixturevalue("owner")
    return client.post(reverse("login"), {"username": "patient", "password": "not the password"})


def refused_sign_up(client, request):
    return client.post(reverse("signup"), {"username": "ana", "email": "ana@example.com",
                                           "password1": "a long pass phrase",
                                           "password2": "another pass phrase", "consent": "on"})


def refused_password_change(client, request):
    client.force_login(request.getfixturevalue("owner"))
    return client.post(reverse("password_change"), {
        "old_password": "not the password", "new_password1": "a new long pass phrase",
        "new_password2": "a new long pass phrase"})


def refused_new_password(client, request):
    """The forgotten password's link opened, and two passwords that differ."""
    owner, mailoutbox = request.getfixturevalue("owner"), request.getfixturevalue("mailoutbox")
    assert ask_for_password_reset(client, owner.email).status_code == 302
    link = next(line for line in mailoutbox[0].body.splitlines()
                if "/accounts/password/reset/" in line)
    form_url = client.get(urlsplit(link).path, follow=True).redirect_chain[-1][0]
    return client.post(form_url, {"new_password1": "a new long pass phrase",
                                  "new_password2": "another new pass phrase"})


def refused_password_reset(client, request):
    return client.post(reverse("password_reset"), {"email": "not an address"})


def refused_email_change(client, request):
    client.force_login(request.getfixturevalue("owner"))
    return client.post(reverse("email_change"), {"email": "new@example.com", "password": "wrong"})


def refused_account_deletion(client, request):
    client.force_login(request.getfixturevalue("owner"))
    return client.post(reverse("account_delete"), {"password": "wrong", "confirm": "on"})


def refused_agreement(client, request):
    patient = request.getfixturevalue("django_user_model").objects.create_user(
        "made-by-the-clinic", "clinic@example.com", PASSWORD)  # never agreed
    client.force_login(patient)
    return client.post(reverse("agree"), {"next": "/diagnoses/"})  # as the page sends it


def refused_second_step(client, request):
    client.force_login(request.getfixturevalue("reviewer"))
    return client.post(reverse("two_step"), {"code": ""})


@pytest.mark.parametrize("refused", [
    refused_sign_in, refused_sign_up, refused_password_change, refused_new_password,
    refused_password_reset, refused_email_change, refused_account_deletion, refused_agreement,
    refused_second_step,
], ids=lambda refused: refused.__name__)
def test_a_refused_account_form_says_so_in_an_alert_that_takes_the_focus(client, request, refused):
    """Django's auth forms autofocus their first field, so a screen reader would start there and
    never read the error: the summary takes the focus, and no field autofocuses then."""
    response = refused(client, request)
    assert response.status_code in (200, 400)
    page = elements(response)
    [(tag, summary)] = page.with_id("form-errors")
    assert summary["role"] == "alert" and summary["tabindex"] == "-1"
    autofocused = [attrs for _, attrs in page.found if "autofocus" in attrs]
    assert autofocused == [summary]
    # what went wrong: the fields' problems are below it, the form's own (sign-in's) in it
    assert re.search(r"Please correct the problem|Please enter a correct username and password",
                     response.content.decode())


def test_an_account_form_not_yet_sent_has_no_summary(client):
    page = elements(client.get(reverse("login")))
    assert page.with_id("form-errors") == []
    # the field keeps Django's autofocus
    assert [attrs["name"] for _, attrs in page.found if "autofocus" in attrs] == ["username"]


# --- a ticked box's error list: one id, the one aria-describedby names --------------------------

def unticked_sign_up(client, request):
    return client.post(reverse("signup"), {"username": "ana", "email": "ana@example.com",
                                           "password1": "a long pass phrase",
                                           "password2": "a long pass phrase"})


def unticked_account_deletion(client, request):
    client.force_login(request.getfixturevalue("owner"))
    return client.post(reverse("account_delete"), {"password": PASSWORD})


@pytest.mark.parametrize("unticked, box", [
    (unticked_sign_up, "id_consent"), (refused_agreement, "id_consent"),
    (unticked_account_deletion, "id_confirm"),
], ids=["sign-up", "agreement", "account deletion"])
def test_a_checkbox_error_has_one_id_which_the_box_points_to(client, request, unticked, box):
    """Django 5.2 gives a field's error list the id <field>_error itself: a wrapper with that id
    too would make two, and aria-describedby would name the wrong one."""
    response = unticked(client, request)
    assert response.status_code in (200, 400)
    page = elements(response)
    twice = [element_id for element_id, count in
             Counter(attrs["id"] for _, attrs in page.found if "id" in attrs).items() if count > 1]
    assert twice == []
    [(tag, errors)] = page.with_id(f"{box}_error")
    assert tag == "ul" and "errorlist" in errors["class"]
    [(_, checkbox)] = page.with_id(box)
    assert checkbox["aria-invalid"] == "true"
    assert f"{box}_error" in checkbox["aria-describedby"].split()


# --- sign-up: the browser may fill in the address -----------------------------------------------

def test_sign_up_asks_the_browser_for_the_email_address(client):
    [(_, email)] = elements(client.get(reverse("signup"))).with_id("id_email")
    assert email["type"] == "email" and email["autocomplete"] == "email"


# --- a result's title: its date and its mole ----------------------------------------------------

def title_of(response) -> str:
    title = re.search(r"<title>(.*?)</title>", response.content.decode(), re.S).group(1)
    return " ".join(title.split())  # as a browser reads it


def test_each_result_page_has_a_title_of_its_own(owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    older = make_diagnosis(owner, mole=mole, age_days=30)
    newer = make_diagnosis(owner)

    titles = {d.pk: title_of(owner_client.get(d.get_absolute_url())) for d in (older, newer)}

    when = formats.date_format(timezone.localtime(older.created_at), "DATETIME_FORMAT")
    assert titles[older.pk] == f"Result {when} · Left shoulder · molesite"
    assert titles[newer.pk].startswith("Result ") and "Left shoulder" not in titles[newer.pk]
    assert titles[older.pk] != titles[newer.pk]
