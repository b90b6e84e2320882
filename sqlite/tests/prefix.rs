//! Table prefixes (`SqliteOptions::table_prefix`): several independent stores in
//! one database file.
//!
//! The whole conformance suite runs on a store with the prefix `two_`, opened on a
//! file in which a `one_` store and a default-prefix store already hold events,
//! snapshots and checkpoints. Every case expects an empty store, so a statement
//! that missed the prefix (and read or wrote the neighbours' tables) fails it.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use annals_sqlite::{
    consume::{CheckpointStore, LeaseProvider},
    futures::TryStreamExt,
    EventQuery, EventStore, ExpectedVersion, NewEvent, OpenError, Position, ReadAll, ReadStream,
    RecordedEvent, Snapshot, SqliteEventStore, SqliteOptions, StreamId, Version,
};
use annals_testing::Fixture;

/// The neighbours' prefixes: a default-prefix store and `one_`.
const NEIGHBOURS: [&str; 2] = ["", "one_"];

async fn open(path: &Path, prefix: &str) -> SqliteEventStore {
    SqliteOptions::new(path)
        .table_prefix(prefix)
        .open()
        .await
        .unwrap_or_else(|e| panic!("open the store with prefix `{prefix}`: {e}"))
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

/// Fills a neighbour: events in two streams (one of them, `shared-1`, a name the
/// suite and the heavy-use test also use), a snapshot and a checkpoint, each
/// marked with `prefix` so a mix-up shows.
async fn seed(store: &SqliteEventStore, prefix: &str) {
    let mark = |n: u64| {
        NewEvent::json(
            format!("Seeded{prefix}"),
            &serde_json::json!({ "n": n, "store": prefix }),
        )
        .unwrap()
    };
    store
        .append(
            &stream("shared-1"),
            ExpectedVersion::NoStream,
            (1..=3).map(mark).collect(),
        )
        .await
        .unwrap();
    store
        .append(
            &stream(&format!("own-{prefix}x")),
            ExpectedVersion::NoStream,
            vec![mark(4)],
        )
        .await
        .unwrap();
    store
        .save_snapshot(&stream("shared-1"), snapshot(prefix, 3))
        .await
        .unwrap();
    store
        .checkpoints()
        .save("projection", Position::new(2))
        .await
        .unwrap();
}

fn snapshot(prefix: &str, version: u64) -> Snapshot {
    Snapshot::new(
        Version::new(version),
        format!("state of `{prefix}`").into_bytes(),
    )
}

/// The conformance fixture: a `two_` store beside two filled neighbours.
async fn beside_neighbours() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("shared.db");
    let mut neighbours = Vec::new();
    for prefix in NEIGHBOURS {
        let store = open(&path, prefix).await;
        seed(&store, prefix).await;
        neighbours.push(store);
    }
    let store = open(&path, "two_").await;
    let closing = store.clone();
    Fixture::new(store).with_teardown(async move {
        closing.close().await;
        for neighbour in neighbours {
            neighbour.close().await;
        }
        drop(dir);
    })
}

annals_testing::conformance_suite!(beside_neighbours());

async fn everything(store: &SqliteEventStore) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap()
}

async fn table_names(store: &SqliteEventStore) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .fetch_all(store.reader_pool())
        .await
        .unwrap()
}

/// What a neighbour holds, read back through its own store.
#[derive(Debug, PartialEq)]
struct Contents {
    events: Vec<RecordedEvent>,
    versions: Vec<Version>,
    snapshot: Option<Snapshot>,
    checkpoint: Option<Position>,
}

async fn contents(store: &SqliteEventStore, prefix: &str) -> Contents {
    let mut versions = Vec::new();
    for name in ["shared-1", &format!("own-{prefix}x"), "busy-0"] {
        versions.push(store.stream_version(&stream(name)).await.unwrap());
    }
    Contents {
        events: everything(store).await,
        versions,
        snapshot: store.load_snapshot(&stream("shared-1")).await.unwrap(),
        checkpoint: store.checkpoints().load("projection").await.unwrap(),
    }
}

