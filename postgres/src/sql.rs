//! The runtime SQL, schema-qualified once at connect.
//!
//! The schema name is validated ([`crate::options::validate_schema_name`]) and
//! quoted before it is spliced in; every value is a bind parameter. That is why
//! wrapping these strings in [`AssertSqlSafe`] is sound.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlStr};

use crate::options::quote_ident;

/// The columns every event query selects, in the order [`crate::read`] decodes.
const EVENT_COLUMNS: &str = "e.position, e.event_id, e.stream_id, e.version, e.event_type, \
     e.content_type, e.payload, e.metadata::text, e.recorded_at";

/// Every statement the store runs, with the schema spliced in.
#[derive(Debug)]
pub(crate) struct Queries {
    append: Arc<str>,
    append_one: Arc<str>,
    events_by_ids: Arc<str>,
    stream_version: Arc<str>,
    read_stream: Arc<str>,
    read_all: Arc<str>,
    get_event: Arc<str>,
    save_snapshot: Arc<str>,
    load_snapshot: Arc<str>,
    delete_snapshot: Arc<str>,
}

fn sql(text: &Arc<str>) -> SqlStr {
    use sqlx::SqlSafeStr;
    AssertSqlSafe(Arc::clone(text)).into_sql_str()
}

impl Queries {
    pub(crate) fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let q = |text: String| Arc::<str>::from(text);
        Queries {
            // One statement per batch (crate::append): the stream's version, then
            // — only if it is in [$2, $3] — the batch at the following versions,
            // positions from this transaction's id (see the migration). The CTE is
            // evaluated once; an empty result means nothing was written.
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
            events_by_ids: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e WHERE e.event_id = ANY($1) ORDER BY e.position"
            )),
            stream_version: q(format!(
                "SELECT coalesce(max(version), 0) FROM {s}.events WHERE stream_id = $1"
            )),
            read_stream: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 WHERE e.stream_id = $1 AND e.version >= $2 ORDER BY e.version LIMIT $3"
            )),
            // `safe`: below the first position of the oldest transaction still
            // running, so no append that could still commit a lower position is in
            // flight (docs/backends/postgres.md, "The ordering guarantee"). The
            // scalar subquery is evaluated once per statement, on its snapshot.
            read_all: q(format!(
                "SELECT {EVENT_COLUMNS}, \
                        e.position < (SELECT {s}.safe_position()) AS safe \
                 FROM {s}.events e \
                 WHERE e.position >= $1 \
                   AND (cardinality($2::text[]) = 0 OR e.event_type = ANY($2)) \
                   AND ($3::text IS NULL OR starts_with(e.stream_id, $3)) \
                 ORDER BY e.position LIMIT $4"
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
    pub(crate) fn events_by_ids(&self) -> SqlStr {
        sql(&self.events_by_ids)
    }
    pub(crate) fn stream_version(&self) -> SqlStr {
        sql(&self.stream_version)
    }
    pub(crate) fn read_stream(&self) -> SqlStr {
        sql(&self.read_stream)
    }
    pub(crate) fn read_all(&self) -> SqlStr {
        sql(&self.read_all)
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
