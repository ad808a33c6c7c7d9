"""A scrape of a service run with ``--workers 2`` reports the requests of both workers.

The items service is started by ``bring_up`` (``agora up``'s own code path) with two uvicorn
workers and ``PROMETHEUS_MULTIPROC_DIR`` set: each worker writes its values to files of its
own in that folder, and ``/metrics`` merges them (agora_kit.metrics). The image's entrypoint
sets that folder up for ``WEB_CONCURRENCY`` > 1.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
from agora_deploy.infra import Infra
from agora_deploy.launchers.process import free_port
from agora_deploy.observe import service_gauges
from agora_deploy.up import UpOptions, bring_up
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

ROUTE = "/api/v1/items/{item_id}"
MISSING_ITEM = "/api/v1/items/987654321"


def route_count(metrics: list[object], status: str) -> float:
    """``http_requests_total`` of GET ROUTE with ``status`` in merged metric families."""
    total = 0.0
    for family in metrics:
        for sample in getattr(family, "samples", []):
            labels = sample.labels
            if (
                sample.name == "http_requests_total"
                and labels.get("route") == ROUTE
                and labels.get("method") == "GET"
                and labels.get("status") == status
            ):
                total += sample.value
    return total


def per_worker(folder: Path, status: str) -> dict[str, float]:
    """Each worker's own count, read from its counter file (``counter_<pid>.db``)."""
    counts: dict[str, float] = {}
    for path in sorted(folder.glob("counter_*.db")):
        merged = MultiProcessCollector.merge([str(path)], accumulate=True)  # type: ignore[no-untyped-call]
        counts[path.stem.removeprefix("counter_")] = route_count(list(merged), status)
    return counts


def scraped(url: str, status: str) -> float:
    """The same count in one scrape of ``/metrics``."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "http_requests_total"
                and labels.get("route") == ROUTE
                and labels.get("method") == "GET"
                and labels.get("status") == status
            ):
                total += sample.value
    return total


def test_a_scrape_of_a_two_worker_service_reports_both_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # agora up gives each multi-worker service its own folder, whatever the environment says.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "ignored"))
    folder = tmp_path / "stack" / "metrics" / "items"
    infra = Infra(tmp_path / "stack", die_with_parent=True, ephemeral=True)
    try:
        bring_up(infra, UpOptions(workers=2, gateway_port=free_port(), services=("items",)))
        url = infra.components["items"].url
        # A new connection per request, so the kernel spreads them over both workers'
        # accept calls; go on until each worker has served some.
        first = httpx.get(f"{url}{MISSING_ITEM}", timeout=10)
        status = str(first.status_code)
        assert status.startswith("4"), first.text
        sent = 1
        deadline = time.monotonic() + 60
        while True:
            counts = per_worker(folder, status)
            if len(counts) >= 2 and sum(1 for c in counts.values() if c > 0) >= 2:
                break
            assert time.monotonic() < deadline, f"one worker served everything: {counts}"
            for _ in range(10):
                response = httpx.get(f"{url}{MISSING_ITEM}", timeout=10)
                assert str(response.status_code) == status
                sent += 1
        counts = per_worker(folder, status)
        assert sum(counts.values()) == sent
        # Each scrape, whichever worker answers it, reports all of them.
        for _ in range(4):
            assert scraped(url, status) == sent
        # agora status keeps reading the gauges of a merged scrape.
        gauges = service_gauges(url)
        assert float(gauges["outbox_backlog"]) >= 0
        assert float(gauges["outbox_oldest_age_s"]) >= 0
    finally:
        infra.stop()


ENTRYPOINT = Path(__file__).resolve().parents[1] / "docker" / "entrypoint.sh"


@pytest.mark.parametrize(
    ("workers", "preset", "expected"),
    [("1", None, ""), ("3", None, "TMP/agora-metrics"), ("3", "TMP/chosen", "TMP/chosen")],
)
def test_the_image_entrypoint_gives_several_workers_an_empty_metrics_folder(
    tmp_path: Path, workers: str, preset: str | None, expected: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "out.txt"
    # A uvicorn that reports the folder it was given and what the folder held.
    uvicorn = bin_dir / "uvicorn"
    uvicorn.write_text(
        '#!/bin/sh\n{ echo "${PROMETHEUS_MULTIPROC_DIR:-}"; '
        'if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then ls "$PROMETHEUS_MULTIPROC_DIR"; fi; '
        '} > "$OUT"\n'
    )
    uvicorn.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "OUT": str(out),
        "TMPDIR": str(tmp_path),
        "AGORA_APP": "agora_items.main:create_app",
        "WEB_CONCURRENCY": workers,
    }
    if preset is not None:
        folder = Path(preset.replace("TMP", str(tmp_path)))
        folder.mkdir()
        (folder / "counter_123.db").write_bytes(b"stale")
        (folder / "keep.txt").write_text("not ours")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    folder_line, *listing = out.read_text().splitlines()
    assert folder_line == expected.replace("TMP", str(tmp_path))
    if expected:
        # The stale worker file is gone; nothing else was touched.
        assert listing == (["keep.txt"] if preset else [])
