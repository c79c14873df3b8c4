"""A reset link goes only to an account's confirmed address (QueuedPasswordResetForm.get_users):
both reset pages say so, and tell whoever never confirmed theirs to contact the clinic
(CLINIC_CONTACT when set), on every answer alike, so that nothing says which addresses have
accounts."""

import pytest
from django.urls import reverse

from tests.conftest import ask_for_password_reset

pytestmark = pytest.mark.django_db

CONTACT = "Skin clinic, +44 20 7946 0000, help@clinic.example"


def _text(response):
    return " ".join(response.content.decode().split())


@pytest.mark.parametrize("contact, said", [(CONTACT, f"contact the clinic that runs this site: {CONTACT}."),
                                           ("", "contact the clinic that runs this site.")])
def test_the_reset_form_says_the_link_goes_to_a_confirmed_address_only(client, settings, contact, said):
    settings.CLINIC_CONTACT = contact
    page = _text(client.get(reverse("password_reset")))
    assert "The link only goes to an address that was confirmed" in page
    assert f"if you never confirmed yours, {said}" in page


def test_the_sent_page_is_the_same_for_a_confirmed_an_unconfirmed_and_an_unknown_address(
        client, settings, owner, django_user_model, mailoutbox):
    settings.CLINIC_CONTACT = CONTACT
    django_user_model.objects.create_user("unconfirmed", "unconfirmed@example.com", "correct horse battery",
                                          email_confirmed_at=None)  # as a sign-up leaves it
    pages = []
    for email in (owner.email, "unconfirmed@example.com", "nobody@example.com"):
        response = ask_for_password_reset(client, email)
        assert response.status_code == 302
        pages.append(_text(client.get(response["Location"])))
    assert pages[0] == pages[1] == pages[2]
    assert [message.to for message in mailoutbox] == [[owner.email]]  # the confirmed address only
    page = pages[0]
    assert "If an account uses that address and it was confirmed, a link to choose a new password is on its way." in page
    assert ("No link goes to an address that was never confirmed. If you never confirmed yours, contact the clinic "
            f"that runs this site: {CONTACT}.") in page
