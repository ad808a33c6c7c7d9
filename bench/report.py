"""The report: the table on the terminal, docs/performance.md, and the JSON of every figure."""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import common, figures
else:
    import common
    import figures


def git_commit() -> str | None:
    """The short commit of the working tree, when git is there."""
    git = shutil.which("git")
    if git is None:
        return None
    out = subprocess.run(  # noqa: S603 - fixed argv, our own repository
        [git, "rev-parse", "--short", "HEAD"],
        cwd=common.REPO,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout.strip() or None


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:,.1f}"


HEADERS = ("scenario", "n", "errors", "req/s", "p50 ms", "p99 ms", "ratio", "of", "goal",
           "client CPU")  # fmt: skip


def cells(row: figures.Row) -> list[str]:
    """One row of the table as text."""
    met = row.met()
    goal = row.goal.replace(">=", "≥ ").replace("<=", "≤ ")
    goal = f"{goal} {'met' if met else 'MISSED'}" if met is not None else goal
    return [
        row.name, str(row.n), str(row.errors), _num(row.rps), _num(row.p50_ms),
        _num(row.p99_ms), _num(row.ratio, "x"), row.ratio_of, goal, _num(row.client_cpu, "%"),
    ]  # fmt: skip


def print_table(report: dict[str, Any], rows: list[figures.Row]) -> None:
    """Print the table."""
    table = Table(title=f"Agora bench {report['started_at']} (commit {report['commit']})")
    for header in HEADERS:
        justify = "left" if header in {"scenario", "of", "goal"} else "right"
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*cells(row))
    common.console.print(table)


