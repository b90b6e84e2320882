//! SQLite backend: append and replay throughput (events/s), against the same SQL
//! done directly through sqlx as the ratio base.
//!
//! `cargo bench -p annals-benches --bench sqlite` (about 2.5 minutes; add `-- --quick`
//! for a short run). Groups:
//!
//! * `sqlite/append/{1,10,100,1000}` — one `append` of a batch of that many events to
//!   a new stream (`ExpectedVersion::NoStream`): validation, id lookup, version
//!   check, multi-row insert, commit (WAL, `synchronous = NORMAL`).
//! * `sqlite_raw/append/{n}` — the base: `BEGIN IMMEDIATE`, the same multi-row
//!   `INSERT` of the same rows, `COMMIT`, on a plain sqlx connection to a file with
//!   the same schema and pragmas; no checks.
//! * `sqlite/append_single/tasks/{1,16}` — single-event appends from 1 or 16 tasks.
//! * `sqlite/read_stream/100000`, `sqlite/read_all/100000` — replay of 100,000
//!   events decoded into `RecordedEvent`s through the `futures::Stream` API.
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
    clippy::cast_possible_wrap
)]

use std::{
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use annals_benches::{
    bench_group, events, payload, replay_all, replay_stream, runtime, single_event_appends,
    transfer_group,
};
use annals_sqlite::{
    EventId, EventStore, ExpectedVersion, SqliteEventStore, StreamId, Timestamp, Version,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    AssertSqlSafe, Row, SqlitePool,
};

const REPLAY: u64 = 100_000;
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
                .synchronous(SqliteSynchronous::Normal)
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
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.db");
    let stream = StreamId::new("replay").unwrap();
    let store = rt.block_on(async {
        let store = SqliteEventStore::open(&path).await.unwrap();
        for chunk in 0..REPLAY / 1000 {
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
    group.throughput(Throughput::Elements(REPLAY));
    group.bench_function(BenchmarkId::from_parameter(REPLAY), |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(replay_stream(&store, &stream).await, REPLAY);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite_raw/read_stream", 10, 8);
    group.throughput(Throughput::Elements(REPLAY));
    group.bench_function(BenchmarkId::from_parameter(REPLAY), |b| {
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
            assert_eq!(n, REPLAY);
        });
    });
    group.finish();

    let raw_rusqlite =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();

    let mut group = bench_group(c, "sqlite_raw_rusqlite/read_stream", 10, 8);
    group.throughput(Throughput::Elements(REPLAY));
    group.bench_function(BenchmarkId::from_parameter(REPLAY), |b| {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version >= ? ORDER BY version"
        );
        b.iter(|| {
            let n = raw_rusqlite_replay(&raw_rusqlite, &sql, ("replay", 1i64), |r| r.3 > 0);
            assert_eq!(n, REPLAY);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite/read_all", 10, 8);
    group.throughput(Throughput::Elements(REPLAY));
    group.bench_function(BenchmarkId::from_parameter(REPLAY), |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(replay_all(&store).await, REPLAY);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite_raw/read_all", 10, 8);
    group.throughput(Throughput::Elements(REPLAY));
    group.bench_function(BenchmarkId::from_parameter(REPLAY), |b| {
        b.to_async(&rt).iter(|| async {
            let n = sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position"
            )))
            .bind(1i64)
            .fetch(&raw)
            .map(|row| decode_raw(&row.unwrap()))
            .fold(0u64, |n, row| async move { n + u64::from(row.0 > 0) })
            .await;
            assert_eq!(n, REPLAY);
        });
    });
    group.finish();

    let mut group = bench_group(c, "sqlite_raw_rusqlite/read_all", 10, 8);
    group.throughput(Throughput::Elements(REPLAY));
    group.bench_function(BenchmarkId::from_parameter(REPLAY), |b| {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position");
        b.iter(|| {
            let n = raw_rusqlite_replay(&raw_rusqlite, &sql, [1i64], |r| r.0 > 0);
            assert_eq!(n, REPLAY);
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

criterion_group!(benches, append, replay, transfer);
criterion_main!(benches);
