//! Appends across several streams on PostgreSQL: racing requests over the same
//! streams in opposite orders never deadlock, read-only conditions block the
//! writers of their streams until the request commits (no write skew), and
//! backward reads of the log stop below the safe position.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use annals_postgres::{
    AppendRequest, Error, EventStore, ExpectedVersion, NewEvent, PostgresOptions, ReadAll,
    ReadFilter, ReadStream, StreamId, Version,
};
use futures::TryStreamExt;
use sqlx::{Connection, PgConnection};
use tokio::sync::Barrier;

fn sid(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

/// 8 tasks × 50 requests, each appending one event to both of the same two
/// streams — half of the tasks naming them in the opposite order — with
/// `ExpectedVersion::Any`: every request succeeds (no deadlock error, no give-up),
/// both streams hold all 400 events at contiguous versions, and each request's
/// two events got consecutive positions in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_order_two_stream_appends_never_deadlock() {
    const TASKS: usize = 8;
    const REQUESTS: usize = 50;
    let (store, schema) = common::store().await;
    let (a, b) = (sid("pair-a"), sid("pair-b"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, a, b) = (store.clone(), a.clone(), b.clone());
            tokio::spawn(async move {
                let (first, second) = if t % 2 == 0 { (a, b) } else { (b, a) };
                let mut results = Vec::new();
                for i in 0..REQUESTS {
                    let request = AppendRequest::new()
                        .append(
                            &first,
                            ExpectedVersion::Any,
                            vec![NewEvent::new("Paired", format!("{t}.{i}.1"))],
                        )
                        .append(
                            &second,
                            ExpectedVersion::Any,
                            vec![NewEvent::new("Paired", format!("{t}.{i}.2"))],
                        );
                    let committed = store
                        .commit(request)
                        .await
                        .unwrap_or_else(|e| panic!("task {t} request {i}: {e}"));
                    results.push(committed);
                }
                results
            })
        })
        .collect();
    let mut committed = Vec::new();
    for task in tasks {
        committed.extend(task.await.unwrap());
    }
    let took = started.elapsed();
    assert_eq!(committed.len(), TASKS * REQUESTS);
    for result in &committed {
        let positions: Vec<u64> = result.positions().map(|p| p.get()).collect();
        assert_eq!(positions.len(), 2);
        assert_eq!(positions[1], positions[0] + 1, "{result:?}");
    }
    for stream in [&a, &b] {
        let events: Vec<_> = store
            .read_stream(ReadStream::forward(stream))
            .try_collect()
            .await
            .unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
        assert_eq!(
            versions,
            (1..=(TASKS * REQUESTS) as u64).collect::<Vec<_>>(),
            "{stream}: every event, contiguous"
        );
    }
    let log: Vec<_> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(log.len(), 2 * TASKS * REQUESTS, "no guard or stray row");
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    // Each request's two events are adjacent in the log, in request order.
    for pair in log.chunks(2) {
        let (x, y) = (&pair[0], &pair[1]);
        let (px, py) = (
            std::str::from_utf8(&x.payload).unwrap(),
            std::str::from_utf8(&y.payload).unwrap(),
        );
        assert_eq!(
            px.rsplit_once('.').unwrap().0,
            py.rsplit_once('.').unwrap().0
        );
        assert!(px.ends_with(".1") && py.ends_with(".2"), "{px} {py}");
    }
    eprintln!(
        "multi_stream: {TASKS} tasks x {REQUESTS} two-stream requests in opposite orders: \
         all {} committed in {took:?}, no deadlock",
        committed.len()
    );
    drop(store);
    schema.teardown().await;
}

