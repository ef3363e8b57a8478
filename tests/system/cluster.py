"""Real processes for the distributed failure tests: tierq replicas, a throwaway Redis and a
throwaway PostgreSQL, each started on a free port and killed by its own pid (never by name).

Every helper here leaves the machine's own services alone: the shared PostgreSQL is only
touched inside a schema made for one test, the shared Redis only under a prefix made for one
test, and the throwaway servers live in temporary directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.helpers import POSTGRES_URL, REDIS_URL  # noqa: F401 - the system tests import them here


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_name(kind: str) -> str:
    return f"t_{kind}_{uuid.uuid4().hex[:10]}"


def rss_mb(pid: int) -> float:
    """Resident set size of a live process, from /proc (Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no VmRSS for pid {pid}")


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGCONT first so a child a test left stopped is woken and dies at once."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class Replica:
    """One ``tierq serve`` process in distributed mode."""

    def __init__(
        self, node_id: str, database_url: str, schema: str, redis_url: str, prefix: str, logs: Path
    ) -> None:
        self.node_id = node_id
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logs = logs / f"{node_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # The test runner's own TIERQ_* (including TIERQ_TEST_*) must not leak into a replica.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
        self.env.update(
            TIERQ_DATABASE_URL=database_url,
            TIERQ_DATABASE_SCHEMA=schema,
            TIERQ_REDIS_URL=redis_url,
            TIERQ_REDIS_PREFIX=prefix,
            TIERQ_NODE_ID=node_id,
            TIERQ_HEARTBEAT_S="0.5",
            TIERQ_HEARTBEAT_TTL_S="2",
            TIERQ_WORKERS="16",
            # Small memory tiers so the work spreads over every replica.
            TIERQ_MEMORY_LIMIT="500",
            TIERQ_LOG_LEVEL="WARNING",
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with open(self.logs, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tierq", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        _kill(self.proc)

    def log_tail(self, chars: int = 3000) -> str:
        return self.logs.read_text(errors="replace")[-chars:] if self.logs.exists() else ""

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"{self.node_id} exited {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(self.base + "/health/ready") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        pytest.fail(f"{self.node_id} not ready within {timeout}s: {self.log_tail()}")

    async def get_json(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(self.base + path) as resp:
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.json()

    async def metric(self, session: aiohttp.ClientSession, name: str) -> float:
        """Sum of every sample of one Prometheus metric (0 when absent)."""
        async with session.get(self.base + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


class RedisServer:
    """A throwaway ``redis-server`` without persistence, on its own free port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start_on_same_port(self) -> None:
        """Start again after a kill: a restart without persistence (every key gone)."""
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            # Never a skip: scripts/ensure-services.sh installs it before the tests run.
            pytest.fail("redis-server not installed (scripts/ensure-services.sh installs it)")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir)]
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise AssertionError("throwaway redis-server did not start")

    def kill(self) -> None:
        _kill(self.proc)


def _postgres_bin(name: str) -> str:
    """Debian's versioned directory first (its binaries are not on PATH), then PATH, as
    scripts/ensure-services.sh looks; missing is a failure, never a skip."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        pytest.fail(
            f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin or on PATH "
            "(scripts/ensure-services.sh installs it)"
        )
    return on_path


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary directory, trust auth, on a free port.
    As root it runs as the ``postgres`` user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="tierq-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(
            _postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N"
        )

    def pg_ctl(self, *args: str) -> None:
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-l", str(self.log), "-o", opts, "-w", "-t", "30", "start")

    def stop_immediate(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


async def drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def delete_prefix(redis_url: str, prefix: str) -> int:
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match="{" + prefix + "*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        await client.aclose()


def nginx_binary() -> str:
    """The nginx the test set-up found or installed (scripts/ensure-services.sh)."""
    for candidate in (os.environ.get("TIERQ_TEST_NGINX"), shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no nginx binary: scripts/ensure-services.sh installs one (TIERQ_TEST_NGINX)")


class Nginx:
    """deploy/nginx.conf, rendered for the given replicas, run in the foreground."""

    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.prefix = workdir / "nginx"
        self.upstream_ports = upstream_ports
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        render = Path(__file__).resolve().parents[2] / "deploy" / "render-nginx.sh"
        conf = subprocess.run(
            ["bash", str(render), "-o", str(self.prefix), str(self.port)]
            + [str(p) for p in self.upstream_ports],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.prefix), "-c", conf, "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.prefix / "stderr.log", "ab"),  # noqa: SIM115 - the child owns it
            # Its own process group: the workers go with the master (a SIGKILLed master
            # leaves its workers running, holding the port).
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.prefix / "stderr.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        pytest.fail("nginx did not start listening")

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # fast shutdown: the master stops its workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class EmbeddedServer:
    """One ``tierq serve`` subprocess; ``kill`` is SIGKILL (no shutdown code runs)."""

    def __init__(self, db: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.extra_env = env or {}
        self.logs = logs
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
        env.update(
            TIERQ_DATABASE_URL="sqlite:///" + str(self.db),
            TIERQ_WORKERS="8",
            TIERQ_LOG_LEVEL="WARNING",
        )
        env.update(self.extra_env)
        with open(self.logs, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tierq", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}: {self.logs.read_text()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.base + "/health/ready") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
        pytest.fail(f"server not ready within {timeout}s: {self.logs.read_text()[-2000:]}")
