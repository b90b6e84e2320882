#!/usr/bin/python3
"""Gap-safety and lag of `read_all`-style tailing on hot standbys (cluster of
scripts/ha-cluster.sh up; Debian's python3 + psycopg2).

16 writers append on the primary (HAProxy 5440) for --seconds: batches of 1..5
events in one statement, positions from the transaction id exactly as annals'
`position_base()` computes them, half of the writers sharing streams (version
races). One extra writer holds its transaction id open for 0.3-1.5 s before it
inserts and commits: the late commit below positions other writers have
already committed, which a naive `position > last` reader misses.

Readers tail the log with annals' read_all rule (only rows below
`pg_snapshot_xmin(pg_current_snapshot())`): one on the primary and one on each
standby (their own ports, not through HAProxy); plus one naive reader
(`position > last`, no safety rule) on a standby for comparison. Afterwards
each safe reader's sequence must equal the whole log in position order; the
probe prints the lag from acknowledgement to being read (p50/p95/max) per reader.
Exit code 1 if a safe reader missed, duplicated or reordered anything.
"""

import argparse
import json
import random
import subprocess
import threading
import time
import uuid

import psycopg2
import psycopg2.errors

import os

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = "ha_replica_probe"
PORTS = {"node1": 5441, "node2": 5442, "node3": 5443}


def connect(port):
    c = psycopg2.connect(host="127.0.0.1", port=port, dbname="annals", user="annals",
                         password="annals", connect_timeout=3)
    c.autocommit = True
    return c


APPEND = f"""
WITH cur AS (SELECT coalesce(max(version), 0) AS v FROM {SCHEMA}.events WHERE stream_id = %s)
INSERT INTO {SCHEMA}.events (position, event_id, stream_id, version)
SELECT pg_current_xact_id()::text::bigint * 1048576 + b.n, b.id, %s, cur.v + b.n
FROM cur, unnest(%s::uuid[]) WITH ORDINALITY AS b(id, n)
RETURNING position
"""
SAFE = f"""
SELECT position FROM {SCHEMA}.events
WHERE position > %s
  AND position < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint * 1048576)
ORDER BY position LIMIT 2000
"""
NAIVE = f"SELECT position FROM {SCHEMA}.events WHERE position > %s ORDER BY position LIMIT 2000"


def writer(i, stop, acks, lock):
    c = connect(5440)
    stream = f"s{i}" if i % 2 == 0 else f"s{i % 3}"
    while not stop.is_set():
        ids = [str(uuid.uuid4()) for _ in range(random.randint(1, 5))]
        try:
            with c.cursor() as cur:
                cur.execute(APPEND, (stream, stream, ids))
                rows = cur.fetchall()
            t = time.time()
            with lock:
                for (p,) in rows:
                    acks[p] = t
        except psycopg2.errors.UniqueViolation:
            continue  # lost a version race: nothing written, try again


def holder(stop, acks, lock, held):
    c = connect(5440)
    c.autocommit = False
    while not stop.is_set():
        with c.cursor() as cur:
            cur.execute("SELECT pg_current_xact_id()")
            time.sleep(random.uniform(0.3, 1.5))
            cur.execute(f"INSERT INTO {SCHEMA}.events (position, event_id, stream_id, version) "
                        "SELECT pg_current_xact_id()::text::bigint * 1048576 + 1, %s, %s, 1 "
                        "RETURNING position", (str(uuid.uuid4()), f"late-{uuid.uuid4()}"))
            (p,) = cur.fetchone()
        c.commit()
        t = time.time()
        with lock:
            acks[p] = t
            held[0] += 1
        time.sleep(0.1)


def reader(port, sql, stop, out):
    c = connect(port)
    last = 0
    while True:
        with c.cursor() as cur:
            cur.execute(sql, (last,))
            rows = cur.fetchall()
        t = time.time()
        for (p,) in rows:
            out.append((p, t))
            last = p
        if not rows:
            if stop.is_set():
                return
            time.sleep(0.01)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--no-holder", action="store_true",
                    help="no late-committing writer: measures the plain replica lag")
    ap.add_argument("--json")
    args = ap.parse_args()
    leader = subprocess.run(["bash", os.path.join(HERE, "ha-cluster.sh"), "primary"],
                            capture_output=True, text=True, check=True).stdout.strip()
    standbys = [n for n in PORTS if n != leader]
    c = connect(5440)
    with c.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; "
                    f"CREATE TABLE {SCHEMA}.events (position bigint PRIMARY KEY, "
                    "event_id uuid NOT NULL UNIQUE, stream_id text NOT NULL, "
                    "version bigint NOT NULL, UNIQUE (stream_id, version))")
    # wait until both standbys have the table
    for n in standbys:
        d = connect(PORTS[n])
        for _ in range(100):
            try:
                with d.cursor() as cur:
                    cur.execute(f"SELECT 1 FROM {SCHEMA}.events LIMIT 1")
                break
            except psycopg2.errors.UndefinedTable:
                time.sleep(0.1)
        d.close()

    stop_w, stop_r = threading.Event(), threading.Event()
    acks, lock, held = {}, threading.Lock(), [0]
    readers = {f"primary({leader})": (PORTS[leader], SAFE, [])}
    for n in standbys:
        readers[f"standby({n})"] = (PORTS[n], SAFE, [])
    readers[f"naive-standby({standbys[0]})"] = (PORTS[standbys[0]], NAIVE, [])
    rthreads = [threading.Thread(target=reader, args=(p, s, stop_r, out))
                for p, s, out in readers.values()]
    wthreads = [threading.Thread(target=writer, args=(i, stop_w, acks, lock))
                for i in range(args.writers)]
    if not args.no_holder:
        wthreads.append(threading.Thread(target=holder, args=(stop_w, acks, lock, held)))
    for t in rthreads + wthreads:
        t.start()
    time.sleep(args.seconds)
    stop_w.set()
    for t in wthreads:
        t.join()
    with c.cursor() as cur:
        cur.execute(f"SELECT position FROM {SCHEMA}.events ORDER BY position")
        log = [r[0] for r in cur.fetchall()]
    # let the readers reach the end of the log, then stop them
    end = log[-1]
    deadline = time.time() + 60
    while time.time() < deadline and any(
            (not out or out[-1][0] < end) for _, _, out in readers.values()):
        time.sleep(0.05)
    stop_r.set()
    for t in rthreads:
        t.join()

    ok = True
    res = {"seconds": args.seconds, "writers": args.writers, "events": len(log),
           "late_commits": held[0], "acked": len(acks),
           "events_per_s": round(len(log) / args.seconds, 1), "readers": {}}
    if set(acks) != set(log):
        ok = False
        res["ack_mismatch"] = len(set(acks) ^ set(log))
    for name, (_, sql, out) in readers.items():
        seen = [p for p, _ in out]
        lags = [t - acks[p] for p, t in out if p in acks]
        r = {"seen": len(seen), "exact": seen == log,
             "missed": len(set(log) - set(seen)),
             "lag_ms_p50": round(1000 * pct(lags, 0.5), 1) if lags else None,
             "lag_ms_p95": round(1000 * pct(lags, 0.95), 1) if lags else None,
             "lag_ms_max": round(1000 * max(lags), 1) if lags else None}
        res["readers"][name] = r
        if sql is SAFE and not r["exact"]:
            ok = False
    res["ok"] = ok
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    with c.cursor() as cur:
        cur.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
