//! Queries on a 1,000,000-event log (issue 15 §6), SQLite and PostgreSQL:
//!
//! * `{backend}/query/type_last_day_{asc,desc}` — `EventQuery` for one event type
//!   whose time is in the last day, first page of 100, ascending and descending;
//! * `{backend}/get_by_source_id` — one event by its CloudEvents `(source, id)`;
//! * a paired append pass: 100-event batches (the benches' usual events, each
//!   with a correlation id) on a store whose query indexes were dropped — the
//!   schema before the queries migration, "today's" append — then the same on
//!   the current schema, then with CloudEvents attributes (source, caller id,
//!   subject, time, one extension; `ANNALS_BENCH_ATTRS_WITHOUT=id,subject`
//!   leaves out caller ids and/or subjects); alternating round by round, median
//!   events/s of each and the ratios to the first.
//!
//! PostgreSQL's latency pass runs twice: right after the fill, and after a
//! `VACUUM (ANALYZE)` (what autovacuum does for an insert-only log).
//!
//! Latency percentiles (p50/p99 over `runs()` runs) print to stderr, beside
//! criterion's means. The log spans 30 days, ten event types in turn; every
//! twentieth event has a source and a caller id, a subject and a correlation id.
//! `cargo bench -p annals-benches --bench queries` (`ANNALS_BENCH_QUERY_EVENTS`
//! changes the log size; PostgreSQL is resolved like the tests').
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::time::{Duration, Instant};

use annals_benches::{events, runtime};
use annals_core::{EventQuery, EventStore, ExpectedVersion, NewEvent, StreamId, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion};
use futures::TryStreamExt;

/// True under `cargo bench` (criterion gets `--bench`); false when `cargo test
/// --benches` runs each benchmark once, where every pass shrinks to a smoke run.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Runs per latency figure.
fn runs() -> usize {
    if measuring() {
        200
    } else {
        3
    }
}
const DAY: i64 = 86_400_000_000;

