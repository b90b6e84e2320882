//! Small helpers shared by the cases.

use annals_core::{EventStore, NewEvent, ReadAll, ReadStream, RecordedEvent, StreamId, Version};
use futures::TryStreamExt;

/// A valid stream id.
pub(crate) fn sid(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

/// An event of type `event_type` with a small JSON payload carrying `n`.
pub(crate) fn ev(event_type: &str, n: u64) -> NewEvent {
    NewEvent::json(event_type, &serde_json::json!({ "n": n })).expect("encodable")
}

/// `count` events of type `Tick` numbered from `start`.
pub(crate) fn batch(start: u64, count: u64) -> Vec<NewEvent> {
    (start..start + count).map(|n| ev("Tick", n)).collect()
}

/// The whole stream, in order.
pub(crate) async fn stream_events(store: &dyn EventStore, stream: &StreamId) -> Vec<RecordedEvent> {
    store
        .read_stream(ReadStream::forward(stream))
        .try_collect()
        .await
        .expect("read_stream succeeds")
}

/// The whole global log, in order.
pub(crate) async fn all_events(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .expect("read_all succeeds")
}

/// The `n` field of a payload written by [`ev`].
pub(crate) fn n_of(event: &RecordedEvent) -> u64 {
    let value: serde_json::Value = event.json().expect("JSON payload");
    value["n"].as_u64().expect("payload has n")
}

/// Asserts that `events` have versions 1, 2, … in order.
pub(crate) fn assert_contiguous(events: &[RecordedEvent]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.version,
            Version::new(i as u64 + 1),
            "versions must be contiguous from 1"
        );
    }
}

/// Asserts strictly increasing positions.
pub(crate) fn assert_increasing_positions(events: &[RecordedEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions must strictly increase: {:?} then {:?}",
            pair[0].position,
            pair[1].position
        );
    }
}
