"""Benchmark Agora against what a developer writes without its guarantees, in the same run.

Starts every process as ``agora up`` does (in a temporary folder, each child dying with this
process) plus the pinned bare FastAPI + SQLAlchemy app of ``bench/bare.py`` on the same
Postgres, then measures:

- throughput with ``wrk`` (same ``-t``/``-c`` for both sides, interleaved rounds A B A B ...,
  medians): ``POST /api/v1/items`` against the bare insert, ``GET /api/v1/items/{id}``
  against the bare select-by-id, and the gateway against going direct;
- latency at a fixed write rate, open loop: 201 -> ``ItemCreated`` on the topic against the
  broker's own produce -> consume (raw aiokafka, same rate), and 201 -> email in the sink
  against that broker leg plus one raw aiosmtplib send to the same sink (same rate).
- the relay draining an outbox backlog against raw aiokafka's batched produce rate, the
  notifier's emails/s against raw aiosmtplib over pooled connections, the cold start against
  its slowest component and each service's idle RSS, and ``POST`` on items with
  ``--workers 2`` against one worker (``--only`` picks scenarios).

It stops everything in ``finally``, prints the table, and writes ``docs/performance.md`` and
``bench/results/<timestamp>.json``. Run it as ``make bench`` or ``uv run python bench/run.py``.
This file holds the command line and the order of the scenarios; each side lives in its own
module next to it (bench/README.md, "Layout").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import httpx
from agora_contract import topics
from agora_deploy.infra import Infra

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import (
        accounts,
        common,
        figures,
        latency,
        notifier,
        openloop,
        relay,
        report,
        scaling,
        startup,
        system,
        throughput,
    )
else:
    import accounts
    import common
    import figures
    import latency
    import notifier
    import openloop
    import relay
    import report
    import scaling
    import startup
    import system
    import throughput


async def run_scenarios(stack: system.Stack, options: common.Options) -> list[figures.Row]:
    """Measure every selected scenario; return the table's rows."""
    timeout = httpx.Timeout(10.0)
    only = options.only
    rows: list[figures.Row] = []
    async with (
        httpx.AsyncClient(base_url=stack.users, timeout=timeout) as users,
        httpx.AsyncClient(base_url=stack.items, timeout=timeout) as items,
        httpx.AsyncClient(base_url=stack.notifier, timeout=timeout) as notifications,
        httpx.AsyncClient(base_url=stack.mail, timeout=timeout) as mail,
        httpx.AsyncClient(base_url=stack.bare, timeout=timeout) as bare,
    ):
        events_tap: openloop.TopicReader | None = None
        if "latency" in only:
            # Opened while the topic is short and kept at its end until the 201 -> event row.
            events_tap = await openloop.topic_reader(stack.kafka, topics.ITEMS_EVENTS)
            events_tap.keep_up()
        try:
            if only & {"throughput", "scaling"}:
                rows += await throughput.throughput(
                    stack, options, users, items, notifications, mail, bare
                )
            if stack.stop_items_workers is not None:
                # Its relay may hold the outbox lock, and its workers take CPU: the rows below
                # are measured with the stack as `agora up` runs it, its own relay publishing.
                await asyncio.to_thread(stack.stop_items_workers)
                took = await asyncio.to_thread(scaling.wait_relay_active, stack.items)
                common.console.print(
                    f"items --workers stopped; the stack's relay leads ({took:.1f} s)"
                )
            writer: accounts.Account | None = None
            if only & {"latency", "notifier"}:
                writer = await accounts.register(users, stack.mail, "mail")
                await latency.wait_welcome(mail, writer.email)
            # The latency rows first, right after the throughput rows, as before these
            # scenarios existed: the relay and notifier scenarios leave nothing behind, but
            # this keeps the mandatory rows measured under the same conditions as before.
            if "latency" in only and writer is not None:
                rows += await latency.latency_rows(stack, options, items, mail, writer, events_tap)
            if "relay" in only:
                rows += await relay.relay_rows(stack, options)
            if "notifier" in only and writer is not None:
                rows += await notifier.notifier_rows(stack, options, items, mail, writer)
        finally:
            if events_tap is not None:
                await events_tap.stop()  # already stopped when the latency row ran
    return rows


