"""Retention for Tansu's S3 log: delete whole batch objects older or beyond a size bound.

Tansu 0.6 keeps a topic's ``retention.ms`` / ``retention.bytes`` configs but does not enforce
them on S3 storage (its S3 ``maintain`` does nothing and ``DeleteRecords`` is unimplemented),
so without a sweep the bucket grows by every event forever. Its layout is one object per
produced batch::

    clusters/<cluster>/meta.json                        topics and their configs
    clusters/<cluster>/topics/<t>/partitions/<p:010>/watermark.json
    clusters/<cluster>/topics/<t>/partitions/<p:010>/records/<base offset:020>.batch
    clusters/<cluster>/groups/consumers/...              groups and committed offsets

The sweep works as Kafka's retention does, with a batch in place of a segment:

- per partition, it deletes the oldest batches whose append time (the object's
  LastModified) is older than ``retention.ms``, then the oldest ones while the partition
  holds more than ``retention.bytes``;
- it deletes a prefix only (oldest first, stopping at the first batch it keeps) and never a
  partition's newest batch: Tansu answers ListOffsets(latest) from the newest object, and 0
  when none is left;
- S3's LastModified has a 1 s granularity, so a batch can look up to 1 s older than it is.

What it does not do, as in Kafka: wait for consumers. A group whose committed offset falls in
a deleted range resumes at the oldest batch left (Tansu's ListOffsets(earliest) is the oldest
object left); the events in between are lost to it. A fetch that lists a batch the sweep then
deletes fails once with an unknown server error and is retried by the client.
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from agora_deploy.launchers.s3 import S3Endpoint, s3_request

CLUSTER = "tansu_cluster"
#: Kafka's default ``retention.ms`` (7 days).
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
#: Per partition, like Kafka's ``retention.bytes`` (Kafka's default, -1, is unbounded).
DEFAULT_RETENTION_BYTES = 1024 * 1024 * 1024
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class SweepError(RuntimeError):
    """The storage refused a listing or a deletion."""


@dataclass(frozen=True)
class BatchObject:
    """One batch object of a partition."""

    key: str
    base_offset: int
    size: int
    modified_at: dt.datetime


@dataclass
class SweepReport:
    """What one sweep deleted and kept."""

    deleted_objects: int = 0
    deleted_bytes: int = 0
    kept_objects: int = 0
    kept_bytes: int = 0
    #: Per ``topic/partition``, the base offset of the oldest batch left.
    log_start: dict[str, int] = field(default_factory=dict)


def list_objects(endpoint: S3Endpoint, prefix: str, timeout: float = 10.0) -> list[ET.Element]:
    """All ``<Contents>`` entries under ``prefix`` (ListObjectsV2, following continuations)."""
    entries: list[ET.Element] = []
    token: str | None = None
    while True:
        query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            query["continuation-token"] = token
        resp = s3_request(endpoint, "GET", query=query, timeout=timeout)
        if resp.status_code != 200:
            raise SweepError(f"list {prefix!r}: HTTP {resp.status_code} {resp.text[:200]}")
        root = ET.fromstring(resp.content)  # noqa: S314 - our own local storage answers
        entries.extend(root.iter(f"{NS}Contents"))
        if root.findtext(f"{NS}IsTruncated") != "true":
            return entries
        token = root.findtext(f"{NS}NextContinuationToken")
        if not token:
            return entries


def topic_configs(endpoint: S3Endpoint, cluster: str = CLUSTER) -> dict[str, dict[str, str]]:
    """Topic name -> the configs it was created (or altered) with, from Tansu's meta.json."""
    resp = s3_request(endpoint, "GET", f"clusters/{cluster}/meta.json")
    if resp.status_code == 404:
        return {}
    if resp.status_code != 200:
        raise SweepError(f"meta.json: HTTP {resp.status_code} {resp.text[:200]}")
    topics = json.loads(resp.content).get("topics", {})
    return {
        name: {
            str(c["name"]): str(c["value"])
            for c in (meta.get("topic", {}).get("configs") or [])
            if c.get("value") is not None
        }
        for name, meta in topics.items()
    }


def _batches(entries: list[ET.Element]) -> dict[str, list[BatchObject]]:
    """Group batch objects by ``topic/partition``, oldest offset first."""
    parts: dict[str, list[BatchObject]] = defaultdict(list)
    for entry in entries:
        key = entry.findtext(f"{NS}Key") or ""
        pieces = key.split("/")
        # clusters/<c>/topics/<t>/partitions/<p>/records/<offset>.batch
        if len(pieces) != 8 or pieces[6] != "records" or not pieces[7].endswith(".batch"):
            continue
        modified = dt.datetime.fromisoformat(
            (entry.findtext(f"{NS}LastModified") or "").replace("Z", "+00:00")
        )
        parts[f"{pieces[3]}/{int(pieces[5])}"].append(
            BatchObject(
                key,
                int(pieces[7].removesuffix(".batch")),
                int(entry.findtext(f"{NS}Size") or 0),
                modified,
            )
        )
    for batches in parts.values():
        batches.sort(key=lambda b: b.base_offset)
    return parts


def _int_config(configs: dict[str, str], name: str, default: int) -> int:
    try:
        return int(configs[name])
    except (KeyError, ValueError):
        return default


def expired(
    batches: list[BatchObject], *, now: dt.datetime, retention_ms: int, retention_bytes: int
) -> list[BatchObject]:
    """The oldest-first prefix of ``batches`` to delete (never the newest; -1 = no bound)."""
    total = sum(b.size for b in batches)
    cutoff = now - dt.timedelta(milliseconds=retention_ms) if retention_ms >= 0 else None
    doomed: list[BatchObject] = []
    for batch in batches[:-1]:
        too_old = cutoff is not None and batch.modified_at < cutoff
        too_big = retention_bytes >= 0 and total > retention_bytes
        if not (too_old or too_big):
            break
        doomed.append(batch)
        total -= batch.size
    return doomed


def sweep(
    endpoint: S3Endpoint,
    *,
    default_retention_ms: int = DEFAULT_RETENTION_MS,
    default_retention_bytes: int = DEFAULT_RETENTION_BYTES,
    now: dt.datetime | None = None,
    cluster: str = CLUSTER,
) -> SweepReport:
    """Delete expired batch objects of every topic; a topic's own configs override defaults."""
    moment = now or dt.datetime.now(dt.UTC)
    report = SweepReport()
    for topic, configs in topic_configs(endpoint, cluster).items():
        retention_ms = _int_config(configs, "retention.ms", default_retention_ms)
        retention_bytes = _int_config(configs, "retention.bytes", default_retention_bytes)
        prefix = f"clusters/{cluster}/topics/{topic}/partitions/"
        for name, batches in _batches(list_objects(endpoint, prefix)).items():
            doomed = expired(
                batches, now=moment, retention_ms=retention_ms, retention_bytes=retention_bytes
            )
            for batch in doomed:
                try:
                    resp = s3_request(endpoint, "DELETE", batch.key)
                except httpx.HTTPError as exc:
                    raise SweepError(f"delete {batch.key}: {exc}") from exc
                if resp.status_code not in (200, 204, 404):
                    raise SweepError(f"delete {batch.key}: HTTP {resp.status_code}")
                report.deleted_objects += 1
                report.deleted_bytes += batch.size
            kept = batches[len(doomed) :]
            report.kept_objects += len(kept)
            report.kept_bytes += sum(b.size for b in kept)
            report.log_start[name] = kept[0].base_offset
    return report
