"""The developer surface's cost on the hot path, side by side in one run: the end-to-end
benchmark (bench_e2e.py, noop tasks) on a fresh server with

- off: per-minute outcome rollups off (TIERQ_METRICS_ROLLUPS=false), tracing off;
- rollups: rollups on (the default), tracing off;
- tracing: rollups on and OpenTelemetry on (TIERQ_TRACING=true), exporting over OTLP/HTTP
  to a local receiver started here (it answers every export, counting the bytes);
- tracing_1pct: the same, sampling 1% of the traces (OTEL_TRACES_SAMPLER).

    .venv/bin/python loadtest/bench_surface.py --pairs 2                  # embedded
    .venv/bin/python loadtest/bench_surface.py --pairs 2 --distributed 1  # PostgreSQL + Redis

Printed: each run's rate and each variant's ratio to "off" within its round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench_flow import one_run

VARIANTS = {
    "off": ["TIERQ_METRICS_ROLLUPS=false"],
    "rollups": [],
    "tracing": ["TIERQ_TRACING=true"],
    # The standard OpenTelemetry sampler variables, read by the SDK in the server.
    "tracing_1pct": [
        "TIERQ_TRACING=true",
        "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG=0.01",
    ],
}


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts every export (an empty protobuf answer)."""

    received = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        Receiver.received += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="rounds of the three variants")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--queues", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--distributed", type=int, default=0, metavar="N")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which, comma-separated")
    parser.add_argument("--out", help="write the runs as JSON here")
    args = parser.parse_args()
    args.profile = None
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    # The spawned servers inherit it (bench_e2e keeps every variable but TIERQ_*).
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver.server_port}"
    chosen = {name: VARIANTS[name] for name in ["off", *args.variants.split(",")]}
    rounds: list[dict[str, object]] = []
    for i in range(args.pairs):
        rates = {name: one_run(args, env) for name, env in chosen.items()}
        ratios = {name: round(rate / rates["off"], 3) for name, rate in rates.items()}
        rounds.append({"round": i, "rates": rates, "over_off": ratios})
        print(json.dumps(rounds[-1]), flush=True)
    mean = {
        name: round(statistics.fmean(r["over_off"][name] for r in rounds), 3)  # type: ignore[index]
        for name in chosen
    }
    mode = f"distributed x{args.distributed}" if args.distributed else "embedded"
    print(json.dumps({"mode": mode, "mean_over_off": mean, "otlp_bytes": Receiver.received}))
    receiver.shutdown()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"mode": mode, "rounds": rounds, "mean": mean}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
