//! SQLite backend: append and replay throughput (events/s), against two bases: the
//! same SQL done directly through sqlx, and a hand-written rusqlite loop (the best a
//! user would write by hand: one `BEGIN IMMEDIATE` transaction per append call with a
//! version check inside it, one cached prepared `INSERT` per event, `COMMIT`).
//!
//! `cargo bench -p annals-benches --bench sqlite` (add `-- --quick` for a short run).
//! `ANNALS_BENCH_SYNC=full|normal` restricts the durability modes measured (default:
//! both; both sides of a comparison always run at the same `synchronous` setting).
//! `ANNALS_BENCH_LATENCY=1` also runs the latency pass (below). Groups:
//!
//! * `sqlite/{full,normal}/append100`, `sqlite_loop/{full,normal}/append100` — one
//!   100-event append to a new stream, annals against the rusqlite loop.
//! * `sqlite/{full,normal}/single/{1,4,16,64}`, `sqlite_loop/…` — single-event
//!   appends (`Exact` version) from that many tasks, each to its own stream; the loop
//!   shares one connection behind a `Mutex`, each append on `spawn_blocking`.
//! * `sqlite/load_stream/10000`, `sqlite_loop/load_stream/10000` — load and fold one
//!   10,000-event stream (read_stream against the loop's `SELECT … ORDER BY version`).
//! * paired passes (`ANNALS_BENCH_LATENCY=1`, any filter; printed to stderr):
//!   100-event batches, annals and the loop alternating round by round (median
//!   ratio); then single-event appends from 1/4/16/64 tasks, events/s and p50/p99
//!   latency per append, for annals, annals with `max_group(1)`, and the loop.
//!
//! * `sqlite/append/{1,10,100,1000}` — one `append` of a batch of that many events to
//!   a new stream (`ExpectedVersion::NoStream`): validation, id lookup, version
//!   check, multi-row insert, commit (WAL, `synchronous = FULL`, the default).
//! * `sqlite_raw/append/{n}` — the base: `BEGIN IMMEDIATE`, the same multi-row
//!   `INSERT` of the same rows, `COMMIT`, on a plain sqlx connection to a file with
//!   the same schema and pragmas; no checks.
//! * `sqlite/append_single/tasks/{1,16}` — single-event appends from 1 or 16 tasks.
//! * `sqlite/read_stream/100000`, `sqlite/read_all/100000` — replay of 100,000
//!   events (`ANNALS_BENCH_REPLAY=1000000`: of a million) decoded into `RecordedEvent`s through the `futures::Stream` API.
//! * `sqlite_raw/read_stream/100000`, `sqlite_raw/read_all/100000` — the base: one
//!   `SELECT` of the same columns fetched with sqlx and decoded into owned Rust
//!   values (`i64`, `Vec<u8>`, `String`).
//! * `sqlite_raw_rusqlite/read_stream/100000`, `sqlite_raw_rusqlite/read_all/100000`
//!   — the raw engine: the same `SELECT` stepped with plain rusqlite (which the
//!   store's reads run on) on the calling thread, decoded into the same owned values.
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

use std::{
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use annals_benches::{
    bench_group, events, fill_load_stream, payload, replay_all, replay_stream, runtime,
    single_event_appends, spawn_each, transfer_group,
};
use annals_sqlite::{
    EventId, EventStore, ExpectedVersion, SqliteEventStore, SqliteOptions, StreamId, Synchronous,
    Timestamp, Version,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    AssertSqlSafe, Row, SqlitePool,
};

/// Events per replay: 100,000, or `ANNALS_BENCH_REPLAY` (a multiple of 1,000;
/// the 1,000,000-event row of docs/performance.md).
fn replay_size() -> u64 {
    std::env::var("ANNALS_BENCH_REPLAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}
const COLUMNS: &str =
    "position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at";

/// A plain sqlx pool on a file with the annals schema and the store's pragmas.
async fn raw_pool(path: &Path, max: u32) -> SqlitePool {
    // Let the store create the schema, then talk to the file directly.
    SqliteEventStore::open(path).await.unwrap().close().await;
    SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .statement_cache_capacity(512),
        )
        .await
        .unwrap()
}

fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO events ({COLUMNS}) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?,?)");
    }
    sql
}