#[tokio::test]
async fn neighbours_keep_exactly_their_own_data_after_heavy_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let mut neighbours = Vec::new();
    for prefix in NEIGHBOURS {
        let store = open(&path, prefix).await;
        seed(&store, prefix).await;
        let before = contents(&store, prefix).await;
        assert_eq!(before.events.len(), 4, "{prefix}");
        assert_eq!(
            before.versions,
            [Version::new(3), Version::new(1), Version::ZERO]
        );
        assert_eq!(before.snapshot, Some(snapshot(prefix, 3)));
        assert_eq!(before.checkpoint, Some(Position::new(2)));
        for event in &before.events {
            assert_eq!(event.event_type, format!("Seeded{prefix}"));
        }
        neighbours.push((prefix, store, before));
    }

    let two = open(&path, "two_").await;
    assert!(everything(&two).await.is_empty());

    // Heavy use of `two_`: concurrent appends to the neighbours' stream names and
    // others, multi-stream commits, snapshots, checkpoints, queries, deletes.
    let mut appends = Vec::new();
    for task in 0..8u64 {
        let two = two.clone();
        appends.push(tokio::spawn(async move {
            for round in 0..25u64 {
                let name = if round % 5 == 0 {
                    "shared-1".to_owned()
                } else {
                    format!("busy-{}", task % 3)
                };
                let events = (0..4)
                    .map(|i| common::event(task * 1000 + round * 10 + i))
                    .collect();
                two.append(&stream(&name), ExpectedVersion::Any, events)
                    .await
                    .unwrap();
            }
        }));
    }
    for append in appends {
        append.await.unwrap();
    }
    let written = everything(&two).await;
    assert_eq!(written.len(), 8 * 25 * 4);
    assert!(written.iter().all(|e| e.event_type == "Noted"));
    assert_eq!(
        two.stream_version(&stream("shared-1")).await.unwrap(),
        Version::new(8 * 5 * 4)
    );
    // The neighbours' ids are not in `two_`; re-sending a `two_` event is idempotent.
    for (_, neighbour, before) in &neighbours {
        let id = before.events[0].id;
        assert!(two.get_event(id).await.unwrap_err().is_not_found());
        assert_eq!(neighbour.get_event(id).await.unwrap(), before.events[0]);
    }
    two.save_snapshot(&stream("shared-1"), snapshot("two_", 40))
        .await
        .unwrap();
    two.save_snapshot(&stream("own-x"), snapshot("two_", 1))
        .await
        .unwrap();
    two.delete_snapshot(&stream("own-x")).await.unwrap();
    let checkpoints = two.checkpoints();
    checkpoints
        .save("projection", Position::new(700))
        .await
        .unwrap();
    checkpoints.save("other", Position::new(5)).await.unwrap();
    checkpoints.reset("other").await.unwrap();
    let noted: Vec<RecordedEvent> = two
        .query(EventQuery::new().event_type("Noted").limit(10))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(noted.len(), 10);
    let seeded: Vec<RecordedEvent> = two
        .query(
            EventQuery::new()
                .event_type("Seeded")
                .event_type("Seededone_"),
        )
        .try_collect()
        .await
        .unwrap();
    assert!(seeded.is_empty());
    let back: Vec<RecordedEvent> = two
        .read_stream(ReadStream::backward(&stream("shared-1")).limit(3))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(back[0].version, Version::new(160));

    // Leases of different prefixes are separate, on the same name.
    let held = two.leases().acquire("projection").await.unwrap();
    for (_, neighbour, _) in &neighbours {
        let other = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            neighbour.leases().acquire("projection"),
        )
        .await
        .expect("another prefix's lease is free")
        .unwrap();
        assert!(other.is_held());
    }
    assert!(held.is_held());

    // Each neighbour still reads back exactly its own data, before and after
    // reopening (which checks its own applied migrations).
    for (prefix, neighbour, before) in neighbours {
        assert_eq!(contents(&neighbour, prefix).await, before, "`{prefix}`");
        neighbour.close().await;
        let reopened = open(&path, prefix).await;
        assert_eq!(contents(&reopened, prefix).await, before, "`{prefix}`");
        reopened.close().await;
    }
    assert_eq!(
        two.load_snapshot(&stream("shared-1")).await.unwrap(),
        Some(snapshot("two_", 40))
    );
    assert_eq!(
        two.checkpoints().load("projection").await.unwrap(),
        Some(Position::new(700))
    );
    assert_eq!(two.checkpoints().load("other").await.unwrap(), None);

    // One file, three schemas, each with its own bookkeeping.
    let mut expected = Vec::new();
    for prefix in ["", "one_", "two_"] {
        for table in ["_sqlx_migrations", "checkpoints", "events", "snapshots"] {
            expected.push(format!("{prefix}{table}"));
        }
    }
    expected.sort();
    assert_eq!(table_names(&two).await, expected);
    two.close().await;
}

#[tokio::test]
async fn a_prefixed_store_checks_only_its_own_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    open(&path, "").await.close().await;
    open(&path, "two_").await.close().await;

    // Pretend a newer annals-sqlite migrated the `two_` store.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO two__sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from the future', 1, x'00', 0)",
        [],
    )
    .unwrap();
    drop(conn);

    let err = SqliteOptions::new(&path)
        .table_prefix("two_")
        .open()
        .await
        .unwrap_err();
    assert!(
        matches!(
            OpenError::find(&err),
            Some(OpenError::SchemaTooNew { unknown, .. }) if unknown == &[999]
        ),
        "{err:?}"
    );
    // The default store and a third prefix do not care.
    open(&path, "").await.close().await;
    open(&path, "three_").await.close().await;
}

