//! Appends across several streams are one SQLite transaction: a request that fails
//! in its third part leaves no row of its first two behind, whether it fails before
//! the insert (a conflict, bad input) or during it (a reused id after hundreds of
//! rows were already inserted in the transaction).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

mod common;

use common::{event, read_everything};

use annals_sqlite::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, Position, SqliteEventStore, StreamId,
    Version,
};

/// The number of event rows in the database, counted with raw SQL.
async fn raw_count(store: &SqliteEventStore) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(store.reader_pool())
        .await
        .unwrap()
}

async fn file_store() -> (tempfile::TempDir, SqliteEventStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    (dir, store)
}

fn streams() -> [StreamId; 3] {
    ["first", "second", "third"].map(|s| StreamId::new(s).unwrap())
}

/// Seeds each stream with one event; returns the seed events.
async fn seed(store: &SqliteEventStore) -> Vec<NewEvent> {
    let mut seeded = Vec::new();
    for (i, stream) in streams().iter().enumerate() {
        let e = event(i as u64);
        store
            .append(stream, ExpectedVersion::NoStream, vec![e.clone()])
            .await
            .unwrap();
        seeded.push(e);
    }
    seeded
}

/// Many events for one part: more than one multi-row `INSERT` (256 rows each).
fn many(from: u64) -> Vec<NewEvent> {
    (from..from + 300).map(event).collect()
}

#[tokio::test]
async fn a_conflict_in_the_third_part_writes_nothing() {
    let (_dir, store) = file_store().await;
    seed(&store).await;
    let before = read_everything(&store).await;
    let [a, b, c] = streams();
    let err = store
        .commit(
            AppendRequest::new()
                .append(&a, ExpectedVersion::Exact(Version::new(1)), many(0))
                .append(&b, ExpectedVersion::Any, many(1000))
                .append(&c, ExpectedVersion::Exact(Version::new(7)), vec![event(9)]),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let conflicts = err.conflicts();
    assert_eq!(conflicts.len(), 1, "{err}");
    assert_eq!(conflicts[0].stream, c);
    assert_eq!(conflicts[0].actual, Version::new(1));
    assert_eq!(raw_count(&store).await, 3);
    assert_eq!(read_everything(&store).await, before);
}

#[tokio::test]
async fn a_conflict_names_every_mismatched_stream_and_writes_nothing() {
    let (_dir, store) = file_store().await;
    seed(&store).await;
    let [a, b, c] = streams();
    let err = store
        .commit(
            AppendRequest::new()
                .append(&a, ExpectedVersion::NoStream, vec![event(1)])
                .append(&b, ExpectedVersion::Exact(Version::new(1)), vec![event(2)])
                .require(&c, ExpectedVersion::Exact(Version::new(5))),
        )
        .await
        .unwrap_err();
    let named: Vec<StreamId> = err.conflicts().into_iter().map(|c| c.stream).collect();
    assert_eq!(named, vec![a, c]);
    assert_eq!(raw_count(&store).await, 3);
}

#[tokio::test]
async fn a_reused_id_in_the_third_part_rolls_back_rows_already_inserted() {
    let (_dir, store) = file_store().await;
    let seeded = seed(&store).await;
    let before = read_everything(&store).await;
    let [a, b, c] = streams();
    // Parts one and two are 600 rows: the third part's `INSERT` runs after two full
    // statements went in, and hits the unique event-id index.
    let err = store
        .commit(
            AppendRequest::new()
                .append(&a, ExpectedVersion::Any, many(0))
                .append(&b, ExpectedVersion::Any, many(1000))
                .append(
                    &c,
                    ExpectedVersion::Any,
                    vec![event(5), event(6).with_id(seeded[0].id)],
                ),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    assert_eq!(raw_count(&store).await, 3);
    assert_eq!(read_everything(&store).await, before);

    // The writer is fine afterwards, and positions continue without a gap.
    let committed = store
        .commit(
            AppendRequest::new()
                .append(&a, ExpectedVersion::Exact(Version::new(1)), vec![event(7)])
                .append(&c, ExpectedVersion::Exact(Version::new(1)), vec![event(8)]),
        )
        .await
        .unwrap();
    let positions: Vec<Position> = committed.positions().collect();
    assert_eq!(positions, vec![Position::new(4), Position::new(5)]);
    assert_eq!(raw_count(&store).await, 5);
}

#[tokio::test]
async fn bad_input_in_the_third_part_writes_nothing() {
    let (_dir, store) = file_store().await;
    seed(&store).await;
    let [a, b, c] = streams();
    let err = store
        .commit(
            AppendRequest::new()
                .append(&a, ExpectedVersion::Any, many(0))
                .append(&b, ExpectedVersion::Any, vec![event(1)])
                .append(
                    &c,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("Bad\0Type", b"{}".to_vec())],
                ),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    assert_eq!(raw_count(&store).await, 3);
}

#[tokio::test]
async fn a_resend_of_a_committed_multi_stream_request_returns_the_original() {
    for store in [
        file_store().await.1,
        SqliteEventStore::in_memory().await.unwrap(),
    ] {
        let [a, b, _] = streams();
        let request = AppendRequest::new()
            .append(&a, ExpectedVersion::NoStream, many(0))
            .append(&b, ExpectedVersion::NoStream, vec![event(1), event(2)]);
        let original = store.commit(request.clone()).await.unwrap();
        assert_eq!(original.parts.len(), 2);
        assert_eq!(original.parts[1].version, Version::new(2));
        // The expectations no longer hold: the store must find the stored ids.
        let again = store.commit(request).await.unwrap();
        assert_eq!(again, original);
        assert_eq!(raw_count(&store).await, 302);
    }
}
