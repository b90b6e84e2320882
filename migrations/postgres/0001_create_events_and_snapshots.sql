-- annals PostgreSQL schema, version 1.
--
-- annals runs this migration with `search_path` set to the store's schema only, so
-- every object below (and sqlx's `_sqlx_migrations` table) lives in that schema.
-- See docs/backends/postgres.md for the design, above all the ordering guarantee.

-- The global log. `position` comes from the identity sequence (CACHE 1, the default:
-- values are handed out in call order, which the ordering guarantee relies on —
-- never raise the cache). `transaction_id` is the appending transaction's id,
-- assigned while the store's append lock is held, so among appends xid order equals
-- position order; readers only return rows whose transaction is older than every
-- transaction still running (see `append_events` and docs/backends/postgres.md).
CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY,
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
--   'existing_ids' – some event id is already stored: the caller checks for an
--                    idempotent re-send (nothing was written);
--   'conflict'     – the stream's version is outside [p_min_version, p_max_version]
--                    (nothing was written; `current_version` is the actual version);
--   'ok'           – written (or an empty batch that passed the check); `positions`
--                    holds the new events' positions in batch order.
--
-- Ordering: the session-level advisory lock (class 1634627169 = 'anna', key =
-- hashtext(schema)) serialises "assign this transaction's xid + draw positions"
-- across appenders of this schema. It is released *before* the commit, so commits
-- (and their WAL flushes) still overlap and group. The lock is released on every
-- path, including errors and cancellation (the EXCEPTION block catches
-- query_canceled too); a session that dies releases it with the session. The
-- client adds a second safety net: after a failed call it releases the lock if the
-- session still holds it, and a call abandoned mid-flight (client timeout) closes
-- its connection instead of returning it to the pool.
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
    v_xid xid8;
BEGIN
    positions := '{}';
    -- Event ids are immutable once committed, so this check needs no lock; a
    -- concurrent insert of the same id is caught by events_event_id_key.
    IF EXISTS (SELECT 1 FROM events WHERE event_id = ANY (p_event_ids)) THEN
        status := 'existing_ids';
        RETURN;
    END IF;

    BEGIN
        PERFORM pg_advisory_lock(1634627169, v_key);

        SELECT coalesce(max(e.version), 0) INTO current_version
        FROM events e WHERE e.stream_id = p_stream_id;

        IF current_version < p_min_version OR current_version > p_max_version THEN
            status := 'conflict';
        ELSIF coalesce(cardinality(p_event_ids), 0) = 0 THEN
            status := 'ok';
        ELSE
            -- Assigns this transaction's xid while the lock is held.
            v_xid := pg_current_xact_id();
            WITH inserted AS (
                INSERT INTO events (event_id, stream_id, version, event_type,
                                    content_type, payload, metadata, transaction_id)
                SELECT b.id, p_stream_id, current_version + b.n, b.t, b.c, b.p, b.m, v_xid
                FROM unnest(p_event_ids, p_event_types, p_content_types, p_payloads, p_metadata)
                     WITH ORDINALITY AS b(id, t, c, p, m, n)
                ORDER BY b.n
                RETURNING events.position, events.version
            )
            SELECT array_agg(i.position ORDER BY i.version) INTO positions FROM inserted i;
            current_version := current_version + cardinality(p_event_ids);
            status := 'ok';
        END IF;

        PERFORM pg_advisory_unlock(1634627169, v_key);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        -- Ask pg_locks whether this session holds the lock: a cancel can arrive
        -- after pg_advisory_lock returned but before the next statement, and
        -- unlocking a lock we do not hold would only log a warning.
        PERFORM pg_advisory_unlock(1634627169, v_key)
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
          AND l.classid = 1634627169 AND l.objid::integer = v_key AND l.objsubid = 2;
        RAISE;
    END;
END
$fn$;
