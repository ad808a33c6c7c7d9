"""`python -m agora_deploy.chaos`: run the fault scenarios, print and record their table.

Starts its own supervised stack (`agora up --detach`) in a private AGORA_HOME, runs each
scenario against it, stops it, prints the reconciliation table and, with ``--write-docs``,
replaces the results section of docs/reliability.md. Exits 1 when any scenario lost or
duplicated an email outside the documented window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from agora_deploy.chaos.harness import dump, run_scenario, table
from agora_deploy.chaos.reconcile import Result
from agora_deploy.chaos.scenarios import SCENARIOS, Scenario
from agora_deploy.chaos.stackctl import STACK_ENV, Stack
from agora_deploy.services import REPO_ROOT

DOC = REPO_ROOT / "docs" / "reliability.md"
BEGIN = "<!-- chaos-results:begin -->"
END = "<!-- chaos-results:end -->"


def choose(names: str | None, *, ci: bool) -> list[Scenario]:
    """The scenarios to run: named ones, the CI subset, or all."""
    if names:
        wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
        chosen = [s for s in SCENARIOS if any(w in s.name.lower() for w in wanted)]
        if not chosen:
            raise SystemExit(f"no scenario matches {names!r}")
        return chosen
    return [s for s in SCENARIOS if s.ci] if ci else list(SCENARIOS)


def run_groups(home: Path, scenarios: list[Scenario]) -> list[Result]:
    """One supervised stack per worker count, the scenarios that need it run in turn."""
    results: list[Result] = []
    for workers in sorted({s.workers for s in scenarios}):
        group = [s for s in scenarios if s.workers == workers]
        stack = Stack(home / f"stack-w{workers}", workers=workers)
        started = time.monotonic()
        try:
            stack.up()
            print(
                f"chaos: stack with {workers} worker(s) per service up in "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            )
            results += asyncio.run(run_all(stack, group))
        finally:
            stack.down()
    return results


async def run_all(stack: Stack, scenarios: list[Scenario]) -> list[Result]:
    """Run each scenario in turn on the one stack, printing as it goes."""
    results = []
    for scenario in scenarios:
        print(f"-> {scenario.name} ...", flush=True)
        began = time.monotonic()
        result = await run_scenario(
            stack, scenario.name, scenario.fault, count=scenario.count, after=scenario.after
        )
        verdict = "ok" if result.ok else "FAILED"
        print(
            f"   {verdict}: owed {result.owed}, delivered {result.delivered}, lost {result.lost}, "
            f"duplicated {result.duplicated} ({result.same_message_id} same Message-ID), "
            f"failed requests {result.failed_requests} [{time.monotonic() - began:.0f} s]",
            flush=True,
        )
        for note in result.notes:
            print(f"   {note}", flush=True)
        results.append(result)
    return results


def write_doc(results: list[Result], command: str) -> None:
    """Replace the results section of docs/reliability.md."""
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = (
        f"\n{table(results)}\nProduced by `{command}` on {time.strftime('%Y-%m-%d')} "
        f"(limits raised for the load: {', '.join(f'{k}={v}' for k, v in STACK_ENV.items())}).\n"
    )
    DOC.write_text(head + BEGIN + body + END + tail)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `make chaos`."""
    parser = argparse.ArgumentParser(prog="python -m agora_deploy.chaos", description=__doc__)
    parser.add_argument("--ci", action="store_true", help="only the CI subset")
    parser.add_argument("--only", help="comma-separated parts of scenario names")
    parser.add_argument("--write-docs", action="store_true", help="update docs/reliability.md")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    scenarios = choose(args.only, ci=args.ci)
    home = Path(tempfile.mkdtemp(prefix="agora-chaos-"))
    print(f"chaos: {len(scenarios)} scenario(s), stacks in {home}", flush=True)
    print(f"chaos: limits raised for the load: {STACK_ENV}", flush=True)
    started = time.monotonic()
    results = run_groups(home, scenarios)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(dump(results))
    if args.write_docs:
        command = "make chaos" if not args.ci and not args.only else " ".join(sys.argv)
        write_doc(results, command)
    failed = [r.name for r in results if not r.ok]
    print(f"chaos: {len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print(f"chaos: FAILED: {', '.join(failed)}; logs in {home}/stack-w*/logs")
        return 1
    print(f"chaos: all {len(results)} scenario(s) passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
