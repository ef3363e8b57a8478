"""The OpenAPI 3.1 document, generated from the route table: each route's path, method,
permission, query parameters and headers, and the msgspec types its handler decodes and
encodes (their JSON Schemas come from msgspec, which is OpenAPI 3.1's dialect). Nothing here
is written by hand per route: a route added to the table is in the document."""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec

from tierq.api.permissions import Permission
from tierq.api.routing import Route, Text
from tierq.api.shapes import ErrorOut

_PATH_PARAM = re.compile(r"{(\w+)}")
# Path parameters that must be UUIDs (the routes answer 400 bad_id for anything else).
_UUID_PARAMS = frozenset({"task_id", "schedule_id"})
REF = "#/components/schemas/{name}"


def _version() -> str:
    try:
        return version("tierq")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


def _tag(path: str) -> str:
    parts = [p for p in path.strip("/").split("/") if p]
    if parts[:2] == ["api", "v1"]:
        parts = parts[2:]
    return parts[0] if parts else "root"


def _operation_ids(routes: Iterable[Route]) -> dict[tuple[str, str], str]:
    """The handler's name; a handler serving two routes is told apart by method and path."""
    ids: dict[tuple[str, str], str] = {}
    seen: set[str] = set()
    for r in routes:
        name = r.handler.__name__.strip("_")
        if name in seen:
            name = f"{name}_{r.method.lower()}_{_tag(r.path)}"
            name = re.sub(r"\W", "_", f"{name}_{r.path.rsplit('/', 1)[-1]}")
        seen.add(name)
        ids[(r.method, r.path)] = name
    return ids


def document(routes: Iterable[Route], title: str = "tierq") -> dict[str, Any]:
    routes = list(routes)
    types: list[Any] = [ErrorOut]
    for r in routes:
        if r.body is not None:
            types.append(r.body)
        types.extend(t for _, t in r.answers if t is not None and not isinstance(t, Text))
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(map(id, types), schemas, strict=True))
    error = {
        "description": "An error: code, message and details (the field path of a bad input)",
        "content": {"application/json": {"schema": schema_of[id(ErrorOut)]}},
    }
    operation_ids = _operation_ids(routes)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        operation: dict[str, Any] = {
            "operationId": operation_ids[(r.method, r.path)],
            "summary": r.summary,
            "tags": [_tag(r.path)],
            "x-permission": r.permission.value,
        }
        if r.description:
            operation["description"] = r.description
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"}
                if name in _UUID_PARAMS
                else {"type": "string", "minLength": 1, "maxLength": 200},
            }
            for name in _PATH_PARAM.findall(r.path)
        ]
        for p in r.params:
            entry: dict[str, Any] = {
                "name": p.name,
                "in": "header" if p.header else "query",
                "required": p.required,
                "schema": msgspec.json.schema(p.type),
            }
            if p.description:
                entry["description"] = p.description
            parameters.append(entry)
        if parameters:
            operation["parameters"] = parameters
        if r.body is not None:
            operation["requestBody"] = {
                "required": r.body_required,
                "content": {"application/json": {"schema": schema_of[id(r.body)]}},
            }
        responses: dict[str, Any] = {}
        for status, answer in r.answers:
            response = responses.setdefault(str(status), {"description": _reason(status)})
            if answer is None:
                continue
            content = response.setdefault("content", {})
            if isinstance(answer, Text):
                content[answer.media_type] = {"schema": {"type": "string"}}
                response["description"] += f"; {answer.media_type}: {answer.description}"
            else:
                content["application/json"] = {"schema": schema_of[id(answer)]}
        for code, links in _links(r, routes, operation_ids).items():
            responses[code]["links"] = links
        responses["default"] = error
        operation["responses"] = responses
        if r.permission is Permission.PUBLIC:
            operation["security"] = []
        paths.setdefault(r.path, {})[r.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": _version(),
            "description": "Task scheduler and job queue. Every error has the shape "
            "{error: {code, message, details}}; a bad field names its path in details.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
        # Either credential; servers without keys or JWT settings accept calls without one.
        "security": [{"ApiKey": []}, {"Bearer": []}],
    }


def _links(
    route: Route, routes: list[Route], operation_ids: dict[tuple[str, str], str]
) -> dict[str, dict[str, Any]]:
    """A creation (POST to a collection, answering 201 with an ``id``) links to every
    operation on ``collection/{x_id}``: clients and schemathesis's stateful tests follow
    them with the id just made."""
    created = [
        str(status)
        for status, answer in route.answers
        if status == 201 and "id" in getattr(answer, "__struct_fields__", ())
    ]
    if route.method != "POST" or not created:
        return {}
    links: dict[str, Any] = {}
    for other in routes:
        match = re.fullmatch(re.escape(route.path) + r"/{(\w+)}(/[\w/]*)?", other.path)
        if match is None:
            continue
        operation_id = operation_ids[(other.method, other.path)]
        links[operation_id] = {
            "operationId": operation_id,
            "parameters": {match.group(1): "$response.body#/id"},
        }
    return {status: links for status in created if links}


def _reason(status: int) -> str:
    return {200: "OK", 201: "Created", 204: "No content", 503: "Not ready"}.get(status, "OK")
