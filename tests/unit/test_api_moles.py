"""/api/v1/moles/: the moles a patient follows, each with its photos over time."""

import pytest
from django.urls import reverse

from diagnoses import services
from diagnoses.models import Diagnosis, Mole

LIST = "/api/v1/moles/"


def detail(mole):
    return f"/api/v1/moles/{mole.pk}/"


def test_it_creates_a_mole(owner_api, owner):
    response = owner_api.post(LIST, {"name": "  Left shoulder ", "body_site": "back"})

    assert response.status_code == 201
    mole = Mole.objects.get()
    assert (mole.owner, mole.name, mole.body_site) == (owner, "Left shoulder", "back")
    body = response.json()
    assert body["id"] == str(mole.pk)
    assert body["url"] == f"http://testserver{detail(mole)}" == response["Location"]
    assert body["diagnoses"] == []


def test_it_refuses_a_duplicate_name_with_400(owner_api, outsider_api, owner):
    services.mole_create(owner=owner, name="Left shoulder")

    response = owner_api.post(LIST, {"name": "Left shoulder"})

    assert response.status_code == 400
    assert response.json() == {"name": ["You already track a mole with this name."]}
    assert Mole.objects.count() == 1
    # Names are unique per patient only.
    assert outsider_api.post(LIST, {"name": "Left shoulder"}).status_code == 201


@pytest.mark.parametrize(
    "payload", [{}, {"name": "   "}, {"name": "x" * 81}, {"name": "Arm", "body_site": "elbow"}, {"name": "a\x00b"},
                # The reminder's choices alone refuse these (the serializer drops the range validators).
                {"name": "Arm", "recheck_months": 2}, {"name": "Arm", "recheck_months": -1},
                {"name": "Arm", "recheck_months": 2**63}]
)
def test_it_refuses_an_invalid_mole_with_400(owner_api, payload):
    response = owner_api.post(LIST, payload, format="json")

    assert response.status_code == 400
    assert set(response.json()) <= {"name", "body_site", "recheck_months"}
    assert not Mole.objects.exists()


def test_it_names_the_body_sites_it_knows_when_one_is_wrong(owner_api):
    response = owner_api.post(LIST, {"name": "Right forearm", "body_site": "arm"}, format="json")

    assert response.status_code == 400
    message = response.json()["body_site"][0]
    assert message.startswith('"arm" is not a body site we know: use one of "abdomen", "acral", "back"')
    assert '"upper extremity"' in message and '"unknown"' in message


def test_it_lists_the_owners_moles_with_their_photos_oldest_first(
    owner_api, outsider_api, owner, outsider, make_diagnosis
):
    back = services.mole_create(owner=owner, name="Back")
    arm = services.mole_create(owner=owner, name="Arm")
    first = make_diagnosis(owner, mole=back, risk="low", age_days=60)
    second = make_diagnosis(owner, mole=back, risk="medium", age_days=5)
    make_diagnosis(owner)  # not filed under a mole
    services.mole_create(owner=outsider, name="Theirs")

    body = owner_api.get(LIST).json()

    assert body["count"] == 2
    assert [m["name"] for m in body["results"]] == ["Arm", "Back"]
    assert body["results"][0]["id"] == str(arm.pk) and body["results"][0]["diagnoses"] == []
    timeline = body["results"][1]["diagnoses"]
    assert [d["id"] for d in timeline] == [str(first.pk), str(second.pk)]
    assert [d["risk"] for d in timeline] == ["low", "medium"]
    assert timeline[0]["url"] == f"http://testserver/api/v1/diagnoses/{first.pk}/"
    assert timeline[0]["thumbnail"].endswith(f"/api/v1/diagnoses/{first.pk}/thumbnail/")
    assert [m["name"] for m in outsider_api.get(LIST).json()["results"]] == ["Theirs"]


def test_it_lists_moles_by_name(owner_api, owner):
    for name in ("Zeta", "Alpha", "Mid"):  # created out of order: the query must sort
        services.mole_create(owner=owner, name=name)
    assert [m["name"] for m in owner_api.get(LIST).json()["results"]] == ["Alpha", "Mid", "Zeta"]


def test_it_lists_moles_alphabetically_whatever_their_case_here_and_on_the_site(owner_api, owner_client, owner):
    # SQLite (and a "C" collation on Postgres) sorts by code point: every capital before "a".
    for name in ("Zed", "banana", "Apple", "cherry"):
        services.mole_create(owner=owner, name=name)
    alphabetical = ["Apple", "banana", "cherry", "Zed"]

    assert [m["name"] for m in owner_api.get(LIST).json()["results"]] == alphabetical
    page = owner_client.get(reverse("diagnoses:moles"))
    assert [mole.name for mole in page.context["moles"]] == alphabetical


def test_it_lists_moles_in_a_constant_number_of_queries(
    owner_api, owner, make_diagnosis, django_assert_max_num_queries
):
    for index in range(5):
        mole = services.mole_create(owner=owner, name=f"Mole {index}", recheck_months=3)
        make_diagnosis(owner, mole=mole)
        make_diagnosis(owner, mole=mole, status="queued")

    # Token lookup, count, moles (with their last photo's time, for next_photo_due), their diagnoses.
    with django_assert_max_num_queries(4):
        assert owner_api.get(LIST).status_code == 200


