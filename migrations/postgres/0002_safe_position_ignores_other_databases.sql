-- annals PostgreSQL schema, version 2: the safe position ignores transactions of
-- other databases, and readers can see the read horizon.
--
-- Version 1 took the safe position from the snapshot's xmin, which is
-- cluster-wide: a transaction holding an xid in ANOTHER database of the cluster
-- (which can never write to this database's tables) held every reader back. Now
-- the bound is the oldest in-progress transaction id of the snapshot that cannot
-- be placed in another database. See docs/backends/postgres.md, "Which running
-- transactions hold readers back".

CREATE OR REPLACE FUNCTION set_position_clock(p_offset bigint) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    -- The first position of this transaction's batch, minus one (unchanged).
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION position_base() RETURNS bigint '
        'LANGUAGE sql VOLATILE AS %L',
        format('SELECT (pg_current_xact_id()::text::bigint + %s) * 1048576', p_offset));
    -- Positions below this are final: no transaction that could still commit one
    -- is running. Evaluate it once per statement (`(SELECT safe_position())`),
    -- in an autocommit statement (see below).
    --
    -- The bound is the first position of the oldest transaction id in the
    -- statement's snapshot (`pg_snapshot_xip`: the top-level xids running when it
    -- was taken; positions are always made from the top-level xid) that is NOT
    -- positively placed in another database, i.e. is neither
    --   * the `backend_xid` of a backend connected to another database
    --     (pg_stat_get_activity, visible to every role), nor
    --   * a prepared transaction of another database (pg_prepared_xact()).
    -- Anything else (a backend not listed, a walsender, a prepared transaction of
    -- this database, ...) still holds readers back. If every running xid is placed
    -- elsewhere the bound is the snapshot's xmax (every transaction that could
    -- have committed a visible row has). An empty xip list yields xmin, as before
    -- (it equals xmax on a primary; on a hot standby the running xids are not in
    -- xip, and xmin is the conservative bound).
    --
    -- Race: the activity list is read once per transaction, after the snapshot
    -- in an autocommit statement; an xid in the snapshot was running before the
    -- list was read, so the backend the list shows for it is the one running it.
    --
    -- Cost: `safe_position()` is a one-line SQL function the planner inlines;
    -- when nothing is running (xmin = xmax) it is the old expression. Otherwise
    -- it calls `safe_position_slow()`, PL/pgSQL so that its plan is cached per
    -- session (a non-inlined SQL function is planned on every call). The call is
    -- schema-qualified: the inlined body is resolved with the reader's
    -- search_path.
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION safe_position_slow() RETURNS bigint '
        'LANGUAGE plpgsql STABLE AS %L',
        format($body$
DECLARE
    snap pg_snapshot := pg_current_snapshot();
    here oid := (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
    oldest xid8;
BEGIN
    SELECT min(x.xid) INTO oldest
      FROM pg_snapshot_xip(snap) AS x(xid)
     WHERE NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(NULL::integer) AS a
                        WHERE a.backend_xid = x.xid::xid AND a.datid <> here)
       AND NOT EXISTS (SELECT 1 FROM pg_prepared_xact() AS p
                        WHERE p.transaction = x.xid::xid AND p.dbid <> here);
    IF oldest IS NULL THEN
        IF EXISTS (SELECT 1 FROM pg_snapshot_xip(snap)) THEN
            oldest := pg_snapshot_xmax(snap);
        ELSE
            oldest := pg_snapshot_xmin(snap);
        END IF;
    END IF;
    RETURN (oldest::text::bigint + %s) * 1048576;
END
$body$, p_offset));
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION safe_position() RETURNS bigint '
        'LANGUAGE sql STABLE AS %L',
        format('SELECT CASE WHEN pg_snapshot_xmin(pg_current_snapshot()) '
               '= pg_snapshot_xmax(pg_current_snapshot()) '
               'THEN (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + %s) * 1048576 '
               'ELSE %I.safe_position_slow() END',
               p_offset, current_schema()));
    -- The old, cheaper bound (the snapshot's xmin, cluster-wide): at most
    -- `safe_position()`, so a row below it is safe without computing the exact
    -- bound. Readers test `position < (SELECT settled_position()) OR position <
    -- (SELECT safe_position())`: the second init plan runs only if a row fails the
    -- first test (a replay of an old log never pays for it).
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION settled_position() RETURNS bigint '
        'LANGUAGE sql STABLE AS %L',
        format('SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + %s) * 1048576',
               p_offset));
    -- The first position of the first transaction id not yet handed out when the
    -- statement's snapshot was taken (its xmax): every row visible to the
    -- statement is below it, and every row committed before the statement started
    -- is visible. A read remembers its first statement's horizon: a row at or
    -- above it committed after the read began.
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION read_horizon() RETURNS bigint '
        'LANGUAGE sql STABLE AS %L',
        format('SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::bigint + %s) * 1048576',
               p_offset));
    INSERT INTO position_clock (xid_offset) VALUES (p_offset)
    ON CONFLICT (only_row) DO UPDATE SET xid_offset = excluded.xid_offset;
END
$fn$;

-- Re-create the functions with the current offset.
SELECT set_position_clock(xid_offset) FROM position_clock;
