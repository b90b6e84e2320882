//! `EventStore::query` on PostgreSQL: the same answers as the reference
//! implementation (`annals_core::query::scan`), index plans on a large log (also
//! under generic plans, issue 18), latency figures, and the upgrade of a store
//! migrated before migration 0004.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod common;

use std::time::{Duration, Instant};

use annals_postgres::{
    cloud::DEFAULT_SOURCE, query::scan, EventQuery, EventStore, ExpectedVersion, Metadata,
    NewEvent, Position, PostgresEventStore, PostgresOptions, ReadAll, RecordedEvent, StreamId,
    Timestamp,
};
use annals_testing::postgres::TestSchema;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

fn ids(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.get()).collect()
}

async fn run(store: &PostgresEventStore, query: EventQuery) -> Vec<RecordedEvent> {
    store.query(query).try_collect().await.unwrap()
}

async fn reference(store: &PostgresEventStore, query: EventQuery) -> Vec<RecordedEvent> {
    scan(store, query).try_collect().await.unwrap()
}

/// A small log with every attribute in play: explicit and default sources
/// (`urn:annals` also set explicitly), subjects set or left to the stream id,
/// correlation ids, event times in the past and future or left to the
/// recorded time.
async fn small_log(store: &PostgresEventStore) -> Timestamp {
    let now = Timestamp::now().as_unix_micros();
    let streams = ["order-1", "order-2", "order-10", "sub-a", "invoice-1"];
    for round in 0..12_i64 {
        for (s, stream) in streams.iter().enumerate() {
            let stream = StreamId::new(*stream).unwrap();
            let events: Vec<NewEvent> = (0..3_i64)
                .map(|k| {
                    let n = (round * 5 + s as i64) * 3 + k;
                    let ty = ["Placed", "Paid", "Shipped", "Cancelled"][(n % 4) as usize];
                    let mut meta = Metadata::new();
                    if n % 3 == 0 {
                        meta = meta.with_correlation_id(format!("c-{}", n % 5));
                    }
                    if n % 7 == 0 {
                        meta = meta.with_field("user", "alice");
                    }
                    let mut e = NewEvent::new(ty, format!("{{\"n\":{n}}}")).with_metadata(meta);
                    match n % 5 {
                        0 => e = e.with_source("/shop/orders"),
                        1 => e = e.with_source(DEFAULT_SOURCE),
                        2 => {
                            e = e
                                .with_source("/shop/billing")
                                .with_cloud_id(format!("b-{n}"));
                        }
                        _ => {}
                    }
                    match n % 6 {
                        0 => e = e.with_subject("subject-1"),
                        1 => e = e.with_subject(format!("order-{}", n % 3)),
                        2 => e = e.with_subject("sub"),
                        _ => {}
                    }
                    match n % 4 {
                        0 => e = e.with_time(Timestamp::from_unix_micros(now - (n + 1) * DAY)),
                        1 => e = e.with_time(Timestamp::from_unix_micros(now + (n + 1) * HOUR)),
                        _ => {}
                    }
                    e
                })
                .collect();
            store
                .append(&stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
    }
    Timestamp::from_unix_micros(now)
}

/// The queries the comparison runs (each in both directions).
fn shapes(now: Timestamp, positions: &[u64]) -> Vec<EventQuery> {
    let t = |offset: i64| Timestamp::from_unix_micros(now.as_unix_micros() + offset);
    let mid = Position::new(positions[positions.len() / 2]);
    let quarter = Position::new(positions[positions.len() / 4]);
    vec![
        EventQuery::new(),
        EventQuery::new().event_type("Paid"),
        EventQuery::new().event_type("Paid").event_type("Shipped"),
        EventQuery::new().event_type("Nope"),
        EventQuery::new().source("/shop/orders"),
        EventQuery::new().source(DEFAULT_SOURCE),
        EventQuery::new()
            .source("/shop/billing")
            .source(DEFAULT_SOURCE),
        EventQuery::new().source("/nowhere"),
        EventQuery::new().subject("subject-1"),
        EventQuery::new().subject("order-1"),
        EventQuery::new().subject("order-2").subject("sub"),
        EventQuery::new().subject("sub-a"),
        EventQuery::new().subject_prefix("order-1"),
        EventQuery::new().subject_prefix("sub"),
        EventQuery::new().subject_prefix(""),
        EventQuery::new().subject_prefix("x"),
        EventQuery::new().correlation_id("c-1"),
        EventQuery::new().correlation_id("c-9"),
        EventQuery::new().time_from(t(-10 * DAY)),
        EventQuery::new().time_until(t(-10 * DAY)),
        EventQuery::new().time_from(t(-HOUR)).time_until(t(HOUR)),
        EventQuery::new().time_from(t(5 * HOUR)),
        EventQuery::new().positions(quarter..mid),
        // Types and time: the first page starts at the first match.
        EventQuery::new().event_type("Paid").time_from(t(-10 * DAY)),
        EventQuery::new()
            .event_type("Placed")
            .event_type("Paid")
            .time_until(t(HOUR)),
        EventQuery::new()
            .event_type("Shipped")
            .time_from(t(-30 * DAY))
            .time_until(t(2 * HOUR))
            .offset(2),
        EventQuery::new().event_type("Nope").time_from(t(-DAY)),
        // Driven by sources or subjects, with an offset across the values.
        EventQuery::new()
            .source("/shop/orders")
            .source("/shop/billing")
            .source("/shop/orders")
            .offset(5)
            .limit(6),
        EventQuery::new()
            .subject("subject-1")
            .subject("order-10")
            .subject("sub")
            .offset(4),
        EventQuery::new().limit(5),
        EventQuery::new().offset(7),
        EventQuery::new().offset(7).limit(9),
        EventQuery::new().offset(10_000),
        EventQuery::new().event_type("Paid").offset(3).limit(4),
        EventQuery::new()
            .event_type("Placed")
            .source("/shop/orders")
            .time_from(t(-40 * DAY)),
        EventQuery::new()
            .source(DEFAULT_SOURCE)
            .subject_prefix("order-")
            .correlation_id("c-0"),
        EventQuery::new()
            .subject("order-2")
            .event_type("Paid")
            .event_type("Cancelled")
            .time_until(t(HOUR))
            .positions(quarter..Position::new(u64::MAX)),
        EventQuery::new()
            .event_type("Shipped")
            .source("/shop/billing")
            .source("/shop/orders")
            .subject("subject-1")
            .subject("order-10")
            .subject_prefix("o")
            .correlation_id("c-3")
            .time_from(t(-100 * DAY))
            .time_until(t(100 * DAY))
            .offset(1)
            .limit(3),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_match_the_reference_implementation() {
    // Small pages: every query crosses page boundaries.
    let (store, schema) = common::store_with(PostgresOptions::new().page_size(4)).await;
    let now = small_log(&store).await;
    let all: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 12 * 5 * 3);
    let positions = ids(&all);
    let (mut checked, mut answered) = (0, 0);
    for query in shapes(now, &positions) {
        for query in [query.clone(), query.descending()] {
            let got = run(&store, query.clone()).await;
            let want = reference(&store, query.clone()).await;
            assert_eq!(ids(&got), ids(&want), "{query:?}");
            assert_eq!(got, want, "{query:?}");
            assert!(got.iter().all(|e| query.matches(e)), "{query:?}");
            checked += 1;
            answered += usize::from(!got.is_empty());

            // Keyset paging, three at a time, gives the same events.
            if query.offset == 0 && query.limit.is_none() {
                let mut paged = Vec::new();
                let mut next = query.clone().limit(3);
                loop {
                    let page = run(&store, next.clone()).await;
                    assert!(page.len() <= 3);
                    let Some(last) = page.last() else { break };
                    next = match query.direction {
                        annals_postgres::Direction::Forward => next.after(last.position),
                        annals_postgres::Direction::Backward => next.before(last.position),
                    };
                    paged.extend(page);
                }
                assert_eq!(ids(&paged), ids(&want), "paged {query:?}");
            }
        }
    }
    eprintln!("{checked} queries compared with the reference implementation, {answered} non-empty");
    assert!(answered * 4 >= checked * 3, "most shapes select something");
    // Non-trivial answers: the defaults are queried as stored.
    let default_source = run(&store, EventQuery::new().source(DEFAULT_SOURCE)).await;
    assert!(default_source.iter().any(|e| e.metadata.source.is_none()));
    assert!(default_source.iter().any(|e| e.metadata.source.is_some()));
    let by_stream = run(&store, EventQuery::new().subject("order-1")).await;
    assert!(by_stream.iter().any(|e| e.metadata.subject.is_none()));
    assert!(by_stream.iter().any(|e| e.metadata.subject.is_some()));
    let timed = run(&store, EventQuery::new().time_until(now)).await;
    assert!(timed.iter().any(|e| e.metadata.time.is_some()));
    drop(store);
    schema.teardown().await;
}

/// Every node of a JSON plan.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for child in children {
            nodes(child, out);
        }
    }
}

