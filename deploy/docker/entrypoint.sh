#!/bin/sh
# Entrypoint of Agora's service images.
#   serve        (default) uvicorn on $PORT, trusting X-Forwarded-* from $FORWARDED_ALLOW_IPS only
#   migrate      alembic upgrade head (the image's working directory holds alembic.ini)
#   ensure-keys  create the users service's signing key set unless it exists (never rotates)
#   keys|admin   the users service's commands (`keys rotate`, `keys list`, `admin create`)
#   dlq          the notifier's dead-letter commands
#   anything else is run as given
set -eu

command="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$command" in
serve)
    : "${AGORA_APP:?AGORA_APP (module:factory) is not set: the image sets it}"
    # Several workers: each writes its metrics to files in one folder and /metrics merges
    # them (agora_kit.metrics). The folder must hold no file of an earlier run.
    if [ "${WEB_CONCURRENCY:-1}" -gt 1 ] && [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        PROMETHEUS_MULTIPROC_DIR="${TMPDIR:-/tmp}/agora-metrics"
    fi
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db
        export PROMETHEUS_MULTIPROC_DIR
    fi
    exec uvicorn --factory "$AGORA_APP" \
        --host "${AGORA_BIND:-0.0.0.0}" --port "${PORT:-8000}" \
        --workers "${WEB_CONCURRENCY:-1}" \
        --proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
        --no-access-log --no-server-header \
        --timeout-graceful-shutdown "${GRACEFUL_SHUTDOWN_S:-20}" \
        "$@"
    ;;
migrate)
    exec python -m alembic upgrade head "$@"
    ;;
ensure-keys)
    exec python "${AGORA_LIB:-/usr/local/lib/agora}/ensure_keys.py" "$@"
    ;;
keys | admin | dlq)
    # The command groups `agora keys|admin|dlq` mounts on the embedded stack, here run
    # against the container's own settings.
    case "$command" in
    dlq) module=agora_notifier.cli ;;
    *) module=agora_users.cli ;;
    esac
    exec python -c "from $module import ${command}_app as app; app(prog_name='$command')" "$@"
    ;;
*)
    exec "$command" "$@"
    ;;
esac
