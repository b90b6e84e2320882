//! Gap-safe reads on a hot standby: 16 writers append through the primary while
//! tailing readers follow the log through a store whose reads go to a standby
//! ([`PostgresEventStore::with_read_replica_url`]).
//!
//! Needs the cluster of `scripts/ha-cluster.sh up`, `ANNALS_HA_URL` (HAProxy's
//! primary port) and `ANNALS_HA_REPLICA_URL` (HAProxy's replica port, round
//! robin over the two standbys). `scripts/ha-test.sh` runs it:
//!
//! ```text
//! scripts/ha-cluster.sh up
//! eval "$(scripts/ha-cluster.sh urls | sed 's/^/export /')"
//! cargo test -p annals-postgres --test ha_replica -- --include-ignored --nocapture
//! scripts/ha-cluster.sh down
//! ```
//!
//! For `ANNALS_HA_REPLICA_SECONDS` (default 20) seconds:
//!
//! * 16 writers append batches of 1–5 events through the primary, half of them
//!   racing on shared streams;
//! * one "late committer" (`ANNALS_HA_LATE=0` turns it off) takes a transaction
//!   id on the primary, waits 0.3–1.5 s, then inserts one event and commits: a
//!   commit below positions other writers committed in the meantime, which a
//!   naive `position > last` reader would skip;
//! * 3 readers tail `read_all(ReadAll::after(last))` on the standby store, and
//!   one follows a `subscribe_all` subscription on it.
//!
//! Then, against the final log read from the primary: every acknowledged event is
//! in it once, and each reader saw exactly the final log, each event once, in
//! increasing position order, with no gap. The lag from an append's
//! acknowledgement to a reader returning it is printed (p50 / p95 / max).
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use annals_postgres::{
    consume::{Subscribe, SubscribeAll},
    sqlx::{self, PgPool},
    EventId, EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore, PostgresOptions,
    ReadAll, StreamId,
};
use futures::TryStreamExt;

const WRITERS: usize = 16;
const TAILERS: usize = 3;
/// How long a reader may take to reach the final log's end once it is known.
const CATCH_UP: Duration = Duration::from_secs(120);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the HA cluster. Run scripts/ha-test.sh, or \
             scripts/ha-cluster.sh up and export the variables of scripts/ha-cluster.sh urls"
        )
    })
}

/// xorshift64*: deterministic per task, no extra crate.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

type Acks = Vec<(EventId, Instant)>;

async fn writer(store: PostgresEventStore, w: usize, stop: Arc<AtomicBool>) -> Acks {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
    let mut acks = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let stream = if w.is_multiple_of(2) {
            format!("own-{w}")
        } else {
            format!("shared-{}", w % 3)
        };
        let stream = StreamId::new(stream).unwrap();
        let size = 1 + rng.below(5);
        let batch: Vec<NewEvent> = (0..size)
            .map(|i| {
                n += 1;
                NewEvent::new("Tick", format!("{{\"w\":{w},\"n\":{n},\"i\":{i}}}"))
            })
            .collect();
        let ids: Vec<EventId> = batch.iter().map(|e| e.id).collect();
        let started = Instant::now();
        loop {
            match store
                .append(&stream, ExpectedVersion::Any, batch.clone())
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(60) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("writer {w}: append failed: {e}"),
            }
        }
        let now = Instant::now();
        acks.extend(ids.into_iter().map(|id| (id, now)));
    }
    acks
}

