//! Aggregate load of a 10,000-event stream, with and without a snapshot, on the
//! memory and SQLite backends.
//!
//! `cargo bench -p annals-benches --bench aggregate` (add `-- --quick` for a short
//! run). Groups, each measured in aggregate loads per second:
//!
//! * `aggregate/load/{memory,sqlite}/full_replay` — no snapshot: read and decode
//!   all 10,000 events (JSON) and apply them.
//! * `aggregate/load/{memory,sqlite}/snapshot` — a snapshot at version 9,950 plus
//!   a tail of 50 events: what `SnapshotPolicy::every(100)` gives on average.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use annals_core::{
    Aggregate, DomainEvent, EventStore, ExpectedVersion, Repository, SnapshotPolicy,
};
use annals_memory::MemoryEventStore;
use annals_sqlite::SqliteEventStore;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};

const EVENTS: u64 = 10_000;
const SNAPSHOT_AT: u64 = 9_950;

#[derive(Clone, Debug, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { amount: u64, reference: String },
    Withdrawn { amount: u64, reference: String },
}

impl DomainEvent for AccountEvent {}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    deposits: u64,
    withdrawals: u64,
    last_reference: String,
}

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Command = ();
    type Error = Never;
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount, reference } => {
                self.balance += i64::try_from(*amount).unwrap_or(i64::MAX);
                self.deposits += 1;
                self.last_reference.clone_from(reference);
            }
            AccountEvent::Withdrawn { amount, reference } => {
                self.balance -= i64::try_from(*amount).unwrap_or(i64::MAX);
                self.withdrawals += 1;
                self.last_reference.clone_from(reference);
            }
        }
    }

    fn handle(&self, (): &()) -> Result<Vec<AccountEvent>, Never> {
        Ok(vec![])
    }
}

fn event(i: u64) -> AccountEvent {
    let reference = format!("payment-{i:08}-ref");
    if i.is_multiple_of(3) {
        AccountEvent::Withdrawn {
            amount: 700 + i % 50,
            reference,
        }
    } else {
        AccountEvent::Deposited {
            amount: 1000 + i % 90,
            reference,
        }
    }
}

/// Writes two aggregates of `EVENTS` events each: `full` (no snapshot) and `snap`
/// (snapshot at `SNAPSHOT_AT`).
async fn fill(store: Arc<dyn EventStore>) -> Repository<Arc<dyn EventStore>> {
    let repo = Repository::new(store).with_snapshot_policy(SnapshotPolicy::Never);
    for id in ["full", "snap"] {
        let stream = Account::stream_id(id).unwrap();
        let mut written = 0;
        while written < EVENTS {
            let end = if id == "snap" && written < SNAPSHOT_AT {
                (written + 1000).min(SNAPSHOT_AT)
            } else {
                (written + 1000).min(EVENTS)
            };
            let batch = (written..end)
                .map(|i| event(i).to_new_event().unwrap())
                .collect();
            repo.store()
                .append(&stream, ExpectedVersion::Any, batch)
                .await
                .unwrap();
            written = end;
            if id == "snap" && written == SNAPSHOT_AT {
                repo.snapshot::<Account>(id).await.unwrap();
            }
        }
    }
    let full = repo.load::<Account>("full").await.unwrap();
    let snap = repo.load::<Account>("snap").await.unwrap();
    assert_eq!((full.replayed, full.snapshot_version), (EVENTS, None));
    assert_eq!(snap.replayed, EVENTS - SNAPSHOT_AT);
    assert_eq!(full.state.balance, snap.state.balance);
    repo
}

fn load(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteEventStore::open(dir.path().join("aggregate.db")))
        .unwrap();
    let backends: [(&str, Arc<dyn EventStore>); 2] = [
        ("memory", Arc::new(MemoryEventStore::new())),
        ("sqlite", Arc::new(sqlite)),
    ];
    let mut group = c.benchmark_group("aggregate/load");
    group.throughput(Throughput::Elements(1));
    // 10 samples keep the full run near a minute; the ratio is stable.
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(10);
    for (backend, store) in backends {
        let repo = rt.block_on(fill(store));
        for (name, id) in [("full_replay", "full"), ("snapshot", "snap")] {
            group.bench_function(format!("{backend}/{name}"), |b| {
                b.to_async(&rt)
                    .iter(|| async { repo.load::<Account>(id).await.unwrap() });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
