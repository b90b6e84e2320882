//! The SQL prefix range agrees with `ReadFilter::matches` on awkward stream ids
//! (multi-byte characters, the last code points, prefixes of prefixes), and paging
//! returns every matching event once.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use annals_sqlite::{
    futures::TryStreamExt, EventStore, ExpectedVersion, NewEvent, Position, ReadFilter,
    RecordedEvent, SqliteEventStore, StreamId,
};

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
    store: &SqliteEventStore,
    filter: ReadFilter,
    limit: Option<u64>,
) -> Vec<RecordedEvent> {
    store
        .read_all(Position::START, filter, limit)
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_prefix_in_sql_matches_the_reference_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    for round in 0..3 {
        for name in STREAMS {
            let stream = StreamId::new(*name).unwrap();
            let kind = if round % 2 == 0 { "Even" } else { "Odd" };
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new(kind, b"{}".to_vec())],
                )
                .await
                .unwrap();
        }
    }
    let all = read(&store, ReadFilter::new(), None).await;
    assert_eq!(all.len(), STREAMS.len() * 3);
    for prefix in PREFIXES {
        for filter in [
            ReadFilter::new().stream_prefix(*prefix),
            ReadFilter::new().stream_prefix(*prefix).event_type("Odd"),
        ] {
            let expected: Vec<_> = all.iter().filter(|e| filter.matches(e)).cloned().collect();
            assert_eq!(
                read(&store, filter.clone(), None).await,
                expected,
                "{filter:?}"
            );
            let limited: Vec<_> = expected.iter().take(2).cloned().collect();
            assert_eq!(
                read(&store, filter.clone(), Some(2)).await,
                limited,
                "{filter:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spanning_many_pages_return_each_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let (a, b) = (
        StreamId::new("page-a").unwrap(),
        StreamId::new("page-b").unwrap(),
    );
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
        .read_stream(&a, annals_sqlite::Version::new(17), Some(4500))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stream_a.len(), 4500);
    for (i, e) in stream_a.iter().enumerate() {
        assert_eq!(e.version.get(), 17 + i as u64);
        assert_eq!(e.stream_id, a);
    }
    let typed = read(
        &store,
        ReadFilter::new().event_type("T1").stream_prefix("page-b"),
        None,
    )
    .await;
    let expected = (0..5)
        .map(|_| (0..1000).filter(|i| i % 3 == 1).count())
        .sum::<usize>();
    assert_eq!(typed.len(), expected);
    assert!(typed.windows(2).all(|w| w[0].position < w[1].position));
    assert!(typed
        .iter()
        .all(|e| e.stream_id == b && e.event_type == "T1"));
}
