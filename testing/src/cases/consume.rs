//! Consuming the log: subscriptions (catch up, then live), checkpoints and
//! projections — generic over the store, so every backend proves them.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use annals_core::{
    consume::{
        CheckpointStore, ErrorPolicy, MemoryCheckpoints, Projection, ProjectionError, Subscribe,
        SubscribeAll, SubscribeStream,
    },
    EventStore, ExpectedVersion, Position, ReadFilter, RecordedEvent, Version,
};
use futures::{StreamExt, TryStreamExt};

use super::support::{all_events, batch, ev, sid};

/// Generous deadline for live delivery: a busy 2-core CI machine is slow, never
/// this slow.
const DEADLINE: Duration = Duration::from_secs(60);

async fn take(events: &mut annals_core::consume::Subscription<'_>, n: usize) -> Vec<RecordedEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(DEADLINE, events.try_next())
            .await
            .expect("the subscription delivers within the deadline")
            .expect("no error")
            .expect("a live subscription never ends by itself");
        out.push(next);
    }
    out
}

fn fast() -> SubscribeAll {
    SubscribeAll::from_start().idle_poll(Duration::from_millis(5))
}

/// A subscription first delivers what is stored, then events appended later, in
/// position order, each once.
pub async fn subscription_catches_up_then_follows_live(store: Arc<dyn EventStore>) {
    store
        .append(&sid("sub-a"), ExpectedVersion::NoStream, batch(0, 30))
        .await
        .unwrap();
    let mut events = store.subscribe_all(fast().page_size(7));
    let caught_up = take(&mut events, 30).await;
    assert_eq!(caught_up, all_events(&*store).await);
    assert_eq!(events.position(), caught_up[29].position);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..20 {
                store
                    .append(&sid("sub-b"), ExpectedVersion::Any, vec![ev("Live", i)])
                    .await
                    .unwrap();
            }
        })
    };
    let live = take(&mut events, 20).await;
    writer.await.unwrap();
    let stored = all_events(&*store).await;
    assert_eq!(
        live,
        stored[30..].to_vec(),
        "live events in order, each once"
    );
}

/// A caught-up subscription whose idle poll is an hour still gets an append made
/// through the same store at once: the backend's append signal wakes it.
pub async fn own_appends_wake_caught_up_subscriptions(store: Arc<dyn EventStore>) {
    assert!(
        store.append_signal().is_some(),
        "every backend wakes its own process's subscriptions"
    );
    let hour = Duration::from_secs(3600);
    let stream = sid("wake");
    let mut all = store.subscribe_all(SubscribeAll::from_start().idle_poll(hour));
    let mut one = store.subscribe_stream(SubscribeStream::from_start(&stream).idle_poll(hour));
    // Both are caught up (on nothing) and waiting when the appends come.
    let (first_all, first_one, ()) = futures::join!(take(&mut all, 1), take(&mut one, 1), async {
        for i in 0..2 {
            tokio::task::yield_now().await;
            store
                .append(&stream, ExpectedVersion::Any, vec![ev("Wake", i)])
                .await
                .unwrap();
        }
    });
    assert_eq!(first_all[0].stream_id, stream);
    assert_eq!(first_one[0].version, Version::new(1));
    // The second append, made while they were busy, comes next.
    assert_eq!(take(&mut all, 1).await[0].version, Version::new(2));
    assert_eq!(take(&mut one, 1).await[0].version, Version::new(2));
    // Caught up again; a later append wakes them again.
    let later = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        store
            .append(
                &stream,
                ExpectedVersion::Exact(Version::new(2)),
                vec![ev("Wake", 3)],
            )
            .await
            .unwrap();
    };
    let (third, ()) = futures::join!(take(&mut all, 1), later);
    assert_eq!(third[0].version, Version::new(3));
}

/// Resuming after a checkpoint delivers exactly the events after it.
pub async fn subscription_resumes_after_checkpoint(store: Arc<dyn EventStore>) {
    store
        .append(&sid("resume"), ExpectedVersion::NoStream, batch(0, 10))
        .await
        .unwrap();
    let stored = all_events(&*store).await;
    let checkpoint = stored[3].position;
    let mut events =
        store.subscribe_all(SubscribeAll::after(checkpoint).idle_poll(Duration::from_millis(5)));
    let rest = take(&mut events, 6).await;
    assert_eq!(rest, stored[4..].to_vec());
    let mut from_nothing = store.subscribe_all(SubscribeAll::resume(None));
    assert_eq!(take(&mut from_nothing, 10).await, stored);
}

