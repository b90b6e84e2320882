-- annals PostgreSQL schema, version 4: indexes for `EventStore::query`.
--
-- The CloudEvents attributes live in `metadata` (keys `ce_source`, `ce_subject`,
-- `ce_time`, …; an attribute left at its default is not stored), so this
-- migration changes no column: it adds the event-time function and the indexes
-- the query statements (postgres/src/query.rs) use.
--
-- Every index is `IF NOT EXISTS`: on a large log, an operator can build them
-- beforehand with `CREATE INDEX CONCURRENTLY` (same names, same definitions,
-- after creating the function below), since this migration runs in one
-- transaction and a plain `CREATE INDEX` blocks appends while it builds.

-- The CloudEvents time of an event in microseconds since the Unix epoch: its
-- `ce_time`, else when it was recorded (`RecordedEvent::time`).
--
-- IMMUTABLE is truthful: the epoch of a timestamptz is the same in every time
-- zone. It is written `recorded_at AT TIME ZONE 'UTC'` (a timestamp whose epoch
-- is the same number) because every function in that form is itself IMMUTABLE
-- (`extract(epoch FROM timestamptz)` is only STABLE, for the other fields), so
-- the planner can inline this function, in queries and index expressions alike.
--
-- A `ce_time` that is not an integer (metadata written before CloudEvents
-- attributes existed, when `ce_` names were not reserved) counts as absent, so
-- that such a row cannot make this migration or an append fail.
CREATE OR REPLACE FUNCTION event_time_micros(metadata jsonb, recorded_at timestamptz)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN jsonb_typeof(metadata -> 'ce_time') = 'number'
             AND (metadata ->> 'ce_time') ~ '^-?[0-9]{1,18}$'
        THEN (metadata ->> 'ce_time')::bigint
        ELSE (extract(epoch FROM recorded_at AT TIME ZONE 'UTC') * 1000000)::bigint
    END
$fn$;

-- Types in a time range (`EventQuery::event_type` + `time_from`/`time_until`).
CREATE INDEX IF NOT EXISTS events_type_time_idx
    ON events (event_type, event_time_micros(metadata, recorded_at));

-- One source, subject or correlation id, in position order. Partial: events
-- that leave the attribute at its default (most of them) are not in the index
-- and cost an append nothing here. Queries for the default source or a subject
-- equal to the stream id find those events through the other indexes.
CREATE INDEX IF NOT EXISTS events_ce_source_idx
    ON events ((metadata ->> 'ce_source'), position)
    WHERE (metadata ->> 'ce_source') IS NOT NULL;

CREATE INDEX IF NOT EXISTS events_ce_subject_idx
    ON events ((metadata ->> 'ce_subject'), position)
    WHERE (metadata ->> 'ce_subject') IS NOT NULL;

CREATE INDEX IF NOT EXISTS events_correlation_id_idx
    ON events ((metadata ->> 'correlation_id'), position)
    WHERE (metadata ->> 'correlation_id') IS NOT NULL;
