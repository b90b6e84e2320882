//! [`EventQuery`] pushed down into SQL: every filter is part of the page query, so
//! SQLite finds the matching events through the indexes of migration 0003 and the
//! limit applies after the filters.
//!
//! The CloudEvents attributes live in the `metadata` JSON text (see
//! [`cloud`](crate::cloud)); the queries read them with the same `json_extract`
//! expressions the indexes are built on (SQLite only uses an expression index for
//! the identical expression):
//!
//! | filter | SQL | index |
//! |---|---|---|
//! | types | `event_type IN (…)`; `+event_type IN (…)` without a time range | `events_type_time` with a time range (named with `INDEXED BY` unless another indexed filter is set); without one, none: checked while walking the log |
//! | time range | [`TIME`] `>= ?` / `< ?` | `events_type_time` |
//! | sources | [`SOURCE`] `IN (…)`, `OR … IS NULL` for the default source | `events_ce_source` |
//! | subjects | [`SUBJECT`] `IN (…) OR (… IS NULL AND stream_id IN (…))` | `events_ce_subject` + `events_stream_version` |
//! | subject prefix | byte-wise text ranges on the subject and the stream id | as subjects |
//! | correlation id | [`CORRELATION`] `= ?` | `events_correlation_id` |
//!
//! The statement text depends only on the query's *shape* (which filters, how many
//! values, the direction, whether it has an offset), never on the values, so each
//! shape is prepared once per connection and then reused from the statement cache.
//! There are no always-true `? IS NULL OR …` terms: they would keep SQLite from
//! choosing an index.
//!
//! The query is read in keyset pages by position, like `read_all` (see `read.rs`):
//! `?1` first position (inclusive), `?2` end position (exclusive), `?3` the page's
//! row limit, then the filter values, then (only with an offset) the offset, which
//! the first page skips and the later ones bind as 0.

use std::borrow::Cow;

use rusqlite::types::Value;

use crate::{
    cloud::DEFAULT_SOURCE,
    read::{Key, Pager, Scan, PAGE_ROWS},
    row::EVENT_COLUMNS,
    sql::prefix_end,
    Direction, EventQuery, EventStream, SqliteEventStore,
};

/// The event time: `ce_time` if the event has one, else the time it was recorded
/// (both microseconds since the epoch). The expression of the `events_type_time`
/// index.
pub(crate) const TIME: &str = "COALESCE(json_extract(metadata, '$.ce_time'), recorded_at)";

/// The stored source; `NULL` means [`DEFAULT_SOURCE`]. The `events_ce_source`
/// index's expression.
pub(crate) const SOURCE: &str = "json_extract(metadata, '$.ce_source')";

/// The stored subject; `NULL` means the stream id. The `events_ce_subject` index's
/// expression.
pub(crate) const SUBJECT: &str = "json_extract(metadata, '$.ce_subject')";

/// The correlation id. The `events_correlation_id` index's expression.
pub(crate) const CORRELATION: &str = "json_extract(metadata, '$.correlation_id')";

/// A page query under construction: its text and the parameters after `?3`.
struct Statement {
    sql: String,
    args: Vec<Value>,
}

impl Statement {
    /// Binds `value` to the next parameter and returns its placeholder (`?4`, …).
    fn bind(&mut self, value: Value) -> String {
        self.args.push(value);
        format!("?{}", self.args.len() + 3)
    }

