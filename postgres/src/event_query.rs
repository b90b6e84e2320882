//! [`EventQuery`] in SQL: every filter pushed into the statement, one statement
//! per filter shape and direction, paged and gap-safe through `read.rs`.
//!
//! The CloudEvents attributes are stored in `metadata` (`ce_source`,
//! `ce_subject`, `ce_time`, …, absent at their defaults), so a filter on one
//! names its default too: the source [`DEFAULT_SOURCE`] matches events without
//! `ce_source`, a subject matches events without `ce_subject` in a stream of that
//! id, and the time is the `event_time` column, generated from
//! `event_time_micros(metadata, recorded_at)` (migrations 0004 and 0005, which
//! also create the indexes these statements use).
//!
//! As for `read_all` (`sql.rs`, [`LogShape`](crate::sql::LogShape)), a statement
//! has no always-true terms (`cardinality($n) = 0 OR …`, `$n IS NULL OR …`): a
//! prepared statement switches to its generic plan after five runs, and such a
//! plan cannot know the term is true. `postgres/tests/queries.rs` checks the
//! generic plans on a large log.

use std::sync::Arc;

use annals_core::{cloud::DEFAULT_SOURCE, Direction, EventQuery, EventStream};
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::{
    connect::Inner,
    options::quote_ident,
    read::{read_log, LogSelect, PgQuery},
};

/// An [`EventQuery`]'s filters as bind values; empty lists and absent values add
/// no term to the statement.
#[derive(Clone, Debug)]
struct QueryFilter {
    event_types: Vec<String>,
    sources: Vec<String>,
    /// One of `sources` is [`DEFAULT_SOURCE`]: events without `ce_source` match.
    default_source: bool,
    subjects: Vec<String>,
    /// A non-empty subject prefix (the empty one matches every event).
    prefix: Option<String>,
    correlation_id: Option<String>,
    /// Event time at or after this (µs since the epoch).
    time_from: Option<i64>,
    /// Event time before this.
    time_until: Option<i64>,
}

impl QueryFilter {
    fn new(query: &EventQuery) -> Self {
        let times = query.time_range();
        QueryFilter {
            event_types: query.event_types.clone(),
            sources: query.sources.clone(),
            default_source: query.sources.iter().any(|s| s == DEFAULT_SOURCE),
            subjects: query.subjects.clone(),
            prefix: query.subject_prefix.clone().filter(|p| !p.is_empty()),
            correlation_id: query.correlation_id.clone(),
            time_from: query.time_from.map(|_| times.start),
            time_until: query.time_until.map(|_| times.end),
        }
    }

    /// The statement for `schema` (quoted), and its parameters' SQL types in order.
    ///
    /// Positions in `[$1, $2)`, at most `$3` rows, then one parameter per filter
    /// present, in this order: types, sources, subjects, subject prefix,
    /// correlation id, time from, time until, and last the offset when `skip`.
    /// The columns are `sql::log_columns`, as for `read_all`: the event,
    /// then `safe` and `horizon`, which `read.rs` needs to stay gap-safe.
    ///
    /// The plan must not depend on estimates the planner cannot make: the
    /// events of one source or subject, or of one type in a recent time range,
    /// may be anywhere in the log (or all at its end), so "walk the primary key
    /// until the page is full" can read the whole log for a page. Hence:
    /// * sources (without [`DEFAULT_SOURCE`]) or subjects drive the statement:
    ///   for each distinct value, the first page-length rows from its partial
    ///   index `(attribute, position)` in order (for a subject, plus those of
    ///   the stream of that id without a subject), merged and cut to the page;
    /// * a types-and-time query's first page starts where the first matching
    ///   event is (ascending with a time from, descending with a time until),
    ///   found through the `(event_type, event_time, position)` index (an
    ///   index-only scan); later pages start
    ///   at the cursor anyway;
    /// * a single correlation id is an ordered scan of its index as is.
    fn sql(&self, s: &str, backward: bool, skip: bool, first: bool) -> (String, Vec<&'static str>) {
        let mut types = vec!["bigint", "bigint", "bigint"];
        let mut param = |ty: &'static str| {
            types.push(ty);
            types.len()
        };
        let time = |a: &str| format!("{a}.event_time");
        let p_types = (!self.event_types.is_empty()).then(|| param("text[]"));
        let p_sources = (!self.sources.is_empty()).then(|| param("text[]"));
        let p_subjects = (!self.subjects.is_empty()).then(|| param("text[]"));
        let p_prefix = self.prefix.is_some().then(|| param("text"));
        let p_correlation = self.correlation_id.is_some().then(|| param("text"));
        let p_from = self.time_from.is_some().then(|| param("bigint"));
        let p_until = self.time_until.is_some().then(|| param("bigint"));
        let p_skip = skip.then(|| param("bigint"));

