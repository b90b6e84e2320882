//! SQLite checkpoints: the shared contract (file and in-memory stores),
//! persistence across reopening, and exactly-once — the read model and the
//! checkpoint commit in one transaction, also when the process is SIGKILLed
//! between handler and commit.
//!
//! The killed process is this test binary itself, re-executed with
//! `CHILD_DB_ENV` set and filtered to run only `exactly_once_child`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_sign_loss
)]

use std::{path::Path, time::Duration};

use annals_testing::child::Child;

use annals_sqlite::{
    consume::{CheckpointStore, Subscribe, SubscribeAll},
    futures::TryStreamExt,
    sqlx::{self, Connection, SqliteConnection},
    EventStore, ExpectedVersion, NewEvent, Position, SqliteEventStore, StreamId,
};

const CHILD_DB_ENV: &str = "ANNALS_SQLITE_CHECKPOINT_CHILD_DB";
const NAME: &str = "paid-orders";
/// What the child prints (libtest may put it after `test … ` on the same line).
const READY: &str = "annals-child-between-handler-and-commit";

#[tokio::test]
async fn file_checkpoints_keep_the_contract_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    annals_testing::checkpoints::checkpoint_store_contract(&store.checkpoints()).await;
    store.close().await;
    let again = SqliteEventStore::open(&path).await.unwrap();
    assert_eq!(
        again.checkpoints().load("emails").await.unwrap(),
        Some(Position::new(1)),
        "saved in the file"
    );
}

#[tokio::test]
async fn in_memory_checkpoints_keep_the_contract() {
    let store = SqliteEventStore::in_memory().await.unwrap();
    annals_testing::checkpoints::checkpoint_store_contract(&store.checkpoints()).await;
    assert_eq!(
        store.clone().checkpoints().load("emails").await.unwrap(),
        Some(Position::new(1)),
        "clones share them"
    );
}

async fn connect(path: &Path) -> SqliteConnection {
    let mut conn = SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA busy_timeout = 60000")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS paid (position INTEGER PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Handles one event: its read-model row and the checkpoint, in one transaction
/// that is committed only if `commit`.
async fn handle(store: &SqliteEventStore, conn: &mut SqliteConnection, position: Position) {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO paid (position) VALUES (?1)")
        .bind(i64::try_from(position.get()).unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    store
        .checkpoints()
        .save_in(&mut tx, NAME, position)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Runs the projection from its checkpoint until it has handled `n` events.
async fn project(store: &SqliteEventStore, conn: &mut SqliteConnection, n: usize) {
    let after = store.checkpoints().load(NAME).await.unwrap();
    let mut events = store.subscribe_all(SubscribeAll::resume(after));
    for _ in 0..n {
        let event = events.try_next().await.unwrap().unwrap();
        handle(store, conn, event.position).await;
    }
}

async fn read_model(conn: &mut SqliteConnection) -> Vec<u64> {
    sqlx::query_scalar::<_, i64>("SELECT position FROM paid ORDER BY position")
        .fetch_all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|p| u64::try_from(p).unwrap())
        .collect()
}

/// The child: handles the next event, but is killed between writing its row and
/// checkpoint and committing them. Does nothing when run as an ordinary test.
#[tokio::test]
async fn exactly_once_child() {
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let path = Path::new(&path);
    let store = SqliteEventStore::open(path).await.unwrap();
    let mut conn = connect(path).await;
    let after = store.checkpoints().load(NAME).await.unwrap();
    let mut events = store.subscribe_all(SubscribeAll::resume(after));
    let event = events.try_next().await.unwrap().unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO paid (position) VALUES (?1)")
        .bind(i64::try_from(event.position.get()).unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    store
        .checkpoints()
        .save_in(&mut tx, NAME, event.position)
        .await
        .unwrap();
    println!("{READY}");
    // Killed here, between the handler and the commit.
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn sigkill_between_handler_and_commit_replays_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    let mut positions = Vec::new();
    for i in 0..3 {
        let stream = StreamId::new(format!("order-{i}")).unwrap();
        let done = store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new("Paid", b"{}".to_vec())],
            )
            .await
            .unwrap();
        positions.push(done.positions[0].get());
    }
    let mut conn = connect(&path).await;
    project(&store, &mut conn, 1).await;

    let mut child = Child::spawn("exactly_once_child", &[(CHILD_DB_ENV, &path)]);
    child.wait_for(READY, Duration::from_secs(120));
    child.kill(); // SIGKILL

    // The killed transaction left nothing; the restarted projection handles
    // events 2 and 3 once.
    assert_eq!(read_model(&mut conn).await, positions[..1]);
    project(&store, &mut conn, 2).await;
    assert_eq!(read_model(&mut conn).await, positions);
    assert_eq!(
        store.checkpoints().load(NAME).await.unwrap(),
        Some(Position::new(positions[2]))
    );
}
