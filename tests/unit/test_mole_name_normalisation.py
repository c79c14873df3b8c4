"""Mole names that look the same are one name: composed or decomposed accents, case, zero-width
and byte-order marks, bidi overrides. Every way a name comes in (the upload form's new mole, the
mole edit form, the API's create and update) stores it normalised and refuses a look-alike of
another mole's name as taken; the database refuses one in any case (the race between two)."""

from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnoses import services
from diagnoses.api.serializers import MoleSerializer
from diagnoses.forms import NEW_MOLE_NAME_TAKEN, MoleForm, UploadForm
from diagnoses.models import (
    MOLE_NAME_TAKEN, Diagnosis, Mole, MoleQuerySet, clean_mole_name, normalise_mole_name,
)

pytestmark = pytest.mark.django_db

LIST = "/api/v1/moles/"
CAFE_NFC, CAFE_NFD = "Caf\u00e9", "Cafe\u0301"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji, three joined
PERSIAN = "\u0634\u0627\u0646\u0647\u200c\u06cc \u0686\u067e"  # "left shoulder", with a ZWNJ
# 80 characters that composing makes 160: U+0958 is ka with a nukta, two characters in NFC.
LENGTHENED_BY_COMPOSING = "\u0958" * 80


def upload(data):
    return SimpleUploadedFile("mole.jpg", data, content_type="image/jpeg")


@pytest.mark.parametrize("typed, stored", [
    (CAFE_NFD, CAFE_NFC),
    ("\u200bLeft\u00adarm\ufeff", "Leftarm"),
    ("a\u202eb (x)", "ab (x)"),
    ("  Back\u200b ", "Back"),
    ("\u200b", ""), ("\ufeff \u2066", ""),
    # joiners some spellings need are kept: Persian's non-joiner, an emoji family's joiners
    (PERSIAN, PERSIAN), (FAMILY, FAMILY),
])
def test_a_name_is_composed_without_invisible_characters_and_stripped(typed, stored):
    assert normalise_mole_name(typed) == stored


def test_the_api_takes_each_look_alike_name_once(owner_api):
    answers = {name: owner_api.post(LIST, {"name": name}, format="json")
               for name in [CAFE_NFC, CAFE_NFD, "left arm", "Left arm", "a\u202eb (x)", "AB (X)", "\u00c9paule",
                            "\u00e9PAULE"]}

    assert {name: answer.status_code for name, answer in answers.items()} == {
        CAFE_NFC: 201, CAFE_NFD: 400, "left arm": 201, "Left arm": 400, "a\u202eb (x)": 201, "AB (X)": 400,
        "\u00c9paule": 201, "\u00e9PAULE": 400}
    assert answers["Left arm"].json() == answers["\u00e9PAULE"].json() == {"name": [MOLE_NAME_TAKEN]}
    assert sorted(Mole.objects.values_list("name", flat=True)) == [CAFE_NFC, "ab (x)", "left arm", "\u00c9paule"]


@pytest.mark.parametrize("name", ["\u200b", "\ufeff", " \u200b\u202e "])
def test_the_api_refuses_a_name_of_nothing_visible_as_a_blank_one(owner_api, name):
    response = owner_api.post(LIST, {"name": name}, format="json")

    assert response.status_code == 400
    assert response.json() == owner_api.post(LIST, {"name": ""}, format="json").json()
    assert not Mole.objects.exists()


def test_the_api_refuses_a_rename_onto_another_name_in_another_case(owner_api, owner):
    services.mole_create(owner=owner, name="Back")
    arm = services.mole_create(owner=owner, name="Arm")
    url = f"{LIST}{arm.pk}/"

    assert owner_api.patch(url, {"name": "BACK"}, format="json").json() == {"name": [MOLE_NAME_TAKEN]}
    assert owner_api.patch(url, {"name": "\u200b"}, format="json").status_code == 400
    # Its own name in another case is no clash.
    assert owner_api.patch(url, {"name": "ARM\u200b"}, format="json").status_code == 200
    arm.refresh_from_db()
    assert arm.name == "ARM"


def test_the_edit_form_refuses_a_look_alike_and_an_invisible_name(owner_client, owner):
    mole = Mole.objects.create(owner=owner, name="Shoulder")
    Mole.objects.create(owner=owner, name=CAFE_NFC)
    url = reverse("diagnoses:mole_edit", args=[mole.pk])

    taken = owner_client.post(url, {"name": CAFE_NFD.upper(), "body_site": "back"})
    invisible = owner_client.post(url, {"name": "\u200b\ufeff", "body_site": "back"})
    empty = owner_client.post(url, {"name": "", "body_site": "back"})

    assert taken.context["form"].errors == {"name": [MOLE_NAME_TAKEN]}
    assert invisible.status_code == 400
    assert invisible.context["form"].errors == empty.context["form"].errors == {"name": ["This field is required."]}
    assert owner_client.post(url, {"name": "Left\u202e shoulder", "body_site": "back"}).status_code == 302
    assert Mole.objects.get(pk=mole.pk).name == "Left shoulder"


def test_the_upload_form_sends_a_look_alike_new_name_to_the_existing_mole(owner_client, owner, jpeg_bytes):
    Mole.objects.create(owner=owner, name="Left arm")

    response = owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes), "new_mole_name": "left ARM"})

    assert response.status_code == 400
    assert response.context["form"].errors == {"new_mole_name": [NEW_MOLE_NAME_TAKEN]}
    assert Mole.objects.count() == 1 and not Diagnosis.objects.exists()


