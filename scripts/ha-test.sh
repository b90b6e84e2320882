#!/usr/bin/env bash
# The HA tests through annals itself, with the HA cluster of
# scripts/ha-cluster.sh around them:
#
#   1. scripts/ha-cluster.sh up   (installs what is missing, starts etcd, three
#                                  Patroni-managed PostgreSQL 15 nodes, HAProxy,
#                                  pgbouncer in transaction mode)
#   2. the steps of ANNALS_HA_TESTS (default: pgbouncer replica failover):
#      pgbouncer  postgres/tests/ha_pgbouncer.rs (what sqlx sends through
#                 pgbouncer, and the store with transaction_pooler()), then the
#                 PostgreSQL conformance suite through pgbouncer: DATABASE_URL =
#                 pgbouncer 6432, ANNALS_TEST_PG_DIRECT_URL = HAProxy 5440 (each
#                 test's schema is migrated there)
#      replica    postgres/tests/ha_replica.rs: 16 writers on the primary, tailing
#                 readers and a subscription on the hot standbys (HAProxy 5439)
#      failover   postgres/tests/ha_failover.rs: SIGKILL the primary under load,
#                 ANNALS_HA_ROUNDS rounds
#      with the URLs of `scripts/ha-cluster.sh urls` exported
#   3. scripts/ha-cluster.sh down (always: also when a test fails or the script
#                                  is interrupted), then checks nothing is left
#
# ANNALS_HA_ROUNDS (default 3: the CI length; 10 for the full run),
# ANNALS_HA_SCENARIO (postgres | patroni), ANNALS_HA_MAX_RESUME_S (default 10),
# ANNALS_HA_REPLICA_SECONDS (default 20) pass through to the tests; the cluster
# tuning variables (ANNALS_HA_TTL, ...) to scripts/ha-cluster.sh. Extra
# arguments go to the failover test's `cargo test` after `--`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "ha-test: $*" >&2; }

cleanup() {
    local rc=$?
    say "tearing the cluster down"
    bash scripts/ha-cluster.sh down || rc=1
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/ha-cluster.sh up
eval "$(bash scripts/ha-cluster.sh urls | sed 's/^/export /')"
export ANNALS_HA_ROUNDS=${ANNALS_HA_ROUNDS:-3}
for step in ${ANNALS_HA_TESTS:-pgbouncer replica failover}; do
    case "$step" in
        pgbouncer)
            say "pgbouncer: what sqlx sends through it, and the store with transaction_pooler()"
            cargo test -p annals-postgres --test ha_pgbouncer -- --include-ignored --nocapture
            say "pgbouncer: the conformance suite through pgbouncer (transaction mode)"
            DATABASE_URL=$ANNALS_HA_BOUNCER_URL ANNALS_TEST_PG_DIRECT_URL=$ANNALS_HA_URL \
                cargo test -p annals-postgres --test conformance
            ;;
        replica)
            say "replica: 16 writers on the primary, readers on the hot standbys"
            cargo test -p annals-postgres --test ha_replica -- --include-ignored --nocapture
            ;;
        failover)
            say "failover: $ANNALS_HA_ROUNDS rounds, scenario ${ANNALS_HA_SCENARIO:-postgres}"
            cargo test -p annals-postgres --test ha_failover -- --include-ignored --nocapture "$@"
            ;;
        *)
            say "unknown step in ANNALS_HA_TESTS: $step (pgbouncer, replica, failover)"
            exit 2
            ;;
    esac
done
