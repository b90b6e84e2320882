//! Group commit: appends queued behind a running transaction share the next one,
//! and each keeps its own semantics (version check, conflict, idempotency,
//! atomicity, gap-free positions); a failed shared `COMMIT` fails every member.
//!
//! To make groups form deterministically, each test first starts a large
//! "blocker" append and queues the members while the writer is busy with it.
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

use std::{collections::HashMap, time::Duration};

use annals_sqlite::{
    EventId, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, SqliteEventStore,
    SqliteOptions, StreamId, Version,
};

/// Positions 1..=N and every stream's versions 1..=n; returns each stream's length.
fn assert_contiguous(log: &[RecordedEvent]) -> HashMap<StreamId, u64> {
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

async fn file_store() -> (tempfile::TempDir, SqliteEventStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    (dir, store)
}

/// Starts a large append that keeps the writer busy while the test queues more.
fn blocker(store: &SqliteEventStore, name: &str) -> tokio::task::JoinHandle<()> {
    let store = store.clone();
    let stream = StreamId::new(name).unwrap();
    tokio::spawn(async move {
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                (0..20_000).map(event).collect(),
            )
            .await
            .unwrap();
    })
}

/// Holds the store's writer: a `write_with` whose work waits until the returned
/// sender sends (or is dropped). Returns once the writer is held, so every append
/// started afterwards queues behind it and joins the next group.
async fn hold_writer(
    store: &SqliteEventStore,
) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = tokio::sync::oneshot::channel::<()>();
    let store = store.clone();
    let task = tokio::spawn(async move {
        store
            .write_with(move |_| {
                let _ = held.send(());
                // A deadline only against a test that forgets to release.
                let _ = hold.recv_timeout(Duration::from_secs(300));
                Ok::<_, annals_sqlite::Error>(())
            })
            .await
            .unwrap();
    });
    tokio::time::timeout(Duration::from_secs(120), is_held)
        .await
        .expect("the writer is held within 120 s")
        .expect("the holding work runs");
    (release, task)
}

/// 16 tasks, half of them with a wrong expectation (and, among the others, eight
/// racing for one new stream): only the conflicting appends fail; the others
/// commit, and the log stays gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_half_conflicting_only_the_conflicting_fail() {
    let (_dir, store) = file_store().await;
    for round in 0..5u64 {
        let busy = blocker(&store, &format!("blocker-{round}"));
        tokio::time::sleep(Duration::from_millis(2)).await;
        let shared = StreamId::new(format!("shared-{round}")).unwrap();
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let store = store.clone();
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let own = StreamId::new(format!("own-{round}-{t}")).unwrap();
                let (stream, expected) = match t % 4 {
                    // Four with an impossible expectation on their own stream.
                    0 => (own, ExpectedVersion::Exact(Version::new(7))),
                    // Four that expect their own new stream to exist already.
                    1 => (own, ExpectedVersion::StreamExists),
                    // Four creating their own stream.
                    2 => (own, ExpectedVersion::NoStream),
                    // Four racing to create the shared stream: one wins.
                    _ => (shared, ExpectedVersion::NoStream),
                };
                let result = store
                    .append(&stream, expected, vec![event(t), event(t + 100)])
                    .await;
                (t, stream, result)
            }));
        }
        busy.await.unwrap();
        let mut shared_winners = 0;
        for task in tasks {
            let (t, stream, result) = task.await.unwrap();
            match (t % 4, result) {
                (0 | 1, Err(e)) => assert!(e.is_conflict(), "task {t}: {e}"),
                (2, Ok(r)) => assert_eq!(r.version, Version::new(2), "task {t}"),
                (3, Ok(r)) => {
                    shared_winners += 1;
                    assert_eq!(r.version, Version::new(2));
                }
                (3, Err(e)) => assert!(e.is_conflict(), "task {t}: {e}"),
                (_, other) => panic!("round {round} task {t} on {stream}: {other:?}"),
            }
        }
        assert_eq!(
            shared_winners, 1,
            "round {round}: exactly one creates the shared stream"
        );
    }
    let log = read_everything(&store).await;
    let streams = assert_contiguous(&log);
    for round in 0..5u64 {
        for t in 0..16u64 {
            let own = StreamId::new(format!("own-{round}-{t}")).unwrap();
            let expected = if t % 4 == 2 { Some(&2) } else { None };
            assert_eq!(streams.get(&own), expected, "own-{round}-{t}");
        }
        let shared = StreamId::new(format!("shared-{round}")).unwrap();
        assert_eq!(streams.get(&shared), Some(&2));
    }
}

