//! Many writers at once: never `SQLITE_BUSY`, only success or `Conflict`, and a
//! complete, contiguous log afterwards.
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

use std::collections::HashMap;

use annals_sqlite::{
    futures::TryStreamExt, EventStore, ExpectedVersion, NewEvent, Position, ReadStream,
    RecordedEvent, SqliteEventStore, StreamId, Version,
};

const WRITERS: usize = 16;
const APPENDS_PER_WRITER: u64 = 500;
const RACERS: usize = 4;
const RACE_ATTEMPTS: usize = 100;

/// Checks that positions are exactly 1..=N and every stream's versions are 1..=n.
fn assert_complete_and_contiguous(log: &[RecordedEvent]) -> HashMap<StreamId, u64> {
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    for (i, event) in log.iter().enumerate() {
        assert_eq!(
            event.position,
            Position::new(i as u64 + 1),
            "gap in the log"
        );
        let v = versions.entry(event.stream_id.clone()).or_default();
        *v += 1;
        assert_eq!(
            event.version,
            Version::new(*v),
            "gap in {}",
            event.stream_id
        );
    }
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_see_busy_and_log_is_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("writer-{w}")).unwrap();
            for i in 0..APPENDS_PER_WRITER {
                let result = store
                    .append(
                        &stream,
                        ExpectedVersion::Exact(Version::new(i)),
                        vec![event(i)],
                    )
                    .await;
                match result {
                    Ok(r) => assert_eq!(r.version, Version::new(i + 1)),
                    Err(e) => panic!("writer {w} append {i} failed: {e}"),
                }
            }
        }));
    }

    let contended = StreamId::new("contended").unwrap();
    let mut racers = Vec::new();
    for r in 0..RACERS {
        let store = store.clone();
        let stream = contended.clone();
        racers.push(tokio::spawn(async move {
            let (mut won, mut lost) = (0u64, 0u64);
            for attempt in 0..RACE_ATTEMPTS {
                let seen = store.stream_version(&stream).await.unwrap();
                let n = (r * RACE_ATTEMPTS + attempt) as u64;
                match store
                    .append(&stream, ExpectedVersion::Exact(seen), vec![event(n)])
                    .await
                {
                    Ok(result) => {
                        assert_eq!(result.version, seen.next());
                        won += 1;
                    }
                    Err(e) if e.is_conflict() => lost += 1,
                    Err(e) => panic!("racer {r} got neither success nor conflict: {e}"),
                }
            }
            (won, lost)
        }));
    }

    for writer in writers {
        writer.await.unwrap();
    }
    let mut won = 0;
    for racer in racers {
        let (w, l) = racer.await.unwrap();
        assert_eq!(w + l, RACE_ATTEMPTS as u64);
        won += w;
    }
    assert!(won >= 1, "some racer must win");

    let log = read_everything(&store).await;
    assert_eq!(log.len() as u64, WRITERS as u64 * APPENDS_PER_WRITER + won);
    let versions = assert_complete_and_contiguous(&log);
    for w in 0..WRITERS {
        let stream = StreamId::new(format!("writer-{w}")).unwrap();
        assert_eq!(versions[&stream], APPENDS_PER_WRITER);
    }
    assert_eq!(versions[&contended], won);
    assert_eq!(
        store.stream_version(&contended).await.unwrap(),
        Version::new(won)
    );
}

/// Two stores on one file behave like two processes: they contend for SQLite's
/// write lock, which the busy timeout absorbs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let a = SqliteEventStore::open(&path).await.unwrap();
    let b = SqliteEventStore::open(&path).await.unwrap();
    let mut tasks = Vec::new();
    for (name, store) in [("a", a.clone()), ("b", b.clone())] {
        for t in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("{name}-{t}")).unwrap();
                for i in 0..100 {
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Exact(Version::new(i)),
                            vec![event(i)],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("store {name} task {t} append {i}: {e}"));
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let log = read_everything(&b).await;
    assert_eq!(log.len(), 800);
    assert_complete_and_contiguous(&log);
    assert_eq!(read_everything(&a).await, log);
}

/// Appends cancelled at any point (the caller's future dropped mid-transaction)
/// leave no partial batch behind and do not wedge the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_appends_are_all_or_nothing_and_the_writer_recovers() {
    const BATCH: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let stream = StreamId::new("cancelled").unwrap();
    for round in 0..40u64 {
        let batch: Vec<NewEvent> = (0..BATCH).map(event).collect();
        let store2 = store.clone();
        let stream2 = stream.clone();
        let task =
            tokio::spawn(async move { store2.append(&stream2, ExpectedVersion::Any, batch).await });
        // Cancel after a varying delay: before, during or after the transaction.
        tokio::time::sleep(std::time::Duration::from_micros((round * 211) % 4000)).await;
        task.abort();
        let _ = task.await;
        let version = store.stream_version(&stream).await.unwrap();
        assert_eq!(
            version.get() % BATCH,
            0,
            "round {round}: partial batch visible"
        );
        // A cancelled append's outcome is unknown to its caller: its COMMIT may still
        // be in flight and land before the next write. Either way, whole batches only.
        let result = store
            .append(
                &stream,
                ExpectedVersion::Any,
                (0..BATCH).map(event).collect(),
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: the writer did not recover: {e}"));
        assert!(result.version.get() >= version.get() + BATCH);
        assert_eq!(
            result.version.get() % BATCH,
            0,
            "round {round}: partial batch"
        );
    }
    let log = read_everything(&store).await;
    assert_complete_and_contiguous(&log);
    assert_eq!(log.len() as u64 % BATCH, 0);
}

/// An in-memory store's reads run on their own connection to the shared-cache
/// database; they take turns with appends, so neither sees `SQLITE_LOCKED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_reads_and_appends_take_turns() {
    let store = SqliteEventStore::in_memory().await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("writer-{w}")).unwrap();
            for i in 0..100 {
                store
                    .append(
                        &stream,
                        ExpectedVersion::Exact(Version::new(i * 10)),
                        (0..10).map(event).collect(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("writer {w} append {i}: {e}"));
            }
        }));
    }
    for r in 0..2 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let log = read_everything(&store).await;
                assert_complete_and_contiguous(&log);
                let stream = StreamId::new(format!("writer-{}", i % 4)).unwrap();
                let events: Vec<_> = store
                    .read_stream(ReadStream::forward(&stream))
                    .try_collect()
                    .await
                    .unwrap_or_else(|e| panic!("reader {r} read {i}: {e}"));
                assert_eq!(events.len() % 10, 0, "reader {r}: partial batch");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(read_everything(&store).await.len(), 4000);
}