/// Write skew is impossible: request A requires `c` unchanged and writes `d`,
/// request B requires `d` unchanged and writes `c`. Serially only one of them can
/// commit (whichever goes second sees a moved stream), so in every one of many
/// races exactly one succeeds and the other gets a `Conflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crossed_conditions_never_both_commit() {
    const ROUNDS: usize = 200;
    let (store, schema) = common::store().await;
    let (c, d) = (sid("skew-c"), sid("skew-d"));
    let barrier = Arc::new(Barrier::new(2));
    let mut wins = [0_usize; 2];
    for round in 0..ROUNDS {
        let vc = store.stream_version(&c).await.unwrap();
        let vd = store.stream_version(&d).await.unwrap();
        let racer = |read: StreamId, seen: Version, write: StreamId, written: Version| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                let request = AppendRequest::new()
                    .require(&read, ExpectedVersion::Exact(seen))
                    .append(
                        &write,
                        ExpectedVersion::Exact(written),
                        vec![NewEvent::new("Skew", format!("{round}"))],
                    );
                barrier.wait().await;
                store.commit(request).await
            })
        };
        let ra = racer(c.clone(), vc, d.clone(), vd);
        let rb = racer(d.clone(), vd, c.clone(), vc);
        let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
        match (&ra, &rb) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => {
                assert!(e.is_conflict(), "round {round}: {e}");
            }
            _ => panic!("round {round}: exactly one request may commit: {ra:?} / {rb:?}"),
        }
        wins[usize::from(ra.is_err())] += 1;
    }
    let total = store.stream_version(&c).await.unwrap().get()
        + store.stream_version(&d).await.unwrap().get();
    assert_eq!(total, ROUNDS as u64, "one event per round");
    eprintln!(
        "multi_stream: {ROUNDS} crossed-condition races, exactly one commit each \
         (A won {}, B won {})",
        wins[0], wins[1]
    );
    drop(store);
    schema.teardown().await;
}

/// A condition blocks a plain one-stream append to its stream until the request
/// ends: request A requires `c` at `v` and writes `x`; append B takes `c` from
/// `v` (the fast path). If both succeed, A must have committed first — so B,
/// right after it returns, must already see A's event. Without the guard row, B
/// could commit between A's check and A's commit and then not see A (a stale
/// view A committed on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_condition_blocks_writers_of_its_stream_until_commit() {
    const ROUNDS: usize = 200;
    let (store, schema) = common::store().await;
    let (c, x) = (sid("held-c"), sid("held-x"));
    let barrier = Arc::new(Barrier::new(2));
    let (mut both, mut only_b) = (0, 0);
    for round in 0..ROUNDS {
        let vc = store.stream_version(&c).await.unwrap();
        let vx = store.stream_version(&x).await.unwrap();
        let a = {
            let (store, barrier, c, x) =
                (store.clone(), Arc::clone(&barrier), c.clone(), x.clone());
            tokio::spawn(async move {
                let request = AppendRequest::new()
                    .require(&c, ExpectedVersion::Exact(vc))
                    .append(&x, ExpectedVersion::Any, vec![NewEvent::new("A", "{}")]);
                barrier.wait().await;
                store.commit(request).await
            })
        };
        let b = {
            let (store, barrier, c, x) =
                (store.clone(), Arc::clone(&barrier), c.clone(), x.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let result = store
                    .append(
                        &c,
                        ExpectedVersion::Exact(vc),
                        vec![NewEvent::new("B", "{}")],
                    )
                    .await;
                let x_after = store.stream_version(&x).await.unwrap();
                (result, x_after)
            })
        };
        let (ra, (rb, x_after_b)) = (a.await.unwrap(), b.await.unwrap());
        rb.as_ref()
            .unwrap_or_else(|e| panic!("round {round}: B never conflicts: {e}"));
        match &ra {
            Ok(_) => {
                both += 1;
                assert_eq!(
                    x_after_b,
                    vx.next(),
                    "round {round}: A committed after B changed its condition's stream"
                );
            }
            Err(Error::Conflict { stream, .. }) => {
                assert_eq!(stream, &c);
                only_b += 1;
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    eprintln!(
        "multi_stream: {ROUNDS} condition-vs-append races: both committed (A first) {both}, \
         A refused (B first) {only_b}; never a commit on a stale view"
    );
    drop(store);
    schema.teardown().await;
}

/// Backward reads of the log return only events below the safe position: an
/// event committed above a transaction that is still running is held back (as on
/// forward reads) until that transaction ends — and a read that would have to
/// leave it out fails (after the settle wait) instead of ending short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backward_log_reads_stop_below_the_safe_position() {
    let (store, schema) =
        common::store_with(PostgresOptions::new().read_settle_timeout(Duration::from_millis(200)))
            .await;
    let s = sid("safe-1");
    let early = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Early", "{}")],
        )
        .await
        .unwrap();
    // An open transaction with an id, older than the next append's.
    let mut admin = PgConnection::connect(schema.url()).await.unwrap();
    let mut open = admin.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *open)
        .await
        .unwrap();
    let late = store
        .append(&s, ExpectedVersion::Any, vec![NewEvent::new("Late", "{}")])
        .await
        .unwrap();
    let types = |events: Vec<annals_postgres::RecordedEvent>| {
        events.into_iter().map(|e| e.event_type).collect::<Vec<_>>()
    };
    let err = store
        .read_all(ReadAll::backward())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    let blocked = annals_postgres::ReadBlocked::find(&err).expect("a ReadBlocked error");
    assert_eq!(blocked.position, late.positions[0].get(), "{err}");
    // Below the held-back event, backward reads are complete and final.
    let below = types(
        store
            .read_all(ReadAll::before(late.positions[0]))
            .try_collect()
            .await
            .unwrap(),
    );
    assert_eq!(below, vec!["Early"], "the unsafe event is held back");
    let mut forward = store.read_all(ReadAll::forward());
    assert_eq!(
        forward.try_next().await.unwrap().map(|e| e.position),
        Some(early.positions[0])
    );
    assert!(
        forward.try_next().await.is_err(),
        "never a silent short read"
    );
    drop(forward);
    // The stream read is not affected (versions are final once committed).
    let stream = types(
        store
            .read_stream(ReadStream::backward(&s))
            .try_collect()
            .await
            .unwrap(),
    );
    assert_eq!(stream, vec!["Late", "Early"]);
    open.rollback().await.unwrap();
    let backward = types(
        store
            .read_all(ReadAll::backward())
            .try_collect()
            .await
            .unwrap(),
    );
    assert_eq!(backward, vec!["Late", "Early"]);
    let globbed = types(
        store
            .read_all(
                ReadAll::backward()
                    .filter(ReadFilter::new().stream_glob("safe-[0-9]"))
                    .limit(1),
            )
            .try_collect()
            .await
            .unwrap(),
    );
    assert_eq!(globbed, vec!["Late"]);
    admin.close().await.unwrap();
    drop(store);
    schema.teardown().await;
}

