"""Command line. On this machine's server files: ``tierq serve``, ``tierq migrate``,
``tierq settings``, ``tierq keys``, ``tierq audit``. On a running server, through its API and
the Python client: ``tierq submit``, ``tierq tasks``, ``tierq events``, ``tierq stats``,
``tierq top``, ``tierq schedules`` (exit codes: ``cli/remote.py``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from tierq import tracing
from tierq.cli import access as cli_access
from tierq.cli import schedules as cli_schedules
from tierq.cli import submit as cli_submit
from tierq.cli import tasks as cli_tasks
from tierq.cli import top as cli_top
from tierq.config import ConfigError, Settings, from_env, from_sources
from tierq.config.sources import example_file
from tierq.logs import setup as setup_logging

log = logging.getLogger("tierq")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierq", description="tierq task queue")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API, the engine and its workers")
    serve.add_argument("--config", help="settings file (TOML); variables and flags override it")
    serve.add_argument("--host", help="bind address (TIERQ_HOST)")
    serve.add_argument("--port", type=int, help="port (TIERQ_PORT)")
    serve.add_argument("--workers", type=int, help="asyncio workers (TIERQ_WORKERS)")
    serve.add_argument("--database-url", help="record tier (TIERQ_DATABASE_URL)")
    serve.add_argument("--redis-url", help="dispatch tier, empty = embedded (TIERQ_REDIS_URL)")
    serve.add_argument("--memory-limit", type=int, help="memory tier bound (TIERQ_MEMORY_LIMIT)")
    serve.add_argument("--handlers", help="user handler modules, comma-separated (TIERQ_HANDLERS)")
    serve.add_argument("--node-id", help="replica name (TIERQ_NODE_ID)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (TIERQ_LOG_LEVEL)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_const",
        const=True,
        help="serve any address without credentials (TIERQ_INSECURE_NO_AUTH)",
    )
    migrate = sub.add_parser("migrate", help="apply record-store migrations and exit")
    migrate.add_argument("--config", help="settings file (TOML)")
    migrate.add_argument("--database-url", help="record tier (TIERQ_DATABASE_URL)")
    settings = sub.add_parser("settings", help="list every setting, its variable and default")
    settings.add_argument(
        "--config", help="also read this file: show each value and where it came from"
    )
    settings.add_argument(
        "--example", action="store_true", help="print a settings file with every setting"
    )
    cli_schedules.add_parser(sub)
    cli_access.add_parsers(sub)
    cli_submit.add_parser(sub)
    cli_tasks.add_parsers(sub)
    cli_top.add_parser(sub)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    keys = (
        "host",
        "port",
        "workers",
        "database_url",
        "redis_url",
        "memory_limit",
        "handlers",
        "node_id",
        "log_level",
        "insecure_no_auth",
    )
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _settings(args: argparse.Namespace) -> int:
    if args.example:
        print(example_file())
        return 0
    if not args.config:
        for env, default, doc in Settings.describe():
            print(f"{env:28} default {default:24} {doc}")
        return 0
    try:
        settings, sources = from_sources(config=args.config)
    except ConfigError as exc:
        print(f"tierq: configuration error: {exc}", file=sys.stderr)
        return 2
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        # Secrets are the settings kept out of repr (settings.py marks them): never printed.
        shown = "(hidden)" if not field.repr and value else repr(value)
        print(f"{field.name:32} {shown:40} {sources.get(field.name, 'default')}")
    return 0


GC_YOUNG_THRESHOLD = 20_000
GC_MIDDLE_THRESHOLD = 1_000


async def serve(settings: Settings) -> None:
    from tierq.api.app import create_app
    from tierq.api.auth.access import ACCESS, is_loopback
    from tierq.api.routes import ENGINE

    # The SQLite threads release the GIL around every statement step (one per chunk of rows,
    # see storage/sqlite/batches.py) and must take it back; with the default 5 ms switch
    # interval a busy event loop makes them wait that long each time. A shorter interval lets
    # them back in sooner (see BENCHMARKS.md).
    sys.setswitchinterval(0.0005)

    tracing.setup(settings.tracing)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()  # starts the engine (recovery first)
    exposed = not settings.insecure_no_auth and not is_loopback(settings.host)
    if exposed and not await app[ACCESS].authenticator.required():
        await runner.cleanup()
        raise ConfigError(
            f"TIERQ_HOST: {settings.host} is not a loopback address and no credential is "
            "required (no API key exists, JWT is off, or TIERQ_AUTH=off): create a key "
            "(tierq keys create --name admin --role admin), or pass --insecure-no-auth"
        )
    # Everything alive now (modules, app, engine) lives as long as the process: keep it out
    # of the garbage collector's full passes, which otherwise walk it all and stall the loop.
    gc.freeze()
    # Tasks, transitions and acks live for milliseconds to seconds, but with the default
    # young threshold (700) they survive two young passes and pile into the old generation,
    # whose full passes were the longest loop stalls measured. With 20,000 they mostly die
    # young. The middle generation's passes walk every report still waiting for its flush
    # (tens of thousands during a drain): at Python's 20 young passes per middle pass they
    # stalled the loop every few seconds of a drain; at 1,000 they come every few minutes
    # under load. They collect cyclic garbage only (everything else is freed by reference
    # counting), which this process makes little of. Figures: BENCHMARKS.md, "GC thresholds".
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, 10)
    site = web.TCPSite(runner, settings.host, settings.port, backlog=2048, reuse_address=True)
    await site.start()
    bound = (settings.host, settings.port)
    for sock in getattr(site._server, "sockets", None) or ():
        bound = sock.getsockname()[:2]
        break
    log.info("tierq listening on http://%s:%s", bound[0], bound[1])
    print(f"tierq listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Stop taking work at once: readiness turns 503 and submissions get 503 + Retry-After
    # while the listener closes and running tasks finish.
    engine = app[ENGINE]
    engine.lifecycle.draining = True
    engine.lifecycle.ready = False
    log.info("shutting down: no new work, running tasks get %.0fs", settings.shutdown_grace_s)
    # Closes the listener, waits for in-flight requests, then stops the engine (on_cleanup):
    # running tasks finish or are handed back, every batch is flushed.
    await runner.cleanup()


async def migrate(settings: Settings) -> list[int]:
    from tierq.storage.factory import make_record_store

    store = make_record_store(settings)
    await store.open()  # applies pending migrations
    try:
        return [*store.migrations_applied, *await store.migrate()]
    finally:
        await store.close()


def _run(coro: object) -> object:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (Windows)
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "run"):  # a command that talks to a running server
        code: int = args.run(args)
        return code
    if args.command == "schedules":
        return cli_schedules.run(args)
    if args.command == "settings":
        return _settings(args)
    try:
        settings = from_env(overrides=_overrides(args), config=getattr(args, "config", None))
    except ConfigError as exc:
        print(f"tierq: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format, settings.log_levels, settings.node_id)
    try:
        if args.command in ("keys", "audit"):
            return cli_access.run(args, settings)
        if args.command == "serve":
            _run(serve(settings))
        elif args.command == "migrate":
            applied = _run(migrate(settings))
            print(f"applied migrations: {applied or 'none (up to date)'}")
    except ConfigError as exc:
        print(f"tierq: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
