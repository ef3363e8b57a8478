from __future__ import annotations

import asyncio

import pytest

from tierq.config import Settings
from tierq.engine.handlers import build_registry, close_registry
from tierq.engine.handlers.base import PayloadError, PermanentError, TaskError
from tierq.engine.handlers.builtin import validate_dummy


@pytest.fixture
async def registry():
    reg = build_registry(Settings())
    yield reg
    await close_registry(reg)


async def test_noop_is_instant_and_returns_none(registry, make_ctx):
    noop = registry.get("noop")
    assert noop is not None and noop.instant
    assert await noop.run(make_ctx("noop", {})) is None


async def test_default_registry_has_no_shell(registry):
    assert registry.names() == ["dummy", "external", "http", "noop"]
    assert "shell" not in registry


async def test_dummy_returns_result(registry, make_ctx):
    dummy = registry.get("dummy")
    assert await dummy.run(make_ctx("dummy", {"result": {"a": [1, 2]}})) == {"a": [1, 2]}
    assert await dummy.run(make_ctx("dummy", None)) is None


async def test_dummy_fails_while_attempt_within_fail_times(registry, make_ctx):
    dummy = registry.get("dummy")
    payload = {"fail_times": 2, "result": "ok"}
    for attempt in (1, 2):
        with pytest.raises(TaskError) as info:
            await dummy.run(make_ctx("dummy", payload, attempt=attempt))
        assert not isinstance(info.value, PermanentError)
    assert await dummy.run(make_ctx("dummy", payload, attempt=3)) == "ok"


async def test_dummy_fail_always(registry, make_ctx):
    with pytest.raises(TaskError, match="fail_always"):
        await registry.get("dummy").run(make_ctx("dummy", {"fail_always": True}, attempt=99))


async def test_dummy_sleeps_and_is_cancellable(registry, make_ctx):
    dummy = registry.get("dummy")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await dummy.run(make_ctx("dummy", {"sleep_ms": 50}))
    assert loop.time() - start >= 0.045
    task = asyncio.create_task(dummy.run(make_ctx("dummy", {"sleep_ms": 10_000})))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - start < 2


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ([], "payload"),
        ({"sleep_ms": -1}, "payload.sleep_ms"),
        ({"sleep_ms": 1.5}, "payload.sleep_ms"),
        ({"sleep_ms": True}, "payload.sleep_ms"),
        ({"fail_times": "2"}, "payload.fail_times"),
        ({"fail_always": 1}, "payload.fail_always"),
        ({"sleepms": 1}, "payload.sleepms"),
    ],
)
def test_dummy_validation_names_the_field(payload, path):
    with pytest.raises(PayloadError) as info:
        validate_dummy(payload)
    assert info.value.path == path
    assert str(info.value).startswith(path + ": ")


def test_dummy_validation_accepts_good_payload():
    validate_dummy({"sleep_ms": 0, "fail_times": 3, "fail_always": False, "result": [None]})
    validate_dummy(None)


async def test_dummy_bad_payload_at_run_is_permanent(registry, make_ctx):
    with pytest.raises(PermanentError, match=r"payload\.sleep_ms"):
        await registry.get("dummy").run(make_ctx("dummy", {"sleep_ms": -5}))
