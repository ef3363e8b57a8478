from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from tierq.config import Settings
from tierq.engine.handlers import build_registry, close_registry
from tierq.engine.handlers.base import PayloadError, PermanentError, TaskError


async def _echo(request: web.Request) -> web.Response:
    raw = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "content_type": request.headers.get("Content-Type"),
            "body": raw.decode(),
            "auth": request.headers.get("Authorization"),
            "x": request.headers.get("X-Test"),
        }
    )


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status body")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def _see_other(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/echo")


async def _loop(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    raise web.HTTPFound(f"/loop/{n + 1}")


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


async def _text(request: web.Request) -> web.Response:
    return web.Response(text="plain text")


async def _big(request: web.Request) -> web.Response:
    return web.Response(text="x" * 100_000)


@pytest.fixture
async def server():
    app = web.Application()
    app.router.add_get("/json", _json)
    app.router.add_get("/text", _text)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/redirect", _redirect)
    app.router.add_post("/see-other", _see_other)
    app.router.add_get("/loop/{n}", _loop)
    app.router.add_get("/big", _big)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def registry():
    reg = build_registry(Settings(http_allow_private=("127.0.0.1",)))
    yield reg
    await close_registry(reg)


@pytest.fixture
async def run_http(registry, make_ctx):
    async def run(payload):
        return await registry.get("http").run(make_ctx("http", payload))

    return run


async def test_get_json(server, run_http):
    result = await run_http({"url": f"{server}/json"})
    assert result["status"] == 200
    assert result["body"] == {"hello": "world"}
    assert result["headers"]["Content-Type"].startswith("application/json")
    assert result["truncated"] is False


async def test_get_text(server, run_http):
    result = await run_http({"url": f"{server}/text", "method": "get"})
    assert result["body"] == "plain text"


async def test_post_json_body_and_headers(server, run_http):
    result = await run_http(
        {"url": f"{server}/echo", "method": "POST", "body": {"a": 1}, "headers": {"X-Test": "t"}}
    )
    body = result["body"]
    assert body["method"] == "POST"
    assert body["content_type"] == "application/json"
    assert body["body"] == '{"a":1}'
    assert body["x"] == "t"


async def test_put_string_body(server, run_http):
    result = await run_http({"url": f"{server}/echo", "method": "PUT", "body": "hi"})
    assert result["body"]["body"] == "hi"
    assert result["body"]["content_type"].startswith("text/plain")


async def test_head(server, run_http):
    result = await run_http({"url": f"{server}/json", "method": "HEAD"})
    assert result["status"] == 200 and result["body"] == ""


async def test_body_is_capped(server, run_http):
    result = await run_http({"url": f"{server}/big"})
    assert len(result["body"]) == 64 * 1024 and result["truncated"] is True


async def test_status_classes(server, run_http):
    with pytest.raises(PermanentError, match="404"):
        await run_http({"url": f"{server}/status/404"})
    for retryable in (408, 429, 500, 503):
        with pytest.raises(TaskError) as info:
            await run_http({"url": f"{server}/status/{retryable}"})
        assert not isinstance(info.value, PermanentError)
        assert str(retryable) in str(info.value)
    result = await run_http({"url": f"{server}/status/404", "expect_status": [404]})
    assert result["status"] == 404 and result["body"] == "status body"
    with pytest.raises(TaskError):
        await run_http({"url": f"{server}/json", "expect_status": [201]})


async def test_timeout_is_retryable(server, run_http):
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TaskError, match="timed out") as info:
        await run_http({"url": f"{server}/slow", "timeout_seconds": 0.2})
    assert not isinstance(info.value, PermanentError)
    assert loop.time() - start < 2


async def test_connection_refused_is_retryable(run_http):
    with pytest.raises(TaskError) as info:
        await run_http({"url": "http://127.0.0.1:9/"})
    assert not isinstance(info.value, PermanentError)


