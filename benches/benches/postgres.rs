//! PostgreSQL backend: append and replay throughput (events/s), against plain SQL
//! through the same driver (sqlx) as the ratio base.
//!
//! `cargo bench -p annals-benches --bench postgres` (about 4 minutes; add
//! `-- --quick` for a short run). The database is found like the tests find it
//! (`DATABASE_URL`, else `127.0.0.1:5432` user `postgres`, else testcontainers);
//! the bench works in two fresh schemas, `annals_bench_<random>` (the store) and
//! `annals_bench_<random>_raw` (the base), both dropped at the end. Groups:
//!
//! * `postgres/append/{1,10,100,1000}` — one `append` of a batch of that many
//!   events to a new stream (`ExpectedVersion::NoStream`): validation, one
//!   statement (the stream's version, then `INSERT … SELECT FROM unnest(…)` with
//!   positions from the transaction id), commit.
//! * `postgres_raw/append/{n}` — the base: one plain multi-row
//!   `INSERT … VALUES (…), (…)` of the same rows into a table of the same shape
//!   (same constraints and indexes), positions from a sequence, autocommit; no
//!   checks.
//! * `postgres/append_single/tasks/{1,4,16,64}` — single-event appends (`Exact`)
//!   from 1 to 64 tasks, each to its own stream, with group commit (the default);
//!   `postgres_ungrouped/append_single/…` the same with `max_group(1)`.
//! * `postgres_raw/append_single/tasks/{1,4,16,64}` — the base: single-row
//!   `INSERT` commits from as many tasks.
//! * `postgres/load_stream/10000` — load + fold one 10,000-event stream among
//!   others; `postgres_loop/load_stream/10000` the same by a hand-written sqlx
//!   loop (one `SELECT` in version order, decoded into owned values, folded).
//! * `ANNALS_BENCH_LATENCY=1`: also a paired pass of the three, events/s and
//!   p50/p99 latency per append (printed to stderr).
//! * `postgres/read_stream/100000`, `postgres/read_all/100000` — replay of 100,000
//!   events decoded into `RecordedEvent`s through the `futures::Stream` API.
//! * `postgres_raw/read_stream/100000`, `postgres_raw/read_all/100000` — the base:
//!   one plain `SELECT` of the same columns (every field a `RecordedEvent`
//!   carries, `recorded_at` included), streamed with sqlx and decoded into owned
//!   Rust values.
//! * `ANNALS_BENCH_PAIRED_READS=1`: also a paired pass of the four reads, 25
//!   rounds alternating store and base, printing medians and the per-round
//!   store/base ratios (to stderr); the figure to quote on a machine whose speed
//!   drifts between criterion groups.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use annals_benches::{
    bench_group, events, fill_load_stream, payload, replay_all, replay_stream, runtime,
    single_event_appends, spawn_each, transfer_group,
};
use annals_postgres::{
    EventStore, ExpectedVersion, PostgresEventStore, PostgresOptions, StreamId, Version,
};
use annals_testing::postgres::{database_url, drop_schema, unique_schema_name};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use sqlx::{postgres::PgPoolOptions, AssertSqlSafe, PgPool, Row};

const REPLAY: u64 = 100_000;
const POOL: u32 = 20;

/// The bench's database: a store in its own schema, and a plain pool plus schema
/// (same table shape, created by the same migration) for the raw base.
struct Bench {
    url: String,
    store: PostgresEventStore,
    /// A second store on the same schema with group commit off (`max_group(1)`).
    ungrouped: PostgresEventStore,
    raw: PgPool,
    raw_schema: String,
}

