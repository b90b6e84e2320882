//! Event ids are unique store-wide; an exact re-send is idempotent.

use std::sync::Arc;

use annals_core::{EventStore, ExpectedVersion, Version};

use super::support::{all_events, batch, ev, sid, stream_events};

/// Re-sending the same append (same ids, same expectation) returns the original
/// result and stores nothing twice — also after the stream moved on.
pub async fn idempotent_reappend_returns_original_result(store: Arc<dyn EventStore>) {
    let s = sid("order-1");
    let events = batch(0, 3);
    let first = store
        .append(&s, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    let again = store
        .append(&s, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(stream_events(&*store, &s).await.len(), 3);

    // Someone else appends; the lost-response retry of the first append still succeeds.
    let more = batch(3, 2);
    let second = store
        .append(&s, ExpectedVersion::Exact(first.version), more.clone())
        .await
        .unwrap();
    assert_eq!(
        store
            .append(&s, ExpectedVersion::NoStream, events.clone())
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store
            .append(&s, ExpectedVersion::Any, events)
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store
            .append(&s, ExpectedVersion::Exact(Version::new(3)), more)
            .await
            .unwrap(),
        second
    );
    assert_eq!(all_events(&*store).await.len(), 5);
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::new(5));
}

/// Reusing an id for different content is `InvalidInput`; nothing is written.
pub async fn reused_event_id_with_different_content_is_rejected(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let original = ev("Placed", 1);
    store
        .append(&s, ExpectedVersion::Any, vec![original.clone()])
        .await
        .unwrap();
    let before = all_events(&*store).await;

    let other_payload = ev("Placed", 2).with_id(original.id);
    let err = store
        .append(&s, ExpectedVersion::Any, vec![other_payload])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "got {err:?}");

    let other_type = ev("Cancelled", 1).with_id(original.id);
    assert!(store
        .append(&s, ExpectedVersion::Any, vec![other_type])
        .await
        .unwrap_err()
        .is_invalid_input());

    // A batch mixing the old id with a new event is not a re-send either.
    let mut mixed = vec![original.clone()];
    mixed.push(ev("Paid", 3));
    assert!(store
        .append(&s, ExpectedVersion::Any, mixed)
        .await
        .unwrap_err()
        .is_invalid_input());
    // New event first, reused id second.
    let mixed = vec![ev("Paid", 4), original];
    assert!(store
        .append(&s, ExpectedVersion::Any, mixed)
        .await
        .unwrap_err()
        .is_invalid_input());

    assert_eq!(all_events(&*store).await, before);
}

/// The same event sent to a different stream is a reused id, not a re-send.
pub async fn reused_event_id_in_another_stream_is_rejected(store: Arc<dyn EventStore>) {
    let e = ev("Placed", 1);
    store
        .append(&sid("a"), ExpectedVersion::Any, vec![e.clone()])
        .await
        .unwrap();
    let err = store
        .append(&sid("b"), ExpectedVersion::Any, vec![e])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "got {err:?}");
    assert!(stream_events(&*store, &sid("b")).await.is_empty());
    assert_eq!(all_events(&*store).await.len(), 1);
}

/// One id twice in the same batch is `InvalidInput`.
pub async fn duplicate_id_within_batch_is_rejected(store: Arc<dyn EventStore>) {
    let e = ev("Placed", 1);
    let twin = ev("Placed", 2).with_id(e.id);
    let err = store
        .append(&sid("s"), ExpectedVersion::Any, vec![e.clone(), twin])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "got {err:?}");
    let err = store
        .append(&sid("s"), ExpectedVersion::Any, vec![e.clone(), e])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "got {err:?}");
    assert!(all_events(&*store).await.is_empty());
}
