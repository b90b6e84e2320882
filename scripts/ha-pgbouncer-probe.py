#!/usr/bin/python3
"""What breaks through pgbouncer 1.18 in transaction pooling mode, for each thing
annals' PostgreSQL backend (or a user of it) relies on. Needs the cluster of
scripts/ha-cluster.sh up (pgbouncer on 127.0.0.1:6432 -> HAProxy 5440 -> primary).

Each probe prints `PROBE <name>: <BREAKS|WORKS> - <what was observed>`. Exit code 0:
the probes ran (their findings are the output, not pass/fail).
"""

import subprocess
import threading
import time

import psycopg2

BOUNCER = dict(host="127.0.0.1", port=6432, dbname="annals", user="annals", password="annals")
ADMIN = dict(host="127.0.0.1", port=6432, dbname="pgbouncer", user="postgres",
             password="annals-ha-super")
DIRECT = dict(host="127.0.0.1", port=5440, dbname="annals", user="annals", password="annals")


def conn(params, **kw):
    c = psycopg2.connect(connect_timeout=3, **params, **kw)
    c.autocommit = True
    return c


def one(c, sql, *args):
    with c.cursor() as cur:
        cur.execute(sql, args or None)
        return cur.fetchone()[0] if cur.description else None


def report(name, breaks, what):
    print(f"PROBE {name}: {'BREAKS' if breaks else 'WORKS'} - {what}", flush=True)


def admin(sql):
    a = conn(ADMIN)
    with a.cursor() as cur:
        cur.execute(sql)
    a.close()


def busy(stop):
    """Other clients keep the pool's server connections moving between clients."""
    cs = [conn(BOUNCER) for _ in range(4)]
    while not stop.is_set():
        for c in cs:
            one(c, "SELECT pg_sleep(0.005)")
    for c in cs:
        c.close()


def main():
    # 1. The `options` startup parameter (annals sends statement_timeout this way).
    try:
        c = conn(BOUNCER, options="-c statement_timeout=1234")
        report("startup-options", False, f"statement_timeout={one(c, 'SHOW statement_timeout')}")
        c.close()
    except psycopg2.Error as e:
        report("startup-options", True, f"connect refused: {str(e).strip()}")
    admin("SET ignore_startup_parameters = 'extra_float_digits,options'")
    try:
        c = conn(BOUNCER, options="-c statement_timeout=1234")
        st = one(c, "SHOW statement_timeout")
        report("startup-options-ignored", st != "1234ms",
               f"with ignore_startup_parameters=options the connection works but "
               f"statement_timeout is {st!r} (the client asked for 1234ms)")
        c.close()
    finally:
        admin("SET ignore_startup_parameters = 'extra_float_digits'")

    # 2. Protocol-level named prepared statements (sqlx prepares and caches every
    #    query as sqlx_s_N per connection): pgbench -M prepared.
    env = {"PGPASSWORD": "annals"}
    base = ["-h", "127.0.0.1", "-U", "annals", "annals"]
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-p", "5440", *base], env=env,
                   capture_output=True, check=True)
    for mode in ("prepared", "extended", "simple"):
        r = subprocess.run(["pgbench", "-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-T", "3",
                            "-p", "6432", *base], env=env, capture_output=True, text=True)
        err = [l for l in (r.stderr + r.stdout).splitlines() if "error" in l.lower()
               or "prepared statement" in l]
        tps = [l for l in r.stdout.splitlines() if l.startswith("tps")]
        report(f"pgbench-M-{mode}", r.returncode != 0 or bool(err),
               (err[0].strip() if err else (tps[0] if tps else f"rc={r.returncode}")))

    # 3. SQL-level PREPARE in one transaction, EXECUTE in the next.
    stop = threading.Event()
    t = threading.Thread(target=busy, args=(stop,))
    t.start()
    time.sleep(0.2)
    c = conn(BOUNCER)
    try:
        one(c, "PREPARE annals_probe AS SELECT 1")
        fails = 0
        for _ in range(20):
            try:
                one(c, "EXECUTE annals_probe")
            except psycopg2.Error:
                fails += 1
        report("sql-prepare", fails > 0, f"{fails}/20 EXECUTEs of a statement PREPAREd "
               "earlier by the same client failed (another server connection)")
    except psycopg2.Error as e:
        report("sql-prepare", True, str(e).strip())

    # 4. Session-level advisory lock (annals takes one around its migrations).
    #    Two clients of a pool with one server connection: the lock is the server
    #    session's, so the second client "gets" the lock the first one holds.
    ONE = dict(BOUNCER, dbname="annals_one")
    a, b = conn(ONE), conn(ONE)
    got_a = one(a, "SELECT pg_try_advisory_lock(4242)")
    got_b = one(b, "SELECT pg_try_advisory_lock(4242)")
    pid_a, pid_b = one(a, "SELECT pg_backend_pid()"), one(b, "SELECT pg_backend_pid()")
    report("session-advisory-lock", got_a and got_b,
           f"client A took the lock: {got_a}; client B, while A holds it, took it too: {got_b} "
           f"(both on server backend {pid_a}={pid_b}); directly on PostgreSQL B would get false")
    one(a, "SELECT pg_advisory_unlock_all()")
    a.close()
    b.close()
    pids = set()
    for _ in range(50):
        pids.add(one(c, "SELECT pg_backend_pid()"))
    report("same-server-connection", len(pids) > 1,
           f"50 statements of one client ran on {len(pids)} different server backends")
    d = conn(DIRECT)

    # 5. Session SET (annals' migration sets search_path on its connection).
    one(c, "SET search_path TO annals_probe_leak")
    paths = set()
    for _ in range(20):
        paths.add(one(c, "SHOW search_path"))
    other = conn(BOUNCER)
    leaked = sum(1 for _ in range(20) if one(other, "SHOW search_path") == "annals_probe_leak")
    report("session-set", len(paths) > 1 or leaked > 0,
           f"the client saw search_path values {sorted(paths)}; another client got the "
           f"SET value in {leaked}/20 statements (no server_reset_query in transaction mode)")
    other.close()

    # 6. LISTEN/NOTIFY.
    one(c, "LISTEN annals_probe")
    one(d, "NOTIFY annals_probe, 'x'")
    time.sleep(0.3)
    one(c, "SELECT 1")
    c.poll()
    report("listen", not c.notifies, f"notifications received by the listener: {len(c.notifies)}")
    stop.set()
    t.join()
    c.close()
    d.close()
    # Clean the leaked settings off the pool.
    admin("RECONNECT annals")


if __name__ == "__main__":
    main()
