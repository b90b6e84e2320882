//! PostgreSQL leader leases: the shared contract across two stores, and two real
//! processes running one projection — the second waits, and takes over when the
//! first is SIGKILLed, resuming after the first one's checkpoint.
//!
//! The processes are this test binary itself, re-executed with `CHILD_SCHEMA_ENV`
//! set and filtered to run only `projection_child`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_sign_loss
)]

mod common;

use std::{
    collections::BTreeSet,
    io::Write,
    time::{Duration, Instant},
};

use annals_testing::child::Child;

use annals_postgres::{
    consume::{CheckpointStore, Projection},
    EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore, PostgresOptions, StreamId,
};

const CHILD_SCHEMA_ENV: &str = "ANNALS_PG_LEASE_CHILD_SCHEMA";
const CHILD_URL_ENV: &str = "ANNALS_PG_LEASE_CHILD_URL";
const NAME: &str = "leased-projection";
/// Generous: a busy 2-core CI machine is slow, never this slow.
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn postgres_leases_keep_the_contract() {
    let (store, schema) = common::store().await;
    let other = PostgresEventStore::connect_with(
        schema.url(),
        PostgresOptions::new().schema(schema.name()),
    )
    .await
    .unwrap();
    annals_testing::leases::lease_provider_contract(&store.leases(), &other.leases()).await;
}

/// A child: runs the projection as leader, printing `started` before asking for
/// the lease and `handled <position>` for each event. Does nothing when run as an
/// ordinary test.
#[tokio::test]
async fn projection_child() {
    let (Ok(schema), Ok(url)) = (
        std::env::var(CHILD_SCHEMA_ENV),
        std::env::var(CHILD_URL_ENV),
    ) else {
        return;
    };
    let store = PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&schema))
        .await
        .unwrap();
    println!("started");
    Projection::new(NAME)
        .idle_poll(Duration::from_millis(10))
        .run_as_leader(&store.leases(), &store, &store.checkpoints(), |event| {
            let mut out = std::io::stdout().lock();
            writeln!(out, "handled {}", event.position).unwrap();
            out.flush().unwrap();
            async { Ok::<(), std::io::Error>(()) }
        })
        .await
        .unwrap();
}

/// A child running the projection, and the positions it said it handled.
struct Instance {
    child: Child,
    handled: Vec<u64>,
}

impl Instance {
    fn spawn(schema: &annals_testing::postgres::TestSchema) -> Self {
        Instance {
            child: Child::spawn(
                "projection_child",
                &[
                    (CHILD_SCHEMA_ENV, schema.name()),
                    (CHILD_URL_ENV, schema.url()),
                ],
            ),
            handled: Vec::new(),
        }
    }

    /// Takes in what the child printed so far; true if it printed `started`.
    fn drain(&mut self) -> bool {
        let mut started = false;
        for line in self.child.drain() {
            // libtest may print `test projection_child ... ` before the first line.
            started |= line.ends_with("started");
            if let Some(p) = line.split("handled ").nth(1) {
                self.handled.push(p.trim().parse().unwrap());
            }
        }
        started
    }
}

/// Polls `done` every 10 ms until it holds, failing after the deadline.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn append(store: &PostgresEventStore, n: usize) -> Vec<u64> {
    let mut positions = Vec::new();
    for _ in 0..n {
        let stream = StreamId::new("leased").unwrap();
        let done = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new("E", b"{}".to_vec())],
            )
            .await
            .unwrap();
        positions.push(done.positions.last().unwrap().get());
    }
    positions
}

#[tokio::test]
async fn a_second_process_takes_over_when_the_leader_is_killed() {
    let (store, schema) = common::store().await;
    let first = append(&store, 5).await;

    let mut a = Instance::spawn(&schema);
    wait_until("the first instance handled the first events", || {
        a.drain();
        a.handled.len() >= first.len()
    })
    .await;
    let mut b = Instance::spawn(&schema);
    let mut b_started = false;
    wait_until("the second instance started", || {
        b_started |= b.drain();
        b_started
    })
    .await;

    // While the first leads, it alone handles new events.
    let second = append(&store, 5).await;
    wait_until("the leader handled the new events", || {
        a.drain();
        a.handled.len() >= first.len() + second.len()
    })
    .await;
    b.drain();
    assert!(
        b.handled.is_empty(),
        "the waiting instance handled {:?}",
        b.handled
    );
    assert_eq!(a.handled, [first.clone(), second.clone()].concat());

    // SIGKILL the leader: the second takes over from the saved checkpoint.
    a.child.kill();
    let killed = Instant::now();
    let third = append(&store, 5).await;
    wait_until("the second instance took over", || {
        b.drain();
        b.handled.contains(third.last().unwrap())
    })
    .await;
    let takeover = killed.elapsed();
    println!("takeover after SIGKILL: {takeover:?}");

    // The handler prints before the projection saves the checkpoint: wait for it.
    let last = Some(Position::new(*third.last().unwrap()));
    let start = Instant::now();
    while store.checkpoints().load(NAME).await.unwrap() != last {
        assert!(
            start.elapsed() < DEADLINE,
            "the new leader saves its checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // At-least-once across the takeover: the second instance handled every
    // event after the first one's last saved checkpoint (at most the one the
    // first was killed on again), in order, and nothing before it.
    let handled_by_a: BTreeSet<u64> = a.handled.iter().copied().collect();
    let replayed: Vec<u64> = b
        .handled
        .iter()
        .copied()
        .filter(|p| handled_by_a.contains(p))
        .collect();
    assert!(
        replayed.len() <= 1,
        "replayed more than the in-flight event: {replayed:?}"
    );
    let all: Vec<u64> = [first, second, third.clone()].concat();
    let start = all.iter().position(|p| *p == b.handled[0]).unwrap();
    assert_eq!(
        b.handled,
        all[start..],
        "the new leader resumes in order, each once"
    );
    assert!(start >= all.len() - third.len() - 1);
}
