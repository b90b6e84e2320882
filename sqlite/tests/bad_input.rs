//! Bad input and bad files: typed errors, and nothing changed.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use common::{event, read_everything};

use std::path::{Path, PathBuf};

use sqlx::{sqlite::SqliteConnectOptions, AssertSqlSafe, ConnectOptions, Connection};

use annals_sqlite::{
    futures::{StreamExt, TryStreamExt},
    EventId, EventStore, ExpectedVersion, NewEvent, OpenError, Position, ReadAll, ReadStream,
    Snapshot, SqliteEventStore, StreamId, Version,
};

/// A file's length and a checksum of its bytes (FNV-1a), or `None` if missing.
type Fingerprint = Option<(usize, u64)>;

fn fingerprint(bytes: &[u8]) -> (usize, u64) {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    (bytes.len(), hash)
}

/// The database file and its WAL/shared-memory companions, fingerprinted.
fn files(path: &Path) -> Vec<(PathBuf, Fingerprint)> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = PathBuf::from(name);
            let bytes = std::fs::read(&file).ok();
            (file, bytes.as_deref().map(fingerprint))
        })
        .collect()
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        (
            "text.db",
            b"these are my notes, please do not overwrite them\n".repeat(100),
        ),
        ("short.db", b"tiny".to_vec()),
        ("binary.db", (0..=255u8).cycle().take(8192).collect()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let before = files(&path);
        let err = SqliteEventStore::open(&path).await.unwrap_err();
        assert!(
            matches!(OpenError::find(&err), Some(OpenError::NotADatabase { .. })),
            "{name}: expected NotADatabase, got {err:?}"
        );
        assert!(err.to_string().contains("backend error"), "{err}");
        assert_eq!(files(&path), before, "{name} was modified");
    }
}

#[tokio::test]
async fn a_corrupt_file_with_an_sqlite_header_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend((0..4096u32).map(|i| (i * 31 % 251) as u8));
    std::fs::write(&path, &bytes).unwrap();
    let before = files(&path);
    let err = SqliteEventStore::open(&path).await.unwrap_err();
    assert!(
        matches!(err, annals_sqlite::Error::Backend { .. }),
        "{err:?}"
    );
    assert_eq!(files(&path), before);
}

#[tokio::test]
async fn a_database_with_a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    let stream = StreamId::new("kept").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    store.close().await;
    // A future annals-sqlite applied migration 99990101000000.
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let before = files(&path);
    let err = SqliteEventStore::open(&path).await.unwrap_err();
    match OpenError::find(&err) {
        Some(OpenError::SchemaTooNew { unknown, known, .. }) => {
            assert_eq!(unknown, &vec![99_990_101_000_000]);
            assert!(*known >= 1);
        }
        other => panic!("expected SchemaTooNew, got {other:?} from {err:?}"),
    }
    assert_eq!(files(&path), before, "the newer database was modified");
}

#[tokio::test]
async fn rejected_appends_and_snapshots_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    let stream = StreamId::new("orders").unwrap();
    let first = event(1);
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![first.clone(), event(2)],
        )
        .await
        .unwrap();
    store
        .save_snapshot(&stream, Snapshot::new(Version::new(2), b"{}".to_vec()))
        .await
        .unwrap();
    store.close().await;
    let before_bytes = files(&path);

    let store = SqliteEventStore::open(&path).await.unwrap();
    let before = read_everything(&store).await;
    let oversized = NewEvent::new("Big", vec![0u8; store.capabilities().max_payload_bytes + 1]);
    let attempts: Vec<(&str, annals_sqlite::Result<_>)> = vec![
        (
            "oversized payload",
            store
                .append(&stream, ExpectedVersion::Any, vec![event(3), oversized])
                .await,
        ),
        (
            "NUL in event type",
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![event(3), NewEvent::new("a\0b", b"{}".to_vec())],
                )
                .await,
        ),
        (
            "empty content type",
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![event(3).with_content_type("")],
                )
                .await,
        ),
        ("duplicate id in batch", {
            let id = EventId::new();
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![event(3).with_id(id), event(4).with_id(id)],
                )
                .await
        }),
        (
            "reused id, different content",
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![event(99).with_id(first.id)],
                )
                .await,
        ),
        (
            "wrong expected version",
            store
                .append(
                    &stream,
                    ExpectedVersion::Exact(Version::new(1)),
                    vec![event(3)],
                )
                .await,
        ),
        (
            "no stream expected",
            store
                .append(&stream, ExpectedVersion::NoStream, vec![event(3)])
                .await,
        ),
    ];
    for (what, result) in attempts {
        let err = result.expect_err(what);
        let typed = err.is_invalid_input() || err.is_conflict();
        assert!(typed, "{what}: expected a typed error, got {err:?}");
    }
    let bad_snapshot = Snapshot::new(Version::new(9), b"{}".to_vec()).with_content_type("");
    assert!(store
        .save_snapshot(&stream, bad_snapshot)
        .await
        .unwrap_err()
        .is_invalid_input());
    assert!(StreamId::new("").unwrap_err().is_invalid_input());
    assert!(StreamId::new("x".repeat(StreamId::MAX_LEN + 1))
        .unwrap_err()
        .is_invalid_input());

    assert_eq!(read_everything(&store).await, before);
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::new(2)
    );
    store.close().await;
    assert_eq!(
        files(&path),
        before_bytes,
        "rejected writes changed the file"
    );
}

