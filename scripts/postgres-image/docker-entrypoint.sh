#!/bin/bash
# Entrypoint of the local `annals-postgres` image (built by
# scripts/postgres-image.sh from Debian's postgresql-15 package).
#
# It mirrors what the official `postgres` image does for the parts that
# testcontainers-modules' `Postgres` relies on:
#   - POSTGRES_USER (default postgres), POSTGRES_PASSWORD, POSTGRES_DB
#     (default $POSTGRES_USER), POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS;
#   - arguments starting with '-' (e.g. `-c fsync=off`) are passed to postgres;
#   - on first start the cluster is initialised, a temporary server runs the
#     init steps (its log on stdout, like pg_ctl in the official image), then the
#     real server starts with its log on stderr: "database system is ready to
#     accept connections" appears once on each stream;
#   - *.sql / *.sh files in /docker-entrypoint-initdb.d run once at init;
#   - the server runs as the `postgres` user (PID 1) and listens on all addresses.
set -Eeo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    chmod 2777 /var/run/postgresql
    # setpriv execs (unlike runuser, which stays as a parent): the postmaster
    # becomes PID 1, as with gosu in the official image, so `docker kill`
    # SIGKILLs the postmaster itself and `docker stop` reaches it directly.
    export HOME=/var/lib/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi
shift

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    POSTGRES_USER=${POSTGRES_USER:-postgres}
    POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
        echo "Error: database is uninitialized and superuser password is not specified." >&2
        echo "       Set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust." >&2
        exit 1
    fi
    pwargs=()
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        pwargs=(--pwfile="$pwfile")
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list, as upstream.
    initdb --username="$POSTGRES_USER" --auth-local=trust --auth-host=scram-sha-256 \
        "${pwargs[@]}" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
    [ -n "${pwfile:-}" ] && rm -f "$pwfile"

    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    {
        echo
        echo "host all all all $auth"
    } >>"$PGDATA/pg_hba.conf"

    # Temporary server, local socket only; pg_ctl sends its log to stdout.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    psql_cmd=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password --dbname postgres)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql_cmd[@]}" --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
        *.sql) echo "running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
        *.sh) echo "running $f"; . "$f" ;;
        *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo
    echo "PostgreSQL init process complete; ready for start up."
    echo
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
