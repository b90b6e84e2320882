//! The transactional outbox on PostgreSQL: `commit_in` appends inside the
//! caller's transaction (rows and events commit together or not at all, a
//! failed append leaves the transaction usable, re-sends are idempotent, a
//! SIGKILL before COMMIT leaves neither, a long transaction's events are not
//! skipped by tailing readers), and `transact` retries a conflicting
//! transaction within its policy.
//!
//! The killed process is this test binary itself, re-executed with
//! `CHILD_SCHEMA_ENV` set and filtered to run only `outbox_child`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod common;

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use annals_postgres::{
    consume::{Subscribe, SubscribeAll},
    futures::{FutureExt, StreamExt, TryStreamExt},
    sqlx::{self, postgres::PgListener, PgConnection},
    AppendRequest, Error, EventId, EventStore, ExpectedVersion, NewEvent, Position,
    PostgresEventStore, PostgresOptions, ReadAll, ReadBlocked, RecordedEvent, RetryPolicy,
    StreamId, Version,
};
use annals_testing::child::Child;

const CHILD_SCHEMA_ENV: &str = "ANNALS_PG_OUTBOX_CHILD_SCHEMA";
const CHILD_URL_ENV: &str = "ANNALS_PG_OUTBOX_CHILD_URL";
const CHILD_ORDER_ENV: &str = "ANNALS_PG_OUTBOX_CHILD_ORDER";
/// What the child prints once its row and events are written, before COMMIT.
const READY: &str = "annals-outbox-child-before-commit";
/// Generous bound for anything awaited.
const DEADLINE: Duration = Duration::from_secs(60);

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn event(event_type: &str) -> NewEvent {
    NewEvent::new(event_type, b"{}".to_vec())
}

/// The business table, in the store's schema.
async fn create_orders(store: &PostgresEventStore) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS \"{}\".orders (id text PRIMARY KEY, total bigint NOT NULL)",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
}

async fn insert_order(store: &PostgresEventStore, conn: &mut PgConnection, id: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{}\".orders (id, total) VALUES ($1, 30)",
        store.schema()
    )))
    .bind(id)
    .execute(conn)
    .await
    .unwrap();
}

async fn orders(store: &PostgresEventStore) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM \"{}\".orders ORDER BY id",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
}

async fn log(store: &PostgresEventStore) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap()
}

fn positions(events: &[RecordedEvent]) -> Vec<Position> {
    events.iter().map(|e| e.position).collect()
}

fn assert_increasing(events: &[RecordedEvent]) {
    let p = positions(events);
    assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
}

#[tokio::test]
async fn rows_and_events_commit_together() {
    let (store, _schema) = common::store().await;
    create_orders(&store).await;
    let order = stream("order-1");
    let stock = stream("stock-tea");
    let prices = stream("prices");
    let request = AppendRequest::new()
        .append(
            &order,
            ExpectedVersion::NoStream,
            vec![event("OrderPlaced"), event("OrderPriced")],
        )
        .append(&stock, ExpectedVersion::Any, vec![event("StockReserved")])
        .require(&prices, ExpectedVersion::NoStream);

    let mut tx = store.pool().begin().await.unwrap();
    insert_order(&store, &mut tx, "order-1").await;
    let committed = store.commit_in(&mut tx, request).await.unwrap();
    assert_eq!(committed.parts[0].version, Version::new(2));
    assert_eq!(committed.parts[1].version, Version::new(1));

    // Before COMMIT, other connections see neither.
    assert!(orders(&store).await.is_empty());
    assert_eq!(store.stream_version(&order).await.unwrap(), Version::ZERO);

    // A second append in the same transaction continues its positions.
    let more = store
        .append_in(
            &mut tx,
            &order,
            ExpectedVersion::Exact(Version::new(2)),
            vec![event("OrderPaid")],
        )
        .await
        .unwrap();
    assert_eq!(more.version, Version::new(3));
    tx.commit().await.unwrap();

    assert_eq!(orders(&store).await, ["order-1"]);
    let events = log(&store).await;
    assert_eq!(events.len(), 4);
    assert_increasing(&events);
    let mut expected: Vec<Position> = committed.positions().collect();
    expected.extend(more.positions.iter().copied());
    expected.sort_unstable();
    assert_eq!(positions(&events), expected);
    // The condition's guard row is gone.
    assert_eq!(store.stream_version(&prices).await.unwrap(), Version::ZERO);
    assert_eq!(store.stream_version(&order).await.unwrap(), Version::new(3));
}

