//! The runtime SQL, schema-qualified once at connect: one statement per operation
//! and read shape.
//!
//! The schema name is validated ([`crate::options::validate_schema_name`]) and
//! quoted before it is spliced in; every value is a bind parameter. That is why
//! wrapping these strings in [`AssertSqlSafe`] is sound.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlStr};

use crate::{options::quote_ident, row::EVENT_COLUMNS};

/// Every statement the store runs, with the schema spliced in.
#[derive(Debug)]
pub(crate) struct Queries {
    append: Arc<str>,
    append_one: Arc<str>,
    append_many: Arc<str>,
    delete_guards: Arc<str>,
    events_by_ids: Arc<str>,
    stream_version: Arc<str>,
    stream_versions: Arc<str>,
    read_stream_forward: Arc<str>,
    read_stream_backward: Arc<str>,
    read_all_forward: Arc<str>,
    read_all_backward: Arc<str>,
    get_event: Arc<str>,
    save_snapshot: Arc<str>,
    load_snapshot: Arc<str>,
    delete_snapshot: Arc<str>,
}

fn sql(text: &Arc<str>) -> SqlStr {
    use sqlx::SqlSafeStr;
    AssertSqlSafe(Arc::clone(text)).into_sql_str()
}

/// The filter of both `read_all` shapes: `$3` event types (empty: all), `$4`
/// stream prefix, `$5` stream regex (from the glob; NULL: no filter).
const LOG_FILTER: &str = "(cardinality($3::text[]) = 0 OR e.event_type = ANY($3)) \
     AND ($4::text IS NULL OR starts_with(e.stream_id, $4)) \
     AND ($5::text IS NULL OR e.stream_id ~ $5)";

