//! The runtime SQL, schema-qualified once at connect: one statement per operation
//! and read shape.
//!
//! The schema name is validated ([`crate::options::validate_schema_name`]) and
//! quoted before it is spliced in, the table prefix is validated
//! ([`TablePrefix`]: `[a-z_][a-z0-9_]*`) and spliced in front of the
//! [`SCHEMA_NAMES`]; every value is a bind parameter. That is why wrapping these
//! strings in [`AssertSqlSafe`] is sound.

use std::{borrow::Cow, sync::Arc};

use annals_core::backend::TablePrefix;
use sqlx::{AssertSqlSafe, SqlStr};

use crate::{options::quote_ident, row::EVENT_COLUMNS};

/// Every name the PostgreSQL schema (`migrations/postgres`) defines in the
/// store's schema: tables, functions, constraints and indexes. A
/// [`PostgresOptions::table_prefix`](crate::PostgresOptions::table_prefix) goes
/// in front of each of them, in the migrations and in every statement the store
/// runs ([`TablePrefix::apply`]); constraint and index names too, because index
/// names are unique per schema. A unit test checks that the migrations define no
/// other name. None of them is also a column name, so whole-word rewriting
/// cannot touch a column.
pub(crate) const SCHEMA_NAMES: &[&str] = &[
    // Tables.
    "events",
    "snapshots",
    "position_clock",
    "checkpoints",
    // Functions (the position functions are (re)defined by
    // `set_position_clock`, with dynamic SQL in string literals).
    "set_position_clock",
    "check_position_clock",
    "position_base",
    "safe_position",
    "safe_position_slow",
    "settled_position",
    "read_horizon",
    "event_time_micros",
    // Constraints (and the indexes behind the primary keys and unique ones).
    "events_pkey",
    "events_event_id_key",
    "events_stream_version_key",
    "events_version_positive",
    "snapshots_pkey",
    "position_clock_pkey",
    "position_clock_one_row",
    "checkpoints_pkey",
    "checkpoints_position_not_negative",
    // Indexes.
    "events_type_time_idx",
    "events_type_time_position_idx",
    "events_ce_source_idx",
    "events_ce_subject_idx",
    "events_correlation_id_idx",
];

/// sqlx's table of applied migrations; with a prefix, `<prefix>_sqlx_migrations`.
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The unique constraint behind optimistic concurrency (see the migration).
const STREAM_VERSION_KEY: &str = "events_stream_version_key";
/// The unique constraint behind idempotency.
const EVENT_ID_KEY: &str = "events_event_id_key";
/// The primary key (positions).
const POSITION_KEY: &str = "events_pkey";

/// The store's names for the objects Rust code refers to by name, with the
/// table prefix: the constraints write errors are classified by, and sqlx's
/// migration table.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) prefix: TablePrefix,
    /// `events_stream_version_key`.
    pub(crate) stream_version_key: String,
    /// `events_event_id_key`.
    pub(crate) event_id_key: String,
    /// `events_pkey`.
    pub(crate) position_key: String,
    /// `_sqlx_migrations`.
    pub(crate) migrations_table: String,
}

impl Names {
    pub(crate) fn new(prefix: &TablePrefix) -> Self {
        Names {
            prefix: prefix.clone(),
            stream_version_key: prefix.name(STREAM_VERSION_KEY),
            event_id_key: prefix.name(EVENT_ID_KEY),
            position_key: prefix.name(POSITION_KEY),
            migrations_table: prefix.name(MIGRATIONS_TABLE),
        }
    }

    /// `sql` with the prefix in front of every [`SCHEMA_NAMES`] name (borrowed
    /// unchanged without a prefix).
    pub(crate) fn apply<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        self.prefix.apply(sql, SCHEMA_NAMES)
    }

    /// [`apply`](Names::apply) for a statement built at run time: `sql` itself
    /// without a prefix.
    pub(crate) fn apply_owned(&self, sql: String) -> String {
        if self.prefix.is_empty() {
            sql
        } else {
            self.apply(&sql).into_owned()
        }
    }
}

/// Every statement the store runs, with the schema spliced in.
#[derive(Debug)]
pub(crate) struct Queries {
    append: Arc<str>,
    append_one: Arc<str>,
    append_many: Arc<str>,
    append_group: Arc<str>,
    delete_guards: Arc<str>,
    events_by_ids: Arc<str>,
    stream_version: Arc<str>,
    stream_versions: Arc<str>,
    read_stream_forward: Arc<str>,
    read_stream_backward: Arc<str>,
    /// One statement per filter shape and direction ([`LogShape::index`]).
    read_all: Vec<Arc<str>>,
    read_blocker: Arc<str>,
    /// The quoted schema name.
    schema: String,
    /// The prefixed names.
    names: Names,
    get_event: Arc<str>,
    save_snapshot: Arc<str>,
    load_snapshot: Arc<str>,
    delete_snapshot: Arc<str>,
}

