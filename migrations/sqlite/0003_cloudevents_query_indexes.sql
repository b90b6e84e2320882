-- annals SQLite schema, version 3: indexes for EventQuery (EventStore::query).
--
-- The CloudEvents attributes are stored in `events.metadata` (JSON text) under
-- `ce_source`, `ce_subject` and `ce_time` (microseconds since the Unix epoch),
-- next to `correlation_id`; an attribute left at its default is not stored.
-- These are indexes on expressions: the page queries in sqlite/src/query.rs use
-- the very same expressions, or SQLite cannot match them to an index.

-- Type and event time: `event_type IN (...)` with a time range. The event time is
-- `ce_time` if the event carries one, else the time the store recorded it.
CREATE INDEX events_type_time ON events (
    event_type,
    COALESCE(json_extract(metadata, '$.ce_time'), recorded_at)
);

-- Source, subject and correlation id, each with the position so that one value's
-- events come out of the index in log order (no sort, keyset-paged by position).
-- Partial: only events that set the attribute are in the index, so an event with
-- default attributes costs nothing more to append. (The default source
-- `urn:annals` and a subject defaulting to the stream id are found otherwise.)
CREATE INDEX events_ce_source ON events (json_extract(metadata, '$.ce_source'), position)
    WHERE json_extract(metadata, '$.ce_source') IS NOT NULL;

CREATE INDEX events_ce_subject ON events (json_extract(metadata, '$.ce_subject'), position)
    WHERE json_extract(metadata, '$.ce_subject') IS NOT NULL;

CREATE INDEX events_correlation_id ON events (json_extract(metadata, '$.correlation_id'), position)
    WHERE json_extract(metadata, '$.correlation_id') IS NOT NULL;
