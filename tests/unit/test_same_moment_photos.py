"""Two photos of one mole uploaded at the very same moment (created_at equal, as a bulk import or
a coarse clock can give): My moles picks the newest answering photo as the mole's page does, by
upload time and then by id (order_by("created_at", "pk")), so that both say the same of a
clinician's request for a new photo."""

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnoses.models import Diagnosis, Mole, Review
from diagnoses.views import new_photo_asked_on

pytestmark = pytest.mark.django_db


def _photo(owner, mole):
    return Diagnosis.objects.create(owner=owner, mole=mole, sha256="0" * 64, status="done", risk="low",
                                    malignant_probability=0.1, model_version="model-1")


@pytest.mark.parametrize("asking", [0, 1], ids=["the-lower-id-asks", "the-higher-id-asks"])
def test_my_moles_breaks_a_tie_of_upload_time_by_id_as_the_moles_page_does(owner, owner_client, asking):
    mole = Mole.objects.create(owner=owner, name="Back")
    # ids are UUIDs: "the later id" is the greater one, whichever was created first
    photos = sorted([_photo(owner, mole), _photo(owner, mole)], key=lambda photo: photo.pk)
    Review.objects.create(diagnosis=photos[asking], verdict="agree", recommendation="new_photo",
                          reviewed_at=timezone.now(), model_version="model-1")
    Diagnosis.objects.filter(pk__in=[p.pk for p in photos]).update(created_at=timezone.now())

    page = owner_client.get(reverse("diagnoses:mole", args=[mole.pk]))
    on_its_page = page.context["new_photo_asked_on"]
    # the mole's page: the later id is the newer photo
    assert on_its_page == new_photo_asked_on(
        list(mole.diagnoses.select_related("review").order_by("created_at", "pk")))
    assert (on_its_page is not None) == (asking == 1)

    listed = owner_client.get(reverse("diagnoses:moles")).context["moles"]
    assert [m.new_photo_asked_on for m in listed] == [on_its_page]
    # and its card's latest photo is that same newest one
    assert [m.photos_newest_first[0].pk for m in listed] == [photos[1].pk]
