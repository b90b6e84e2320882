#!/usr/bin/env bash
# A highly available PostgreSQL 15 cluster on this machine, for the failover tests
# and measurements of docs/operations/high-availability.md:
#
#   etcd 3.4 (DCS)            127.0.0.1:2379 (client), 2380 (peer)
#   Patroni 3.0 + PG 15, x3   node1 127.0.0.1:5441 (REST 8008)
#                             node2 127.0.0.1:5442 (REST 8009)
#                             node3 127.0.0.1:5443 (REST 8010)
#   HAProxy                   127.0.0.1:5440 -> the primary   (Patroni GET /primary)
#                             127.0.0.1:5439 -> the replicas  (Patroni GET /replica)
#                             127.0.0.1:7000 -> stats page
#   pgbouncer 1.18            127.0.0.1:6432, transaction pooling, -> HAProxy 5440
#                             (ANNALS_HA_BOUNCER_MODE=session for session pooling)
#
# Everything runs as local processes on 127.0.0.1 (no containers: the machine has
# 2 cores and no image registry), PostgreSQL and Patroni as the `postgres` OS
# user, with all state under $ANNALS_HA_DIR (default /tmp/annals-ha) except
# etcd's data, on tmpfs in $ANNALS_HA_ETCD_DIR (default /dev/shm/annals-ha-etcd).
#
# Usage: scripts/ha-cluster.sh COMMAND
#   up              install what is missing (apt-get), start everything, wait until
#                   there is a primary, two streaming replicas, one of them
#                   synchronous, and HAProxy routes writes to the primary
#   down            stop everything this script started and delete $ANNALS_HA_DIR
#                   (ANNALS_HA_KEEP=1 keeps the data); verifies nothing is left
#   status          patronictl list + which ports answer
#   primary         print the current leader's name (node1..node3)
#   kill-postgres   SIGKILL the leader's postmaster; prints "<node> <epoch-seconds>"
#   kill-patroni    SIGKILL the leader's Patroni;   prints "<node> <epoch-seconds>"
#   wait-failover OLD [TIMEOUT]
#                   wait until a node other than OLD leads and HAProxy 5440
#                   reaches it as a primary; prints the new leader
#   heal [TIMEOUT]  restart dead Patroni daemons, wait until all three members
#                   run, one is a synchronous standby and both replicas stream
#   urls            print the connection URLs
#
# Tuning (the failover budget; see the docs for the trade-off):
#   ANNALS_HA_TTL (default 7), ANNALS_HA_LOOP_WAIT (1), ANNALS_HA_RETRY_TIMEOUT (3)
#   ANNALS_HA_STRICT (default 1: synchronous_mode_strict; 0 lets a primary without
#   a synchronous standby acknowledge commits alone)
set -euo pipefail

HA_DIR=${ANNALS_HA_DIR:-/tmp/annals-ha}
PG_BIN=${ANNALS_HA_PG_BIN:-/usr/lib/postgresql/15/bin}
# etcd's data on tmpfs: on this 2-core machine, shared with compiles, etcd's fsyncs
# on the root disk made Patroni's DCS requests time out (retry_timeout is 4 s).
ETCD_DIR=${ANNALS_HA_ETCD_DIR:-/dev/shm/annals-ha-etcd}
TTL=${ANNALS_HA_TTL:-7}
LOOP_WAIT=${ANNALS_HA_LOOP_WAIT:-1}
RETRY_TIMEOUT=${ANNALS_HA_RETRY_TIMEOUT:-3}
STRICT=$([ "${ANNALS_HA_STRICT:-1}" = 1 ] && echo true || echo false)
SCOPE=annals-ha
NODES=(node1 node2 node3)
declare -A PG_PORT=([node1]=5441 [node2]=5442 [node3]=5443)
declare -A REST_PORT=([node1]=8008 [node2]=8009 [node3]=8010)
PRIMARY_PORT=5440
REPLICA_PORT=5439
STATS_PORT=7000
BOUNCER_PORT=6432
SUPERPASS=annals-ha-super
APP_USER=annals
APP_PASS=annals
APP_DB=annals
PY=/usr/bin/python3   # Debian's Python: Patroni's and psycopg2's

