//! `read_stream`, `read_all`, filters, positions and `get_event`.

use std::sync::Arc;

use annals_core::{
    EventId, EventStore, ExpectedVersion, Metadata, NewEvent, Position, ReadAll, ReadFilter,
    ReadStream, RecordedEvent, Timestamp, Version,
};
use futures::TryStreamExt;

use super::support::{
    all_events, assert_contiguous, assert_increasing_positions, batch, ev, n_of, sid, stream_events,
};

async fn read_stream_vec(
    store: &dyn EventStore,
    stream: &str,
    from: u64,
    limit: Option<u64>,
) -> Vec<RecordedEvent> {
    // `from` is inclusive here (the cases were written that way); the API's cursor is
    // exclusive, so start after `from - 1`.
    let mut read = ReadStream::forward(&sid(stream)).after(Version::new(from.saturating_sub(1)));
    if let Some(limit) = limit {
        read = read.limit(limit);
    }
    store.read_stream(read).try_collect().await.unwrap()
}

async fn read_all_vec(
    store: &dyn EventStore,
    from: Position,
    filter: ReadFilter,
    limit: Option<u64>,
) -> Vec<RecordedEvent> {
    let mut read = ReadAll::after(Position::new(from.get().saturating_sub(1))).filter(filter);
    if let Some(limit) = limit {
        read = read.limit(limit);
    }
    store.read_all(read).try_collect().await.unwrap()
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}

fn streams(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.stream_id.as_str()).collect()
}

