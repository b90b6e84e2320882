//! CloudEvents attributes, lookups by `(source, id)` and [`EventQuery`].

use std::sync::Arc;

use annals_core::{
    cloud::{ExtensionValue, DEFAULT_SOURCE},
    EventId, EventQuery, EventStore, ExpectedVersion, Metadata, NewEvent, Position, ReadStream,
    RecordedEvent, Timestamp,
};
use futures::TryStreamExt;
use proptest::prelude::*;

use crate::generators::{cases, check, unique_prefix};

use super::support::{all_events, ev, sid, stream_events};

/// A fixed instant (2026-01-01T00:00:00Z) plus `seconds`.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_767_225_600_000_000 + seconds * 1_000_000)
}

async fn query(store: &dyn EventStore, query: EventQuery) -> Vec<RecordedEvent> {
    store
        .query(query.clone())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{query:?} failed: {e}"))
}

/// What `query` must return: the reference filter over the whole log.
fn model(log: &[RecordedEvent], query: &EventQuery) -> Vec<EventId> {
    let mut selected: Vec<&RecordedEvent> = log.iter().filter(|e| query.matches(e)).collect();
    if query.direction == annals_core::Direction::Backward {
        selected.reverse();
    }
    let limit = query.limit.map_or(usize::MAX, |l| l as usize);
    selected
        .into_iter()
        .skip(query.offset as usize)
        .take(limit)
        .map(|e| e.id)
        .collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// Every attribute set on append reads back the same through every read, and
/// attributes left unset resolve to their defaults.
pub async fn cloud_attributes_round_trip(store: Arc<dyn EventStore>) {
    let s = sid("order-1");
    let full = NewEvent::new("order.created", r#"{"total":12}"#)
        .with_source("https://shop.example/orders?region=eu")
        .with_cloud_id("A-1001")
        .with_subject("customer/7")
        .with_time(at(42))
        .with_dataschema("https://shop.example/schemas/order-created.json")
        .with_extension("tenant", "acme")
        .with_extension("priority", 3)
        .with_extension("replayed", false)
        .with_metadata_correlation("req-9");
    let plain = ev("order.noted", 1);
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![full.clone(), plain.clone()],
        )
        .await
        .unwrap();

    for stored in [
        stream_events(&*store, &s).await,
        all_events(&*store).await,
        vec![
            store.get_event(full.id).await.unwrap(),
            store.get_event(plain.id).await.unwrap(),
        ],
    ] {
        let (f, p) = (&stored[0], &stored[1]);
        assert!(full.same_content_as(f), "{f:?}");
        assert_eq!(f.source(), "https://shop.example/orders?region=eu");
        assert_eq!(f.cloud_id(), "A-1001");
        assert_eq!(f.id, EventId::for_cloud_event(f.source(), "A-1001"));
        assert_eq!(f.subject(), "customer/7");
        assert_eq!(f.time(), at(42));
        assert_ne!(f.time(), f.recorded_at);
        assert_eq!(
            f.metadata.dataschema.as_deref(),
            Some("https://shop.example/schemas/order-created.json")
        );
        assert_eq!(
            f.metadata.extensions.get("tenant"),
            Some(&ExtensionValue::String("acme".into()))
        );
        assert_eq!(
            f.metadata.extensions.get("priority"),
            Some(&ExtensionValue::Integer(3))
        );
        assert_eq!(
            f.metadata.extensions.get("replayed"),
            Some(&ExtensionValue::Bool(false))
        );
        assert_eq!(f.metadata.correlation_id.as_deref(), Some("req-9"));

        assert!(plain.same_content_as(p));
        assert_eq!(p.source(), DEFAULT_SOURCE);
        assert_eq!(p.cloud_id(), p.id.to_string());
        assert_eq!(p.subject(), "order-1");
        assert_eq!(p.time(), p.recorded_at);
        assert!(p.metadata.extensions.is_empty());
    }
}

trait WithCorrelation {
    fn with_metadata_correlation(self, id: &str) -> Self;
}

impl WithCorrelation for NewEvent {
    fn with_metadata_correlation(mut self, id: &str) -> Self {
        self.metadata.correlation_id = Some(id.to_owned());
        self
    }
}

/// Attributes that break the CloudEvents rules are `InvalidInput`, and a batch
/// holding one writes nothing.
pub async fn cloud_invalid_attributes_are_rejected_and_nothing_written(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let good = || ev("ok", 1);
    let bad: Vec<(&str, NewEvent)> = vec![
        ("source with a space", good().with_source("/a b")),
        ("empty source", good().with_source("")),
        ("source with a bad escape", good().with_source("/a%zz")),
        ("non-ASCII source", good().with_source("/é")),
        ("over-long source", good().with_source("/".repeat(256))),
        ("empty cloud id", good().with_cloud_id("")),
        ("cloud id with NUL", good().with_cloud_id("a\0b")),
        ("empty subject", good().with_subject("")),
        (
            "relative dataschema",
            good().with_dataschema("/schemas/x.json"),
        ),
        ("upper-case extension", good().with_extension("Tenant", "x")),
        (
            "over-long extension",
            good().with_extension("a".repeat(21), "x"),
        ),
        ("extension with a dash", good().with_extension("a-b", "x")),
        ("reserved extension", good().with_extension("data", "x")),
        ("extension with NUL", good().with_extension("tenant", "a\0")),
        (
            "time before year 1",
            good().with_time(Timestamp::from_unix_micros(i64::MIN)),
        ),
        (
            "time after year 9999",
            good().with_time(Timestamp::from_unix_micros(i64::MAX)),
        ),
        (
            "reserved metadata field",
            good().with_metadata(Metadata::new().with_field("ce_source", "/x")),
        ),
        (
            "cloud id with a foreign event id",
            good().with_cloud_id("A-1").with_id(EventId::new()),
        ),
    ];
    for (what, event) in bad {
        let err = store
            .append(&s, ExpectedVersion::Any, vec![good(), event])
            .await
            .expect_err(what);
        assert!(err.is_invalid_input(), "{what}: got {err:?}");
    }
    assert!(all_events(&*store).await.is_empty(), "nothing was written");
    assert_eq!(
        store.stream_version(&s).await.unwrap(),
        annals_core::Version::ZERO
    );
}

/// Re-sending a CloudEvent (same source and id, same content) is an idempotent
/// re-send; the same pair with other attributes is rejected; the same id under
/// another source is another event.
pub async fn cloud_idempotency_covers_attributes(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let event = NewEvent::new("order.created", "{}")
        .with_source("/orders")
        .with_cloud_id("A-1")
        .with_subject("customer/1")
        .with_time(at(1))
        .with_extension("tenant", "acme");
    let first = store
        .append(&s, ExpectedVersion::NoStream, vec![event.clone()])
        .await
        .unwrap();
    let again = store
        .append(&s, ExpectedVersion::NoStream, vec![event.clone()])
        .await
        .unwrap();
    assert_eq!(
        first, again,
        "a re-sent CloudEvent returns the first result"
    );
    assert_eq!(stream_events(&*store, &s).await.len(), 1);

    let changes = [
        event.clone().with_extension("tenant", "other"),
        event.clone().with_extension("region", "eu"),
        event.clone().with_subject("customer/2"),
        event.clone().with_time(at(2)),
        event.clone().with_dataschema("urn:schema:x"),
    ];
    for changed in changes {
        let err = store
            .append(&s, ExpectedVersion::Any, vec![changed.clone()])
            .await
            .expect_err("same (source, id) with other attributes");
        assert!(err.is_invalid_input(), "{changed:?}: got {err:?}");
    }

    let elsewhere = NewEvent::new("order.created", "{}")
        .with_source("/billing")
        .with_cloud_id("A-1");
    store
        .append(&s, ExpectedVersion::Any, vec![elsewhere])
        .await
        .unwrap();
    assert_eq!(stream_events(&*store, &s).await.len(), 2);
}

/// `get_by_source_id` finds events by caller ids and by default ids, and says
/// `NotFound` for anything else.
pub async fn get_by_source_id_finds_events(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let chosen = NewEvent::new("t", "{}")
        .with_source("/orders")
        .with_cloud_id("A-1");
    let sourced = NewEvent::new("t", "{}").with_source("/orders");
    let plain = ev("t", 1);
    store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![chosen.clone(), sourced.clone(), plain.clone()],
        )
        .await
        .unwrap();

    let found = store.get_by_source_id("/orders", "A-1").await.unwrap();
    assert_eq!(found.id, chosen.id);
    let found = store
        .get_by_source_id("/orders", &sourced.id.to_string())
        .await
        .unwrap();
    assert_eq!(found.id, sourced.id);
    let found = store
        .get_by_source_id(DEFAULT_SOURCE, &plain.id.to_string())
        .await
        .unwrap();
    assert_eq!(found.id, plain.id);

    for (source, id) in [
        ("/billing", "A-1".to_owned()),
        ("/orders", "A-2".to_owned()),
        ("/orders", plain.id.to_string()),
        (DEFAULT_SOURCE, sourced.id.to_string()),
        (DEFAULT_SOURCE, chosen.id.to_string()),
        ("/orders", chosen.id.to_string()),
        ("/orders", sourced.id.to_string().to_uppercase()),
        ("", String::new()),
    ] {
        let err = store.get_by_source_id(source, &id).await.unwrap_err();
        assert!(err.is_not_found(), "({source}, {id}): got {err:?}");
    }
}