def test_the_upload_form_stores_a_new_name_normalised(owner_client, owner, jpeg_bytes):
    owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes), "new_mole_name": f"\ufeff{CAFE_NFD}"})

    assert Diagnosis.objects.get().mole.name == CAFE_NFC


def test_the_database_refuses_a_name_in_another_case_as_taken(owner, outsider):
    """The race between two uploads naming one new mole: the constraint, through MoleNameTaken."""
    services.mole_create(owner=owner, name="Left arm")

    with pytest.raises(services.MoleNameTaken):
        services.mole_create(owner=owner, name="LEFT ARM")
    services.mole_create(owner=outsider, name="left arm")  # names are per patient


def test_an_upload_losing_the_race_to_a_name_in_another_case_gets_the_forms_message(
        owner_client, owner, jpeg_bytes, monkeypatch):
    Mole.objects.create(owner=owner, name="Left shoulder")  # the other upload's, made just now
    monkeypatch.setattr(MoleQuerySet, "name_taken", lambda self, **kwargs: False)

    response = owner_client.post(reverse("diagnoses:new"),
                                 {"image": upload(jpeg_bytes), "new_mole_name": "left shoulder"})

    assert response.status_code == 400
    assert response.context["form"].errors == {"new_mole_name": [NEW_MOLE_NAME_TAKEN]}
    assert Mole.objects.count() == 1 and not Diagnosis.objects.exists()


def test_a_name_that_composing_makes_too_long_is_refused_everywhere(owner_api, owner_client, owner,
                                                                    jpeg_bytes):
    response = owner_api.post(LIST, {"name": LENGTHENED_BY_COMPOSING}, format="json")
    assert response.status_code == 400 and "name" in response.json()

    page = owner_client.post(reverse("diagnoses:new"), {"image": upload(jpeg_bytes),
                                                        "new_mole_name": LENGTHENED_BY_COMPOSING})
    assert page.status_code == 400 and "new_mole_name" in page.context["form"].errors
    assert not Mole.objects.exists() and not Diagnosis.objects.exists()


def test_the_service_stores_a_name_normalised_whoever_calls_it(owner):
    assert services.mole_create(owner=owner, name=f" \u200b{CAFE_NFD} ").name == CAFE_NFC


# --- the one check every way in shares (clean_mole_name) ----------------------------------------


def test_the_check_gives_the_name_as_stored_and_leaves_no_name_to_its_caller(owner, django_assert_num_queries):
    Mole.objects.create(owner=owner, name="Back")

    assert clean_mole_name(f"\u200b{CAFE_NFD} ", owner=owner) == CAFE_NFC
    with django_assert_num_queries(0):  # nothing visible: neither too long nor anyone's
        assert clean_mole_name("\u200b\ufeff", owner=owner) == ""


def test_the_check_refuses_a_name_composing_makes_too_long(owner):
    with pytest.raises(ValidationError) as refused:
        clean_mole_name(LENGTHENED_BY_COMPOSING, owner=owner)

    assert refused.value.code == "max_length"


def test_the_check_refuses_another_moles_name_in_any_case_but_not_the_moles_own(owner, outsider):
    back = Mole.objects.create(owner=owner, name="Back")

    with pytest.raises(ValidationError) as refused:
        clean_mole_name("BACK", owner=owner)
    with pytest.raises(ValidationError) as refused_new:
        clean_mole_name("back", owner=owner, taken_message=NEW_MOLE_NAME_TAKEN)

    assert (refused.value.messages, refused.value.code) == ([MOLE_NAME_TAKEN], "unique")
    assert (refused_new.value.messages, refused_new.value.code) == ([NEW_MOLE_NAME_TAKEN], "unique")
    assert clean_mole_name("BACK", owner=owner, exclude_pk=back.pk) == "BACK"
    assert clean_mole_name("Back", owner=outsider) == "Back"  # names are per patient


def test_every_way_in_refuses_a_taken_name_as_not_unique(owner):
    """One error, one code: the upload form's new mole, the edit form and the API."""
    Mole.objects.create(owner=owner, name="Back")
    arm = Mole.objects.create(owner=owner, name="Arm")

    upload_form = UploadForm({"new_mole_name": "back"}, owner=owner)
    edit_form = MoleForm({"name": "BACK", "body_site": "back"}, instance=arm)
    api = MoleSerializer(data={"name": "bAcK"}, context={"request": SimpleNamespace(user=owner)})

    assert not upload_form.is_valid() and upload_form.has_error("new_mole_name", "unique")
    assert not edit_form.is_valid() and edit_form.has_error("name", "unique")
    assert not api.is_valid()
    assert [(str(error), error.code) for error in api.errors["name"]] == [(MOLE_NAME_TAKEN, "unique")]


@pytest.mark.parametrize("name", ["Back", LENGTHENED_BY_COMPOSING], ids=["taken", "too long when composed"])
def test_the_upload_form_says_only_not_both_for_a_name_beside_a_chosen_mole(owner, name):
    """Taken or too long, the name is one too many: that is the one thing to fix."""
    arm = Mole.objects.create(owner=owner, name="Arm")
    Mole.objects.create(owner=owner, name="Back")

    form = UploadForm({"mole": str(arm.pk), "new_mole_name": name}, owner=owner)

    assert not form.is_valid()
    assert form.errors["new_mole_name"] == ["Choose an existing mole or name a new one, not both."]