        let by_source = p_sources.filter(|_| !self.default_source);
        let by_subject = p_subjects.filter(|_| by_source.is_none());
        // Every filter but the driving one, on the rows of `a`.
        let terms = |a: &str| {
            let mut t = format!(" AND {a}.position >= $1::bigint AND {a}.position < $2::bigint");
            if let Some(n) = p_types {
                t += &format!(" AND {a}.event_type = ANY(${n}::text[])");
            }
            if let Some(n) = p_sources.filter(|_| by_source.is_none()) {
                // With the default source: also the events that set none.
                t += &format!(
                    " AND (({a}.metadata->>'ce_source') = ANY(${n}::text[]) \
                          OR ({a}.metadata->>'ce_source') IS NULL)"
                );
            }
            if let Some(n) = p_subjects.filter(|_| by_subject.is_none()) {
                t += &format!(
                    " AND (({a}.metadata->>'ce_subject') = ANY(${n}::text[]) \
                          OR (({a}.metadata->>'ce_subject') IS NULL AND {a}.stream_id = ANY(${n}::text[])))"
                );
            }
            if let Some(n) = p_prefix {
                // Byte-wise, like `EventQuery::matches` (`starts_with` compares
                // bytes under every deterministic collation).
                t += &format!(
                    " AND starts_with(coalesce({a}.metadata->>'ce_subject', {a}.stream_id), ${n}::text)"
                );
            }
            if let Some(n) = p_correlation {
                t += &format!(" AND ({a}.metadata->>'correlation_id') = ${n}::text");
            }
            if let Some(n) = p_from {
                t += &format!(" AND {} >= ${n}::bigint", time(a));
            }
            if let Some(n) = p_until {
                t += &format!(" AND {} < ${n}::bigint", time(a));
            }
            t
        };
        let order = if backward { " DESC" } else { "" };
        let offset = p_skip.map_or(String::new(), |n| format!(" OFFSET ${n}::bigint"));
        let columns = crate::sql::log_columns(s);
        // The rows of one driving value: at most a page (and the offset).
        let page = p_skip.map_or("$3::bigint".to_owned(), |n| {
            format!("($3::bigint + ${n}::bigint)")
        });
        let branch = |term: String| {
            format!(
                "(SELECT x.* FROM {s}.events x WHERE {term}{} ORDER BY x.position{order} LIMIT {page})",
                terms("x")
            )
        };
        let driven = |n: usize, branches: String| {
            format!(
                "SELECT {columns} \
                 FROM (SELECT DISTINCT v FROM unnest(${n}::text[]) AS u(v)) AS u \
                 CROSS JOIN LATERAL ({branches}) AS e \
                 ORDER BY e.position{order} LIMIT $3::bigint{offset}"
            )
        };
        let sql = if let Some(n) = by_source {
            driven(n, branch("(x.metadata->>'ce_source') = u.v".to_owned()))
        } else if let Some(n) = by_subject {
            driven(
                n,
                format!(
                    "{} UNION ALL {}",
                    branch("(x.metadata->>'ce_subject') = u.v".to_owned()),
                    branch("(x.metadata->>'ce_subject') IS NULL AND x.stream_id = u.v".to_owned())
                ),
            )
        } else {
            // Where the first (last) matching event of the types in the time
            // range is: per type, an index-only scan of the `(event_type,
            // event_time, position)` index. It
            // bounds the positions the statement reads, so a BitmapAnd with the
            // primary key or an ordered walk of it covers only the window, not
            // the whole log. (`+ 0` keeps PostgreSQL from answering min/max by
            // walking the primary key instead.) The bound that leads the read
            // direction is only needed on the first page (later pages start at
            // the cursor); the trailing one holds on every page.
            let window = || {
                let mut window = String::new();
                if let Some(n) = p_from {
                    window += &format!(" AND {} >= ${n}::bigint", time("x"));
                }
                if let Some(n) = p_until {
                    window += &format!(" AND {} < ${n}::bigint", time("x"));
                }
                window
            };
            let edge = |agg: &str, op: &str, t: usize| {
                format!(
                    " AND e.position {op} (SELECT {agg}(b.p) FROM unnest(${t}::text[]) AS t(v) \
                     CROSS JOIN LATERAL (SELECT {agg}(x.position + 0) AS p FROM {s}.events x \
                                         WHERE x.event_type = t.v{}) AS b)",
                    window()
                )
            };
            let mut bound = String::new();
            if let (Some(t), Some(_)) = (p_types, p_from) {
                if first || backward {
                    bound += &edge("min", ">=", t);
                }
            }
            if let (Some(t), Some(_)) = (p_types, p_until) {
                if first || !backward {
                    bound += &edge("max", "<=", t);
                }
            }
            let terms = terms("e");
            let terms = terms.strip_prefix(" AND ").unwrap_or(&terms);
            format!(
                "SELECT {columns} FROM {s}.events e WHERE {terms}{bound} \
                 ORDER BY e.position{order} LIMIT $3::bigint{offset}"
            )
        };
        (sql, types)
    }
}

