"""Who at the review desk opened a patient's records: recorded by the admin's record pages,
shown to the patient, audited by administrators only, kept honest through deletions."""

import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import views as accounts_views
from diagnoses import services
from diagnoses.models import Mole, StaffAccess

pytestmark = pytest.mark.django_db

ACCESS_PAGE = reverse("account_staff_access")
AUDIT_LOG = reverse("admin:diagnoses_staffaccess_changelist")


def case_page(diagnosis):
    return reverse("admin:diagnoses_diagnosis_change", args=[diagnosis.pk])


def accesses(patient):
    return list(StaffAccess.objects.filter(patient=patient).values_list("staff__username", "record", "diagnosis",
                                                                        "mole"))


def test_opening_a_case_records_who_opened_whose_check(reviewer_client, reviewer, owner, make_diagnosis):
    reviewer.first_name, reviewer.last_name = "Ada", "Smith"
    reviewer.save()
    diagnosis = make_diagnosis(owner)

    assert reviewer_client.get(case_page(diagnosis)).status_code == 200

    access = StaffAccess.objects.get()
    assert (access.patient, access.staff, access.record, access.diagnosis) == (owner, reviewer, "case", diagnosis)
    assert access.staff_name == "Ada Smith"


def test_reopening_within_half_an_hour_counts_once_and_later_again(reviewer_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)
    reviewer_client.get(case_page(diagnosis))
    reviewer_client.get(case_page(diagnosis))
    assert StaffAccess.objects.count() == 1

    StaffAccess.objects.update(at=StaffAccess.objects.get().at - services.STAFF_ACCESS_COALESCE - timedelta(seconds=1))
    reviewer_client.get(case_page(diagnosis))
    assert StaffAccess.objects.count() == 2


def test_another_check_of_the_same_patient_is_another_access(reviewer_client, owner, make_diagnosis):
    first, second = make_diagnosis(owner), make_diagnosis(owner)
    reviewer_client.get(case_page(first))
    reviewer_client.get(case_page(second))
    assert {a[2] for a in accesses(owner)} == {first.pk, second.pk}


def test_the_queue_and_refused_requests_record_nothing(reviewer_client, outsider_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)
    assert reviewer_client.get(reverse("admin:diagnoses_diagnosis_changelist")).status_code == 200
    outsider_client.get(case_page(diagnosis))  # not staff: sent to the sign-in page
    assert reviewer_client.get(reverse("admin:diagnoses_diagnosis_change", args=["0" * 32])).status_code == 302
    assert not StaffAccess.objects.exists()


def test_staff_opening_their_own_records_is_not_recorded(admin_client, admin_user, make_diagnosis):
    mine = make_diagnosis(admin_user)
    admin_client.get(case_page(mine))
    admin_client.get(reverse("admin:accounts_user_change", args=[admin_user.pk]))
    assert not StaffAccess.objects.exists()


def test_a_mole_page_and_the_user_admin_are_recorded(reviewer_client, reviewer, admin_client, admin_user, owner):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    assert reviewer_client.get(reverse("admin:diagnoses_mole_change", args=[mole.pk])).status_code == 200
    assert admin_client.get(reverse("admin:accounts_user_change", args=[owner.pk])).status_code == 200
    assert sorted(accesses(owner)) == [("admin", "account", None, None), ("dr-reviewer", "mole", None, mole.pk)]


