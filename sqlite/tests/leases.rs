//! SQLite leader leases: the shared contract across two stores on one file and
//! within one in-memory store, and two real processes — the second waits, and
//! takes over when the first is SIGKILLed.
//!
//! The processes are this test binary itself, re-executed with `CHILD_DB_ENV` set
//! and filtered to run only `lease_child`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_sign_loss
)]

use std::time::{Duration, Instant};

use annals_testing::child::Child;

use annals_sqlite::{consume::LeaseProvider, SqliteEventStore};

const CHILD_DB_ENV: &str = "ANNALS_SQLITE_LEASE_CHILD_DB";
/// Generous: a busy 2-core CI machine is slow, never this slow.
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn file_leases_keep_the_contract_across_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let a = SqliteEventStore::open(&path).await.unwrap();
    let b = SqliteEventStore::open(&path).await.unwrap();
    annals_testing::leases::lease_provider_contract(&a.leases(), &b.leases()).await;
}

#[tokio::test]
async fn in_memory_leases_are_per_store() {
    let a = SqliteEventStore::in_memory().await.unwrap();
    annals_testing::leases::lease_provider_contract(&a.leases(), &a.clone().leases()).await;
    // Another in-memory store is another database: its leases are its own.
    let b = SqliteEventStore::in_memory().await.unwrap();
    let held = a.leases().acquire("orders").await.unwrap();
    let other = tokio::time::timeout(DEADLINE, b.leases().acquire("orders"))
        .await
        .unwrap()
        .unwrap();
    assert!(held.is_held() && other.is_held());
}

/// A child: takes the lease, prints `leader`, and holds it until killed. Does
/// nothing when run as an ordinary test.
#[tokio::test]
async fn lease_child() {
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let store = SqliteEventStore::open(&path).await.unwrap();
    println!("waiting");
    let _lease = store.leases().acquire("projection").await.unwrap();
    println!("leader");
    std::future::pending::<()>().await;
}

#[test]
fn a_second_process_takes_over_when_the_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    // Create the database first, so both children only open it.
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(SqliteEventStore::open(&path))
        .unwrap();

    let spawn = || Child::spawn("lease_child", &[(CHILD_DB_ENV, &path)]);
    let mut first = spawn();
    first.wait_for("leader", DEADLINE);
    let second = spawn();
    second.wait_for("waiting", DEADLINE);
    // The second keeps waiting while the first holds the lease: it has tried
    // several times (every 250 ms) within this window and printed nothing.
    assert!(second.silent_for(Duration::from_millis(1500)));
    first.kill(); // SIGKILL
    let killed = Instant::now();
    second.wait_for("leader", DEADLINE);
    println!("takeover after SIGKILL: {:?}", killed.elapsed());
}