impl Bench {
    /// `warm`: append a few events first to open every pooled connection (the
    /// append groups); the replay group wants exactly its own events.
    async fn new(warm: bool) -> Self {
        let url = database_url().await;
        let schema = unique_schema_name().replacen("annals_test_", "annals_bench_", 1);
        let raw_schema = format!("{schema}_raw");
        let store = PostgresEventStore::connect_with(
            &url,
            PostgresOptions::new().schema(&schema).max_connections(POOL),
        )
        .await
        .unwrap();
        let ungrouped = PostgresEventStore::connect_with(
            &url,
            PostgresOptions::new()
                .schema(&schema)
                .max_connections(POOL)
                .max_group(1),
        )
        .await
        .unwrap();
        // The same migration creates the base's table, so both have identical
        // columns, constraints and indexes.
        PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&raw_schema))
            .await
            .unwrap();
        let raw = PgPoolOptions::new()
            .max_connections(POOL)
            .connect(&url)
            .await
            .unwrap();
        // The base numbers its rows the plain way: a sequence (`nextval` per row).
        sqlx::query(AssertSqlSafe(format!(
            "CREATE SEQUENCE \"{raw_schema}\".raw_position_seq AS bigint"
        )))
        .execute(&raw)
        .await
        .unwrap();
        // Open every pooled connection and warm the statement caches before any
        // measurement (the first appends would otherwise pay for connecting).
        let warm_store = (0..if warm { POOL * 4 } else { 0 }).map(|i| {
            let store = if i % 2 == 0 { &store } else { &ungrouped };
            async move {
                let stream = StreamId::new(format!("warm-{i}")).unwrap();
                store
                    .append(&stream, ExpectedVersion::Any, events(1))
                    .await
                    .unwrap();
            }
        });
        futures::future::join_all(warm_store).await;
        let warm_raw = (0..POOL * 2).map(|_| sqlx::query("SELECT 1").execute(&raw));
        for result in futures::future::join_all(warm_raw).await {
            result.unwrap();
        }
        Bench {
            url,
            store,
            ungrouped,
            raw,
            raw_schema,
        }
    }

    async fn drop(self) {
        let schema = self.store.schema().to_owned();
        self.store.pool().close().await;
        self.ungrouped.pool().close().await;
        self.raw.close().await;
        drop_schema(&self.url, &schema).await;
        drop_schema(&self.url, &self.raw_schema).await;
    }
}

const COLUMNS: &str =
    "position, event_id, stream_id, version, event_type, content_type, payload, metadata";

fn insert_sql(schema: &str, rows: usize) -> String {
    let mut sql = format!("INSERT INTO \"{schema}\".events ({COLUMNS}) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        let p = i * 7;
        sql.push_str(&format!(
            "(nextval('\"{schema}\".raw_position_seq'),${},${},${},${},${},${},${}::jsonb)",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7
        ));
    }
    sql
}

/// The raw append: the same rows the store writes, one multi-row INSERT, autocommit.
async fn raw_append(pool: &PgPool, sql: &str, stream: &str, first_version: i64, n: usize) {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
    for i in 0..n {
        query = query
            .bind(uuid_v7())
            .bind(stream.to_owned())
            .bind(first_version + i as i64)
            .bind("OrderPlaced.v1")
            .bind("application/json")
            .bind(payload(i).into_bytes())
            .bind(r#"{"correlation_id":"bench-request"}"#);
    }
    query.execute(pool).await.unwrap();
}

/// Concurrent tasks in the single-event groups.
const TASKS: [usize; 4] = [1, 4, 16, 64];

/// `tasks` spawned tasks, each making `per_task` plain single-row commits to its
/// own stream — spawned like the store's appenders in
/// [`single_event_appends`], so both sides use the runtime's workers the same way.
/// Returns every commit's latency.
async fn raw_single_appends(
    raw: &PgPool,
    sql: &Arc<str>,
    tasks: usize,
    per_task: usize,
    first: u64,
) -> Vec<Duration> {
    spawn_each(tasks, |t| {
        let (raw, sql) = (raw.clone(), Arc::clone(sql));
        async move {
            let stream = format!("single-{}", first + t as u64);
            let mut latencies = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let start = Instant::now();
                raw_append(&raw, &sql, &stream, i as i64 + 1, 1).await;
                latencies.push(start.elapsed());
            }
            latencies
        }
    })
    .await
}