/// Members with bad input in one group (an event id reused for other content, by a
/// neighbour in the same group or by a stored event) fail alone; an exact re-send
/// in the same group is answered from the first send; the rest commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_with_bad_input_fails_alone() {
    let (_dir, store) = file_store().await;
    let stored_id = EventId::new();
    let earlier = StreamId::new("earlier").unwrap();
    store
        .append(
            &earlier,
            ExpectedVersion::NoStream,
            vec![event(1).with_id(stored_id)],
        )
        .await
        .unwrap();

    let busy = blocker(&store, "blocker");
    tokio::time::sleep(Duration::from_millis(2)).await;
    let shared_id = EventId::new();
    let resent_id = EventId::new();
    let resent = StreamId::new("resent").unwrap();
    let cases: Vec<(&str, StreamId, Vec<NewEvent>)> = vec![
        (
            "good-1",
            StreamId::new("good-1").unwrap(),
            vec![event(1), event(2)],
        ),
        (
            "first-user",
            StreamId::new("first-user").unwrap(),
            vec![event(3).with_id(shared_id)],
        ),
        (
            "reuses-neighbour",
            StreamId::new("reuses-neighbour").unwrap(),
            vec![event(4), event(99).with_id(shared_id)],
        ),
        (
            "reuses-stored",
            StreamId::new("reuses-stored").unwrap(),
            vec![event(5), event(98).with_id(stored_id)],
        ),
        (
            "resend-a",
            resent.clone(),
            vec![event(6).with_id(resent_id)],
        ),
        (
            "resend-b",
            resent.clone(),
            vec![event(6).with_id(resent_id)],
        ),
        ("good-2", StreamId::new("good-2").unwrap(), vec![event(7)]),
    ];
    let mut tasks = Vec::new();
    for (name, stream, events) in cases {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let result = store
                .append(&stream, ExpectedVersion::NoStream, events)
                .await;
            (name, result)
        }));
        tokio::task::yield_now().await;
    }
    busy.await.unwrap();
    let mut results = HashMap::new();
    for task in tasks {
        let (name, result) = task.await.unwrap();
        results.insert(name, result);
    }
    for name in ["good-1", "good-2"] {
        assert!(results[name].is_ok(), "{name}: {:?}", results[name]);
    }
    let invalid = |name: &str| {
        matches!(
            results[name].as_ref(),
            Err(annals_sqlite::Error::InvalidInput(_))
        )
    };
    // Two members of one group use `shared_id` for different events: whichever the
    // writer takes first stores it, the other fails alone with `InvalidInput`.
    let (winner, loser) = if results["first-user"].is_ok() {
        ("first-user", "reuses-neighbour")
    } else {
        ("reuses-neighbour", "first-user")
    };
    assert!(results[winner].is_ok(), "{winner}: {:?}", results[winner]);
    assert!(invalid(loser), "{loser}: {:?}", results[loser]);
    assert!(invalid("reuses-stored"), "{:?}", results["reuses-stored"]);
    let a = results["resend-a"].as_ref().unwrap();
    let b = results["resend-b"].as_ref().unwrap();
    assert_eq!(
        a.positions, b.positions,
        "the re-send is answered from the first"
    );

    let log = read_everything(&store).await;
    let streams = assert_contiguous(&log);
    assert_eq!(streams.get(&StreamId::new("good-1").unwrap()), Some(&2));
    assert_eq!(streams.get(&StreamId::new("good-2").unwrap()), Some(&1));
    let stored = |name: &str| streams.get(&StreamId::new(name).unwrap()).copied();
    assert_eq!(
        stored(winner),
        Some(if winner == "first-user" { 1 } else { 2 })
    );
    assert_eq!(stored(loser), None);
    assert_eq!(streams.get(&StreamId::new("reuses-stored").unwrap()), None);
}

