-- annals SQLite schema, version 2: consumer checkpoints.
--
-- One row per named consumer (a projection, an outbox relay): the position of
-- the last event it finished, and when it was saved (microseconds since the
-- Unix epoch, like events.recorded_at). Saved by `SqliteCheckpoints`, on its
-- own or in the caller's transaction together with a read model (exactly-once).
CREATE TABLE checkpoints (
    name       TEXT    NOT NULL PRIMARY KEY,
    position   INTEGER NOT NULL CHECK (position >= 0),
    updated_at INTEGER NOT NULL
) STRICT;