#[tokio::test]
async fn a_rollback_leaves_no_event_and_readers_keep_their_order() {
    let (store, _schema) = common::store().await;
    create_orders(&store).await;
    let first = store
        .append(&stream("before"), ExpectedVersion::Any, vec![event("A")])
        .await
        .unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    insert_order(&store, &mut tx, "order-x").await;
    store
        .append_in(
            &mut tx,
            &stream("order-x"),
            ExpectedVersion::NoStream,
            vec![event("OrderPlaced")],
        )
        .await
        .unwrap();
    // A concurrent ordinary append commits while the caller's transaction runs.
    let during = store
        .append(&stream("during"), ExpectedVersion::Any, vec![event("B")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    assert!(orders(&store).await.is_empty());
    assert_eq!(
        store.stream_version(&stream("order-x")).await.unwrap(),
        Version::ZERO
    );
    let events = log(&store).await;
    assert_eq!(
        positions(&events),
        [first.positions[0], during.positions[0]]
    );
    assert_increasing(&events);
    // The stream is free again.
    store
        .append(
            &stream("order-x"),
            ExpectedVersion::NoStream,
            vec![event("C")],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_append_leaves_the_callers_transaction_usable() {
    let (store, _schema) = common::store().await;
    create_orders(&store).await;
    let order = stream("order-1");
    store
        .append(
            &order,
            ExpectedVersion::NoStream,
            vec![event("OrderPlaced")],
        )
        .await
        .unwrap();
    let taken = EventId::new();
    store
        .append(
            &stream("other"),
            ExpectedVersion::Any,
            vec![NewEvent::new("X", b"1".to_vec()).with_id(taken)],
        )
        .await
        .unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    insert_order(&store, &mut tx, "a").await;
    let err = store
        .append_in(
            &mut tx,
            &order,
            ExpectedVersion::Exact(Version::new(5)),
            vec![event("OrderPaid")],
        )
        .await
        .unwrap_err();
    match err {
        Error::Conflict { actual, .. } => assert_eq!(actual, Version::new(1)),
        other => panic!("expected a conflict, got {other}"),
    }
    // An id reused for other content: invalid input, rolled back to the savepoint.
    let err = store
        .append_in(
            &mut tx,
            &order,
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new("Y", b"2".to_vec()).with_id(taken)],
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    // The transaction is still usable: more rows, and a good append.
    insert_order(&store, &mut tx, "b").await;
    let paid = store
        .append_in(
            &mut tx,
            &order,
            ExpectedVersion::Exact(Version::new(1)),
            vec![event("OrderPaid")],
        )
        .await
        .unwrap();
    assert_eq!(paid.version, Version::new(2));
    tx.commit().await.unwrap();

    assert_eq!(orders(&store).await, ["a", "b"]);
    let stored: Vec<_> = store
        .read_stream(annals_postgres::ReadStream::forward(&order))
        .try_collect()
        .await
        .unwrap();
    let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["OrderPlaced", "OrderPaid"]);
    assert_eq!(log(&store).await.len(), 3);
}

#[tokio::test]
async fn outside_a_transaction_it_is_invalid_input_and_writes_nothing() {
    let (store, _schema) = common::store().await;
    let mut conn = store.pool().acquire().await.unwrap();
    let err = store
        .append_in(
            &mut conn,
            &stream("s"),
            ExpectedVersion::Any,
            vec![event("E")],
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("transaction"), "{err}");
    drop(conn);
    assert!(log(&store).await.is_empty());
}

#[tokio::test]
async fn the_callers_search_path_does_not_matter_and_is_kept() {
    let (store, _schema) = common::store().await;
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL search_path TO pg_catalog")
        .execute(&mut *tx)
        .await
        .unwrap();
    store
        .append_in(
            &mut tx,
            &stream("s"),
            ExpectedVersion::NoStream,
            vec![event("E")],
        )
        .await
        .unwrap();
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(path, "pg_catalog");
    tx.commit().await.unwrap();
    assert_eq!(log(&store).await.len(), 1);
}

#[tokio::test]
async fn a_resent_request_returns_the_original_result() {
    let (store, _schema) = common::store().await;
    let order = stream("order-1");
    let request = AppendRequest::new().append(
        &order,
        ExpectedVersion::NoStream,
        vec![
            event("OrderPlaced").with_id(EventId::new()),
            event("OrderPriced").with_id(EventId::new()),
        ],
    );

    let mut tx = store.pool().begin().await.unwrap();
    let original = store.commit_in(&mut tx, request.clone()).await.unwrap();
    // Re-sent in the same transaction: the original result, nothing new.
    let again = store.commit_in(&mut tx, request.clone()).await.unwrap();
    assert_eq!(again, original);
    tx.commit().await.unwrap();

    // Re-sent later, in another transaction (the first answer was lost).
    let mut tx = store.pool().begin().await.unwrap();
    let replayed = store.commit_in(&mut tx, request.clone()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(replayed, original);
    // And through the ordinary path.
    assert_eq!(store.commit(request).await.unwrap(), original);

    let events = log(&store).await;
    assert_eq!(positions(&events), original.positions().collect::<Vec<_>>());
}

#[tokio::test]
async fn a_race_lost_under_repeatable_read_is_a_conflict() {
    let (store, _schema) = common::store().await;
    let s = stream("s");
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    // Take the snapshot, then let another writer append.
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    store
        .append(&s, ExpectedVersion::Any, vec![event("Winner")])
        .await
        .unwrap();
    let err = store
        .append_in(&mut tx, &s, ExpectedVersion::Any, vec![event("Loser")])
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    // Still usable.
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::new(1));
}

#[tokio::test]
async fn subscribers_are_notified_when_the_transaction_commits() {
    let (store, schema) = common::store().await;
    if common::direct_url().is_some() {
        return; // no LISTEN behind a transaction pooler
    }
    let mut listener = PgListener::connect(schema.url()).await.unwrap();
    listener
        .listen(&format!("annals.{}", schema.name()))
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut tx,
            &stream("s"),
            ExpectedVersion::Any,
            vec![event("E")],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let note = tokio::time::timeout(DEADLINE, listener.recv())
        .await
        .expect("a notification after COMMIT")
        .unwrap();
    assert_eq!(note.payload(), "annals.commit_in");
}

/// The child: writes its order row and appends its event in one transaction,
/// prints `READY` and waits to be killed before COMMIT. Does nothing when run
/// as an ordinary test.
#[tokio::test]
async fn outbox_child() {
    let (Ok(schema), Ok(url), Ok(order)) = (
        std::env::var(CHILD_SCHEMA_ENV),
        std::env::var(CHILD_URL_ENV),
        std::env::var(CHILD_ORDER_ENV),
    ) else {
        return;
    };
    let store = PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&schema))
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    insert_order(&store, &mut tx, &order).await;
    store
        .append_in(
            &mut tx,
            &stream(&order),
            ExpectedVersion::NoStream,
            vec![event("OrderPlaced")],
        )
        .await
        .unwrap();
    println!("{READY}");
    // Killed here, between the append and COMMIT.
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn sigkill_before_commit_leaves_neither_row_nor_event() {
    let (store, schema) = common::store().await;
    create_orders(&store).await;
    for round in 0..3 {
        let order = format!("order-{round}");
        let mut child = Child::spawn(
            "outbox_child",
            &[
                (CHILD_SCHEMA_ENV, schema.name()),
                (CHILD_URL_ENV, schema.url()),
                (CHILD_ORDER_ENV, order.as_str()),
            ],
        );
        child.wait_for(READY, Duration::from_secs(120));
        child.kill(); // SIGKILL

        // The server rolls the transaction back when the connection drops: the
        // stream is free again (an append would wait for the dead transaction
        // until then), and neither the row nor the event is there.
        store
            .append(
                &stream(&format!("after-{round}")),
                ExpectedVersion::NoStream,
                vec![event("After")],
            )
            .await
            .unwrap();
        assert!(orders(&store).await.is_empty());
        assert_eq!(
            store.stream_version(&stream(&order)).await.unwrap(),
            Version::ZERO
        );
        let events = log(&store).await;
        assert_eq!(events.len(), round + 1);
        assert!(events.iter().all(|e| e.event_type == "After"));
    }
}

#[tokio::test]
async fn a_long_transactions_events_are_not_skipped_by_tailing_readers() {
    let (store, _schema) = common::store_with(
        PostgresOptions::new()
            .max_connections(20)
            .read_settle_timeout(Duration::from_millis(200)),
    )
    .await;
    let before = store
        .append(&stream("before"), ExpectedVersion::Any, vec![event("E0")])
        .await
        .unwrap();

    // A tailing subscriber, collecting positions.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Position>::new()));
    let tail = {
        let store = store.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut events = store.subscribe_all(SubscribeAll::from_start());
            while let Some(event) = events.next().await {
                if let Ok(event) = event {
                    seen.lock().unwrap().push(event.position);
                }
            }
        })
    };
    wait_until(|| seen.lock().unwrap().len() == 1).await;

    // The long transaction appends first…
    let mut long = store.pool().begin().await.unwrap();
    let held = store
        .append_in(
            &mut long,
            &stream("long"),
            ExpectedVersion::NoStream,
            vec![event("Long1"), event("Long2")],
        )
        .await
        .unwrap();
    // …then ordinary appends commit above it.
    let mut later = Vec::new();
    for i in 0..3 {
        let done = store
            .append(
                &stream(&format!("later-{i}")),
                ExpectedVersion::Any,
                vec![event("L")],
            )
            .await
            .unwrap();
        later.push(done.positions[0]);
    }
    assert!(
        held.positions.iter().all(|p| *p < later[0]),
        "positions from the older xid"
    );

    // A reader cannot go past the open transaction: it is held back, naming it.
    let err = store
        .read_all(ReadAll::after(before.positions[0]))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    let blocked = ReadBlocked::find(&err).unwrap_or_else(|| panic!("held back, got {err}"));
    assert_eq!(blocked.position, later[0].get());
    assert_eq!(seen.lock().unwrap().len(), 1, "the subscriber waits too");

    long.commit().await.unwrap();

    // Everything arrives, in position order, the long transaction's first.
    let mut expected = vec![before.positions[0]];
    expected.extend(held.positions.iter().copied());
    expected.extend(later.iter().copied());
    wait_until(|| seen.lock().unwrap().len() >= expected.len()).await;
    assert_eq!(*seen.lock().unwrap(), expected);
    assert_eq!(positions(&log(&store).await), expected);
    tail.abort();
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_base_delay(Duration::from_millis(1))
}