def parse(argv: list[str] | None) -> common.Options:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk seconds per round")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="wrk warm-up round")
    parser.add_argument("--connections", type=int, default=10, help="wrk -c, for every load")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--writes", type=int, default=600, help="writes for the latency rows")
    parser.add_argument("--rate", type=float, default=200.0, help="writes/s, open loop")
    parser.add_argument("--smtp-pool", type=int, default=4, help="raw aiosmtplib connections")
    parser.add_argument("--relay-rows", type=int, default=20_000, help="outbox backlog rows")
    parser.add_argument("--emails", type=int, default=500, help="emails through the notifier")
    parser.add_argument("--workers", type=int, default=2, help="items workers, scaling row")
    parser.add_argument(
        "--peer-outbox", default="", metavar="PYTHON",
        help="an interpreter with faststream-outbox 0.19: adds its relay rows (bench/README.md)",
    )  # fmt: skip
    parser.add_argument("--peer-rows", type=int, default=5_000, help="the peer's backlog")
    parser.add_argument(
        "--only", default=",".join(common.SCENARIOS),
        help=f"comma-separated scenarios to run (default all): {', '.join(common.SCENARIOS)}",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=common.BENCH / "results")
    parser.add_argument(
        "--doc", default=None,
        help=f"markdown report ('' to skip; default {common.DOC.relative_to(common.REPO)} on a "
        "full run, none with --only)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("seconds", "warmup_seconds", "connections", "threads", "rounds", "writes",
                 "rate", "smtp_pool", "relay_rows", "emails", "workers", "peer_rows"):  # fmt: skip
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
    if not only or only - set(common.SCENARIOS):
        parser.error(f"--only takes some of: {', '.join(common.SCENARIOS)}")
    return common.Options(
        seconds=args.seconds,
        warmup_seconds=args.warmup_seconds,
        connections=args.connections,
        threads=args.threads,
        rounds=args.rounds,
        writes=args.writes,
        rate=args.rate,
        smtp_pool=args.smtp_pool,
        out=args.out,
        doc=(common.DOC if only == set(common.SCENARIOS) else None)
        if args.doc is None
        else (Path(args.doc) if args.doc else None),
        only=only,
        relay_rows=args.relay_rows,
        emails=args.emails,
        workers=args.workers,
        peer_outbox=args.peer_outbox,
        peer_rows=args.peer_rows,
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    # While the stack starts (no event loop yet): SIGTERM unwinds through the `finally`s.
    raise SystemExit(128 + signum)


async def measure_until_signalled(
    stack: system.Stack, options: common.Options
) -> list[figures.Row]:
    """Run the scenarios; SIGTERM cancels them (the consumers and clients close on the way)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_scenarios(stack, options)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Start the system, measure, stop it, report."""
    options = parse(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    loadavg = " ".join(f"{x:.1f}" for x in os.getloadavg())
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as tmp:
        infra: Infra | None = None
        try:
            with common.console.status("starting the stack and the bare app..."):
                infra, stack, times, rss = system.start_stack(Path(tmp), options)
            startup_s = time.perf_counter() - began
            common.console.print(f"stack up in {startup_s:.1f} s (bring_up {times.total_s:.1f} s); "
                          "measuring")  # fmt: skip
            rows = asyncio.run(measure_until_signalled(stack, options))
            if "startup" in options.only:
                rows += startup.startup_rows(times, rss)
                common.console.print(
                    "start-up steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.steps.items())
                )
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            common.console.print("interrupted: no results written")
            return 130
        finally:
            if infra is not None:
                with common.console.status("stopping the stack..."):
                    infra.stop()
            signal.signal(signal.SIGTERM, previous)
    total_s = time.perf_counter() - began
    result = report.build_report(
        rows, options, started_at=started_at, loadavg=loadavg, startup_s=round(startup_s, 2),
        total_s=round(total_s, 2),
    )  # fmt: skip
    report.print_table(result, rows)
    options.out.mkdir(parents=True, exist_ok=True)
    json_path = options.out / f"{started_at.replace(':', '').replace('-', '')}.json"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    written = [str(json_path)]
    if options.doc is not None:
        options.doc.write_text(report.markdown(result, rows) + report.kept_notes(options.doc))
        written.append(str(options.doc))
    missed = [row.name for row in rows if row.met() is False]
    common.console.print(f"wrote {' and '.join(written)} in {total_s:.0f} s")
    common.console.print(f"goals missed: {', '.join(missed)}" if missed else "every goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
