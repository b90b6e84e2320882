//! annals-fs: appends (one file per request, fsync'd), two-stream transfers and
//! replay, in events/s (transfers in requests/s).
//!
//! `cargo bench -p annals-benches --bench fs` (add `-- --quick` for a short run).
//! There is no engine under this backend to compare with: every append writes a
//! file to `tmp/`, fsyncs it, renames it into `events/` and fsyncs the folder, so
//! the figures follow the disk's fsync latency.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use annals_benches::{append_group, bench_group, events, replay_all, runtime, transfer_group};
use annals_core::{EventStore, ExpectedVersion, StreamId};
use annals_fs::FsEventStore;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Events in the log the replay group reads (100 per file).
const LOG: usize = 10_000;

fn append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(FsEventStore::open(dir.path())).unwrap();
    append_group(c, &rt, "fs", &store, &[1, 100]);
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(FsEventStore::open(dir.path())).unwrap();
    let stream = StreamId::new("replay").unwrap();
    rt.block_on(async {
        for _ in 0..LOG / 100 {
            store
                .append(&stream, ExpectedVersion::Any, events(100))
                .await
                .unwrap();
        }
    });
    let mut group = bench_group(c, "fs/replay", 10, 5);
    group.throughput(Throughput::Elements(LOG as u64));
    group.bench_function("read_all", |b| {
        b.to_async(&rt).iter(|| replay_all(&store));
    });
    group.finish();
}

/// A two-stream transfer (two parts, one event each) against a one-event append.
fn transfer(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(FsEventStore::open(dir.path())).unwrap();
    transfer_group(c, &rt, "fs", &store);
}

criterion_group!(benches, append, replay, transfer);
criterion_main!(benches);
