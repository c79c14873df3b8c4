"""The account page's counts agree with the history: a check counts as reviewed only when its
review is of the result shown, not of one a re-run with another model replaced."""

import re

from django.utils import timezone

from diagnoses.models import Review


def reviewed_count(page) -> int:
    return int(re.search(r'>reviewed</dt><dd[^>]*>(\d+)</dd>', page.content.decode()).group(1))


def review(diagnosis, model_version):
    return Review.objects.create(diagnosis=diagnosis, verdict="agree", recommendation="routine",
                                 reviewed_at=timezone.now(), model_version=model_version)


def test_a_review_of_an_earlier_result_is_not_counted_as_reviewed(owner_client, owner,
                                                                   make_diagnosis):
    review(make_diagnosis(owner, model_version="model-2"), model_version="model-2")
    review(make_diagnosis(owner, model_version="model-2"), model_version="model-1")  # re-run since
    make_diagnosis(owner)

    assert reviewed_count(owner_client.get("/accounts/")) == 1