/// A filtered subscription delivers what the same filter reads, live too.
pub async fn subscription_filter_selects_like_read_all(store: Arc<dyn EventStore>) {
    let filter = ReadFilter::new()
        .stream_glob("order-*")
        .event_type("Placed");
    for i in 0..10_u64 {
        let stream = if i % 2 == 0 {
            format!("order-{i}")
        } else {
            format!("invoice-{i}")
        };
        let kind = if i % 3 == 0 { "Paid" } else { "Placed" };
        store
            .append(&sid(&stream), ExpectedVersion::Any, vec![ev(kind, i)])
            .await
            .unwrap();
    }
    let expected: Vec<_> = all_events(&*store)
        .await
        .into_iter()
        .filter(|e| filter.matches(e))
        .collect();
    let mut events = store.subscribe_all(fast().filter(filter.clone()));
    assert_eq!(take(&mut events, expected.len()).await, expected);
    store
        .append(
            &sid("invoice-99"),
            ExpectedVersion::Any,
            vec![ev("Placed", 99)],
        )
        .await
        .unwrap();
    store
        .append(
            &sid("order-99"),
            ExpectedVersion::Any,
            vec![ev("Placed", 100)],
        )
        .await
        .unwrap();
    let next = take(&mut events, 1).await;
    assert_eq!(
        next[0].stream_id.as_str(),
        "order-99",
        "the non-matching event was not delivered"
    );
}

