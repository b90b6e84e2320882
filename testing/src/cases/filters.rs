//! Filters and paging on awkward data, and cancellation atomicity.

use std::{sync::Arc, time::Duration};

use annals_core::{
    EventStore, ExpectedVersion, NewEvent, ReadAll, ReadFilter, ReadStream, RecordedEvent,
    StreamId, Version,
};
use futures::TryStreamExt;

use super::support::{all_events, assert_contiguous, sid, stream_events};

/// Stream ids around multi-byte characters, the last code points and prefixes of prefixes.
const STREAMS: &[&str] = &[
    "a",
    "ab",
    "ab\u{FFFF}",
    "ab\u{FFFF}z",
    "ab\u{10000}",
    "ab\u{10FFFF}",
    "ac",
    "b",
    "é",
    "éa",
    "ê",
    "\u{D7FF}x",
    "\u{E000}",
    "\u{10FFFF}",
    "\u{10FFFF}\u{10FFFF}",
    "order-1",
    "order-10",
    "order.",
    "order-",
];

const PREFIXES: &[&str] = &[
    "",
    "a",
    "ab",
    "ab\u{FFFF}",
    "ab\u{10FFFF}",
    "é",
    "\u{D7FF}",
    "\u{10FFFF}",
    "\u{10FFFF}\u{10FFFF}",
    "order-",
    "order-1",
    "zzz",
];

async fn read(
    store: &dyn EventStore,
    filter: ReadFilter,
    limit: Option<u64>,
) -> Vec<RecordedEvent> {
    let mut read = ReadAll::forward().filter(filter);
    if let Some(limit) = limit {
        read = read.limit(limit);
    }
    store.read_all(read).try_collect().await.unwrap()
}

/// The backend's prefix filter (usually SQL) agrees with [`ReadFilter::matches`]
/// on awkward stream ids, alone, combined with a type filter, and with a limit.
pub async fn read_all_prefix_matches_reference_semantics(store: Arc<dyn EventStore>) {
    for round in 0..3 {
        for name in STREAMS {
            let kind = if round % 2 == 0 { "Even" } else { "Odd" };
            store
                .append(
                    &sid(name),
                    ExpectedVersion::Any,
                    vec![NewEvent::new(kind, b"{}".to_vec())],
                )
                .await
                .unwrap();
        }
    }
    let all = all_events(&*store).await;
    assert_eq!(all.len(), STREAMS.len() * 3);
    for prefix in PREFIXES {
        for filter in [
            ReadFilter::new().stream_prefix(*prefix),
            ReadFilter::new().stream_prefix(*prefix).event_type("Odd"),
        ] {
            let expected: Vec<_> = all.iter().filter(|e| filter.matches(e)).cloned().collect();
            assert_eq!(
                read(&*store, filter.clone(), None).await,
                expected,
                "{filter:?}"
            );
            let limited: Vec<_> = expected.iter().take(2).cloned().collect();
            assert_eq!(
                read(&*store, filter.clone(), Some(2)).await,
                limited,
                "{filter:?}"
            );
        }
    }
}

/// Reads that span many internal pages return every event once, in order, with
/// `from`, `limit` and filters honoured across page boundaries.
pub async fn reads_spanning_many_pages_return_each_event_once(store: Arc<dyn EventStore>) {
    let (a, b) = (sid("page-a"), sid("page-b"));
    for _ in 0..5 {
        for stream in [&a, &b] {
            let batch = (0..1000)
                .map(|i| NewEvent::new(format!("T{}", i % 3), b"{}".to_vec()))
                .collect();
            store
                .append(stream, ExpectedVersion::Any, batch)
                .await
                .unwrap();
        }
    }
    let stream_a: Vec<_> = store
        .read_stream(ReadStream::forward(&a).after(Version::new(16)).limit(4500))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stream_a.len(), 4500);
    for (i, e) in stream_a.iter().enumerate() {
        assert_eq!(e.version.get(), 17 + i as u64);
        assert_eq!(e.stream_id, a);
    }
    let typed = read(
        &*store,
        ReadFilter::new().event_type("T1").stream_prefix("page-b"),
        None,
    )
    .await;
    let expected = 5 * (0..1000).filter(|i| i % 3 == 1).count();
    assert_eq!(typed.len(), expected);
    assert!(typed.windows(2).all(|w| w[0].position < w[1].position));
    assert!(typed
        .iter()
        .all(|e| e.stream_id == b && e.event_type == "T1"));
}

/// An append whose future is dropped part-way (a caller timeout, a cancelled
/// request) is all-or-nothing: the stream holds the whole batch or none of it,
/// and the store keeps working.
pub async fn cancelled_append_is_all_or_nothing(store: Arc<dyn EventStore>) {
    for (round, delay_us) in [0u64, 50, 200, 1_000, 5_000].into_iter().enumerate() {
        let stream = StreamId::new(format!("cancel-{round}")).unwrap();
        let batch: Vec<NewEvent> = (0..2_000)
            .map(|i| NewEvent::new("Tick", i.to_string()))
            .collect();
        let task = {
            let (store, stream) = (Arc::clone(&store), stream.clone());
            tokio::spawn(async move {
                store
                    .append(&stream, ExpectedVersion::NoStream, batch)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_micros(delay_us)).await;
        task.abort();
        let _ = task.await;
        // A commit already sent may still land; wait until the outcome is settled.
        let mut stored = stream_events(&*store, &stream).await;
        for _ in 0..50 {
            if !stored.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            stored = stream_events(&*store, &stream).await;
        }
        assert!(
            stored.is_empty() || stored.len() == 2_000,
            "round {round}: partial batch of {} events visible",
            stored.len()
        );
        assert_contiguous(&stored);
        // The store still accepts appends on the same stream.
        let version = store.stream_version(&stream).await.unwrap();
        let next = store
            .append(
                &stream,
                ExpectedVersion::Exact(version),
                vec![NewEvent::new("After", b"{}".to_vec())],
            )
            .await
            .unwrap();
        assert_eq!(next.version, version.next());
    }
}
