from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tierq.config import ConfigError, Settings
from tierq.engine.handlers import build_registry, close_registry
from tierq.engine.handlers.base import PayloadError, PermanentError, TaskError

ECHO = shutil.which("echo")
SLEEP = shutil.which("sleep")
SH = shutil.which("sh")


def _running(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
async def make_registry():
    made = []

    def make(*allow: str):
        reg = build_registry(Settings(shell_allow=allow))
        made.append(reg)
        return reg

    yield make
    for reg in made:
        await close_registry(reg)


async def test_disabled_by_default(make_registry):
    registry = make_registry()
    assert "shell" not in registry
    assert registry.get("shell") is None


async def test_echo_runs(make_registry, make_ctx):
    shell = make_registry("echo").get("shell")
    result = await shell.run(make_ctx("shell", {"argv": ["/bin/echo", "hello", "$HOME;ls"]}))
    assert result == {"exit_code": 0, "stdout": "hello $HOME;ls\n", "stderr": ""}
    result = await shell.run(make_ctx("shell", {"argv": ["echo", "by name"]}))
    assert result["stdout"] == "by name\n"


async def test_minimal_env_plus_payload_env(make_registry, make_ctx, monkeypatch):
    monkeypatch.setenv("TIERQ_SECRET_FOR_TEST", "leak")
    env = shutil.which("env")
    shell = make_registry(env).get("shell")
    result = await shell.run(make_ctx("shell", {"argv": [env], "env": {"GREETING": "hi"}}))
    lines = set(result["stdout"].splitlines())
    assert "GREETING=hi" in lines
    assert {line.split("=", 1)[0] for line in lines} == {"PATH", "GREETING"}


async def test_cwd(make_registry, make_ctx, tmp_path):
    pwd = shutil.which("pwd") or "/bin/pwd"
    shell = make_registry(pwd).get("shell")
    result = await shell.run(make_ctx("shell", {"argv": [pwd], "cwd": str(tmp_path)}))
    assert result["stdout"].strip() == os.path.realpath(tmp_path)
    with pytest.raises(PermanentError, match="cannot start"):
        await shell.run(make_ctx("shell", {"argv": [pwd], "cwd": str(tmp_path / "missing")}))


async def test_refuses_executable_not_allowed(make_registry, make_ctx, tmp_path):
    registry = make_registry("echo")
    shell = registry.get("shell")
    with pytest.raises(PayloadError) as info:
        shell.validate({"argv": ["sleep", "1"]})
    assert info.value.path == "payload.argv[0]"
    with pytest.raises(PermanentError, match="not in TIERQ_SHELL_ALLOW"):
        await shell.run(make_ctx("shell", {"argv": [SLEEP, "0"]}))
    # A symlink to an allowed program is that program; a copy elsewhere is not allowed.
    link = tmp_path / "my-echo"
    link.symlink_to(ECHO)
    shell.validate({"argv": [str(link), "x"]})
    with pytest.raises(PayloadError):
        shell.validate({"argv": ["./echo"]})


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"argv": []}, "payload.argv"),
        ({"argv": "echo hi"}, "payload.argv"),
        ({"argv": ["echo", 1]}, "payload.argv[1]"),
        ({"argv": [""]}, "payload.argv[0]"),
        ({"argv": ["echo"], "env": {"LD_PRELOAD": "/tmp/x.so"}}, "payload.env.LD_PRELOAD"),
        ({"argv": ["echo"], "env": {"A": 1}}, "payload.env.A"),
        ({"argv": ["echo"], "cwd": "relative"}, "payload.cwd"),
        ({"argv": ["echo"], "timeout_seconds": -1}, "payload.timeout_seconds"),
        ({"argv": ["echo"], "shell": True}, "payload.shell"),
    ],
)
async def test_validation_paths(make_registry, payload, path):
    with pytest.raises(PayloadError) as info:
        make_registry("echo").get("shell").validate(payload)
    assert info.value.path == path


