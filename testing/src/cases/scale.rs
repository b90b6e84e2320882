//! Large batches, concurrent writers, long reads.

use std::sync::Arc;

use annals_core::{EventStore, ExpectedVersion, NewEvent, Position, ReadAll, ReadStream, Version};
use futures::TryStreamExt;
use tokio::sync::Barrier;

use super::support::{
    all_events, assert_contiguous, assert_increasing_positions, batch, ev, sid, stream_events,
};

/// A 10,000-event batch is stored whole; a failing one (bad event last, wrong
/// expected version, or a reused id last) stores nothing.
pub async fn large_batch_is_atomic(store: Arc<dyn EventStore>) {
    let s = sid("big");
    let r = store
        .append(&s, ExpectedVersion::NoStream, batch(0, 10_000))
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(10_000));
    assert_eq!(r.positions.len(), 10_000);
    let events = stream_events(&*store, &s).await;
    assert_eq!(events.len(), 10_000);
    assert_contiguous(&events);
    let reused = events[0].id;

    let mut bad_last = batch(0, 10_000);
    bad_last.last_mut().unwrap().event_type = String::new();
    assert!(store
        .append(&sid("big2"), ExpectedVersion::Any, bad_last)
        .await
        .unwrap_err()
        .is_invalid_input());

    let err = store
        .append(
            &s,
            ExpectedVersion::Exact(Version::new(9_999)),
            batch(0, 10_000),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict());

    let mut reused_last = batch(0, 10_000);
    *reused_last.last_mut().unwrap() = ev("Other", 1).with_id(reused);
    assert!(store
        .append(&sid("big3"), ExpectedVersion::Any, reused_last)
        .await
        .unwrap_err()
        .is_invalid_input());

    assert_eq!(all_events(&*store).await.len(), 10_000);
    assert_eq!(
        store.stream_version(&sid("big2")).await.unwrap(),
        Version::ZERO
    );
    assert_eq!(
        store.stream_version(&sid("big3")).await.unwrap(),
        Version::ZERO
    );
}

/// 8 tasks race `Exact` appends on one stream: exactly one wins per version, and
/// the stream ends with no duplicate or missing versions.
pub async fn concurrent_exact_appends_have_one_winner_per_version(store: Arc<dyn EventStore>) {
    const TASKS: usize = 8;
    const ROUNDS: u64 = 20;
    let s = sid("contended");
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let (store, s, barrier) = (Arc::clone(&store), s.clone(), Arc::clone(&barrier));
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            for round in 0..ROUNDS {
                barrier.wait().await;
                let event = ev("Won", task as u64 * 1000 + round);
                match store
                    .append(&s, ExpectedVersion::Exact(Version::new(round)), vec![event])
                    .await
                {
                    Ok(r) => {
                        assert_eq!(r.version, Version::new(round + 1));
                        wins.push(round);
                    }
                    Err(e) if e.is_conflict() => {}
                    Err(e) => panic!("task {task} round {round}: unexpected error {e:?}"),
                }
                // Everyone finishes the round before the next one starts.
                barrier.wait().await;
            }
            wins
        }));
    }
    let mut winners_per_round = vec![0u32; ROUNDS as usize];
    for handle in handles {
        for round in handle.await.unwrap() {
            winners_per_round[round as usize] += 1;
        }
    }
    assert!(
        winners_per_round.iter().all(|w| *w == 1),
        "winners per round: {winners_per_round:?}"
    );
    let events = stream_events(&*store, &s).await;
    assert_eq!(events.len(), ROUNDS as usize);
    assert_contiguous(&events);
}

