#!/usr/bin/env bash
# A Docker engine for the container tests and `make compose-e2e`, on a machine without systemd.
#
#   deploy/docker/engine.sh start    install docker.io (+ debootstrap, docker-compose) with apt
#                                    when missing, start dockerd by hand, wait until it answers
#   deploy/docker/engine.sh stop     remove our containers and networks (by label), stop dockerd,
#                                    undo its network changes (ip_forward, the FORWARD policy,
#                                    the DOCKER chains, docker0 and compose bridges)
#   deploy/docker/engine.sh status   say whether the engine answers
#
# If a daemon already answers on the socket and we did not start it, `start` uses it and `stop`
# leaves it alone. Images live in the daemon's data root, a cache folder outside the clone
# (AGORA_DOCKER_ROOT, default /var/cache/agora-images/docker), so the next run is faster;
# deleting that folder is always safe.
set -euo pipefail

STATE_DIR="${AGORA_ENGINE_STATE:-/run/agora-engine}"
DATA_ROOT="${AGORA_DOCKER_ROOT:-/var/cache/agora-images/docker}"
EXEC_ROOT="${AGORA_DOCKER_EXEC_ROOT:-/run/agora-engine/exec}"
SOCKET=/var/run/docker.sock
PIDFILE="$STATE_DIR/dockerd.pid"
NETFILE="$STATE_DIR/network.before"
LOG="$STATE_DIR/dockerd.log"
# Labels our containers carry: testcontainers' own, compose's, and ours (images.sh, tests).
LABELS=(org.testcontainers=true com.docker.compose.project agora.cleanup=true)

say() { echo "engine: $*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        say "must run as root (it installs packages and starts dockerd); try: sudo $0 $*"
        exit 1
    fi
}

answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_missing() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing ${missing[*]} and there is no apt-get: install Docker by hand"
        exit 1
    fi
    say "installing ${missing[*]} with apt-get"
    timeout 300 apt-get update -qq </dev/null >/dev/null
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null >/dev/null
}

record_network() {
    # What dockerd will change, recorded before it starts, so `stop` can put it back.
    {
        echo "ip_forward=$(sysctl -n net.ipv4.ip_forward)"
        echo "forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')"
    } >"$NETFILE"
}

start() {
    need_root start
    mkdir -p "$STATE_DIR"
    if answers; then
        if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            say "already running (pid $(cat "$PIDFILE"))"
        else
            say "a Docker engine we did not start answers on $SOCKET: using it as is"
        fi
        return 0
    fi
    install_missing
    rm -f "$PIDFILE"
    record_network
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
    # setsid: the daemon outlives this shell; `stop` ends it by its pid file.
    setsid nohup dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
        --pidfile "$PIDFILE" --host "unix://$SOCKET" >"$LOG" 2>&1 </dev/null &
    local deadline=$((SECONDS + 60))
    until answers; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "dockerd did not answer within 60 s; its log ($LOG) ends with:"
            tail -n 30 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    say "dockerd $(docker version --format '{{.Server.Version}}') ready (data root $DATA_ROOT)"
}

clean_by_label() {
    local label ids
    for label in "${LABELS[@]}"; do
        ids=$(docker ps -aq --filter "label=$label" 2>/dev/null || true)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086 # one id per word
            docker rm -f -v $ids >/dev/null 2>&1 || true
        fi
        ids=$(docker network ls -q --filter "label=$label" 2>/dev/null || true)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            docker network rm $ids >/dev/null 2>&1 || true
        fi
        ids=$(docker volume ls -q --filter "label=$label" 2>/dev/null || true)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            docker volume rm -f $ids >/dev/null 2>&1 || true
        fi
    done
}

undo_network() {
    local before_forward=0 before_policy=ACCEPT
    if [ -f "$NETFILE" ]; then
        before_forward=$(sed -n 's/^ip_forward=//p' "$NETFILE")
        before_policy=$(sed -n 's/^forward_policy=//p' "$NETFILE")
        [ -n "$before_policy" ] || before_policy=ACCEPT
    fi
    sysctl -qw "net.ipv4.ip_forward=${before_forward:-0}" || true
    if command -v iptables >/dev/null 2>&1; then
        local table chain rule
        # Rules in the built-in chains that jump to Docker's chains or name its bridges.
        for table in filter nat; do
            { iptables -t "$table" -S 2>/dev/null || true; } \
                | { grep -E '^-A (FORWARD|PREROUTING|OUTPUT|POSTROUTING|INPUT) ' || true; } \
                | { grep -E 'DOCKER|docker0|br-[0-9a-f]{12}|172\.17\.' || true; } \
                | while read -r rule; do
                    # shellcheck disable=SC2086 # the rule is a list of words
                    iptables -t "$table" ${rule/-A /-D } 2>/dev/null || true
                done
            for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
                iptables -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
                iptables -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
        iptables -P FORWARD "$before_policy" 2>/dev/null || true
    fi
    local link
    for link in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' \
        | grep -E '^(docker0|br-[0-9a-f]{12})$' || true); do
        ip link delete "$link" 2>/dev/null || true
    done
    rm -f "$NETFILE"
}

stop() {
    need_root stop
    if [ ! -f "$PIDFILE" ]; then
        if answers; then
            say "the engine on $SOCKET was not started by this script: cleaning our labels only"
            clean_by_label
        elif [ -f "$NETFILE" ]; then
            # Our daemon ended on its own (or a stop was interrupted): undo its network changes.
            say "not running; undoing the network changes of the daemon we started"
            undo_network
            rm -rf "$EXEC_ROOT"
        else
            say "not running"
        fi
        return 0
    fi
    local pid
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null && answers; then
        clean_by_label
        local left
        left=$(docker ps -aq | wc -l)
        [ "$left" -eq 0 ] || say "$left container(s) without our labels are left: removing them"
        # shellcheck disable=SC2046
        [ "$left" -eq 0 ] || docker rm -f -v $(docker ps -aq) >/dev/null 2>&1 || true
    fi
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "dockerd (pid $pid) ignored SIGTERM for 30 s: killing it"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    # The containerd this dockerd started records its pid under the exec root.
    local cpid
    cpid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2>/dev/null || true)
    if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
        kill -TERM "$cpid" 2>/dev/null || true
    fi
    # overlay mounts left by a killed daemon would keep the data root busy.
    # (No match is no error: `|| true` keeps set -o pipefail from ending the script here.)
    { grep -F -e " $DATA_ROOT/" -e " $EXEC_ROOT" /proc/mounts || true; } | awk '{print $2}' \
        | sort -r | while read -r mnt; do
            umount -l "$mnt" 2>/dev/null || true
        done
    undo_network
    rm -f "$PIDFILE" "$SOCKET"
    # The daemon's runtime state (the image cache in DATA_ROOT stays for the next run).
    rm -rf "$EXEC_ROOT"
    rm -f "$STATE_DIR/dockerd.log.old"
    [ ! -f "$LOG" ] || mv "$LOG" "$STATE_DIR/dockerd.log.old"
    say "stopped; ip_forward=$(sysctl -n net.ipv4.ip_forward)," \
        "FORWARD policy $(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')"
}

status() {
    if answers; then
        say "answers: Docker $(docker version --format '{{.Server.Version}}')"
    else
        say "no engine answers on $SOCKET"
        return 1
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
