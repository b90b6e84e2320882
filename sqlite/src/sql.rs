//! Every SQL statement the store runs, in one place. `docs/backends/sqlite.md`
//! quotes them with their query plans (checked by the unit test `sql::plans`).
//!
//! Statements whose text depends on a count (rows per insert, ids per lookup,
//! streams per version check) are built here; each distinct text is prepared once
//! per connection and then reused from the statement cache.
//!
//! The texts here name the default tables (`events`, …). A store opened with a
//! [`table_prefix`](crate::SqliteOptions::table_prefix) runs them through
//! [`Statements`], which prefixes every name of [`NAMES`]: the constant statements
//! once, when the store opens; the built ones (and `query.rs`'s page queries) as
//! they are built. With the empty prefix nothing is copied.

use std::borrow::Cow;

use annals_core::backend::TablePrefix;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::{row::EVENT_COLUMNS, Direction, ReadFilter};

/// Every name the SQLite schema defines (tables and indexes of
/// `migrations/sqlite/`): what a [`TablePrefix`] prefixes in the migrations and in
/// every statement. The unit test `names_cover_the_migrations` checks that it
/// covers every `CREATE TABLE|INDEX|TRIGGER|VIEW` of the embedded migrations.
pub(crate) const NAMES: &[&str] = &[
    // 0001
    "events",
    "events_stream_version",
    "events_event_id",
    "snapshots",
    // 0002
    "checkpoints",
    // 0003
    "events_type_time",
    "events_ce_source",
    "events_ce_subject",
    "events_correlation_id",
];

/// sqlx's table of applied migrations; a prefixed store keeps its own
/// (`{prefix}_sqlx_migrations`).
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The statements of one store, with its [`TablePrefix`] applied: the constant
/// ones rewritten once when the store opens (borrowed as they are for the empty
/// prefix), the built ones through [`Statements::rewrite`].
#[derive(Debug)]
pub(crate) struct Statements {
    prefix: TablePrefix,
    pub(crate) insert_one: Cow<'static, str>,
    pub(crate) heads_one: Cow<'static, str>,
    /// Run on sqlx: its own text type, which clones without copying.
    pub(crate) stream_version: SqlStr,
    pub(crate) get_event: Cow<'static, str>,
    stream_page_forward: Cow<'static, str>,
    stream_page_backward: Cow<'static, str>,
    pub(crate) put_snapshot: Cow<'static, str>,
    pub(crate) get_snapshot: Cow<'static, str>,
    pub(crate) delete_snapshot: Cow<'static, str>,
}

impl Statements {
    /// The statements for tables named with `prefix`.
    pub(crate) fn new(prefix: TablePrefix) -> Self {
        let apply = |sql: &'static str| prefix.apply(sql, NAMES);
        Statements {
            insert_one: apply(INSERT_ONE),
            heads_one: apply(HEADS_ONE),
            stream_version: sql_text(&prefix, STREAM_VERSION),
            get_event: apply(GET_EVENT),
            stream_page_forward: apply(STREAM_PAGE_FORWARD),
            stream_page_backward: apply(STREAM_PAGE_BACKWARD),
            put_snapshot: apply(PUT_SNAPSHOT),
            get_snapshot: apply(GET_SNAPSHOT),
            delete_snapshot: apply(DELETE_SNAPSHOT),
            prefix,
        }
    }

    /// The store's prefix.
    pub(crate) fn prefix(&self) -> &TablePrefix {
        &self.prefix
    }

    /// `sql` (built for the default names) with the prefix applied; `sql` itself,
    /// not a copy, for the empty prefix.
    pub(crate) fn rewrite(&self, sql: String) -> String {
        rewrite(&self.prefix, sql)
    }

    /// [`insert`] of `rows` rows.
    pub(crate) fn insert(&self, rows: usize) -> String {
        self.rewrite(insert(rows))
    }

    /// [`lookup_ids`] of `ids` ids.
    pub(crate) fn lookup_ids(&self, ids: usize) -> String {
        self.rewrite(lookup_ids(ids))
    }

    /// [`heads`] of `streams` streams.
    pub(crate) fn heads(&self, streams: usize) -> String {
        self.rewrite(heads(streams))
    }

    /// [`stream_page`] in `direction`.
    pub(crate) fn stream_page(&self, direction: Direction) -> &Cow<'static, str> {
        match direction {
            Direction::Forward => &self.stream_page_forward,
            Direction::Backward => &self.stream_page_backward,
        }
    }

    /// [`log_page`] with the prefix applied.
    pub(crate) fn log_page(
        &self,
        direction: Direction,
        filter: &ReadFilter,
    ) -> (String, Vec<String>) {
        let (sql, args) = log_page(direction, filter);
        (self.rewrite(sql), args)
    }
}

