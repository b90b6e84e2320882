-- annals PostgreSQL schema, version 1.
--
-- annals runs this migration with `search_path` set to the store's schema only, so
-- every object below (and sqlx's `_sqlx_migrations` table) lives in that schema.
-- See docs/backends/postgres.md for the design, above all "The ordering guarantee".

-- The global log.
--
-- `position` is derived from the appending transaction's id (xid8), not drawn from
-- a sequence: position = (xid + xid_offset) * 2^20 + the event's 1-based index in
-- its batch (so a batch holds at most 2^20 - 1 events). Every append runs in its
-- own transaction, so positions are unique, and position order is transaction-id
-- order. A reader returns only rows below `safe_position()`, the first position of
-- the oldest transaction still running: every transaction that could still commit
-- a lower position has finished, so a reader that has seen position P never later
-- sees a new event below P — without any lock between appenders.
CREATE TABLE events (
    position       bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL,
    event_type     text        NOT NULL,
    content_type   text        NOT NULL,
    payload        bytea       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (position),
    -- Idempotency: an event id is stored once, store-wide.
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Optimistic concurrency, enforced by the database: two appends can never both
    -- store the same version of a stream.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_version_positive CHECK (version > 0)
);

-- One snapshot per stream; saving never replaces a newer one.
CREATE TABLE snapshots (
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL,
    state          bytea       NOT NULL,
    content_type   text        NOT NULL,
    schema_version bigint      NOT NULL,
    saved_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id)
);

-- The offset added to transaction ids to form positions (one row). It starts so
-- that the first append gets positions just above 2^20, and only changes when the
-- log has been copied into another cluster whose transaction ids are lower (dump
-- and restore, logical replication): `set_position_clock` then moves it so that new
-- positions continue above every stored one. The store checks this on connect.
CREATE TABLE position_clock (
    only_row   boolean NOT NULL DEFAULT true,
    xid_offset bigint  NOT NULL,
    CONSTRAINT position_clock_pkey PRIMARY KEY (only_row),
    CONSTRAINT position_clock_one_row CHECK (only_row)
);

-- (Re)defines the two position functions with `p_offset` as a constant, so the
-- planner inlines them into the append and read statements (no table lookup per
-- statement), and records the offset.
CREATE FUNCTION set_position_clock(p_offset bigint) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    -- The first position of this transaction's batch, minus one. Assigns the
    -- transaction an id if it has none yet. Call it only from an append.
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION position_base() RETURNS bigint '
        'LANGUAGE sql VOLATILE AS %L',
        format('SELECT (pg_current_xact_id()::text::bigint + %s) * 1048576', p_offset));
    -- Positions below this are final: no transaction that could still commit one
    -- is running. Evaluate it once per statement (`(SELECT safe_position())`).
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION safe_position() RETURNS bigint '
        'LANGUAGE sql STABLE AS %L',
        format('SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + %s) * 1048576',
               p_offset));
    INSERT INTO position_clock (xid_offset) VALUES (p_offset)
    ON CONFLICT (only_row) DO UPDATE SET xid_offset = excluded.xid_offset;
END
$fn$;

-- Start the clock at this (the migration's) transaction: positions begin at
-- 2^20 + 1 whatever the cluster's age, and the 2^43 transactions positions can
-- count are counted from here.
SELECT set_position_clock(1 - pg_current_xact_id()::text::bigint);

-- Run by the store on every connect: if the stored log is ahead of this cluster's
-- transaction ids (it was restored or replicated from another cluster), move the
-- clock so that every stored row is final and new positions continue above it.
-- Returns the new offset, or NULL when nothing had to change (the normal case:
-- every stored position came from a transaction older than this one).
CREATE FUNCTION check_position_clock() RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    v_offset bigint;
    v_top    bigint;
BEGIN
    SELECT xid_offset INTO v_offset FROM position_clock FOR UPDATE;
    SELECT max(position) / 1048576 INTO v_top FROM events;
    IF v_top IS NULL OR v_top < pg_current_xact_id()::text::bigint + v_offset THEN
        RETURN NULL;
    END IF;
    v_offset := v_top + 1 - pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    PERFORM set_position_clock(v_offset);
    RETURN v_offset;
END
$fn$;