/// A stream subscription follows one stream only, by version.
pub async fn subscription_to_one_stream(store: Arc<dyn EventStore>) {
    let s = sid("one");
    store
        .append(&s, ExpectedVersion::NoStream, batch(0, 5))
        .await
        .unwrap();
    store
        .append(&sid("other"), ExpectedVersion::NoStream, batch(0, 5))
        .await
        .unwrap();
    let mut events = store.subscribe_stream(
        SubscribeStream::after(&s, Version::new(2)).idle_poll(Duration::from_millis(5)),
    );
    let got = take(&mut events, 3).await;
    assert_eq!(
        got.iter().map(|e| e.version.get()).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    store
        .append(&s, ExpectedVersion::Exact(Version::new(5)), batch(5, 1))
        .await
        .unwrap();
    assert_eq!(take(&mut events, 1).await[0].version, Version::new(6));
}

/// A slow consumer gets every event in order (the subscription holds one page,
/// pulling more only when asked), and dropping a subscription mid-way leaves the
/// store usable.
pub async fn subscription_slow_consumer_and_cancellation(store: Arc<dyn EventStore>) {
    store
        .append(&sid("slow"), ExpectedVersion::NoStream, batch(0, 200))
        .await
        .unwrap();
    let mut events = store.subscribe_all(fast().page_size(16));
    let mut seen = Vec::new();
    while seen.len() < 200 {
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if seen.len() % 25 == 0 {
            tokio::task::yield_now().await;
        }
        seen.push(event);
    }
    assert_eq!(seen, all_events(&*store).await);
    // Cancel a subscription in the middle of a page and while idle.
    let mut partial = store.subscribe_all(fast().page_size(16));
    let _ = take(&mut partial, 5).await;
    drop(partial);
    let mut idle = store
        .subscribe_all(SubscribeAll::after(seen[199].position).idle_poll(Duration::from_millis(5)));
    let _ = tokio::time::timeout(Duration::from_millis(20), idle.next()).await;
    drop(idle);
    store
        .append(
            &sid("slow"),
            ExpectedVersion::Exact(Version::new(200)),
            batch(200, 1),
        )
        .await
        .unwrap();
    assert_eq!(all_events(&*store).await.len(), 201);
}

/// With concurrent writers, every subscriber sees every event once, in position
/// order — the gap-safe order at work.
pub async fn subscriptions_with_concurrent_writers_see_everything_once(store: Arc<dyn EventStore>) {
    const WRITERS: u64 = 8;
    const PER_WRITER: u64 = 40;
    let total = (WRITERS * PER_WRITER) as usize;
    let subscribers: Vec<_> = (0..3)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut events = store.subscribe_all(fast().page_size(10));
                take(&mut events, total).await
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    store
                        .append(
                            &sid(&format!("w{w}")),
                            ExpectedVersion::Exact(Version::new(i)),
                            vec![ev("W", i)],
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let stored = all_events(&*store).await;
    assert_eq!(stored.len(), total);
    for subscriber in subscribers {
        let seen = subscriber.await.unwrap();
        assert_eq!(seen, stored, "every event once, in order");
    }
}

/// Projections save their checkpoint after each handled event, resume after it,
/// and follow their error policy: retry, skip (recorded) or stop (with the
/// failing position, checkpoint before it).
pub async fn projection_checkpoints_and_error_policies(store: Arc<dyn EventStore>) {
    store
        .append(&sid("proj"), ExpectedVersion::NoStream, batch(0, 6))
        .await
        .unwrap();
    let stored = all_events(&*store).await;
    let checkpoints = MemoryCheckpoints::new();
    let fast_poll = Duration::from_millis(5);

    // Stop: the third event fails; the checkpoint is the second.
    let stop = Projection::new("p").idle_poll(fast_poll);
    let err = stop
        .run(&*store, &checkpoints, |e| {
            let fail = e.position == stored[2].position;
            async move {
                if fail {
                    Err("boom")
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap_err();
    match &err {
        ProjectionError::Handler { position, .. } => assert_eq!(*position, stored[2].position),
        other => panic!("expected a handler error, got {other:?}"),
    }
    assert!(
        err.to_string().contains("boom") && err.to_string().contains("`p`"),
        "{err}"
    );
    assert_eq!(
        checkpoints.load("p").await.unwrap(),
        Some(stored[1].position)
    );

    // Retry: fails once on the third event, then succeeds; resumes after the checkpoint.
    let failures = AtomicU32::new(0);
    let mut handled = Vec::new();
    let retry = Projection::new("p")
        .idle_poll(fast_poll)
        .on_error(ErrorPolicy::Retry {
            attempts: 3,
            backoff: Duration::from_millis(1),
        })
        .stop_after(4);
    let report = retry
        .run(&*store, &checkpoints, |e| {
            let first_try =
                e.position == stored[2].position && failures.fetch_add(1, Ordering::SeqCst) == 0;
            if !first_try {
                handled.push(e.position);
            }
            async move {
                if first_try {
                    Err("transient")
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(
        handled,
        stored[2..].iter().map(|e| e.position).collect::<Vec<_>>()
    );
    assert_eq!(report.handled, 4);
    assert_eq!(
        checkpoints.load("p").await.unwrap(),
        Some(stored[5].position)
    );

    // Skip: a new projection over everything, skipping one failing event.
    let skip = Projection::new("q")
        .idle_poll(fast_poll)
        .on_error(ErrorPolicy::Skip)
        .stop_after(6);
    let report = skip
        .run(&*store, &checkpoints, |e| {
            let fail = e.position == stored[4].position;
            async move {
                if fail {
                    Err("bad event")
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(report.skipped, vec![stored[4].position]);
    assert_eq!(report.handled, 5);
    assert_eq!(report.checkpoint, Some(stored[5].position));

    checkpoints.reset("q").await.unwrap();
    assert_eq!(checkpoints.load("q").await.unwrap(), None);
    checkpoints.save("q", Position::new(10)).await.unwrap();
    checkpoints.save("q", Position::new(3)).await.unwrap();
    assert_eq!(
        checkpoints.load("q").await.unwrap(),
        Some(Position::new(10)),
        "checkpoints never move back"
    );
    assert!(checkpoints.load("").await.unwrap_err().is_invalid_input());
}

/// A replay feeds one stream, or one event type since a time, to a handler with
/// progress (done/total), and stops at a failing event naming its position.
pub async fn replay_reports_progress_and_failures(store: Arc<dyn EventStore>) {
    use annals_core::consume::{Progress, Replay};
    let s = sid("replay-a");
    store
        .append(&s, ExpectedVersion::NoStream, batch(0, 7))
        .await
        .unwrap();
    store
        .append(
            &sid("replay-b"),
            ExpectedVersion::NoStream,
            vec![ev("Other", 1), ev("Tick", 2)],
        )
        .await
        .unwrap();
    let stored = all_events(&*store).await;

    let mut seen = Vec::new();
    let mut reports = Vec::new();
    let done = Replay::stream(&s)
        .progress_every(3)
        .run(
            &*store,
            |e| {
                seen.push(e.position);
                async { Ok::<(), std::io::Error>(()) }
            },
            |p| reports.push((p.done, p.total)),
        )
        .await
        .unwrap();
    assert_eq!(
        seen,
        stored[..7].iter().map(|e| e.position).collect::<Vec<_>>()
    );
    assert_eq!(reports, vec![(3, 7), (6, 7), (7, 7)]);
    assert_eq!((done.done, done.total), (7, 7));

    let since = stored[4].recorded_at;
    let expected: Vec<_> = stored
        .iter()
        .filter(|e| e.event_type == "Tick" && e.recorded_at >= since)
        .map(|e| e.position)
        .collect();
    let mut typed = Vec::new();
    let progress: Progress = Replay::event_type("Tick")
        .since(since)
        .run(
            &*store,
            |e| {
                typed.push(e.position);
                async { Ok::<(), std::io::Error>(()) }
            },
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(typed, expected);
    assert_eq!(progress.total, expected.len() as u64);

    let err = Replay::stream(&s)
        .run(
            &*store,
            |e| {
                let fail = e.version == Version::new(5);
                async move {
                    if fail {
                        Err("corrupt row")
                    } else {
                        Ok(())
                    }
                }
            },
            |_| {},
        )
        .await
        .unwrap_err();
    match err {
        ProjectionError::Handler { position, .. } => assert_eq!(position, stored[4].position),
        other => panic!("expected the failing position, got {other:?}"),
    }
}

/// Resetting a projection and rebuilding it while writers keep appending gives
/// the same read model as a fresh full replay.
pub async fn projection_rebuilds_while_writers_append(store: Arc<dyn EventStore>) {
    use std::collections::BTreeMap;
    type Model = Arc<std::sync::Mutex<BTreeMap<String, Vec<u64>>>>;
    // The read model: each stream's versions, in the order handled.
    let apply = |model: &Model, e: &RecordedEvent| {
        model
            .lock()
            .unwrap()
            .entry(e.stream_id.to_string())
            .or_default()
            .push(e.version.get());
    };
    let checkpoints = Arc::new(MemoryCheckpoints::new());
    let model: Model = Arc::default();
    let run = |model: Model| {
        let (store, checkpoints) = (Arc::clone(&store), Arc::clone(&checkpoints));
        tokio::spawn(async move {
            Projection::new("rebuilt")
                .idle_poll(Duration::from_millis(5))
                .run(&*store, &*checkpoints, |e| {
                    apply(&model, e);
                    async { Ok::<(), std::convert::Infallible>(()) }
                })
                .await
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..40_u64 {
                    store
                        .append(
                            &sid(&format!("rebuild-{w}")),
                            ExpectedVersion::Exact(Version::new(i)),
                            vec![ev("R", i)],
                        )
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    // The projection runs a while; then it is stopped, reset and rebuilt from
    // scratch while the writers go on.
    let first = run(Arc::clone(&model));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while checkpoints.load("rebuilt").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection handled an event"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.abort();
    let _ = first.await;
    checkpoints.reset("rebuilt").await.unwrap();
    model.lock().unwrap().clear();
    let rebuild = run(Arc::clone(&model));
    for writer in writers {
        writer.await.unwrap();
    }
    let stored = all_events(&*store).await;
    let head = stored.last().map(|e| e.position);
    while checkpoints.load("rebuilt").await.unwrap() != head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuild caught up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rebuild.abort();
    let _ = rebuild.await;
    let fresh: Model = Arc::default();
    for e in &stored {
        apply(&fresh, e);
    }
    assert_eq!(*model.lock().unwrap(), *fresh.lock().unwrap());
    assert_eq!(fresh.lock().unwrap().len(), 4);
}