/// A log with every attribute varied, for the query cases.
async fn seed_query_log(store: &dyn EventStore, prefix: &str) {
    let sources = ["/orders", "/billing", DEFAULT_SOURCE];
    let types = ["order.created", "order.paid", "order.shipped"];
    for (n, i) in (0..60i64).enumerate() {
        let stream = sid(&format!("{prefix}order-{}", i % 7));
        let mut event = NewEvent::new(types[n % 3], format!("{{\"n\":{i}}}"));
        if i % 4 != 3 {
            event = event.with_source(sources[n % 3]);
        }
        if i % 5 == 0 {
            event = event.with_subject(format!("{prefix}customer/{}", i % 2));
        }
        if i % 2 == 0 {
            event = event.with_time(at(i * 60));
        }
        if i % 6 < 2 {
            event.metadata.correlation_id = Some(format!("req-{}", i % 3));
        }
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
}

/// The query shapes the cases compare against the model.
fn shapes(prefix: &str, log: &[RecordedEvent]) -> Vec<EventQuery> {
    let middle = log[log.len() / 2].position;
    let quarter = log[log.len() / 4].position;
    vec![
        EventQuery::new(),
        EventQuery::new().event_type("order.paid"),
        EventQuery::new()
            .event_type("order.paid")
            .event_type("order.shipped"),
        EventQuery::new().source("/orders"),
        EventQuery::new().source(DEFAULT_SOURCE),
        EventQuery::new().source("/billing").source(DEFAULT_SOURCE),
        EventQuery::new().subject(format!("{prefix}order-3")),
        EventQuery::new().subject(format!("{prefix}customer/0")),
        EventQuery::new()
            .subject(format!("{prefix}customer/1"))
            .subject(format!("{prefix}order-2")),
        EventQuery::new().subject_prefix(format!("{prefix}customer/")),
        EventQuery::new().subject_prefix(format!("{prefix}order-")),
        EventQuery::new().subject_prefix("no-such-subject"),
        EventQuery::new().correlation_id("req-1"),
        EventQuery::new().time_from(at(600)).time_until(at(1800)),
        EventQuery::new()
            .event_type("order.created")
            .time_from(at(0))
            .time_until(at(3600)),
        EventQuery::new().time_from(at(3000)),
        EventQuery::new().time_until(at(1200)),
        EventQuery::new().positions(quarter..middle),
        EventQuery::new().after(middle),
        EventQuery::new().before(middle),
        EventQuery::new().event_type("order.created").limit(4),
        EventQuery::new().source("/orders").offset(3).limit(5),
        EventQuery::new()
            .source("/orders")
            .event_type("order.created")
            .subject_prefix(prefix)
            .correlation_id("req-0")
            .time_from(at(0)),
        EventQuery::new().event_type("no.such.type"),
    ]
}

/// Every query shape returns what the reference filter over `read_all` returns,
/// ascending and descending, and keyset paging through it returns the same events.
pub async fn query_matches_reference_semantics(store: Arc<dyn EventStore>) {
    let prefix = unique_prefix("q");
    seed_query_log(&*store, &prefix).await;
    let log = all_events(&*store).await;
    assert_eq!(log.len(), 60);
    for shape in shapes(&prefix, &log) {
        for q in [shape.clone(), shape.descending()] {
            let got = query(&*store, q.clone()).await;
            assert_eq!(ids(&got), model(&log, &q), "{q:?}");
            for e in &got {
                assert!(q.matches(e), "{q:?} returned a non-matching {e:?}");
            }
            if q.limit.is_some() || q.offset > 0 {
                continue;
            }
            // Keyset paging, 7 at a time, returns the same events once each.
            let mut paged = Vec::new();
            let mut page = q.clone().limit(7);
            loop {
                let got = query(&*store, page.clone()).await;
                let Some(last) = got.last().map(|e| e.position) else {
                    break;
                };
                paged.extend(ids(&got));
                page = match q.direction {
                    annals_core::Direction::Forward => page.after(last),
                    annals_core::Direction::Backward => page.before(last),
                };
            }
            assert_eq!(paged, model(&log, &q), "paging {q:?}");
        }
    }
    // Empty ranges and zero limits return nothing; a NUL in a filter is invalid.
    assert!(query(&*store, EventQuery::new().limit(0)).await.is_empty());
    assert!(query(&*store, EventQuery::new().before(Position::new(1)))
        .await
        .is_empty());
    assert!(query(
        &*store,
        EventQuery::new().time_from(at(5)).time_until(at(5))
    )
    .await
    .is_empty());
    let err = store
        .query(EventQuery::new().source("a\0b"))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "got {err:?}");
}

