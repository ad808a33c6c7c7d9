#!/usr/bin/env bash
# PostgreSQL init script (the postgres image runs /docker-entrypoint-initdb.d/* once, on an
# empty data directory): one login role per Agora service, owning that service's database,
# so a service can neither read nor connect to another's data.
#
#   AGORA_DATABASES     names, space-separated (compose: "users items notifier"); each is both
#                       the database and the role
#   <NAME>_DB_PASSWORD  the role's password, e.g. USERS_DB_PASSWORD (required, URL-safe)
#   POSTGRES_USER       the superuser that runs this (the image sets it); PGHOST/PGPORT as usual
set -Eeuo pipefail

create_service_database() {
    local name="$1" var password
    var="$(printf '%s' "$name" | tr '[:lower:]-' '[:upper:]_')_DB_PASSWORD"
    password="${!var:-}"
    if [ -z "$password" ]; then
        echo "init-databases: $var is empty: set a password for the '$name' role" >&2
        return 1
    fi
    # psql variables (:"ident", :'literal') quote the name and the password safely.
    psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        -v name="$name" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'name')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name') \gexec
ALTER ROLE :"name" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \gexec
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
GRANT ALL ON DATABASE :"name" TO :"name";
SQL
    echo "init-databases: database '$name' owned by role '$name'"
}

main() {
    local name
    read -r -a names <<<"${AGORA_DATABASES:-users items notifier}"
    for name in "${names[@]}"; do
        create_service_database "$name"
    done
}

main
