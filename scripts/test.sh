#!/usr/bin/env bash
# Runs the whole test suite — all three backends, the conformance suite, the
# PostgreSQL container and fault tests — after making sure what they need is up:
#
# * PostgreSQL: DATABASE_URL if set; else the local server on 127.0.0.1:5432
#   (started with pg_ctlcluster when it is installed but down);
# * a Docker engine for the container tests (scripts/docker-up.sh: installs and
#   starts one when run as root, fails loudly otherwise);
# * a PostgreSQL image for them: ANNALS_TEST_PG_IMAGE if set; else the official
#   postgres:15-alpine if present or pullable; else one built offline from
#   Debian's packages (scripts/postgres-image.sh).
#
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p annals-sqlite`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "test.sh: $*" >&2; }

if [ -z "${DATABASE_URL:-}" ] && command -v pg_isready >/dev/null 2>&1 \
    && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        say "starting the local PostgreSQL cluster"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
        for _ in $(seq 1 30); do
            pg_isready -h 127.0.0.1 -p 5432 -q && break
            sleep 1
        done
    fi
fi

bash scripts/docker-up.sh

if [ -z "${ANNALS_TEST_PG_IMAGE:-}" ]; then
    if docker image inspect postgres:15-alpine >/dev/null 2>&1 \
        || timeout 60 docker pull -q postgres:15-alpine >/dev/null 2>&1; then
        say "container tests use the official postgres:15-alpine"
    else
        say "no registry image: building the local PostgreSQL image (once)"
        bash scripts/postgres-image.sh
        export ANNALS_TEST_PG_IMAGE=annals-postgres:15
    fi
fi

exec cargo test --workspace "$@"