#[tokio::test]
async fn transact_retries_a_conflict_and_succeeds() {
    let (store, _schema) = common::store().await;
    create_orders(&store).await;
    let counter = stream("counter");
    store
        .append(&counter, ExpectedVersion::NoStream, vec![event("Started")])
        .await
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));

    let (n, committed) = store
        .transact(fast_retries(3), |tx| {
            let store = store.clone();
            let attempts = Arc::clone(&attempts);
            let counter = counter.clone();
            async move {
                let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                let version = store.stream_version(&counter).await?;
                insert_order(&store, tx, &format!("order-{n}")).await;
                if n == 1 {
                    // Another writer gets in between the read and the append.
                    store
                        .append(&counter, ExpectedVersion::Any, vec![event("Bumped")])
                        .await?;
                }
                let request = AppendRequest::new().append(
                    &counter,
                    ExpectedVersion::Exact(version),
                    vec![event("Counted")],
                );
                Ok::<_, Error>((n, request))
            }
            .boxed()
        })
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(committed.parts[0].version, Version::new(3));
    // The first attempt's row was rolled back with it.
    assert_eq!(orders(&store).await, ["order-2"]);
}

#[tokio::test]
async fn transact_gives_up_after_the_policys_attempts() {
    let (store, _schema) = common::store().await;
    create_orders(&store).await;
    let s = stream("s");
    store
        .append(&s, ExpectedVersion::NoStream, vec![event("E")])
        .await
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let err = store
        .transact(fast_retries(4), |tx| {
            let store = store.clone();
            let attempts = Arc::clone(&attempts);
            let s = s.clone();
            async move {
                let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                insert_order(&store, tx, &format!("order-{n}")).await;
                let request = AppendRequest::new().append(
                    &s,
                    ExpectedVersion::NoStream,
                    vec![event("Never")],
                );
                Ok::<_, Error>(((), request))
            }
            .boxed()
        })
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert!(orders(&store).await.is_empty());
    assert_eq!(log(&store).await.len(), 1);

    // The closure's own error: no retry, rolled back.
    let attempts = Arc::new(AtomicU32::new(0));
    let err = store
        .transact(fast_retries(4), |tx| {
            let store = store.clone();
            let attempts = Arc::clone(&attempts);
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                insert_order(&store, tx, "doomed").await;
                Err::<((), AppendRequest), _>(Error::invalid_input("out of stock"))
            }
            .boxed()
        })
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert!(orders(&store).await.is_empty());
}