fn sql(text: &Arc<str>) -> SqlStr {
    use sqlx::SqlSafeStr;
    AssertSqlSafe(Arc::clone(text)).into_sql_str()
}

/// The filters a `read_all` statement applies. Each shape (and direction) gets its
/// own statement, with no always-true terms: a generic plan of `$3 IS NULL OR …`
/// cannot know the term is true and may scan and sort instead of walking the
/// primary key in order (prepared statements switch to the generic plan after
/// five runs). `postgres/tests/plans.rs` checks every statement's generic plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogShape {
    /// `event_type = ANY($n::text[])`.
    pub(crate) types: bool,
    /// `starts_with(stream_id, $n)`.
    pub(crate) prefix: bool,
    /// `stream_id ~ $n` (the glob as an anchored regex).
    pub(crate) glob: bool,
}

impl LogShape {
    /// Every shape, in [`LogShape::index`] order.
    pub(crate) fn all() -> impl Iterator<Item = LogShape> {
        (0..8_usize).map(|i| LogShape {
            types: i & 1 != 0,
            prefix: i & 2 != 0,
            glob: i & 4 != 0,
        })
    }

    pub(crate) fn index(self) -> usize {
        usize::from(self.types) | usize::from(self.prefix) << 1 | usize::from(self.glob) << 2
    }

    /// The shape's `AND …` terms, numbering its parameters from `$4` in the
    /// order types, prefix, regex (the order `read.rs` binds them).
    fn terms(self) -> String {
        let mut terms = String::new();
        let mut n = 3;
        let mut next = || {
            n += 1;
            n
        };
        if self.types {
            terms += &format!(" AND e.event_type = ANY(${}::text[])", next());
        }
        if self.prefix {
            terms += &format!(" AND starts_with(e.stream_id, ${}::text)", next());
        }
        if self.glob {
            terms += &format!(" AND e.stream_id ~ ${}::text", next());
        }
        terms
    }