say() { echo "ha-cluster: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

as_pg() { runuser -u postgres -- "$@"; }

# ---------------------------------------------------------------- install

install_missing() {
    local need=()
    command -v patroni >/dev/null 2>&1 || need+=(patroni)
    command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
    command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
    command -v pgbouncer >/dev/null 2>&1 || need+=(pgbouncer)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    [ -x "$PG_BIN/postgres" ] || need+=(postgresql-15)
    "$PY" -c 'import psycopg2' 2>/dev/null || need+=(python3-psycopg2)
    [ ${#need[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing ${need[*]} and not root: install them with apt-get"
    say "installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    local apt_log=/tmp/annals-ha-apt.log
    apt-get update -qq >"$apt_log" 2>&1 || {
        tail -n 20 "$apt_log" >&2
        die "apt-get update failed (log: $apt_log)"
    }
    # policy-rc.d: the packages must not start their own system-wide daemons.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get install -y -qq "${need[@]}" >>"$apt_log" 2>&1 || {
        [ "$created_policy" = 1 ] && rm -f "$policy"
        tail -n 20 "$apt_log" >&2
        die "apt-get install ${need[*]} failed (log: $apt_log)"
    }
    [ "$created_policy" = 1 ] && rm -f "$policy"
    return 0
}

# ---------------------------------------------------------------- helpers

rest() { # rest NODE PATH -> HTTP status code (000 when down)
    curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:${REST_PORT[$1]}$2" 2>/dev/null || true
}

leader() {
    local n
    for n in "${NODES[@]}"; do
        if [ "$(rest "$n" /primary)" = 200 ]; then
            echo "$n"
            return 0
        fi
    done
    return 1
}

postmaster_pid() { # NODE -> pid of its running postmaster, or nothing
    local f="$HA_DIR/$1/data/postmaster.pid" pid
    [ -f "$f" ] || return 0
    pid=$(head -n 1 "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    return 0
}

pid_of() { # NAME -> pid from $HA_DIR/NAME.pid if alive
    local f="$HA_DIR/$1.pid" pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    return 0
}

wait_until() { # TIMEOUT WHAT CMD...
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || {
            say "timed out after ${timeout}s waiting for: $what"
            return 1
        }
        sleep 0.2
    done
}

psql_primary() { # SQL... via HAProxy as the superuser
    PGPASSWORD=$SUPERPASS PGCONNECT_TIMEOUT=2 psql -X -q -t -A -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres "$@"
}

writable() {
    local r
    r=$(psql_primary -c "SELECT NOT pg_is_in_recovery()" 2>/dev/null) || return 1
    [ "$r" = t ]
}

# ---------------------------------------------------------------- configs

write_etcd() {
    mkdir -p "$ETCD_DIR"
    chown postgres:postgres "$ETCD_DIR"
    chmod 700 "$ETCD_DIR"
}

write_patroni() { # NODE
    local n=$1 port=${PG_PORT[$1]} rport=${REST_PORT[$1]} d="$HA_DIR/$1"
    mkdir -p "$d"
    cat >"$d/patroni.yml" <<EOF
scope: $SCOPE
namespace: /annals/
name: $n

log:
  level: INFO
  dir: $d
  file_size: 10485760
  file_num: 2

restapi:
  listen: 127.0.0.1:$rport
  connect_address: 127.0.0.1:$rport

etcd3:
  hosts: 127.0.0.1:2379

bootstrap:
  dcs:
    # Failover budget: the leader key expires TTL s after the leader's last
    # successful loop; loop_wait + 2 * retry_timeout <= ttl.
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # A crashed primary is failed over at once instead of being restarted in place
    # (Patroni's default waits up to 300 s for crash recovery on the same node).
    primary_start_timeout: 0
    # An acknowledged commit is on the primary and on the synchronous standby;
    # only a synchronous standby can be promoted.
    synchronous_mode: true
    # strict: with no synchronous standby left, commits wait instead of being
    # acknowledged by the primary alone (also right after a failover, until the
    # remaining replica streams from the new primary).
    synchronous_mode_strict: $STRICT
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_connections: 100
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        wal_log_hints: "on"
        hot_standby_feedback: "on"
        # A replica retries a failed WAL stream after this (default 5 s). After a
        # failover the new primary creates the replicas' slots one Patroni loop
        # after its promotion; the first attempt to stream fails on the missing
        # slot, and with the default 5 s the remaining replica — the only
        # synchronous candidate in strict mode — takes ~5 s longer to come back.
        wal_retrieve_retry_interval: 500ms
        shared_buffers: 64MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums

postgresql:
  listen: 127.0.0.1:$port
  connect_address: 127.0.0.1:$port
  data_dir: $d/data
  bin_dir: $PG_BIN
  pgpass: $d/pgpass
  # A former primary whose pg_rewind fails (e.g. its source went away mid-rewind)
  # is re-cloned instead of being left stuck.
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  # Replicas are cloned with pg_basebackup; a fast checkpoint instead of a spread
  # one (which takes ~90 s on an idle new cluster).
  basebackup:
    - checkpoint: fast
  authentication:
    superuser:
      username: postgres
      password: $SUPERPASS
    replication:
      username: replicator
      password: annals-ha-repl
    rewind:
      username: rewinder
      password: annals-ha-rewind
  parameters:
    unix_socket_directories: '$d'
    logging_collector: "off"
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256

watchdog:
  mode: off

tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
EOF
}

write_haproxy() {
    local n servers_p="" servers_r=""
    for n in "${NODES[@]}"; do
        servers_p+="    server $n 127.0.0.1:${PG_PORT[$n]} maxconn 200 check port ${REST_PORT[$n]}"$'\n'
        servers_r+="    server $n 127.0.0.1:${PG_PORT[$n]} maxconn 200 check port ${REST_PORT[$n]}"$'\n'
    done
    cat >"$HA_DIR/haproxy.cfg" <<EOF
global
    maxconn 1000

defaults
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 2s
    timeout server 30m
    timeout check 2s

listen stats
    mode http
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /

# Writes: only the node whose Patroni answers 200 on GET /primary. A node that
# stops being the primary is marked down after 3 failed checks (0.25 s apart once
# one failed; a check may take 2 s, as Patroni's REST answers slowly while a
# promotion's checkpoint fsyncs on a loaded disk — 2 checks of 1 s made HAProxy
# flap), and its sessions are cut, so no client keeps writing to a demoted node.
listen primary
    bind 127.0.0.1:$PRIMARY_PORT
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fastinter 250ms downinter 500ms fall 3 rise 1 on-marked-down shutdown-sessions
${servers_p}
# Reads: any streaming replica (GET /replica), round robin.
listen replicas
    bind 127.0.0.1:$REPLICA_PORT
    balance roundrobin
    option httpchk GET /replica
    http-check expect status 200
    default-server inter 1s fastinter 250ms downinter 500ms fall 3 rise 1 on-marked-down shutdown-sessions
${servers_r}
EOF
}

write_pgbouncer() {
    mkdir -p "$HA_DIR/pgbouncer"
    cat >"$HA_DIR/pgbouncer/pgbouncer.ini" <<EOF
[databases]
$APP_DB = host=127.0.0.1 port=$PRIMARY_PORT dbname=$APP_DB
postgres = host=127.0.0.1 port=$PRIMARY_PORT dbname=postgres
; one server connection for all clients: makes session-state leaks deterministic
; (scripts/ha-pgbouncer-probe.py)
${APP_DB}_one = host=127.0.0.1 port=$PRIMARY_PORT dbname=$APP_DB pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir = $HA_DIR/pgbouncer
auth_type = scram-sha-256
auth_file = $HA_DIR/pgbouncer/userlist.txt
pool_mode = ${ANNALS_HA_BOUNCER_MODE:-transaction}
max_client_conn = 500
default_pool_size = 20
; used in session mode only: without it a reused server connection keeps the last
; client's prepared statements (sqlx_s_1 "already exists" for the next client)
server_reset_query = DISCARD ALL
server_check_delay = 1
server_connect_timeout = 3
server_login_retry = 1
logfile = $HA_DIR/pgbouncer/pgbouncer.log
pidfile = $HA_DIR/pgbouncer.pid
admin_users = postgres
# sqlx sends extra_float_digits as a startup parameter; pgbouncer 1.18 refuses
# unknown startup parameters unless they are listed here.
ignore_startup_parameters = ${ANNALS_HA_BOUNCER_IGNORE:-extra_float_digits}
EOF
    cat >"$HA_DIR/pgbouncer/userlist.txt" <<EOF
"$APP_USER" "$APP_PASS"
"postgres" "$SUPERPASS"
EOF
    chmod 600 "$HA_DIR/pgbouncer/userlist.txt"
}

# ---------------------------------------------------------------- start/stop

start_etcd() {
    [ -n "$(pid_of etcd)" ] && return 0
    as_pg bash -c "cd '$HA_DIR' && exec setsid etcd --name annals-ha \
        --data-dir '$ETCD_DIR' \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster annals-ha=http://127.0.0.1:2380 --initial-cluster-state new \
        --heartbeat-interval 100 --election-timeout 1000 \
        >'$HA_DIR/etcd.log' 2>&1 </dev/null & echo \$! >'$HA_DIR/etcd.pid'"
    wait_until 30 "etcd health" \
        env ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --command-timeout=1s endpoint health >/dev/null 2>&1 \
        || {
            tail -n 20 "$HA_DIR/etcd.log" >&2
            die "etcd did not become healthy"
        }
}

start_patroni() { # NODE
    local n=$1
    [ -n "$(pid_of "patroni-$n")" ] && return 0
    as_pg bash -c "cd '$HA_DIR/$n' && exec setsid patroni '$HA_DIR/$n/patroni.yml' \
        >>'$HA_DIR/$n/patroni.out' 2>&1 </dev/null & echo \$! >'$HA_DIR/patroni-$n.pid'"
}

start_haproxy() {
    [ -n "$(pid_of haproxy)" ] && return 0
    haproxy -c -q -f "$HA_DIR/haproxy.cfg" || die "haproxy config check failed"
    haproxy -D -f "$HA_DIR/haproxy.cfg" -p "$HA_DIR/haproxy.pid" || die "haproxy did not start"
}

start_pgbouncer() {
    [ -n "$(pid_of pgbouncer)" ] && return 0
    as_pg pgbouncer -d -q "$HA_DIR/pgbouncer/pgbouncer.ini" || {
        tail -n 20 "$HA_DIR/pgbouncer/pgbouncer.log" >&2
        die "pgbouncer did not start"
    }
}

cluster_healthy() { # one leader, two replicas streaming, one synchronous
    local l n sync_ok=0
    l=$(leader) || return 1
    for n in "${NODES[@]}"; do
        [ "$n" = "$l" ] && continue
        [ "$(rest "$n" /replica)" = 200 ] || return 1
        [ "$(rest "$n" /sync)" = 200 ] && sync_ok=1
    done
    [ "$sync_ok" = 1 ] || return 1
    # the replicas actually stream from the leader
    local streaming
    streaming=$(PGPASSWORD=$SUPERPASS PGCONNECT_TIMEOUT=2 psql -X -q -t -A -h 127.0.0.1 \
        -p "${PG_PORT[$l]}" -U postgres -d postgres \
        -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null) || return 1
    [ "$streaming" = 2 ] || return 1
    writable
}

cmd_up() {
    [ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and Patroni run as the postgres user)"
    install_missing
    mkdir -p "$HA_DIR"
    chown postgres:postgres "$HA_DIR"
    chmod 700 "$HA_DIR"
    write_etcd
    local n
    for n in "${NODES[@]}"; do write_patroni "$n"; done
    write_haproxy
    write_pgbouncer
    chown -R postgres:postgres "$HA_DIR"
    for n in "${NODES[@]}"; do chmod 700 "$HA_DIR/$n"; done
    say "starting etcd"
    start_etcd
    say "starting Patroni node1 (bootstraps the cluster)"
    start_patroni node1
    wait_until 90 "node1 to lead" bash -c "[ \"\$(curl -s -o /dev/null -m 1 -w '%{http_code}' http://127.0.0.1:8008/primary)\" = 200 ]" || {
        tail -n 30 "$HA_DIR/node1/patroni.out" >&2
        die "node1 did not become the primary"
    }
    say "starting Patroni node2, node3 (replicas, cloned with pg_basebackup)"
    start_patroni node2
    start_patroni node3
    say "starting HAProxy and pgbouncer"
    start_haproxy
    wait_until 30 "HAProxy to route to the primary" writable || die "HAProxy does not route to the primary"
    psql_primary <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') THEN
    CREATE ROLE $APP_USER LOGIN PASSWORD '$APP_PASS';
  END IF;
END \$\$;
SQL
    if [ "$(psql_primary -c "SELECT count(*) FROM pg_database WHERE datname = '$APP_DB'")" = 0 ]; then
        psql_primary -c "CREATE DATABASE $APP_DB OWNER $APP_USER"
    fi
    start_pgbouncer
    wait_until 180 "two streaming replicas, one synchronous" cluster_healthy || {
        cmd_status >&2 || true
        die "the cluster did not become healthy"
    }
    say "up: leader $(leader)"
    cmd_urls
}

stop_pid() { # PID [GRACE_SECONDS]
    local pid=$1 grace=${2:-10} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Pids of processes whose command line names $HA_DIR (ours, nobody else's).
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ -r "$p/cmdline" ] || continue
        if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -e "$HA_DIR" -e "$ETCD_DIR"; then
            echo "${p#/proc/}"
        fi
    done
}

# Postmasters of our nodes, also when postmaster.pid was removed: a process whose
# cwd or data directory is under $HA_DIR.
our_postgres_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = postgres ] || continue
        case "$(readlink "$p/cwd" 2>/dev/null)" in
            "$HA_DIR"/*) echo "${p#/proc/}" ;;
        esac
    done
}

cmd_down() {
    local n pid
    [ -d "$HA_DIR" ] || {
        rm -rf "$ETCD_DIR"
        say "nothing to stop ($HA_DIR does not exist)"
        return 0
    }
    for pid in $(pid_of pgbouncer) $(pid_of haproxy); do stop_pid "$pid" 5; done
    # Patroni first (SIGTERM makes it stop its PostgreSQL), then any postmaster left.
    for n in "${NODES[@]}"; do
        pid=$(pid_of "patroni-$n")
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    for n in "${NODES[@]}"; do
        pid=$(pid_of "patroni-$n")
        [ -n "$pid" ] && stop_pid "$pid" 20
    done
    for n in "${NODES[@]}"; do
        pid=$(postmaster_pid "$n")
        if [ -n "$pid" ]; then
            kill -QUIT "$pid" 2>/dev/null || true # immediate shutdown
            stop_pid "$pid" 5
        fi
    done
    pid=$(pid_of etcd)
    [ -n "$pid" ] && stop_pid "$pid" 10
    # Anything of ours still alive (a child that outlived its parent).
    local left
    left=$( (our_pids; our_postgres_pids) | sort -u | grep -vx "$$" || true)
    if [ -n "$left" ]; then
        say "killing leftovers: $(echo $left)"
        kill -KILL $left 2>/dev/null || true
        sleep 0.5
    fi
    left=$( (our_pids; our_postgres_pids) | sort -u | grep -vx "$$" || true)
    [ -z "$left" ] || die "processes still running after down: $(echo $left)"
    if [ "${ANNALS_HA_KEEP:-0}" != 1 ]; then
        rm -rf "$HA_DIR" "$ETCD_DIR"
    fi
    say "down: nothing left running"
}

cmd_status() {
    local n
    if [ -f "$HA_DIR/node1/patroni.yml" ]; then
        patronictl -c "$HA_DIR/node1/patroni.yml" list 2>/dev/null || say "patronictl list failed"
    fi
    for n in "${NODES[@]}"; do
        printf '%s: postgres %s, /primary %s, /replica %s, /sync %s\n' "$n" \
            "$(pg_isready -q -h 127.0.0.1 -p "${PG_PORT[$n]}" && echo up || echo down)" \
            "$(rest "$n" /primary)" "$(rest "$n" /replica)" "$(rest "$n" /sync)"
    done
    printf 'haproxy primary %s: %s\n' "$PRIMARY_PORT" "$(writable && echo writable || echo down)"
    printf 'pgbouncer %s: %s\n' "$BOUNCER_PORT" "$(pg_isready -q -h 127.0.0.1 -p "$BOUNCER_PORT" && echo up || echo down)"
}

cmd_urls() {
    cat <<EOF
ANNALS_HA_URL=postgres://$APP_USER:$APP_PASS@127.0.0.1:$PRIMARY_PORT/$APP_DB
ANNALS_HA_REPLICA_URL=postgres://$APP_USER:$APP_PASS@127.0.0.1:$REPLICA_PORT/$APP_DB
ANNALS_HA_BOUNCER_URL=postgres://$APP_USER:$APP_PASS@127.0.0.1:$BOUNCER_PORT/$APP_DB
ANNALS_HA_SUPER_URL=postgres://postgres:$SUPERPASS@127.0.0.1:$PRIMARY_PORT/postgres
EOF
}

cmd_kill_postgres() {
    local l pid
    l=$(leader) || die "no leader"
    pid=$(postmaster_pid "$l")
    [ -n "$pid" ] || die "no postmaster running for $l"
    kill -KILL "$pid"
    echo "$l $(date +%s.%N)"
}

cmd_kill_patroni() {
    local l pid
    l=$(leader) || die "no leader"
    pid=$(pid_of "patroni-$l")
    [ -n "$pid" ] || die "no Patroni running for $l"
    kill -KILL "$pid"
    echo "$l $(date +%s.%N)"
}

cmd_wait_failover() {
    local old=${1:?usage: wait-failover OLD [TIMEOUT]} timeout=${2:-60} l
    new_leader() {
        l=$(leader) || return 1
        [ "$l" != "$old" ] && writable
    }
    wait_until "$timeout" "a new leader other than $old" new_leader || return 1
    echo "$l"
}

cmd_heal() {
    local timeout=${1:-180} n l
    for n in "${NODES[@]}"; do
        if [ -z "$(pid_of "patroni-$n")" ]; then
            say "restarting Patroni $n"
            start_patroni "$n"
        fi
    done
    # Normally a rejoin (pg_rewind, restart as a replica) takes a few seconds. A
    # member that is still not a streaming replica after half the budget is
    # re-cloned from the leader (patronictl reinit).
    local half=$((timeout / 2))
    wait_until "$half" "two streaming replicas, one synchronous" cluster_healthy && return 0
    l=$(leader) || true
    for n in "${NODES[@]}"; do
        [ "$n" = "$l" ] && continue
        if [ "$(rest "$n" /replica)" != 200 ]; then
            say "$n did not rejoin within ${half}s: reinit from the leader"
            as_pg patronictl -c "$HA_DIR/$n/patroni.yml" reinit --force --wait "$SCOPE" "$n" >&2 || true
        fi
    done
    wait_until "$((timeout - half))" "two streaming replicas, one synchronous" cluster_healthy || {
        cmd_status >&2 || true
        return 1
    }
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    primary) leader || die "no leader" ;;
    kill-postgres) cmd_kill_postgres ;;
    kill-patroni) cmd_kill_patroni ;;
    wait-failover) shift; cmd_wait_failover "$@" ;;
    heal) shift; cmd_heal "$@" ;;
    urls) cmd_urls ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
