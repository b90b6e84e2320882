//! SQLite read specifics: the stream glob is part of the page query (applied
//! before the limit), and backward reads page correctly across page boundaries
//! (2,048 rows, or about 8 MiB of payload, per page).
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

use annals_sqlite::{
    futures::TryStreamExt, EventStore, ExpectedVersion, NewEvent, Position, ReadAll, ReadFilter,
    ReadStream, RecordedEvent, SqliteEventStore, StreamId, Version,
};

/// Rows per read page in `read.rs`.
const PAGE_ROWS: u64 = 2048;

async fn file_store() -> (tempfile::TempDir, SqliteEventStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    (dir, store)
}

async fn all(store: &SqliteEventStore, read: ReadAll) -> Vec<RecordedEvent> {
    store.read_all(read).try_collect().await.unwrap()
}

async fn stream(store: &SqliteEventStore, read: ReadStream) -> Vec<RecordedEvent> {
    store.read_stream(read).try_collect().await.unwrap()
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.get()).collect()
}

#[tokio::test]
async fn the_glob_filter_applies_before_the_limit() {
    let (_dir, store) = file_store().await;
    // The first 100 events are in streams the glob skips.
    for i in 0..100 {
        let s = StreamId::new(format!("skip-{i}")).unwrap();
        store
            .append(&s, ExpectedVersion::NoStream, vec![event(i)])
            .await
            .unwrap();
    }
    for i in 0..5 {
        let s = StreamId::new(format!("keep-{i}")).unwrap();
        store
            .append(&s, ExpectedVersion::NoStream, vec![event(i)])
            .await
            .unwrap();
    }
    let glob = || ReadFilter::new().stream_glob("keep-*");
    let first_two = all(&store, ReadAll::forward().filter(glob()).limit(2)).await;
    assert_eq!(positions(&first_two), vec![101, 102]);
    let last_two = all(&store, ReadAll::backward().filter(glob()).limit(2)).await;
    assert_eq!(positions(&last_two), vec![105, 104]);
    let resumed = all(
        &store,
        ReadAll::after(Position::new(102)).filter(glob()).limit(2),
    )
    .await;
    assert_eq!(positions(&resumed), vec![103, 104]);

    // SQLite's GLOB semantics, as `ReadFilter::matches` specifies them.
    let log = read_everything(&store).await;
    for pattern in [
        "keep-?",
        "skip-[1-3]?",
        "KEEP-*",
        "*-[^0-8]",
        "skip-[*]",
        "keep-[",
        "*",
    ] {
        let filter = ReadFilter::new().stream_glob(pattern);
        let expected: Vec<u64> = log
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| e.position.get())
            .collect();
        let got = all(&store, ReadAll::forward().filter(filter.clone())).await;
        assert_eq!(positions(&got), expected, "{pattern}");
        let combined = filter.event_type("Noted").stream_prefix("skip-1");
        let got = all(&store, ReadAll::forward().filter(combined.clone()).limit(3)).await;
        let expected: Vec<u64> = log
            .iter()
            .filter(|e| combined.matches(e))
            .take(3)
            .map(|e| e.position.get())
            .collect();
        assert_eq!(positions(&got), expected, "{pattern} with type and prefix");
    }
}

