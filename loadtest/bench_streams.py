"""Fifty live event streams through nginx while N tasks drain on two replicas (PostgreSQL +
Redis, deploy/local-cluster.sh): every client must receive exactly the events of the log that
match its filter (30 unfiltered, 10 ``queue=q1``, 10 ``event=succeeded,failed``), once each,
in log order, including one client cut off mid-run that resumes with ``Last-Event-ID``.

    .venv/bin/python loadtest/bench_streams.py --n 100000

Prints the drain time, the events each kind of client received, whether every client's events
equal the log's (exactly once, in order), and the rate events reached the clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import start_cluster, stop_cluster, wait_ready

_ID = re.compile(rb"^id: (\d+)$", re.M)


class Client:
    def __init__(self, base: str, query: dict[str, str], cut_after: int | None = None) -> None:
        self.url = base + "/api/v1/events"
        self.query = query
        self.cut_after = cut_after
        self.received: list[int] = []
        self.connections = 0
        self.live = asyncio.Event()
        self.wanted_last: int | None = None
        self.done = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession) -> None:
        while not self.done.is_set():
            headers = {"Last-Event-ID": str(self.received[-1])} if self.received else {}
            self.connections += 1
            async with session.get(self.url, params=self.query, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                if await self._read(resp):
                    return

    async def _read(self, resp: aiohttp.ClientResponse) -> bool:
        pending = b""
        async for chunk in resp.content.iter_any():
            self.live.set()
            pending += chunk
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            whole, pending = pending[: cut + 2], pending[cut + 2 :]
            self.received += [int(x) for x in _ID.findall(whole)]
            if self.cut_after is not None and len(self.received) >= self.cut_after:
                self.cut_after = None
                return False  # drop the connection; run() resumes from the last id
            if self.wanted_last is not None and self.received[-1:] >= [self.wanted_last]:
                self.done.set()
                return True
        return False


async def read_log(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "1000", **({"after": cursor} if cursor else {})}
        async with session.get(
            base + "/api/v1/events", params=params, headers={"Accept": "application/json"}
        ) as resp:
            body = await resp.json(loads=orjson.loads)
        if not body["items"]:
            return items
        items += body["items"]
        cursor = body["next_cursor"]


def matches(item: dict[str, Any], query: dict[str, str]) -> bool:
    if "queue" in query and item["queue"] != query["queue"]:
        return False
    return not ("event" in query and item["event"] not in query["event"].split(","))


async def run(args: argparse.Namespace, base: str) -> dict[str, Any]:
    queries: list[dict[str, str]] = (
        [{}] * 30 + [{"queue": "q1"}] * 10 + [{"event": "succeeded,failed"}] * 10
    )
    clients = [Client(base, q) for q in queries]
    clients[0].cut_after = args.n  # about a third of its events, then it resumes
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        await wait_ready(session, base)
        readers = [asyncio.create_task(c.run(session)) for c in clients]
        try:
            await asyncio.wait_for(asyncio.gather(*(c.live.wait() for c in clients)), 30)
            t0 = time.time()
            batch = orjson.dumps(
                [{"type": "noop", "queue": "q1" if i % 2 else "q2"} for i in range(1000)]
            )
            for _ in range(args.n // 1000):
                async with session.post(
                    base + "/api/v1/tasks/batch",
                    data=batch,
                    headers={"Content-Type": "application/json"},
                ) as r:
                    assert r.status == 201, await r.text()
            while True:
                async with session.get(base + "/api/v1/tasks/statistics") as r:
                    counts = (await r.json())["counts"]
                if counts["succeeded"] >= args.n:
                    break
                await asyncio.sleep(0.2)
            drained = time.time()
            log = await read_log(session, base)
            for client in clients:
                client.wanted_last = max(int(i["cursor"]) for i in log if matches(i, client.query))
                if client.received[-1:] >= [client.wanted_last]:
                    client.done.set()
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in clients)), 300)
            streamed = time.time()
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    exact = 0
    for client in clients:
        expected = [int(i["cursor"]) for i in log if matches(i, client.query)]
        exact += client.received == expected
    total_frames = sum(len(c.received) for c in clients)
    return {
        "n": args.n,
        "events_in_log": len(log),
        "drain_seconds": round(drained - t0, 2),
        "all_streams_done_seconds": round(streamed - t0, 2),
        "clients": len(clients),
        "clients_exactly_once_in_order": exact,
        "cut_off_client_connections": clients[0].connections,
        "events_received": {
            "unfiltered": len(clients[1].received),
            "queue=q1": len(clients[30].received),
            "event=succeeded,failed": len(clients[40].received),
        },
        "events_to_clients_per_s": round(total_frames / (streamed - t0)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the servers")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    args.distributed = args.replicas
    base, env = start_cluster(args)
    try:
        result = asyncio.run(run(args, base))
    finally:
        stop_cluster(env)
    print(json.dumps(result, indent=2))
    return 0 if result["clients_exactly_once_in_order"] == result["clients"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
