//! Edge values, laziness, backward reads, exclusive cursors and glob filters: rules
//! core decides once, which every backend must show the same way.

use std::sync::Arc;

use annals_core::{
    EventStore, ExpectedVersion, Position, ReadAll, ReadFilter, ReadStream, RecordedEvent, Version,
};
use futures::TryStreamExt;

use super::support::{all_events, batch, ev, sid};

async fn collect(events: annals_core::EventStream<'_>) -> Vec<RecordedEvent> {
    events.try_collect().await.expect("read succeeds")
}

/// A future that is created and dropped without being polled writes nothing; so
/// does a read stream dropped unpolled.
pub async fn unpolled_futures_do_nothing(store: Arc<dyn EventStore>) {
    let s = sid("lazy");
    drop(store.append(&s, ExpectedVersion::Any, batch(1, 3)));
    drop(store.commit(annals_core::AppendRequest::new().append(
        &s,
        ExpectedVersion::Any,
        batch(4, 1),
    )));
    drop(store.save_snapshot(&s, annals_core::Snapshot::new(Version::new(1), vec![1])));
    drop(store.read_all(ReadAll::forward()));
    assert!(
        all_events(&*store).await.is_empty(),
        "nothing was polled, nothing written"
    );
    assert!(store.load_snapshot(&s).await.unwrap().is_none());
    store
        .append(&s, ExpectedVersion::NoStream, batch(1, 1))
        .await
        .unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::new(1));
}

/// `u64::MAX` and other values above `Version::MAX`: an exact expectation above it
/// is a conflict (no stream can be there), reads after it are empty, backward reads
/// before it are everything — the same on every backend.
pub async fn values_above_i64_max_follow_one_rule(store: Arc<dyn EventStore>) {
    let s = sid("edge");
    store
        .append(&s, ExpectedVersion::NoStream, batch(1, 2))
        .await
        .unwrap();
    for v in [u64::MAX, Version::MAX.get() + 1, Version::MAX.get()] {
        let err = store
            .append(&s, ExpectedVersion::Exact(Version::new(v)), batch(3, 1))
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "Exact({v}) is a conflict, got {err:?}");
        assert_eq!(err.conflicts()[0].actual, Version::new(2));
    }
    for v in [u64::MAX, Version::MAX.get()] {
        let after =
            collect(store.read_stream(ReadStream::forward(&s).after(Version::new(v)))).await;
        assert!(after.is_empty());
        let before =
            collect(store.read_stream(ReadStream::backward(&s).before(Version::new(v)))).await;
        assert_eq!(before.len(), 2);
    }
    for p in [u64::MAX, Position::MAX.get()] {
        assert!(collect(store.read_all(ReadAll::after(Position::new(p))))
            .await
            .is_empty());
        assert_eq!(
            collect(store.read_all(ReadAll::before(Position::new(p))))
                .await
                .len(),
            2
        );
    }
    let huge_limit = collect(store.read_all(ReadAll::forward().limit(u64::MAX))).await;
    assert_eq!(huge_limit.len(), 2);
    assert!(collect(store.read_all(ReadAll::forward().limit(0)))
        .await
        .is_empty());
    assert!(collect(store.read_stream(ReadStream::forward(&s).limit(0)))
        .await
        .is_empty());
    assert_eq!(all_events(&*store).await.len(), 2, "nothing was written");
}

/// Resuming with `after(last position)` returns each event exactly once.
pub async fn read_all_after_resumes_without_gaps_or_repeats(store: Arc<dyn EventStore>) {
    for i in 0..5 {
        store
            .append(
                &sid(&format!("resume-{i}")),
                ExpectedVersion::Any,
                batch(i * 10, 7),
            )
            .await
            .unwrap();
    }
    let everything = all_events(&*store).await;
    let mut seen = Vec::new();
    let mut cursor = ReadAll::forward().limit(4);
    loop {
        let page = collect(store.read_all(cursor)).await;
        let Some(last) = page.last() else { break };
        cursor = ReadAll::after(last.position).limit(4);
        seen.extend(page);
    }
    assert_eq!(
        seen.iter().map(|e| e.id).collect::<Vec<_>>(),
        everything.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let s = sid("resume-2");
    let first_three = collect(store.read_stream(ReadStream::forward(&s).limit(3))).await;
    let rest =
        collect(store.read_stream(ReadStream::forward(&s).after(first_three[2].version))).await;
    assert_eq!(rest.first().map(|e| e.version), Some(Version::new(4)));
    assert_eq!(first_three.len() + rest.len(), 7);
}

/// Backward reads: the newest events first, of a stream and of the log, with
/// limits, `before` cursors paging back to the start, and filters.
pub async fn backward_reads_return_newest_first(store: Arc<dyn EventStore>) {
    let s = sid("back");
    store
        .append(&s, ExpectedVersion::NoStream, batch(1, 25))
        .await
        .unwrap();
    store
        .append(
            &sid("other"),
            ExpectedVersion::NoStream,
            vec![ev("Special", 1)],
        )
        .await
        .unwrap();
    store
        .append(&s, ExpectedVersion::Exact(Version::new(25)), batch(26, 5))
        .await
        .unwrap();

    let last_ten = collect(store.read_stream(ReadStream::backward(&s).limit(10))).await;
    let versions: Vec<u64> = last_ten.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, (21..=30).rev().collect::<Vec<_>>());

    // Page backward through the whole stream, 7 at a time.
    let mut seen = Vec::new();
    let mut read = ReadStream::backward(&s).limit(7);
    loop {
        let page = collect(store.read_stream(read)).await;
        let Some(last) = page.last() else { break };
        read = ReadStream::backward(&s).before(last.version).limit(7);
        seen.extend(page.iter().map(|e| e.version.get()));
    }
    assert_eq!(seen, (1..=30).rev().collect::<Vec<_>>());

    let log: Vec<u64> = collect(store.read_all(ReadAll::backward()))
        .await
        .iter()
        .map(|e| e.position.get())
        .collect();
    let mut forward: Vec<u64> = stream_positions(&all_events(&*store).await);
    forward.reverse();
    assert_eq!(log, forward);

    let latest_special = collect(
        store.read_all(
            ReadAll::backward()
                .filter(ReadFilter::new().event_type("Special"))
                .limit(1),
        ),
    )
    .await;
    assert_eq!(latest_special.len(), 1);
    assert_eq!(latest_special[0].stream_id.as_str(), "other");

    let newest = collect(store.read_all(ReadAll::backward().limit(1))).await;
    let before_newest = collect(store.read_all(ReadAll::before(newest[0].position).limit(1))).await;
    assert!(before_newest[0].position < newest[0].position);
    assert_eq!(before_newest[0].version, Version::new(29));
    assert!(
        collect(store.read_stream(ReadStream::backward(&sid("none"))))
            .await
            .is_empty()
    );
}

