"""Hooks for drf-spectacular (SPECTACULAR_SETTINGS' POSTPROCESSING_HOOKS)."""

import re

REF = re.compile(r"^#/components/schemas/(.+)$")


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
