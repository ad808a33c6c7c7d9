#!/usr/bin/env bash
# Remove the containers, networks and volumes our runs leave, by label (never by name).
#   deploy/docker/clean.sh tests      the test containers (agora.cleanup=true, testcontainers')
#   deploy/docker/clean.sh all        those and every compose project's
set -euo pipefail
labels=(agora.cleanup=true org.testcontainers=true)
[ "${1:-tests}" = all ] && labels+=(com.docker.compose.project)
timeout 10 docker version >/dev/null 2>&1 || exit 0
for label in "${labels[@]}"; do
    ids=$(docker ps -aq --filter "label=$label")
    # shellcheck disable=SC2086 # one id per word
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null
    ids=$(docker network ls -q --filter "label=$label")
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker network rm $ids >/dev/null
    ids=$(docker volume ls -q --filter "label=$label")
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker volume rm -f $ids >/dev/null
done
left=$(docker ps -aq | wc -l)
echo "clean: $left container(s) left" >&2
