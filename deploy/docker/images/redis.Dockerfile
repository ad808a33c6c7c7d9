# Stand-in for redis:7.4: Debian bookworm's redis-server (7.0) and redis-cli, from .debs
# fetched on the host. Like the official image, a bare `redis-server` runs unprotected on all
# addresses in /data (the container network is the boundary; compose sets --requirepass).
ARG BASE_IMAGE=agora-local/debian:bookworm
FROM ${BASE_IMAGE}
COPY debs/ /tmp/debs/
RUN apt-get install -y --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && install -d -o redis -g redis /data \
    && printf '%s\n' '#!/bin/sh' 'set -e' \
        'if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi' \
        'if [ "$1" = redis-server ]; then' \
        '  set -- "$@" --bind 0.0.0.0 --protected-mode no --dir /data --daemonize no' \
        '  [ "$(id -u)" = 0 ] && exec setpriv --reuid=redis --regid=redis --init-groups "$@"' \
        'fi' \
        'exec "$@"' >/usr/local/bin/docker-entrypoint.sh \
    && chmod 0755 /usr/local/bin/docker-entrypoint.sh \
    && redis-server --version
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