#[tokio::test]
async fn a_failed_batch_mid_session_leaves_earlier_data_and_later_appends_working() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let stream = StreamId::new("session").unwrap();
    let other = StreamId::new("other").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();

    // A large batch whose last event is invalid: nothing of it may be stored.
    let mut batch: Vec<NewEvent> = (3..500).map(event).collect();
    batch.push(NewEvent::new("Bad\0Type", b"{}".to_vec()));
    let err = store
        .append(&stream, ExpectedVersion::Exact(Version::new(2)), batch)
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    // A conflicting batch in between.
    let err = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(7)),
            (3..10).map(event).collect(),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    let events: Vec<_> = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 2);

    let result = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(2)),
            vec![event(3)],
        )
        .await
        .unwrap();
    assert_eq!(result.version, Version::new(3));
    assert_eq!(result.positions, vec![Position::new(3)]);
    store
        .append(&other, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let log = read_everything(&store).await;
    let positions: Vec<u64> = log.iter().map(|e| e.position.get()).collect();
    assert_eq!(positions, vec![1, 2, 3, 4]);
}

/// Rows written around the store with values it would never write come back as
/// `Error::Backend` naming what is wrong, never a panic.
#[tokio::test]
async fn corrupt_stored_rows_are_backend_errors_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    let stream = StreamId::new("fine").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();

    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let insert = |event_type: &str| {
        format!(
            "INSERT INTO events (position, event_id, stream_id, version, event_type, \
             content_type, payload, metadata, recorded_at) \
             VALUES (?, ?, ?, 1, {event_type}, 'x', x'', '{{}}', 0)"
        )
    };
    let bad_type = EventId::new();
    sqlx::query(AssertSqlSafe(insert("CAST(x'ff00fe' AS TEXT)"))) // not UTF-8
        .bind(2i64)
        .bind(bad_type.as_bytes().to_vec())
        .bind("bad-type")
        .execute(&mut conn)
        .await
        .unwrap();
    let bad_stream = EventId::new();
    sqlx::query(AssertSqlSafe(insert("'Noted'")))
        .bind(3i64)
        .bind(bad_stream.as_bytes().to_vec())
        .bind("") // not a valid stream id
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let message = |err: &annals_sqlite::Error| {
        assert!(
            matches!(err, annals_sqlite::Error::Backend { .. }),
            "{err:?}"
        );
        err.to_string()
    };
    let err = store.get_event(bad_type).await.unwrap_err();
    assert!(message(&err).contains("`event_type`"), "{err}");
    let err = store.get_event(bad_stream).await.unwrap_err();
    assert!(message(&err).contains("stream id"), "{err}");

    // A read fails on the page holding the corrupt row, then ends.
    let results: Vec<_> = store.read_all(ReadAll::forward()).collect().await;
    assert_eq!(results.len(), 1, "{results:?}");
    let err = results[0].as_ref().unwrap_err();
    assert!(message(err).contains("`event_type`"), "{err}");
    // Reads that do not reach it are unaffected.
    let stream_read: Vec<_> = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stream_read.len(), 1);
}
