-- annals PostgreSQL schema, version 1.
--
-- annals runs this migration with `search_path` set to the store's schema only, so
-- every object below (and sqlx's `_sqlx_migrations` table) lives in that schema.
-- See docs/backends/postgres.md for the design, above all the ordering guarantee.

-- The global log. `position` comes from `events_position_seq`, drawn only inside
-- `append_events` while the store's append lock is held, together with the
-- transaction's xid (`transaction_id`): so among appends xid order equals position
-- order, and readers can return exactly the rows whose transaction is older than
-- every transaction still running (docs/backends/postgres.md, "The ordering
-- guarantee"). CACHE 1 keeps values in call order; never raise it.
CREATE SEQUENCE events_position_seq AS bigint CACHE 1;

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
    transaction_id xid8        NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    -- Idempotency: an event id is stored once, store-wide.
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Optimistic concurrency, enforced by the database: two appends can never both
    -- store the same version of a stream.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_version_positive CHECK (version > 0)
);
ALTER SEQUENCE events_position_seq OWNED BY events.position;

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

-- Appends one batch to one stream in a single round trip.
--
-- Returns `status`:
--   'existing_ids' – the stream's version does not satisfy the expectation and
--                    some event id is already stored: the caller checks for an
--                    idempotent re-send (nothing was written);
--   'conflict'     – the stream's version is outside [p_min_version, p_max_version]
--                    (nothing was written; `current_version` is the actual version);
--   'ok'           – written (or an empty batch that passed the check); `positions`
--                    holds the new events' positions in batch order.
-- Unique violations (a concurrent append took the version, or an id is already
-- stored) are raised as errors; the client maps them.
--
-- Ordering: the session-level advisory lock (class 1634627169 = 'anna', key =
-- hashtext(schema)) serialises only "assign this transaction's xid + draw the
-- positions" across appenders of this schema — microseconds. The insert and the
-- commit (with its WAL flush) run after the unlock, so appenders still overlap and
-- share WAL flushes (group commit).
--
-- Lock hygiene: a session lock survives rollback, so it is released on every path:
-- the EXCEPTION block (which also catches query_canceled) unlocks if pg_locks says
-- this session holds it — a cancel can arrive right after pg_advisory_lock
-- returned. A session that dies releases it with the session. The client adds a
-- second safety net: after a failed call it releases the lock if the session still
-- holds it, and a call abandoned mid-flight (client timeout) closes its connection
-- instead of returning it to the pool.
--
-- Call it in its own transaction (autocommit): the transaction must not hold an
-- xid before the lock is taken.
CREATE FUNCTION append_events(
    p_stream_id     text,
    p_min_version   bigint,
    p_max_version   bigint,
    p_event_ids     uuid[],
    p_event_types   text[],
    p_content_types text[],
    p_payloads      bytea[],
    p_metadata      jsonb[],
    OUT status          text,
    OUT current_version bigint,
    OUT positions       bigint[]
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    v_key integer := hashtext(current_schema());
    v_n   integer := coalesce(cardinality(p_event_ids), 0);
    v_xid xid8;
BEGIN
    positions := '{}';
    SELECT coalesce(max(e.version), 0) INTO current_version
    FROM events e WHERE e.stream_id = p_stream_id;

    IF current_version < p_min_version OR current_version > p_max_version THEN
        -- A re-sent append (lost response) fails the version check; tell the
        -- client so it can recognise it. Fresh appends with a stored id fail on
        -- events_event_id_key below instead, which keeps the fast path lean.
        IF EXISTS (SELECT 1 FROM events WHERE event_id = ANY (p_event_ids)) THEN
            status := 'existing_ids';
        ELSE
            status := 'conflict';
        END IF;
        RETURN;
    END IF;
    status := 'ok';
    IF v_n = 0 THEN
        RETURN;
    END IF;

    BEGIN
        PERFORM pg_advisory_lock(1634627169, v_key);
        v_xid := pg_current_xact_id();
        positions := ARRAY(SELECT nextval('events_position_seq') FROM generate_series(1, v_n));
        PERFORM pg_advisory_unlock(1634627169, v_key);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock(1634627169, v_key)
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
          AND l.classid = 1634627169 AND l.objid::integer = v_key AND l.objsubid = 2;
        RAISE;
    END;

    INSERT INTO events (position, event_id, stream_id, version, event_type,
                        content_type, payload, metadata, transaction_id)
    SELECT positions[b.n], b.id, p_stream_id, current_version + b.n, b.t, b.c, b.p, b.m, v_xid
    FROM unnest(p_event_ids, p_event_types, p_content_types, p_payloads, p_metadata)
         WITH ORDINALITY AS b(id, t, c, p, m, n);
    current_version := current_version + v_n;
END
$fn$;
