//! Appends across several streams ([`AppendRequest`]): all-or-nothing, every
//! mismatch named, read-only conditions, idempotent re-sends, positions together.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use annals_core::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, ReadAll, RecordedEvent, StreamId, Version,
};
use futures::TryStreamExt;
use proptest::prelude::*;

use super::support::{all_events, batch, ev, n_of, sid, stream_events};
use crate::generators::{cases, check, unique_prefix};

/// A conflict in the third of three parts writes nothing to any of them, and the
/// error names that stream with its expected and actual version.
pub async fn multi_conflict_in_third_part_writes_nothing(store: Arc<dyn EventStore>) {
    let (a, b, c) = (sid("m-a"), sid("m-b"), sid("m-c"));
    store
        .append(&c, ExpectedVersion::NoStream, batch(1, 2))
        .await
        .unwrap();
    let request = AppendRequest::new()
        .append(&a, ExpectedVersion::NoStream, batch(10, 2))
        .append(&b, ExpectedVersion::Any, batch(20, 1))
        .append(&c, ExpectedVersion::Exact(Version::new(1)), batch(30, 1));
    let err = store.commit(request).await.unwrap_err();
    let conflicts = err.conflicts();
    assert_eq!(conflicts.len(), 1, "{err}");
    assert_eq!(conflicts[0].stream, c);
    assert_eq!(
        conflicts[0].expected,
        ExpectedVersion::Exact(Version::new(1))
    );
    assert_eq!(conflicts[0].actual, Version::new(2));
    assert!(stream_events(&*store, &a).await.is_empty());
    assert!(stream_events(&*store, &b).await.is_empty());
    assert_eq!(
        all_events(&*store).await.len(),
        2,
        "only c's original events"
    );
}

/// Every mismatched stream — parts and conditions — is named in one conflict.
pub async fn multi_conflict_names_every_mismatched_stream(store: Arc<dyn EventStore>) {
    let (a, b, c, d) = (sid("n-a"), sid("n-b"), sid("n-c"), sid("n-d"));
    store
        .append(&b, ExpectedVersion::NoStream, batch(1, 1))
        .await
        .unwrap();
    let request = AppendRequest::new()
        .append(&a, ExpectedVersion::StreamExists, batch(1, 1))
        .append(&b, ExpectedVersion::NoStream, batch(2, 1))
        .append(&c, ExpectedVersion::Any, batch(3, 1))
        .require(&d, ExpectedVersion::Exact(Version::new(4)));
    let err = store.commit(request).await.unwrap_err();
    assert!(err.is_conflict());
    let named: Vec<(StreamId, Version)> = err
        .conflicts()
        .into_iter()
        .map(|c| (c.stream, c.actual))
        .collect();
    assert_eq!(
        named,
        vec![
            (a.clone(), Version::ZERO),
            (b.clone(), Version::new(1)),
            (d.clone(), Version::ZERO)
        ]
    );
    let message = err.to_string();
    for stream in [&a, &b, &d] {
        assert!(message.contains(stream.as_str()), "{message}");
    }
    assert_eq!(all_events(&*store).await.len(), 1);
}

/// A read-only condition whose stream moved writes nothing.
pub async fn multi_stale_condition_writes_nothing(store: Arc<dyn EventStore>) {
    let (target, watched) = (sid("c-target"), sid("c-watched"));
    store
        .append(&watched, ExpectedVersion::NoStream, batch(1, 1))
        .await
        .unwrap();
    // Someone else moves the watched stream after we read it at version 1.
    store
        .append(
            &watched,
            ExpectedVersion::Exact(Version::new(1)),
            batch(2, 1),
        )
        .await
        .unwrap();
    let request = AppendRequest::new()
        .append(&target, ExpectedVersion::NoStream, batch(10, 1))
        .require(&watched, ExpectedVersion::Exact(Version::new(1)));
    let err = store.commit(request).await.unwrap_err();
    let conflicts = err.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].stream, watched);
    assert_eq!(conflicts[0].actual, Version::new(2));
    assert!(stream_events(&*store, &target).await.is_empty());
    assert_eq!(
        store.stream_version(&watched).await.unwrap(),
        Version::new(2),
        "a condition never writes to its stream"
    );
}