/// `sql` with `prefix` applied to [`NAMES`], as sqlx's query text (shared, so a
/// clone per query copies nothing).
pub(crate) fn sql_text(prefix: &TablePrefix, sql: &'static str) -> SqlStr {
    match prefix.apply(sql, NAMES) {
        Cow::Borrowed(sql) => SqlStr::from_static(sql),
        // Safe to splice: the prefix is validated to `[a-z_][a-z0-9_]*`.
        Cow::Owned(sql) => AssertSqlSafe(std::sync::Arc::<str>::from(sql)).into_sql_str(),
    }
}

/// `sql` with `prefix` applied to [`NAMES`]; `sql` itself for the empty prefix.
pub(crate) fn rewrite(prefix: &TablePrefix, sql: String) -> String {
    if prefix.is_empty() {
        return sql;
    }
    prefix.apply(&sql, NAMES).into_owned()
}

/// A multi-row `INSERT` of `rows` events, 9 parameters each:
/// `position, event_id, stream_id, version, event_type, content_type, payload,
/// metadata, recorded_at`.
pub(crate) fn insert(rows: usize) -> String {
    const ROW: &str = "(?,?,?,?,?,?,?,?,?)";
    let mut sql = String::with_capacity(120 + rows * (ROW.len() + 1));
    sql.push_str(
        "INSERT INTO events (position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(ROW);
    }
    sql
}

/// [`insert`] of one row.
pub(crate) const INSERT_ONE: &str = "INSERT INTO events (position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at) VALUES (?,?,?,?,?,?,?,?,?)";

/// The stored events whose id is one of `ids` parameters.
pub(crate) fn lookup_ids(ids: usize) -> String {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (?");
    sql.push_str(&",?".repeat(ids.saturating_sub(1)));
    sql.push(')');
    sql
}

/// One row: the log's last position, then the current version of each of `streams`
/// streams (`?1`, `?2`, …); `NULL` for an empty log or a missing stream.
pub(crate) fn heads(streams: usize) -> String {
    let mut sql = String::from("SELECT (SELECT MAX(position) FROM events)");
    for i in 1..=streams {
        sql.push_str(&format!(
            ", (SELECT MAX(version) FROM events WHERE stream_id = ?{i})"
        ));
    }
    sql
}

/// [`heads`] of one stream.
pub(crate) const HEADS_ONE: &str = "SELECT (SELECT MAX(position) FROM events), (SELECT MAX(version) FROM events WHERE stream_id = ?1)";

/// A stream's current version (`NULL` if it has no events).
pub(crate) const STREAM_VERSION: &str = "SELECT MAX(version) FROM events WHERE stream_id = ?";

/// One event by id.
pub(crate) const GET_EVENT: &str = "SELECT position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at FROM events WHERE event_id = ?";

/// One page of a stream, oldest first: versions `?1 <= v < ?2`, at most `?3` rows,
/// of the stream `?4` (the same parameter order as [`log_page`]).
pub(crate) const STREAM_PAGE_FORWARD: &str = "SELECT position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at FROM events WHERE stream_id = ?4 AND version >= ?1 AND version < ?2 ORDER BY version LIMIT ?3";

/// One page of a stream, newest first (parameters as [`STREAM_PAGE_FORWARD`]).
pub(crate) const STREAM_PAGE_BACKWARD: &str = "SELECT position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at FROM events WHERE stream_id = ?4 AND version >= ?1 AND version < ?2 ORDER BY version DESC LIMIT ?3";

/// The page query of a stream read.
#[cfg(test)]
pub(crate) fn stream_page(direction: Direction) -> &'static str {
    match direction {
        Direction::Forward => STREAM_PAGE_FORWARD,
        Direction::Backward => STREAM_PAGE_BACKWARD,
    }
}

