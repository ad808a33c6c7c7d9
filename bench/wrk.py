"""wrk, the load generator of the throughput rows: one load, one run, interleaved rounds."""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import common
else:
    import common


#: wrk prints one JSON line from its ``done`` hook; this is its prefix.
WRK_TAG = "WRKJSON "
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d, "
    .. "\\"p50_us\\": %d, \\"p99_us\\": %d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkRound:
    """One wrk run: counts, throughput, latency, and wrk's own CPU."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Load:
    """One wrk scenario: what it requests and how."""

    name: str
    what: str
    url: str
    method: str = "GET"
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def script(self, folder: Path) -> Path:
        """Write this scenario's Lua script into ``folder``."""
        lines = [f'wrk.method = "{self.method}"']
        if self.body is not None:
            if "]]" in self.body:
                raise ValueError("the body must not contain ']]'")
            lines.append(f"wrk.body = [[{self.body}]]")
        for key, value in self.headers.items():
            lines.append(f'wrk.headers["{key}"] = "{value}"')
        path = folder / f"{self.name.replace(' ', '_').replace('/', '_')}.lua"
        path.write_text("\n".join(lines) + "\n" + WRK_DONE)
        return path


def run_wrk(load: Load, script: Path, *, seconds: float, options: common.Options) -> WrkRound:
    """Run wrk for ``seconds`` against ``load``; return its figures."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    argv = [
        wrk, f"-t{options.threads}", f"-c{options.connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(script), load.url,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(  # noqa: S603 - fixed argv
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in out.stdout.splitlines() if x.startswith(WRK_TAG)), None)
    if out.returncode != 0 or line is None:
        tail = f"{out.stdout[-800:]} {out.stderr[-800:]}"
        raise RuntimeError(f"wrk failed ({out.returncode}): {tail}")
    data = json.loads(line[len(WRK_TAG) :])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRound(
        requests=int(data["requests"]),
        errors=int(data["errors"]),
        seconds=int(data["duration_us"]) / 1e6,
        p50_ms=int(data["p50_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
        client_cpu_s=cpu,
    )


async def interleave(
    loads: list[Load], options: common.Options, after: dict[str, Callable[[], Awaitable[float]]]
) -> dict[str, list[WrkRound]]:
    """Run the loads in turns, round after round (A B A B ...), after a discarded warm-up.

    ``after[name]`` runs once that load's turn is over (the drain of the work its writes left
    behind), so one scenario's leftovers never load the next one.
    """
    results: dict[str, list[WrkRound]] = {load.name: [] for load in loads}
    with tempfile.TemporaryDirectory(prefix="agora-wrk-") as tmp:
        scripts = {load.name: load.script(Path(tmp)) for load in loads}
        for turn in range(options.rounds + 1):
            for load in loads:
                seconds = options.warmup_seconds if turn == 0 else options.seconds
                part = await asyncio.to_thread(
                    run_wrk, load, scripts[load.name], seconds=seconds, options=options
                )
                drained = await after[load.name]() if load.name in after else 0.0
                label = "warm-up" if turn == 0 else f"round {turn}"
                common.console.print(
                    f"  {label} {load.name}: {part.rps:,.0f} req/s, p50 {part.p50_ms:.1f} ms, "
                    f"p99 {part.p99_ms:.1f} ms, {part.errors} errors, "
                    f"client CPU {part.client_cpu_s / part.seconds:.0%}"
                    + (f", drained in {drained:.1f} s" if drained else "")
                )
                if turn:
                    results[load.name].append(part)
    return results