/// The rows of one raw batch, built outside the timed section like the store's
/// `NewEvent`s: (event id, payload).
fn raw_rows(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| (EventId::new().as_bytes().to_vec(), payload(i).into_bytes()))
        .collect()
}

/// The raw append: the same rows the store writes, in one `BEGIN IMMEDIATE`
/// transaction, 256 rows per statement like the store.
async fn raw_append(
    pool: &SqlitePool,
    stream: &str,
    next_position: &AtomicU64,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
) {
    let n = rows.len();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let first = next_position.fetch_add(n as u64, Ordering::Relaxed) as i64;
    let now = Timestamp::now().as_unix_micros();
    let mut rows = rows.into_iter().enumerate().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(256).collect();
        let mut query = sqlx::query(AssertSqlSafe(insert_sql(chunk.len())));
        for (i, (id, payload)) in chunk {
            query = query
                .bind(first + i as i64)
                .bind(id)
                .bind(stream.to_owned())
                .bind(i as i64 + 1)
                .bind("OrderPlaced.v1")
                .bind("application/json")
                .bind(payload)
                .bind(r#"{"correlation_id":"bench-request"}"#)
                .bind(now);
        }
        query.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(SqliteEventStore::open(dir.path().join("append.db")))
        .unwrap();
    let raw = rt.block_on(raw_pool(&dir.path().join("raw-append.db"), 1));
    let streams = AtomicU64::new(0);
    let raw_position = AtomicU64::new(1);

    for size in [1usize, 10, 100, 1000] {
        let mut group = bench_group(c, "sqlite/append", 30, 5);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.to_async(&rt).iter_batched(
                || {
                    let n = streams.fetch_add(1, Ordering::Relaxed);
                    (StreamId::new(format!("order-{n}")).unwrap(), events(size))
                },
                |(stream, batch)| {
                    let store = &store;
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
        group.finish();

        let mut group = bench_group(c, "sqlite_raw/append", 30, 5);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.to_async(&rt).iter_batched(
                || {
                    let n = streams.fetch_add(1, Ordering::Relaxed);
                    (format!("order-{n}"), raw_rows(size))
                },
                |(stream, rows)| {
                    let (raw, raw_position) = (&raw, &raw_position);
                    async move { raw_append(raw, &stream, raw_position, rows).await }
                },
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }

    // Single-event appends from 1 and 16 concurrent tasks, each to its own stream.
    let mut group = bench_group(c, "sqlite/append_single", 10, 5);
    const PER_TASK: usize = 100;
    let store = Arc::new(store);
    for tasks in [1usize, 16] {
        group.throughput(Throughput::Elements((tasks * PER_TASK) as u64));
        group.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            b.to_async(&rt).iter(|| {
                let store = Arc::clone(&store);
                let first = streams.fetch_add(tasks as u64, Ordering::Relaxed);
                single_event_appends(store, tasks, PER_TASK, first)
            });
        });
    }
    group.finish();
}

type RawRow = (
    i64,
    Vec<u8>,
    String,
    i64,
    String,
    String,
    Vec<u8>,
    String,
    i64,
);

fn decode_raw(row: &sqlx::sqlite::SqliteRow) -> RawRow {
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        row.get(7),
        row.get(8),
    )
}

fn decode_raw_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

/// Steps `sql` with `params` on plain rusqlite, decoding every row; returns how
/// many rows `counts` accepts.
fn raw_rusqlite_replay(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    counts: fn(&RawRow) -> bool,
) -> u64 {
    let mut statement = conn.prepare_cached(sql).unwrap();
    let rows = statement.query_map(params, decode_raw_rusqlite).unwrap();
    rows.map(|row| u64::from(counts(&row.unwrap()))).sum()
}

fn replay(c: &mut Criterion) {
    let total = replay_size();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.db");
    let stream = StreamId::new("replay").unwrap();
    let store = rt.block_on(async {
        let store = SqliteEventStore::open(&path).await.unwrap();
        for chunk in 0..total / 1000 {
            store
                .append(
                    &stream,
                    ExpectedVersion::Exact(Version::new(chunk * 1000)),
                    events(1000),
                )
                .await
                .unwrap();
        }
        store
    });
    let raw = rt.block_on(async {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .read_only(true)
                    .statement_cache_capacity(512),
            )
            .await
            .unwrap()
    });

    let mut group = bench_group(c, "sqlite/read_stream", 10, 8);
    group.throughput(Throughput::Elements(total));
    group.bench_function(BenchmarkId::from_parameter(total), |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(replay_stream(&store, &stream).await, total);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite_raw/read_stream", 10, 8);
    group.throughput(Throughput::Elements(total));
    group.bench_function(BenchmarkId::from_parameter(total), |b| {
        b.to_async(&rt).iter(|| async {
            let n = sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version >= ? ORDER BY version"
            )))
            .bind("replay")
            .bind(1i64)
            .fetch(&raw)
            .map(|row| decode_raw(&row.unwrap()))
            .fold(0u64, |n, row| async move { n + u64::from(row.3 > 0) })
            .await;
            assert_eq!(n, total);
        });
    });
    group.finish();

    let raw_rusqlite =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();

    let mut group = bench_group(c, "sqlite_raw_rusqlite/read_stream", 10, 8);
    group.throughput(Throughput::Elements(total));
    group.bench_function(BenchmarkId::from_parameter(total), |b| {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version >= ? ORDER BY version"
        );
        b.iter(|| {
            let n = raw_rusqlite_replay(&raw_rusqlite, &sql, ("replay", 1i64), |r| r.3 > 0);
            assert_eq!(n, total);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite/read_all", 10, 8);
    group.throughput(Throughput::Elements(total));
    group.bench_function(BenchmarkId::from_parameter(total), |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(replay_all(&store).await, total);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite_raw/read_all", 10, 8);
    group.throughput(Throughput::Elements(total));
    group.bench_function(BenchmarkId::from_parameter(total), |b| {
        b.to_async(&rt).iter(|| async {
            let n = sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position"
            )))
            .bind(1i64)
            .fetch(&raw)
            .map(|row| decode_raw(&row.unwrap()))
            .fold(0u64, |n, row| async move { n + u64::from(row.0 > 0) })
            .await;
            assert_eq!(n, total);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite_raw_rusqlite/read_all", 10, 8);
    group.throughput(Throughput::Elements(total));
    group.bench_function(BenchmarkId::from_parameter(total), |b| {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position");
        b.iter(|| {
            let n = raw_rusqlite_replay(&raw_rusqlite, &sql, [1i64], |r| r.0 > 0);
            assert_eq!(n, total);
        });
    });
    group.finish();
}

/// A two-stream transfer (two parts, one event each, one transaction) against a
/// one-event append.
fn transfer(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(SqliteEventStore::open(dir.path().join("transfer.db")))
        .unwrap();
    transfer_group(c, &rt, "sqlite", &store);
}

criterion_group!(
    benches,
    append,
    versus_loop,
    load_stream,
    latency,
    replay,
    transfer
);
criterion_main!(benches);

// ---------------------------------------------------------------------------------
// The hand-written rusqlite loop, and annals against it at the same durability.
// ---------------------------------------------------------------------------------

/// A durability mode both sides of a comparison run at.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Full,
    Normal,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Normal => "normal",
        }
    }

    fn synchronous(self) -> Synchronous {
        match self {
            Mode::Full => Synchronous::Full,
            Mode::Normal => Synchronous::Normal,
        }
    }
}

/// The modes to measure: `ANNALS_BENCH_SYNC=full|normal`, both by default.
fn modes() -> Vec<Mode> {
    match std::env::var("ANNALS_BENCH_SYNC").as_deref() {
        Ok("full") => vec![Mode::Full],
        Ok("normal") => vec![Mode::Normal],
        _ => vec![Mode::Full, Mode::Normal],
    }
}

/// An annals store at `mode` in a new file.
async fn store_at(path: &Path, mode: Mode) -> SqliteEventStore {
    SqliteOptions::new(path)
        .synchronous(mode.synchronous())
        .open()
        .await
        .unwrap()
}

const METADATA: &str = r#"{"correlation_id":"bench-request"}"#;
const INSERT_ONE: &str = "INSERT INTO events (position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// The loop's connection: a file with the annals schema (created by the store, then
/// closed), WAL, `synchronous` at `mode`, cached prepared statements.
async fn loop_conn(path: &Path, mode: Mode) -> rusqlite::Connection {
    store_at(path, mode).await.close().await;
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", mode.name())
        .unwrap();
    conn.set_prepared_statement_cache_capacity(64);
    conn
}

/// The hand-written append: one `BEGIN IMMEDIATE` transaction, the stream's version
/// checked against `expected` inside it, the log's last position read, one cached
/// prepared single-row `INSERT` per event, `COMMIT`. Returns the new version, or
/// `None` on a version mismatch (rolled back).
fn loop_append(
    conn: &mut rusqlite::Connection,
    stream: &str,
    expected: i64,
    rows: &[(Vec<u8>, Vec<u8>)],
) -> Option<i64> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let version: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1")
        .unwrap()
        .query_row([stream], |r| r.get(0))
        .unwrap();
    if version != expected {
        return None;
    }
    let mut position: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
        .unwrap()
        .query_row([], |r| r.get(0))
        .unwrap();
    let now = Timestamp::now().as_unix_micros();
    {
        let mut insert = tx.prepare_cached(INSERT_ONE).unwrap();
        for (i, (id, payload)) in rows.iter().enumerate() {
            position += 1;
            insert
                .execute(rusqlite::params![
                    position,
                    id,
                    stream,
                    expected + i as i64 + 1,
                    "OrderPlaced.v1",
                    "application/json",
                    payload,
                    METADATA,
                    now
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    Some(expected + rows.len() as i64)
}

/// `tasks` tasks, each appending `per_task` single events to its own stream with an
/// exact expected version, through the loop (a shared connection behind a `Mutex`,
/// each append on `spawn_blocking`). Returns each append's latency.
async fn loop_single_appends(
    conn: Arc<Mutex<rusqlite::Connection>>,
    tasks: usize,
    per_task: usize,
    first_stream: u64,
) -> Vec<Duration> {
    spawn_each(tasks, |t| {
        let conn = Arc::clone(&conn);
        async move {
            let stream = format!("single-{}", first_stream + t as u64);
            let mut latencies = Vec::with_capacity(per_task);
            for (i, row) in raw_rows(per_task).into_iter().enumerate() {
                let (conn, stream) = (Arc::clone(&conn), stream.clone());
                let start = Instant::now();
                let version = tokio::task::spawn_blocking(move || {
                    loop_append(&mut conn.lock().unwrap(), &stream, i as i64, &[row])
                })
                .await
                .unwrap();
                latencies.push(start.elapsed());
                assert_eq!(version, Some(i as i64 + 1));
            }
            latencies
        }
    })
    .await
}

/// 100-event batches and single-event appends from 1/4/16/64 tasks, annals against
/// the loop, at each durability mode.
fn versus_loop(c: &mut Criterion) {
    let rt = runtime();
    for mode in modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(rt.block_on(store_at(&dir.path().join("annals.db"), mode)));
        let conn = Arc::new(Mutex::new(
            rt.block_on(loop_conn(&dir.path().join("loop.db"), mode)),
        ));
        let streams = AtomicU64::new(0);

        let mut group = bench_group(c, &format!("sqlite/{}", mode.name()), 20, 5);
        group.throughput(Throughput::Elements(100));
        group.bench_function("append100", |b| {
            b.to_async(&rt).iter_batched(
                || {
                    let n = streams.fetch_add(1, Ordering::Relaxed);
                    (StreamId::new(format!("order-{n}")).unwrap(), events(100))
                },
                |(stream, batch)| {
                    let store = &store;
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
        group.finish();

        let mut group = bench_group(c, &format!("sqlite_loop/{}", mode.name()), 20, 5);
        group.throughput(Throughput::Elements(100));
        group.bench_function("append100", |b| {
            b.iter_batched(
                || {
                    let n = streams.fetch_add(1, Ordering::Relaxed);
                    (format!("order-{n}"), raw_rows(100))
                },
                |(stream, rows)| {
                    let mut conn = conn.lock().unwrap();
                    assert_eq!(loop_append(&mut conn, &stream, 0, &rows), Some(100));
                },
                BatchSize::SmallInput,
            );
        });
        group.finish();

        const EVENTS: usize = 256;
        for tasks in [1usize, 4, 16, 64] {
            let per_task = (EVENTS / tasks).max(4);
            let mut group = bench_group(c, &format!("sqlite/{}/single", mode.name()), 10, 5);
            group.throughput(Throughput::Elements((tasks * per_task) as u64));
            group.bench_function(BenchmarkId::from_parameter(tasks), |b| {
                b.to_async(&rt).iter(|| {
                    let first = streams.fetch_add(tasks as u64, Ordering::Relaxed);
                    single_event_appends(Arc::clone(&store), tasks, per_task, first)
                });
            });
            group.finish();

            let mut group = bench_group(c, &format!("sqlite_loop/{}/single", mode.name()), 10, 5);
            group.throughput(Throughput::Elements((tasks * per_task) as u64));
            group.bench_function(BenchmarkId::from_parameter(tasks), |b| {
                b.to_async(&rt).iter(|| {
                    let first = streams.fetch_add(tasks as u64, Ordering::Relaxed);
                    loop_single_appends(Arc::clone(&conn), tasks, per_task, first)
                });
            });
            group.finish();
        }
    }
}

/// Load and fold one 10,000-event stream: annals' `read_stream` against the loop's
/// `SELECT … ORDER BY version` decoded into owned values on the calling thread.
fn load_stream(c: &mut Criterion) {
    const EVENTS: u64 = 10_000;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.db");
    let stream = StreamId::new("load").unwrap();
    let store = rt.block_on(async {
        let store = SqliteEventStore::open(&path).await.unwrap();
        fill_load_stream(&store, &stream, EVENTS).await;
        store
    });
    let mut group = bench_group(c, "sqlite/load_stream", 20, 5);
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::from_parameter(EVENTS), |b| {
        b.to_async(&rt).iter(|| async {
            use futures::TryStreamExt;
            let total = store
                .read_stream(annals_sqlite::ReadStream::forward(&stream))
                .try_fold(0u64, |n, e| async move { Ok(n + e.version.get()) })
                .await
                .unwrap();
            assert_eq!(total, EVENTS * (EVENTS + 1) / 2);
        });
    });
    group.finish();

    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut group = bench_group(c, "sqlite_loop/load_stream", 20, 5);
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::from_parameter(EVENTS), |b| {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE stream_id = ?1 ORDER BY version");
        b.iter(|| {
            let mut statement = conn.prepare_cached(&sql).unwrap();
            let total: i64 = statement
                .query_map(["load"], decode_raw_rusqlite)
                .unwrap()
                .map(|row| row.unwrap().3)
                .sum();
            assert_eq!(total as u64, EVENTS * (EVENTS + 1) / 2);
        });
    });
    group.finish();
}

/// p50 and p99 of `latencies` in microseconds.
fn percentiles(latencies: &mut [Duration]) -> (u128, u128) {
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0, Duration::as_micros)
    };
    (at(0.50), at(0.99))
}

/// The paired batch pass (`ANNALS_BENCH_LATENCY=1`): 100-event appends to new
/// streams, annals and the loop alternating in `ROUNDS` rounds of `BATCHES` each, so
/// both sides see the same machine load; prints events/s of each (median round) and
/// the median of the per-round ratios.
fn paired_batches(rt: &tokio::runtime::Runtime, mode: Mode) {
    const ROUNDS: usize = 7;
    const BATCHES: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(store_at(&dir.path().join("annals.db"), mode));
    let mut conn = rt.block_on(loop_conn(&dir.path().join("loop.db"), mode));
    let (mut annals, mut hand, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = 0u64;
    for _ in 0..ROUNDS {
        let inputs: Vec<_> = (0..BATCHES)
            .map(|_| {
                next += 1;
                (StreamId::new(format!("order-{next}")).unwrap(), events(100))
            })
            .collect();
        let start = Instant::now();
        rt.block_on(async {
            for (stream, batch) in inputs {
                store
                    .append(&stream, ExpectedVersion::NoStream, batch)
                    .await
                    .unwrap();
            }
        });
        let a = (BATCHES * 100) as f64 / start.elapsed().as_secs_f64();
        let rows: Vec<_> = (0..BATCHES)
            .map(|_| {
                next += 1;
                (format!("order-{next}"), raw_rows(100))
            })
            .collect();
        let start = Instant::now();
        for (stream, rows) in rows {
            assert_eq!(loop_append(&mut conn, &stream, 0, &rows), Some(100));
        }
        let l = (BATCHES * 100) as f64 / start.elapsed().as_secs_f64();
        annals.push(a);
        hand.push(l);
        ratios.push(a / l);
    }
    for v in [&mut annals, &mut hand, &mut ratios] {
        v.sort_by(f64::total_cmp);
    }
    eprintln!(
        "batch100 {}: annals {:.0} events/s, loop {:.0} events/s, ratio {:.2}x (per-round ratios {:.2}..{:.2})",
        mode.name(),
        annals[ROUNDS / 2],
        hand[ROUNDS / 2],
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1],
    );
}

/// The latency pass (`ANNALS_BENCH_LATENCY=1`): single-event appends from 1/4/16/64
/// tasks through annals (group commit on, the default), annals with grouping off
/// (`max_group(1)`) and the loop, alternating, five rounds each; prints events/s
/// (the median round) and p50/p99 per append (of all rounds).
fn latency(_: &mut Criterion) {
    if std::env::var_os("ANNALS_BENCH_LATENCY").is_none() {
        return;
    }
    const EVENTS: usize = 4096;
    const ROUNDS: usize = 5;
    const SIDES: [&str; 3] = ["annals", "annals-max_group(1)", "loop"];
    let rt = runtime();
    for mode in modes() {
        paired_batches(&rt, mode);
    }
    for mode in modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(rt.block_on(store_at(&dir.path().join("annals.db"), mode)));
        let ungrouped = Arc::new(rt.block_on(async {
            SqliteOptions::new(dir.path().join("ungrouped.db"))
                .synchronous(mode.synchronous())
                .max_group(1)
                .open()
                .await
                .unwrap()
        }));
        let conn = Arc::new(Mutex::new(
            rt.block_on(loop_conn(&dir.path().join("loop.db"), mode)),
        ));
        let mut first = 0u64;
        for tasks in [1usize, 4, 16, 64] {
            let per_task = (EVENTS / tasks).max(16);
            let mut figures: [(Vec<f64>, Vec<Duration>); 3] = Default::default();
            for _ in 0..ROUNDS {
                for (side, figure) in figures.iter_mut().enumerate() {
                    first += tasks as u64;
                    let start = Instant::now();
                    let latencies = match side {
                        0 => rt.block_on(single_event_appends(
                            Arc::clone(&store),
                            tasks,
                            per_task,
                            first,
                        )),
                        1 => rt.block_on(single_event_appends(
                            Arc::clone(&ungrouped),
                            tasks,
                            per_task,
                            first,
                        )),
                        _ => rt.block_on(loop_single_appends(
                            Arc::clone(&conn),
                            tasks,
                            per_task,
                            first,
                        )),
                    };
                    let elapsed = start.elapsed().as_secs_f64();
                    figure.0.push((tasks * per_task) as f64 / elapsed);
                    figure.1.extend(latencies);
                }
            }
            let mut rates = [0.0f64; 3];
            for (side, (rate, _)) in figures.iter_mut().enumerate() {
                rate.sort_by(f64::total_cmp);
                rates[side] = rate[ROUNDS / 2];
            }
            for (side, (_, latencies)) in figures.iter_mut().enumerate() {
                let (p50, p99) = percentiles(latencies);
                eprintln!(
                    "latency {} {} tasks={tasks}: {:.0} events/s ({:.2}x loop), p50 {p50} us, p99 {p99} us",
                    mode.name(),
                    SIDES[side],
                    rates[side],
                    rates[side] / rates[2],
                );
            }
        }
    }
}
