"""The ``shell`` task type: run an allowed executable with an argv list (never a shell string).

Payload: ``argv`` (non-empty list of strings; ``argv[0]`` a name on PATH or an absolute path),
``env`` (object of strings, added to a minimal environment holding only PATH; names must match
``[A-Z][A-Z0-9_]*`` and not be in ``DANGEROUS_ENV``), ``cwd``,
``timeout_seconds`` (number > 0). Result on exit 0: ``{"exit_code", "stdout", "stderr"}``
(each stream kept up to 64 KiB); a non-zero exit fails the attempt.

Off unless ``Settings.shell_allow`` lists executables; an entry that is not one stops start-up
(``ConfigError``). ``argv[0]`` and every allow entry are resolved to real paths and compared,
so a symlink or a different spelling of an allowed program is the same program, and nothing
else runs. The checked real path is what gets executed (argv[0] as seen by the child stays the
path named), so swapping a symlink after the check changes nothing. Note the flip side: every
path whose real path is an allowed binary (a multi-call binary such as busybox, say) is allowed
too.

What must stay true: a task never leaves processes behind. The child leads its own process
group; on timeout or cancellation the whole group gets SIGTERM, then SIGKILL after a short grace,
and is reaped before the handler returns or re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from dataclasses import dataclass
from typing import Any

from tierq.config import ConfigError, Settings
from tierq.engine.handlers import payload as p
from tierq.engine.handlers.base import PayloadError, PermanentError, TaskContext, TaskError

FIELDS = ("argv", "env", "cwd", "timeout_seconds")
MAX_OUTPUT = 64 * 1024
KILL_GRACE_S = 1.0
# Environment names a submitter may set: conventional upper-case names only (no lower-case
# twins of the names below, no leading "_" such as _JAVA_OPTIONS)...
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# ...minus the ones that make the loader, libc, a shell or an interpreter run code or read files
# of the submitter's choosing inside an allowed program ("run /bin/echo" -> "run anything"), or
# change which program or resolver configuration is used.
DANGEROUS_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON", "GIT_")
DANGEROUS_ENV = frozenset(
    {
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "LOCPATH",
        "NLSPATH",
        "BASH_ENV",
        "BASHOPTS",
        "ENV",
        "SHELLOPTS",
        "PS4",
        "IFS",
        "PATH",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "LOCALDOMAIN",
        "HOSTALIASES",
        "RES_OPTIONS",
        "TMPDIR",
    }
)


def env_refusal(name: str) -> str | None:
    """Why a submitted environment variable name is refused, or None when it may be set."""
    if not ENV_NAME.fullmatch(name):
        return "must match [A-Z][A-Z0-9_]*"
    if name in DANGEROUS_ENV or name.startswith(DANGEROUS_ENV_PREFIXES):
        return "is not allowed (it can change what the program runs or loads)"
    return None


@dataclass(frozen=True, slots=True)
class ShellRequest:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    timeout: float | None


def parse_request(payload: Any) -> ShellRequest:
    body = p.obj(payload, FIELDS)
    argv = body.get("argv")
    if not isinstance(argv, list) or not argv:
        raise PayloadError("payload.argv", "must be a non-empty list of strings")
    for i, arg in enumerate(argv):
        if not isinstance(arg, str) or "\x00" in arg:
            raise PayloadError(f"payload.argv[{i}]", "must be a string without NUL")
    if not argv[0]:
        raise PayloadError("payload.argv[0]", "must name an executable")
    env = p.str_map(body, "env", key_forbid="=")
    for key in env:
        reason = env_refusal(key)
        if reason is not None:
            raise PayloadError(f"payload.env.{key}", reason)
    cwd = p.string(body, "cwd")
    if cwd is not None and not os.path.isabs(cwd):
        raise PayloadError("payload.cwd", "must be an absolute path")
    return ShellRequest(argv, env, cwd, p.positive_number(body, "timeout_seconds"))


def _executable(name: str, search_path: str) -> str | None:
    """Absolute path of an executable named by ``name`` (a bare name looked up on PATH or an
    absolute path), or None. Relative paths with a slash are refused: relative to what?"""
    if "/" in name:
        path = name if os.path.isabs(name) else None
    else:
        path = shutil.which(name, path=search_path)
    if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
        return None
    return path


class ShellHandler:
    def __init__(self, settings: Settings) -> None:
        self._search_path = os.environ.get("PATH") or os.defpath
        self._allowed: set[str] = set()
        for entry in settings.shell_allow:
            path = _executable(entry, self._search_path)
            if path is None:
                # Dropping it would leave the operator believing it is allowed.
                raise ConfigError(f"TIERQ_SHELL_ALLOW: {entry!r} is not an executable")
            self._allowed.add(os.path.realpath(path))

    @property
    def enabled(self) -> bool:
        return bool(self._allowed)

    def resolve(self, name: str) -> tuple[str, str]:
        """(path named, real path checked) for ``argv[0]``; raises ``PayloadError`` when not
        allowed. Execute the real path: it is what was checked."""
        path = _executable(name, self._search_path)
        if path is None:
            raise PayloadError("payload.argv[0]", f"{name!r} is not an executable")
        real = os.path.realpath(path)
        if real not in self._allowed:
            raise PayloadError("payload.argv[0]", f"{name!r} is not in TIERQ_SHELL_ALLOW")
        return path, real

    def validate(self, payload: Any) -> None:
        self.resolve(parse_request(payload).argv[0])

    async def run(self, ctx: TaskContext) -> Any:
        try:
            req = parse_request(ctx.payload)
            path, real = self.resolve(req.argv[0])
        except PayloadError as exc:
            raise PermanentError(f"shell: {exc}") from None
        try:
            # executable=real: the file checked, not whatever a symlink points at by now;
            # argv[0] stays the path named (multi-call binaries dispatch on it).
            proc = await asyncio.create_subprocess_exec(
                path,
                *req.argv[1:],
                executable=real,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=req.cwd,
                env={"PATH": self._search_path, **req.env},
                start_new_session=True,
            )
        except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            raise PermanentError(f"shell: cannot start {req.argv[0]!r}: {exc}") from None
        except OSError as exc:  # out of processes or descriptors: may work next time
            raise TaskError(f"shell: cannot start {req.argv[0]!r}: {exc}") from None
        try:
            async with asyncio.timeout(req.timeout):
                code, out, err = await _communicate(proc)
        except TimeoutError:
            await _terminate(proc)
            raise TaskError(f"shell: {req.argv[0]} timed out after {req.timeout}s") from None
        except BaseException:  # cancellation (or a bug): never leave the group running
            await _terminate(proc)
            raise
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        if code != 0:
            raise TaskError(f"shell: {req.argv[0]} exited with code {code}: {stderr[-500:]}")
        return {"exit_code": code, "stdout": stdout, "stderr": stderr}


async def _read_capped(stream: asyncio.StreamReader | None) -> bytes:
    """Keep the first MAX_OUTPUT bytes and keep draining after that, so a chatty child never
    blocks on a full pipe."""
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < MAX_OUTPUT:
            kept += chunk[: MAX_OUTPUT - len(kept)]
    return bytes(kept)


async def _communicate(proc: asyncio.subprocess.Process) -> tuple[int, bytes, bytes]:
    async with asyncio.TaskGroup() as tg:
        out = tg.create_task(_read_capped(proc.stdout))
        err = tg.create_task(_read_capped(proc.stderr))
        code = await proc.wait()
    return code, out.result(), err.result()


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the child leads its group: pgid == pid


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    _signal_group(proc, signal.SIGTERM)
    try:
        async with asyncio.timeout(KILL_GRACE_S):
            await proc.wait()
    except TimeoutError:
        pass
    finally:
        # Also after a clean exit of the leader: children it left in the group die here.
        _signal_group(proc, signal.SIGKILL)
    await proc.wait()
    # Drain what is left so the pipe transports see EOF and close (no leaked descriptors).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_S):
            await asyncio.gather(_read_capped(proc.stdout), _read_capped(proc.stderr))
