#!/usr/bin/env bash
# `make compose-e2e`: build the images, start docker-compose.yml, wait until every long-running
# container is healthy and every one-shot job has exited 0, run the end-to-end suite (tests/e2e)
# against the compose gateway, then bring it all down, volumes included (also on failure).
#
# With no registry (AGORA_OFFLINE_IMAGES=1, or when postgres:18 is neither present nor
# pullable) the backing services run on the stand-ins (deploy/docker/compose.offline.yml).
# Secrets are generated for the run; host ports are free ones, so nothing else is disturbed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PROJECT="${AGORA_COMPOSE_PROJECT:-agora-e2e}"
UV="${UV:-uv}"
WAIT_S="${AGORA_COMPOSE_WAIT_S:-240}"
WORK="$(mktemp -d /tmp/agora-compose-e2e.XXXXXX)"

say() { echo "compose-e2e: $*" >&2; }

offline=0
case "${AGORA_OFFLINE_IMAGES:-}" in
1 | true | yes) offline=1 ;;
*)
    if ! docker image inspect postgres:18 >/dev/null 2>&1 \
        && ! timeout 60 docker pull -q postgres:18 >/dev/null 2>&1; then
        say "postgres:18 cannot be pulled: using the offline stand-ins"
        offline=1
    fi
    ;;
esac

files=(-f docker-compose.yml)
if [ "$offline" = 1 ]; then
    files+=(-f deploy/docker/compose.offline.yml)
    deploy/docker/images.sh all
fi

free_port() { "$ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { "$ROOT/.venv/bin/python" -c 'import secrets; print(secrets.token_hex(16))'; }

gateway_port=$(free_port)
mail_port=$(free_port)
env_file="$WORK/compose.env"
cat >"$env_file" <<EOF
POSTGRES_PASSWORD=$(secret)
USERS_DB_PASSWORD=$(secret)
ITEMS_DB_PASSWORD=$(secret)
NOTIFIER_DB_PASSWORD=$(secret)
REDIS_PASSWORD=$(secret)
PUBLIC_URL=http://localhost:$gateway_port
AGORA_GATEWAY_PORT=$gateway_port
MAILPIT_UI_PORT=$mail_port
KAFKA_EXTERNAL_PORT=$(free_port)
EOF

compose() { docker-compose --project-name "$PROJECT" --env-file "$env_file" "${files[@]}" "$@"; }

down() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        say "failed (exit $status); the last log lines of every container:"
        compose ps >&2 || true
        compose logs --no-color --tail 25 >&2 || true
    fi
    say "bringing the stack down, volumes included"
    timeout 120 docker-compose --project-name "$PROJECT" --env-file "$env_file" "${files[@]}" \
        down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    # Whatever compose did not remove (a killed run), by its project label.
    local ids
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
    ids=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker network rm $ids >/dev/null 2>&1 || true
    ids=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker volume rm -f $ids >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$status"
}
trap down EXIT
trap 'exit 130' INT TERM

if [ "$offline" = 0 ]; then
    # With a registry: the service images as docker-compose.yml builds them (from the index).
    compose build --quiet
fi

started=$SECONDS
say "starting the stack (project $PROJECT, gateway on port $gateway_port)"
compose up -d --no-build --quiet-pull >/dev/null

# Long-running services must be healthy, one-shot jobs exited 0. Services behind a profile
# (observability) are not started by `up`: docker-compose 1.29 still lists them in
# `config --services`, so they are left out by reading the merged configuration.
jobs_re='-(migrate|keys)$'
started_services=$(compose config | "$UV" run python -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"]
print(" ".join(name for name, spec in services.items() if not spec.get("profiles")))
')
deadline=$((SECONDS + WAIT_S))
while :; do
    pending=()
    for service in $started_services; do
        id=$(compose ps -q "$service")
        if [ -z "$id" ]; then
            pending+=("$service:not-created")
            continue
        fi
        state=$(docker inspect --format '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
        read -r status code health <<<"$state"
        if [[ "$service" =~ $jobs_re ]]; then
            if [ "$status" = exited ] && [ "$code" != 0 ]; then
                say "one-shot job $service exited $code"
                exit 1
            fi
            [ "$status" = exited ] || pending+=("$service:$status")
        else
            if [ "$status" = exited ] || [ "$health" = unhealthy ]; then
                say "$service is $status${health:+ ($health)}"
                exit 1
            fi
            [ "$health" = healthy ] || pending+=("$service:${health:-$status}")
        fi
    done
    [ "${#pending[@]}" -eq 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "not ready within ${WAIT_S} s: ${pending[*]}"
        exit 1
    fi
    sleep 2
done
say "every container healthy, every job done, in $((SECONDS - started)) s"

export AGORA_E2E_GATEWAY_URL="http://127.0.0.1:$gateway_port"
export AGORA_E2E_MAIL_API_URL="http://127.0.0.1:$mail_port"
"$UV" run pytest tests/e2e -q -p no:cacheprovider "$@"
