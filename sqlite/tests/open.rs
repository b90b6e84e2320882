//! Opening: files and directories, persistence, options, in-memory stores.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use common::event;

use std::time::Duration;

use annals_sqlite::{
    futures::TryStreamExt, EventStore, ExpectedVersion, Position, ReadAll, ReadStream, Snapshot,
    SqliteEventStore, SqliteOptions, StreamId, Synchronous, Version,
};
use sqlx::AssertSqlSafe;

async fn pragma_int(store: &SqliteEventStore, name: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("PRAGMA {name}")))
        .fetch_one(store.reader_pool())
        .await
        .unwrap()
}

async fn journal_mode(store: &SqliteEventStore) -> String {
    sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.reader_pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn creates_missing_parent_directories_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/events.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), Some(path.as_path()));
    assert_eq!(journal_mode(&store).await, "wal");
}

#[tokio::test]
async fn reopening_keeps_events_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let stream = StreamId::new("order-1").unwrap();
    let written = {
        let store = SqliteEventStore::open(&path).await.unwrap();
        store
            .append(&stream, ExpectedVersion::NoStream, vec![event(1), event(2)])
            .await
            .unwrap();
        store
            .save_snapshot(
                &stream,
                Snapshot::new(Version::new(2), b"{\"n\":2}".to_vec()),
            )
            .await
            .unwrap();
        let written: Vec<_> = store
            .read_stream(ReadStream::forward(&stream))
            .try_collect()
            .await
            .unwrap();
        store.close().await;
        written
    };

    let store = SqliteEventStore::open(&path).await.unwrap();
    let read: Vec<_> = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read, written);
    let snapshot = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(snapshot.version, Version::new(2));
    let next = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(2)),
            vec![event(3)],
        )
        .await
        .unwrap();
    assert_eq!(next.version, Version::new(3));
    assert_eq!(next.positions, vec![Position::new(3)]);
}

#[tokio::test]
async fn default_options_are_wal_full_with_busy_timeout_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    assert_eq!(store.options().get_synchronous(), Synchronous::Full);
    assert_eq!(pragma_int(&store, "synchronous").await, 2, "FULL");
    assert_eq!(pragma_int(&store, "busy_timeout").await, 5000);
    assert_eq!(pragma_int(&store, "foreign_keys").await, 1);
    assert_eq!(journal_mode(&store).await, "wal");
}

#[tokio::test]
async fn options_set_synchronous_normal_busy_timeout_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteOptions::new(dir.path().join("events.db"))
        .synchronous(Synchronous::Normal)
        .busy_timeout(Duration::from_millis(1234))
        .max_readers(0) // clamped to 1
        .acquire_timeout(Duration::from_secs(3))
        .open()
        .await
        .unwrap();
    assert_eq!(pragma_int(&store, "synchronous").await, 1, "NORMAL");
    assert_eq!(pragma_int(&store, "busy_timeout").await, 1234);
    assert_eq!(store.options().get_max_readers(), 1);

    // One reader connection still serves nested reads one page at a time.
    let stream = StreamId::new("s").unwrap();
    store
        .append(&stream, ExpectedVersion::Any, (0..10).map(event).collect())
        .await
        .unwrap();
    let mut outer = store.read_all(ReadAll::forward());
    let mut count = 0;
    while let Some(event) = outer.try_next().await.unwrap() {
        let inner: Vec<_> = store
            .read_stream(
                ReadStream::forward(&event.stream_id)
                    .after(Version::new(event.version.get() - 1))
                    .limit(1),
            )
            .try_collect()
            .await
            .unwrap();
        assert_eq!(inner, vec![event]);
        count += 1;
    }
    assert_eq!(count, 10);
}

#[tokio::test]
async fn in_memory_stores_work_and_are_independent() {
    let a = SqliteEventStore::in_memory().await.unwrap();
    let b = SqliteEventStore::in_memory().await.unwrap();
    assert_eq!(a.path(), None);
    let stream = StreamId::new("s").unwrap();
    a.append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    assert_eq!(a.stream_version(&stream).await.unwrap(), Version::new(1));
    assert_eq!(b.stream_version(&stream).await.unwrap(), Version::ZERO);

    // Reading while appending on the single in-memory connection does not deadlock:
    // a page releases the connection before its events are handed out.
    let mut reader = a.read_all(ReadAll::forward());
    let first = reader.try_next().await.unwrap().unwrap();
    a.append(
        &stream,
        ExpectedVersion::Exact(first.version),
        vec![event(2)],
    )
    .await
    .unwrap();
    assert_eq!(a.stream_version(&stream).await.unwrap(), Version::new(2));
}

#[tokio::test]
async fn a_store_opened_on_an_empty_file_initialises_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let store = SqliteEventStore::open(&path).await.unwrap();
    let stream = StreamId::new("s").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::new(1)
    );
}

/// Dropping a store (and its writer connection) outside any async runtime is fine.
#[test]
fn a_store_can_be_dropped_outside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime
        .block_on(SqliteEventStore::open(dir.path().join("events.db")))
        .unwrap();
    let stream = StreamId::new("s").unwrap();
    runtime
        .block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event(1)]))
        .unwrap();
    drop(store);
    drop(runtime);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime
        .block_on(SqliteEventStore::open(dir.path().join("events.db")))
        .unwrap();
    let version = runtime.block_on(store.stream_version(&stream)).unwrap();
    assert_eq!(version, Version::new(1));
}

/// Reads dropped while their page is still running on the blocking thread give
/// their connection back: with one reader, later reads still get it in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_dropped_mid_page_do_not_leak_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteOptions::new(dir.path().join("events.db"))
        .max_readers(1)
        .acquire_timeout(Duration::from_secs(5))
        .open()
        .await
        .unwrap();
    let stream = StreamId::new("s").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::Any,
            (0..5000).map(event).collect(),
        )
        .await
        .unwrap();
    for round in 0..50u64 {
        let mut reader = store.read_all(ReadAll::forward());
        // Cancel before, during or after the first page.
        let wait = Duration::from_micros((round * 97) % 3000);
        let _ = tokio::time::timeout(wait, reader.try_next()).await;
        drop(reader);
    }
    let all: Vec<_> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 5000);
}

/// A read that cannot get a connection within the acquire timeout fails with
/// `Error::Timeout`. (An in-memory store's reads wait for its one sqlx connection,
/// held here through `reader_pool`.)
#[tokio::test]
async fn a_read_waits_at_most_the_acquire_timeout() {
    let store = SqliteOptions::in_memory()
        .acquire_timeout(Duration::from_millis(200))
        .open()
        .await
        .unwrap();
    let stream = StreamId::new("s").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let held = store.reader_pool().acquire().await.unwrap();
    let err = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(matches!(err, annals_sqlite::Error::Timeout(_)), "{err:?}");
    drop(held);
    let events: Vec<_> = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

/// Reads after `close` fail instead of reopening connections.
#[tokio::test]
async fn reads_after_close_fail() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    store.close().await;
    let err = store
        .read_all(ReadAll::forward())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(err, annals_sqlite::Error::Backend { .. }),
        "{err:?}"
    );
}