    /// A short name for tests and logs, e.g. `types+prefix`.
    pub(crate) fn name(self) -> String {
        let parts: Vec<&str> = [
            (self.types, "types"),
            (self.prefix, "prefix"),
            (self.glob, "glob"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if parts.is_empty() {
            "unfiltered".to_owned()
        } else {
            parts.join("+")
        }
    }
}

/// The columns of a gap-safe log read of `{s}.events e`: the event's, then `safe`
/// (its position is final) and `horizon` (the read horizon), which `read.rs`
/// checks.
pub(crate) fn log_columns(s: &str) -> String {
    format!(
        "{EVENT_COLUMNS}, \
         (e.position < (SELECT {s}.settled_position()) \
          OR e.position < (SELECT {s}.safe_position())) AS safe, \
         (SELECT {s}.read_horizon()) AS horizon"
    )
}

/// One `read_all` statement: positions in [$1, $2), at most $3 rows, the shape's
/// filters, in either direction, with two columns after the event's:
/// * `safe`: the row is below the safe position (docs/backends/postgres.md,
///   "The ordering guarantee"). `settled_position()` (the snapshot's xmin) is a
///   cheap lower bound of `safe_position()`; the exact bound is computed (once,
///   as an init plan) only if some row is not below the cheap one.
/// * `horizon`: `read_horizon()`, the first position of the first transaction
///   the statement's snapshot does not see: rows at or above it committed after
///   the statement started (`read.rs` keeps the first statement's).
///
/// Backward reads return unsafe rows too (they come first, newest first), so the
/// reader can tell a log that ends at the top from one held back below it.
fn read_all_sql(s: &str, shape: LogShape, backward: bool) -> String {
    let terms = shape.terms();
    let order = if backward { " DESC" } else { "" };
    let columns = log_columns(s);
    format!(
        "SELECT {columns} \
         FROM {s}.events e \
         WHERE e.position >= $1::bigint AND e.position < $2::bigint{terms} \
         ORDER BY e.position{order} LIMIT $3::bigint"
    )
}

/// The `cur` CTE of a multi-stream or group append: every checked stream
/// (`$1`), the range its expectation allows (`[$2, $3]`) and its version, all
/// from the statement's snapshot.
fn checked_versions(s: &str) -> String {
    format!(
        "cur AS MATERIALIZED ( \
             SELECT q.stream_id, q.lo, q.hi, \
                    coalesce((SELECT max(e.version) FROM {s}.events e \
                              WHERE e.stream_id = q.stream_id), 0) AS v \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS q(stream_id, lo, hi) \
         )"
    )
}

/// The `INSERT` of rows `$4..$11` (stream, 1-based offset after the stream's
/// version, 1-based offset in the transaction's position slot, id, type,
/// content type, payload, metadata), joined to `cur` as `c`; the caller adds
/// the `WHERE`, the order and `RETURNING`.
fn insert_rows(s: &str) -> String {
    format!(
        "INSERT INTO {s}.events (position, event_id, stream_id, version, event_type, \
                                 content_type, payload, metadata) \
         SELECT {s}.position_base() + r.pos, r.id, r.stream_id, c.v + r.n, \
                r.t, r.c, r.p, r.m::jsonb \
         FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::uuid[], $8::text[], \
                     $9::text[], $10::bytea[], $11::text[]) \
              AS r(stream_id, n, pos, id, t, c, p, m) \
         JOIN cur c ON c.stream_id = r.stream_id"
    )
}

impl Queries {
    pub(crate) fn new(schema: &str, prefix: &TablePrefix) -> Self {
        let s = quote_ident(schema);
        let names = Names::new(prefix);
        let q = |text: String| Arc::<str>::from(names.apply(&text));
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
                "WITH {cur}, ins AS ({insert} \
                     WHERE NOT EXISTS (SELECT 1 FROM cur x WHERE x.v NOT BETWEEN x.lo AND x.hi) \
                     ORDER BY r.stream_id COLLATE \"C\", r.n \
                     RETURNING position \
                 ) \
                 SELECT c.stream_id, c.v, NULL::bigint AS position FROM cur c \
                 UNION ALL \
                 SELECT NULL, NULL, i.position FROM ins i",
                cur = checked_versions(&s),
                insert = insert_rows(&s),
            )),
            // Group commit (crate::group): several one-stream appends, each
            // checked on its own. `cur` as above (one member per stream); then
            // the rows of the members whose stream is in range, in the same
            // canonical order (no deadlock with other groups or multi-stream
            // appends). A member whose check fails inserts nothing; its
            // neighbours do. Returns every inserted row's stream, version and
            // position.
            append_group: q(format!(
                "WITH {cur} {insert} \
                 WHERE c.v BETWEEN c.lo AND c.hi \
                 ORDER BY r.stream_id COLLATE \"C\", r.n \
                 RETURNING stream_id, version, position",
                cur = checked_versions(&s),
                insert = insert_rows(&s),
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
            // Versions in [$2, $3), at most $4 rows (the casts let tests PREPARE it).
            read_stream_forward: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 WHERE e.stream_id = $1::text AND e.version >= $2::bigint AND e.version < $3::bigint \
                 ORDER BY e.version LIMIT $4::bigint"
            )),
            read_stream_backward: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 WHERE e.stream_id = $1::text AND e.version >= $2::bigint AND e.version < $3::bigint \
                 ORDER BY e.version DESC LIMIT $4::bigint"
            )),
            read_all: LogShape::all()
                .flat_map(|shape| [false, true].map(|backward| (shape, backward)))
                .map(|(shape, backward)| q(read_all_sql(&s, shape, backward)))
                .collect(),
            // What holds a read back (slow path only): the oldest running
            // transaction that `safe_position()` counts (the same rule: not placed
            // in another database), with what pg_stat_activity / pg_prepared_xacts
            // tell about it. `xact_start` is NULL for other roles' sessions
            // without pg_read_all_stats.
            read_blocker: q(
                "SELECT x.xid::text::bigint AS xid, a.pid, \
                        coalesce(a.datname::text, p.database::text) AS database, \
                        extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, p.prepared))::float8 \
                            AS running_for, \
                        a.state, a.application_name, p.gid \
                 FROM pg_snapshot_xip(pg_current_snapshot()) AS x(xid) \
                 LEFT JOIN pg_stat_activity a ON a.backend_xid = x.xid::xid \
                 LEFT JOIN pg_prepared_xacts p ON p.transaction = x.xid::xid \
                 WHERE (a.datid IS NULL OR a.datname = current_database()) \
                   AND (p.database IS NULL OR p.database = current_database()) \
                 ORDER BY x.xid LIMIT 1"
                    .to_owned(),
            ),
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
            schema: s,
            names,
        }
    }

    /// The prefixed names.
    pub(crate) fn names(&self) -> &Names {
        &self.names
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
    pub(crate) fn append_group(&self) -> SqlStr {
        sql(&self.append_group)
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
    pub(crate) fn read_all(&self, shape: LogShape, backward: bool) -> SqlStr {
        let i = shape.index() * 2 + usize::from(backward);
        // Every shape's statement is built in `new`; the fallback is unreachable.
        match self.read_all.get(i) {
            Some(text) => sql(text),
            None => sql(&Arc::from(self.names.apply(&read_all_sql(
                &self.schema,
                shape,
                backward,
            )))),
        }
    }
    pub(crate) fn read_blocker(&self) -> SqlStr {
        sql(&self.read_blocker)
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

/// Every read statement for `schema`, named (`read_stream/forward`,
/// `read_all/backward/types+prefix`, …), with its parameters' SQL types in
/// order. For `postgres/tests/plans.rs`, which checks their generic plans; not
/// part of the API.
pub fn read_statements(schema: &str) -> Vec<(String, String, Vec<&'static str>)> {
    let s = quote_ident(schema);
    let queries = Queries::new(schema, &TablePrefix::default());
    let stream = ["text", "bigint", "bigint", "bigint"];
    let mut all = vec![
        (
            "read_stream/forward".to_owned(),
            queries.read_stream_forward.to_string(),
            stream.to_vec(),
        ),
        (
            "read_stream/backward".to_owned(),
            queries.read_stream_backward.to_string(),
            stream.to_vec(),
        ),
    ];
    for shape in LogShape::all() {
        let mut params = vec!["bigint", "bigint", "bigint"];
        if shape.types {
            params.push("text[]");
        }
        if shape.prefix {
            params.push("text");
        }
        if shape.glob {
            params.push("text");
        }
        for backward in [false, true] {
            let direction = if backward { "backward" } else { "forward" };
            all.push((
                format!("read_all/{direction}/{}", shape.name()),
                read_all_sql(&s, shape, backward),
                params.clone(),
            ));
        }
    }
    all
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The embedded migrations' SQL, without `--` comments (which mention
    /// `CREATE INDEX` in prose).
    fn migrations() -> Vec<String> {
        sqlx::migrate!("../migrations/postgres")
            .iter()
            .map(|m| {
                m.sql
                    .as_str()
                    .lines()
                    .map(|line| line.split("--").next().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    }

    fn words(sql: &str) -> Vec<&str> {
        sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect()
    }

    /// Every `CREATE [OR REPLACE] [UNIQUE] (TABLE|INDEX|FUNCTION|SEQUENCE|VIEW|
    /// TYPE) [CONCURRENTLY] [IF NOT EXISTS] <name>` and `CONSTRAINT <name>` of the
    /// migrations, string literals (dynamic SQL) included.
    fn defined_names() -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for sql in migrations() {
            let words: Vec<String> = words(&sql).into_iter().map(str::to_owned).collect();
            let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
            for (i, word) in upper.iter().enumerate() {
                let mut j = i + 1;
                let at = |j: usize, w: &str| upper.get(j).is_some_and(|u| u == w);
                if word == "CONSTRAINT" {
                    found.insert(words[j].to_ascii_lowercase());
                    continue;
                }
                if word != "CREATE" {
                    continue;
                }
                if at(j, "OR") && at(j + 1, "REPLACE") {
                    j += 2;
                }
                if at(j, "UNIQUE") {
                    j += 1;
                }
                let kinds = ["TABLE", "INDEX", "FUNCTION", "SEQUENCE", "VIEW", "TYPE"];
                if !kinds.iter().any(|k| at(j, k)) {
                    continue;
                }
                j += 1;
                if at(j, "CONCURRENTLY") {
                    j += 1;
                }
                if at(j, "IF") && at(j + 1, "NOT") && at(j + 2, "EXISTS") {
                    j += 3;
                }
                found.insert(words[j].to_ascii_lowercase());
            }
        }
        found
    }

    /// The columns of every `CREATE TABLE` (first word of each line in its body).
    fn column_names() -> BTreeSet<String> {
        let mut columns = BTreeSet::new();
        for sql in migrations() {
            let mut in_table = false;
            for line in sql.lines() {
                let line = line.trim();
                if line.to_ascii_uppercase().starts_with("CREATE TABLE") {
                    in_table = true;
                    continue;
                }
                if line.starts_with(')') {
                    in_table = false;
                }
                if !in_table {
                    continue;
                }
                if let Some(first) = words(line).first() {
                    if !first.eq_ignore_ascii_case("CONSTRAINT") {
                        columns.insert(first.to_ascii_lowercase());
                    }
                }
            }
        }
        columns
    }

    #[test]
    fn schema_names_cover_every_name_the_migrations_define() {
        let defined = defined_names();
        // The scan finds what it should: a table, a dynamic function, an index.
        for name in ["events", "safe_position_slow", "events_ce_source_idx"] {
            assert!(
                defined.contains(name),
                "the scan missed {name}: {defined:?}"
            );
        }
        let listed: BTreeSet<String> = SCHEMA_NAMES.iter().map(|&n| n.to_owned()).collect();
        let missing: Vec<&String> = defined.difference(&listed).collect();
        assert!(missing.is_empty(), "not in SCHEMA_NAMES: {missing:?}");
        let unused: Vec<&String> = listed.difference(&defined).collect();
        assert!(
            unused.is_empty(),
            "in SCHEMA_NAMES but not defined: {unused:?}"
        );
    }

    #[test]
    fn no_schema_name_is_a_column_or_a_column_of_the_statements() {
        let columns = column_names();
        for column in ["position", "event_id", "stream_id", "xid_offset", "name"] {
            assert!(
                columns.contains(column),
                "the scan missed {column}: {columns:?}"
            );
        }
        for name in SCHEMA_NAMES {
            assert!(!columns.contains(*name), "{name} is also a column");
            assert!(
                !words(EVENT_COLUMNS).contains(name),
                "{name} in EVENT_COLUMNS"
            );
        }
    }

    #[test]
    fn prefixed_migrations_define_only_prefixed_names() {
        let prefix = TablePrefix::new("two_").unwrap();
        let names = Names::new(&prefix);
        for sql in migrations() {
            let prefixed = names.apply(&sql);
            for word in words(&prefixed) {
                assert!(!SCHEMA_NAMES.contains(&word), "unprefixed {word}");
            }
            for name in SCHEMA_NAMES {
                if words(&sql).contains(name) {
                    assert!(words(&prefixed).contains(&prefix.name(name).as_str()));
                }
            }
        }
    }

    #[test]
    fn names_compared_in_rust_fit_postgres_identifiers() {
        // PostgreSQL truncates names to 63 bytes: the constraints errors are
        // classified by must keep their full name with the longest prefix.
        let longest = TablePrefix::new(&"p".repeat(TablePrefix::MAX_LEN)).unwrap();
        let names = Names::new(&longest);
        for name in [
            &names.stream_version_key,
            &names.event_id_key,
            &names.position_key,
            &names.migrations_table,
        ] {
            assert!(name.len() <= 63, "{name}");
        }
        // Longer names are truncated alike on every use, and stay distinct.
        let truncated: BTreeSet<String> = SCHEMA_NAMES
            .iter()
            .map(|n| longest.name(n).chars().take(63).collect())
            .collect();
        assert_eq!(truncated.len(), SCHEMA_NAMES.len());
    }

    #[test]
    fn default_names_and_statements_are_unchanged() {
        let names = Names::new(&TablePrefix::default());
        assert_eq!(names.stream_version_key, "events_stream_version_key");
        assert_eq!(names.event_id_key, "events_event_id_key");
        assert_eq!(names.position_key, "events_pkey");
        assert_eq!(names.migrations_table, "_sqlx_migrations");
        let queries = Queries::new("annals", &TablePrefix::default());
        assert!(queries.append.contains("\"annals\".events "));
        assert!(queries.append.contains("\"annals\".position_base()"));
    }

    #[test]
    fn prefixed_statements_name_only_prefixed_objects() {
        let prefix = TablePrefix::new("two_").unwrap();
        let queries = Queries::new("annals", &prefix);
        let all: Vec<Arc<str>> = [
            &queries.append,
            &queries.append_one,
            &queries.append_many,
            &queries.delete_guards,
            &queries.events_by_ids,
            &queries.stream_version,
            &queries.stream_versions,
            &queries.read_stream_forward,
            &queries.read_stream_backward,
            &queries.get_event,
            &queries.save_snapshot,
            &queries.load_snapshot,
            &queries.delete_snapshot,
        ]
        .into_iter()
        .chain(&queries.read_all)
        .cloned()
        .collect();
        for text in &all {
            for word in words(text) {
                assert!(!SCHEMA_NAMES.contains(&word), "unprefixed {word} in {text}");
            }
        }
        assert!(queries.append.contains("\"annals\".two_events "));
        assert!(queries.append.contains("\"annals\".two_position_base()"));
        assert!(queries.save_snapshot.contains("\"annals\".two_snapshots "));
        assert_eq!(queries.names().position_key, "two_events_pkey");
        assert_eq!(queries.names().migrations_table, "two__sqlx_migrations");
    }
}