/// The latency pass (`ANNALS_BENCH_LATENCY=1`): for 1/4/16/64 tasks, 5 rounds
/// alternating group commit, group commit off and plain commits, 1,024 appends
/// per side and round (64 tasks: 32 each); prints the median round's events/s
/// and p50/p99 latency over all rounds.
fn latency(rt: &tokio::runtime::Runtime, bench: &Bench, streams: &AtomicU64) {
    let sql: Arc<str> = insert_sql(&bench.raw_schema, 1).into();
    let (grouped, ungrouped) = (
        Arc::new(bench.store.clone()),
        Arc::new(bench.ungrouped.clone()),
    );
    for tasks in TASKS {
        let per_task = (1024 / tasks).max(16);
        let mut figures: [(Vec<f64>, Vec<Duration>); 3] = Default::default();
        for _ in 0..5 {
            for (side, (rates, latencies)) in figures.iter_mut().enumerate() {
                let first = streams.fetch_add(tasks as u64, Ordering::Relaxed);
                let start = Instant::now();
                let measured = rt.block_on(async {
                    match side {
                        0 => {
                            single_event_appends(Arc::clone(&grouped), tasks, per_task, first).await
                        }
                        1 => {
                            single_event_appends(Arc::clone(&ungrouped), tasks, per_task, first)
                                .await
                        }
                        _ => raw_single_appends(&bench.raw, &sql, tasks, per_task, first).await,
                    }
                });
                rates.push((tasks * per_task) as f64 / start.elapsed().as_secs_f64());
                latencies.extend(measured);
            }
        }
        let mut line = format!("postgres single appends, {tasks} tasks:");
        let mut medians = [0.0_f64; 3];
        for ((rates, lat), (name, median)) in figures
            .iter_mut()
            .zip(["grouped", "ungrouped", "plain"].iter().zip(&mut medians))
        {
            rates.sort_by(f64::total_cmp);
            *median = rates[2];
            lat.sort();
            let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_micros();
            line += &format!(
                " {name} {median:.0}/s p50 {} µs p99 {} µs;",
                at(0.5),
                at(0.99)
            );
        }
        eprintln!("{line} grouped/plain {:.2}", medians[0] / medians[2]);
    }
}

fn uuid_v7() -> sqlx::types::Uuid {
    *annals_postgres::EventId::new().as_uuid()
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(Bench::new(true));
    let streams = AtomicU64::new(0);

    for size in [1usize, 10, 100, 1000] {
        let mut g = bench_group(c, "postgres/append", 10, 5);
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.to_async(&rt).iter_batched(
                || {
                    let n = streams.fetch_add(1, Ordering::Relaxed);
                    (StreamId::new(format!("order-{n}")).unwrap(), events(size))
                },
                |(stream, batch)| {
                    let store = &bench.store;
                    async move {
                        store
                            .append(&stream, ExpectedVersion::NoStream, batch)
                            .await
                            .unwrap()
                    }
                },
                BatchSize::SmallInput,
            );
        });
        g.finish();

        let sql = insert_sql(&bench.raw_schema, size);
        let mut g = bench_group(c, "postgres_raw/append", 10, 5);
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.to_async(&rt).iter_batched(
                || format!("order-{}", streams.fetch_add(1, Ordering::Relaxed)),
                |stream| {
                    let (raw, sql) = (&bench.raw, &sql);
                    async move { raw_append(raw, sql, &stream, 1, size).await }
                },
                BatchSize::SmallInput,
            );
        });
        g.finish();
    }

    // Single-event appends from 1/4/16/64 concurrent tasks, each to its own
    // stream: group commit (the default), group commit off, plain commits.
    const PER_TASK: usize = 50;
    for (name, store) in [
        ("postgres/append_single", &bench.store),
        ("postgres_ungrouped/append_single", &bench.ungrouped),
    ] {
        let store = Arc::new(store.clone());
        let mut g = bench_group(c, name, 10, 6);
        for tasks in TASKS {
            g.throughput(Throughput::Elements((tasks * PER_TASK) as u64));
            g.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
                b.to_async(&rt).iter(|| {
                    let store = Arc::clone(&store);
                    let first = streams.fetch_add(tasks as u64, Ordering::Relaxed);
                    single_event_appends(store, tasks, PER_TASK, first)
                });
            });
        }
        g.finish();
    }

    let raw = bench.raw.clone();
    let sql: Arc<str> = insert_sql(&bench.raw_schema, 1).into();
    let mut g = bench_group(c, "postgres_raw/append_single", 10, 6);
    for tasks in TASKS {
        g.throughput(Throughput::Elements((tasks * PER_TASK) as u64));
        g.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            b.to_async(&rt).iter(|| {
                let first = streams.fetch_add(tasks as u64, Ordering::Relaxed);
                raw_single_appends(&raw, &sql, tasks, PER_TASK, first)
            });
        });
    }
    g.finish();

    if std::env::var_os("ANNALS_BENCH_LATENCY").is_some() {
        latency(&rt, &bench, &streams);
    }
    rt.block_on(bench.drop());
}

