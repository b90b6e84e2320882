//! Versions and the expected-version check.

use std::sync::Arc;

use annals_core::{Error, EventStore, ExpectedVersion, Version};

use super::support::{all_events, batch, ev, sid, stream_events};

/// The first event of a stream has version 1 and the append returns it.
pub async fn first_event_has_version_one(store: Arc<dyn EventStore>) {
    let s = sid("order-1");
    let result = store
        .append(&s, ExpectedVersion::NoStream, vec![ev("Placed", 0)])
        .await
        .unwrap();
    assert_eq!(result.version, Version::new(1));
    assert_eq!(result.positions.len(), 1);
    let events = stream_events(&*store, &s).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].version, Version::FIRST);
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::new(1));
}

/// Versions continue across appends without gaps.
pub async fn versions_are_contiguous(store: Arc<dyn EventStore>) {
    let s = sid("order-1");
    let r1 = store
        .append(&s, ExpectedVersion::Any, batch(0, 3))
        .await
        .unwrap();
    assert_eq!(r1.version, Version::new(3));
    let r2 = store
        .append(&s, ExpectedVersion::Exact(r1.version), batch(3, 2))
        .await
        .unwrap();
    assert_eq!(r2.version, Version::new(5));
    let events = stream_events(&*store, &s).await;
    let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
}

/// A stream that was never written is at version 0.
pub async fn missing_stream_is_at_version_zero(store: Arc<dyn EventStore>) {
    assert_eq!(
        store.stream_version(&sid("nobody")).await.unwrap(),
        Version::ZERO
    );
}

/// `Any` appends whether or not the stream exists.
pub async fn expected_any_appends_to_new_and_existing(store: Arc<dyn EventStore>) {
    let s = sid("s");
    assert_eq!(
        store
            .append(&s, ExpectedVersion::Any, batch(0, 1))
            .await
            .unwrap()
            .version,
        Version::new(1)
    );
    assert_eq!(
        store
            .append(&s, ExpectedVersion::Any, batch(1, 2))
            .await
            .unwrap()
            .version,
        Version::new(3)
    );
}

/// `NoStream` succeeds on a new stream.
pub async fn expected_no_stream_succeeds_on_new_stream(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let r = store
        .append(&s, ExpectedVersion::NoStream, batch(0, 2))
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(2));
}

/// `NoStream` fails once the stream has events.
pub async fn expected_no_stream_fails_on_existing_stream(store: Arc<dyn EventStore>) {
    let s = sid("s");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 1))
        .await
        .unwrap();
    let err = store
        .append(&s, ExpectedVersion::NoStream, batch(1, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { actual, .. } if actual == Version::new(1)),
        "got {err:?}"
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::new(1));
}

/// `StreamExists` succeeds once the stream has events.
pub async fn expected_stream_exists_succeeds_on_existing_stream(store: Arc<dyn EventStore>) {
    let s = sid("s");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 1))
        .await
        .unwrap();
    let r = store
        .append(&s, ExpectedVersion::StreamExists, batch(1, 1))
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(2));
}

/// `StreamExists` fails on a missing stream.
pub async fn expected_stream_exists_fails_on_missing_stream(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let err = store
        .append(&s, ExpectedVersion::StreamExists, batch(0, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { actual, .. } if actual == Version::ZERO),
        "got {err:?}"
    );
    assert!(stream_events(&*store, &s).await.is_empty());
}

/// `Exact(v)` succeeds when the stream is at `v`.
pub async fn expected_exact_succeeds_at_current_version(store: Arc<dyn EventStore>) {
    let s = sid("s");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 4))
        .await
        .unwrap();
    let r = store
        .append(&s, ExpectedVersion::Exact(Version::new(4)), batch(4, 1))
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(5));
}

