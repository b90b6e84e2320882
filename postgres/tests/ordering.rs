//! Gap-safe global order under concurrent writers.
//!
//! 8 writer tasks append batches of 1..=50 events while a reader tails `read_all`
//! from its last seen position. Afterwards the reader's sequence must equal the
//! whole log in position order: nothing missing (a late-committing append below a
//! position the reader had already passed would be missing), nothing duplicated.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use annals_postgres::{
    EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore, ReadAll, StreamId,
};
use futures::TryStreamExt;

const ROUNDS: usize = 20;
const WRITERS: usize = 8;
const APPENDS_PER_WRITER: usize = 12;

/// A tiny deterministic PRNG (xorshift64*), so the test needs no extra crate.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

async fn writer(store: PostgresEventStore, round: usize, w: usize) -> usize {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((round as u64) << 8 | w as u64));
    let mut written = 0;
    for i in 0..APPENDS_PER_WRITER {
        // Half the writers share streams (exercising the version race), half own one.
        let stream = StreamId::new(format!(
            "r{round}-s{}",
            if w.is_multiple_of(2) { w } else { w % 3 }
        ))
        .unwrap();
        let size = 1 + usize::try_from(rng.below(50)).unwrap();
        let batch = (0..size)
            .map(|n| NewEvent::new("Tick", format!("{{\"w\":{w},\"i\":{i},\"n\":{n}}}")))
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, batch)
            .await
            .expect("append");
        written += size;
    }
    written
}

/// Tails the log after `start`, always continuing after the last seen position.
async fn tail(store: PostgresEventStore, start: Position, done: Arc<AtomicBool>) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut last = start;
    loop {
        // Read the flag *before* reading, so a final pass happens after the
        // writers finished.
        let finished = done.load(Ordering::SeqCst);
        let page: Vec<_> = store
            .read_all(ReadAll::after(last).limit(200))
            .try_collect()
            .await
            .expect("read_all");
        for event in &page {
            seen.push(event.position.get());
            last = event.position;
        }
        if finished && page.is_empty() {
            return seen;
        }
        if page.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}

/// The naive reader (`WHERE position >= next`, no safety filter), for comparison:
/// returns how many positions it would have skipped for good.
async fn naive_tail(store: PostgresEventStore, start: i64, done: Arc<AtomicBool>) -> Vec<i64> {
    let sql = format!(
        "SELECT position FROM \"{}\".events WHERE position >= $1 ORDER BY position LIMIT 200",
        store.schema()
    );
    let mut seen = Vec::new();
    let mut next = start;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let page: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(next)
            .fetch_all(store.pool())
            .await
            .expect("naive read");
        if let Some(last) = page.last() {
            next = last + 1;
        }
        seen.extend_from_slice(&page);
        if finished && page.is_empty() {
            return seen;
        }
        if page.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_let_a_tailing_reader_miss_an_event() {
    let (store, schema) = common::store().await;
    let mut naive_missed_total = 0;
    // Exclusive: the log after `start`.
    let mut start = Position::START;
    for round in 0..ROUNDS {
        let done = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(tail(store.clone(), start, Arc::clone(&done)));
        let naive = tokio::spawn(naive_tail(
            store.clone(),
            i64::try_from(start.get()).unwrap() + 1,
            Arc::clone(&done),
        ));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(store.clone(), round, w)))
            .collect();
        let mut written = 0;
        for w in writers {
            written += w.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let seen = reader.await.unwrap();
        let naive_seen = naive.await.unwrap();

        let log: Vec<u64> = store
            .read_all(ReadAll::after(start))
            .map_ok(|e| e.position.get())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            log.len(),
            written,
            "round {round}: the log holds every appended event"
        );
        assert!(
            log.windows(2).all(|w| w[0] < w[1]),
            "round {round}: log in position order"
        );
        assert_eq!(
            seen.len(),
            log.len(),
            "round {round}: the tailing reader saw {} events, the log has {}",
            seen.len(),
            log.len()
        );
        assert_eq!(seen, log, "round {round}: reader sequence == full log");

        naive_missed_total += log.len() - naive_seen.len();
        start = Position::new(*log.last().unwrap());
    }
    // Not asserted (it depends on timing), but shows the race the test guards against.
    eprintln!(
        "ordering: {ROUNDS} rounds passed; a naive `position >= last` reader would have missed {naive_missed_total} events"
    );
    drop(store);
    schema.teardown().await;
}