/// The offset goes into the first page's statement (`OFFSET`); the skipped rows
/// are not checked for safety there, and need not be: every returned row still
/// is, so no event a running transaction commits later can get a position below
/// a returned one. Like any offset, it counts the matching events the statement
/// sees.
impl LogSelect for QueryFilter {
    fn statement(&self, inner: &Inner, backward: bool, skip: u64, first: bool) -> SqlStr {
        let (sql, _) = self.sql(&quote_ident(&inner.schema), backward, skip > 0, first);
        AssertSqlSafe(inner.queries.names().apply_owned(sql)).into_sql_str()
    }

    fn bind<'q>(&self, mut query: PgQuery<'q>, skip: u64) -> PgQuery<'q> {
        // In the order of `QueryFilter::sql`'s parameters.
        if !self.event_types.is_empty() {
            query = query.bind(&self.event_types);
        }
        if !self.sources.is_empty() {
            query = query.bind(&self.sources);
        }
        if !self.subjects.is_empty() {
            query = query.bind(&self.subjects);
        }
        if let Some(prefix) = &self.prefix {
            query = query.bind(prefix.as_str());
        }
        if let Some(id) = &self.correlation_id {
            query = query.bind(id.as_str());
        }
        if let Some(from) = self.time_from {
            query = query.bind(from);
        }
        if let Some(until) = self.time_until {
            query = query.bind(until);
        }
        if skip > 0 {
            query = query.bind(i64::try_from(skip).unwrap_or(i64::MAX));
        }
        query
    }
}

/// The events `query` selects, paged like `read_all` (and gap-safe like it when
/// ascending). Core has validated the query and answered empty ones.
pub(crate) fn query(inner: &Arc<Inner>, query: &EventQuery) -> EventStream<'static> {
    read_log(
        inner,
        query.position_range(),
        query.max_events(),
        query.direction,
        query.offset,
        QueryFilter::new(query),
    )
}

/// The first-page statement `query` runs on the store in `schema`, with its
/// parameters' SQL types in order: positions `[$1, $2)`, the page length `$3`,
/// then one parameter per filter the query has, in the order types, sources,
/// subjects (`text[]` each), subject prefix, correlation id (`text`), time
/// from, time until (`bigint`, µs since the epoch), offset (`bigint`, when not
/// 0). For `postgres/tests/queries.rs`, which checks their plans; not part of
/// the API.
pub fn query_statement(schema: &str, query: &EventQuery) -> (String, Vec<&'static str>) {
    QueryFilter::new(query).sql(
        &quote_ident(schema),
        query.direction == Direction::Backward,
        query.offset > 0,
        true,
    )
}