def test_it_shows_a_mole_to_its_owner_only(owner_api, outsider_api, owner, make_diagnosis):
    mole = services.mole_create(owner=owner, name="Back", body_site="back")
    photo = make_diagnosis(owner, mole=mole)

    body = owner_api.get(detail(mole)).json()
    assert body["name"] == "Back" and body["body_site"] == "back"
    assert [d["id"] for d in body["diagnoses"]] == [str(photo.pk)]

    assert outsider_api.get(detail(mole)).status_code == 404


def test_it_renames_a_mole(owner_api, owner):
    mole = services.mole_create(owner=owner, name="Back")

    response = owner_api.patch(detail(mole), {"name": "Lower back"})

    assert response.status_code == 200
    assert response.json()["name"] == "Lower back"
    mole.refresh_from_db()
    assert (mole.name, mole.body_site) == ("Lower back", "unknown")


def test_it_keeps_the_name_when_only_the_body_site_changes(owner_api, owner):
    mole = services.mole_create(owner=owner, name="Back")

    assert owner_api.patch(detail(mole), {"body_site": "trunk"}).status_code == 200
    mole.refresh_from_db()
    assert (mole.name, mole.body_site) == ("Back", "trunk")


def test_it_refuses_a_rename_onto_another_mole(owner_api, owner):
    services.mole_create(owner=owner, name="Back")
    arm = services.mole_create(owner=owner, name="Arm")

    response = owner_api.patch(detail(arm), {"name": "Back"})

    assert response.status_code == 400
    assert list(response.json()) == ["name"]
    arm.refresh_from_db()
    assert arm.name == "Arm"
    # Saving a mole under its own name is no clash.
    assert owner_api.patch(detail(arm), {"name": "Arm"}).status_code == 200


def test_it_answers_a_database_clash_with_400_not_500(owner_api, owner, monkeypatch):
    """Two requests racing past the serializer's check: the unique constraint decides."""
    services.mole_create(owner=owner, name="Back")
    monkeypatch.setattr("diagnoses.api.serializers.MoleSerializer.validate_name", lambda self, name: name)

    response = owner_api.post(LIST, {"name": "Back"})

    assert response.status_code == 400
    assert response.json() == {"name": ["You already track a mole with this name."]}


def test_it_refuses_to_change_another_users_mole(outsider_api, owner):
    mole = services.mole_create(owner=owner, name="Back")

    assert outsider_api.patch(detail(mole), {"name": "Mine now"}).status_code == 404
    assert outsider_api.delete(detail(mole)).status_code == 404
    mole.refresh_from_db()
    assert mole.name == "Back"


def test_it_has_no_put(owner_api, owner):
    mole = services.mole_create(owner=owner, name="Back")

    response = owner_api.put(detail(mole), {"name": "Arm", "body_site": "hand"})

    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "PUT" not allowed.'}


def test_it_deletes_a_mole_but_keeps_its_photos(owner_api, owner, make_diagnosis):
    mole = services.mole_create(owner=owner, name="Back")
    photo = make_diagnosis(owner, mole=mole)

    assert owner_api.delete(detail(mole)).status_code == 204

    assert not Mole.objects.exists()
    photo.refresh_from_db()
    assert photo.mole is None
    assert owner_api.get(f"/api/v1/diagnoses/{photo.pk}/").json()["mole"] is None


def test_it_answers_401_to_anonymous_mole_requests(api_client, owner):
    mole = services.mole_create(owner=owner, name="Back")

    assert api_client.get(LIST).status_code == 401
    assert api_client.post(LIST, {"name": "Arm"}).status_code == 401
    assert api_client.get(detail(mole)).status_code == 401
    assert api_client.patch(detail(mole), {"name": "Arm"}).status_code == 401
    assert api_client.delete(detail(mole)).status_code == 401
    assert Mole.objects.get().name == "Back"
    assert not Diagnosis.objects.exists()


def test_it_says_when_a_clinician_asked_for_a_new_photo_of_a_mole(owner_api, owner, reviewer, make_diagnosis,
                                                                   django_assert_max_num_queries):
    mole = services.mole_create(owner=owner, name="Left calf")
    reviewed = make_diagnosis(owner, mole=mole, age_days=3)
    services.review_save(diagnosis=reviewed, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         notify=False)
    other = services.mole_create(owner=owner, name="Back")
    services.review_save(diagnosis=make_diagnosis(owner, mole=other), reviewer=reviewer, verdict="agree",
                         recommendation="routine", notify=False)
    services.mole_create(owner=owner, name="No photo yet")

    with django_assert_max_num_queries(4):  # the reviews come with the photos
        listed = {m["name"]: m["new_photo_requested"] for m in owner_api.get(LIST).json()["results"]}
    assert listed == {"Left calf": True, "Back": False, "No photo yet": False}

    make_diagnosis(owner, mole=mole)  # the new photo
    assert owner_api.get(detail(mole)).json()["new_photo_requested"] is False


def test_it_answers_a_change_with_the_mole_as_a_get_would(owner_api, owner, reviewer, make_diagnosis):
    mole = services.mole_create(owner=owner, name="Left calf")
    first = make_diagnosis(owner, mole=mole, age_days=60)
    latest = make_diagnosis(owner, mole=mole, age_days=3)
    services.review_save(diagnosis=latest, reviewer=reviewer, verdict="unclear", recommendation="new_photo",
                         notify=False)

    response = owner_api.patch(detail(mole), {"recheck_months": 3}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert [d["id"] for d in body["diagnoses"]] == [str(first.pk), str(latest.pk)]  # oldest first
    assert body["new_photo_requested"] is True
    assert body == owner_api.get(detail(mole)).json()