/// A condition that still holds lets the write through and writes nothing to the
/// watched stream; a condition-only request commits nothing.
pub async fn multi_current_condition_lets_write_through(store: Arc<dyn EventStore>) {
    let (target, watched, missing) = (sid("d-target"), sid("d-watched"), sid("d-missing"));
    store
        .append(&watched, ExpectedVersion::NoStream, batch(1, 3))
        .await
        .unwrap();
    let request = AppendRequest::new()
        .append(&target, ExpectedVersion::NoStream, batch(10, 2))
        .require(&watched, ExpectedVersion::Exact(Version::new(3)))
        .require(&missing, ExpectedVersion::NoStream);
    let committed = store.commit(request).await.unwrap();
    assert_eq!(committed.parts.len(), 1, "conditions have no result part");
    assert_eq!(committed.parts[0].stream, target);
    assert_eq!(committed.parts[0].version, Version::new(2));
    assert_eq!(stream_events(&*store, &target).await.len(), 2);
    assert_eq!(stream_events(&*store, &watched).await.len(), 3);
    assert!(stream_events(&*store, &missing).await.is_empty());

    let only_conditions =
        AppendRequest::new().require(&watched, ExpectedVersion::Exact(Version::new(3)));
    let committed = store.commit(only_conditions).await.unwrap();
    assert!(committed.parts.is_empty());
    assert_eq!(all_events(&*store).await.len(), 5);
}

