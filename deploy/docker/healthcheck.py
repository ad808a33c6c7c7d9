"""Container healthcheck: exit 0 when ``/health/live`` answers 200 (slim images have no curl).

``PORT`` (default 8000), ``HEALTHCHECK_PATH`` and ``HEALTHCHECK_TIMEOUT_S`` tune it.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    """Probe the service on loopback; report why it is unhealthy on stderr."""
    port = os.environ.get("PORT", "8000")
    path = os.environ.get("HEALTHCHECK_PATH", "/health/live")
    url = f"http://127.0.0.1:{port}{path}"
    # No proxy: HTTP_PROXY in a container's environment must not divert a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        timeout = float(os.environ.get("HEALTHCHECK_TIMEOUT_S", "4"))
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except (OSError, ValueError) as exc:  # HTTPError (4xx/5xx) is an OSError too
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1
    if status != 200:
        sys.stderr.write(f"unhealthy: {url} answered {status}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