impl Queries {
    pub(crate) fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let q = |text: String| Arc::<str>::from(text);
        Queries {
            // One-stream append, one statement per batch (crate::append): the
            // stream's version, then — only if it is in [$2, $3] — the batch at the
            // following versions, positions from this transaction's id (see the
            // migration). The CTE is evaluated once; an empty result means nothing
            // was written.
            append: q(format!(
                "WITH cur AS (SELECT coalesce(max(version), 0) AS v FROM {s}.events WHERE stream_id = $1) \
                 INSERT INTO {s}.events (position, event_id, stream_id, version, event_type, \
                                         content_type, payload, metadata) \
                 SELECT {s}.position_base() + b.n, b.id, $1, cur.v + b.n, b.t, b.c, b.p, b.m \
                 FROM cur, unnest($4::uuid[], $5::text[], $6::text[], $7::bytea[], $8::text[]::jsonb[]) \
                      WITH ORDINALITY AS b(id, t, c, p, m, n) \
                 WHERE cur.v BETWEEN $2 AND $3 \
                 RETURNING version, position"
            )),
            // The same for a batch of one event, with plain parameters.
            append_one: q(format!(
                "INSERT INTO {s}.events (position, event_id, stream_id, version, event_type, \
                                         content_type, payload, metadata) \
                 SELECT {s}.position_base() + 1, $4, $1, cur.v + 1, $5, $6, $7, $8::jsonb \
                 FROM (SELECT coalesce(max(version), 0) AS v FROM {s}.events WHERE stream_id = $1) cur \
                 WHERE cur.v BETWEEN $2 AND $3 \
                 RETURNING version, position"
            )),
            // Several streams (and guard rows for conditions), one statement:
            // * `cur`: every checked stream's version ($1) and the range its
            //   expectation allows ([$2, $3]), all from this statement's snapshot;
            // * `ins`: only if every stream is in its range, all rows ($4..$11: stream,
            //   1-based offset after the stream's version, 1-based offset in this
            //   transaction's position slot, id, type, content type, payload,
            //   metadata), inserted in the canonical (stream, version) order, so two
            //   requests over the same streams take their unique-index entries in
            //   the same order and wait for each other instead of deadlocking;
            // * the result: one row per checked stream (stream, version, NULL),
            //   then one per inserted row (NULL, NULL, position).
            append_many: q(format!(
                "WITH cur AS MATERIALIZED ( \
                     SELECT q.stream_id, q.lo, q.hi, \
                            coalesce((SELECT max(e.version) FROM {s}.events e \
                                      WHERE e.stream_id = q.stream_id), 0) AS v \
                     FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS q(stream_id, lo, hi) \
                 ), ins AS ( \
                     INSERT INTO {s}.events (position, event_id, stream_id, version, event_type, \
                                             content_type, payload, metadata) \
                     SELECT {s}.position_base() + r.pos, r.id, r.stream_id, c.v + r.n, \
                            r.t, r.c, r.p, r.m::jsonb \
                     FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::uuid[], $8::text[], \
                                 $9::text[], $10::bytea[], $11::text[]) \
                          AS r(stream_id, n, pos, id, t, c, p, m) \
                     JOIN cur c ON c.stream_id = r.stream_id \
                     WHERE NOT EXISTS (SELECT 1 FROM cur x WHERE x.v NOT BETWEEN x.lo AND x.hi) \
                     ORDER BY r.stream_id COLLATE \"C\", r.n \
                     RETURNING position \
                 ) \
                 SELECT c.stream_id, c.v, NULL::bigint AS position FROM cur c \
                 UNION ALL \
                 SELECT NULL, NULL, i.position FROM ins i"
            )),
            // The guard rows of a multi-stream append, before its COMMIT.
            delete_guards: q(format!("DELETE FROM {s}.events WHERE event_id = ANY($1)")),
            events_by_ids: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e WHERE e.event_id = ANY($1) ORDER BY e.position"
            )),
            stream_version: q(format!(
                "SELECT coalesce(max(version), 0) FROM {s}.events WHERE stream_id = $1"
            )),
            // Several streams' versions from one snapshot.
            stream_versions: q(format!(
                "SELECT q.stream_id, coalesce((SELECT max(e.version) FROM {s}.events e \
                                               WHERE e.stream_id = q.stream_id), 0) \
                 FROM unnest($1::text[]) AS q(stream_id)"
            )),
            // Versions in [$2, $3), at most $4 rows.
            read_stream_forward: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 WHERE e.stream_id = $1 AND e.version >= $2 AND e.version < $3 \
                 ORDER BY e.version LIMIT $4"
            )),
            read_stream_backward: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 WHERE e.stream_id = $1 AND e.version >= $2 AND e.version < $3 \
                 ORDER BY e.version DESC LIMIT $4"
            )),
            // Positions in [$1, $2), filtered, at most $6 rows. `safe`: below the
            // first position of the oldest transaction still running, so no append
            // that could still commit a lower position is in flight
            // (docs/backends/postgres.md, "The ordering guarantee"). The scalar
            // subquery is evaluated once per statement, on its snapshot.
            read_all_forward: q(format!(
                "SELECT {EVENT_COLUMNS}, \
                        e.position < (SELECT {s}.safe_position()) AS safe \
                 FROM {s}.events e \
                 WHERE e.position >= $1 AND e.position < $2 AND {LOG_FILTER} \
                 ORDER BY e.position LIMIT $6"
            )),
            // Newest first, and only safe rows: the read starts below the safe
            // position, so it never returns an event a later read could precede
            // with one that commits afterwards.
            read_all_backward: q(format!(
                "SELECT {EVENT_COLUMNS} \
                 FROM {s}.events e \
                 WHERE e.position >= $1 AND e.position < least($2, (SELECT {s}.safe_position())) \
                   AND {LOG_FILTER} \
                 ORDER BY e.position DESC LIMIT $6"
            )),
            get_event: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e WHERE e.event_id = $1"
            )),
            save_snapshot: q(format!(
                "INSERT INTO {s}.snapshots AS t (stream_id, version, state, content_type, schema_version) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream_id) DO UPDATE SET \
                     version = excluded.version, state = excluded.state, \
                     content_type = excluded.content_type, \
                     schema_version = excluded.schema_version, saved_at = now() \
                 WHERE excluded.version >= t.version"
            )),
            load_snapshot: q(format!(
                "SELECT version, state, content_type, schema_version FROM {s}.snapshots WHERE stream_id = $1"
            )),
            delete_snapshot: q(format!("DELETE FROM {s}.snapshots WHERE stream_id = $1")),
        }
    }

    pub(crate) fn append(&self) -> SqlStr {
        sql(&self.append)
    }
    pub(crate) fn append_one(&self) -> SqlStr {
        sql(&self.append_one)
    }
    pub(crate) fn append_many(&self) -> SqlStr {
        sql(&self.append_many)
    }
    pub(crate) fn delete_guards(&self) -> SqlStr {
        sql(&self.delete_guards)
    }
    pub(crate) fn events_by_ids(&self) -> SqlStr {
        sql(&self.events_by_ids)
    }
    pub(crate) fn stream_version(&self) -> SqlStr {
        sql(&self.stream_version)
    }
    pub(crate) fn stream_versions(&self) -> SqlStr {
        sql(&self.stream_versions)
    }
    pub(crate) fn read_stream_forward(&self) -> SqlStr {
        sql(&self.read_stream_forward)
    }
    pub(crate) fn read_stream_backward(&self) -> SqlStr {
        sql(&self.read_stream_backward)
    }
    pub(crate) fn read_all_forward(&self) -> SqlStr {
        sql(&self.read_all_forward)
    }
    pub(crate) fn read_all_backward(&self) -> SqlStr {
        sql(&self.read_all_backward)
    }
    pub(crate) fn get_event(&self) -> SqlStr {
        sql(&self.get_event)
    }
    pub(crate) fn save_snapshot(&self) -> SqlStr {
        sql(&self.save_snapshot)
    }
    pub(crate) fn load_snapshot(&self) -> SqlStr {
        sql(&self.load_snapshot)
    }
    pub(crate) fn delete_snapshot(&self) -> SqlStr {
        sql(&self.delete_snapshot)
    }
}