/// A request's events take positions in request order, contiguous in `read_all`:
/// no other event lands between them, even with concurrent writers.
pub async fn multi_events_are_contiguous_in_read_all(store: Arc<dyn EventStore>) {
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for round in 0..10 {
                    let a = sid(&format!("k{w}-a"));
                    let b = sid(&format!("k{w}-b"));
                    let request = AppendRequest::new()
                        .append(
                            &a,
                            ExpectedVersion::Any,
                            vec![ev("A", round), ev("A", round)],
                        )
                        .append(&b, ExpectedVersion::Any, vec![ev("B", round)]);
                    let committed = store.commit(request).await.unwrap();
                    let positions: Vec<_> = committed.positions().collect();
                    assert_eq!(positions.len(), 3);
                    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let events = all_events(&*store).await;
    assert_eq!(events.len(), 4 * 10 * 3);
    for chunk in events.chunks(3) {
        let writer = |e: &RecordedEvent| e.stream_id.as_str()[..2].to_owned();
        assert_eq!(writer(&chunk[0]), writer(&chunk[1]));
        assert_eq!(writer(&chunk[1]), writer(&chunk[2]));
        assert_eq!(
            [
                chunk[0].event_type.as_str(),
                chunk[1].event_type.as_str(),
                chunk[2].event_type.as_str()
            ],
            ["A", "A", "B"],
            "a request's events appear together, in request order"
        );
    }
}

/// Readers never see part of a request. Three writers commit requests of three
/// parts × two events (all six tagged with the request) while one reader
/// re-reads `read_all` from the start and another follows it with
/// [`ReadAll::after`]: every read result holds all six events of a request or
/// none. The writers are paced by the readers (a writer's `r`-th request waits
/// for `r / STRIDE` reads by each reader), so reads and commits interleave on a
/// fast or a slow machine alike; a generous deadline bounds the wait.
pub async fn multi_readers_never_see_part_of_a_request(store: Arc<dyn EventStore>) {
    const WRITERS: u64 = 3;
    const REQUESTS: u64 = 60;
    const STRIDE: u64 = 4;
    const PARTS: u64 = 3;
    const EVENTS_PER_PART: u64 = 2;
    const PER_REQUEST: usize = (PARTS * EVENTS_PER_PART) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let writing = Arc::new(AtomicBool::new(true));
    // Reads each reader started while the writers were writing.
    let reads = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);

    /// Asserts that `events` hold every request's events whole or not at all.
    fn assert_whole_requests(events: &[RecordedEvent], reader: &str) {
        let mut per_request: BTreeMap<u64, usize> = BTreeMap::new();
        for event in events {
            *per_request.entry(n_of(event)).or_default() += 1;
        }
        for (request, seen) in per_request {
            assert_eq!(
                seen, PER_REQUEST,
                "{reader} saw {seen} of the {PER_REQUEST} events of request {request}"
            );
        }
    }

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, reads) = (Arc::clone(&store), Arc::clone(&reads));
            tokio::spawn(async move {
                for r in 0..REQUESTS {
                    while reads
                        .iter()
                        .any(|done| done.load(Ordering::SeqCst) < r / STRIDE)
                    {
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "the readers did not keep up with the writers within the deadline"
                        );
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let tag = w * 1_000_000 + r;
                    let request = (0..PARTS).fold(AppendRequest::new(), |request, p| {
                        let events: Vec<_> =
                            (0..EVENTS_PER_PART).map(|_| ev("Whole", tag)).collect();
                        request.append(
                            &sid(&format!("whole-{w}-{p}")),
                            ExpectedVersion::Any,
                            events,
                        )
                    });
                    store.commit(request).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    let rereader = {
        let (store, writing, reads) =
            (Arc::clone(&store), Arc::clone(&writing), Arc::clone(&reads));
        tokio::spawn(async move {
            loop {
                let during = writing.load(Ordering::SeqCst);
                let events = all_events(&*store).await;
                assert_whole_requests(&events, "a read from the start");
                if !during {
                    return;
                }
                reads[0].fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let follower = {
        let (store, writing, reads) =
            (Arc::clone(&store), Arc::clone(&writing), Arc::clone(&reads));
        tokio::spawn(async move {
            let mut seen: Vec<RecordedEvent> = Vec::new();
            loop {
                let during = writing.load(Ordering::SeqCst);
                let read = match seen.last() {
                    Some(last) => ReadAll::after(last.position),
                    None => ReadAll::forward(),
                };
                let events: Vec<RecordedEvent> = store.read_all(read).try_collect().await.unwrap();
                assert_whole_requests(&events, "a read after the last seen event");
                seen.extend(events);
                if !during {
                    return seen;
                }
                reads[1].fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };

    // A reader only returns once the writers stopped: one that ends sooner
    // failed, and its panic is raised here instead of at the deadline.
    while !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        if rereader.is_finished() || follower.is_finished() {
            writers.iter().for_each(tokio::task::JoinHandle::abort);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for w in writers {
        match w.await {
            Ok(()) => {}
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Aborted above because a reader failed: its panic is raised below.
            Err(_) => {}
        }
    }
    writing.store(false, Ordering::SeqCst);
    rereader.await.unwrap();
    let followed = follower.await.unwrap();

    let events = all_events(&*store).await;
    assert_eq!(
        events.len() as u64,
        WRITERS * REQUESTS * PARTS * EVENTS_PER_PART
    );
    assert_whole_requests(&events, "the final read");
    assert_eq!(
        followed.iter().map(|e| e.id).collect::<Vec<_>>(),
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        "following with `after` sees every event once, in order"
    );
}

/// Re-sending the same multi-stream request returns the original result and
/// stores nothing new; reusing one of its ids elsewhere is invalid input.
pub async fn multi_idempotent_resend_returns_original(store: Arc<dyn EventStore>) {
    let (a, b) = (sid("i-a"), sid("i-b"));
    store
        .append(&b, ExpectedVersion::NoStream, batch(1, 2))
        .await
        .unwrap();
    let events_a = batch(10, 2);
    let events_b = batch(20, 1);
    let request = AppendRequest::new()
        .append(&a, ExpectedVersion::NoStream, events_a.clone())
        .append(
            &b,
            ExpectedVersion::Exact(Version::new(2)),
            events_b.clone(),
        );
    let first = store.commit(request.clone()).await.unwrap();
    let again = store.commit(request).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(all_events(&*store).await.len(), 5);

    let mixed = AppendRequest::new()
        .append(&a, ExpectedVersion::Any, vec![events_a[0].clone()])
        .append(&b, ExpectedVersion::Any, vec![ev("New", 1)]);
    let err = store.commit(mixed).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    assert_eq!(all_events(&*store).await.len(), 5);
}

/// Requests that name no stream, name a stream twice, or use an id twice are
/// invalid input and write nothing.
pub async fn multi_malformed_requests_are_invalid(store: Arc<dyn EventStore>) {
    let a = sid("bad-a");
    let err = store.commit(AppendRequest::new()).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    let twice = AppendRequest::new()
        .append(&a, ExpectedVersion::Any, batch(1, 1))
        .append(&a, ExpectedVersion::Any, batch(2, 1));
    assert!(store.commit(twice).await.unwrap_err().is_invalid_input());
    let part_and_condition = AppendRequest::new()
        .append(&a, ExpectedVersion::Any, batch(1, 1))
        .require(&a, ExpectedVersion::Any);
    assert!(store
        .commit(part_and_condition)
        .await
        .unwrap_err()
        .is_invalid_input());
    let e = ev("Same", 1);
    let same_id = AppendRequest::new()
        .append(&a, ExpectedVersion::Any, vec![e.clone()])
        .append(&sid("bad-b"), ExpectedVersion::Any, vec![e]);
    assert!(store.commit(same_id).await.unwrap_err().is_invalid_input());
    let bad_event = AppendRequest::new()
        .append(&sid("bad-b"), ExpectedVersion::Any, batch(1, 1))
        .append(&a, ExpectedVersion::Any, vec![NewEvent::new("", vec![])]);
    assert!(store
        .commit(bad_event)
        .await
        .unwrap_err()
        .is_invalid_input());
    assert!(all_events(&*store).await.is_empty());
}

/// Racing tasks with overlapping two-stream requests, each expecting the versions
/// it read: exactly one wins per version, and every loser's conflict names a
/// stream that moved.
pub async fn multi_racing_overlapping_requests_have_one_winner(store: Arc<dyn EventStore>) {
    let (a, b) = (sid("race-a"), sid("race-b"));
    for round in 0..8_u64 {
        let va = store.stream_version(&a).await.unwrap();
        let vb = store.stream_version(&b).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(4));
        let tasks: Vec<_> = (0..4_u64)
            .map(|w| {
                let (store, a, b, barrier) = (
                    Arc::clone(&store),
                    a.clone(),
                    b.clone(),
                    Arc::clone(&barrier),
                );
                tokio::spawn(async move {
                    // Half the writers name the streams in the opposite order.
                    let (first, first_v, second, second_v) = if w % 2 == 0 {
                        (a, va, b, vb)
                    } else {
                        (b, vb, a, va)
                    };
                    let request = AppendRequest::new()
                        .append(
                            &first,
                            ExpectedVersion::Exact(first_v),
                            vec![ev("T", round * 10 + w)],
                        )
                        .append(
                            &second,
                            ExpectedVersion::Exact(second_v),
                            vec![ev("T", round * 10 + w)],
                        );
                    barrier.wait().await;
                    store.commit(request).await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => wins += 1,
                Err(e) => {
                    assert!(e.is_conflict(), "losers get a conflict, got {e:?}");
                    let moved = e.conflicts();
                    assert!(!moved.is_empty());
                    assert!(moved.iter().all(|c| c.stream == a || c.stream == b));
                }
            }
        }
        assert_eq!(wins, 1, "exactly one request wins round {round}");
        assert_eq!(store.stream_version(&a).await.unwrap(), va.next());
        assert_eq!(store.stream_version(&b).await.unwrap(), vb.next());
    }
}

/// Random multi-stream requests (random expectations, conditions, sizes) agree
/// with a model of the versions: the request commits exactly when the model says
/// every expectation holds, and then every stream grows by its part.
pub async fn prop_random_multi_stream_requests_match_model(store: Arc<dyn EventStore>) {
    let part = (0usize..4, 0u8..4, 0usize..3, any::<bool>());
    check(
        store,
        cases(24),
        proptest::collection::vec(proptest::collection::vec(part, 1..4), 1..6),
        |store, requests| async move {
            let prefix = unique_prefix("model");
            let names: Vec<StreamId> = (0..4).map(|i| sid(&format!("{prefix}{i}"))).collect();
            let mut model: HashMap<usize, u64> = HashMap::new();
            for parts in requests {
                let mut request = AppendRequest::new();
                let mut used = std::collections::HashSet::new();
                let mut should_commit = true;
                let mut grows = Vec::new();
                for (stream, kind, count, condition) in parts {
                    if !used.insert(stream) {
                        continue;
                    }
                    let current = model.get(&stream).copied().unwrap_or(0);
                    let expected = match kind {
                        0 => ExpectedVersion::Any,
                        1 => ExpectedVersion::Exact(Version::new(current)),
                        2 => ExpectedVersion::Exact(Version::new(current + 1)),
                        _ => ExpectedVersion::NoStream,
                    };
                    should_commit &= expected.matches(Version::new(current));
                    if condition {
                        request = request.require(&names[stream], expected);
                    } else {
                        request = request.append(&names[stream], expected, batch(0, count as u64));
                        grows.push((stream, count as u64));
                    }
                }
                match store.commit(request).await {
                    Ok(committed) => {
                        assert!(should_commit, "the model says this request must conflict");
                        for (stream, count) in grows {
                            let v = model.entry(stream).or_insert(0);
                            *v += count;
                            let part = committed.stream(&names[stream]).unwrap();
                            assert_eq!(part.version, Version::new(*v));
                            assert_eq!(part.positions.len() as u64, count);
                        }
                    }
                    Err(e) => {
                        assert!(e.is_conflict(), "{e:?}");
                        assert!(!should_commit, "the model says this request commits: {e}");
                    }
                }
            }
            for (i, name) in names.iter().enumerate() {
                assert_eq!(
                    store.stream_version(name).await.unwrap(),
                    Version::new(model.get(&i).copied().unwrap_or(0))
                );
            }
        },
    )
    .await;
}
