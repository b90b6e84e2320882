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

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::{channel, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

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

struct Instance {
    child: Child,
    lines: Receiver<String>,
}

impl Instance {
    fn spawn(path: &std::path::Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["lease_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB_ENV, path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Instance { child, lines }
    }

    /// Waits until the child prints a line ending in `word`.
    fn wait_for(&self, word: &str) {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.ends_with(word) => return,
                Ok(_) => {}
                Err(e) => panic!("waiting for `{word}`: {e:?}"),
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

    let mut first = Instance::spawn(&path);
    first.wait_for("leader");
    let second = Instance::spawn(&path);
    second.wait_for("waiting");
    // The second keeps waiting while the first holds the lease: it has tried
    // several times (every 250 ms) within this window and printed nothing.
    assert!(matches!(
        second.lines.recv_timeout(Duration::from_millis(1500)),
        Err(RecvTimeoutError::Timeout)
    ));
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let killed = Instant::now();
    second.wait_for("leader");
    println!("takeover after SIGKILL: {:?}", killed.elapsed());
}
