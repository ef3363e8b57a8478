"""Plumbing shared by the dispatch-tier modules: the client, script calls, round trips."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from tierq.storage.base import StoreUnavailable
from tierq.storage.redis.keys import Keys
from tierq.storage.redis.scripts import SCRIPTS, LuaScript

try:
    from redis import asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "the Redis dispatch tier needs redis: pip install 'tierq[distributed]'", name=exc.name
    ) from exc

log = logging.getLogger("tierq.storage.redis")

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    import hiredis

    _pack = hiredis.pack_command
except (ImportError, AttributeError):  # hiredis is optional: redis-py packs in Python then
    _pack = None


class PackingConnection(aioredis.Connection):
    """redis-py's asyncio connection packs every argument in Python, even with hiredis
    installed: a 1,000-task batch script call has ~5,000 arguments, and packing them was a
    large share of the event loop's time in distributed mode. hiredis packs the same bytes in
    C, several times faster. Multi-word command names ("CONFIG GET") are split as redis-py
    does."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if _pack is None:
            return super().pack_command(*args)
        if isinstance(args[0], str) and " " in args[0]:
            args = (*args[0].split(), *args[1:])
        return [_pack(args)]


def connect(url: str) -> Any:
    """A redis.asyncio client for ``url`` whose TCP connections pack commands in C."""
    if url.startswith("redis://"):
        return aioredis.from_url(url, decode_responses=False, connection_class=PackingConnection)
    return aioredis.from_url(url, decode_responses=False)


async def eval_script(client: Any, script: LuaScript, keys: list[str], *args: Any) -> Any:
    """One script call: EVALSHA, and EVAL when the server has not seen the script (new,
    restarted, SCRIPT FLUSH), which caches it for the next EVALSHA. redis-py's NoScriptError
    message carries no "NOSCRIPT": catch the type, never match the text."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script.source, len(keys), *keys, *args)


__all__ = [
    "TRANSIENT",
    "Command",
    "NoScriptError",
    "PackingConnection",
    "RedisCore",
    "ResponseError",
    "aioredis",
    "connect",
    "eval_script",
    "log",
]

Command = tuple[Any, ...]
# Round trips with at least this many arguments in all are packed in a worker thread.
PACK_OFF_LOOP_ARGS = 4_096
TRANSIENT = (RedisConnectionError, RedisTimeoutError)


class RedisCore:
    def __init__(self, url: str, prefix: str, heartbeat_ttl: float) -> None:
        if heartbeat_ttl <= 0:
            raise ValueError("heartbeat_ttl must be positive")
        self._url = url
        self.keys = Keys(prefix)
        self._heartbeat_ttl = heartbeat_ttl
        # redis.asyncio.Redis, created in open(); typed Any because the installed stubs
        # (types-redis 4.x) lag behind redis 8.
        self._client: Any = None

    def _require(self) -> Any:
        if self._client is None:
            raise RuntimeError("RedisDispatch is not open")
        return self._client

    def _register(self, owner: str, now: float) -> Command:
        # An owner that leases before its first heartbeat must still be rescuable.
        return ("ZADD", self.keys.replicas, "NX", now + self._heartbeat_ttl, owner)

    @staticmethod
    def _eval(name: str, keys: list[str], args: Iterable[Any]) -> Command:
        return ("EVALSHA", SCRIPTS[name].sha, len(keys), *keys, *args)

    async def _queues(self) -> list[str]:
        raw = await self._run([("SMEMBERS", self.keys.queues)])
        return sorted(q.decode() for q in raw[0])

    async def _load_scripts(self, client: Any) -> None:
        for script in SCRIPTS.values():
            sha = (await client.script_load(script.source)).lower()
            if sha != script.sha:
                raise RuntimeError(f"Redis returned sha {sha} for script {script.name}")

    async def _run(self, cmds: list[Command]) -> list[Any]:
        """One round trip for ``cmds``. Scripts missing from Redis (restart, SCRIPT FLUSH)
        are loaded and only the commands that failed for that reason are sent again, so
        nothing runs twice."""
        if not cmds:
            return []
        client = self._require()
        try:
            results = await self._pipeline(client, cmds)
            retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if retry:
                await self._load_scripts(client)
                again = await self._pipeline(client, [cmds[i] for i in retry])
                for i, r in zip(retry, again, strict=True):
                    results[i] = r
        except TRANSIENT as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    @staticmethod
    async def _pipeline(client: Any, cmds: list[Command]) -> list[Any]:
        """Send ``cmds`` in one write and read their replies on a pooled connection; a
        reply that is an error (a failed script, NOSCRIPT) is returned in its place.

        Not redis-py's Pipeline: its per-call machinery (retry wrapper, per-reply callbacks,
        prepared-fieldset hooks) cost 60-90 us of the loop per round trip (a three-command
        round trip: 228-271 us of client CPU with it, 169-185 us without), and most calls
        carry one or a few tasks. Its silent retry is not wanted either: a script whose
        reply was lost may have run, and running it again could lease a task twice; a lost
        connection surfaces as StoreUnavailable to the caller instead.

        What must stay true: a connection goes back to the pool only with every reply read;
        on any interruption (error, cancellation) it is disconnected first, so the next user
        never reads someone else's reply."""
        pool = client.connection_pool
        conn = await pool.get_connection()
        try:
            if sum(map(len, cmds)) < PACK_OFF_LOOP_ARGS:
                packed = conn.pack_commands(cmds)
            else:
                # hiredis packs each command in C without a break, and a 10,000-ack flush
                # is dozens of commands: in a thread the loop gets the GIL back between
                # them instead of waiting for all of them.
                packed = await asyncio.to_thread(conn.pack_commands, cmds)
            await conn.send_packed_command(packed, check_health=False)
            results: list[Any] = []
            for _ in cmds:
                try:
                    results.append(await conn.read_response())
                except ResponseError as exc:
                    results.append(exc)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        return results
