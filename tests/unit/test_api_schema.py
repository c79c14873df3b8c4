"""The OpenAPI schema, the Swagger UI served locally, and JSON errors everywhere under /api/."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.models.fields.files import FieldFile
from django.test import Client
from drf_spectacular.validation import validate_schema

from tests.conftest import make_image_bytes, token_client


@pytest.fixture
def schema(api_client):
    response = api_client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_it_generates_a_valid_schema_without_warnings(tmp_path):
    # Raises (SchemaGenerationError) on any generator warning or an invalid OpenAPI document.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3.")


def test_it_serves_a_valid_openapi_3_schema_to_anyone(schema):
    validate_schema(schema)  # raises on an invalid document
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/auth/token/",
        "/api/v1/diagnoses/",
        "/api/v1/diagnoses/{id}/",
        "/api/v1/diagnoses/{id}/image/",
        "/api/v1/diagnoses/{id}/heatmap/",
        "/api/v1/moles/",
        "/api/v1/moles/{id}/",
        "/api/v1/diagnoses/{diagnosis_id}/share-links/",
        "/api/v1/diagnoses/{diagnosis_id}/share-links/{id}/revoke/",
        "/api/v1/share-links/",
    } <= set(schema["paths"])


def test_it_describes_the_upload_as_multipart_with_a_binary_image(schema):
    upload = schema["paths"]["/api/v1/diagnoses/"]["post"]
    assert list(upload["requestBody"]["content"]) == ["multipart/form-data"]
    ref = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["properties"]["image"] == {**body["properties"]["image"], "type": "string", "format": "binary"}
    assert body["required"] == ["image"]
    assert set(upload["responses"]) == {"202", "400", "401", "403", "413", "415", "429"}
    assert "Location" in upload["responses"]["202"]["headers"]


def test_it_documents_token_authentication(schema):
    token_auth = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (token_auth["type"], token_auth["in"], token_auth["name"]) == ("apiKey", "header", "Authorization")
    assert "security" not in schema["paths"]["/api/v1/auth/token/"]["post"]


def test_it_serves_swagger_ui_from_local_files_without_inline_code(api_client):
    page = api_client.get("/api/v1/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    scripts = re.findall(r'<script src="([^"]+)"></script>', html)
    # Every script is a file (the site's CSP runs no inline one): Swagger UI's from the static
    # files, and its start-up script, which names the schema, from the docs view itself.
    assert html.count("<script") == len(scripts) and "<style" not in html
    *bundles, start_up = scripts
    assert bundles and all(src.startswith("/static/") for src in bundles), scripts
    assert not re.search(r"https?://", "".join(re.findall(r'(?:src|href)="([^"]+)"', html)))
    assert "/api/v1/schema/" in api_client.get(start_up).content.decode()
    for static_file in [*bundles, *re.findall(r'href="(/static/[^"]+\.css)"', html)]:
        assert Client().get(static_file).status_code == 200, static_file


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_it_answers_an_unknown_api_path_with_json_404(api_client, owner_client, settings, debug):
    settings.DEBUG = debug  # DEBUG's own 404 page is HTML: the API must not fall back to it
    response = api_client.get("/api/v1/nothing-here/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}
    # Outside /api/ a missing page is still a page.
    assert owner_client.get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_it_answers_the_same_404_whatever_is_missing(owner_api, owner, make_diagnosis):
    # Not get_object_or_404's "No Diagnosis matches the given query.", which differs by model.
    diagnosis, missing = make_diagnosis(owner), "00000000-0000-0000-0000-000000000000"
    checks = [
        ("get", f"/api/v1/diagnoses/{missing}/"),
        ("get", f"/api/v1/diagnoses/{missing}/image/"),
        ("get", f"/api/v1/moles/{missing}/"),
        ("get", f"/api/v1/diagnoses/{missing}/share-links/"),
        ("post", f"/api/v1/diagnoses/{diagnosis.pk}/share-links/{missing}/revoke/"),
        ("get", "/api/v1/diagnoses/not-a-uuid/"),
    ]
    for method, path in checks:
        response = getattr(owner_api, method)(path)

        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}, path


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_it_answers_a_write_to_an_unknown_api_path_with_json_404_not_a_csrf_page(method):
    # As a client without a CSRF cookie (curl, an app) sends it; also a POST missing its final
    # slash, which the catch-all takes before Django could redirect it.
    client = Client(enforce_csrf_checks=True)
    for path in ("/api/v1/nothing-here/", "/api/v1/auth/token"):
        response = getattr(client, method)(path, {"username": "x"}, content_type="application/json")

        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}


def test_it_answers_a_server_error_with_json(owner, make_diagnosis, private_media, monkeypatch):
    """A stored file the storage cannot read (a missing one is a 404) is a genuine server error."""
    diagnosis = make_diagnosis(owner)

    def unreadable(*args, **kwargs):
        raise PermissionError("storage refused")

    monkeypatch.setattr(FieldFile, "open", unreadable)
    api = Client(raise_request_exception=False)
    api.force_login(owner)

    response = api.get(f"/api/v1/diagnoses/{diagnosis.pk}/image/")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "A server error occurred."}


def test_it_answers_a_disallowed_method_with_json(owner_api):
    response = owner_api.put("/api/v1/diagnoses/", {})

    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "PUT" not allowed.'}


# --- the schema served, and what it says ------------------------------------------------------

SCHEMA = "/api/v1/schema/"
STALE_TOKEN = "Token 0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("header", [STALE_TOKEN, "Token"])
def test_it_serves_the_schema_and_the_docs_whatever_authorization_header_comes(api_client, header):
    # They are public: a client holding a revoked token must still read them, not get a 401.
    api_client.credentials(HTTP_AUTHORIZATION=header)

    yaml = api_client.get(SCHEMA)
    assert yaml.status_code == 200
    assert yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert api_client.get(SCHEMA, {"format": "json"}).json()["openapi"].startswith("3.")
    assert api_client.get("/api/v1/docs/").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("get", f"{SCHEMA}?format=xml", 404), ("post", SCHEMA, 405), ("post", "/api/v1/docs/", 405)],
)
def test_the_schema_and_the_docs_answer_errors_in_json(api_client, method, path, status):
    api_client.credentials(HTTP_AUTHORIZATION=STALE_TOKEN)

    response = getattr(api_client, method)(path, HTTP_ACCEPT="application/vnd.oai.openapi, text/html")

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"detail"}


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_it_documents_the_refusals_every_patient_endpoint_can_answer(schema):
    for path, method, operation in operations(schema):
        codes = set(operation["responses"])
        if (path, method) == ("/api/v1/auth/token/", "post"):
            assert {"400", "429"} <= codes and not codes & {"401", "403"}
            continue
        # 403: the privacy notice not agreed to (or, with the site's session, no CSRF token).
        assert {"401", "403"} <= codes, (method, path)
        if "{" in path or any(parameter["name"] == "page" for parameter in operation.get("parameters", [])):
            assert "404" in codes, (method, path)  # no such object among yours, or no such page
    assert "400" in schema["paths"]["/api/v1/diagnoses/"]["get"]["responses"]  # a bad filter


def documented_bodies(schema, path, method, status):
    """The names of the bodies the OpenAPI document allows for one answer (one, or a oneOf's)."""
    answer = schema["paths"][path][method]["responses"][str(status)]
    name = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    one_of = schema["components"]["schemas"][name].get("oneOf", [])
    return {one["$ref"].rsplit("/", 1)[1] for one in one_of} or {name}


def body_name(body):
    """Which of the schema's error bodies (components Error, FieldErrors) an answer's JSON is."""
    if set(body) == {"detail"} and isinstance(body["detail"], str):
        return "Error"
    if body and all(isinstance(messages, list) and all(isinstance(m, str) for m in messages)
                    for messages in body.values()):
        return "FieldErrors"
    return None


def test_it_documents_the_json_body_of_every_refusal(schema):
    # Every answer other than success is JSON: {"detail": "..."}, or for a 400 the invalid
    # fields' messages ({"detail": "..."} too when the body cannot be read at all).
    error, bad_request = "#/components/schemas/Error", "#/components/schemas/BadRequest"
    for path, method, operation in operations(schema):
        for status, answer in operation["responses"].items():
            if status >= "400":
                body = answer.get("content", {}).get("application/json", {}).get("schema")
                expected = {"$ref": bad_request if status == "400" else error}
                assert body == expected, (method, path, status)
    components = schema["components"]["schemas"]
    assert components["Error"]["properties"]["detail"]["type"] == "string"
    assert components["Error"]["required"] == ["detail"]
    messages = {"type": "array", "items": {"type": "string"}}
    assert components["FieldErrors"]["additionalProperties"] == messages
    field_errors = "#/components/schemas/FieldErrors"
    assert components["BadRequest"]["oneOf"] == [{"$ref": field_errors}, {"$ref": error}]


def test_the_refusals_bodies_are_the_ones_it_documents(schema, owner_api, api_client, owner,
                                                       make_diagnosis):
    diagnosis = make_diagnosis(owner, status="queued")
    not_json = {"data": "{not json", "content_type": "application/json"}
    share = "/api/v1/diagnoses/{diagnosis_id}/share-links/"
    checks = [
        # (client, method, path, request, the answer)
        (api_client, "get", "/api/v1/moles/", {}, 401),
        (owner_api, "get", "/api/v1/diagnoses/", {"data": {"created_after": "last week"}}, 400),
        (owner_api, "post", "/api/v1/moles/", {"data": {"name": ""}}, 400),
        (owner_api, "patch", "/api/v1/account/", not_json, 400),
        (owner_api, "get", "/api/v1/moles/{id}/", {}, 404),
        (owner_api, "post", share, {"data": {"days": 7}}, 409),  # not done yet
        (owner_api, "post", "/api/v1/diagnoses/", {"data": {"image": "x"}, "format": "json"}, 415),
    ]
    ids = {"{id}": "00000000-0000-0000-0000-000000000000", "{diagnosis_id}": str(diagnosis.pk)}
    for client, method, path, request, status in checks:
        url = path
        for name, value in ids.items():
            url = url.replace(name, value)
        response = getattr(client, method)(url, **request)
        assert response.status_code == status, (method, path)
        documented = documented_bodies(schema, path, method, status)
        assert body_name(response.json()) in documented, (method, path, response.json())


def test_it_documents_the_page_parameters_as_the_api_takes_them(schema, owner_api):
    for path, method, operation in operations(schema):
        parameters = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
        if "page" not in parameters:
            continue
        # At most 100 a page, whatever is asked for; `last` for the last page (DRF's, kept).
        assert parameters["page_size"] == {"type": "integer", "minimum": 1, "maximum": 100}, path
        assert {"type": "string", "enum": ["last"]} in parameters["page"]["anyOf"], path
    assert owner_api.get("/api/v1/diagnoses/", {"page": "last"}).status_code == 200


def test_it_says_which_fields_may_be_null_or_are_always_there(schema):
    components = schema["components"]["schemas"]
    model_version = components["Review"]["properties"]["model_version"]
    assert model_version["nullable"] and model_version["readOnly"]
    access = components["StaffAccess"]
    assert all(access["properties"][name]["readOnly"] for name in access["properties"])
    assert set(access["required"]) == set(access["properties"])


def test_it_says_every_property_of_an_answer_is_always_there(schema):
    components = schema["components"]["schemas"]
    # Writable fields with a default: optional in a request, always in the answer.
    assert {"body_site", "recheck_months"} <= set(components["Mole"]["required"])
    assert {"review_emails", "model_improvement"} <= set(components["Account"]["required"])
    for name in ("Mole", "Account", "Diagnosis", "PaginatedMoleList"):
        assert set(components[name]["required"]) == set(components[name]["properties"]), name
    assert set(components["MoleRequest"]["required"]) == {"name"}
    assert "required" not in components["PatchedAccountRequest"]


def test_it_gives_the_photo_reminder_its_choices_alone(schema):
    for name in ("Mole", "MoleRequest", "PatchedMoleRequest"):
        recheck = schema["components"]["schemas"][name]["properties"]["recheck_months"]
        assert "minimum" not in recheck and "maximum" not in recheck, name
        assert recheck["nullable"] and len(recheck["oneOf"]) == 2
    assert schema["components"]["schemas"]["RecheckMonthsEnum"]["enum"] == [1, 3, 6, 12]


def test_it_documents_when_to_poll_a_pending_diagnosis(schema):
    upload = schema["paths"]["/api/v1/diagnoses/"]["post"]["responses"]["202"]["headers"]
    read = schema["paths"]["/api/v1/diagnoses/{id}/"]["get"]["responses"]["200"]["headers"]
    for headers in (upload, read):
        assert headers["Retry-After"]["schema"] == {"type": "integer"}
        assert "`queued` or `running`" in headers["Retry-After"]["description"]


def test_it_does_not_promise_the_photos_size_in_a_413(schema):
    too_large = schema["paths"]["/api/v1/diagnoses/"]["post"]["responses"]["413"]["description"]
    assert "not the size sent" in too_large and "limit and the photo's." not in too_large


def test_it_says_the_creation_filters_take_a_date_alone(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/diagnoses/"]["get"]["parameters"]}
    for name in ("created_after", "created_before"):
        formats = {alternative["format"] for alternative in parameters[name]["schema"]["anyOf"]}
        assert formats == {"date", "date-time"}
        assert parameters[name]["description"].startswith("ISO 8601")


def test_the_refusals_it_documents_are_the_ones_the_api_gives(schema, owner_api, api_client, owner, settings,
                                                               django_user_model):
    not_agreed = token_client(django_user_model.objects.create_user("late", "late@example.com", "a long secret"))
    photo = {"image": SimpleUploadedFile("mole.jpg", make_image_bytes(), content_type="image/jpeg")}
    checks = [
        # (client, method, path, request, the answer, which the schema must list for the operation)
        (api_client, "get", "/api/v1/diagnoses/", {}, 401),
        (not_agreed, "get", "/api/v1/moles/", {}, 403),
        (not_agreed, "get", "/api/v1/account/", {}, 403),
        (owner_api, "get", "/api/v1/diagnoses/", {"data": {"created_after": "last week"}}, 400),
        (owner_api, "get", "/api/v1/diagnoses/", {"data": {"page": 2}}, 404),
        (owner_api, "get", "/api/v1/moles/", {"data": {"page": "two"}}, 404),
        (owner_api, "get", "/api/v1/staff-accesses/", {"data": {"page": 2}}, 404),
        (owner_api, "get", "/api/v1/share-links/", {"data": {"page": 2}}, 404),
        (owner_api, "patch", "/api/v1/account/", {"data": {"review_emails": "maybe"}}, 400),
        (owner_api, "post", "/api/v1/diagnoses/", {"data": {"image": "x"}, "format": "json"}, 415),
    ]
    for client, method, path, request, status in checks:
        response = getattr(client, method)(path, **request)
        assert response.status_code == status, (method, path)
        assert str(status) in schema["paths"][path][method]["responses"], (method, path, status)

    settings.MAX_REQUEST_BYTES = 1024  # the whole body's limit, checked before Django reads it
    too_large = owner_api.post("/api/v1/diagnoses/", photo, format="multipart")
    assert too_large.status_code == 413
    assert "413" in schema["paths"]["/api/v1/diagnoses/"]["post"]["responses"]


# --- what every operation can answer before its view reads the request --------------------------

TOKEN_PATH = "/api/v1/auth/token/"


def url_of(path, diagnosis, mole, link):
    """A path of the schema, aimed at the owner's real objects."""
    url = path.replace("{diagnosis_id}", str(diagnosis.pk))
    target = link if "/share-links/" in path else mole if path.startswith("/api/v1/moles/") else diagnosis
    url = url.replace("{id}", str(target.pk))
    assert "{" not in url, path
    return url


@pytest.fixture
def every_operation(schema, owner, make_diagnosis):
    """(path, method, operation, url) for each operation of the schema, on the owner's real
    objects: the deletes last, the token's last of all (it signs the client out)."""
    from diagnoses import services

    mole = services.mole_create(owner=owner, name="Back")
    diagnosis = make_diagnosis(owner, mole=mole)
    link, _ = services.share_link_create(diagnosis=diagnosis, days=7)
    found = [(path, method, operation, url_of(path, diagnosis, mole, link))
             for path, method, operation in operations(schema)]
    assert len(found) > 20  # the whole API, not what a broken schema left of it
    return sorted(found, key=lambda found: (found[1] == "delete", found[0] == TOKEN_PATH))


def test_every_operation_documents_the_413_of_a_body_declared_over_the_servers_limit(every_operation, owner_api,
                                                                                     settings):
    # molesite.middleware.request_size_limit reads Content-Length on every path and method.
    declared = str(settings.MAX_REQUEST_BYTES + 1)
    for path, method, operation, url in every_operation:
        response = owner_api.generic(method.upper(), url, "{}", content_type="application/json",
                                     CONTENT_LENGTH=declared)

        assert response.status_code == 413, (method, path)
        assert response.json()["detail"].startswith("Request body too large: the limit is"), (method, path)
        assert "413" in operation["responses"], (method, path)


def test_each_operation_that_reads_a_body_documents_the_415_of_one_it_cannot_read(every_operation, owner_api):
    for path, method, operation, url in every_operation:
        response = owner_api.generic(method.upper(), url, "name=Back", content_type="text/plain")

        # One without a request body never parses what comes: it never answers 415.
        reads_a_body = "requestBody" in operation
        assert (response.status_code == 415) == reads_a_body, (method, path, response.status_code)
        assert ("415" in operation["responses"]) == reads_a_body, (method, path)
        if reads_a_body:
            assert response.json() == {"detail": 'Unsupported media type "text/plain" in request.'}
            assert list(operation["requestBody"]["content"])[0] in operation["responses"]["415"]["description"]


def test_no_operation_answers_406_whatever_the_client_accepts(every_operation, owner_api):
    # JSON is all these views render: an Accept that asks for something else gets it, as the
    # schema says, rather than a 406 that no operation lists.
    for path, method, operation, url in every_operation:
        response = getattr(owner_api, method)(url, HTTP_ACCEPT="text/html")

        status = str(response.status_code)
        assert status in operation["responses"], (method, path, status)
        documented = operation["responses"][status].get("content", {})
        media_type = response.get("Content-Type", "").split(";")[0]
        assert media_type in documented if documented else not response.content, (method, path, status)


def test_it_answers_json_to_an_accept_header_or_format_it_cannot_satisfy(owner_api, owner, make_diagnosis):
    diagnosis = make_diagnosis(owner)
    url = f"/api/v1/diagnoses/{diagnosis.pk}/"

    for request in ({"HTTP_ACCEPT": "text/html"}, {"HTTP_ACCEPT": "application/xml"}, {"data": {"format": "xml"}}):
        response = owner_api.get(url, **request)

        assert response.status_code == 200, request
        assert response["Content-Type"] == "application/json", request
        assert response.json()["id"] == str(diagnosis.pk), request
    missing = owner_api.get("/api/v1/diagnoses/00000000-0000-0000-0000-000000000000/", HTTP_ACCEPT="text/html")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})
    # What it can satisfy, it still does.
    indented = owner_api.get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented.content.startswith(b'{\n  "id"')