/// `read_stream` starts at the given version (inclusive).
pub async fn read_stream_from_version(store: Arc<dyn EventStore>) {
    store
        .append(&sid("s"), ExpectedVersion::NoStream, batch(1, 10))
        .await
        .unwrap();
    assert_eq!(
        versions(&read_stream_vec(&*store, "s", 4, None).await),
        (4..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        versions(&read_stream_vec(&*store, "s", 10, None).await),
        vec![10]
    );
    assert!(read_stream_vec(&*store, "s", 11, None).await.is_empty());
    assert_eq!(read_stream_vec(&*store, "s", 0, None).await.len(), 10);
    assert_eq!(read_stream_vec(&*store, "s", 1, None).await.len(), 10);
    // Payloads come back in version order.
    let ns: Vec<u64> = read_stream_vec(&*store, "s", 1, None)
        .await
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(ns, (1..=10).collect::<Vec<_>>());
}

/// `read_stream` returns at most `limit` events.
pub async fn read_stream_with_limit(store: Arc<dyn EventStore>) {
    store
        .append(&sid("s"), ExpectedVersion::NoStream, batch(1, 10))
        .await
        .unwrap();
    assert_eq!(
        versions(&read_stream_vec(&*store, "s", 1, Some(3)).await),
        vec![1, 2, 3]
    );
    assert_eq!(
        versions(&read_stream_vec(&*store, "s", 5, Some(2)).await),
        vec![5, 6]
    );
    assert_eq!(
        versions(&read_stream_vec(&*store, "s", 9, Some(100)).await),
        vec![9, 10]
    );
    assert!(read_stream_vec(&*store, "s", 1, Some(0)).await.is_empty());
}

/// A stream that was never written reads as empty, not as an error.
pub async fn read_stream_of_missing_stream_is_empty(store: Arc<dyn EventStore>) {
    store
        .append(&sid("other"), ExpectedVersion::NoStream, batch(0, 2))
        .await
        .unwrap();
    assert!(read_stream_vec(&*store, "missing", 1, None)
        .await
        .is_empty());
}

/// Interleaved appends to similar stream names never leak into each other.
pub async fn read_stream_is_isolated_per_stream(store: Arc<dyn EventStore>) {
    for round in 0..3 {
        for name in ["a", "ab", "a-1", "A"] {
            store
                .append(&sid(name), ExpectedVersion::Any, batch(round, 1))
                .await
                .unwrap();
        }
    }
    for name in ["a", "ab", "a-1", "A"] {
        let events = read_stream_vec(&*store, name, 1, None).await;
        assert_eq!(events.len(), 3, "stream {name}");
        assert!(events.iter().all(|e| e.stream_id.as_str() == name));
        assert_contiguous(&events);
        assert_increasing_positions(&events);
    }
}

/// `read_all` returns every event once, in append order for a single writer.
pub async fn read_all_returns_everything_in_position_order(store: Arc<dyn EventStore>) {
    let mut expected = Vec::new();
    for i in 0..12u64 {
        let name = format!("s-{}", i % 3);
        let e = ev("Tick", i);
        expected.push((name.clone(), e.id));
        store
            .append(&sid(&name), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
    let all = all_events(&*store).await;
    let got: Vec<(String, EventId)> = all
        .iter()
        .map(|e| (e.stream_id.to_string(), e.id))
        .collect();
    assert_eq!(got, expected);
    assert_increasing_positions(&all);
}

/// `read_all` starts at the given position (inclusive).
pub async fn read_all_from_position(store: Arc<dyn EventStore>) {
    store
        .append(&sid("a"), ExpectedVersion::Any, batch(0, 3))
        .await
        .unwrap();
    store
        .append(&sid("b"), ExpectedVersion::Any, batch(3, 3))
        .await
        .unwrap();
    let all = all_events(&*store).await;
    assert_eq!(all.len(), 6);
    let third = all[2].position;
    let from_third = read_all_vec(&*store, third, ReadFilter::new(), None).await;
    assert_eq!(from_third, all[2..].to_vec());
    let after_third = read_all_vec(&*store, third.next(), ReadFilter::new(), None).await;
    assert_eq!(after_third, all[3..].to_vec());
    let last = all[5].position;
    assert!(read_all_vec(&*store, last.next(), ReadFilter::new(), None)
        .await
        .is_empty());
    assert_eq!(
        read_all_vec(&*store, Position::START, ReadFilter::new(), None).await,
        all
    );
}

/// `read_all` returns at most `limit` events, and paging with it visits everything once.
pub async fn read_all_with_limit(store: Arc<dyn EventStore>) {
    for i in 0..7u64 {
        store
            .append(
                &sid(&format!("s-{i}")),
                ExpectedVersion::Any,
                batch(i * 10, 3),
            )
            .await
            .unwrap();
    }
    let all = all_events(&*store).await;
    assert_eq!(all.len(), 21);
    assert_eq!(
        read_all_vec(&*store, Position::START, ReadFilter::new(), Some(5)).await,
        all[..5].to_vec()
    );
    assert!(
        read_all_vec(&*store, Position::START, ReadFilter::new(), Some(0))
            .await
            .is_empty()
    );
    let mut paged = Vec::new();
    let mut from = Position::START;
    loop {
        let page = read_all_vec(&*store, from, ReadFilter::new(), Some(4)).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        from = page.last().unwrap().position.next();
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

/// The event-type filter keeps only the listed types, in order.
pub async fn read_all_filters_by_event_type(store: Arc<dyn EventStore>) {
    let types = ["Placed", "Paid", "Shipped", "Placed.v2"];
    for i in 0..16u64 {
        let t = types[(i % 4) as usize];
        store
            .append(
                &sid(&format!("o-{}", i % 5)),
                ExpectedVersion::Any,
                vec![ev(t, i)],
            )
            .await
            .unwrap();
    }
    let only = read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().event_types(["Placed", "Shipped"]),
        None,
    )
    .await;
    assert_eq!(only.len(), 8);
    assert!(
        only.iter()
            .all(|e| e.event_type == "Placed" || e.event_type == "Shipped"),
        "{:?}",
        only.iter().map(|e| &e.event_type).collect::<Vec<_>>()
    );
    assert_increasing_positions(&only);
    let one = read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().event_type("Placed.v2"),
        None,
    )
    .await;
    assert_eq!(one.iter().map(n_of).collect::<Vec<_>>(), vec![3, 7, 11, 15]);
    assert!(read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().event_type("Nope"),
        None
    )
    .await
    .is_empty());
}

/// The stream-prefix filter is a literal byte prefix (no wildcards, case-sensitive).
pub async fn read_all_filters_by_stream_prefix(store: Arc<dyn EventStore>) {
    let names = [
        "order-1",
        "invoice-1",
        "order-2",
        "orders",
        "Order-3",
        "order_x",
        "50%_off-1",
        "50xyoff-1",
        "order-1-sub",
    ];
    for name in names {
        store
            .append(&sid(name), ExpectedVersion::Any, batch(0, 2))
            .await
            .unwrap();
    }
    let orders = read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().stream_prefix("order-"),
        None,
    )
    .await;
    assert_eq!(
        streams(&orders),
        vec![
            "order-1",
            "order-1",
            "order-2",
            "order-2",
            "order-1-sub",
            "order-1-sub"
        ]
    );
    let wild = read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().stream_prefix("50%_"),
        None,
    )
    .await;
    assert_eq!(streams(&wild), vec!["50%_off-1", "50%_off-1"]);
    let exact = read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().stream_prefix("orders"),
        None,
    )
    .await;
    assert_eq!(streams(&exact), vec!["orders", "orders"]);
    let everything = read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().stream_prefix(""),
        None,
    )
    .await;
    assert_eq!(everything.len(), names.len() * 2);
    assert!(read_all_vec(
        &*store,
        Position::START,
        ReadFilter::new().stream_prefix("zzz"),
        None
    )
    .await
    .is_empty());
}

