"""A minimal S3 client for the embedded storage: credentials, SigV4 signing, bucket checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

REGION = "auto"


CREDENTIALS_FILE = "s3.json"


@dataclass(frozen=True)
class S3Endpoint:
    """Where and how to reach the bucket: what Tansu's ``s3://`` engine needs."""

    url: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = REGION

    def tansu_env(self) -> dict[str, str]:
        """The environment Tansu's object store reads (plain HTTP to a local endpoint)."""
        return {
            "AWS_ENDPOINT": self.url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def storage_engine(self) -> str:
        """Tansu's ``--storage-engine`` value."""
        return f"s3://{self.bucket}/"


def load_credentials(data_dir: Path) -> tuple[str, str]:
    """Return the access/secret key kept in ``data_dir``, generating them on first use."""
    path = data_dir / CREDENTIALS_FILE
    try:
        identity = json.loads(path.read_text())["identities"][0]["credentials"][0]
        return str(identity["accessKey"]), str(identity["secretKey"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    access, secret = "agora" + secrets.token_hex(8), secrets.token_urlsafe(30)
    config = {
        "identities": [
            {
                "name": "tansu",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Written whole then renamed: a crash never leaves half a credentials file behind.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle)
    tmp.replace(path)
    return access, secret


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_headers(
    endpoint: S3Endpoint,
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    *,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers that sign an empty-body S3 request with SigV4."""
    moment = now or dt.datetime.now(dt.UTC)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    host = urllib.parse.urlsplit(endpoint.url).netloc
    payload_hash = hashlib.sha256(b"").hexdigest()
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted((query or {}).items())
    )
    canonical_headers = f"host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n"
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(
        [method, urllib.parse.quote(path, safe="/-_.~"), canonical_query, canonical_headers,
         signed, payload_hash]
    )  # fmt: skip
    scope = f"{day}/{endpoint.region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _sign(("AWS4" + endpoint.secret_key).encode(), day)
    for part in (endpoint.region, "s3", "aws4_request"):
        key = _sign(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential={endpoint.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }


def s3_request(
    endpoint: S3Endpoint,
    method: str,
    key: str = "",
    query: Mapping[str, str] | None = None,
    *,
    timeout: float = 5.0,
) -> httpx.Response:
    """Send one signed, empty-body request to ``/<bucket>/<key>``."""
    path = f"/{endpoint.bucket}/{key}" if key else f"/{endpoint.bucket}"
    headers = signed_headers(endpoint, method, path, query)
    url = endpoint.url + urllib.parse.quote(path, safe="/-_.~")
    return httpx.request(method, url, params=dict(query or {}), headers=headers, timeout=timeout)


def bucket_ready(endpoint: S3Endpoint, timeout: float = 1.0) -> bool:
    """Return whether the bucket answers an authenticated HEAD with 200."""
    try:
        return s3_request(endpoint, "HEAD", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False
