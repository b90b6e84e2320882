-- annals PostgreSQL schema, version 3: consumer checkpoints.
--
-- One row per named consumer (a projection, an outbox relay): the position of
-- the last event it finished. Saved by `PostgresCheckpoints`, on its own or in
-- the caller's transaction together with a read model (exactly-once).
CREATE TABLE checkpoints (
    name       text        NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT checkpoints_pkey PRIMARY KEY (name),
    CONSTRAINT checkpoints_position_not_negative CHECK (position >= 0)
);
