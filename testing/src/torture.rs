//! Ordering torture for subscriptions, for each backend's own test files (it
//! runs for a fixed time, so it is not part of the quick conformance suite).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use annals_core::{
    consume::{Subscribe, SubscribeAll},
    EventStore, ExpectedVersion, NewEvent, ReadAll, RecordedEvent, StreamId, Version,
};
use futures::TryStreamExt;

/// What a torture run did.
#[derive(Debug)]
pub struct TortureReport {
    /// Events appended (and seen by every subscriber).
    pub events: usize,
    /// Appends that committed.
    pub appends: usize,
}

/// `writers` tasks append 1–3 events at a time to their own streams with exact
/// expected versions for `duration`, while `subscribers` subscriptions follow
/// the whole log from the start. Every subscriber must see every stored event
/// exactly once, in position order (compared with a `read_all` afterwards), and
/// each writer's events in version order.
pub async fn subscriptions_under_concurrent_writers(
    store: Arc<dyn EventStore>,
    writers: usize,
    subscribers: usize,
    duration: Duration,
) -> TortureReport {
    let stop = Arc::new(AtomicBool::new(false));
    let done_writing = Arc::new(AtomicBool::new(false));
    let followers: Vec<_> = (0..subscribers)
        .map(|s| {
            let (store, done_writing) = (Arc::clone(&store), Arc::clone(&done_writing));
            tokio::spawn(async move {
                let mut events = store.subscribe_all(
                    SubscribeAll::from_start()
                        .page_size(1 + 97 * s as u64 % 300)
                        .idle_poll(Duration::from_millis(5)),
                );
                let mut seen: Vec<RecordedEvent> = Vec::new();
                loop {
                    // Once the writers stopped, read until the head of the log.
                    if done_writing.load(Ordering::Acquire) {
                        let head = store
                            .read_all(ReadAll::backward().limit(1))
                            .try_next()
                            .await
                            .unwrap()
                            .map(|e| e.position);
                        if seen.last().map(|e| e.position) == head {
                            return seen;
                        }
                    }
                    let next =
                        tokio::time::timeout(Duration::from_millis(200), events.try_next()).await;
                    if let Ok(next) = next {
                        seen.push(next.unwrap().expect("a subscription never ends by itself"));
                    }
                }
            })
        })
        .collect();
    let appenders: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            tokio::spawn(async move {
                let stream = StreamId::new(format!("torture-{w}")).unwrap();
                let mut version = 0_u64;
                let mut appends = 0_usize;
                while !stop.load(Ordering::Relaxed) {
                    let n = 1 + (appends + w) % 3;
                    let batch = (0..n)
                        .map(|i| NewEvent::json("Tortured", &(w, version + i as u64)).unwrap())
                        .collect();
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Exact(Version::new(version)),
                            batch,
                        )
                        .await
                        .unwrap();
                    version += n as u64;
                    appends += 1;
                    // A steady pace (and a yield: an in-memory append never
                    // waits) keeps the log a size the subscribers can check
                    // in a debug build; the interleaving is what is tortured.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                appends
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut appends = 0;
    for appender in appenders {
        appends += appender.await.unwrap();
    }
    done_writing.store(true, Ordering::Release);
    let stored: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    for follower in followers {
        let seen = follower.await.unwrap();
        assert_eq!(seen.len(), stored.len(), "every event, once");
        assert!(seen == stored, "in position order, each once");
    }
    for w in 0..writers {
        let versions: Vec<u64> = stored
            .iter()
            .filter(|e| e.stream_id.as_str() == format!("torture-{w}"))
            .map(|e| e.version.get())
            .collect();
        assert!(
            versions.iter().copied().eq(1..=versions.len() as u64),
            "writer {w}"
        );
    }
    TortureReport {
        events: stored.len(),
        appends,
    }
}