async def test_redirect_followed_within_allowed(server, run_http):
    result = await run_http({"url": f"{server}/redirect?to=/json"})
    assert result["body"] == {"hello": "world"}


async def test_303_turns_post_into_get(server, run_http):
    result = await run_http({"url": f"{server}/see-other", "method": "POST", "body": {"a": 1}})
    assert result["body"]["method"] == "GET" and result["body"]["body"] == ""


async def test_credentials_dropped_on_cross_origin_redirect(server, make_ctx):
    port = server.rsplit(":", 1)[1]
    # Same server under another origin (a host name, allowed by name, through the resolver).
    registry = build_registry(Settings(http_allow_private=("127.0.0.1", "localhost")))
    try:
        result = await registry.get("http").run(
            make_ctx(
                "http",
                {
                    "url": f"{server}/redirect?to=http://localhost:{port}/echo",
                    "headers": {"Authorization": "Bearer secret", "X-Test": "kept"},
                },
            )
        )
    finally:
        await close_registry(registry)
    assert result["body"]["auth"] is None and result["body"]["x"] == "kept"


async def test_too_many_redirects(server, run_http):
    with pytest.raises(PermanentError, match="more than 5 redirects"):
        await run_http({"url": f"{server}/loop/0"})


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]:{port}/json"],
)
async def test_redirect_to_refused_address_is_refused(server, run_http, target):
    port = server.rsplit(":", 1)[1]
    with pytest.raises(PermanentError, match="refused"):
        await run_http({"url": f"{server}/redirect?to={target.format(port=port)}"})


async def test_redirect_to_refused_spelling_is_refused(server, run_http):
    port = server.rsplit(":", 1)[1]
    # A hex spelling of 127.0.0.2 (outside the allowed 127.0.0.1/32).
    with pytest.raises(PermanentError, match="refused"):
        await run_http({"url": f"{server}/redirect?to=http://0x7f.0.0.2:{port}/json"})


async def test_refused_by_default(server, make_ctx):
    registry = build_registry(Settings())
    try:
        for url in (f"{server}/json", server.replace("127.0.0.1", "localhost") + "/json"):
            with pytest.raises(PermanentError, match="refused to connect") as info:
                await registry.get("http").run(make_ctx("http", {"url": url}))
            assert "TIERQ_HTTP_ALLOW_PRIVATE" in str(info.value)
        with pytest.raises(PayloadError) as err:
            registry.get("http").validate({"url": f"{server}/json"})
        assert err.value.path == "payload.url"
    finally:
        await close_registry(registry)


async def test_session_is_created_lazily_and_closed(server, registry, run_http):
    handler = registry.get("http").run.__self__
    assert handler._session is None
    await run_http({"url": f"{server}/json"})
    session = handler._session
    assert session is not None and not session.closed
    await close_registry(registry)
    assert session.closed


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({}, "payload.url"),
        ({"url": "ftp://example.com/"}, "payload.url"),
        ({"url": "not a url"}, "payload.url"),
        ({"url": "http://example.com", "method": "TRACE"}, "payload.method"),
        ({"url": "http://example.com", "headers": {"a": 1}}, "payload.headers.a"),
        ({"url": "http://example.com", "headers": {"a": "x\r\nb: y"}}, "payload.headers.a"),
        ({"url": "http://example.com", "timeout_seconds": 0}, "payload.timeout_seconds"),
        ({"url": "http://example.com", "expect_status": []}, "payload.expect_status"),
        ({"url": "http://example.com", "expect_status": [200, 99]}, "payload.expect_status[1]"),
        ({"url": "http://example.com", "bogus": 1}, "payload.bogus"),
        ({"url": "http://169.254.169.254/"}, "payload.url"),
        ("http://example.com", "payload"),
    ],
)
async def test_validation_paths(registry, payload, path):
    with pytest.raises(PayloadError) as info:
        registry.get("http").validate(payload)
    assert info.value.path == path
