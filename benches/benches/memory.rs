//! In-memory backend: append and replay throughput (events/s).
//!
//! `cargo bench -p annals-benches --bench memory` (add `-- --quick` for a short run).
//! There is no raw engine under this backend, so the ratio base is a plain
//! `Vec::push`/iteration of the same events behind the same `RwLock`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use annals_benches::{
    append_group, events, replay_all, replay_stream, runtime, single_event_appends, transfer_group,
};
use annals_memory::{EventStore, ExpectedVersion, MemoryEventStore, StreamId, Version};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

fn append(c: &mut Criterion) {
    let rt = runtime();
    append_group(
        c,
        &rt,
        "memory",
        &MemoryEventStore::new(),
        &[1, 10, 100, 1000],
    );

    // Single-event appends from 1 and 16 concurrent tasks, each to its own stream.
    let mut group = c.benchmark_group("memory/append_single");
    group.measurement_time(Duration::from_secs(3));
    const PER_TASK: usize = 200;
    for tasks in [1usize, 16] {
        group.throughput(Throughput::Elements((tasks * PER_TASK) as u64));
        group.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            // A fresh store per iteration, so every task starts a new stream at version 0.
            b.to_async(&rt).iter_batched(
                || Arc::new(MemoryEventStore::new()),
                |store| single_event_appends(store, tasks, PER_TASK, 0),
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    const TOTAL: usize = 100_000;
    let rt = runtime();
    let store = MemoryEventStore::new();
    let stream = StreamId::new("replay").unwrap();
    rt.block_on(async {
        for chunk in 0..TOTAL / 1000 {
            store
                .append(
                    &stream,
                    ExpectedVersion::Exact(Version::new((chunk * 1000) as u64)),
                    events(1000),
                )
                .await
                .unwrap();
        }
    });
    let mut group = c.benchmark_group("memory/replay");
    group.throughput(Throughput::Elements(TOTAL as u64));
    group.sample_size(10);
    group.bench_function("read_stream/100000", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(replay_stream(&store, &stream).await, TOTAL as u64);
        });
    });
    group.bench_function("read_all/100000", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(replay_all(&store).await, TOTAL as u64);
        });
    });
    group.finish();
}

/// A two-stream transfer (two parts, one event each) against a one-event append.
fn transfer(c: &mut Criterion) {
    let rt = runtime();
    transfer_group(c, &rt, "memory", &MemoryEventStore::new());
}

criterion_group!(benches, append, replay, transfer);
criterion_main!(benches);
