"""Hooks for drf-spectacular (SPECTACULAR_SETTINGS' POSTPROCESSING_HOOKS)."""

import re

REF = re.compile(r"^#/components/schemas/(.+)$")
# HTTP methods, as the keys of a path item (which also holds `parameters`, `summary`, ...).
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# The body of every refusal: {"detail": "..."} (diagnoses.api.serializers.ErrorSerializer).
ERROR = "Error"

# Refused by molesite.middleware.request_size_limit, before any view, authentication or parser:
# it reads the declared Content-Length alone, on every path and method (a GET may declare a body).
TOO_LARGE = (
    "The request declares a body (`Content-Length`) over the server's limit: refused before it is "
    "read, and before the token is checked, whatever the operation. `detail` gives that limit and "
    "the photo's own (not the size sent). A photo over its own limit in a body within the server's "
    "gets 400 on `image` instead."
)


def _refs(node):
    """The names of the components a part of the document refers to, directly."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and REF.match(value):
                yield REF.match(value).group(1)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _reachable(start, components):
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        todo.extend(_refs(components[name]))
    return seen


def require_response_properties(result, generator, request, public):
    """Every property of a response body is `required`: DRF writes each field of a serializer
    into every answer (null when it has no value), and a client generated from the schema should
    not have to test for a key that is always there. drf-spectacular marks only what a request
    must send or what is read-only, so a writable field with a default (a mole's `body_site`,
    the account's `review_emails`) looked optional in the answers too. Only the components that
    answers alone use (COMPONENT_SPLIT_REQUEST gives requests their own), so that what a request
    may leave out stays optional."""
    components = result.get("components", {}).get("schemas", {})
    answers, requests = [], []
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                answers.extend(_refs(operation.get("responses", {})))
                requests.extend(_refs(operation.get("requestBody", {})))
    for name in _reachable(answers, components) - _reachable(requests, components):
        properties = components[name].get("properties")
        if properties:
            components[name]["required"] = sorted(properties)
    return result


def _refusal(description):
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
            "description": description}


def document_refusals_of_any_request(result, generator, request, public):
    """The refusals that come before a view reads anything, written here once for every
    operation rather than by each view (which would forget one; a status the schema does not
    list is a failure for a client checking the answers): 413 on every operation (a body
    declared over MAX_REQUEST_BYTES, molesite.middleware), and 415 on each one that takes a
    body (DRF's parsers: a `Content-Type` none of them reads). An operation without a request
    body never parses one, so it never answers 415. (No 406: the views answer JSON whatever
    the `Accept` header asks, diagnoses.api.views.JSONNegotiation.)"""
    components = result.get("components", {}).get("schemas", {})
    if ERROR not in components:
        raise ValueError(f"The refusals' body, component {ERROR!r}, is missing from the schema.")
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses["413"] = _refusal(TOO_LARGE)
            media_types = list(operation.get("requestBody", {}).get("content", {}))
            if media_types:
                listed = ", ".join(f"`{media_type}`" for media_type in media_types)
                responses["415"] = _refusal(f"The body's `Content-Type` is none of those this operation "
                                            f"reads: {listed}.")
            operation["responses"] = dict(sorted(responses.items()))
    return result
