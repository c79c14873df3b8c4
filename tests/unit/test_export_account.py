"""The data download's account: when the address was confirmed, and the review desk's setting, as
the account page shows them (the right of access is to all of it; a pending change of address is
not there yet)."""

import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db


def exported_account(client) -> dict:
    response = client.get(reverse("account_export"))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    return json.loads(archive.read("data.json"))["account"]


def test_it_gives_when_the_address_was_confirmed(owner_client, owner):
    confirmed = timezone.now() - timedelta(days=3)
    type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=confirmed)

    account = exported_account(owner_client)
    assert account["email_confirmed_at"] == timezone.localtime(confirmed).isoformat()


def test_an_unconfirmed_address_is_null(owner_client, owner):
    type(owner).objects.filter(pk=owner.pk).update(email_confirmed_at=None)

    assert exported_account(owner_client)["email_confirmed_at"] is None


def test_a_clinician_gets_the_review_queue_setting(reviewer_client, reviewer):
    type(reviewer).objects.filter(pk=reviewer.pk).update(queue_emails=True)

    assert exported_account(reviewer_client)["queue_emails"] is True