def markdown(report: dict[str, Any], rows: list[figures.Row]) -> str:
    """``docs/performance.md``: the table, how it was measured, how to reproduce it."""
    o = report["options"]
    lines = [
        "# Performance",
        "",
        "Agora against what a developer writes without its guarantees, measured in the same run "
        "on the same machine. Written by `make bench` (`bench/run.py`); the last accepted run "
        "is kept here, and a later change that drops a ratio by more than 10% is a regression.",
        "",
        f"Run {report['started_at']}, commit `{report['commit']}`, {report['cpus']} CPUs, "
        f"Python {report['python']}, load average {report['loadavg']} at the start. "
        f"Throughput: `wrk -t{o['threads']} -c{o['connections']}`, {o['rounds']} interleaved "
        f"rounds of {o['seconds']:g} s after a {o['warmup_seconds']:g} s warm-up, medians. "
        f"Latency: {o['writes']} writes at {o['rate']:g}/s, open loop. "
        f"Relay: a backlog of {o['relay_rows']:,} rows; notifier: {o['emails']:,} emails; "
        f"scaling: items with `--workers {o['workers']}`. "
        f"Stack up in {report['startup_s']:.1f} s, whole run {report['total_s']:.0f} s.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---", *["---:"] * 6, "---", "---", "---:"]) + "|",
    ]
    lines += ["| " + " | ".join(cells(row)).replace("{", "\\{") + " |" for row in rows]
    lines += [
        "",
        "Throughput per round (req/s):",
        "",
        *[
            f"- {row.name}: {', '.join(f'{r:,.0f}' for r in row.rounds)}"
            for row in rows
            if row.rounds
        ],
        "",
        "## What each row is",
        "",
        *[f"- **{row.name}**: {row.what}." for row in rows],
        "",
        "- **bare POST / bare GET** are `bench/bare.py`: FastAPI with a pydantic body, one "
        "`AsyncSession` per request from an `async_sessionmaker` over "
        "`create_async_engine(asyncpg, pool_size=10)`; the POST does `session.add(row)` and "
        "`await session.commit()` and returns the row, the GET does `await session.get(Item, id)`. "
        "ORM, no auth, no middleware, no outbox; its own database on the stack's Postgres, "
        "started by the bench with the same uvicorn flags as the services (one worker).",
        "- **POST /api/v1/items** keeps every guarantee: the bearer token is verified and checked "
        "against the revocation list, the owner is checked against the deleted-users projection, "
        "and the item row and its outbox row commit in one transaction. The relay runs in the "
        "same process during the measurement; the outbox is drained after each of its turns.",
        "- **raw aiokafka** produces at the write rate with the relay's producer settings "
        "(acks=all, the same linger and batch size) and reads with the same consumer as the "
        "201 -> event row (a consumer per partition, `fetch_max_wait_ms=10`, caught up before "
        "the first write).",
        "- **raw aiosmtplib** sends one email per write at the write rate over as many open "
        "connections as the notifier keeps, to the same sink; the time is to the server's 250.",
        "- **201 -> email** uses the sink's receive stamp (millisecond resolution); the bench "
        f"raises the notifier's per-recipient throttle for its run (`NOTIFIER_THROTTLE_LIMIT="
        f"{common.THROTTLE}`) and the gateway's rate limit, as every write comes from one account.",
        "- **relay drain** commits the whole backlog at once into the items outbox (one "
        "`INSERT ... SELECT`, a topic of its own that no service consumes), wakes the relay "
        "with its `NOTIFY`, and times until no row of it is unpublished; **raw aiokafka "
        "batched** sends as many messages of the same size to that topic with every send in "
        "flight at once and the relay's producer settings. The req/s column holds messages/s.",
        "- **notifier** produces copies of a real `ItemCreated` (new event and item ids) for "
        "one account with item mail on and times from the first send to the last 'is listed' "
        "email in the sink; **raw aiosmtplib pooled** sends as many emails over "
        f"{o['smtp_pool']} open connections. The req/s column holds emails/s.",
        "- **agora up, cold** is the bench's own `bring_up` (what `agora up` runs) on fresh "
        "folders, every step timed inside it (its steps are listed in the row's description "
        "above); the reference is its slowest single component start. The p50/p99 columns hold "
        "the one time, in ms. **idle RSS** is each service's process tree 5 s after start, "
        "before any load.",
        "- **POST --workers N** is a second items process started with `--workers N` on the "
        "same database, in the same wrk rounds as the one-worker POST.",
        "- **client CPU** is the load generator's CPU time over the wall time: wrk's for the "
        "throughput rows, this Python process's for the latency and rate rows. The two cores are "
        "shared with the whole stack; read the ratios, not the absolute numbers.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                      # installs wrk when missing, writes this file",
        "uv run python bench/run.py --seconds 8 --rounds 3 --rate 200 --writes 600 \\",
        "    --relay-rows 20000 --emails 500 --workers 2",
        "uv run python bench/run.py --only relay --relay-rows 100000   # the issue's backlog",
        "uv run python bench/run.py --only relay --peer-outbox /tmp/fso/bin/python  # + the peer",
        "```",
        "",
        "Every figure of the run is also in `bench/results/<timestamp>.json` (not committed).",
        "",
    ]
    return "\n".join(lines)


#: Everything below this line in docs/performance.md is written by hand (the profile, what
#: limits each figure) and kept when the bench rewrites the table above it.
NOTES_MARKER = "<!-- Written by hand below this line; make bench keeps it. -->"


def kept_notes(doc: Path) -> str:
    """The hand-written part of an existing report (from ``NOTES_MARKER`` on), or nothing."""
    try:
        text = doc.read_text()
    except OSError:
        return ""
    at = text.find(NOTES_MARKER)
    return "\n" + text[at:] if at >= 0 else ""


def build_report(rows: list[figures.Row], options: common.Options, **extra: Any) -> dict[str, Any]:
    """Everything the run measured, as JSON-ready data."""
    return {
        "commit": git_commit(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "options": {
            **asdict(options),
            "out": str(options.out),
            "doc": str(options.doc),
            "only": sorted(options.only),
        },
        "rows": [asdict(row) | {"met": row.met()} for row in rows],
        **extra,
    }
