"""Schema-driven fuzzing of /api/v1/ with schemathesis: whatever a client sends, no 5xx, and
every answer one that the schema documents (its status code, content type and body).

The app's live schema (GET /api/v1/schema/) drives generation; requests go through the whole
WSGI stack (middleware included) in this process, authenticated with a real token. Valid and
invalid inputs both, bounded: at most MAX_EXAMPLES per operation, no shrinking.
"""

import uuid

import pytest
import schemathesis
from django.core.files.base import ContentFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from diagnoses.models import Diagnosis, Mole
from ml import CLASSES
from molesite.wsgi import application
from tests.conftest import make_image_bytes

MAX_EXAMPLES = 25
# Objects that exist for the fuzzed user, so that detail operations reach more than a 404.
SEEDED = {
    "/api/v1/diagnoses/": uuid.UUID("6d2b6f4e-0000-4000-8000-00000000d1a9"),
    "/api/v1/moles/": uuid.UUID("6d2b6f4e-0000-4000-8000-0000000000e1"),
}


@pytest.fixture
def in_test_transaction():
    """Requests go through the real WSGI handler, which closes the database connection when a
    request finishes; that would end the test's transaction. Django's test client unhooks it
    the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzzed_user(db, in_test_transaction, django_user_model, settings):
    # Never throttled here (the throttle has its own unit tests), in a cache of its own.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"uploads": "100000/hour", "token": "100000/minute"},
    }
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "fuzz"}}
    user = django_user_model.objects.create_user("fuzzed", "fuzzed@example.com", "a fuzzing secret",
                                                 consented_at=timezone.now())
    user.token_key = Token.objects.create(user=user).key
    return user


def seed(user):
    """(Re)create what a previous example may have deleted: the token, a mole, a done diagnosis."""
    Token.objects.get_or_create(user=user, defaults={"key": user.token_key})
    mole, _ = Mole.objects.get_or_create(
        pk=SEEDED["/api/v1/moles/"], defaults={"owner": user, "name": f"seeded {uuid.uuid4().hex}"}
    )
    if Diagnosis.objects.filter(pk=SEEDED["/api/v1/diagnoses/"]).exists():
        return
    diagnosis = Diagnosis(
        pk=SEEDED["/api/v1/diagnoses/"],
        owner=user,
        mole=mole,
        sha256="0" * 64,
        status=Diagnosis.Status.DONE,
        probabilities={code: 1 / len(CLASSES) for code in CLASSES},
        malignant_probability=3 / len(CLASSES),
        predicted_class="nv",
        risk=Diagnosis.Risk.MEDIUM,
        model_version="fuzz",
        finished_at=timezone.now(),
    )
    diagnosis.image.save("fuzz.jpg", ContentFile(make_image_bytes()), save=False)
    diagnosis.thumbnail.save("fuzz-thumb.jpg", ContentFile(make_image_bytes(size=(64, 48))), save=False)
    diagnosis.heatmap.save("fuzz-heat.png", ContentFile(make_image_bytes(fmt="PNG")), save=False)
    diagnosis.save()


def flatmap_path_parameters(context, path_parameters):
    """Half the time, aim a detail operation at one of the user's real objects."""
    path = context.operation.path
    if "{id}" not in path or not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    seeded = next(str(pk) for prefix, pk in SEEDED.items() if path.startswith(prefix))
    return st.sampled_from([path_parameters, {**path_parameters, "id": seeded}])


# Loaded once, when the module is collected (the schema view reads no database). Not through
# schemathesis.pytest.from_fixture: that one breaks on pytest 9.2 (it sets Node._nodeid).
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
schema.hook(flatmap_path_parameters)


@pytest.mark.integration
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # speed is bench/'s business; pytest-timeout still catches a hang
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_it_answers_every_generated_request_without_a_server_error(case, fuzzed_user):
    seed(fuzzed_user)
    response = case.call(headers={"Authorization": f"Token {fuzzed_user.token_key}"})
    # status_code_conformance leaves out schemathesis' probes with an undeclared method or
    # content type (405, 415 to any operation): only a 5xx counts against those.
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance],
    )