/// The columns the plain reads select: every column a `RecordedEvent` carries,
/// as the store selects them.
const RAW_COLUMNS: &str = "e.position, e.event_id, e.stream_id, e.version, e.event_type, \
                           e.content_type, e.payload, e.metadata::text, e.recorded_at";

type RawRow = (
    i64,
    sqlx::types::Uuid,
    String,
    i64,
    String,
    String,
    Vec<u8>,
    String,
    i64,
);

/// A row of [`RAW_COLUMNS`] as owned values; `recorded_at` as PostgreSQL's
/// binary `timestamptz` (µs since 2000-01-01), read from the raw value (sqlx
/// decodes timestamps only through its `chrono`/`time` features).
fn decode_raw(row: &sqlx::postgres::PgRow) -> RawRow {
    use sqlx::ValueRef;
    let recorded_at = row.try_get_raw(8).unwrap();
    assert!(!recorded_at.is_null());
    let micros = i64::from_be_bytes(recorded_at.as_bytes().unwrap().try_into().unwrap());
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        row.get(7),
        micros,
    )
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(Bench::new(false));
    let stream = StreamId::new("replay").unwrap();
    rt.block_on(async {
        for chunk in 0..REPLAY / 1000 {
            bench
                .store
                .append(
                    &stream,
                    ExpectedVersion::Exact(Version::new(chunk * 1000)),
                    events(1000),
                )
                .await
                .unwrap();
        }
        sqlx::query(AssertSqlSafe(format!(
            "VACUUM ANALYZE \"{}\".events",
            bench.store.schema()
        )))
        .execute(&bench.raw)
        .await
        .unwrap();
    });
    let reads = Reads {
        store: &bench.store,
        raw: &bench.raw,
        stream: &stream,
        stream_sql: format!(
            "SELECT {RAW_COLUMNS} FROM \"{}\".events e \
             WHERE e.stream_id = $1 AND e.version >= $2 ORDER BY e.version",
            bench.store.schema()
        ),
        all_sql: format!(
            "SELECT {RAW_COLUMNS} FROM \"{}\".events e \
             WHERE e.position >= $1 ORDER BY e.position",
            bench.store.schema()
        ),
    };
    for (name, read) in READS {
        let mut g = bench_group(c, name, 10, 8);
        g.throughput(Throughput::Elements(REPLAY));
        g.bench_function(BenchmarkId::from_parameter(REPLAY), |b| {
            b.to_async(&rt).iter(|| async {
                assert_eq!(read(&reads).await, REPLAY);
            });
        });
        g.finish();
    }
    if std::env::var_os("ANNALS_BENCH_PAIRED_READS").is_some() {
        paired_reads(&rt, &reads);
    }
    rt.block_on(bench.drop());
}

/// What the replay group reads: the store's 100,000-event stream (the whole
/// log), and the plain `SELECT`s of the same rows.
struct Reads<'a> {
    store: &'a PostgresEventStore,
    raw: &'a PgPool,
    stream: &'a StreamId,
    stream_sql: String,
    all_sql: String,
}

/// One replay, returning how many events it read.
type Read = for<'a> fn(&'a Reads<'a>) -> futures::future::BoxFuture<'a, u64>;

/// The replay group's reads, each store read followed by its plain base.
const READS: [(&str, Read); 4] = [
    ("postgres/read_stream", |r| {
        Box::pin(replay_stream(r.store, r.stream))
    }),
    ("postgres_raw/read_stream", |r| {
        Box::pin(raw_replay(r.raw, &r.stream_sql, Some("replay")))
    }),
    ("postgres/read_all", |r| Box::pin(replay_all(r.store))),
    ("postgres_raw/read_all", |r| {
        Box::pin(raw_replay(r.raw, &r.all_sql, None))
    }),
];

