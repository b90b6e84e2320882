//! A subscription survives transient read errors — the database restarting, a
//! failover — and resumes after the last delivered event with nothing lost or
//! repeated; other errors end it. Driven by a store whose reads can be made to
//! fail on demand.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use annals_core::{
    backend::Backend,
    consume::{AppendSignal, Subscribe, SubscribeAll, SubscriptionState},
    futures::{future::BoxFuture, stream, StreamExt, TryStreamExt},
    Capabilities, Committed, Error, EventId, EventStore, EventStream, ExpectedVersion, NewEvent,
    PreparedAppend, ReadAll, ReadStream, RecordedEvent, Result, Snapshot, StreamId, Version,
};
use annals_memory::MemoryEventStore;

/// The memory store, but the next `fail` log reads fail with `make_error`.
struct Flaky {
    inner: MemoryEventStore,
    fail: AtomicU32,
    transient: bool,
}

impl Flaky {
    fn error(&self) -> Error {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "server restarting");
        if self.transient {
            Error::unavailable("reading the log", cause)
        } else {
            Error::backend("reading the log", cause)
        }
    }
}

impl Backend for Flaky {
    fn limits(&self) -> Capabilities {
        self.inner.limits()
    }
    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>> {
        self.inner.write(append)
    }
    fn scan_stream(&self, read: ReadStream) -> EventStream<'_> {
        self.inner.scan_stream(read)
    }
    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        let failing = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            // Half a page, then the error: what a broken connection looks like.
            let error = self.error();
            return self
                .inner
                .scan_all(read)
                .take(1)
                .chain(stream::iter([Err(error)]))
                .boxed();
        }
        self.inner.scan_all(read)
    }
    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        self.inner.head_version(stream)
    }
    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        self.inner.find_event(id)
    }
    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        self.inner.put_snapshot(stream, snapshot)
    }
    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        self.inner.get_snapshot(stream)
    }
    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        self.inner.remove_snapshot(stream)
    }
    fn append_signal(&self) -> Option<AppendSignal> {
        Backend::append_signal(&self.inner)
    }
}

async fn append(store: &Flaky, n: u32) {
    let stream = StreamId::new("s").unwrap();
    for i in 0..n {
        let event = NewEvent::json("E", &i).unwrap();
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
}

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn transient_errors_are_retried_without_loss_or_repeats() {
    let store = Arc::new(Flaky {
        inner: MemoryEventStore::new(),
        fail: AtomicU32::new(0),
        transient: true,
    });
    append(&store, 5).await;
    let mut events = store.subscribe_all(SubscribeAll::from_start().page_size(2));
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(events.try_next().await.unwrap().unwrap());
    }
    // The database goes away for three reads, mid-page each time.
    store.fail.store(3, Ordering::SeqCst);
    append(&store, 5).await;
    let rest = tokio::time::timeout(DEADLINE, async {
        let mut rest = Vec::new();
        while rest.len() < 7 {
            rest.push(events.try_next().await.unwrap().unwrap());
        }
        rest
    })
    .await
    .expect("the subscription resumes after the failures");
    delivered.extend(rest);
    assert_eq!(
        store.fail.load(Ordering::SeqCst),
        0,
        "every failure was hit"
    );
    let stored: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        delivered, stored,
        "each event once, in order, across the failures"
    );

    // It reported the trouble while it lasted, and is live again.
    store.fail.store(u32::MAX, Ordering::SeqCst);
    let state = tokio::time::timeout(DEADLINE, async {
        loop {
            // Polling drives the retries; nothing is delivered meanwhile.
            let _ = tokio::time::timeout(Duration::from_millis(50), events.try_next()).await;
            if let SubscriptionState::Retrying { attempts, error } = events.state() {
                if attempts >= 2 {
                    return error;
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(state.contains("server restarting"), "{state}");
    store.fail.store(0, Ordering::SeqCst);
    append(&store, 1).await;
    let next = tokio::time::timeout(DEADLINE, events.try_next())
        .await
        .unwrap();
    assert_eq!(next.unwrap().unwrap().position.get(), 11);
    assert_eq!(events.state(), SubscriptionState::CatchingUp);
}

#[tokio::test]
async fn other_errors_end_the_subscription() {
    let store = Flaky {
        inner: MemoryEventStore::new(),
        fail: AtomicU32::new(1),
        transient: false,
    };
    append(&store, 2).await;
    let mut events = store.subscribe_all(SubscribeAll::from_start());
    // The read fails after one event: that event is delivered (it is final, and
    // the subscription's position says where to resume), then the error.
    let first = events.try_next().await.unwrap().unwrap();
    assert_eq!(first.position.get(), 1);
    assert_eq!(events.position().get(), 1);
    let error = events.try_next().await.unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(events.try_next().await.unwrap().is_none(), "ended");
}