/// One random event: stream, type, source, subject, time, correlation id (indexes).
type EventCase = (usize, u8, Option<u8>, Option<u8>, Option<i64>, Option<u8>);

/// A random query over a random log.
#[derive(Clone, Debug)]
struct QueryCase {
    events: Vec<EventCase>,
    types: Vec<u8>,
    sources: Vec<u8>,
    subject: Option<(bool, u8)>,
    correlation: Option<u8>,
    time: (Option<i64>, Option<i64>),
    cursor: Option<usize>,
    descending: bool,
    limit: Option<u64>,
    offset: u64,
}

fn query_case() -> impl Strategy<Value = QueryCase> {
    let event = (
        0usize..3,
        0u8..3,
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..2),
        proptest::option::of(0i64..10),
        proptest::option::of(0u8..2),
    );
    (
        proptest::collection::vec(event, 1..25),
        proptest::collection::vec(0u8..4, 0..3),
        proptest::collection::vec(0u8..4, 0..3),
        proptest::option::of((any::<bool>(), 0u8..3)),
        proptest::option::of(0u8..3),
        (
            proptest::option::of(0i64..11),
            proptest::option::of(0i64..11),
        ),
        proptest::option::of(0usize..25),
        any::<bool>(),
        proptest::option::of(0u64..6),
        0u64..3,
    )
        .prop_map(
            |(
                events,
                types,
                sources,
                subject,
                correlation,
                time,
                cursor,
                descending,
                limit,
                offset,
            )| {
                QueryCase {
                    events,
                    types,
                    sources,
                    subject,
                    correlation,
                    time,
                    cursor,
                    descending,
                    limit,
                    offset,
                }
            },
        )
}

