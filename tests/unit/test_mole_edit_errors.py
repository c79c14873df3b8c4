"""A refused save of the mole edit form is said as on every other form: the summary of
_form_errors.html first in the form, taking the focus, and no flash message besides it."""

import pytest
from django.urls import reverse

from diagnoses.models import Mole

pytestmark = pytest.mark.django_db


def test_a_refused_mole_save_shows_the_forms_summary_and_no_flash_message(owner, owner_client):
    mole = Mole.objects.create(owner=owner, name="Back")
    Mole.objects.create(owner=owner, name="Shoulder")

    response = owner_client.post(reverse("diagnoses:mole_edit", args=[mole.pk]),
                                 {"name": "Shoulder", "body_site": "unknown", "recheck_months": ""})

    page = response.content.decode()
    assert response.status_code == 400
    assert "see the message below" not in page and "could not be saved" not in page
    summary = page.split('id="form-errors"', 1)[1].split("</div>", 1)[0]
    assert "The mole was not saved." in summary and "Please correct the problem shown below." in summary
    assert page.count("autofocus") == 1  # the summary's: the focus goes to what went wrong
    assert 'role="alert"' in page.split('id="form-errors"', 1)[0].rsplit("<div", 1)[1]
    mole.refresh_from_db()
    assert mole.name == "Back"
    # and the next page shows no message left over from the refusal
    assert "could not be saved" not in owner_client.get(reverse("diagnoses:moles")).content.decode()


def test_a_mole_edit_form_shown_first_has_no_summary(owner, owner_client):
    mole = Mole.objects.create(owner=owner, name="Back")
    response = owner_client.get(reverse("diagnoses:mole_edit", args=[mole.pk]))
    assert response.status_code == 200 and 'id="form-errors"' not in response.content.decode()
