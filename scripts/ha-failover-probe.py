#!/usr/bin/python3
"""Failover probe for the HA cluster of scripts/ha-cluster.sh (Debian's python3 +
psycopg2, which Patroni already needs).

Per round: 8 writers append continuously through HAProxy (127.0.0.1:5440) into a
table shaped like annals' `events` (xid-derived positions, unique event id, unique
(stream, version), version = current + 1 as with ExpectedVersion::Any); every
append that fails with a connection error is retried with the SAME event id until
it is acknowledged (a unique violation on the event id on a retry means the
earlier attempt had committed: acknowledged). Two readers tail the log the way
annals' read_all does (only rows below the snapshot's safe position), one through
the primary port and one through the replica port (5439, hot standbys).
After a warm-up the primary's postmaster (scenario `postgres`) or its Patroni
(scenario `patroni`) is SIGKILLed; the writers go on until they have run for
`--after` seconds past the failover, then the round is verified on the new
primary:

* every acknowledged append is present, nothing else is;
* no event id twice; per stream, versions are 1..n without a gap;
* every append acknowledged after the kill has a higher position than every
  append acknowledged before it;
* each reader saw every event exactly once, in position order.

Prints one line per round and a JSON summary (--json FILE). Exits non-zero if any
check fails. Usage:

    scripts/ha-failover-probe.py --scenario postgres --rounds 10
    scripts/ha-failover-probe.py --scenario patroni --rounds 3
"""

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid

import psycopg2
import psycopg2.errors
import psycopg2.extensions

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.join(HERE, "ha-cluster.sh")
WRITERS = 8
USER, PASSWORD, DB = "annals", "annals", "annals"
PRIMARY_PORT, REPLICA_PORT = 5440, 5439
SCHEMA = "ha_probe"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
DROP TABLE IF EXISTS {SCHEMA}.events;
CREATE TABLE {SCHEMA}.events (
    position   bigint      NOT NULL PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE,
    stream_id  text        NOT NULL,
    version    bigint      NOT NULL,
    payload    bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);
"""

# annals' append_one, with the position clock at offset 0.
APPEND = f"""
INSERT INTO {SCHEMA}.events (position, event_id, stream_id, version, payload)
SELECT pg_current_xact_id()::text::bigint * 1048576 + 1, %s, %s, cur.v + 1, %s
FROM (SELECT coalesce(max(version), 0) AS v FROM {SCHEMA}.events WHERE stream_id = %s) cur
RETURNING version, position
"""
LOOKUP = f"SELECT version, position FROM {SCHEMA}.events WHERE event_id = %s"
# annals' read_all_forward: rows below the safe position only.
READ = f"""
SELECT position, event_id::text FROM {SCHEMA}.events
WHERE position > %s
  AND position < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint * 1048576)