/// The glob is applied in SQL before the limit, with SQLite's GLOB semantics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globs_select_streams_before_the_limit() {
    let (store, schema) = common::store().await;
    for name in [
        "order-eu-1",
        "order-us-1",
        "order-eu-22",
        "Order-eu-3",
        "order-eu-x",
        "a*b",
    ] {
        store
            .append(
                &sid(name),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("E", "{}")],
            )
            .await
            .unwrap();
    }
    let streams = |glob: &'static str, limit: u64| {
        let store = store.clone();
        async move {
            store
                .read_all(
                    ReadAll::forward()
                        .filter(ReadFilter::new().stream_glob(glob))
                        .limit(limit),
                )
                .map_ok(|e| e.stream_id.as_str().to_owned())
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        streams("order-eu-*", 2).await,
        vec!["order-eu-1", "order-eu-22"]
    );
    assert_eq!(streams("order-eu-[0-9]", 10).await, vec!["order-eu-1"]);
    assert_eq!(
        streams("order-eu-?", 10).await,
        vec!["order-eu-1", "order-eu-x"]
    );
    assert_eq!(streams("order-eu-[^0-9]*", 10).await, vec!["order-eu-x"]);
    assert_eq!(streams("a[*]b", 10).await, vec!["a*b"]);
    assert!(
        streams("order-[", 10).await.is_empty(),
        "an unclosed set matches nothing"
    );
    assert_eq!(streams("*", 1).await, vec!["order-eu-1"]);
    drop(store);
    schema.teardown().await;
}
