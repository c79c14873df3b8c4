"""Pages that agree with themselves and with each other: a printable report offered only for a
finished result (and its address going to the result page otherwise), one upload button on a
failed result, one name for the upload page, error pages titled as they are headed, sign-up and
the review desk's sign-in in the site's words, and the agreement figures as wide as their
heading."""

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diagnoses.models import Mole, Review

pytestmark = pytest.mark.django_db

UNFINISHED = ["queued", "running", "failed"]


def title_of(page: str) -> str:
    """The page's <title>, as a browser reads it."""
    return " ".join(re.search(r"<title>(.*?)</title>", page, re.S).group(1).split())


def h1_of(page: str) -> str:
    """The text of the page's one <h1>, its tags and runs of white space made one space."""
    (heading,) = re.findall(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", heading).split())


def labels_of(page: str) -> list[str]:
    return [" ".join(re.sub(r"<[^>]+>", " ", label).split())
            for label in re.findall(r"<label[^>]*>(.*?)</label>", page, re.S)]


# --- 1. the printable report: only for a finished result --------------------------------------


def test_a_finished_result_offers_its_printable_report_on_the_page_and_in_the_fragment(
        owner_client, owner, make_diagnosis):
    """In the fragment the page's script swaps in (diagnoses:status) too: a result that comes in
    while the page is open brings its report link with it."""
    diagnosis = make_diagnosis(owner, risk="medium")
    report = reverse("diagnoses:report", args=[diagnosis.pk])
    page = owner_client.get(diagnosis.get_absolute_url()).content.decode()
    fragment = owner_client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()["html"]
    for where in (page, fragment):
        assert f'href="{report}">Printable report</a>' in where
    assert page.count(report) == 1


@pytest.mark.parametrize("status", UNFINISHED)
def test_a_result_with_nothing_to_print_offers_no_report(owner_client, owner, make_diagnosis, status):
    diagnosis = make_diagnosis(owner, status=status)
    report = reverse("diagnoses:report", args=[diagnosis.pk])
    page = owner_client.get(diagnosis.get_absolute_url()).content.decode()
    fragment = owner_client.get(reverse("diagnoses:status", args=[diagnosis.pk])).json()["html"]
    for where in (page, fragment):
        assert report not in where and "Printable report" not in where


@pytest.mark.parametrize("status, said", [
    ("queued", "This check is still being analysed: its report can be printed once its result is ready."),
    ("running", "This check is still being analysed: its report can be printed once its result is ready."),
    ("failed", "This check has no report to print: its analysis did not complete."),
])
def test_the_report_of_a_result_not_in_goes_to_the_result_page_which_says_why(
        owner_client, owner, make_diagnosis, status, said):
    diagnosis = make_diagnosis(owner, status=status)
    response = owner_client.get(reverse("diagnoses:report", args=[diagnosis.pk]), follow=True)
    assert response.redirect_chain == [(diagnosis.get_absolute_url(), 302)]
    page = response.content.decode()
    assert said in page and "Print / save as PDF" not in page
    # Still being analysed: dropped by the page's script once the result is in, as the upload's
    # "Photo received" is (diagnosis-status.js, data-notice~="analysis-pending").
    assert ('data-notice="analysis-pending"' in page) is (status != "failed")


def test_the_report_of_a_finished_result_is_the_report(owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    response = owner_client.get(reverse("diagnoses:report", args=[diagnosis.pk]))
    assert response.status_code == 200 and "Print / save as PDF" in response.content.decode()


# --- 2. a failed result: one upload button --------------------------------------------------------


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "of a tracked mole"])
def test_a_failed_result_offers_one_upload_button(owner_client, owner, make_diagnosis, tracked):
    mole = Mole.objects.create(owner=owner, name="Left shoulder") if tracked else None
    diagnosis = make_diagnosis(owner, status="failed", mole=mole)
    page = owner_client.get(diagnosis.get_absolute_url()).content.decode()
    content = page.split('id="main"', 1)[1]  # not the menu's "Check a mole"
    assert len(re.findall(r'href="{}[^"]*"'.format(reverse("diagnoses:new")), content)) == 1


# --- 3. the upload page: "Check a mole" everywhere --------------------------------------------------


def test_the_upload_page_is_check_a_mole_in_the_menu_the_buttons_its_title_and_its_heading(owner_client):
    new = reverse("diagnoses:new")
    page = owner_client.get(new).content.decode()
    assert title_of(page) == "Check a mole · molesite" and h1_of(page) == "Check a mole"
    assert f'href="{new}">Check a mole</a>' in page  # the menu
    for url in (reverse("diagnoses:list"), reverse("diagnoses:moles")):
        page = owner_client.get(url).content.decode()
        assert page.count(f'href="{new}">Check a mole</a>') == 2, url  # the menu and the button
        assert "New check" not in page, url


