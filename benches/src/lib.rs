//! Workloads shared by the benchmark groups in `benches/benches/`, so every backend
//! is measured on exactly the same events and the same concurrency pattern.
// Benchmarks abort on any error: a failed append means the figure is meaningless.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![deny(missing_docs)]

use std::sync::Arc;

use std::time::{Duration, Instant};

use annals_core::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, ReadAll, ReadStream, StreamId,
    Version,
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

/// The `{prefix}/append` group: batches of each of `sizes` events appended to one
/// stream of `store` (`Any` expected version), in events/s.
pub fn append_group<S>(
    c: &mut criterion::Criterion,
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    store: &S,
    sizes: &[usize],
) where
    S: EventStore + ?Sized,
{
    let stream = StreamId::new("bench").unwrap();
    let mut group = bench_group(c, &format!("{prefix}/append"), 10, 3);
    for &size in sizes {
        group.throughput(criterion::Throughput::Elements(size as u64));
        group.bench_with_input(
            criterion::BenchmarkId::from_parameter(size),
            &size,
            |b, &size| {
                b.to_async(rt).iter_batched(
                    || events(size),
                    |batch| {
                        let stream = &stream;
                        async move {
                            store
                                .append(stream, ExpectedVersion::Any, batch)
                                .await
                                .unwrap()
                        }
                    },
                    criterion::BatchSize::SmallInput,
                );
            },
        );
    }
    group.finish();
}

/// `tasks` concurrent tasks, each appending `per_task` single-event appends with
/// `Exact` versions to its own new stream `single-{first_stream + t}`. Returns
/// every append's latency.
pub async fn single_event_appends<S>(
    store: Arc<S>,
    tasks: usize,
    per_task: usize,
    first_stream: u64,
) -> Vec<Duration>
where
    S: EventStore + ?Sized + 'static,
{
    spawn_each(tasks, |t| {
        let store = Arc::clone(&store);
        async move { one_stream_appends(&*store, first_stream + t as u64, per_task).await }
    })
    .await
}

/// Runs `task(t)` for `t` in `0..tasks`, each on its own Tokio task (as request
/// handlers are), and concatenates what they return (per-append latencies),
/// in task order.
pub async fn spawn_each<F, Fut, T>(tasks: usize, mut task: F) -> Vec<T>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Vec<T>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..tasks).map(|t| tokio::spawn(task(t))).collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all
}

/// `stream` with `events_in_stream` events (appended 1,000 at a time) among 10,000
/// others in 10 streams, like a real log: what the `load_stream` groups fold.
pub async fn fill_load_stream<S>(store: &S, stream: &StreamId, events_in_stream: u64)
where
    S: EventStore + ?Sized,
{
    for chunk in 0..events_in_stream / 1000 {
        let expected = ExpectedVersion::Exact(Version::new(chunk * 1000));
        store.append(stream, expected, events(1000)).await.unwrap();
    }
    for other in 0..10 {
        let s = StreamId::new(format!("other-{other}")).unwrap();
        store
            .append(&s, ExpectedVersion::NoStream, events(1000))
            .await
            .unwrap();
    }
}

/// `count` transfers, one after another: each is one request with two parts — a
/// debit on `account-{tag}-a` and a credit on `account-{tag}-b`, one event each —
/// with `Exact` expected versions, as a repository command across two aggregates
/// writes them. `tag` keeps iterations on fresh streams.
pub async fn two_stream_transfers<S>(store: &S, tag: u64, count: usize)
where
    S: EventStore + ?Sized,
{
    let debit = StreamId::new(format!("account-{tag}-a")).unwrap();
    let credit = StreamId::new(format!("account-{tag}-b")).unwrap();
    for (i, mut pair) in events(2 * count)
        .chunks(2)
        .map(<[NewEvent]>::to_vec)
        .enumerate()
    {
        let second = pair.pop().unwrap();
        let first = pair.pop().unwrap();
        let expected = ExpectedVersion::Exact(Version::new(i as u64));
        let request = AppendRequest::new()
            .append(&debit, expected, vec![first])
            .append(&credit, expected, vec![second]);
        store.commit(request).await.unwrap();
    }
}

/// The baseline for [`two_stream_transfers`]: `count` single-stream, one-event
/// appends, one after another, to `single-{tag}`.
/// Returns every append's latency.
pub async fn one_stream_appends<S>(store: &S, tag: u64, count: usize) -> Vec<Duration>
where
    S: EventStore + ?Sized,
{
    let stream = StreamId::new(format!("single-{tag}")).unwrap();
    let mut latencies = Vec::with_capacity(count);
    for (i, event) in events(count).into_iter().enumerate() {
        let start = Instant::now();
        store
            .append(
                &stream,
                ExpectedVersion::Exact(Version::new(i as u64)),
                vec![event],
            )
            .await
            .unwrap();
        latencies.push(start.elapsed());
    }
    latencies
}

/// The `{prefix}/transfer` group: [`one_stream_appends`] (`single_append`) against
/// [`two_stream_transfers`] (`two_streams`), `PER_ITER` requests per iteration on
/// fresh streams; throughput is in requests (a transfer writes two events).
pub fn transfer_group<S>(
    c: &mut criterion::Criterion,
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    store: &S,
) where
    S: EventStore + ?Sized,
{
    const PER_ITER: usize = 50;
    let tag = std::sync::atomic::AtomicU64::new(0);
    let next = || tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut group = bench_group(c, &format!("{prefix}/transfer"), 10, 5);
    group.throughput(criterion::Throughput::Elements(PER_ITER as u64));
    group.bench_function("single_append", |b| {
        b.to_async(rt)
            .iter(|| one_stream_appends(store, next(), PER_ITER));
    });
    group.bench_function("two_streams", |b| {
        b.to_async(rt)
            .iter(|| two_stream_transfers(store, next(), PER_ITER));
    });
    group.finish();
}

/// Replays `stream` through the store's `read_stream` (every event decoded) and
/// returns how many events came back. Panics on a read error.
pub async fn replay_stream<S>(store: &S, stream: &StreamId) -> u64
where
    S: EventStore + ?Sized,
{
    count(store.read_stream(ReadStream::forward(stream))).await
}

/// Replays the whole log through the store's `read_all` (every event decoded) and
/// returns how many events came back. Panics on a read error.
pub async fn replay_all<S>(store: &S) -> u64
where
    S: EventStore + ?Sized,
{
    count(store.read_all(ReadAll::forward())).await
}

async fn count(events: annals_core::EventStream<'_>) -> u64 {
    use futures::TryStreamExt;
    events
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap()
}