fn sql_array(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

/// The literal arguments of a query's first-page statement, in the order of
/// `__query_statement`'s parameters.
fn literal_args(query: &EventQuery, page: u64) -> Vec<String> {
    let range = query.position_range();
    let mut args = vec![
        range.start.to_string(),
        range.end.to_string(),
        page.to_string(),
    ];
    if !query.event_types.is_empty() {
        args.push(sql_array(&query.event_types));
    }
    if !query.sources.is_empty() {
        args.push(sql_array(&query.sources));
    }
    if !query.subjects.is_empty() {
        args.push(sql_array(&query.subjects));
    }
    if let Some(prefix) = query.subject_prefix.as_deref().filter(|p| !p.is_empty()) {
        args.push(format!("'{prefix}'"));
    }
    if let Some(id) = &query.correlation_id {
        args.push(format!("'{id}'"));
    }
    let times = query.time_range();
    if query.time_from.is_some() {
        args.push(times.start.to_string());
    }
    if query.time_until.is_some() {
        args.push(times.end.to_string());
    }
    if query.offset > 0 {
        args.push(query.offset.to_string());
    }
    args
}

/// Explains `query`'s first-page statement with a custom plan and under
/// `force_generic_plan`; returns both plans' node summaries.
async fn explain(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    query: &EventQuery,
) -> [(String, Vec<Value>); 2] {
    let (sql, types) = annals_postgres::__query_statement(schema, query);
    let args = literal_args(query, 100);
    assert_eq!(args.len(), types.len(), "{name}: arguments for {sql}");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "PREPARE q ({}) AS {sql}",
        types.join(", ")
    )))
    .execute(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("{name}: PREPARE failed: {e}\n{sql}"));
    let mut out = Vec::new();
    for mode in ["auto", "force_generic_plan"] {
        sqlx::raw_sql(AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .unwrap();
        let row = sqlx::query(AssertSqlSafe(format!(
            "EXPLAIN (FORMAT JSON) EXECUTE q ({})",
            args.join(", ")
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name}: EXPLAIN failed: {e}"));
        let text: String = row.try_get_unchecked(0).unwrap();
        let explained: Value = serde_json::from_str(&text).unwrap();
        let mut all = Vec::new();
        nodes(explained.pointer("/0/Plan").unwrap(), &mut all);
        out.push((mode.to_owned(), all));
    }
    sqlx::raw_sql("DEALLOCATE q; RESET plan_cache_mode")
        .execute(&mut *conn)
        .await
        .unwrap();
    let [custom, generic]: [(String, Vec<Value>); 2] = out.try_into().unwrap();
    [custom, generic]
}

/// `Index Scan using events_pkey (Backward)`, `Sort`, … for the report.
fn describe(plan: &[Value]) -> String {
    plan.iter()
        .filter(|n| n["Node Type"] != "Result" || n.get("Relation Name").is_some())
        .map(|n| {
            let mut s = n["Node Type"].as_str().unwrap_or("?").to_owned();
            if let Some(index) = n.get("Index Name").and_then(Value::as_str) {
                s += &format!(" using {index}");
            }
            if n.get("Scan Direction").and_then(Value::as_str) == Some("Backward") {
                s += " (Backward)";
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure<F, Fut>(runs: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..10 {
        f().await;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f().await;
        times.push(start.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

const BIG: i64 = 1_000_000;

/// A million events, inserted by `generate_series`: 10 types, 50,000 streams
/// over 30 days; 5% with a source (50 of them), 5% with a subject (5,000), 5%
/// with a correlation id (1,000), 10% with an event time an hour before the
/// recorded one. In statements of 10,000 rows: a transaction holds back every
/// gap-safe reader of the database while it runs (its positions could still
/// commit), so one long insert would block other tests' reads past
/// `read_settle_timeout`.
async fn fill(conn: &mut PgConnection, schema: &str) {
    let s = format!("\"{schema}\"");
    const CHUNK: i64 = 10_000;
    for chunk in 0..BIG / CHUNK {
        let (first, last) = (chunk * CHUNK + 1, (chunk + 1) * CHUNK);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "INSERT INTO {s}.events (position, event_id, stream_id, version, event_type, \
                                     content_type, payload, metadata, recorded_at) \
             SELECT g, md5(g::text)::uuid, 'stream-' || (g % 50000), g / 50000 + 1, \
                    'type-' || (g % 10), 'application/json', '\\x7b7d'::bytea, \
                    jsonb_strip_nulls(jsonb_build_object( \
                        'ce_source', CASE WHEN g % 20 = 1 THEN '/src/' || (g / 20 % 50) END, \
                        'ce_subject', CASE WHEN g % 20 = 2 THEN 'subject-' || (g / 20 % 5000) END, \
                        'correlation_id', CASE WHEN g % 20 = 3 THEN 'corr-' || (g / 20 % 1000) END, \
                        'ce_time', CASE WHEN g % 10 = 4 \
                            THEN (extract(epoch FROM t) * 1000000)::bigint - {HOUR} END)), \
                    t \
             FROM generate_series({first}, {last}) AS g, \
                  LATERAL (SELECT now() - interval '30 days' + g * interval '2592 milliseconds' AS t) AS x"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {s}.events")))
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_queries_use_indexes_even_with_generic_plans() {
    let (store, schema) = common::store().await;
    let mut conn = PgConnection::connect(schema.url()).await.unwrap();
    let started = Instant::now();
    fill(&mut conn, schema.name()).await;
    let filled = started.elapsed();

    let day_ago = Timestamp::from_unix_micros(Timestamp::now().as_unix_micros() - DAY);
    let shapes = [
        (
            "type+time",
            EventQuery::new()
                .event_type("type-3")
                .time_from(day_ago)
                .limit(100),
        ),
        (
            "type+time range",
            EventQuery::new()
                .event_type("type-3")
                .time_from(Timestamp::from_unix_micros(
                    day_ago.as_unix_micros() - 3 * DAY,
                ))
                .time_until(day_ago)
                .limit(100),
        ),
        ("source", EventQuery::new().source("/src/7").limit(100)),
        (
            "subject",
            EventQuery::new().subject("subject-42").limit(100),
        ),
        (
            "correlation id",
            EventQuery::new().correlation_id("corr-42").limit(100),
        ),
    ];
    let mut failures = Vec::new();
    for (name, query) in &shapes {
        for query in [query.clone(), query.clone().descending()] {
            let dir = if query.direction == annals_postgres::Direction::Backward {
                "desc"
            } else {
                "asc"
            };
            for (mode, plan) in explain(&mut conn, schema.name(), name, &query).await {
                let summary = describe(&plan);
                eprintln!("{name} {dir} [{mode}]: {summary}");
                let seq = plan
                    .iter()
                    .any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "events");
                if seq {
                    failures.push(format!("{name} {dir} [{mode}]: {summary}"));
                }
            }
            // The statement returns what the reference does.
            let got = run(&store, query.clone()).await;
            assert!(!got.is_empty(), "{name} {dir}");
            assert!(got.iter().all(|e| query.matches(e)), "{name} {dir}");
        }
    }
    assert!(
        failures.is_empty(),
        "sequential scans:\n{}",
        failures.join("\n")
    );

    // Latency: the first page of 100 of one type in the last day, both ways…
    let last_day = EventQuery::new()
        .event_type("type-3")
        .time_from(day_ago)
        .limit(100);
    for query in [last_day.clone(), last_day.descending()] {
        let (p50, p99) = measure(200, || async {
            let page = run(&store, query.clone()).await;
            assert_eq!(page.len(), 100);
        })
        .await;
        eprintln!(
            "type + last day, first 100, {:?}: p50 {p50:?}, p99 {p99:?}",
            query.direction
        );
    }
    // …and `get_by_source_id` (an event-id lookup) among a million events.
    let stream = StreamId::new("cloud-events").unwrap();
    let events: Vec<NewEvent> = (0..200)
        .map(|i| {
            NewEvent::new("Imported", "{}")
                .with_source("/import")
                .with_cloud_id(format!("imp-{i}"))
        })
        .collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    let mut i = 0;
    let (p50, p99) = measure(200, || {
        i += 1;
        let id = format!("imp-{}", i % 200);
        let store = &store;
        async move {
            let found = store.get_by_source_id("/import", &id).await.unwrap();
            assert_eq!(found.cloud_id(), id);
        }
    })
    .await;
    eprintln!("get_by_source_id: p50 {p50:?}, p99 {p99:?}");
    eprintln!(
        "filled {BIG} events in {filled:?}; whole test {:?}",
        started.elapsed()
    );
    drop(conn);
    drop(store);
    schema.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_migrated_before_0004_upgrades_and_answers_queries() {
    let schema = TestSchema::create().await;
    let quoted = format!("\"{}\"", schema.name());
    let mut conn = PgConnection::connect(schema.url()).await.unwrap();

    // The previous version: migrations 0001–0003, applied by sqlx as the store
    // did (no lock, search_path = the schema).
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {quoted}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut migrator = sqlx::migrate!("../migrations/postgres");
    migrator.set_locking(false);
    migrator
        .run_direct(Some(3), &mut conn, false)
        .await
        .unwrap();
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied, [1, 2, 3]);

    // Events as the old code wrote them: positions from the transaction id,
    // metadata `{}`, a correlation id, application fields — and one whose
    // application field happens to be called `ce_time` (allowed then).
    let old = [
        ("order-1", 1, "Placed", "{}"),
        ("order-1", 2, "Paid", r#"{"correlation_id":"req-1"}"#),
        (
            "order-2",
            1,
            "Placed",
            r#"{"correlation_id":"req-1","user":"alice"}"#,
        ),
        ("legacy", 1, "Odd", r#"{"ce_time":"soon"}"#),
    ];
    for (i, (stream, version, ty, meta)) in old.iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (position, event_id, stream_id, version, event_type, \
                                 content_type, payload, metadata) \
             VALUES (position_base() + 1, $1, $2, $3, $4, 'application/json', '{}', $5::jsonb)",
        )
        .bind(*annals_postgres::EventId::new().as_uuid())
        .bind(*stream)
        .bind(i64::from(*version))
        .bind(*ty)
        .bind(*meta)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("old row {i}: {e}"));
    }
    conn.close().await.unwrap();

    // The new version connects: 0004 and 0005 run over the old rows.
    let store = PostgresEventStore::connect_with(
        schema.url(),
        PostgresOptions::new().schema(schema.name()),
    )
    .await
    .unwrap();
    let mut conn = PgConnection::connect(schema.url()).await.unwrap();
    let newest: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {quoted}._sqlx_migrations WHERE success"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(newest, 5);
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = ANY($2)",
    )
    .bind(schema.name())
    .bind(vec![
        "events_type_time_position_idx",
        "events_ce_source_idx",
        "events_ce_subject_idx",
        "events_correlation_id_idx",
    ])
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(indexes, 4);
    // 0005: the replaced expression index is gone, and autovacuum visits the
    // insert-only log every 10,000 events (index-only scans of the new index).
    let gone: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'events_type_time_idx'",
    )
    .bind(schema.name())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(gone, 0);
    let options: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(c.reloptions) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'events' ORDER BY 1",
    )
    .bind(schema.name())
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        options,
        [
            "autovacuum_vacuum_insert_scale_factor=0",
            "autovacuum_vacuum_insert_threshold=10000"
        ]
    );
    // The legacy `ce_time` made no trouble for the migration; the current core
    // cannot decode that row (`ce_` names are reserved now), so it goes.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DELETE FROM {quoted}.events WHERE stream_id = 'legacy'"
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    // Every old event intact, with default attributes.
    let all: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].stream_id.as_str(), "order-1");
    assert_eq!(all[1].metadata.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(all[2].metadata.extra["user"], "alice");
    for e in &all {
        assert_eq!(e.source(), DEFAULT_SOURCE);
        assert_eq!(e.subject(), e.stream_id.as_str());
        assert_eq!(e.time(), e.recorded_at);
    }

    // Queries work on them…
    let req = run(&store, EventQuery::new().correlation_id("req-1")).await;
    assert_eq!(ids(&req), ids(&all[1..]));
    let order1 = run(&store, EventQuery::new().subject("order-1").descending()).await;
    assert_eq!(ids(&order1), [all[1].position.get(), all[0].position.get()]);
    let defaults = run(&store, EventQuery::new().source(DEFAULT_SOURCE)).await;
    assert_eq!(defaults, all);
    let hour_ago = Timestamp::from_unix_micros(Timestamp::now().as_unix_micros() - HOUR);
    let recent = run(
        &store,
        EventQuery::new().event_type("Placed").time_from(hour_ago),
    )
    .await;
    assert_eq!(ids(&recent), [all[0].position.get(), all[2].position.get()]);

    // …and new events carry attributes.
    let stream = StreamId::new("order-3").unwrap();
    let past = Timestamp::from_unix_micros(hour_ago.as_unix_micros() - DAY);
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Placed", "{}")
                .with_source("/shop")
                .with_cloud_id("A-1")
                .with_subject("customer-9")
                .with_time(past)],
        )
        .await
        .unwrap();
    let found = store.get_by_source_id("/shop", "A-1").await.unwrap();
    assert_eq!(found.subject(), "customer-9");
    assert_eq!(found.time(), past);
    let by_source = run(&store, EventQuery::new().source("/shop")).await;
    assert_eq!(by_source, std::slice::from_ref(&found));
    let by_subject = run(&store, EventQuery::new().subject("customer-9")).await;
    assert_eq!(by_subject, std::slice::from_ref(&found));
    let placed_recently = run(
        &store,
        EventQuery::new().event_type("Placed").time_from(hour_ago),
    )
    .await;
    assert_eq!(placed_recently.len(), 2, "the new event happened a day ago");
    let placed_before = run(
        &store,
        EventQuery::new().event_type("Placed").time_until(hour_ago),
    )
    .await;
    assert_eq!(placed_before, [found]);

    // 0005's generated column agrees with 0004's function on every row, old
    // and new (it spells out the function's body).
    let disagree: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {quoted}.events \
         WHERE event_time IS DISTINCT FROM {quoted}.event_time_micros(metadata, recorded_at)"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(disagree, 0);

    conn.close().await.unwrap();
    drop(store);
    schema.teardown().await;
}
