//! The deterministic order, as a property: random appends, forks, merges and
//! reconciles across three replicas; the state in memory always equals a cold
//! rebuild (reopen), and replicas with the same files compute the same order.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use annals_fs::{AppendRequest, Choice, EventStore, ExpectedVersion, FsError, FsEventStore};
use common::{ev, sid, sync_files};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append {
        replica: usize,
        stream: u8,
        other: Option<u8>,
        events: usize,
    },
    Sync {
        from: usize,
        to: usize,
    },
    Reconcile {
        replica: usize,
        choice: u8,
    },
    Reopen {
        replica: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3_usize, 0..4_u8, proptest::option::of(0..4_u8), 1..3_usize)
            .prop_map(|(replica, stream, other, events)| Op::Append { replica, stream, other, events }),
        3 => (0..3_usize, 0..3_usize).prop_map(|(from, to)| Op::Sync { from, to }),
        2 => (0..3_usize, 0..3_u8).prop_map(|(replica, choice)| Op::Reconcile { replica, choice }),
        1 => (0..3_usize).prop_map(|replica| Op::Reopen { replica }),
    ]
}

async fn reopen(store: FsEventStore) -> FsEventStore {
    let root = store.root().to_path_buf();
    let before = store.debug_order();
    let forks_before = store.forks().await.unwrap();
    drop(store);
    let store = FsEventStore::open(&root).await.unwrap();
    assert_eq!(
        before,
        store.debug_order(),
        "in-memory order differs from a cold rebuild"
    );
    assert_eq!(forks_before, store.forks().await.unwrap());
    store
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("r{i}"))).collect();
    let mut stores = Vec::new();
    for root in &roots {
        stores.push(Some(FsEventStore::open(root).await.unwrap()));
    }
    let mut n = 0;
    for op in ops {
        match op {
            Op::Append {
                replica,
                stream,
                other,
                events,
            } => {
                let store = stores[replica].as_ref().unwrap();
                let s = sid(&format!("s{stream}"));
                let mut written = vec![s.clone()];
                let batch: Vec<_> = (0..events)
                    .map(|_| {
                        n += 1;
                        ev(&format!("E{n}"))
                    })
                    .collect();
                let mut request = AppendRequest::new().append(&s, ExpectedVersion::Any, batch);
                if let Some(o) = other.filter(|o| *o != stream) {
                    n += 1;
                    let o = sid(&format!("s{o}"));
                    request = request.append(&o, ExpectedVersion::Any, vec![ev(&format!("E{n}"))]);
                    written.push(o);
                }
                // With `Any` there is no conflict: an append fails exactly when it
                // writes a forked stream, and then with Forked (that is the rule).
                let forked = store
                    .forks()
                    .await
                    .unwrap()
                    .iter()
                    .any(|f| f.streams.iter().any(|s| written.contains(s)));
                match store.commit(request).await {
                    Ok(_) => assert!(!forked, "an append to a forked stream succeeded"),
                    Err(e) => assert!(
                        forked && FsError::is_forked_error(&e),
                        "unexpected append error (forked: {forked}): {e}"
                    ),
                }
            }
            Op::Sync { from, to } => {
                if from != to {
                    sync_files(&roots[from], &roots[to]);
                    stores[to].as_ref().unwrap().refresh().await.unwrap();
                }
            }
            Op::Reconcile { replica, choice } => {
                let store = stores[replica].as_ref().unwrap();
                let forks = store.forks().await.unwrap();
                for fork in &forks {
                    assert!(fork.branches.len() >= 2, "a fork with one branch: {fork:?}");
                }
                if let Some(fork) = forks.first() {
                    let count = fork.branches.len();
                    let choice = match choice {
                        0 => Choice::Keep(count - 1),
                        1 => Choice::KeepInOrder((0..count).rev().collect()),
                        _ => Choice::Replace(vec![(fork.streams[0].clone(), vec![ev("R")])]),
                    };
                    store.reconcile(&fork.id, choice).await.unwrap();
                }
            }
            Op::Reopen { replica } => {
                let store = stores[replica].take().unwrap();
                stores[replica] = Some(reopen(store).await);
            }
        }
    }
    for slot in &mut stores {
        let store = slot.take().unwrap();
        *slot = Some(reopen(store).await);
    }
    // Same files, same order, everywhere.
    for from in 0..3 {
        for to in 0..3 {
            if from != to {
                sync_files(&roots[from], &roots[to]);
            }
        }
    }
    let mut orders = Vec::new();
    for store in stores.iter().flatten() {
        store.refresh().await.unwrap();
        orders.push((store.debug_order(), store.forks().await.unwrap()));
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[1], orders[2]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn memory_order_equals_cold_rebuild_and_replicas_agree(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}