/// Cancelling members while their group is queued or running: each append is all
/// or nothing, the log stays gap-free, and the store keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_members_are_all_or_nothing_and_the_store_stays_usable() {
    const BATCH: u64 = 50;
    let (_dir, store) = file_store().await;
    for round in 0..20u64 {
        let busy = (round % 2 == 0).then(|| blocker(&store, &format!("blocker-{round}")));
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("c-{round}-{t}")).unwrap();
                store
                    .append(
                        &stream,
                        ExpectedVersion::NoStream,
                        (0..BATCH).map(event).collect(),
                    )
                    .await
                    .unwrap();
            }));
        }
        tokio::time::sleep(Duration::from_micros((round * 389) % 5000)).await;
        for task in tasks.iter().skip(1).step_by(2) {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        if let Some(busy) = busy {
            busy.await.unwrap();
        }
        let next = StreamId::new(format!("after-{round}")).unwrap();
        store
            .append(&next, ExpectedVersion::NoStream, vec![event(round)])
            .await
            .unwrap_or_else(|e| panic!("round {round}: the store is not usable: {e}"));
    }
    let log = read_everything(&store).await;
    let streams = assert_contiguous(&log);
    for (stream, n) in streams {
        if stream.as_str().starts_with("c-") {
            assert_eq!(n, BATCH, "{stream}: partial append");
        }
    }
}

/// A `COMMIT` that fails (here: a deferred foreign key a test trigger breaks when
/// an event of type `Poison` is stored) fails every member that wrote in the group
/// with a backend error, stores none of them, and leaves the store usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_fails_every_member_and_stores_nothing() {
    let (dir, store) = file_store().await;
    {
        let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE test_parent (id INTEGER PRIMARY KEY);
             CREATE TABLE test_poison (parent INTEGER REFERENCES test_parent (id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TRIGGER test_poison_commit AFTER INSERT ON events WHEN NEW.event_type = 'Poison'
             BEGIN INSERT INTO test_poison (parent) VALUES (42); END;",
        )
        .unwrap();
    }
    for round in 0..3u64 {
        // The writer is held while the eight appends queue, so they form one
        // group whatever the machine's speed: each append future is polled once
        // (which queues its job) before the writer is let go.
        let (release, held) = hold_writer(&store).await;
        let mut appends: Vec<_> = (0..8u64)
            .map(|t| {
                let store = store.clone();
                Box::pin(async move {
                    let stream = StreamId::new(format!("p-{round}-{t}")).unwrap();
                    let event = if t == 3 {
                        NewEvent::json("Poison", &serde_json::json!({})).unwrap()
                    } else {
                        event(t)
                    };
                    let result = store
                        .append(&stream, ExpectedVersion::NoStream, vec![event])
                        .await;
                    (stream, result)
                })
            })
            .collect();
        for append in &mut appends {
            assert!(
                futures::poll!(append.as_mut()).is_pending(),
                "an append finished while the writer was held"
            );
        }
        release.send(()).unwrap();
        held.await.unwrap();
        let mut failed = 0;
        let mut outcomes = Vec::new();
        for (stream, result) in futures::future::join_all(appends).await {
            if let Err(e) = &result {
                assert!(
                    matches!(e, annals_sqlite::Error::Backend { .. }),
                    "{stream}: {e:?}"
                );
                assert!(e.to_string().contains("nothing"), "{stream}: {e}");
                failed += 1;
            }
            outcomes.push((stream, result.is_ok()));
        }
        // The poisoned member and, with it, its whole group.
        assert_eq!(failed, 8, "round {round}: the group did not fail together");
        let streams = assert_contiguous(&read_everything(&store).await);
        for (stream, ok) in outcomes {
            assert_eq!(
                streams.contains_key(&stream),
                ok,
                "round {round}: {stream} acknowledged = {ok} but stored = {}",
                !ok
            );
        }
    }
    let after = StreamId::new("after").unwrap();
    store
        .append(&after, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
}

/// With `max_group(1)` every append is its own transaction; semantics are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouping_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteOptions::new(dir.path().join("events.db"))
        .max_group(0) // clamped to 1
        .open()
        .await
        .unwrap();
    assert_eq!(store.options().get_max_group(), 1);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("s-{}", t % 2)).unwrap();
            for _ in 0..10 {
                store
                    .append(&stream, ExpectedVersion::Any, vec![event(t)])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let streams = assert_contiguous(&read_everything(&store).await);
    assert_eq!(streams.values().sum::<u64>(), 160);
}
