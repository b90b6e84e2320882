//! `EventSink`: every request sent is committed atomically, in order; the first
//! failure surfaces from the sink and wrote nothing; earlier requests stay.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use annals_core::{
    futures::{stream, SinkExt, StreamExt, TryStreamExt},
    AppendRequest, EventSink, EventStore, ExpectedVersion, NewEvent, ReadAll, StreamId, Version,
};
use annals_memory::MemoryEventStore;

fn pair(n: u64) -> AppendRequest {
    // Two streams per request: the sink keeps each request atomic.
    let a = StreamId::new("ledger-a").unwrap();
    let b = StreamId::new("ledger-b").unwrap();
    AppendRequest::new()
        .append(
            &a,
            ExpectedVersion::Exact(Version::new(n)),
            vec![NewEvent::new("Debited", format!("{n}"))],
        )
        .append(
            &b,
            ExpectedVersion::Exact(Version::new(n)),
            vec![NewEvent::new("Credited", format!("{n}"))],
        )
}

#[tokio::test]
async fn requests_are_committed_in_order_and_a_failure_stops_the_sink() {
    let store = MemoryEventStore::new();
    let mut sink = EventSink::new(store.clone());
    // 0..50 are in order; 50 repeats version 49's expectation and conflicts.
    let requests = (0..50).chain([49, 50]).map(pair).map(Ok);
    let error = sink
        .send_all(&mut stream::iter(requests))
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert_eq!(sink.committed(), 50);

    let events: Vec<_> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        100,
        "50 whole requests, nothing of the failed one"
    );
    assert_eq!(sink.last_position(), events.last().map(|e| e.position));
    for (i, two) in events.chunks(2).enumerate() {
        assert_eq!(two[0].event_type, "Debited");
        assert_eq!(two[1].event_type, "Credited");
        assert_eq!(two[0].payload, format!("{i}").into_bytes());
        assert_eq!(
            two[1].payload, two[0].payload,
            "a request's events are contiguous"
        );
    }

    // The sink goes on after an error: the next valid request commits.
    sink.send(pair(50)).await.unwrap();
    assert_eq!(
        store
            .stream_version(&StreamId::new("ledger-b").unwrap())
            .await
            .unwrap(),
        Version::new(51)
    );
}

#[tokio::test]
async fn a_sink_forwards_a_stream_and_can_be_moved_into_a_task() {
    let store = MemoryEventStore::new();
    let orders = StreamId::new("orders").unwrap();
    let messages = stream::iter(0..200).map({
        let orders = orders.clone();
        move |n| {
            Ok(AppendRequest::new().append(
                &orders,
                ExpectedVersion::Any,
                vec![NewEvent::new("OrderReceived", format!("{n}"))],
            ))
        }
    });
    let sink = EventSink::new(store.clone());
    tokio::spawn(messages.forward(sink)).await.unwrap().unwrap();
    assert_eq!(
        store.stream_version(&orders).await.unwrap(),
        Version::new(200)
    );
}

#[tokio::test]
async fn invalid_requests_are_the_sinks_error_and_write_nothing() {
    let store = MemoryEventStore::new();
    let mut sink = EventSink::new(store.clone());
    let error = sink.send(AppendRequest::new()).await.unwrap_err();
    assert!(error.is_invalid_input(), "{error}");
    assert_eq!(sink.committed(), 0);
    let events: Vec<_> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert!(events.is_empty());
}
