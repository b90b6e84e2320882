//! Crash safety: a child process appends and reports every acknowledged append on
//! stdout; the parent SIGKILLs it mid-stream, reopens the file, and checks that every
//! acknowledged append is there and that no append is partially visible.
//!
//! The child is this test binary itself, re-executed (`annals_testing::child`)
//! with `CRASH_CHILD_ENV` set and filtered to run only `crash_child`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    path::Path,
    time::Duration,
};

use annals_testing::child::Child;

use annals_sqlite::{
    futures::TryStreamExt, EventStore, ExpectedVersion, NewEvent, ReadAll, SqliteEventStore,
    StreamId,
};

const CRASH_CHILD_ENV: &str = "ANNALS_SQLITE_CRASH_CHILD_DB";
const CRASH_FIRST_BATCH_ENV: &str = "ANNALS_SQLITE_CRASH_FIRST_BATCH";
const CRASH_TASKS_ENV: &str = "ANNALS_SQLITE_CRASH_TASKS";
const ROUNDS: u64 = 20;
/// Concurrent appenders in the grouped rounds (their appends share transactions).
const GROUPED_TASKS: u64 = 8;
/// How long the child may take to print its next acknowledgement on a busy machine.
const ACK_DEADLINE: Duration = Duration::from_secs(120);

/// Batch `b` has this many events (1..=9), so batch sizes vary.
fn batch_size(batch: u64) -> u64 {
    1 + (batch * 7) % 9
}

fn env_u64(key: &str) -> u64 {
    std::env::var(key).unwrap().parse().unwrap()
}

/// The child: `CRASH_TASKS_ENV` tasks append batches at once until killed (with
/// more than one, the writer commits them in groups), each printing
/// `ack <batch>` after its append is acknowledged. Does nothing when run as an
/// ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(path) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let (first, tasks) = (env_u64(CRASH_FIRST_BATCH_ENV), env_u64(CRASH_TASKS_ENV));
    let store = SqliteEventStore::open(&path).await.unwrap();
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut running = Vec::new();
    for task in 0..tasks {
        let (store, stdout) = (store.clone(), stdout.clone());
        running.push(tokio::spawn(async move {
            for k in 0.. {
                let batch = first + k * tasks + task;
                let stream = StreamId::new(format!("crash-{}", batch % 5)).unwrap();
                let size = batch_size(batch);
                let events = (0..size)
                    .map(|i| {
                        NewEvent::json(
                            "Crashed",
                            &serde_json::json!({ "batch": batch, "size": size, "i": i, "pad": "x".repeat(200) }),
                        )
                        .unwrap()
                    })
                    .collect();
                store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .unwrap();
                let mut out = stdout.lock().unwrap();
                writeln!(out, "ack {batch}").unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for task in running {
        task.await.unwrap();
    }
}

/// The batch number of an `ack <batch>` line. The test harness may print its own
/// text (`test crash_child ... `) in front of the first one.
fn parse_ack(line: &str) -> Option<u64> {
    let (_, batch) = line.rsplit_once("ack ")?;
    Some(batch.trim().parse().unwrap())
}

/// Batch number → events of it found in the store, checking every batch is whole.
async fn stored_batches(path: &Path) -> BTreeMap<u64, u64> {
    let store = SqliteEventStore::open(path).await.unwrap();
    let events: Vec<_> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    let mut batches: BTreeMap<u64, u64> = BTreeMap::new();
    let mut sizes: HashMap<u64, u64> = HashMap::new();
    for event in &events {
        let body: serde_json::Value = event.json().unwrap();
        let batch = body["batch"].as_u64().unwrap();
        sizes.insert(batch, body["size"].as_u64().unwrap());
        *batches.entry(batch).or_default() += 1;
    }
    for (batch, count) in &batches {
        assert_eq!(
            *count, sizes[batch],
            "batch {batch} is partially visible: {count} of {} events",
            sizes[batch]
        );
    }
    store.close().await;
    batches
}

#[test]
fn acknowledged_appends_survive_sigkill_and_batches_are_atomic() {
    sigkill_rounds(1);
}

/// The same with `GROUPED_TASKS` concurrent appenders, whose appends the writer
/// commits in groups: every acknowledged append survives, none is half-stored.
#[test]
fn acknowledged_grouped_appends_survive_sigkill_and_batches_are_atomic() {
    sigkill_rounds(GROUPED_TASKS);
}

/// `ROUNDS` rounds of: run the child with `tasks` appenders, SIGKILL it, check
/// the file. Up to `tasks` unacknowledged appends can be running when it dies.
fn sigkill_rounds(tasks: u64) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut acknowledged: Vec<u64> = Vec::new();

    for round in 0..ROUNDS {
        let first_batch = round * 1_000_000;
        let mut child = Child::spawn(
            "crash_child",
            &[
                (CRASH_CHILD_ENV, path.as_os_str()),
                (CRASH_FIRST_BATCH_ENV, first_batch.to_string().as_ref()),
                (CRASH_TASKS_ENV, tasks.to_string().as_ref()),
            ],
        );
        // Let a varying number of appends through, then kill at a varying moment.
        let acks_before_kill = 5 + (round * 13) % 60;
        let mut acked_this_round = 0;
        while acked_this_round < acks_before_kill {
            if let Some(batch) = parse_ack(&child.next_line(ACK_DEADLINE)) {
                acknowledged.push(batch);
                acked_this_round += 1;
            }
        }
        std::thread::sleep(Duration::from_micros((round * 397) % 3000));
        // Acks printed before the kill are acknowledged appends too.
        for line in child.kill_and_collect() {
            if let Some(batch) = parse_ack(&line) {
                acknowledged.push(batch);
            }
        }

        let stored = runtime.block_on(stored_batches(&path));
        for batch in &acknowledged {
            assert!(
                stored.contains_key(batch),
                "round {round}: acknowledged batch {batch} is missing after the crash"
            );
        }
        // Per round, at most the in-flight (unacknowledged) appends may also have
        // committed before the kill.
        let extra: Vec<u64> = stored
            .keys()
            .filter(|b| !acknowledged.contains(b))
            .copied()
            .collect();
        assert!(
            extra.len() as u64 <= (round + 1) * tasks,
            "round {round}: unacknowledged batches stored: {extra:?}"
        );
    }
}
