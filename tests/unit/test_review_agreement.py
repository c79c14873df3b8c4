"""The model against the clinicians: what reviewers read in the photos, per model version, on
a page of the review desk."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from diagnoses import services
from diagnoses.models import Diagnosis, Review
from ml import CLASSES

pytestmark = pytest.mark.django_db

AGREEMENT = reverse("admin:diagnoses_review_agreement")


def review(diagnosis, reviewer, verdict, label):
    return services.review_save(diagnosis=diagnosis, reviewer=reviewer, verdict=verdict, label=label,
                                recommendation="monitor", notify=False)


@pytest.fixture
def reviewed(owner, reviewer, make_diagnosis):
    """Five reviews of the current model's results (make_diagnosis: high is mel at 0.72
    malignant, medium nv at 0.35, low nv at 0.05), one of an older model, one of a result a
    re-run has since replaced."""
    review(make_diagnosis(owner, risk="high"), reviewer, "agree", "mel")
    review(make_diagnosis(owner, risk="medium"), reviewer, "disagree", "bcc")
    review(make_diagnosis(owner, risk="low"), reviewer, "agree", "nv")
    review(make_diagnosis(owner, risk="high"), reviewer, "disagree", "nv")
    review(make_diagnosis(owner, risk="low"), reviewer, "disagree", "")
    older = review(make_diagnosis(owner, risk="low", model_version="old-model"), reviewer, "agree", "nv")
    Review.objects.filter(pk=older.pk).update(reviewed_at=older.reviewed_at.replace(year=2025))
    replaced = review(make_diagnosis(owner, risk="high"), reviewer, "agree", "mel")
    Review.objects.filter(pk=replaced.pk).update(model_version="before-the-rerun")


def test_it_compares_the_model_with_the_clinicians_labels_per_version(reviewed):
    current, old = services.review_agreement()

    assert (current["version"], old["version"]) == ("test-model-1", "old-model")
    assert current["reviews"] == 5 and current["verdict_agree"] == pytest.approx(0.4)
    assert (current["labelled"], current["malignant"], current["benign"]) == (4, 2, 2)
    assert current["same_class"] == pytest.approx(0.5)
    assert current["malignant_flagged"] == 1.0  # the bcc the model called medium counts
    assert current["malignant_high"] == pytest.approx(0.5)
    assert current["benign_low"] == pytest.approx(0.5)
    # malignant 0.72, 0.35 against benign 0.05, 0.72: two wins, one tie, one loss of four pairs
    assert current["malignant_auc"] == pytest.approx(0.625)
    mel, bcc, nv = (CLASSES.index(code) for code in ("mel", "bcc", "nv"))
    assert current["confusion"][mel][mel] == current["confusion"][bcc][nv] == 1
    assert current["confusion"][nv][nv] == current["confusion"][nv][mel] == 1
    assert sum(map(sum, current["confusion"])) == 4
    assert (old["reviews"], old["malignant_flagged"], old["malignant_auc"]) == (1, None, None)


def test_it_reads_of_each_review_only_what_the_figures_use(reviewed):
    # Every review ever saved is read: as Review and Diagnosis objects, with every column (the
    # note, the probabilities, the file names), that took seconds and hundreds of megabytes.
    with CaptureQueriesContext(connection) as captured:
        current, old = services.review_agreement()
    (query,) = captured.captured_queries
    columns = query["sql"].split(" FROM ")[0]
    for unused in ("note", "recommendation", "reviewer_id", "probabilities", "image", "error"):
        assert f'."{unused}"' not in columns, unused
    assert (current["reviews"], current["labelled"], old["reviews"]) == (5, 4, 1)
    latest = Review.objects.filter(model_version="test-model-1").latest("reviewed_at")
    assert current["last_reviewed_at"] == latest.reviewed_at


def test_it_shows_the_figures_to_clinicians_at_the_desk(reviewer_client, reviewed):
    reviews_list = reviewer_client.get(reverse("admin:diagnoses_review_changelist")).content.decode()
    assert AGREEMENT in reviews_list

    response = reviewer_client.get(AGREEMENT)
    page = response.content.decode()
    assert response.status_code == 200
    assert page.index("test-model-1") < page.index("old-model")
    assert "40%" in page and "0.625" in page and "Read these as agreement, not accuracy" in page


def test_it_says_there_is_nothing_to_compare_before_any_review(reviewer_client):
    assert "No reviews yet" in reviewer_client.get(AGREEMENT).content.decode()


def test_it_keeps_the_figures_from_patients_and_from_staff_without_the_second_step(
    owner_client, client, reviewer, reviewed
):
    assert owner_client.get(AGREEMENT).status_code == 302
    client.force_login(reviewer)  # password only
    response = client.get(AGREEMENT)
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
    assert Diagnosis.objects.count() == 7


def test_it_splits_the_malignant_ones_flagged_by_the_photo_check(owner, reviewer, make_diagnosis, reviewer_client):
    def malignant_case(risk, photo_issues):
        diagnosis = make_diagnosis(owner, risk=risk)
        Diagnosis.objects.filter(pk=diagnosis.pk).update(photo_issues=photo_issues)
        diagnosis.refresh_from_db()
        review(diagnosis, reviewer, "agree" if risk == "high" else "disagree", "mel")  # the model's class: high only

    malignant_case("high", [])
    malignant_case("medium", [])
    malignant_case("low", [])
    malignant_case("low", ["dark"])
    malignant_case("high", ["blurry"])

    (figures,) = services.review_agreement()
    assert (figures["malignant_passed_photo"], figures["malignant_poor_photo"]) == (3, 2)
    assert figures["malignant_flagged_passed_photo"] == pytest.approx(2 / 3)
    assert figures["malignant_flagged_poor_photo"] == pytest.approx(0.5)
    page = reviewer_client.get(AGREEMENT).content.decode()
    assert "67% of 3" in page and "50% of 2" in page


def test_it_counts_apart_the_photos_the_clinicians_could_not_tell_from(reviewed, owner, reviewer, make_diagnosis,
                                                                       reviewer_client):
    review(make_diagnosis(owner, risk="high"), reviewer, "unclear", "")
    review(make_diagnosis(owner, risk="low"), reviewer, "unclear", "")

    current, _ = services.review_agreement()
    assert current["reviews"] == 7 and current["unclear"] == 2
    assert current["verdict_agree"] == pytest.approx(0.4)  # 2 of the 5 with a verdict, as before
    assert current["labelled"] == 4 and sum(map(sum, current["confusion"])) == 4
    page = reviewer_client.get(AGREEMENT).content.decode()
    assert "“Cannot tell from this photo”</th><td>2 (not counted below)" in page


def test_the_grid_marks_where_label_and_class_agree(reviewer_client, reviewed):
    page = reviewer_client.get(AGREEMENT).content.decode()
    grid = page[page.index('<table class="agreement-confusion">'):]
    grid = grid[:grid.index("</table>")]
    rows = re.findall(r"<tr><th scope=\"row\">[^<]*</th>(.*?)</tr>", grid)
    assert len(rows) == 7
    for i, row in enumerate(rows):
        cells = re.findall(r'<td style="([^"]*)">', row)
        assert len(cells) == 7 and all("text-align: center" in style for style in cells)
        assert [j for j, style in enumerate(cells) if "font-weight: bold" in style] == [i]
