//! Workloads shared by the benchmark groups in `benches/benches/`, so every backend
//! is measured on exactly the same events and the same concurrency pattern.
// Benchmarks abort on any error: a failed append means the figure is meaningless.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![deny(missing_docs)]

use std::sync::Arc;

use std::time::Duration;

use annals_core::{
    EventStore, ExpectedVersion, Metadata, NewEvent, Position, ReadFilter, StreamId, Version,
};

/// The JSON payload of benchmark event `i` (~75 bytes, a realistic order).
pub fn payload(i: usize) -> String {
    format!(r#"{{"order":{i},"customer":"ada","lines":[{{"sku":"A-1","qty":2}}],"total":3000}}"#)
}

/// `n` benchmark events with one metadata field.
pub fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| {
            NewEvent::new("OrderPlaced.v1", payload(i))
                .with_metadata(Metadata::new().with_correlation_id("bench-request"))
        })
        .collect()
}

/// The runtime every group measures on: multi-threaded, two workers (the CI machine's cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A criterion group with `samples` samples, a 1 s warm-up and `secs` of measurement.
pub fn bench_group<'a>(
    c: &'a mut criterion::Criterion,
    name: &str,
    samples: usize,
    secs: u64,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs));
    group
}

/// `tasks` concurrent tasks, each appending `per_task` single-event appends with
/// `Exact` versions to its own new stream `single-{first_stream + t}`.
pub async fn single_event_appends<S>(
    store: Arc<S>,
    tasks: usize,
    per_task: usize,
    first_stream: u64,
) where
    S: EventStore + ?Sized + 'static,
{
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let stream = StreamId::new(format!("single-{}", first_stream + t as u64)).unwrap();
                for (i, event) in events(per_task).into_iter().enumerate() {
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Exact(Version::new(i as u64)),
                            vec![event],
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

/// Replays `stream` through the store's `read_stream` (every event decoded) and
/// returns how many events came back. Panics on a read error.
pub async fn replay_stream<S>(store: &S, stream: &StreamId) -> u64
where
    S: EventStore + ?Sized,
{
    count(store.read_stream(stream, Version::FIRST, None)).await
}

/// Replays the whole log through the store's `read_all` (every event decoded) and
/// returns how many events came back. Panics on a read error.
pub async fn replay_all<S>(store: &S) -> u64
where
    S: EventStore + ?Sized,
{
    count(store.read_all(Position::START, ReadFilter::new(), None)).await
}

async fn count(events: annals_core::EventStream<'_>) -> u64 {
    use futures::TryStreamExt;
    events
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap()
}