    /// Binds every text of `values` and returns the placeholders as `?4,?5,…`.
    fn bind_list(&mut self, values: &[String]) -> String {
        values
            .iter()
            .map(|v| self.bind(Value::Text(v.clone())))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn and(&mut self, condition: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
    }
}

/// The page query of `query` and its filter values (the parameters after `?3`,
/// and before the offset if the query ends with `OFFSET`), and whether it does.
pub(crate) fn page_query(query: &EventQuery) -> (String, Vec<Value>, bool) {
    // As in `sql::log_page`: only the bound a page moves is a rowid range for the
    // planner; the unary `+` keeps the fixed bound (1 or `i64::MAX` unless the
    // query sets a range) out of its estimate. With both bounds as a rowid range,
    // SQLite rates a walk of the log in order (no sort) cheaper than an index
    // search plus a sort even for selective filters.
    let range = match query.direction {
        Direction::Forward => "position >= ?1 AND +position < ?2",
        Direction::Backward => "+position >= ?1 AND position < ?2",
    };
    // Types with a time range and no other indexed filter: always the
    // `(event_type, time)` index. The planner cannot know that positions and
    // times rise together, so for a window at the far end of the log it may rate
    // walking the log in order (no sort) cheaper, and read most of it. The index
    // costs the window's matches (sorted per page) whatever the window.
    let by_type_and_time = !query.event_types.is_empty()
        && (query.time_from.is_some() || query.time_until.is_some())
        && query.sources.is_empty()
        && query.subjects.is_empty()
        && query.subject_prefix.as_deref().is_none_or(str::is_empty)
        && query.correlation_id.is_none();
    let indexed_by = if by_type_and_time {
        " INDEXED BY events_type_time"
    } else {
        ""
    };
    let mut s = Statement {
        sql: format!("SELECT {EVENT_COLUMNS} FROM events{indexed_by} WHERE {range}"),
        args: Vec::new(),
    };
    if !query.event_types.is_empty() {
        // Without a time range, types are checked while walking the log, as in
        // `read_all` (the unary `+` keeps the planner off `events_type_time`,
        // which is not in position order: each page would sort every remaining
        // event of the types, and paging through a common type would cost the
        // square of its count).
        let list = s.bind_list(&query.event_types);
        let timed = query.time_from.is_some() || query.time_until.is_some();
        let column = if timed { "event_type" } else { "+event_type" };
        s.and(&format!("{column} IN ({list})"));
    }
    if !query.sources.is_empty() {
        let list = s.bind_list(&query.sources);
        if query.sources.iter().any(|source| source == DEFAULT_SOURCE) {
            s.and(&format!("({SOURCE} IS NULL OR {SOURCE} IN ({list}))"));
        } else {
            s.and(&format!("{SOURCE} IN ({list})"));
        }
    }
    if !query.subjects.is_empty() {
        // Each value is bound once and used twice: a stored subject, or the stream
        // id of an event without one.
        let list = s.bind_list(&query.subjects);
        s.and(&format!(
            "({SUBJECT} IN ({list}) OR ({SUBJECT} IS NULL AND stream_id IN ({list})))"
        ));
    }
    if let Some(prefix) = query.subject_prefix.as_deref().filter(|p| !p.is_empty()) {
        // A byte-wise prefix as a half-open text range (SQLite compares text with
        // memcmp, and UTF-8 byte order is code point order), as `read_all`'s stream
        // prefix: `p <= x < succ(p)`, open-ended when `p` has no successor.
        let start = s.bind(Value::Text(prefix.to_owned()));
        let end = prefix_end(prefix).map(|end| s.bind(Value::Text(end)));
        let within = |x: &str| match &end {
            Some(end) => format!("{x} >= {start} AND {x} < {end}"),
            None => format!("{x} >= {start}"),
        };
        s.and(&format!(
            "(({}) OR ({SUBJECT} IS NULL AND {}))",
            within(SUBJECT),
            within("stream_id")
        ));
    }
    if let Some(correlation) = &query.correlation_id {
        let id = s.bind(Value::Text(correlation.clone()));
        s.and(&format!("{CORRELATION} = {id}"));
    }
    if let Some(from) = query.time_from {
        let from = s.bind(Value::Integer(from.as_unix_micros()));
        s.and(&format!("{TIME} >= {from}"));
    }
    if let Some(until) = query.time_until {
        let until = s.bind(Value::Integer(until.as_unix_micros()));
        s.and(&format!("{TIME} < {until}"));
    }
    let order = match query.direction {
        Direction::Forward => " ORDER BY position",
        Direction::Backward => " ORDER BY position DESC",
    };
    s.sql.push_str(order);
    s.sql.push_str(" LIMIT ?3");
    let offset = query.offset > 0;
    if offset {
        s.sql.push_str(&format!(" OFFSET ?{}", s.args.len() + 4));
    }
    if by_type_and_time {
        // The page's positions come from the index alone (it holds the type, the
        // time and the position: a covering index), sorted; only the page's rows
        // are then read from the table. Without this, every match in the window
        // is read from the table before the sort drops all but a page of them.
        let positions = s.sql.replacen(
            &format!("SELECT {EVENT_COLUMNS} FROM"),
            "SELECT position FROM",
            1,
        );
        s.sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE position IN ({positions}){order}");
    }
    (s.sql, s.args, offset)
}

/// The SQL text of `query`'s first page and every parameter it binds, in order
/// (`?1` start, `?2` end, `?3` row limit, the filter values, the offset): the
/// statement [`EventStore::query`](crate::EventStore::query) runs first. For tests
/// that check its query plan; not a stable API.
#[doc(hidden)]
pub fn first_page_statement(query: &EventQuery) -> (String, Vec<Value>) {
    let (sql, args, offset) = page_query(query);
    let range = query.position_range();
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let rows = query
        .max_events()
        .map_or(PAGE_ROWS as u64, |l| l.min(PAGE_ROWS as u64));
    let mut params = vec![
        Value::Integer(clamp(range.start)),
        Value::Integer(clamp(range.end)),
        Value::Integer(clamp(rows)),
    ];
    params.extend(args);
    if offset {
        params.push(Value::Integer(clamp(query.offset)));
    }
    (sql, params)
}

impl SqliteEventStore {
    /// The events `query` selects, paged by position with every filter in SQL.
    pub(crate) fn query_events(&self, query: &EventQuery) -> EventStream<'static> {
        let (sql, args, offset) = page_query(query);
        let scan = Scan {
            sql: Cow::Owned(self.sql.rewrite(sql)),
            args,
            offset,
        };
        Pager::new(
            self,
            scan,
            Key::Position,
            query.direction,
            query.position_range(),
            query.max_events(),
        )
        .skipping(query.offset)
        .into_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Position, Timestamp};