async def test_nonzero_exit_fails(make_registry, make_ctx):
    shell = make_registry("sh").get("shell")
    with pytest.raises(TaskError, match="exited with code 3: boom") as info:
        await shell.run(make_ctx("shell", {"argv": [SH, "-c", "echo boom >&2; exit 3"]}))
    assert not isinstance(info.value, PermanentError)


async def test_output_is_capped(make_registry, make_ctx):
    shell = make_registry("sh").get("shell")
    script = "head -c 200000 /dev/zero | tr '\\0' a"
    result = await shell.run(make_ctx("shell", {"argv": [SH, "-c", script]}))
    assert len(result["stdout"]) == 64 * 1024


async def test_timeout_kills_sleep(make_registry, make_ctx):
    shell = make_registry("sleep").get("shell")
    marker = "30.0417"
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TaskError, match="timed out"):
        await shell.run(make_ctx("shell", {"argv": ["sleep", marker], "timeout_seconds": 0.3}))
    assert loop.time() - start < 3
    assert _running(marker) == []


async def test_timeout_kills_the_whole_group(make_registry, make_ctx):
    shell = make_registry("sh").get("shell")
    # The background sleep is a grandchild; the trap makes the leader ignore SIGTERM.
    script = "trap '' TERM; sleep 31.0417 & while :; do sleep 0.05; done"
    with pytest.raises(TaskError, match="timed out"):
        await shell.run(make_ctx("shell", {"argv": [SH, "-c", script], "timeout_seconds": 0.3}))
    assert _running("31.0417") == []
    assert _running(script) == []


async def test_cancellation_kills_and_reraises(make_registry, make_ctx):
    shell = make_registry("sleep").get("shell")
    marker = "32.0417"
    task = asyncio.create_task(shell.run(make_ctx("shell", {"argv": ["sleep", marker]})))
    await wait_for(lambda: bool(_running(marker)), timeout=5, every=0.02)  # sleep started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _running(marker) == []


def test_invalid_allow_entry_stops_start_up():
    with pytest.raises(ConfigError, match=r"TIERQ_SHELL_ALLOW: 'no-such-program-0417'"):
        build_registry(Settings(shell_allow=("echo", "no-such-program-0417")))


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "ld_preload",  # lower case: refused by the name pattern
        "DYLD_INSERT_LIBRARIES",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "BASH_ENV",
        "ENV",
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "NODE_OPTIONS",
        "GIT_SSH_COMMAND",
        "PATH",
        "IFS",
        "SHELLOPTS",
        "PS4",
        "LOCALDOMAIN",
        "HOSTALIASES",
        "RES_OPTIONS",
        "TMPDIR",
        "_JAVA_OPTIONS",
        "1X",
        "A-B",
    ],
)
async def test_dangerous_env_names_are_refused(make_registry, name):
    with pytest.raises(PayloadError) as info:
        make_registry("echo").get("shell").validate({"argv": ["echo"], "env": {name: "x"}})
    assert info.value.path == f"payload.env.{name}"


async def test_ordinary_env_names_are_accepted(make_registry):
    make_registry("echo").get("shell").validate(
        {
            "argv": ["echo"],
            "env": {"GREETING": "hi", "LANG": "C.UTF-8", "HTTP_PROXY": "", "X1_": ""},
        }
    )


async def test_executes_the_checked_real_path_not_a_swapped_link(
    make_registry, make_ctx, tmp_path, monkeypatch
):
    """A symlink swapped between the check and the exec must not change what runs."""
    shell = make_registry("echo").get("shell")
    link = tmp_path / "my-echo"
    link.symlink_to(ECHO)
    evil = tmp_path / "evil"
    evil.write_text("#!/bin/sh\necho swapped\n")
    evil.chmod(0o755)
    real_exec = asyncio.create_subprocess_exec

    async def swap_then_exec(*args, **kwargs):
        link.unlink()
        link.symlink_to(evil)
        return await real_exec(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", swap_then_exec)
    result = await shell.run(make_ctx("shell", {"argv": [str(link), "original"]}))
    assert result["stdout"] == "original\n"