/// The page query of a `read_all` with `filter`, and the filter's parameters.
///
/// Parameters: `?1` first position (inclusive), `?2` end position (exclusive), `?3`
/// the page's row limit, then the returned filter values (text) from `?4` on. Every
/// filter is in the `WHERE` clause, so it applies before the `LIMIT`:
/// * event types: `+event_type IN (…)`, checked while walking the log (the unary
///   `+` keeps the planner off the `(event_type, time)` index of migration 0003,
///   which is not in position order: every page would sort all remaining matches);
/// * stream prefix: a byte-wise range `stream_id >= p AND stream_id < succ(p)` the
///   `(stream_id, version)` index can serve;
/// * stream glob: `stream_id GLOB ?` (SQLite's own glob, the semantics
///   [`ReadFilter::stream_glob`] specifies).
pub(crate) fn log_page(direction: Direction, filter: &ReadFilter) -> (String, Vec<String>) {
    // Only the bound a page moves is a rowid range for the planner; the unary `+`
    // keeps the fixed bound (always 1 or `i64::MAX` from core) out of its cost
    // estimate. With both bounds as a range, SQLite rates the rowid walk cheaper
    // than the `(stream_id, version)` index for a stream-prefix filter, and a
    // selective prefix would scan the whole log.
    let range = match direction {
        Direction::Forward => "position >= ?1 AND +position < ?2",
        Direction::Backward => "+position >= ?1 AND position < ?2",
    };
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {range}");
    let mut args = Vec::new();
    let param = |sql: &mut String, args: &mut Vec<String>, value: &str| {
        args.push(value.to_owned());
        sql.push_str(&format!("?{}", args.len() + 3));
    };
    if let Some(prefix) = filter.stream_prefix.as_deref().filter(|p| !p.is_empty()) {
        sql.push_str(" AND stream_id >= ");
        param(&mut sql, &mut args, prefix);
        if let Some(end) = prefix_end(prefix) {
            sql.push_str(" AND stream_id < ");
            param(&mut sql, &mut args, &end);
        }
    }
    if let Some(glob) = filter.stream_glob.as_deref() {
        sql.push_str(" AND stream_id GLOB ");
        param(&mut sql, &mut args, glob);
    }
    if let Some((first, rest)) = filter.event_types.split_first() {
        sql.push_str(" AND +event_type IN (");
        param(&mut sql, &mut args, first);
        for event_type in rest {
            sql.push(',');
            param(&mut sql, &mut args, event_type);
        }
        sql.push(')');
    }
    sql.push_str(match direction {
        Direction::Forward => " ORDER BY position LIMIT ?3",
        Direction::Backward => " ORDER BY position DESC LIMIT ?3",
    });
    (sql, args)
}

/// The smallest string greater than every string that starts with `prefix`, or
/// `None` if there is none. UTF-8 byte order is code point order, so incrementing
/// the last code point that can be incremented (and dropping what follows) works.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Stores a snapshot unless the stored one is newer: `?1` stream, `?2` version,
/// `?3` content type, `?4` schema version, `?5` state.
pub(crate) const PUT_SNAPSHOT: &str =
    "INSERT INTO snapshots (stream_id, version, content_type, schema_version, state) \
     VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
     content_type = excluded.content_type, schema_version = excluded.schema_version, \
     state = excluded.state WHERE excluded.version >= snapshots.version";

/// A stream's snapshot: `version, content_type, schema_version, state`.
pub(crate) const GET_SNAPSHOT: &str =
    "SELECT version, content_type, schema_version, state FROM snapshots WHERE stream_id = ?";

/// Deletes a stream's snapshot.
pub(crate) const DELETE_SNAPSHOT: &str = "DELETE FROM snapshots WHERE stream_id = ?";

