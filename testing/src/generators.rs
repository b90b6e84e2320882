//! proptest generators for annals values and append sequences, and a driver that
//! runs a property against an async store.

use std::{future::Future, sync::Arc};

use annals_core::{EventStore, ExpectedVersion, Metadata, NewEvent, Version};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

/// Number of cases per property: `ANNALS_PROPTEST_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("ANNALS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `property` for `cases` generated inputs against `store`, with shrinking.
///
/// The property is async; it runs on the current tokio runtime from a blocking
/// thread (the test must use the multi-threaded runtime). Failures are reported by
/// panicking, with the shrunk input.
pub async fn check<S, F, Fut>(store: Arc<dyn EventStore>, cases: u32, strategy: S, property: F)
where
    S: Strategy + Send + 'static,
    S::Value: Send,
    F: Fn(Arc<dyn EventStore>, S::Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        runner
            .run(&strategy, |value| {
                handle.block_on(property(Arc::clone(&store), value));
                Ok(())
            })
            .map_err(|e| e.to_string())
    })
    .await
    .expect("property runner thread");
    if let Err(failure) = outcome {
        panic!("property failed: {failure}");
    }
}

/// An event type name like `Type2` or `Type2.v3`.
pub fn event_type() -> impl Strategy<Value = String> {
    (0u8..4, proptest::option::of(1u8..4)).prop_map(|(t, v)| match v {
        Some(v) => format!("Type{t}.v{v}"),
        None => format!("Type{t}"),
    })
}

/// A valid new event with a random payload, type, metadata and CloudEvents
/// attributes.
pub fn new_event() -> impl Strategy<Value = NewEvent> {
    (
        event_type(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::option::of("[a-z0-9-]{1,12}"),
        any::<bool>(),
        cloud_attributes(),
    )
        .prop_map(|(event_type, payload, correlation, binary, attributes)| {
            let mut metadata = Metadata::new();
            if let Some(c) = correlation {
                metadata = metadata.with_correlation_id(c);
            }
            let (source, subject, time, extension) = attributes;
            let mut event = NewEvent::new(event_type, payload).with_metadata(metadata);
            if let Some(source) = source {
                event = event.with_source(source);
            }
            if let Some(subject) = subject {
                event = event.with_subject(subject);
            }
            if let Some(micros) = time {
                event = event.with_time(annals_core::Timestamp::from_unix_micros(micros));
            }
            if let Some((name, value)) = extension {
                event = event.with_extension(name, value);
            }
            if binary {
                event.with_content_type("application/octet-stream")
            } else {
                event
            }
        })
}

/// Optional CloudEvents source, subject, time (within years 1970–2100) and one
/// extension of any kind.
#[allow(clippy::type_complexity)]
fn cloud_attributes() -> impl Strategy<
    Value = (
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<(String, annals_core::cloud::ExtensionValue)>,
    ),
> {
    use annals_core::cloud::ExtensionValue;
    let extension = (
        "[a-z0-9]{1,20}".prop_filter("not a context attribute", |n| {
            !annals_core::cloud::CONTEXT_ATTRIBUTES.contains(&n.as_str())
        }),
        prop_oneof![
            any::<bool>().prop_map(ExtensionValue::Bool),
            any::<i32>().prop_map(ExtensionValue::Integer),
            "[ -~]{0,16}".prop_map(ExtensionValue::String),
        ],
    );
    (
        proptest::option::of("(/|urn:)[a-z0-9/._-]{1,20}"),
        proptest::option::of("[a-z0-9/ ._-]{1,20}"),
        proptest::option::of(0i64..4_102_444_800_000_000),
        proptest::option::of(extension),
    )
}

/// Which kind of expectation an [`AppendOp`] uses; resolved against the model.
#[derive(Clone, Copy, Debug)]
pub enum ExpectKind {
    /// `ExpectedVersion::Any`.
    Any,
    /// `ExpectedVersion::NoStream`.
    NoStream,
    /// `ExpectedVersion::StreamExists`.
    StreamExists,
    /// `Exact(model version + delta)`; delta 0 is the correct version.
    Exact(i8),
}

impl ExpectKind {
    /// The concrete expectation for a stream the model says is at `current`.
    pub fn resolve(self, current: Version) -> ExpectedVersion {
        match self {
            ExpectKind::Any => ExpectedVersion::Any,
            ExpectKind::NoStream => ExpectedVersion::NoStream,
            ExpectKind::StreamExists => ExpectedVersion::StreamExists,
            ExpectKind::Exact(delta) => ExpectedVersion::Exact(Version::new(
                current.get().saturating_add_signed(i64::from(delta)),
            )),
        }
    }
}

/// One step of a random append sequence.
#[derive(Clone, Debug)]
pub struct AppendOp {
    /// Index of the stream (0..4) within the case's streams.
    pub stream: usize,
    /// The expectation, relative to the model.
    pub expect: ExpectKind,
    /// The events to append (may be empty).
    pub events: Vec<NewEvent>,
}

/// A random expectation kind, biased towards the correct `Exact`.
pub fn expect_kind() -> impl Strategy<Value = ExpectKind> {
    prop_oneof![
        2 => Just(ExpectKind::Any),
        1 => Just(ExpectKind::NoStream),
        1 => Just(ExpectKind::StreamExists),
        4 => Just(ExpectKind::Exact(0)),
        1 => (-2i8..=2).prop_map(ExpectKind::Exact),
    ]
}

/// A random sequence of appends over four streams.
pub fn append_ops(max_len: usize) -> impl Strategy<Value = Vec<AppendOp>> {
    proptest::collection::vec(
        (
            0usize..4,
            expect_kind(),
            proptest::collection::vec(new_event(), 0..5),
        )
            .prop_map(|(stream, expect, events)| AppendOp {
                stream,
                expect,
                events,
            }),
        1..max_len,
    )
}

/// A stream-name prefix unique to one property case, so cases can share a store.
pub fn unique_prefix(tag: &str) -> String {
    format!("{tag}-{}-", annals_core::EventId::new().as_uuid().simple())
}
