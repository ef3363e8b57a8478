"""The OpenAPI document and the docs page: every route of the app is described, every
described operation is a route, and what the server sends fits the types it is described by."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.api.conftest import Client, submit
from tierq.api.shapes import ErrorOut, TaskOut, TaskPage


async def _document(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_every_route_is_in_the_document_and_nothing_else(client: Client) -> None:
    doc = await _document(client)
    assert doc["openapi"] == "3.1.0"
    described = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()  # type: ignore[union-attr]
        if route.method != "HEAD" and route.resource is not None
    }
    assert served - described == set(), "routes missing from the OpenAPI document"
    assert described - served == set(), "the document describes routes the app lacks"
    assert len(served) >= 45


async def test_operations_name_types_permissions_and_the_error_shape(client: Client) -> None:
    doc = await _document(client)
    schemas = doc["components"]["schemas"]
    submit_op = doc["paths"]["/api/v1/tasks"]["post"]
    assert submit_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskIn"
    }
    assert submit_op["x-permission"] == "tasks:submit"
    assert set(submit_op["responses"]) == {"200", "201", "default"}
    assert "payload" in schemas["TaskIn"]["properties"]
    assert schemas["ErrorBody"]["required"] == ["code", "message", "details"]
    listing = doc["paths"]["/api/v1/tasks"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"status", "queue", "after", "size"}
    # Public routes need no credential; the others take either scheme.
    assert doc["paths"]["/health/live"]["get"]["security"] == []
    assert "security" not in submit_op
    assert set(doc["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


async def test_answers_decode_as_the_types_the_document_names(client: Client) -> None:
    task = await submit(client, type="noop", payload={"n": 1})
    one = await client.get(f"/api/v1/tasks/{task['id']}")
    strict = msgspec.json.Decoder(TaskOut)
    assert strict.decode(await one.read()).id == task["id"]
    page = msgspec.json.decode(await (await client.get("/api/v1/tasks")).read(), type=TaskPage)
    assert [t.id for t in page.items] == [task["id"]]
    bad = await client.get("/api/v1/tasks?size=x")
    error = msgspec.json.decode(await bad.read(), type=ErrorOut)
    assert (bad.status, error.error.code) == (400, "bad_parameter")


async def test_docs_page_is_served_offline_with_a_strict_policy(client: Client) -> None:
    page = await client.get("/docs")
    assert page.status == 200
    html = await page.text()
    assert '<script type="module" src="/docs/docs.js">' in html
    assert "http" not in html.replace("http-equiv", "")  # no other origin
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    script = await client.get("/docs/docs.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "/api/v1/openapi.json" in await script.text()
    assert (await client.get("/docs/../app.py")).status == 404
    assert (await client.get("/docs/other.js")).status == 404