/// Type filter, prefix filter, start position and limit combine.
pub async fn read_all_combines_filters_and_limit(store: Arc<dyn EventStore>) {
    for i in 0..30u64 {
        let stream = if i % 2 == 0 {
            format!("order-{}", i % 3)
        } else {
            format!("user-{}", i % 3)
        };
        let t = if i % 3 == 0 { "Created" } else { "Updated" };
        store
            .append(&sid(&stream), ExpectedVersion::Any, vec![ev(t, i)])
            .await
            .unwrap();
    }
    let filter = ReadFilter::new()
        .stream_prefix("order-")
        .event_type("Updated");
    let all_matching = read_all_vec(&*store, Position::START, filter.clone(), None).await;
    let expected: Vec<u64> = (0..30).filter(|i| i % 2 == 0 && i % 3 != 0).collect();
    assert_eq!(all_matching.iter().map(n_of).collect::<Vec<_>>(), expected);
    let from = all_matching[2].position;
    let page = read_all_vec(&*store, from, filter, Some(3)).await;
    assert_eq!(page, all_matching[2..5].to_vec());
}

/// Positions strictly increase across streams and appends, and are unique.
pub async fn positions_strictly_increase_across_streams(store: Arc<dyn EventStore>) {
    let mut last = Position::START;
    for i in 0..20u64 {
        let r = store
            .append(
                &sid(&format!("s-{}", i % 4)),
                ExpectedVersion::Any,
                batch(i, 1 + i % 3),
            )
            .await
            .unwrap();
        for p in &r.positions {
            assert!(*p > last, "position {p:?} after {last:?}");
            last = *p;
        }
    }
    assert_increasing_positions(&all_events(&*store).await);
}

/// The append result's positions and version are those of the stored events.
pub async fn append_result_matches_stored_events(store: Arc<dyn EventStore>) {
    store
        .append(&sid("x"), ExpectedVersion::Any, batch(0, 2))
        .await
        .unwrap();
    let events = batch(10, 4);
    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    let r = store
        .append(&sid("s"), ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(4));
    assert_eq!(r.positions.len(), 4);
    let stored = stream_events(&*store, &sid("s")).await;
    assert_eq!(
        stored.iter().map(|e| e.position).collect::<Vec<_>>(),
        r.positions
    );
    assert_eq!(stored.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(r.first_position(), Some(stored[0].position));
    assert_eq!(r.last_position(), Some(stored[3].position));
}

/// Every field of an event survives the round trip; `recorded_at` is set by the store.
pub async fn recorded_event_round_trips_all_fields(store: Arc<dyn EventStore>) {
    let id = EventId::new();
    let metadata = Metadata::new()
        .with_correlation_id("corr-1")
        .with_causation_id("cause-9")
        .with_field("user", "alice")
        .with_field(
            "nested",
            serde_json::json!({"a": [1, 2, {"b": null}], "z": 1.5}),
        );
    let event = NewEvent::new("OrderPlaced.v3", br#"{"total": 42}"#.to_vec())
        .with_id(id)
        .with_content_type("application/vnd.annals+json")
        .with_metadata(metadata.clone());
    let before = Timestamp::now().as_unix_micros();
    store
        .append(
            &sid("order-7"),
            ExpectedVersion::NoStream,
            vec![event.clone()],
        )
        .await
        .unwrap();
    let after = Timestamp::now().as_unix_micros();
    let stored = stream_events(&*store, &sid("order-7")).await;
    let e = &stored[0];
    assert_eq!(e.id, id);
    assert_eq!(e.stream_id, sid("order-7"));
    assert_eq!(e.version, Version::FIRST);
    assert_eq!(e.event_type, "OrderPlaced.v3");
    assert_eq!(e.payload, event.payload);
    assert_eq!(e.content_type, "application/vnd.annals+json");
    assert_eq!(e.metadata, metadata);
    let slack = 5_000_000; // 5 s: a database server's clock may differ slightly
    let at = e.recorded_at.as_unix_micros();
    assert!(
        at >= before - slack && at <= after + slack,
        "recorded_at {} not within [{before}, {after}]",
        e.recorded_at
    );
    // The same event through read_all and get_event.
    assert_eq!(&all_events(&*store).await[0], e);
    assert_eq!(&store.get_event(id).await.unwrap(), e);
}

/// `get_event` finds any stored event by id.
pub async fn get_event_by_id(store: Arc<dyn EventStore>) {
    store
        .append(&sid("a"), ExpectedVersion::Any, batch(0, 3))
        .await
        .unwrap();
    store
        .append(&sid("b"), ExpectedVersion::Any, batch(3, 3))
        .await
        .unwrap();
    for e in all_events(&*store).await {
        assert_eq!(store.get_event(e.id).await.unwrap(), e);
    }
}

/// `get_event` of an unknown id is `NotFound`.
pub async fn get_event_unknown_id_is_not_found(store: Arc<dyn EventStore>) {
    store
        .append(&sid("a"), ExpectedVersion::Any, batch(0, 1))
        .await
        .unwrap();
    let err = store.get_event(EventId::new()).await.unwrap_err();
    assert!(err.is_not_found(), "got {err:?}");
}
