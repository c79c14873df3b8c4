"""A clinician's request for a new photo (Review.Recommendation.NEW_PHOTO) stands until a newer
photo of the mole is analysed. The rule is written twice, and both must say the same over any
chain of photos: in SQL for My moles (views.answers_requests: the newest answering photo of each
mole, picked by the database, without reading every photo of every mole) and in Python for the
mole's page and the API's `new_photo_requested` (views.new_photo_asked_on over the mole's photos,
which they have loaded anyway). Kept two for that; this grid compares them, as the queue's rank
grid compares services.EARLIER_RANK with Diagnosis.leading_earlier_photo."""

import itertools
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnoses.models import Diagnosis, Mole, Review
from diagnoses.views import new_photo_asked_on

pytestmark = pytest.mark.django_db

# A photo of a chain: its status, and its review's recommendation when a clinician reviewed it (on
# a photo without a result: a review a re-run kept, the re-run under way or failed).
PHOTOS = [("done", None), ("done", "new_photo"), ("done", "routine"), ("failed", None), ("failed", "new_photo"),
          ("queued", None), ("queued", "new_photo"), ("running", "routine")]


def photo(owner, mole, status, recommendation, age_days):
    done = status == Diagnosis.Status.DONE
    diagnosis = Diagnosis.objects.create(owner=owner, mole=mole, sha256="0" * 64, status=status,
                                         risk="low" if done else "", malignant_probability=0.1 if done else None,
                                         model_version="model-1" if done else "")
    Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    if recommendation is not None:
        Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation=recommendation,
                              reviewed_at=timezone.now(), model_version="model-1")
    return diagnosis


def test_my_moles_and_the_moles_page_say_the_same_of_a_request_over_every_chain(owner, owner_client):
    """Every chain of 1 to 3 photos of PHOTOS, oldest first."""
    expected = {}
    for length in (1, 2, 3):
        for number, chain in enumerate(itertools.product(PHOTOS, repeat=length)):
            mole = Mole.objects.create(owner=owner, name=f"{length}-{number}")
            for age, (status, recommendation) in zip(range(length, 0, -1), chain):
                photo(owner, mole, status, recommendation, age)
            # the mole's page's and the API's answer: the rule in Python, over all the mole's photos
            photos = list(mole.diagnoses.select_related("review").order_by("created_at", "pk"))
            expected[mole.name] = (chain, new_photo_asked_on(photos))

    # My moles' answer: the newest photo answering requests, picked in SQL (answers_requests)
    response = owner_client.get(reverse("diagnoses:moles"))
    listed = {mole.name: mole.new_photo_asked_on for mole in response.context["moles"]}

    assert len(listed) == len(expected) == 8 + 8 ** 2 + 8 ** 3
    assert [(chain, listed[name], asked) for name, (chain, asked) in expected.items()
            if listed[name] != asked] == []
    # the grid holds moles whose request stands and moles whose request a later photo answered
    asking = [chain for chain, asked in expected.values() if asked is not None]
    assert asking and any(chain[-1][0] != "done" for chain in asking)
    assert any(("done", "new_photo") in chain and chain not in asking for chain, _ in expected.values())
