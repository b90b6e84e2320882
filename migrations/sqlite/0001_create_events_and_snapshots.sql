-- annals SQLite schema, version 1. Documented in docs/backends/sqlite.md.

-- The global log. `position` is the rowid: a single writer appends with explicit,
-- increasing positions and rows are never deleted, so positions only grow and a
-- reader that has seen position P never later sees a new event below P.
CREATE TABLE events (
    position     INTEGER PRIMARY KEY,
    event_id     BLOB    NOT NULL CHECK (length(event_id) = 16),
    stream_id    TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    event_type   TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    metadata     TEXT    NOT NULL,
    recorded_at  INTEGER NOT NULL
) STRICT;

-- One stream's events in version order (read_stream, current version) and the
-- optimistic-concurrency guard: two events can never share a (stream, version).
CREATE UNIQUE INDEX events_stream_version ON events (stream_id, version);

-- Event ids are unique store-wide (idempotent re-sends, get_event).
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- One snapshot per stream; the newest (highest version) wins.
CREATE TABLE snapshots (
    stream_id      TEXT    NOT NULL PRIMARY KEY,
    version        INTEGER NOT NULL CHECK (version >= 0),
    content_type   TEXT    NOT NULL,
    schema_version INTEGER NOT NULL CHECK (schema_version >= 0),
    state          BLOB    NOT NULL
) STRICT, WITHOUT ROWID;
