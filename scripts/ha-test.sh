#!/usr/bin/env bash
# The failover test through annals itself (postgres/tests/ha_failover.rs), with
# the HA cluster of scripts/ha-cluster.sh around it:
#
#   1. scripts/ha-cluster.sh up   (installs what is missing, starts etcd, three
#                                  Patroni-managed PostgreSQL 15 nodes, HAProxy,
#                                  pgbouncer)
#   2. cargo test -p annals-postgres --test ha_failover -- --include-ignored
#      with ANNALS_HA_URL pointing at HAProxy's primary port
#   3. scripts/ha-cluster.sh down (always: also when the test fails or the script
#                                  is interrupted), then checks nothing is left
#
# ANNALS_HA_ROUNDS (default 3: the CI length; 10 for the full run),
# ANNALS_HA_SCENARIO (postgres | patroni), ANNALS_HA_MAX_RESUME_S (default 10)
# pass through to the test. Extra arguments go to `cargo test` after `--`.
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
say "running the failover test: $ANNALS_HA_ROUNDS rounds, scenario ${ANNALS_HA_SCENARIO:-postgres}"
cargo test -p annals-postgres --test ha_failover -- --include-ignored --nocapture "$@"
