"""Single-task submit latency at a fixed request rate (open loop).

    .venv/bin/python loadtest/latency.py --url http://127.0.0.1:8081 --rate 2000 --seconds 60

Requests are sent on a fixed schedule whatever the server does, and each latency is measured
from the moment the request was DUE, not from when it was actually sent: a server stall shows
up as latency instead of silently lowering the offered load (no coordinated omission). Prints
p50/p90/p99/p99.9/max, error counts and the achieved rate; --out writes JSON.

The generator shares the machine with the server, so its own cost matters: the default client
(`--client raw`) writes prebuilt HTTP/1.1 requests on keep-alive connections and reads only the
status line and Content-Length of each answer, ~4x less CPU per request than aiohttp's client
(`--client aiohttp`, kept to compare with figures taken before). Each connection carries one
request at a time, as a real client's would; a request due while every connection is busy
waits for one, and that wait counts in its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import orjson

BODY = orjson.dumps({"type": "noop", "payload": {"source": "latency"}})
PATH = "/api/v1/tasks"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100.0 * (len(values) - 1))))
    return values[k]


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.inflight = 0
        self.max_inflight = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, request: bytes, on_done: Callable[[RawConnection, str | None], None]):
        self.request = request
        self.on_done = on_done
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due = 0.0
        self.busy = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def send(self, due: float) -> None:
        assert self.transport is not None
        self.due, self.busy = due, True
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            self._fail("no Content-Length")
            return
        line_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : line_end if line_end > 0 else len(head)])
        if len(self.buffer) < head_end + 4 + length:
            return
        status = head[9:12].decode()
        del self.buffer[: head_end + 4 + length]
        self.busy = False
        self.on_done(self, None if status in ("200", "201") else status)

    def _fail(self, kind: str) -> None:
        # Counted as an error by connection_lost (the request is still marked busy).
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.busy = False
            self.on_done(self, type(exc).__name__ if exc else "ConnectionClosed")
        if not self.lost.done():
            self.lost.set_result(None)


async def run_raw(url: str, rate: float, seconds: float, connections: int) -> tuple[Stats, float]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    stats = Stats()
    idle: deque[RawConnection] = deque()
    waiting: deque[float] = deque()  # due times of requests no connection was free for
    finished = asyncio.Event()
    expected = 0
    reconnecting: set[asyncio.Task[None]] = set()

    def on_done(conn: RawConnection, error: str | None) -> None:
        stats.inflight -= 1
        if error is None:
            stats.latencies.append(time.perf_counter() - conn.due)
        else:
            stats.error(error)
        if conn.transport is not None and not conn.transport.is_closing():
            if waiting:
                dispatch(conn, waiting.popleft())
            else:
                idle.append(conn)
        else:
            task = loop.create_task(reconnect())
            reconnecting.add(task)
            task.add_done_callback(reconnecting.discard)
        if len(stats.latencies) + sum(stats.errors.values()) >= expected:
            finished.set()

    def dispatch(conn: RawConnection, due: float) -> None:
        stats.inflight += 1
        stats.max_inflight = max(stats.max_inflight, stats.inflight)
        conn.send(due)

    async def connect() -> RawConnection:
        _, conn = await loop.create_connection(lambda: RawConnection(request, on_done), host, port)
        return conn

    async def reconnect() -> None:
        try:
            conn = await connect()
        except OSError as exc:
            stats.error(type(exc).__name__)
            return
        if waiting:
            dispatch(conn, waiting.popleft())
        else:
            idle.append(conn)

    pool = [await connect() for _ in range(connections)]
    # Warm-up: one request per connection, not counted.
    expected = connections
    now = time.perf_counter()
    for conn in pool:
        dispatch(conn, now)
    await finished.wait()
    stats.latencies.clear()
    stats.errors.clear()
    stats.max_inflight = 0
    finished.clear()

    interval = 1.0 / rate
    expected = int(rate * seconds)
    start = time.perf_counter()
    for i in range(expected):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if idle:
            dispatch(idle.popleft(), due)
        else:
            waiting.append(due)
    try:
        await asyncio.wait_for(finished.wait(), timeout=60)
    except TimeoutError:
        missing = expected - len(stats.latencies) - sum(stats.errors.values())
        stats.errors["unanswered after 60 s"] = missing
    elapsed = time.perf_counter() - start
    for conn in list(idle) + pool:
        if conn.transport is not None:
            conn.transport.close()
    return stats, elapsed


async def run_aiohttp(
    url: str, rate: float, seconds: float, connections: int
) -> tuple[Stats, float]:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    stats = Stats()
    sem = asyncio.Semaphore(connections * 4)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one(due: float) -> None:
            async with sem:
                stats.inflight += 1
                stats.max_inflight = max(stats.max_inflight, stats.inflight)
                try:
                    async with session.post(
                        f"{url}{PATH}", data=BODY, headers={"Content-Type": "application/json"}
                    ) as r:
                        await r.read()
                        if r.status != 201:
                            stats.error(str(r.status))
                            return
                except (aiohttp.ClientError, TimeoutError) as exc:
                    stats.error(type(exc).__name__)
                    return
                finally:
                    stats.inflight -= 1
                stats.latencies.append(time.perf_counter() - due)

        # Warm the connection pool so the first second is not connection set-up.
        await asyncio.gather(*(one(time.perf_counter()) for _ in range(connections)))
        stats.latencies.clear()
        interval = 1.0 / rate
        start = time.perf_counter()
        total = int(rate * seconds)
        pending: set[asyncio.Task[None]] = set()
        for i in range(total):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - start
    return stats, elapsed


async def run(
    url: str, rate: float, seconds: float, connections: int, client: str
) -> dict[str, object]:
    runner = run_raw if client == "raw" else run_aiohttp
    stats, elapsed = await runner(url, rate, seconds, connections)
    ms = sorted(v * 1000 for v in stats.latencies)
    return {
        "client": client,
        "offered_rate": rate,
        "seconds": seconds,
        "requests": int(rate * seconds),
        "ok": len(ms),
        "errors": stats.errors,
        "achieved_rate": round(len(ms) / elapsed, 1),
        "p50_ms": round(pct(ms, 50), 2),
        "p90_ms": round(pct(ms, 90), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "p999_ms": round(pct(ms, 99.9), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "max_inflight": stats.max_inflight,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--out")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, args.rate, args.seconds, args.connections, args.client))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