fn stream_positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.get()).collect()
}

/// Glob filters (`*`, `?`, `[...]`, `[^...]`) select exactly what
/// [`ReadFilter::matches`] selects, are applied before the limit, and combine
/// with type filters and backward reads.
pub async fn read_all_glob_matches_reference_semantics(store: Arc<dyn EventStore>) {
    let ids = [
        "order-1",
        "order-12",
        "order-x",
        "orders-1",
        "Order-1",
        "order-",
        "a*b",
        "a.b",
        "a[b",
        "ab",
        "päckchen-9",
        "x_y%z",
    ];
    // Many non-matching events first, so a filter applied after a limit would miss.
    store
        .append(&sid("noise"), ExpectedVersion::NoStream, batch(0, 150))
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        let kind = if i % 2 == 0 { "Even" } else { "Odd" };
        store
            .append(&sid(id), ExpectedVersion::Any, vec![ev(kind, i as u64)])
            .await
            .unwrap();
    }
    let everything = all_events(&*store).await;
    let patterns = [
        "order-*",
        "order-?",
        "order-[0-9]*",
        "order-[^0-9]",
        "*-1",
        "a[*]b",
        "a?b",
        "[Oo]rder-1",
        "p?ckchen-*",
        "x_y%z",
        "*",
        "a[b",
        "[]]",
        "zzz*",
    ];
    for pattern in patterns {
        for filter in [
            ReadFilter::new().stream_glob(pattern),
            ReadFilter::new().stream_glob(pattern).event_type("Even"),
            ReadFilter::new()
                .stream_glob(pattern)
                .stream_prefix("order"),
        ] {
            let expected: Vec<_> = everything
                .iter()
                .filter(|e| filter.matches(e))
                .map(|e| e.id)
                .collect();
            let got: Vec<_> = collect(store.read_all(ReadAll::forward().filter(filter.clone())))
                .await
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(got, expected, "glob {pattern:?} with {filter:?}");
            let limited: Vec<_> =
                collect(store.read_all(ReadAll::forward().filter(filter.clone()).limit(2)))
                    .await
                    .iter()
                    .map(|e| e.id)
                    .collect();
            assert_eq!(
                limited,
                expected.iter().copied().take(2).collect::<Vec<_>>(),
                "glob {pattern:?} limit 2"
            );
            let backward: Vec<_> =
                collect(store.read_all(ReadAll::backward().filter(filter.clone()).limit(2)))
                    .await
                    .iter()
                    .map(|e| e.id)
                    .collect();
            assert_eq!(
                backward,
                expected.iter().rev().copied().take(2).collect::<Vec<_>>(),
                "glob {pattern:?} backward"
            );
        }
    }
}

/// The store reports its limits, and a request over them is invalid input with
/// nothing written.
pub async fn capabilities_are_reported_and_enforced(store: Arc<dyn EventStore>) {
    let limits = store.capabilities();
    assert!(limits.max_events_per_append >= 1_000);
    assert!(limits.max_payload_bytes >= 1024 * 1024);
    assert!(limits.max_name_bytes >= 255);
    let s = sid("limits");
    let too_big = annals_core::NewEvent::new("Big", vec![0u8; limits.max_payload_bytes + 1]);
    let err = store
        .append(&s, ExpectedVersion::Any, vec![too_big])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    assert!(all_events(&*store).await.is_empty());
}

/// A read that ended stays ended: polling it again (as a batching loop does)
/// returns `None` on every backend, never panics, never restarts.
pub async fn finished_reads_stay_finished(store: Arc<dyn EventStore>) {
    use futures::StreamExt;
    let stream = sid("fused");
    store
        .append(&stream, ExpectedVersion::NoStream, batch(0, 3))
        .await
        .unwrap();
    let reads = [
        store.read_all(ReadAll::forward()),
        store.read_all(ReadAll::forward().limit(2)),
        store.read_all(ReadAll::backward()),
        store.read_stream(ReadStream::forward(&stream)),
        store.read_stream(ReadStream::backward(&stream).limit(1)),
        store.read_stream(ReadStream::forward(&sid("fused-missing"))),
    ];
    for mut read in reads {
        let mut n = 0;
        while let Some(event) = read.next().await {
            event.unwrap();
            n += 1;
        }
        assert!(n <= 3);
        for _ in 0..3 {
            assert!(read.next().await.is_none(), "an ended read stays ended");
        }
    }
}
