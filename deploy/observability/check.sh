#!/usr/bin/env bash
# make observability-check: the alert rules, their unit tests, the Prometheus configuration and
# the Grafana dashboard. promtool comes from Debian's `prometheus` package: installed here
# when apt-get is available (bounded by a timeout), else the promtool steps are skipped with
# the reason printed. The live-scrape test (tests/e2e/test_e2e_observability.py) is pytest's.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        timeout 300 bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends prometheus' </dev/null >/dev/null 2>&1 \
            || echo "apt-get could not install prometheus (promtool)"
    fi
fi

python3 -m json.tool grafana/dashboards/agora.json >/dev/null
echo "grafana/dashboards/agora.json: valid JSON"

if ! command -v promtool >/dev/null 2>&1; then
    echo "SKIPPED promtool checks: promtool is not installed and apt-get could not install it" \
        "(Debian package prometheus)"
    exit 0
fi
promtool check rules prometheus/alerts.yml
promtool test rules prometheus/alerts.test.yml
# The configuration names the rules by their path inside the container: check a copy that
# points at the file beside it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp prometheus/alerts.yml "$tmp/alerts.yml"
sed 's|/etc/prometheus/alerts.yml|alerts.yml|' prometheus/prometheus.yml >"$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml"