ORDER BY position LIMIT 1000
"""


def connect(port, timeout=1):
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=port,
        dbname=DB,
        user=USER,
        password=PASSWORD,
        connect_timeout=timeout,
        keepalives=1,
        keepalives_idle=2,
        keepalives_interval=1,
        keepalives_count=2,
        # A server-side bound; see docs/operations/high-availability.md for why a
        # cancelled synchronous-commit wait must not be taken as "replicated".
        options="-c statement_timeout=10000",
    )
    conn.autocommit = True
    return conn


CONN_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class Writer(threading.Thread):
    def __init__(self, idx, stop, round_id):
        super().__init__(daemon=True)
        self.stream = f"r{round_id}-w{idx}"
        self.stop = stop
        self.acks = []  # (event_id, version, position, t_first_try, t_ack, retries)
        self.errors = []  # times of connection errors
        self.notices = []
        self.conn = None
        self.fatal = None

    def ensure(self):
        while self.conn is None:
            try:
                self.conn = connect(PRIMARY_PORT)
            except CONN_ERRORS:
                self.errors.append(time.time())
                time.sleep(0.05)

    def append(self, eid, payload):
        t0 = time.time()
        retries = 0
        while True:
            self.ensure()
            try:
                with self.conn.cursor() as cur:
                    cur.execute(APPEND, (eid, self.stream, payload, self.stream))
                    version, position = cur.fetchone()
                if self.conn.notices:
                    self.notices.extend(self.conn.notices)
                    del self.conn.notices[:]
                return version, position, t0, retries
            except psycopg2.errors.UniqueViolation as e:
                if e.diag.constraint_name == "events_event_id_key" and retries > 0:
                    # The attempt whose outcome was unknown had committed.
                    with self.conn.cursor() as cur:
                        cur.execute(LOOKUP, (eid,))
                        version, position = cur.fetchone()
                    return version, position, t0, retries
                if e.diag.constraint_name == "events_stream_version_key":
                    retries += 1  # cannot happen with one writer per stream
                    continue
                raise
            except CONN_ERRORS:
                self.errors.append(time.time())
                retries += 1
                try:
                    self.conn.close()
                except Exception:
                    pass
                self.conn = None
                time.sleep(0.02)
            except psycopg2.errors.ReadOnlySqlTransaction:
                # routed to a node that is no longer the primary
                self.errors.append(time.time())
                retries += 1
                self.conn.close()
                self.conn = None
                time.sleep(0.05)

    def run(self):
        try:
            while not self.stop.is_set():
                eid = str(uuid.uuid4())
                version, position, t0, retries = self.append(eid, os.urandom(32))
                self.acks.append((eid, version, position, t0, time.time(), retries))
        except Exception as e:  # noqa: BLE001
            self.fatal = repr(e)
        finally:
            if self.conn is not None:
                self.conn.close()


class Reader(threading.Thread):
    def __init__(self, name, port, stop):
        super().__init__(daemon=True)
        self.name_ = name
        self.port = port
        self.stop = stop
        self.seen = []
        self.last = 0
        self.errors = 0
        self.fatal = None

    def run(self):
        conn = None
        try:
            while not self.stop.is_set():
                try:
                    if conn is None:
                        conn = connect(self.port)
                    with conn.cursor() as cur:
                        cur.execute(READ, (self.last,))
                        rows = cur.fetchall()
                    for pos, eid in rows:
                        self.seen.append((pos, eid))
                        self.last = pos
                    if len(rows) < 1000:
                        time.sleep(0.02)
                except CONN_ERRORS:
                    self.errors += 1
                    conn = None
                    time.sleep(0.05)
                except psycopg2.errors.UndefinedTable:
                    time.sleep(0.1)  # a new standby has not replayed the table yet
                    conn = None
        except Exception as e:  # noqa: BLE001
            self.fatal = repr(e)


def cluster(*args):
    out = subprocess.run(
        ["bash", CLUSTER, *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def setup():
    deadline = time.time() + 30
    while True:
        try:
            conn = connect(PRIMARY_PORT, timeout=2)
            break
        except CONN_ERRORS:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    with conn.cursor() as cur:
        cur.execute(DDL)
    conn.close()


def run_round(n, scenario, warmup, after, replica_reader):
    setup()
    stop = threading.Event()
    writers = [Writer(i, stop, n) for i in range(WRITERS)]
    stop_readers = threading.Event()
    readers = [Reader("primary", PRIMARY_PORT, stop_readers)]
    readers.append(
        Reader("replica", REPLICA_PORT, stop_readers)
        if replica_reader
        else Reader("primary2", PRIMARY_PORT, stop_readers)
    )
    for t in writers + readers:
        t.start()
    time.sleep(warmup + random.uniform(0, 1.0))  # a random moment
    node, t_kill = cluster(f"kill-{scenario}").split()
    t_kill = float(t_kill)
    new = cluster("wait-failover", node, "90")
    t_new_leader = time.time()
    # first acknowledged append that was started after the kill
    resumed = None
    deadline = time.time() + 60
    while resumed is None and time.time() < deadline:
        firsts = [a[4] for w in writers for a in list(w.acks) if a[4] > t_kill and a[5] > 0]
        if firsts:
            resumed = min(firsts)
        else:
            time.sleep(0.05)
    time.sleep(after)
    stop.set()
    for w in writers:
        w.join(30)
    # let the readers catch up with the end of the log
    conn = connect(PRIMARY_PORT, timeout=2)
    with conn.cursor() as cur:
        cur.execute(f"SELECT position, event_id::text, stream_id, version FROM {SCHEMA}.events ORDER BY position")
        rows = cur.fetchall()
    conn.close()
    catchup_start = time.time()
    end = rows[-1][0] if rows else 0
    while any(r.last < end for r in readers) and time.time() - catchup_start < 60:
        time.sleep(0.05)
    catchup = time.time() - catchup_start
    stuck = {}
    if any(r.last < end for r in readers):
        for port in (PRIMARY_PORT, REPLICA_PORT):
            try:
                c = connect(port, timeout=2)
                with c.cursor() as cur:
                    cur.execute("SELECT pg_current_snapshot()::text, pg_is_in_recovery(), "
                                "inet_server_port()")
                    stuck[port] = cur.fetchone()
                c.close()
            except Exception as e:  # noqa: BLE001
                stuck[port] = repr(e)
        stuck["end_xid"] = end // 1048576
        stuck["readers_last_xid"] = [r.last // 1048576 for r in readers]
    stop_readers.set()
    for r in readers:
        r.join(10)

    problems = []
    for t in writers + readers:
        if t.fatal:
            problems.append(f"thread died: {t.fatal}")
    acks = [a for w in writers for a in w.acks]
    acked_ids = {a[0] for a in acks}
    stored_ids = [r[1] for r in rows]
    stored = set(stored_ids)
    if len(stored) != len(stored_ids):
        problems.append("duplicate event ids")
    missing = acked_ids - stored
    if missing:
        problems.append(f"{len(missing)} acknowledged appends missing, e.g. {sorted(missing)[:3]}")
    extra = stored - acked_ids
    if extra:
        problems.append(f"{len(extra)} stored events never acknowledged")
    by_stream = {}
    for pos, eid, stream, version in rows:
        by_stream.setdefault(stream, []).append(version)
    for stream, versions in by_stream.items():
        if sorted(versions) != list(range(1, len(versions) + 1)):
            problems.append(f"stream {stream}: versions not contiguous")
    pos_of = {r[1]: r[0] for r in rows}
    before = [pos_of[a[0]] for a in acks if a[4] < t_kill and a[0] in pos_of]
    after_kill = [pos_of[a[0]] for a in acks if a[3] > t_kill and a[0] in pos_of]
    if before and after_kill and min(after_kill) <= max(before):
        problems.append("a position after the failover is not above every earlier one")
    for r in readers:
        if r.seen != [(p, e) for p, e, _, _ in rows]:
            dup = len(r.seen) - len({e for _, e in r.seen})
            order = all(r.seen[i][0] < r.seen[i + 1][0] for i in range(len(r.seen) - 1))
            problems.append(
                f"reader {r.name_}: saw {len(r.seen)} of {len(rows)} (dups {dup}, ordered {order})"
            )
    retried = sum(1 for a in acks if a[5] > 0)
    unknown_committed = 0  # retries answered by "already stored"
    # throughput
    def rate(t0, t1):
        if t1 <= t0:
            return 0.0
        return sum(1 for a in acks if t0 <= a[4] < t1) / (t1 - t0)

    first_write_s = (resumed - t_kill) if resumed else None
    res = {
        "round": n,
        "scenario": scenario,
        "killed": node,
        "killed_at_utc": time.strftime("%H:%M:%S", time.gmtime(t_kill)) + f"{t_kill % 1:.3f}"[1:],
        "new_primary": new,
        "first_write_after_kill_s": round(first_write_s, 3) if first_write_s else None,
        "new_leader_writable_s": round(t_new_leader - t_kill, 3),
        "all_writers_resumed_s": None,
        "acked": len(acks),
        "stored": len(rows),
        "retried_appends": retried,
        "tput_before": round(rate(t_kill - warmup, t_kill), 1),
        "tput_during": round(rate(t_kill, resumed), 1) if resumed else None,
        "tput_after": round(rate(resumed + 0.5, resumed + after), 1) if resumed else None,
        "reader_catchup_s": round(catchup, 3),
        "reader_errors": [r.errors for r in readers],
        "notices": sorted({x.strip() for w in writers for x in w.notices})[:3],
        "problems": problems,
    }
    if stuck:
        res["stuck"] = stuck
    firsts = []
    for w in writers:
        f = [a[4] for a in w.acks if a[4] > t_kill and a[5] > 0]
        if f:
            firsts.append(min(f))
    if len(firsts) == WRITERS:
        res["all_writers_resumed_s"] = round(max(firsts) - t_kill, 3)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", choices=["postgres", "patroni"], default="postgres")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--after", type=float, default=3.0)
    ap.add_argument("--no-replica-reader", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    results = []
    ok = True
    for n in range(1, args.rounds + 1):
        t_heal = time.time()
        cluster("heal", "240")
        heal_s = time.time() - t_heal
        res = run_round(n, args.scenario, args.warmup, args.after, not args.no_replica_reader)
        res["heal_before_s"] = round(heal_s, 1)
        results.append(res)
        print(json.dumps(res), flush=True)
        if res["problems"] or res["first_write_after_kill_s"] is None:
            ok = False
    cluster("heal", "240")
    times = [r["first_write_after_kill_s"] for r in results if r["first_write_after_kill_s"]]
    summary = {
        "scenario": args.scenario,
        "rounds": len(results),
        "failed_rounds": sum(1 for r in results if r["problems"]),
        "first_write_s_min": min(times) if times else None,
        "first_write_s_max": max(times) if times else None,
        "first_write_s_mean": round(sum(times) / len(times), 3) if times else None,
        "acked_total": sum(r["acked"] for r in results),
    }
    print(json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": results, "summary": summary}, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
