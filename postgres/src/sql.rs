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

/// Releases the append lock if this session still holds it (the safety net after
/// a failed append; see the migration's `append_events`). `$1` is the schema name.
pub(crate) const RELEASE_APPEND_LOCK: &str = "SELECT pg_advisory_unlock(1634627169, hashtext($1)) \
     FROM pg_locks l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted \
       AND l.classid = 1634627169 AND l.objid::integer = hashtext($1) AND l.objsubid = 2";

/// Every statement the store runs, with the schema spliced in.
#[derive(Debug)]
pub(crate) struct Queries {
    append: Arc<str>,
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
            append: q(format!(
                "SELECT status, current_version, positions \
                 FROM {s}.append_events($1, $2, $3, $4, $5, $6, $7, $8::text[]::jsonb[])"
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
            // `safe`: the row's transaction is older than every transaction still
            // running, so no append that drew a lower position can still commit
            // (docs/backends/postgres.md, "Global order"). The scalar subquery is
            // evaluated once per statement, on the statement's own snapshot.
            read_all: q(format!(
                "SELECT {EVENT_COLUMNS}, \
                        e.transaction_id < (SELECT pg_snapshot_xmin(pg_current_snapshot())) AS safe \
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