/// Writes a consistent copy of the database to the file `?`.
pub(crate) const BACKUP: &str = "VACUUM INTO ?";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::borrow::Cow;

    use annals_core::backend::TablePrefix;

    use super::{
        prefix_end, Statements, EVENT_COLUMNS, GET_EVENT, INSERT_ONE, NAMES, PUT_SNAPSHOT,
        STREAM_PAGE_BACKWARD, STREAM_PAGE_FORWARD,
    };
    use crate::{Direction, ReadFilter};

    #[test]
    fn the_one_stream_heads_query_is_heads_of_one() {
        assert_eq!(super::heads(1), super::HEADS_ONE);
    }

    #[test]
    fn the_one_row_insert_is_insert_of_one() {
        assert_eq!(super::insert(1), INSERT_ONE);
    }

    #[test]
    fn constant_queries_select_the_event_columns() {
        for sql in [GET_EVENT, STREAM_PAGE_FORWARD, STREAM_PAGE_BACKWARD] {
            assert!(
                sql.starts_with(&format!("SELECT {EVENT_COLUMNS} FROM events")),
                "{sql}"
            );
        }
    }

    /// The words of `sql` (runs of `a-z`, `0-9`, `_`), comments left out.
    fn words(sql: &str) -> Vec<&str> {
        sql.lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .filter(|word| !word.is_empty())
            .collect()
    }

    /// Every name a `CREATE [UNIQUE|TEMP|VIRTUAL] TABLE|INDEX|TRIGGER|VIEW
    /// [IF NOT EXISTS] <name>` of `sql` defines.
    fn created_names(sql: &str) -> Vec<String> {
        let words = words(sql);
        let mut names = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if words[i].eq_ignore_ascii_case("CREATE") {
                let mut j = i + 1;
                while j < words.len()
                    && ["UNIQUE", "TEMP", "TEMPORARY", "VIRTUAL"]
                        .iter()
                        .any(|w| words[j].eq_ignore_ascii_case(w))
                {
                    j += 1;
                }
                let kind = words.get(j).copied().unwrap_or_default();
                assert!(
                    ["TABLE", "INDEX", "TRIGGER", "VIEW"]
                        .iter()
                        .any(|k| kind.eq_ignore_ascii_case(k)),
                    "CREATE {kind}: teach this test (and NAMES) about it"
                );
                j += 1;
                if words.get(j).is_some_and(|w| w.eq_ignore_ascii_case("IF")) {
                    j += 3; // IF NOT EXISTS
                }
                names.push(words[j].to_owned());
                i = j;
            }
            i += 1;
        }
        names
    }

    #[test]
    fn names_cover_the_migrations() {
        let created: Vec<String> = crate::open::MIGRATOR
            .iter()
            .flat_map(|m| created_names(m.sql.as_str()))
            .collect();
        assert!(created.len() >= 9, "{created:?}");
        for name in &created {
            assert!(
                NAMES.contains(&name.as_str()),
                "`{name}` is created by a migration but missing from sql::NAMES"
            );
        }
        for name in NAMES {
            assert!(
                created.iter().any(|c| c == name),
                "`{name}` is in sql::NAMES but no migration creates it"
            );
        }
    }

    #[test]
    fn prefixed_migrations_create_and_name_only_prefixed_names() {
        let prefix = TablePrefix::new("p_").unwrap();
        for migration in crate::open::MIGRATOR.iter() {
            let sql = prefix.apply(migration.sql.as_str(), NAMES);
            for name in created_names(&sql) {
                assert!(name.starts_with("p_"), "{name} in {sql}");
            }
            for word in words(&sql) {
                assert!(!NAMES.contains(&word), "unprefixed `{word}` in {sql}");
            }
        }
    }

    #[test]
    fn prefixed_statements_name_only_prefixed_names() {
        let statements = Statements::new(TablePrefix::new("p_").unwrap());
        let (log, _) = statements.log_page(
            Direction::Forward,
            &ReadFilter::new().stream_prefix("a").event_type("t"),
        );
        let texts = [
            statements.insert_one.to_string(),
            statements.heads_one.to_string(),
            statements.stream_version.as_str().to_owned(),
            statements.get_event.to_string(),
            statements.stream_page(Direction::Forward).to_string(),
            statements.stream_page(Direction::Backward).to_string(),
            statements.put_snapshot.to_string(),
            statements.get_snapshot.to_string(),
            statements.delete_snapshot.to_string(),
            statements.insert(3),
            statements.lookup_ids(3),
            statements.heads(3),
            log,
        ];
        for sql in &texts {
            assert!(
                words(sql).iter().any(|w| w.starts_with("p_")),
                "nothing prefixed in {sql}"
            );
            for word in words(sql) {
                assert!(!NAMES.contains(&word), "unprefixed `{word}` in {sql}");
            }
        }
        assert!(statements.put_snapshot.contains("p_snapshots.version"));
    }

    #[test]
    fn the_default_statements_are_the_constants_unchanged() {
        let statements = Statements::new(TablePrefix::default());
        for (text, constant) in [
            (&statements.insert_one, INSERT_ONE),
            (&statements.get_event, GET_EVENT),
            (&statements.put_snapshot, PUT_SNAPSHOT),
            (
                statements.stream_page(Direction::Forward),
                STREAM_PAGE_FORWARD,
            ),
        ] {
            assert!(matches!(text, Cow::Borrowed(s) if *s == constant));
        }
        let built = super::insert(2);
        let pointer = built.as_ptr();
        let rewritten = statements.rewrite(built);
        assert_eq!(rewritten.as_ptr(), pointer);
    }

    #[test]
    fn prefix_end_increments_the_last_code_point() {
        assert_eq!(prefix_end("order-").as_deref(), Some("order."));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(prefix_end("é").as_deref(), Some("ê"));
    }

    #[test]
    fn prefix_range_matches_byte_prefix() {
        let prefix = "ab\u{FFFF}";
        let end = prefix_end(prefix).unwrap_or_default();
        for s in ["ab\u{FFFF}", "ab\u{FFFF}zz", "ab\u{FFFF}\u{10FFFF}"] {
            assert!(s >= prefix && s < end.as_str(), "{s:?}");
        }
        for s in ["ab", "ab\u{FFFE}", "ab\u{10000}", "ac"] {
            assert!(!(s >= prefix && s < end.as_str()), "{s:?}");
        }
    }
}