const SOURCES: [&str; 4] = ["/a", "/b", DEFAULT_SOURCE, "/none"];

/// proptest: for random logs and random queries, `query` returns exactly what
/// the reference filter over `read_all` returns.
pub async fn prop_random_queries_match_model(store: Arc<dyn EventStore>) {
    check(store, cases(24), query_case(), |store, case| async move {
        let prefix = unique_prefix("pq");
        for (stream, ty, source, subject, time, correlation) in &case.events {
            let stream = sid(&format!("{prefix}s{stream}"));
            let mut event = NewEvent::new(format!("T{ty}"), "{}");
            if let Some(source) = source {
                event = event.with_source(SOURCES[usize::from(*source)]);
            }
            if let Some(subject) = subject {
                event = event.with_subject(format!("{prefix}subject{subject}"));
            }
            if let Some(time) = time {
                event = event.with_time(at(*time));
            }
            if let Some(c) = correlation {
                event.metadata.correlation_id = Some(format!("{prefix}c{c}"));
            }
            store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await
                .unwrap();
        }
        let log = all_events(&*store).await;
        let mine: Vec<&RecordedEvent> = log
            .iter()
            .filter(|e| e.stream_id.as_str().starts_with(&prefix))
            .collect();
        let mut q = EventQuery::new().positions(mine[0].position..Position::new(i64::MAX as u64));
        for t in &case.types {
            q = q.event_type(format!("T{t}"));
        }
        for s in &case.sources {
            q = q.source(SOURCES[usize::from(*s)]);
        }
        match case.subject {
            Some((true, n)) => q = q.subject(format!("{prefix}s{n}")),
            Some((false, 0)) => q = q.subject_prefix(format!("{prefix}subject")),
            Some((false, n)) => q = q.subject(format!("{prefix}subject{}", n - 1)),
            None => {}
        }
        if let Some(c) = case.correlation {
            q = q.correlation_id(format!("{prefix}c{c}"));
        }
        if let Some(from) = case.time.0 {
            q = q.time_from(at(from));
        }
        if let Some(until) = case.time.1 {
            q = q.time_until(at(until));
        }
        if case.descending {
            q = q.descending();
        }
        if let Some(i) = case.cursor {
            let position = mine.get(i).map_or(Position::new(1), |e| e.position);
            q = if case.descending {
                q.before(position)
            } else {
                q.after(position)
            };
        }
        if let Some(limit) = case.limit {
            q = q.limit(limit);
        }
        q = q.offset(case.offset);
        let got = query(&*store, q.clone()).await;
        assert_eq!(ids(&got), model(&log, &q), "{q:?}");
    })
    .await;
}

/// `read_stream` is the CloudEvents design's `Stream(subject, from)` for subjects
/// that are stream ids; a subject set on the event is found with a query.
pub async fn query_by_subject_agrees_with_read_stream(store: Arc<dyn EventStore>) {
    let s = sid("order-77");
    store
        .append(
            &s,
            ExpectedVersion::Any,
            (0..5).map(|n| ev("t", n)).collect(),
        )
        .await
        .unwrap();
    let by_stream: Vec<RecordedEvent> = store
        .read_stream(ReadStream::forward(&s))
        .try_collect()
        .await
        .unwrap();
    let by_subject = query(&*store, EventQuery::new().subject("order-77")).await;
    assert_eq!(ids(&by_stream), ids(&by_subject));
}
