//! PostgreSQL checkpoints: the shared contract, persistence across connections,
//! and exactly-once — the read model and the checkpoint commit in one
//! transaction, also when the process is SIGKILLed between handler and commit.
//!
//! The killed process is this test binary itself, re-executed with
//! `CHILD_SCHEMA_ENV` set and filtered to run only `exactly_once_child`.
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

use std::time::Duration;

use annals_testing::child::Child;

use annals_postgres::{
    consume::{CheckpointStore, Subscribe, SubscribeAll},
    futures::TryStreamExt,
    sqlx, EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore, PostgresOptions,
    StreamId,
};

const CHILD_SCHEMA_ENV: &str = "ANNALS_PG_CHECKPOINT_CHILD_SCHEMA";
const CHILD_URL_ENV: &str = "ANNALS_PG_CHECKPOINT_CHILD_URL";
const NAME: &str = "paid-orders";
/// What the child prints (libtest may put it after `test … ` on the same line).
const READY: &str = "annals-child-between-handler-and-commit";

#[tokio::test]
async fn postgres_checkpoints_keep_the_contract_and_persist() {
    let (store, schema) = common::store().await;
    annals_testing::checkpoints::checkpoint_store_contract(&store.checkpoints()).await;

    // A new connection (another process, after a restart) sees the saved values.
    let again = PostgresEventStore::connect_with(
        schema.url(),
        PostgresOptions::new().schema(schema.name()),
    )
    .await
    .unwrap();
    assert_eq!(
        again.checkpoints().load("emails").await.unwrap(),
        Some(Position::new(1))
    );
    let updated: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT updated_at > now() - interval '1 hour' FROM \"{}\".checkpoints WHERE name = 'emails'",
        schema.name()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(updated, "updated_at is recorded");
    drop(again);
    drop(store);
}

/// The read model of the exactly-once tests: one row per handled event.
async fn create_read_model(store: &PostgresEventStore) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS \"{}\".paid (position bigint PRIMARY KEY, n integer NOT NULL)",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
}

/// Handles one event: its read-model row and the checkpoint, in `tx`.
async fn handle_in(store: &PostgresEventStore, tx: &mut sqlx::PgConnection, position: Position) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{}\".paid (position, n) VALUES ($1, 1)",
        store.schema()
    )))
    .bind(i64::try_from(position.get()).unwrap())
    .execute(&mut *tx)
    .await
    .unwrap();
    store
        .checkpoints()
        .save_in(tx, NAME, position)
        .await
        .unwrap();
}

/// Runs the projection from its checkpoint until it has handled `n` events,
/// each in its own transaction.
async fn project(store: &PostgresEventStore, n: usize) {
    let after = store.checkpoints().load(NAME).await.unwrap();
    let mut events = store.subscribe_all(SubscribeAll::resume(after));
    for _ in 0..n {
        let event = events.try_next().await.unwrap().unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        handle_in(store, &mut tx, event.position).await;
        tx.commit().await.unwrap();
    }
}

async fn read_model(store: &PostgresEventStore) -> Vec<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT position FROM \"{}\".paid ORDER BY position",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
}

async fn append_paid(store: &PostgresEventStore, n: usize) -> Vec<i64> {
    let mut positions = Vec::new();
    for i in 0..n {
        let stream = StreamId::new(format!("order-{i}")).unwrap();
        let done = store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new("Paid", b"{}".to_vec())],
            )
            .await
            .unwrap();
        positions.push(i64::try_from(done.positions.last().unwrap().get()).unwrap());
    }
    positions
}

#[tokio::test]
async fn a_rolled_back_handler_leaves_neither_row_nor_checkpoint() {
    let (store, _schema) = common::store().await;
    create_read_model(&store).await;
    let positions = append_paid(&store, 3).await;
    project(&store, 2).await;
    assert_eq!(read_model(&store).await, positions[..2]);

    // The third event's handler fails before commit: the transaction rolls back.
    let mut tx = store.pool().begin().await.unwrap();
    handle_in(&store, &mut tx, Position::new(positions[2] as u64)).await;
    drop(tx);
    assert_eq!(read_model(&store).await, positions[..2]);
    assert_eq!(
        store.checkpoints().load(NAME).await.unwrap(),
        Some(Position::new(positions[1] as u64))
    );
    // Resuming handles it once.
    project(&store, 1).await;
    assert_eq!(read_model(&store).await, positions);
}

/// The child: handles the events after the checkpoint; before committing the
/// first one it prints `ready` and waits to be killed. Does nothing when run as
/// an ordinary test.
#[tokio::test]
async fn exactly_once_child() {
    let (Ok(schema), Ok(url)) = (
        std::env::var(CHILD_SCHEMA_ENV),
        std::env::var(CHILD_URL_ENV),
    ) else {
        return;
    };
    let store = PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&schema))
        .await
        .unwrap();
    let after = store.checkpoints().load(NAME).await.unwrap();
    let mut events = store.subscribe_all(SubscribeAll::resume(after));
    let event = events.try_next().await.unwrap().unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    handle_in(&store, &mut tx, event.position).await;
    println!("{READY}");
    // Killed here, between the handler and the commit.
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn sigkill_between_handler_and_commit_replays_exactly_once() {
    let (store, schema) = common::store().await;
    create_read_model(&store).await;
    let positions = append_paid(&store, 3).await;
    project(&store, 1).await;

    let mut child = Child::spawn(
        "exactly_once_child",
        &[
            (CHILD_SCHEMA_ENV, schema.name()),
            (CHILD_URL_ENV, schema.url()),
        ],
    );
    child.wait_for(READY, Duration::from_secs(120));
    child.kill(); // SIGKILL

    // The killed transaction left nothing: the server rolls it back when the
    // connection drops. The restarted projection handles events 2 and 3 once.
    assert_eq!(read_model(&store).await, positions[..1]);
    project(&store, 2).await;
    assert_eq!(read_model(&store).await, positions);
    assert_eq!(
        store.checkpoints().load(NAME).await.unwrap(),
        Some(Position::new(positions[2] as u64))
    );
}