    #[test]
    fn each_filter_shape_has_its_own_text_and_parameters() {
        let (sql, args, offset) = page_query(&EventQuery::new());
        assert!(!offset && args.is_empty());
        assert!(sql.ends_with("ORDER BY position LIMIT ?3"), "{sql}");
        assert!(!sql.contains("INDEXED BY"), "{sql}");

        let day = Timestamp::from_unix_micros(86_400_000_000);
        let (sql, _, _) = page_query(&EventQuery::new().event_type("a").time_until(day));
        assert!(
            sql.contains("FROM events INDEXED BY events_type_time WHERE"),
            "{sql}"
        );
        let positions = "WHERE position IN (SELECT position FROM events INDEXED BY";
        assert!(
            sql.starts_with(&format!("SELECT {EVENT_COLUMNS} FROM events {positions}")),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT ?3) ORDER BY position"), "{sql}");
        let (sql, _, _) = page_query(&EventQuery::new().event_type("a"));
        assert!(!sql.contains("INDEXED BY"), "{sql}");
        assert!(sql.contains(" +event_type IN (?4)"), "{sql}");
        let (sql, _, _) = page_query(&EventQuery::new().time_from(day));
        assert!(!sql.contains("INDEXED BY"), "{sql}");
        let (sql, _, _) = page_query(
            &EventQuery::new()
                .event_type("a")
                .time_from(day)
                .source("/s"),
        );
        assert!(!sql.contains("INDEXED BY"), "{sql}");

        let q = EventQuery::new()
            .event_type("a")
            .event_type("b")
            .source(DEFAULT_SOURCE)
            .subject("s")
            .subject_prefix("p")
            .correlation_id("c")
            .time_from(Timestamp::from_unix_micros(1))
            .time_until(Timestamp::from_unix_micros(2))
            .before(Position::new(9))
            .offset(3);
        let (sql, args, offset) = page_query(&q);
        assert!(offset);
        assert_eq!(args.len(), 9, "{args:?}");
        assert!(sql.contains("event_type IN (?4,?5)"), "{sql}");
        assert!(sql.contains(&format!("{SOURCE} IS NULL OR {SOURCE} IN (?6)")));
        assert!(sql.contains(&format!(
            "({SUBJECT} IN (?7) OR ({SUBJECT} IS NULL AND stream_id IN (?7)))"
        )));
        assert!(sql.contains(&format!("{SUBJECT} >= ?8 AND {SUBJECT} < ?9")));
        assert!(sql.contains(&format!("{CORRELATION} = ?10")));
        assert!(sql.contains(&format!("{TIME} >= ?11 AND {TIME} < ?12")));
        assert!(
            sql.ends_with("ORDER BY position DESC LIMIT ?3 OFFSET ?13"),
            "{sql}"
        );
        assert_eq!(args.get(5), Some(&Value::Text("q".to_owned())));

        let (statement, params) = first_page_statement(&q);
        assert_eq!(statement, sql);
        assert_eq!(params.len(), 13);
        assert_eq!(params.first(), Some(&Value::Integer(1)));
        assert_eq!(params.get(1), Some(&Value::Integer(9)));
        assert_eq!(params.last(), Some(&Value::Integer(3)));
    }

    #[test]
    fn a_prefix_without_successor_is_open_ended() {
        let (sql, args, _) = page_query(&EventQuery::new().subject_prefix("\u{10FFFF}"));
        assert_eq!(args.len(), 1);
        assert!(
            sql.contains(&format!(
                "(({SUBJECT} >= ?4) OR ({SUBJECT} IS NULL AND stream_id >= ?4))"
            )),
            "{sql}"
        );
        let (sql, args, _) = page_query(&EventQuery::new().subject_prefix(""));
        assert!(args.is_empty() && !sql.contains("subject"), "{sql}");
    }
}