/// `Exact(v)` fails when the stream is behind or ahead of `v`.
pub async fn expected_exact_fails_when_behind_or_ahead(store: Arc<dyn EventStore>) {
    let s = sid("s");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 3))
        .await
        .unwrap();
    for wrong in [2, 4, 10] {
        let err = store
            .append(&s, ExpectedVersion::Exact(Version::new(wrong)), batch(3, 1))
            .await
            .unwrap_err();
        assert!(
            err.is_conflict(),
            "Exact({wrong}) on a stream at 3 must conflict, got {err:?}"
        );
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::new(3));
}

/// `Exact(0)` behaves like `NoStream`.
pub async fn expected_exact_zero_means_no_stream(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let r = store
        .append(&s, ExpectedVersion::Exact(Version::ZERO), batch(0, 1))
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(1));
    let err = store
        .append(&s, ExpectedVersion::Exact(Version::ZERO), batch(1, 1))
        .await
        .unwrap_err();
    assert!(err.is_conflict());
}

/// A conflict names the stream, the expectation and the actual version.
pub async fn conflict_reports_stream_expected_and_actual(store: Arc<dyn EventStore>) {
    let s = sid("order-9");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 2))
        .await
        .unwrap();
    match store
        .append(&s, ExpectedVersion::Exact(Version::new(1)), batch(2, 1))
        .await
    {
        Err(Error::Conflict {
            stream,
            expected,
            actual,
            others,
        }) => {
            assert!(others.is_empty(), "a one-stream append names one stream");
            assert_eq!(stream, s);
            assert_eq!(expected, ExpectedVersion::Exact(Version::new(1)));
            assert_eq!(actual, Version::new(2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let message = store
        .append(&s, ExpectedVersion::NoStream, batch(2, 1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("order-9"),
        "error message should name the stream: {message}"
    );
}

/// A conflicting append leaves the stream and the global log untouched.
pub async fn failed_append_writes_nothing(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let other = sid("other");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 2))
        .await
        .unwrap();
    store
        .append(&other, ExpectedVersion::Any, batch(0, 1))
        .await
        .unwrap();
    let before_all = all_events(&*store).await;
    let before_stream = stream_events(&*store, &s).await;

    let err = store
        .append(&s, ExpectedVersion::Exact(Version::new(1)), batch(10, 5))
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    let err = store
        .append(&sid("fresh"), ExpectedVersion::StreamExists, batch(10, 5))
        .await
        .unwrap_err();
    assert!(err.is_conflict());

    assert_eq!(stream_events(&*store, &s).await, before_stream);
    assert_eq!(all_events(&*store).await, before_all);
    assert_eq!(
        store.stream_version(&sid("fresh")).await.unwrap(),
        Version::ZERO
    );
    // And the stream still accepts a correct append afterwards.
    let r = store
        .append(&s, ExpectedVersion::Exact(Version::new(2)), batch(2, 1))
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(3));
}

/// An empty batch writes nothing, returns the current version, and still checks `expected`.
pub async fn empty_batch_is_noop_that_checks_expected(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let r = store
        .append(&s, ExpectedVersion::NoStream, vec![])
        .await
        .unwrap();
    assert_eq!(r.version, Version::ZERO);
    assert!(r.positions.is_empty());
    assert!(all_events(&*store).await.is_empty());
    let err = store
        .append(&s, ExpectedVersion::StreamExists, vec![])
        .await
        .unwrap_err();
    assert!(
        err.is_conflict(),
        "empty batch must still check expected, got {err:?}"
    );

    store
        .append(&s, ExpectedVersion::Any, batch(0, 2))
        .await
        .unwrap();
    let r = store
        .append(&s, ExpectedVersion::Exact(Version::new(2)), vec![])
        .await
        .unwrap();
    assert_eq!(r.version, Version::new(2));
    let err = store
        .append(&s, ExpectedVersion::Exact(Version::new(1)), vec![])
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    let err = store
        .append(&s, ExpectedVersion::NoStream, vec![])
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(all_events(&*store).await.len(), 2);
}
