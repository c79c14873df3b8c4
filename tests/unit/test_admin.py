"""The admin as the review desk: who gets in, what the queue shows and in which order, the case page."""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from rest_framework.authtoken.models import TokenProxy

from diagnoses import services
from diagnoses.models import Diagnosis, Mole, Review

pytestmark = pytest.mark.django_db

QUEUE_URL = reverse("admin:diagnoses_diagnosis_changelist")


def change_url(diagnosis):
    return reverse("admin:diagnoses_diagnosis_change", args=[diagnosis.pk])


def queue(client, **params):
    response = client.get(QUEUE_URL, params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


# --- who gets in -------------------------------------------------------------------------------


def test_it_creates_the_reviewers_group_with_only_the_review_permissions():
    group = Group.objects.get(name=services.REVIEWERS_GROUP)  # made by migrate's post_migrate handler
    codenames = set(group.permissions.values_list("content_type__app_label", "codename"))
    assert codenames == {("diagnoses", codename) for codename in services.REVIEWER_PERMISSIONS}


def test_it_makes_a_reviewer_staff_but_not_superuser(reviewer):
    assert reviewer.is_staff and not reviewer.is_superuser
    assert reviewer.has_perm("diagnoses.change_review")
    assert not reviewer.has_perm("diagnoses.delete_diagnosis")
    assert not reviewer.has_perm("accounts.view_user")


def test_it_sends_a_non_staff_user_to_the_login_page(owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    for url in ["/admin/", QUEUE_URL, change_url(diagnosis), reverse("admin:accounts_user_changelist")]:
        response = owner_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_it_sends_an_anonymous_visitor_to_the_login_page(client):
    response = client.get(QUEUE_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_it_refuses_user_and_group_admin_to_a_reviewer(reviewer_client, reviewer, owner):
    urls = [
        reverse("admin:accounts_user_changelist"),
        reverse("admin:accounts_user_add"),
        reverse("admin:accounts_user_change", args=[owner.pk]),
        reverse("admin:accounts_user_change", args=[reviewer.pk]),
        reverse("admin:accounts_user_delete", args=[owner.pk]),
        reverse("admin:auth_group_changelist"),
        reverse("admin:auth_group_add"),
    ]
    for url in urls:
        assert reviewer_client.get(url).status_code == 403, url
    response = reviewer_client.post(reverse("admin:accounts_user_change", args=[reviewer.pk]), {"is_superuser": "on"})
    assert response.status_code == 403
    reviewer.refresh_from_db()
    assert not reviewer.is_superuser


def test_it_shows_a_reviewer_only_the_review_desk_on_the_index(reviewer_client, admin_client):
    reviewer_apps = {app["app_label"] for app in reviewer_client.get("/admin/").context["app_list"]}
    assert reviewer_apps == {"diagnoses"}
    superuser_apps = {app["app_label"] for app in admin_client.get("/admin/").context["app_list"]}
    assert {"accounts", "auth", "diagnoses"} <= superuser_apps


def test_it_names_the_sign_in_apps_in_words_on_the_index(admin_client):
    names = {app["app_label"]: app["name"] for app in admin_client.get("/admin/").context["app_list"]}
    assert names["axes"] == "Sign-in lockouts"
    assert names["otp_totp"] == "Two-step sign-in: authenticator apps"
    assert names["otp_static"] == "Two-step sign-in: recovery codes"


def test_it_lets_no_one_add_a_diagnosis_in_the_admin(reviewer_client, admin_client):
    assert reviewer_client.get(reverse("admin:diagnoses_diagnosis_add")).status_code == 403
    assert admin_client.get(reverse("admin:diagnoses_diagnosis_add")).status_code == 403


def test_it_refuses_deletion_to_a_reviewer(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    url = reverse("admin:diagnoses_diagnosis_delete", args=[diagnosis.pk])
    assert reviewer_client.post(url, {"post": "yes"}).status_code == 403
    assert Diagnosis.objects.filter(pk=diagnosis.pk).exists()


def test_it_deletes_the_stored_files_when_a_superuser_deletes(admin_client, owner, make_diagnosis, django_capture_on_commit_callbacks):
    diagnosis = make_diagnosis(owner, risk="low")
    storage, names = diagnosis.image.storage, [f.name for f in diagnosis.stored_files()]
    url = reverse("admin:diagnoses_diagnosis_delete", args=[diagnosis.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    assert not any(storage.exists(name) for name in names)


@pytest.mark.parametrize("how", ["delete page", "action"])
def test_it_deletes_a_patients_files_when_a_superuser_deletes_the_account(admin_client, owner, make_diagnosis,
                                                                         django_capture_on_commit_callbacks, how):
    diagnoses = [make_diagnosis(owner, risk="low"), make_diagnosis(owner, status="failed")]
    storage, names = diagnoses[0].image.storage, [f.name for d in diagnoses for f in d.stored_files()]
    assert names and all(storage.exists(name) for name in names)
    with django_capture_on_commit_callbacks(execute=True):
        if how == "delete page":
            response = admin_client.post(reverse("admin:accounts_user_delete", args=[owner.pk]), {"post": "yes"})
        else:
            response = admin_client.post(reverse("admin:accounts_user_changelist"), {
                "action": "delete_selected", "_selected_action": [owner.pk], "post": "yes"})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=owner.pk).exists() and not Diagnosis.objects.exists()
    assert not any(storage.exists(name) for name in names)


# --- the queue ---------------------------------------------------------------------------------


def test_it_orders_the_queue_unreviewed_first_then_by_risk_then_oldest(reviewer_client, reviewer, owner, make_diagnosis):
    low_old = make_diagnosis(owner, risk="low", age_days=9)
    high_new = make_diagnosis(owner, risk="high", age_days=1)
    high_old = make_diagnosis(owner, risk="high", age_days=5)
    medium = make_diagnosis(owner, risk="medium", age_days=3)
    queued = make_diagnosis(owner, status="queued", age_days=20)
    high_reviewed = make_diagnosis(owner, risk="high", age_days=30)
    services.review_agree_many(diagnoses=[high_reviewed], reviewer=reviewer)

    assert queue(reviewer_client) == [high_old, high_new, medium, low_old, queued, high_reviewed]


def test_it_shows_the_queue_columns_with_private_thumbnails(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    response = reviewer_client.get(QUEUE_URL)
    html = response.content.decode()
    assert reverse("diagnoses:file", args=[diagnosis.pk, "thumbnail"]) in html
    assert "/media/" not in html
    for text in ["patient", "High", "72.0%", "Melanoma", "Done", "icon-no.svg"]:
        assert text in html, text


def test_the_queue_and_the_case_page_get_the_desks_styles(reviewer_client, owner, make_diagnosis):
    """static/css/admin-review.css: the queue's patient column wraps a long username (else the
    table overflows and the upload date is cut off); the case page's review form."""
    diagnosis = make_diagnosis(owner)
    for url in (QUEUE_URL, change_url(diagnosis)):
        assert "css/admin-review.css" in reviewer_client.get(url).content.decode(), url


def test_it_warns_the_queue_when_photos_wait_too_long_for_the_classifier(reviewer_client, owner, make_diagnosis):
    make_diagnosis(owner, status="queued")  # just uploaded: not late
    make_diagnosis(owner, risk="high", age_days=3)  # done long ago: not late
    assert "waited more than a minute" not in reviewer_client.get(QUEUE_URL).content.decode()

    make_diagnosis(owner, status="queued", age_days=1)
    make_diagnosis(owner, status="queued", age_days=2)
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert "2 photos have waited more than a minute for the classifier" in html


def test_it_lets_staff_but_not_outsiders_load_the_thumbnail(reviewer_client, outsider_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    url = reverse("diagnoses:file", args=[diagnosis.pk, "thumbnail"])
    assert reviewer_client.get(url).status_code == 200
    assert outsider_client.get(url).status_code == 404


def test_it_filters_the_queue_by_reviewed_risk_and_status(reviewer_client, reviewer, owner, make_diagnosis):
    reviewed = make_diagnosis(owner, risk="high")
    services.review_agree_many(diagnoses=[reviewed], reviewer=reviewer)
    waiting = make_diagnosis(owner, risk="medium")
    failed = make_diagnosis(owner, status="failed")

    assert queue(reviewer_client, reviewed="yes") == [reviewed]
    assert queue(reviewer_client, reviewed="no") == [waiting, failed]
    assert queue(reviewer_client, risk__exact="medium") == [waiting]
    assert queue(reviewer_client, status__exact="failed") == [failed]
    assert queue(reviewer_client, model_version="test-model-1", reviewed="no") == [waiting]


def test_the_model_version_filter_names_the_cases_without_a_result(reviewer_client, owner, make_diagnosis):
    done = make_diagnosis(owner, risk="high")
    queued = make_diagnosis(owner, status="queued")
    failed = make_diagnosis(owner, status="failed")
    html = reviewer_client.get(QUEUE_URL).content.decode()
    filter_html = html.split("By model version")[1].split("</details>")[0]
    assert "No result (queued, running or failed)</a>" in filter_html
    assert "></a>" not in filter_html  # no blank, unlabelled choice
    assert set(queue(reviewer_client, model_version="-")) == {queued, failed}
    assert queue(reviewer_client, model_version="test-model-1") == [done]


def test_it_filters_the_queue_by_upload_date_under_the_columns_name(reviewer_client, owner, make_diagnosis):
    make_diagnosis(owner, risk="high", age_days=40)
    recent = make_diagnosis(owner, risk="low", age_days=2)
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert "By uploaded" in html and "By created at" not in html
    week_ago = (datetime.now(dt_timezone.utc) - timedelta(days=7)).isoformat()
    assert queue(reviewer_client, created_at__gte=week_ago) == [recent]


def test_it_puts_a_case_whose_review_is_of_an_earlier_result_back_in_the_queue(
        reviewer_client, reviewer, owner, make_diagnosis):
    rerun = make_diagnosis(owner, risk="low", age_days=9)
    services.review_agree_many(diagnoses=[rerun], reviewer=reviewer)
    current = make_diagnosis(owner, risk="high", age_days=5)
    services.review_agree_many(diagnoses=[current], reviewer=reviewer)
    assert queue(reviewer_client, reviewed="no") == []
    # a re-run with another model replaced the result the clinician read; the review is kept
    Diagnosis.objects.filter(pk=rerun.pk).update(model_version="test-model-2")

    assert queue(reviewer_client) == [rerun, current]
    assert queue(reviewer_client, reviewed="no") == [rerun]
    assert queue(reviewer_client, reviewed="yes") == [current]
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert html.count("icon-no.svg") == 1 and html.count("icon-yes.svg") == 1
    assert Review.objects.filter(diagnosis=rerun).exists()


def test_it_searches_the_queue_by_patient_username_and_email(reviewer_client, owner, outsider, make_diagnosis):
    mine = make_diagnosis(owner, risk="low")
    theirs = make_diagnosis(outsider, risk="low")
    assert queue(reviewer_client, q="patient") == [mine]
    assert queue(reviewer_client, q="outsider@example.com") == [theirs]
    assert queue(reviewer_client, q="nobody") == []


def test_it_finds_a_patient_by_the_whole_address_only_so_a_search_never_spells_one_out(
        reviewer_client, owner, make_diagnosis):
    mine = make_diagnosis(owner, risk="low")
    Mole.objects.create(owner=owner, name="Left shoulder")
    moles_url = reverse("admin:diagnoses_mole_changelist")

    def moles(q):
        response = reviewer_client.get(moles_url, {"q": q})
        assert response.status_code == 200
        return [mole.name for mole in response.context["cl"].result_list]

    # the whole address, in any case, finds the patient: on the queue and among the moles
    assert queue(reviewer_client, q="Patient@Example.COM") == [mine]
    assert moles("patient@example.com") == ["Left shoulder"]
    # a part of it finds nothing, so a reviewer cannot grow one a character at a time
    for part in ["@", "@e", "t@example.com", "patient@example.co", "example.com", "@example.com"]:
        assert queue(reviewer_client, q=part) == [], part
        assert moles(part) == [], part
    # the username still matches by any part of it
    assert queue(reviewer_client, q="atien") == [mine] and moles("atien") == ["Left shoulder"]


def test_it_loads_the_queue_in_a_constant_number_of_queries(
    reviewer_client, reviewer, owner, make_diagnosis
):
    def count_queries():
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            reviewer_client.get(QUEUE_URL)
        return len(captured)

    services.review_agree_many(diagnoses=[make_diagnosis(owner, risk="high")], reviewer=reviewer)
    make_diagnosis(owner, risk="low")
    few = count_queries()
    for risk in ["high", "medium", "low", "low", "medium"]:
        services.review_agree_many(diagnoses=[make_diagnosis(owner, risk=risk)], reviewer=reviewer)
        make_diagnosis(owner, risk=risk)
    assert count_queries() == few


def indexed_columns(model):
    """The columns of model's table that have an index of their own, as the migrations made it."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {tuple(c["columns"]) for c in constraints.values() if c["index"]}


def test_the_queue_counts_its_cases_once_and_lists_model_versions_from_an_index(
    reviewer_client, owner, make_diagnosis
):
    # The list's own count, and not the whole table's as well (the "N total" beside a filter): on
    # every load, filtered or not, that was a second full count.
    make_diagnosis(owner, risk="high", model_version="model-a")
    make_diagnosis(owner, risk="low", model_version="model-b")
    with CaptureQueriesContext(connection) as captured:
        listed = queue(reviewer_client, model_version="model-b")
    assert [d.model_version for d in listed] == ["model-b"]
    whole_table = 'SELECT COUNT(*) AS "__count" FROM "diagnoses_diagnosis"'
    assert whole_table not in [query["sql"] for query in captured]
    # The model version filter stays; its choices (every distinct version) come from an index.
    html = reviewer_client.get(QUEUE_URL).content.decode()
    assert "By model version" in html and "?model_version=model-a" in html
    assert ("model_version",) in indexed_columns(Diagnosis)


def test_the_reviews_log_sorts_and_filters_by_date_through_an_index(
    reviewer_client, reviewer, owner, make_diagnosis
):
    services.review_agree_many(diagnoses=[make_diagnosis(owner, risk="high")], reviewer=reviewer)
    with CaptureQueriesContext(connection) as captured:
        response = reviewer_client.get(reverse("admin:diagnoses_review_changelist"))
    assert response.status_code == 200
    # Date ranges from the list filter; no date hierarchy, which read every review's date to
    # list its years, months or days on each load.
    html = response.content.decode()
    assert "By reviewed at" in html and "Past 7 days" in html and 'class="toplinks"' not in html
    assert not [q["sql"] for q in captured if "MIN(" in q["sql"] or "datetime_trunc" in q["sql"]]
    assert ("reviewed_at",) in indexed_columns(Review)  # its order, newest first


def test_the_reviews_log_searches_by_patient_and_reviewer_and_marks_reviews_of_earlier_results(
        reviewer_client, reviewer, owner, outsider, make_diagnosis):
    mine, theirs = make_diagnosis(owner, risk="high"), make_diagnosis(outsider, risk="low")
    services.review_agree_many(diagnoses=[mine, theirs], reviewer=reviewer)
    Diagnosis.objects.filter(pk=theirs.pk).update(model_version="test-model-2")  # re-run since
    log = reverse("admin:diagnoses_review_changelist")

    def found(q):
        response = reviewer_client.get(log, {"q": q})
        assert response.status_code == 200
        return {review.diagnosis_id for review in response.context["cl"].result_list}

    assert found("patient") == {mine.pk}
    assert found("OUTSIDER@example.com") == {theirs.pk}
    assert found("outsider@example") == set()  # the address only whole, as the queue's
    assert found("dr-rev") == {mine.pk, theirs.pk}
    Review.objects.filter(diagnosis=theirs).update(reviewer=None, reviewer_name="dr-gone")
    assert found("dr-gone") == {theirs.pk}

    html = reviewer_client.get(log).content.decode()
    assert "Model version reviewed" in html and "Of an earlier result" in html
    # in words: a red cross on every review of the result in hand read as an alarm
    assert html.count("Yes: re-run since") == 1 and "icon-no.svg" not in html


def test_the_desk_lists_are_named_and_say_when_each_photo_was_taken(reviewer_client, reviewer, owner,
                                                                    make_diagnosis):
    # Django's own "Select review to view" named no page; a date alone told six cases of one day
    # apart by nothing, and the Reviews log's case column repeated the case's status.
    diagnosis = make_diagnosis(owner, risk="high")
    services.review_agree_many(diagnoses=[diagnosis], reviewer=reviewer)
    when = date_format(timezone.localtime(diagnosis.created_at), "DATETIME_FORMAT")

    log = reviewer_client.get(reverse("admin:diagnoses_review_changelist")).content.decode()
    assert "<h1>Reviews log</h1>" in log and f">patient, <span class=\"when\">{when}</span></a>" in log and "(done)" not in log
    moles = reviewer_client.get(reverse("admin:diagnoses_mole_changelist")).content.decode()
    assert "<h1>Tracked moles</h1>" in moles
    queue = reviewer_client.get(reverse("admin:diagnoses_diagnosis_changelist")).content.decode()
    assert f">{when}</span>" in queue


# --- the case page -----------------------------------------------------------------------------


def test_it_renders_the_case_page_for_a_reviewer_and_a_superuser(reviewer_client, admin_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    for browser in (reviewer_client, admin_client):
        response = browser.get(change_url(diagnosis))
        assert response.status_code == 200
        html = response.content.decode()
        assert reverse("diagnoses:file", args=[diagnosis.pk, "image"]) in html
        assert reverse("diagnoses:file", args=[diagnosis.pk, "heatmap"]) in html
        assert "/media/" not in html
        # All seven probabilities, as read-only text.
        for text in ["Melanoma (malignant)", "62.0%", "Melanocytic nevus", "20.0%", "Dermatofibroma", "1.0%"]:
            assert text in html, text
        assert 'name="review-0-verdict"' in html


def test_it_writes_dates_on_the_case_page_as_the_patients_pages_do(reviewer_client, owner_client, owner, make_diagnosis):
    """One date format for the whole site: "3 Dec 2026, 19:29", not Django's "Dec. 3, 2026, 7:29 p.m."."""
    diagnosis = make_diagnosis(owner, risk="high")
    evening = datetime(2026, 12, 3, 19, 29, tzinfo=dt_timezone.utc)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=evening, finished_at=evening)
    for browser, url in ((reviewer_client, change_url(diagnosis)), (owner_client, diagnosis.get_absolute_url())):
        html = browser.get(url).content.decode()
        assert "3 Dec 2026, 19:29" in html, url
        assert "p.m." not in html and "Dec. 3" not in html, url


def test_it_heads_the_case_page_with_the_patient_and_upload_time_not_the_id(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    evening = datetime(2026, 12, 3, 19, 29, tzinfo=dt_timezone.utc)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(created_at=evening)
    html = reviewer_client.get(change_url(diagnosis)).content.decode()
    heading = f"{owner.username}&#x27;s photo of 3 Dec 2026, 19:29 (done)"
    assert f"<h2>{heading}</h2>" in html
    assert html.count(heading) >= 3  # the heading, the breadcrumbs and the window title
    assert f"Diagnosis {diagnosis.pk}" not in html
    assert ">Cases</a>" in html and "Diagnoses</a> &rsaquo; Diagnoses" not in html  # breadcrumbs


def test_it_marks_empty_fields_with_the_same_dash_everywhere(reviewer_client, owner, make_diagnosis):
    # the unsaved review's "Reviewed at" and "Model version reviewed" beside its "Reviewer: —"
    html = reviewer_client.get(change_url(make_diagnosis(owner, risk="high"))).content.decode()
    assert '<div class="readonly">—</div>' in html
    assert '<div class="readonly">-</div>' not in html


def test_it_shows_the_error_line_on_a_failed_case_only(reviewer_client, owner, make_diagnosis):
    for status, shown in (("done", False), ("failed", True), ("queued", False)):
        form = reviewer_client.get(change_url(make_diagnosis(owner, status=status))).context["adminform"]
        fields = {field for _, options in form.fieldsets for line in options["fields"]
                  for field in (line if isinstance(line, tuple) else (line,))}
        assert ("error" in fields) is shown, status
        assert "status" in fields


def test_it_shows_the_earlier_photos_of_the_same_mole(reviewer_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    first = make_diagnosis(owner, risk="low", mole=mole, age_days=60)
    second = make_diagnosis(owner, risk="medium", mole=mole, age_days=30)
    current = make_diagnosis(owner, risk="high", mole=mole)
    later = make_diagnosis(owner, risk="high", mole=mole, age_days=0)
    unrelated = make_diagnosis(owner, risk="low", age_days=90)

    services.review_save(diagnosis=first, reviewer=None, verdict="agree", recommendation="routine", notify=False)
    services.review_save(diagnosis=second, reviewer=None, verdict="unclear", recommendation="new_photo", notify=False)

    html = reviewer_client.get(change_url(current)).content.decode()
    for earlier in (first, second):
        assert change_url(earlier) in html
        assert reverse("diagnoses:file", args=[earlier.pk, "thumbnail"]) in html
    assert "Low · reviewed</small>" in html and "Medium · new photo asked for</small>" in html  # why this one followed
    assert change_url(later) not in html
    assert change_url(unrelated) not in html
    assert reverse("admin:diagnoses_mole_change", args=[mole.pk]) in html


def test_it_does_not_let_anyone_edit_the_model_output_or_the_photo(reviewer_client, admin_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    for browser in (reviewer_client, admin_client):
        html = browser.get(change_url(diagnosis)).content.decode()
        for field in ["risk", "probabilities", "predicted_class", "malignant_probability", "image", "status"]:
            assert f'name="{field}"' not in html
        response = browser.post(
            change_url(diagnosis),
            {
                "risk": "low",
                "predicted_class": "nv",
                "status": "failed",
                "review-TOTAL_FORMS": "1",
                "review-INITIAL_FORMS": "0",
                "review-MIN_NUM_FORMS": "0",
                "review-MAX_NUM_FORMS": "1",
            },
        )
        assert response.status_code == 302
    diagnosis.refresh_from_db()
    assert (diagnosis.risk, diagnosis.predicted_class, diagnosis.status) == ("high", "mel", "done")
    assert not Review.objects.exists()


def test_it_offers_no_review_form_before_the_result_is_done(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, status="running")
    response = reviewer_client.get(change_url(diagnosis))
    assert response.status_code == 200
    assert 'name="review-0-verdict"' not in response.content.decode()


def test_it_renders_the_mole_and_review_pages_read_only_for_a_reviewer(reviewer_client, reviewer, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    diagnosis = make_diagnosis(owner, risk="high", mole=mole)
    (review,) = services.review_agree_many(diagnoses=[diagnosis], reviewer=reviewer).reviews

    assert reviewer_client.get(reverse("admin:diagnoses_mole_changelist")).status_code == 200
    mole_page = reviewer_client.get(reverse("admin:diagnoses_mole_change", args=[mole.pk]))
    assert mole_page.status_code == 200
    assert reverse("diagnoses:file", args=[diagnosis.pk, "thumbnail"]) in mole_page.content.decode()
    assert 'name="name"' not in mole_page.content.decode()
    review_log = reviewer_client.get(reverse("admin:diagnoses_review_changelist"))
    assert review_log.status_code == 200
    review_page = reviewer_client.get(reverse("admin:diagnoses_review_change", args=[review.pk]))
    assert review_page.status_code == 200
    assert 'name="verdict"' not in review_page.content.decode()
    # Both name the case by its patient and upload time, as the case page does, not by its id.
    case = str(diagnosis).replace("'", "&#x27;")
    assert case.startswith(f"{owner.username}&#x27;s photo of ")
    assert f"<h2>Review of {case}</h2>" in review_page.content.decode()
    when = date_format(timezone.localtime(diagnosis.created_at), "DATETIME_FORMAT")
    assert f">{owner.username}, <span class=\"when\">{when}</span></a>" in review_log.content.decode()
    assert str(diagnosis.pk) not in review_log.content.decode().replace(change_url(diagnosis), "")


def test_it_offers_no_save_on_a_mole_page_even_to_a_superuser(admin_client, owner):
    mole = Mole.objects.create(owner=owner, name="Left shoulder", body_site="back")
    url = reverse("admin:diagnoses_mole_change", args=[mole.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert "View on site" not in page.content.decode()  # the patient's own page: a 404 for staff
    assert admin_client.post(url, {"name": "Renamed", "body_site": "face"}).status_code == 403
    assert Mole.objects.get(pk=mole.pk).name == "Left shoulder"


def test_it_links_reviewers_to_no_user_admin_page(reviewer_client, reviewer, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner, risk="high")
    (review,) = services.review_agree_many(diagnoses=[diagnosis], reviewer=reviewer).reviews
    pages = [
        QUEUE_URL,
        change_url(diagnosis),
        reverse("admin:diagnoses_review_changelist"),
        reverse("admin:diagnoses_review_change", args=[review.pk]),
    ]
    for url in pages:
        html = reviewer_client.get(url).content.decode()
        assert "/admin/accounts/" not in html, url
        assert "/admin/auth/" not in html, url


def test_it_gives_the_admin_pages_the_sites_icon_and_keeps_their_title(reviewer_client):
    page = reviewer_client.get(QUEUE_URL).content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg"' in page
    assert 'id="site-name"' in page and "molesite review desk</title>" in page  # admin's base_site still renders


def test_it_lets_an_administrator_set_a_users_e_mails(admin_client, reviewer):
    url = reverse("admin:accounts_user_change", args=[reviewer.pk])
    fields = admin_client.get(url).context["adminform"].form.fields
    assert {"review_emails", "queue_emails"} <= set(fields)


# --- API tokens ----------------------------------------------------------------------------------


def test_it_lists_api_tokens_without_their_keys_and_lets_staff_revoke_them(admin_client, admin_user, owner):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=owner)
    listing = admin_client.get(reverse("admin:accounts_apitoken_changelist"))
    assert listing.status_code == 200
    assert owner.username in listing.content.decode() and token.key not in listing.content.decode()
    page = admin_client.get(reverse("admin:accounts_apitoken_change", args=[owner.pk]))
    assert page.status_code == 200 and token.key not in page.content.decode()
    # Nobody makes a patient a token they could then use as the patient.
    assert admin_client.get(reverse("admin:accounts_apitoken_add")).status_code == 403

    delete_url = reverse("admin:accounts_apitoken_delete", args=[owner.pk])
    assert token.key not in admin_client.get(delete_url).content.decode()
    response = admin_client.post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert not Token.objects.filter(user=owner).exists()
    assert LogEntry.objects.get().object_repr == f"API token of {owner}"  # its history, no key
    # DRF's own token admin, before molesite replaced it, kept the key itself as the entry's text.
    LogEntry.objects.create(user=admin_user, action_flag=ADDITION, object_id=str(owner.pk), object_repr="key",
                            content_type=ContentType.objects.get_for_model(TokenProxy, for_concrete_model=False))
    services.user_delete(user=owner)
    assert not LogEntry.objects.exists()  # it names the patient: it goes with the account


def test_the_token_list_refuses_to_name_or_filter_tokens_by_their_key(admin_client, owner):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=owner)
    changelist = reverse("admin:accounts_apitoken_changelist")
    for params in ("?_popup=1", "?_to_field=key", f"?key__startswith={token.key[:2]}",
                   f"?pk__startswith={token.key[:2]}"):
        response = admin_client.get(changelist + params)
        assert response.status_code in (302, 400, 403), params  # refused, or the admin's "?e=1"
        assert token.key not in response.content.decode()
        if response.status_code == 302:
            assert "e=1" in response.url
    change = reverse("admin:accounts_apitoken_change", args=[owner.pk])
    assert admin_client.get(change + "?_popup=1").status_code == 403


@pytest.mark.parametrize("changelist, secret_filter", [
    ("admin:accounts_user_changelist", "auth_token__key__startswith"),   # a patient's API key
    ("admin:otp_totp_totpdevice_changelist", "key__startswith"),         # an authenticator key
])
def test_no_list_tells_a_secret_by_its_counts(admin_client, admin_user, owner, changelist, secret_filter):
    from django_otp.plugins.otp_totp.models import TOTPDevice
    from rest_framework.authtoken.models import Token

    secrets = {"auth_token__key__startswith": Token.objects.create(user=owner).key,
               "key__startswith": TOTPDevice.objects.get(user=admin_user).key}
    url = reverse(changelist)
    response = admin_client.get(f"{url}?{secret_filter}={secrets[secret_filter][:1]}")
    assert response.status_code == 400  # DisallowedModelAdminLookup
    assert admin_client.get(f"{url}?id__exact={admin_user.pk}").status_code == 200  # others work


def test_it_shows_no_authenticator_key_or_recovery_code_in_the_admin(admin_client, admin_user):
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    totp = TOTPDevice.objects.get(user=admin_user)
    recovery = StaticDevice.objects.create(user=admin_user, name="Recovery")
    code = recovery.token_set.create(token="rc7x2k9q").token
    pages = [reverse("admin:otp_totp_totpdevice_change", args=[totp.pk]),
             reverse("admin:otp_static_staticdevice_change", args=[recovery.pk])]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200
        assert totp.key not in response.content.decode() and code not in response.content.decode()


def test_the_desk_never_deletes_a_patients_mole_and_dates_its_photos_where_the_clinic_is(
        admin_client, owner, make_diagnosis, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    photo = make_diagnosis(owner, mole=mole)
    late_evening_utc = datetime(2025, 3, 4, 23, 30, tzinfo=dt_timezone.utc)  # 5 March in Berlin
    Diagnosis.objects.filter(pk=photo.pk).update(created_at=late_evening_utc)

    page = admin_client.get(reverse("admin:diagnoses_mole_change", args=[mole.pk])).content.decode()
    assert "5 Mar 2025" in page and "4 Mar 2025" not in page
    delete_url = reverse("admin:diagnoses_mole_delete", args=[mole.pk])
    assert admin_client.get(delete_url).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Mole.objects.filter(pk=mole.pk).exists()