/// The plain base of a replay: `sql` (bound to the stream name if given, then
/// the first version or position, 1) streamed with sqlx, every row decoded into
/// owned values.
async fn raw_replay(raw: &PgPool, sql: &str, stream: Option<&str>) -> u64 {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
    if let Some(stream) = stream {
        query = query.bind(stream);
    }
    query
        .bind(1i64)
        .fetch(raw)
        .map(|row| decode_raw(&row.unwrap()))
        .fold(0u64, |n, row| async move { n + u64::from(row.0 > 0) })
        .await
}

/// The paired read pass (`ANNALS_BENCH_PAIRED_READS=1`): 15 rounds, each
/// running the four reads of [`READS`] once in turn, so a store read and its
/// base always run seconds apart on a machine whose speed drifts; prints each
/// read's median events/s and the median of the per-round store/base ratios.
fn paired_reads(rt: &tokio::runtime::Runtime, reads: &Reads<'_>) {
    const ROUNDS: usize = 25;
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        for ((_, read), rates) in READS.iter().zip(&mut rates) {
            let start = Instant::now();
            assert_eq!(rt.block_on(read(reads)), REPLAY);
            rates.push(REPLAY as f64 / start.elapsed().as_secs_f64());
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for pair in [0, 2] {
        let ratios = rates[pair]
            .iter()
            .zip(&rates[pair + 1])
            .map(|(store, base)| store / base)
            .collect::<Vec<_>>();
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "{}: median {:.0}/s, base {:.0}/s, median ratio {:.2} (range {:.2}-{:.2}); \
             best {:.0}/s, base {:.0}/s, ratio {:.2}",
            READS[pair].0,
            median(rates[pair].clone()),
            median(rates[pair + 1].clone()),
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            best(&ratios),
            best(&rates[pair]),
            best(&rates[pair + 1]),
            best(&rates[pair]) / best(&rates[pair + 1]),
        );
    }
}

/// Load + fold one 10,000-event stream among others (an aggregate replayed
/// without a snapshot), against a hand-written sqlx loop: one `SELECT` of the
/// stream in version order, streamed, decoded into owned values, folded.
fn load_stream(c: &mut Criterion) {
    const EVENTS: u64 = 10_000;
    let rt = runtime();
    let bench = rt.block_on(Bench::new(false));
    let stream = StreamId::new("load").unwrap();
    rt.block_on(async {
        fill_load_stream(&bench.store, &stream, EVENTS).await;
        let vacuum = format!("VACUUM ANALYZE \"{}\".events", bench.store.schema());
        sqlx::query(AssertSqlSafe(vacuum))
            .execute(&bench.raw)
            .await
            .unwrap();
    });
    let store = &bench.store;
    let mut g = bench_group(c, "postgres/load_stream", 20, 5);
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function(BenchmarkId::from_parameter(EVENTS), |b| {
        b.to_async(&rt).iter(|| async {
            use futures::TryStreamExt;
            let total = store
                .read_stream(annals_postgres::ReadStream::forward(&stream))
                .try_fold(0u64, |n, e| async move { Ok(n + e.version.get()) })
                .await
                .unwrap();
            assert_eq!(total, EVENTS * (EVENTS + 1) / 2);
        });
    });
    g.finish();

    let sql = format!(
        "SELECT {RAW_COLUMNS} FROM \"{}\".events e WHERE e.stream_id = $1 ORDER BY e.version",
        store.schema()
    );
    let mut g = bench_group(c, "postgres_loop/load_stream", 20, 5);
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function(BenchmarkId::from_parameter(EVENTS), |b| {
        b.to_async(&rt).iter(|| async {
            let total = sqlx::query(AssertSqlSafe(sql.clone()))
                .bind("load")
                .fetch(&bench.raw)
                .map(|row| decode_raw(&row.unwrap()))
                .fold(0u64, |n, row| async move { n + row.3 as u64 })
                .await;
            assert_eq!(total, EVENTS * (EVENTS + 1) / 2);
        });
    });
    g.finish();

    rt.block_on(bench.drop());
}

/// A two-stream transfer (two parts, one event each, one statement) against a
/// one-event append.
fn transfer(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(Bench::new(true));
    transfer_group(c, &rt, "postgres", &bench.store);
    rt.block_on(bench.drop());
}

criterion_group!(benches, append, replay, load_stream, transfer);
criterion_main!(benches);
