//! Subscriptions on every backend: catch-up throughput beside `read_all` over the
//! same log (events/s), and append→delivery latency while writers run.
//!
//! `cargo bench -p annals-benches --bench subscriptions` (add `-- --quick` for a
//! short run). Latency percentiles (p50, p99 over every measured append) are
//! printed after each latency group, as `latency <backend>: p50 … p99 …`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use annals_benches::{bench_group, events, replay_all, runtime};
use annals_core::{
    consume::{Subscribe, SubscribeAll},
    EventStore, ExpectedVersion, NewEvent, StreamId,
};
use annals_memory::MemoryEventStore;
use annals_postgres::{PostgresEventStore, PostgresOptions};
use annals_sqlite::SqliteEventStore;
use annals_testing::postgres::{database_url, drop_schema, unique_schema_name};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::TryStreamExt;

/// Events in the log the catch-up groups read.
const LOG: usize = 50_000;
/// Concurrent writers during the latency groups.
const WRITERS: usize = 4;

async fn fill(store: &dyn EventStore, n: usize) {
    let stream = StreamId::new("fill").unwrap();
    for _ in 0..n / 500 {
        store
            .append(&stream, ExpectedVersion::Any, events(500))
            .await
            .unwrap();
    }
}

/// Reads the whole log through a subscription (default settings: one streamed
/// read, paged by the backend).
async fn catch_up(store: &dyn EventStore, n: usize) -> usize {
    let mut events = store.subscribe_all(SubscribeAll::from_start());
    let mut seen = 0;
    while seen < n {
        events.try_next().await.unwrap().unwrap();
        seen += 1;
    }
    seen
}

fn catch_up_group(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &dyn EventStore,
) {
    let mut group = bench_group(c, &format!("{name}/catch_up"), 10, 5);
    group.throughput(Throughput::Elements(LOG as u64));
    group.bench_function("read_all", |b| {
        b.to_async(rt).iter(|| async { replay_all(store).await });
    });
    group.bench_function("subscription", |b| {
        b.to_async(rt).iter(|| async { catch_up(store, LOG).await });
    });
    group.finish();
}

/// Append→delivery latency of single-event appends to a probe stream, with a
/// caught-up subscription on the whole log and `WRITERS` tasks appending to
/// their own streams meanwhile. Each sample is measured from the start of the
/// append until the subscription hands the event out.
///
/// `watcher` holds the subscription. When it is another instance than `store`
/// (another pool: as far as it can tell, another process), it only hears of
/// the appends through the backend (PostgreSQL's `LISTEN/NOTIFY`); its idle
/// poll is then one second, so the figures are the notification path's.
fn latency_group(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    (store, watcher): (&Arc<dyn EventStore>, &Arc<dyn EventStore>),
) {
    let other_instance = !Arc::ptr_eq(store, watcher);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, stop) = (Arc::clone(store), Arc::clone(&stop));
            rt.spawn(async move {
                let stream = StreamId::new(format!("writer-{w}")).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    store
                        .append(&stream, ExpectedVersion::Any, events(1))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    let samples = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let probe = StreamId::new("probe").unwrap();
    let subscription = rt.block_on(async {
        let head = store
            .read_all(annals_core::ReadAll::backward().limit(1))
            .try_next()
            .await
            .unwrap()
            .map(|e| e.position);
        let mut request = SubscribeAll::resume(head);
        if other_instance {
            request = request.idle_poll(Duration::from_secs(1));
        }
        futures::lock::Mutex::new(watcher.subscribe_all(request))
    });
    let mut group = bench_group(c, &format!("{name}/latency"), 10, 5);
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_to_delivery", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (store, probe, samples) = (Arc::clone(store), probe.clone(), Arc::clone(&samples));
            let subscription = &subscription;
            async move {
                let mut subscription = subscription.lock().await;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let event = NewEvent::new("Probe", b"{}".to_vec());
                    let id = event.id;
                    let start = Instant::now();
                    store
                        .append(&probe, ExpectedVersion::Any, vec![event])
                        .await
                        .unwrap();
                    while subscription.try_next().await.unwrap().unwrap().id != id {}
                    let took = start.elapsed();
                    samples.lock().unwrap().push(took);
                    total += took;
                }
                total
            }
        });
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        rt.block_on(writer).unwrap();
    }
    let mut all = samples.lock().unwrap().clone();
    if all.is_empty() {
        return; // filtered out on the command line
    }
    all.sort();
    // The sample at quantile `q` (in per mille), nearest rank.
    let at = |per_mille: usize| all[(all.len() - 1) * per_mille / 1000];
    println!(
        "latency {name}: p50 {:?} p99 {:?} over {} appends ({WRITERS} writers running)",
        at(500),
        at(990),
        all.len()
    );
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    rt.block_on(fill(&*store, LOG));
    catch_up_group(c, &rt, "memory", &*store);
    latency_group(c, &rt, "memory", (&store, &store));
}

fn sqlite(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        rt.block_on(SqliteEventStore::open(dir.path().join("events.db")))
            .unwrap(),
    );
    rt.block_on(fill(&*store, LOG));
    catch_up_group(c, &rt, "sqlite", &*store);
    latency_group(c, &rt, "sqlite", (&store, &store));
}

fn postgres(c: &mut Criterion) {
    let rt = runtime();
    let url = rt.block_on(database_url());
    let schema = unique_schema_name().replacen("annals_test_", "annals_bench_", 1);
    let connect = || -> Arc<dyn EventStore> {
        Arc::new(
            rt.block_on(PostgresEventStore::connect_with(
                &url,
                PostgresOptions::new().schema(&schema).max_connections(8),
            ))
            .unwrap(),
        )
    };
    let store = connect();
    rt.block_on(fill(&*store, LOG));
    catch_up_group(c, &rt, "postgres", &*store);
    latency_group(c, &rt, "postgres", (&store, &store));
    // Appends by another instance reach the subscriber through LISTEN/NOTIFY.
    let watcher = connect();
    latency_group(c, &rt, "postgres_notify", (&store, &watcher));
    rt.block_on(drop_schema(&url, &schema));
}

criterion_group!(benches, memory, sqlite, postgres);
criterion_main!(benches);