/// Takes a transaction id, holds it for 0.3–1.5 s, then commits one event with
/// a position from that id: below what other writers committed meanwhile.
async fn late_committer(pool: PgPool, schema: String, stop: Arc<AtomicBool>) -> Acks {
    let mut rng = Rng(0x5151_7777);
    let mut acks = Vec::new();
    let insert = format!(
        "INSERT INTO \"{schema}\".events (position, event_id, stream_id, version, event_type, \
                                        content_type, payload, metadata) \
         VALUES (\"{schema}\".position_base() + 1, $1, $2, 1, 'Late', 'application/json', \
                 '\\x7b7d'::bytea, '{{}}'::jsonb)"
    );
    let mut k = 0;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let id = EventId::new();
        let mut tx = pool.begin().await.expect("late committer: BEGIN");
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *tx)
            .await
            .expect("late committer: taking an xid");
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(*id.as_uuid())
            .bind(format!("late-{k}"))
            .execute(&mut *tx)
            .await
            .expect("late committer: INSERT");
        tx.commit().await.expect("late committer: COMMIT");
        acks.push((id, Instant::now()));
    }
    acks
}

struct Seen {
    events: Vec<(u64, EventId, Instant)>,
    retried_errors: usize,
}

/// Tails the log with `read_all(after(last))` until the final end is reached.
async fn tail(store: PostgresEventStore, end: Arc<AtomicU64>, r: usize) -> Seen {
    let mut seen = Seen {
        events: Vec::new(),
        retried_errors: 0,
    };
    let mut last = Position::START;
    let mut end_known_at: Option<Instant> = None;
    loop {
        let target = end.load(Ordering::SeqCst);
        if target != 0 {
            if last.get() >= target {
                return seen;
            }
            let since = *end_known_at.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < CATCH_UP,
                "reader {r} did not reach the end of the log ({target}) within {CATCH_UP:?}; at {}",
                last.get()
            );
        }
        let mut events = store.read_all(ReadAll::after(last));
        let mut got = 0;
        loop {
            match events.try_next().await {
                Ok(Some(event)) => {
                    got += 1;
                    last = event.position;
                    seen.events
                        .push((event.position.get(), event.id, Instant::now()));
                }
                Ok(None) => break,
                Err(e) if e.is_transient() => {
                    // A standby can hold a read back (ReadBlocked) or drop the
                    // connection; the events returned so far are final.
                    seen.retried_errors += 1;
                    if seen.retried_errors <= 3 {
                        eprintln!("reader {r}: retrying after: {e}");
                    }
                    break;
                }
                Err(e) => panic!("reader {r}: read_all failed: {e}"),
            }
        }
        if got == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Follows a subscription until the final end is reached.
async fn subscribe(store: PostgresEventStore, end: Arc<AtomicU64>) -> Seen {
    let mut seen = Seen {
        events: Vec::new(),
        retried_errors: 0,
    };
    let mut subscription = store.subscribe_all(SubscribeAll::from_start());
    let mut end_known_at: Option<Instant> = None;
    loop {
        let target = end.load(Ordering::SeqCst);
        if target != 0 {
            if seen.events.last().is_some_and(|(p, _, _)| *p >= target) {
                return seen;
            }
            let since = *end_known_at.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < CATCH_UP,
                "the subscription did not reach the end of the log ({target}) within {CATCH_UP:?}"
            );
        }
        match tokio::time::timeout(Duration::from_millis(500), subscription.try_next()).await {
            Ok(Ok(Some(event))) => {
                seen.events
                    .push((event.position.get(), event.id, Instant::now()));
            }
            Ok(Ok(None)) => panic!("the subscription ended"),
            Ok(Err(e)) => panic!("the subscription failed: {e}"),
            Err(_) => {} // nothing new within 500 ms: check the end again
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/ha-cluster.sh up; run by scripts/ha-test.sh"]
async fn readers_on_a_hot_standby_see_every_event_once_in_order() {
    let url = required("ANNALS_HA_URL");
    let replica_url = required("ANNALS_HA_REPLICA_URL");
    let seconds: u64 = env_or("ANNALS_HA_REPLICA_SECONDS", 20);
    let late = env_or("ANNALS_HA_LATE", 1) == 1;
    let schema = format!(
        "ha_replica_{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let options = PostgresOptions::new()
        .schema(schema.as_str())
        .max_connections(24)
        .read_settle_timeout(Duration::from_secs(5));

    // Opening a store on a standby URL with the default options migrates, which
    // a standby refuses; without migration it only checks the schema.
    let primary = PostgresEventStore::connect_with(&url, options.clone())
        .await
        .expect("connecting to the primary (HAProxy 5440)");
    let refused = PostgresEventStore::connect_with(&replica_url, options.clone()).await;
    let refused = refused.expect_err("migrating on a standby must fail");
    eprintln!("connect_with(replica URL, migrate on): {refused}");
    PostgresEventStore::connect_with(&replica_url, options.clone().migrate(false))
        .await
        .expect("a store on the standby without migration (the schema replicated)");
    let reading = primary
        .clone()
        .with_read_replica_url(&replica_url)
        .await
        .expect("the store reading from the standbys (HAProxy 5439)");
    assert!(reading.reads_from_replica());
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(reading.read_pool())
        .await
        .unwrap();
    assert!(in_recovery, "the read pool must reach a hot standby");

    let stop = Arc::new(AtomicBool::new(false));
    let end = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..TAILERS {
        readers.push(tokio::spawn(tail(reading.clone(), Arc::clone(&end), r)));
    }
    readers.push(tokio::spawn(subscribe(reading.clone(), Arc::clone(&end))));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(primary.clone(), w, Arc::clone(&stop))))
        .collect();
    let late_task = late.then(|| {
        tokio::spawn(late_committer(
            primary.pool().clone(),
            schema.clone(),
            Arc::clone(&stop),
        ))
    });

    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked: HashMap<EventId, Instant> = HashMap::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let mut late_count = 0;
    if let Some(task) = late_task {
        let late_acks = task.await.unwrap();
        late_count = late_acks.len();
        acked.extend(late_acks);
    }

    // The final log, from the primary.
    let log: Vec<(u64, EventId)> = primary
        .read_all(ReadAll::after(Position::START))
        .map_ok(|e| (e.position.get(), e.id))
        .try_collect()
        .await
        .expect("reading the final log on the primary");
    assert_eq!(
        log.len(),
        acked.len(),
        "the log holds exactly the acknowledged events"
    );
    for (_, id) in &log {
        assert!(
            acked.contains_key(id),
            "{id} is in the log but was not acknowledged"
        );
    }
    let last = log.last().expect("events were written").0;
    end.store(last, Ordering::SeqCst);

    let mut report = Vec::new();
    for (r, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.unwrap();
        let name = if r < TAILERS {
            format!("read_all tail {r}")
        } else {
            "subscription".to_owned()
        };
        let got: Vec<(u64, EventId)> = seen.events.iter().map(|(p, id, _)| (*p, *id)).collect();
        if got != log {
            let missing = log.iter().filter(|e| !got.contains(e)).count();
            let first_diff = got.iter().zip(&log).position(|(a, b)| a != b);
            panic!(
                "{name} on the standby did not see exactly the log: {} seen, {} in the log, \
                 {missing} missing, first difference at index {first_diff:?}",
                got.len(),
                log.len()
            );
        }
        let mut lags: Vec<f64> = seen
            .events
            .iter()
            .filter_map(|(_, id, at)| {
                let acked_at = acked.get(id)?;
                Some(at.saturating_duration_since(*acked_at).as_secs_f64() * 1000.0)
            })
            .collect();
        lags.sort_by(f64::total_cmp);
        report.push(format!(
            "{name}: {} events once, in order; lag p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; \
             {} retried read errors",
            got.len(),
            percentile(&lags, 0.5),
            percentile(&lags, 0.95),
            percentile(&lags, 1.0),
            seen.retried_errors
        ));
    }
    eprintln!(
        "ha_replica: {seconds} s, {WRITERS} writers + {} late commits on the primary, {} events; \
         readers on the standbys:\n  {}",
        late_count,
        log.len(),
        report.join("\n  ")
    );
}