#[tokio::test]
async fn the_glob_skips_many_pages_of_other_streams() {
    let (_dir, store) = file_store().await;
    let noise = StreamId::new("noise").unwrap();
    store
        .append(
            &noise,
            ExpectedVersion::NoStream,
            (0..2 * PAGE_ROWS + 10).map(event).collect(),
        )
        .await
        .unwrap();
    let wanted = StreamId::new("wanted-1").unwrap();
    store
        .append(&wanted, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();
    let filter = ReadFilter::new().stream_glob("wanted-*");
    let got = all(&store, ReadAll::forward().filter(filter).limit(2)).await;
    assert_eq!(versions(&got), vec![1, 2]);
    assert!(got.iter().all(|e| e.stream_id == wanted));
}

/// Two streams interleaved in the log, 3 pages' worth of events in all.
async fn interleaved(store: &SqliteEventStore) -> (StreamId, StreamId) {
    let (a, b) = (StreamId::new("a").unwrap(), StreamId::new("b").unwrap());
    for round in 0..10u64 {
        store
            .append(
                &a,
                ExpectedVersion::Any,
                (0..500).map(|i| event(round * 500 + i)).collect(),
            )
            .await
            .unwrap();
        store
            .append(
                &b,
                ExpectedVersion::Any,
                (0..100).map(|i| event(round * 100 + i)).collect(),
            )
            .await
            .unwrap();
    }
    (a, b)
}

#[tokio::test]
async fn backward_stream_reads_page_across_boundaries() {
    let (_dir, store) = file_store().await;
    let (a, b) = interleaved(&store).await;

    let forward = stream(&store, ReadStream::forward(&a)).await;
    assert_eq!(forward.len(), 5000);
    let backward = stream(&store, ReadStream::backward(&a)).await;
    let mut reversed = forward.clone();
    reversed.reverse();
    assert_eq!(backward, reversed, "each event once, newest first");

    // A cursor and a limit that both cross page boundaries.
    let window = stream(
        &store,
        ReadStream::backward(&a)
            .before(Version::new(4500))
            .limit(3000),
    )
    .await;
    assert_eq!(versions(&window), (1500..4500).rev().collect::<Vec<_>>());
    // A limit of exactly one page, and one past it.
    for limit in [PAGE_ROWS, PAGE_ROWS + 1] {
        let got = stream(&store, ReadStream::backward(&a).limit(limit)).await;
        assert_eq!(
            versions(&got),
            (5001 - limit..=5000).rev().collect::<Vec<_>>()
        );
    }
    // Forward after a cursor, across boundaries too.
    let resumed = stream(
        &store,
        ReadStream::forward(&a)
            .after(Version::new(1000))
            .limit(2500),
    )
    .await;
    assert_eq!(versions(&resumed), (1001..3501).collect::<Vec<_>>());

    let b_backward = stream(&store, ReadStream::backward(&b)).await;
    assert_eq!(versions(&b_backward), (1..=1000).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn backward_log_reads_page_across_boundaries() {
    let (_dir, store) = file_store().await;
    let (_, b) = interleaved(&store).await;

    let everything = all(&store, ReadAll::backward()).await;
    assert_eq!(positions(&everything), (1..=6000).rev().collect::<Vec<_>>());

    let window = all(&store, ReadAll::before(Position::new(5000)).limit(2500)).await;
    assert_eq!(positions(&window), (2500..5000).rev().collect::<Vec<_>>());

    // A filter that drops most rows, newest first: every `b` event once.
    let only_b = all(
        &store,
        ReadAll::backward().filter(ReadFilter::new().stream_glob("b")),
    )
    .await;
    assert_eq!(only_b.len(), 1000);
    assert!(only_b.iter().all(|e| e.stream_id == b));
    assert!(only_b.windows(2).all(|w| w[0].position > w[1].position));
    assert_eq!(versions(&only_b), (1..=1000).rev().collect::<Vec<_>>());
}

/// Pages also end after about 8 MiB of payload; backward reads continue below the
/// last event of such a page.
#[tokio::test]
async fn backward_reads_page_by_payload_size() {
    let (_dir, store) = file_store().await;
    let big = StreamId::new("big").unwrap();
    let events: Vec<NewEvent> = (0..6u8)
        .map(|i| NewEvent::new("Big", vec![i; 3 * 1024 * 1024]))
        .collect();
    store
        .append(&big, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    let backward = stream(&store, ReadStream::backward(&big)).await;
    assert_eq!(versions(&backward), vec![6, 5, 4, 3, 2, 1]);
    for e in &backward {
        assert_eq!(e.payload[0] as u64, e.version.get() - 1);
    }
    let log = all(&store, ReadAll::backward().limit(4)).await;
    assert_eq!(positions(&log), vec![6, 5, 4, 3]);
}