fn log_size() -> usize {
    std::env::var("ANNALS_BENCH_QUERY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring() { 1_000_000 } else { 10_000 })
}

/// The `i`-th event of the log: type `type{i % 10}`, time spread over 30 days up
/// to `now`; every 20th with source, caller id, subject and correlation id.
fn logged(i: usize, total: usize, now: i64) -> NewEvent {
    let time = now - 30 * DAY + (30 * DAY / total as i64) * i as i64;
    let mut event = NewEvent::new(format!("type{}", i % 10), r#"{"n":1}"#)
        .with_time(Timestamp::from_unix_micros(time));
    if i % 20 == 7 {
        event = event
            .with_source(format!("/src/{}", i % 5))
            .with_cloud_id(format!("E-{i}"))
            .with_subject(format!("customer/{}", i % 1000));
        event.metadata.correlation_id = Some(format!("req-{}", i % 5000));
    }
    event
}

async fn fill(store: &dyn EventStore, total: usize) -> i64 {
    let now = Timestamp::now().as_unix_micros();
    let start = Instant::now();
    for batch in 0..total / 1000 {
        let stream = StreamId::new(format!("s-{batch}")).unwrap();
        let events = (batch * 1000..(batch + 1) * 1000)
            .map(|i| logged(i, total, now))
            .collect();
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    eprintln!(
        "filled {total} events in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    now
}

fn percentiles(mut latencies: Vec<Duration>) -> (f64, f64) {
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.50), at(0.99))
}

fn last_day(now: i64, descending: bool) -> EventQuery {
    let q = EventQuery::new()
        .event_type("type3")
        .time_from(Timestamp::from_unix_micros(now - DAY))
        .limit(100);
    if descending {
        q.descending()
    } else {
        q
    }
}

/// The latency pass and criterion groups for one store; `settle`, if given,
/// runs after them (PostgreSQL: `VACUUM`) and the latency pass is repeated.
fn measure(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: &dyn EventStore,
    settle: Option<&dyn Fn()>,
) {
    let total = log_size();
    let now = rt.block_on(fill(store, total));
    let lookups: Vec<(String, String)> = (0..runs())
        .map(|r| {
            let i = (r * 7919 * 20 + 7) % total;
            let i = i - i % 20 + 7;
            (format!("/src/{}", i % 5), format!("E-{i}"))
        })
        .collect();
    latencies(name, rt, store, now, &lookups);
    for (label, descending) in [("asc", false), ("desc", true)] {
        let q = last_day(now, descending);
        c.bench_function(&format!("{name}/query/type_last_day_{label}"), |b| {
            b.iter(|| {
                let page: Vec<_> = rt.block_on(store.query(q.clone()).try_collect()).unwrap();
                page.len()
            });
        });
    }
    let mut next = 0;
    c.bench_function(&format!("{name}/get_by_source_id"), |b| {
        b.iter(|| {
            let (source, id) = &lookups[next % lookups.len()];
            next += 1;
            rt.block_on(store.get_by_source_id(source, id)).unwrap()
        });
    });
    if let Some(settle) = settle {
        settle();
        latencies(&format!("{name} (settled)"), rt, store, now, &lookups);
    }
}

/// p50/p99 of the type + last day query (both directions) and of the lookups,
/// printed.
fn latencies(
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: &dyn EventStore,
    now: i64,
    lookups: &[(String, String)],
) {
    for (label, descending) in [("asc", false), ("desc", true)] {
        let q = last_day(now, descending);
        let mut latencies = Vec::with_capacity(runs());
        for _ in 0..runs() {
            let start = Instant::now();
            let page: Vec<_> = rt.block_on(store.query(q.clone()).try_collect()).unwrap();
            latencies.push(start.elapsed());
            assert!(!page.is_empty() && page.len() <= 100);
        }
        let (p50, p99) = percentiles(latencies);
        eprintln!("{name} type+last day, first 100, {label}: p50 {p50:.2} ms, p99 {p99:.2} ms");
    }
    let mut latencies = Vec::with_capacity(runs());
    for (source, id) in lookups {
        let start = Instant::now();
        rt.block_on(store.get_by_source_id(source, id)).unwrap();
        latencies.push(start.elapsed());
    }
    let (p50, p99) = percentiles(latencies);
    eprintln!("{name} get_by_source_id: p50 {p50:.3} ms, p99 {p99:.3} ms");
}

/// 100-event batches: plain on `before` (no query indexes), plain on `store`,
/// with attributes on `store`; alternating in 7 rounds of 100 batches each
/// (one round of 2 under `cargo test`).
/// Prints the median events/s of each and the median ratios to the first.
fn paired_appends(
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: &dyn EventStore,
    before: &dyn EventStore,
) {
    let (rounds, batches) = if measuring() { (7, 100) } else { (1, 2) };
    // `ANNALS_BENCH_ATTRS_WITHOUT=id,subject`: leave out the caller ids and/or
    // the subjects, to see what each costs.
    let without = std::env::var("ANNALS_BENCH_ATTRS_WITHOUT").unwrap_or_default();
    let attributed = |n: usize| -> Vec<NewEvent> {
        let now = Timestamp::now();
        events(100)
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e
                    .with_source("/shop/orders")
                    .with_time(now)
                    .with_extension("tenant", "acme");
                if !without.contains("id") {
                    e = e.with_cloud_id(format!("A-{n}-{i}"));
                }
                if !without.contains("subject") {
                    e = e.with_subject(format!("customer/{i}"));
                }
                e
            })
            .collect()
    };
    let mut next = 0usize;
    let mut run = |target: &dyn EventStore, with: bool| -> f64 {
        let inputs: Vec<_> = (0..batches)
            .map(|_| {
                next += 1;
                let stream = StreamId::new(format!("append-{next}")).unwrap();
                let batch = if with { attributed(next) } else { events(100) };
                (stream, batch)
            })
            .collect();
        let start = Instant::now();
        rt.block_on(async {
            for (stream, batch) in inputs {
                target
                    .append(&stream, ExpectedVersion::NoStream, batch)
                    .await
                    .unwrap();
            }
        });
        (batches * 100) as f64 / start.elapsed().as_secs_f64()
    };
    let mut figures: [Vec<f64>; 5] = Default::default();
    for _ in 0..rounds {
        let old = run(before, false);
        let plain = run(store, false);
        let rich = run(store, true);
        for (v, x) in figures
            .iter_mut()
            .zip([old, plain, rich, plain / old, rich / old])
        {
            v.push(x);
        }
    }
    for v in &mut figures {
        v.sort_by(f64::total_cmp);
    }
    let m = |i: usize| figures[i][rounds / 2];
    eprintln!(
        "{name} append100: before the query indexes {:.0} events/s; now {:.0} ({:.2}x); with attributes {:.0} ({:.2}x)",
        m(0),
        m(1),
        m(3),
        m(2),
        m(4)
    );
}