def test_the_start_page_is_titled_as_it_is_headed_not_as_the_upload_page(client):
    page = client.get(reverse("home")).content.decode()
    assert title_of(page) == f"{h1_of(page)} · molesite" != "Check a mole · molesite"


# --- 4. the error pages: titled as they are headed ----------------------------------------------


@pytest.fixture
def privacy_raises(monkeypatch):
    """Make the privacy notice's view raise the given exception (it renders through this name)."""
    def raising(exception):
        def render(*args, **kwargs):
            raise exception
        monkeypatch.setattr("diagnoses.views.render", render)
        return reverse("privacy")
    return raising


def test_the_404_page_is_titled_as_it_is_headed(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert title_of(page) == "This page does not exist · molesite" == f"{h1_of(page)} · molesite"


def test_the_403_page_is_titled_as_it_is_headed(client, privacy_raises):
    response = client.get(privacy_raises(PermissionDenied()))
    assert response.status_code == 403
    page = response.content.decode()
    assert title_of(page) == "You cannot open this page · molesite" == f"{h1_of(page)} · molesite"


def test_the_500_page_is_titled_as_it_is_headed(privacy_raises):
    response = Client(raise_request_exception=False).get(privacy_raises(RuntimeError("broken")))
    assert response.status_code == 500
    page = response.content.decode()
    assert title_of(page) == "Something went wrong on our side · molesite" == f"{h1_of(page)} · molesite"


def test_the_expired_form_page_is_titled_as_it_is_headed():
    response = Client(enforce_csrf_checks=True).post(reverse("login"), {"username": "a", "password": "b"})
    assert response.status_code == 403
    page = response.content.decode()
    assert title_of(page) == "That form has expired · molesite" == f"{h1_of(page)} · molesite"


# --- 5. sign-up in the site's words -------------------------------------------------------------


def test_sign_up_names_its_fields_as_the_other_account_pages_do(client, owner_client):
    signup = Client().get(reverse("signup")).content.decode()
    labels = labels_of(signup)
    assert labels[:4] == ["Username", "E-mail address", "Password", "Password confirmation"]
    assert "Type the password again." in signup and "Enter the same password as before" not in signup
    # The same words where the other pages ask for an address or a password again.
    assert labels_of(Client().get(reverse("password_reset")).content.decode()) == ["E-mail address"]
    change = owner_client.get(reverse("password_change")).content.decode()
    assert labels_of(change)[1:] == ["New password", "New password confirmation"]
    assert "Type the new password again." in change
    assert "New e-mail address" in labels_of(owner_client.get(reverse("email_change")).content.decode())


# --- 6. the review desk's sign-in: "Sign in" ----------------------------------------------------


def test_the_review_desks_sign_in_says_sign_in_not_log_in(client):
    page = client.get(reverse("admin:login")).content.decode()
    assert title_of(page) == "Sign in | molesite review desk"
    assert '<input type="submit" value="Sign in">' in page
    said = " ".join(re.sub(r"<[^>]+>", " ", page).split()).lower()  # its text, not its markup
    assert "log in" not in said and "login" not in said


def test_a_refused_sign_in_at_the_desk_is_titled_as_an_error(client, reviewer):
    response = client.post(reverse("admin:login"), {"username": "dr-reviewer", "password": "wrong guess"})
    page = response.content.decode()
    assert title_of(page) == "Error: Sign in | molesite review desk"
    assert '<input type="submit" value="Sign in">' in page


def test_a_patient_at_the_desks_sign_in_is_asked_to_sign_in_with_another_account(owner_client):
    page = owner_client.get(reverse("admin:login")).content.decode()
    assert "You are signed in as patient, but that account may not open this page." in page
    assert "sign in with a different account" in page


# --- 7. the agreement figures: as wide as their heading ------------------------------------------


def test_the_agreement_figures_span_their_module_as_its_heading_does(reviewer_client, owner, reviewer,
                                                                     make_diagnosis):
    case = make_diagnosis(owner, risk="high")
    Review.objects.create(diagnosis=case, verdict="agree", label="mel", recommendation="routine",
                          reviewer=reviewer, reviewed_at=timezone.now(), model_version=case.model_version)
    page = reviewer_client.get(reverse("admin:diagnoses_review_agreement")).content.decode()
    module = page.split('<section class="module agreement-version">', 1)[1]
    figures = re.search(r"</h2>\s*(?:\{#.*?#\}\s*)*<table([^>]*)>", module, re.S).group(1)
    assert 'style="width: 100%"' in figures