/// Concurrent writers on different streams all succeed; the log has every event once.
pub async fn concurrent_appends_to_different_streams_all_succeed(store: Arc<dyn EventStore>) {
    const TASKS: u64 = 8;
    const APPENDS: u64 = 40;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let s = sid(&format!("writer-{task}"));
            for i in 0..APPENDS {
                let r = store
                    .append(
                        &s,
                        ExpectedVersion::Exact(Version::new(i)),
                        vec![ev("W", i)],
                    )
                    .await
                    .unwrap();
                assert_eq!(r.version, Version::new(i + 1));
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let all = all_events(&*store).await;
    assert_eq!(all.len() as u64, TASKS * APPENDS);
    assert_increasing_positions(&all);
    let mut ids: Vec<_> = all.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, TASKS * APPENDS);
    for task in 0..TASKS {
        assert_contiguous(&stream_events(&*store, &sid(&format!("writer-{task}"))).await);
    }
}

/// 100,000 events read through the stream API (not collected), in order.
pub async fn read_100k_events_through_stream_api(store: Arc<dyn EventStore>) {
    const TOTAL: u64 = 100_000;
    const BATCH: u64 = 2_000;
    let s = sid("long");
    for start in (0..TOTAL).step_by(BATCH as usize) {
        let events: Vec<NewEvent> = (start..start + BATCH)
            .map(|n| NewEvent::new("Tick", n.to_string()))
            .collect();
        store
            .append(&s, ExpectedVersion::Exact(Version::new(start)), events)
            .await
            .unwrap();
    }
    let mut expected_version = 0u64;
    let mut stream = store.read_stream(ReadStream::forward(&s));
    while let Some(event) = stream.try_next().await.unwrap() {
        expected_version += 1;
        assert_eq!(event.version, Version::new(expected_version));
        assert_eq!(
            event.payload,
            (expected_version - 1).to_string().into_bytes()
        );
    }
    drop(stream);
    assert_eq!(expected_version, TOTAL);

    let mut count = 0u64;
    let mut last = Position::START;
    let mut all = store.read_all(ReadAll::forward());
    while let Some(event) = all.try_next().await.unwrap() {
        assert!(event.position > last);
        last = event.position;
        count += 1;
    }
    assert_eq!(count, TOTAL);
}

/// Reads dropped before, during or after their first page, or several pages in
/// (while a backend may be fetching the next page ahead) — a cancelled request,
/// a client timeout — leave the store fully usable: after 50 of them in a row
/// (more than any backend's connection pool, so a read that kept its connection
/// would starve the next ones), an append and complete reads succeed and see every
/// event.
pub async fn dropped_reads_leave_the_store_usable(store: Arc<dyn EventStore>) {
    const STORED: u64 = 8_000;
    let s = sid("dropped-reads");
    for first in (0..STORED).step_by(1_000) {
        let expected = if first == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(Version::new(first))
        };
        store
            .append(&s, expected, batch(first, 1_000))
            .await
            .unwrap();
    }
    for round in 0..50u64 {
        if round % 3 == 2 {
            // Part-way through the log: past the first pages, then dropped.
            let wanted = 1_500 + (round * 137) % 4_000;
            let mut read = if round % 2 == 0 {
                store.read_all(ReadAll::forward())
            } else {
                store.read_stream(ReadStream::forward(&s))
            };
            for expected in 1..=wanted {
                let event = read.try_next().await.unwrap().unwrap();
                assert_eq!(event.version.get(), expected);
            }
            drop(read);
            continue;
        }
        let wait = std::time::Duration::from_micros((round * 97) % 3_000);
        let mut read = if round % 2 == 0 {
            store.read_all(ReadAll::forward())
        } else {
            store.read_stream(ReadStream::forward(&s))
        };
        if let Ok(first) = tokio::time::timeout(wait, read.try_next()).await {
            // Whatever arrived before the drop is the log's first event.
            if let Some(event) = first.unwrap() {
                assert_eq!(event.version, Version::FIRST);
            }
        }
        drop(read);
    }
    store
        .append(
            &s,
            ExpectedVersion::Exact(Version::new(STORED)),
            batch(STORED, 1),
        )
        .await
        .unwrap();
    let events = stream_events(&*store, &s).await;
    assert_eq!(events.len() as u64, STORED + 1);
    assert_contiguous(&events);
    assert_eq!(all_events(&*store).await.len() as u64, STORED + 1);
}
