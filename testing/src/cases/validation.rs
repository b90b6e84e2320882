//! Bad input: a typed error, nothing written, earlier data intact.

use std::sync::Arc;

use annals_core::{Error, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId, Version};

use super::support::{all_events, batch, ev, sid, stream_events};

/// Empty, oversized and NUL-containing stream ids are `InvalidInput`, never a panic.
pub async fn invalid_stream_ids_are_rejected(store: Arc<dyn EventStore>) {
    let too_long = "x".repeat(StreamId::MAX_LEN + 1);
    // A multi-byte name whose *byte* length is over the limit.
    let too_long_utf8 = "é".repeat(StreamId::MAX_LEN / 2 + 1);
    for bad in ["", "a\0b", "\0", too_long.as_str(), too_long_utf8.as_str()] {
        match StreamId::new(bad) {
            Err(Error::InvalidInput(message)) => assert!(!message.is_empty()),
            other => panic!("stream id {bad:?} must be InvalidInput, got {other:?}"),
        }
        assert!(bad.parse::<StreamId>().is_err());
        let json = serde_json::to_string(bad).unwrap();
        assert!(
            serde_json::from_str::<StreamId>(&json).is_err(),
            "deserializing {bad:?} must fail"
        );
    }
    assert!(all_events(&*store).await.is_empty());
}

/// A stream id of exactly the maximum length (in bytes, multi-byte UTF-8) works end to end.
pub async fn stream_id_at_limit_is_accepted(store: Arc<dyn EventStore>) {
    let ascii = StreamId::new("a".repeat(StreamId::MAX_LEN)).unwrap();
    // 85 three-byte characters = 255 bytes.
    let utf8 = StreamId::new("客".repeat(StreamId::MAX_LEN / 3)).unwrap();
    assert_eq!(utf8.as_str().len(), StreamId::MAX_LEN);
    for s in [&ascii, &utf8] {
        store
            .append(s, ExpectedVersion::NoStream, batch(0, 2))
            .await
            .unwrap();
        let events = stream_events(&*store, s).await;
        assert_eq!(events.len(), 2);
        assert_eq!(&events[0].stream_id, s);
        assert_eq!(store.stream_version(s).await.unwrap(), Version::new(2));
    }
}

fn with_type(event_type: &str) -> NewEvent {
    let mut e = ev("Ok", 0);
    e.event_type = event_type.to_owned();
    e
}

/// Invalid event types, content types or metadata reject the whole batch.
pub async fn invalid_event_fields_are_rejected_and_nothing_written(store: Arc<dyn EventStore>) {
    let s = sid("s");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 1))
        .await
        .unwrap();
    let before = all_events(&*store).await;

    let mut bad_content_type = ev("Ok", 1);
    bad_content_type.content_type = "text/\0plain".to_owned();
    let mut empty_content_type = ev("Ok", 1);
    empty_content_type.content_type = String::new();
    let nul_metadata = ev("Ok", 1).with_metadata(Metadata::new().with_field("note", "a\0b"));
    let nul_metadata_key = ev("Ok", 1).with_metadata(Metadata::new().with_field("k\0", 1));
    let nul_correlation = ev("Ok", 1).with_metadata(Metadata::new().with_correlation_id("c\0"));
    let huge_metadata = ev("Ok", 1).with_metadata(Metadata::new().with_field(
        "blob",
        "m".repeat(store.capabilities().max_metadata_bytes + 1),
    ));

    let bad_events = vec![
        with_type(""),
        with_type("Order\0Placed"),
        with_type(&"T".repeat(store.capabilities().max_name_bytes + 1)),
        bad_content_type,
        empty_content_type,
        nul_metadata,
        nul_metadata_key,
        nul_correlation,
        huge_metadata,
    ];
    for bad in bad_events {
        let description = format!("{:?} / {:?}", bad.event_type, bad.content_type);
        // The bad event sits in the middle of otherwise valid events.
        let mut events = batch(10, 2);
        events.insert(1, bad);
        let err = store
            .append(&s, ExpectedVersion::Any, events)
            .await
            .unwrap_err();
        assert!(
            err.is_invalid_input(),
            "{description}: expected InvalidInput, got {err:?}"
        );
    }
    assert_eq!(all_events(&*store).await, before);
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::new(1));
}

/// A payload over the limit is rejected; the batch is not partially written.
pub async fn oversized_payload_is_rejected_and_nothing_written(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let big = NewEvent::new("Big", vec![7u8; store.capabilities().max_payload_bytes + 1])
        .with_content_type("application/octet-stream");
    let err = store
        .append(&s, ExpectedVersion::Any, vec![ev("Ok", 0), big])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "got {err:?}");
    assert!(all_events(&*store).await.is_empty());
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::ZERO);
    // A large payload under the limit is fine.
    let large = NewEvent::new("Large", vec![42u8; 1024 * 1024])
        .with_content_type("application/octet-stream");
    store
        .append(&s, ExpectedVersion::NoStream, vec![large])
        .await
        .unwrap();
    let events = stream_events(&*store, &s).await;
    assert_eq!(events[0].payload.len(), 1024 * 1024);
    assert!(events[0].payload.iter().all(|b| *b == 42));
}

/// Arbitrary bytes (including NUL) and non-ASCII names round-trip exactly.
pub async fn binary_and_unicode_payloads_round_trip(store: Arc<dyn EventStore>) {
    let s = sid("客户-ü-1");
    let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let binary =
        NewEvent::new("Bytes.v1", bytes.clone()).with_content_type("application/octet-stream");
    let unicode = NewEvent::json(
        "Café.Bestellt.v2",
        &serde_json::json!({"name": "Zoë 🚀", "quote": "\"'\\"}),
    )
    .unwrap();
    let empty = NewEvent::new("Empty", Vec::new());
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![binary, unicode.clone(), empty],
        )
        .await
        .unwrap();
    let events = stream_events(&*store, &s).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].payload, bytes);
    assert_eq!(events[0].content_type, "application/octet-stream");
    assert_eq!(events[1].event_type, "Café.Bestellt.v2");
    assert_eq!(events[1].payload, unicode.payload);
    assert!(events[2].payload.is_empty());
    assert_eq!(events[0].stream_id.as_str(), "客户-ü-1");
}
