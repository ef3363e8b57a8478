"""Where a replica's event loop goes without a break: the longest stretches of main-thread
samples with no idle sample in between, from a py-spy speedscope profile taken with --idle.

    .venv/bin/py-spy record --pid PID --idle -r 200 -f speedscope -o /tmp/p.json --duration 15
    .venv/bin/python loadtest/loop_stalls.py /tmp/p.json

Each stretch is one uninterrupted busy period of the loop (any request arriving in it waits
at least that long); the lines under it say which coroutine and which innermost frame the
samples were in. A trivial line holding many samples means the thread was not running
Python there: waiting for the GIL, descheduled, or inside a garbage collection.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

IDLE_PREFIXES = ("Runner.run", "run:", "_run:")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--rate", type=int, default=200, help="py-spy sampling rate (Hz)")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    with open(args.profile) as f:
        doc = json.load(f)
    frames = doc["shared"]["frames"]
    main_thread = next(p for p in doc["profiles"] if "MainThread" in p["name"])
    ms = 1000 / args.rate

    def names(stack: list[int]) -> list[str]:
        return [f"{frames[i]['name']}:{frames[i].get('line')}" for i in stack]

    stretches: list[list[list[str]]] = []
    current: list[list[str]] = []
    idle = 0
    for stack in main_thread["samples"]:
        ns = names(stack)
        if not ns or ns[-1].startswith(IDLE_PREFIXES):
            idle += 1
            if current:
                stretches.append(current)
            current = []
        else:
            current.append(ns)
    if current:
        stretches.append(current)
    total = len(main_thread["samples"])
    print(f"main thread: {total} samples, {100 * idle / max(1, total):.0f}% idle")
    for stretch in sorted(stretches, key=len, reverse=True)[: args.top]:
        where: Counter[tuple[str, str]] = Counter()
        for ns in stretch:
            k = next((i for i, n in enumerate(ns) if n.startswith("Runner.run")), 0)
            coroutine = ns[k + 1].split(":")[0] if k + 1 < len(ns) else "?"
            where[(coroutine, ns[-1])] += 1
        print(f"--- busy {len(stretch) * ms:.0f} ms")
        for (coroutine, leaf), n in where.most_common(5):
            print(f"   {n * ms:5.0f} ms  {coroutine[:40]:40s} {leaf[:80]}")


if __name__ == "__main__":
    main()