#[tokio::test]
async fn an_in_memory_store_takes_a_prefix_too() {
    let store = SqliteOptions::in_memory()
        .table_prefix("mem_")
        .open()
        .await
        .unwrap();
    store
        .append(
            &stream("s"),
            ExpectedVersion::NoStream,
            vec![common::event(1)],
        )
        .await
        .unwrap();
    assert_eq!(everything(&store).await.len(), 1);
    assert_eq!(
        table_names(&store).await,
        [
            "mem__sqlx_migrations",
            "mem_checkpoints",
            "mem_events",
            "mem_snapshots"
        ]
    );
}

const HOSTILE: [&str; 9] = [
    "x\"y",
    "x;DROP TABLE events",
    "a'b",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", // 33 characters
    "Upper_",
    "1st_",
    "a b",
    "a-b",
    "sqlite_", // valid for TablePrefix, but SQLite reserves the names
];

/// Every name in the file's schema (read-only, without a store).
fn schema_of(path: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = conn
        .prepare("SELECT type || ' ' || name FROM sqlite_schema ORDER BY name")
        .unwrap();
    let names = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    names
}

#[tokio::test]
async fn hostile_prefixes_are_invalid_input_and_create_nothing() {
    assert_eq!(HOSTILE[3].len(), 33);
    let dir = tempfile::tempdir().unwrap();

    // A file that does not exist yet (in a directory that does not either).
    for prefix in HOSTILE {
        let path = dir.path().join("missing/events.db");
        let err = SqliteOptions::new(&path)
            .table_prefix(prefix)
            .open()
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "`{prefix}`: {err:?}");
        assert!(!dir.path().join("missing").exists(), "`{prefix}`");
    }
    let err = SqliteOptions::in_memory()
        .table_prefix("x;")
        .open()
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");

    // A file with a store in it: left exactly as it was.
    let path = dir.path().join("events.db");
    let store = open(&path, "").await;
    store
        .append(
            &stream("s"),
            ExpectedVersion::NoStream,
            vec![common::event(1)],
        )
        .await
        .unwrap();
    store.close().await;
    let schema = schema_of(&path);
    assert!(schema.contains(&"table events".to_owned()), "{schema:?}");
    let bytes = std::fs::read(&path).unwrap();
    for prefix in HOSTILE {
        let err = SqliteOptions::new(&path)
            .table_prefix(prefix)
            .open()
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "`{prefix}`: {err:?}");
        assert_eq!(schema_of(&path), schema, "`{prefix}`");
        assert!(std::fs::read(&path).unwrap() == bytes, "`{prefix}`");
    }
    let store = open(&path, "").await;
    assert_eq!(everything(&store).await.len(), 1);
    let tables: Vec<String> = table_names(&store).await;
    assert_eq!(
        tables,
        ["_sqlx_migrations", "checkpoints", "events", "snapshots"]
    );
    store.close().await;
}

#[tokio::test]
async fn the_option_reads_back() {
    let options = SqliteOptions::new("events.db");
    assert_eq!(options.get_table_prefix(), "");
    assert_eq!(options.table_prefix("t1_").get_table_prefix(), "t1_");
}

#[tokio::test]
async fn the_outbox_appends_to_the_prefixed_tables_and_leaves_the_callers_sql_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let plain = open(&path, "").await;
    let two = open(&path, "two_").await;
    two.write_with(|db| {
        db.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)", [])
            .map_err(|e| annals_sqlite::Error::backend("creating orders", e))
    })
    .await
    .unwrap();
    let request = annals_sqlite::AppendRequest::new().append(
        &stream("order-1"),
        ExpectedVersion::NoStream,
        vec![common::event(1)],
    );
    let (rows, committed) = two
        .commit_with(request, |db| {
            db.execute("INSERT INTO orders VALUES ('order-1')", [])
                .map_err(|e| annals_sqlite::Error::backend("recording the order", e))
        })
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(committed.positions().count(), 1);
    assert_eq!(everything(&two).await.len(), 1);
    assert!(everything(&plain).await.is_empty());
    let tables = table_names(&plain).await;
    assert!(tables.contains(&"orders".to_owned()), "{tables:?}");
    assert!(!tables.contains(&"two_orders".to_owned()), "{tables:?}");
    two.close().await;
    plain.close().await;
}