/// Which passes run: `ANNALS_BENCH_QUERY_PART=queries|appends` (default both).
fn part(name: &str) -> bool {
    std::env::var("ANNALS_BENCH_QUERY_PART").map_or(true, |p| p == name)
}

fn sqlite(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let open = |file: &str| {
        rt.block_on(annals_sqlite::SqliteEventStore::open(dir.path().join(file)))
            .unwrap()
    };
    if part("queries") {
        measure(c, "sqlite", &rt, &open("q.db"), None);
    }
    if part("appends") {
        // Two fresh stores of the same size; one without the query indexes.
        let (store, before) = (open("now.db"), open("before.db"));
        let conn = rusqlite::Connection::open(dir.path().join("before.db")).unwrap();
        conn.execute_batch(
            "DROP INDEX events_type_time; DROP INDEX events_ce_source; \
             DROP INDEX events_ce_subject; DROP INDEX events_correlation_id;",
        )
        .unwrap();
        paired_appends("sqlite", &rt, &store, &before);
    }
}

fn postgres(c: &mut Criterion) {
    use annals_postgres::{PostgresEventStore, PostgresOptions};
    use annals_testing::postgres::{database_url, drop_schema, unique_schema_name};
    let rt = runtime();
    let url = rt.block_on(database_url());
    let schema = unique_schema_name().replacen("annals_test_", "annals_bench_", 1);
    let connect = |schema: &str| {
        rt.block_on(PostgresEventStore::connect_with(
            &url,
            PostgresOptions::new().schema(schema),
        ))
        .unwrap()
    };
    let schemas = [
        schema.clone(),
        format!("{schema}_now"),
        format!("{schema}_before"),
    ];
    if part("queries") {
        let store = connect(&schemas[0]);
        // What autovacuum does for an insert-only log (migration 0005 asks for
        // it every 10,000 events): the latency pass again on a vacuumed table.
        let vacuum = || {
            rt.block_on(
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "VACUUM (ANALYZE) \"{}\".events",
                    schemas[0]
                )))
                .execute(store.pool()),
            )
            .unwrap();
        };
        measure(c, "postgres", &rt, &store, Some(&vacuum));
    }
    if part("appends") {
        let (store, before) = (connect(&schemas[1]), connect(&schemas[2]));
        rt.block_on(
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP INDEX \"{b}\".events_type_time_position_idx, \"{b}\".events_ce_source_idx, \
                 \"{b}\".events_ce_subject_idx, \"{b}\".events_correlation_id_idx",
                b = schemas[2]
            )))
            .execute(before.pool()),
        )
        .unwrap();
        paired_appends("postgres", &rt, &store, &before);
    }
    rt.block_on(async {
        for schema in &schemas {
            drop_schema(&url, schema).await;
        }
    });
}

criterion_group!(
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = sqlite, postgres
);
criterion_main!(benches);