def test_the_patient_sees_who_opened_what(reviewer_client, owner_client, owner, make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    diagnosis = make_diagnosis(owner, mole=mole)
    reviewer_client.get(case_page(diagnosis))
    reviewer_client.get(reverse("admin:diagnoses_mole_change", args=[mole.pk]))

    page = owner_client.get(ACCESS_PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert "dr-reviewer" in html and "2 times." in html
    assert diagnosis.get_absolute_url() in html and mole.get_absolute_url() in html

    account = owner_client.get(reverse("account")).content.decode()
    assert "Opened 2 times at the review desk; last by dr-reviewer" in account


def test_a_patient_sees_only_their_own_accesses(reviewer_client, outsider_client, owner, make_diagnosis):
    reviewer_client.get(case_page(make_diagnosis(owner)))
    html = outsider_client.get(ACCESS_PAGE).content.decode()
    assert "Nobody at the review desk has opened your records yet." in html and "dr-reviewer" not in html


def test_the_access_page_needs_a_signed_in_patient(client):
    response = client.get(ACCESS_PAGE)
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_the_record_outlives_the_check_and_the_staff_account(reviewer_client, reviewer, owner_client, owner,
                                                              make_diagnosis):
    diagnosis = make_diagnosis(owner)
    reviewer_client.get(case_page(diagnosis))
    services.diagnosis_delete(diagnosis=diagnosis)
    reviewer.delete()

    access = StaffAccess.objects.get()
    assert access.diagnosis is None and access.staff is None and access.staff_name == "dr-reviewer"
    html = owner_client.get(ACCESS_PAGE).content.decode()
    assert "A check you have since deleted" in html and "dr-reviewer" in html


def test_the_records_go_with_the_patients_account(reviewer_client, owner, make_diagnosis):
    reviewer_client.get(case_page(make_diagnosis(owner)))
    services.user_delete(user=owner)
    assert not StaffAccess.objects.exists()


def test_the_data_export_lists_the_accesses(reviewer_client, owner_client, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)
    reviewer_client.get(case_page(diagnosis))
    body = b"".join(owner_client.get(reverse("account_export")).streaming_content)
    data = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("data.json"))
    [exported] = data["staff_accesses"]
    assert exported["staff"] == "dr-reviewer" and exported["record"] == "case"
    assert exported["diagnosis_id"] == str(diagnosis.pk) and exported["mole_id"] is None


def test_only_administrators_read_the_audit_log_and_nobody_edits_it(reviewer_client, admin_client, owner,
                                                                     make_diagnosis):
    reviewer_client.get(case_page(make_diagnosis(owner)))
    access = StaffAccess.objects.get()

    assert reviewer_client.get(AUDIT_LOG).status_code == 403
    response = admin_client.get(AUDIT_LOG)
    assert response.status_code == 200 and list(response.context["cl"].result_list) == [access]
    assert admin_client.get(AUDIT_LOG, {"q": "patient"}).context["cl"].result_count == 1
    change = reverse("admin:diagnoses_staffaccess_change", args=[access.pk])
    assert admin_client.post(change, {"staff_name": "someone else"}).status_code == 403
    assert admin_client.post(reverse("admin:diagnoses_staffaccess_delete", args=[access.pk]),
                             {"post": "yes"}).status_code == 403
    assert StaffAccess.objects.get().staff_name == "dr-reviewer"


def test_the_access_page_shows_fifty_a_page(owner_client, owner, reviewer):
    StaffAccess.objects.bulk_create(
        StaffAccess(patient=owner, staff=reviewer, staff_name="dr-reviewer", record=StaffAccess.Record.ACCOUNT)
        for _ in range(51)
    )
    first = owner_client.get(ACCESS_PAGE)
    assert len(first.context["page"].object_list) == 50 and "Page 1 of 2" in first.content.decode()
    assert len(owner_client.get(ACCESS_PAGE, {"page": 2}).context["page"].object_list) == 1


def test_the_access_page_pages_openings_at_the_same_moment_each_once(owner_client, owner, reviewer,
                                                                      monkeypatch):
    monkeypatch.setattr(accounts_views, "STAFF_ACCESS_PAGE_SIZE", 1)
    at = timezone.now()
    first, second = StaffAccess.objects.bulk_create(
        StaffAccess(patient=owner, staff=reviewer, staff_name="dr-reviewer", record=record, at=at)
        for record in (StaffAccess.Record.ACCOUNT, StaffAccess.Record.CASE)
    )

    pages = [list(owner_client.get(ACCESS_PAGE, {"page": n}).context["page"].object_list)
             for n in (1, 2)]

    # Newest first, then the greater id, as the API: with the time alone, the database may give
    # the two in either order to each page's query (Postgres does), one shown twice, one never.
    assert pages == [[second], [first]]


def test_the_api_lists_who_opened_my_records(reviewer_client, owner_api, outsider_api, api_client, owner,
                                             make_diagnosis):
    mole = Mole.objects.create(owner=owner, name="Left shoulder")
    diagnosis = make_diagnosis(owner, mole=mole)
    reviewer_client.get(reverse("admin:diagnoses_mole_change", args=[mole.pk]))
    reviewer_client.get(case_page(diagnosis))
    url = reverse("api:staff-access-list")

    body = owner_api.get(url).json()
    assert body["count"] == 2
    newest, oldest = body["results"]
    assert (newest["staff"], newest["record"], oldest["record"]) == ("dr-reviewer", "case", "mole")
    assert newest["diagnosis"].endswith(reverse("api:diagnosis-detail", args=[diagnosis.pk])) and newest["mole"] is None
    assert oldest["mole"].endswith(reverse("api:mole-detail", args=[mole.pk])) and oldest["diagnosis"] is None
    assert owner_api.get(newest["diagnosis"]).status_code == 200

    assert outsider_api.get(url).json()["count"] == 0
    assert api_client.get(url).status_code == 401


def test_a_reviews_page_and_the_full_size_files_are_openings_of_the_case(reviewer_client, reviewer, owner,
                                                                           make_diagnosis):
    diagnosis, other = make_diagnosis(owner), make_diagnosis(owner)
    (review,) = services.review_agree_many(diagnoses=[diagnosis], reviewer=reviewer).reviews
    assert reviewer_client.get(reverse("admin:diagnoses_review_change", args=[review.pk])).status_code == 200
    assert accesses(owner) == [("dr-reviewer", "case", diagnosis.pk, None)]

    for kind in ["image", "heatmap"]:
        url = reverse("diagnoses:file", args=[other.pk, kind])
        assert reviewer_client.get(url).status_code == 200
    assert sorted(accesses(owner), key=str) == sorted([("dr-reviewer", "case", diagnosis.pk, None),
                                                       ("dr-reviewer", "case", other.pk, None)], key=str)


def test_the_queues_thumbnails_and_the_patients_own_files_record_nothing(reviewer_client, owner_client, owner,
                                                                          make_diagnosis):
    diagnosis = make_diagnosis(owner)
    assert reviewer_client.get(reverse("diagnoses:file", args=[diagnosis.pk, "thumbnail"])).status_code == 200
    assert owner_client.get(reverse("diagnoses:file", args=[diagnosis.pk, "image"])).status_code == 200
    assert not StaffAccess.objects.exists()
