//! The options for a transaction-mode pooler and for read replicas, against the
//! ordinary test database (no pooler, no replica needed):
//!
//! * `migrate(false)` refuses a schema that was never migrated, saying to migrate
//!   through a direct connection, and accepts a migrated one;
//! * `transaction_pooler()` (unnamed statements, each call in its own
//!   transaction) runs every operation, leaves no named prepared statement on
//!   its connections, and does not send `statement_timeout` as a startup
//!   parameter;
//! * `with_read_replica` sends `read_all` / `read_stream` to the replica pool
//!   and keeps appends, `stream_version`, `get_event` and snapshots on the
//!   primary (shown by closing the replica pool).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use annals_postgres::{
    consume::CheckpointStore, sqlx, EventStore, ExpectedVersion, NewEvent, Position,
    PostgresEventStore, PostgresOptions, ReadAll, ReadStream, Snapshot, StreamId, Version,
};
use annals_testing::postgres::{unique_schema_name, TestSchema};
use futures::TryStreamExt;

#[tokio::test]
async fn without_migration_an_unmigrated_schema_is_refused() {
    let schema = TestSchema::create().await;
    let options = PostgresOptions::new().schema(schema.name()).migrate(false);
    let err = PostgresEventStore::connect_with(schema.url(), options.clone())
        .await
        .expect_err("an empty schema is not migrated");
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("direct connection"), "{err}");
    let missing = PostgresOptions::new()
        .schema(unique_schema_name())
        .migrate(false);
    let err = PostgresEventStore::connect_with(schema.url(), missing)
        .await
        .expect_err("a missing schema is not migrated");
    assert!(err.is_invalid_input(), "{err}");
    // Migrated once (the default), it is accepted without migrating.
    PostgresEventStore::connect_with(schema.url(), PostgresOptions::new().schema(schema.name()))
        .await
        .unwrap();
    PostgresEventStore::connect_with(schema.url(), options)
        .await
        .expect("a migrated schema");
    schema.teardown().await;
}

#[tokio::test]
async fn unnamed_statements_in_transactions_run_every_operation() {
    let schema = TestSchema::create().await;
    PostgresEventStore::connect_with(schema.url(), PostgresOptions::new().schema(schema.name()))
        .await
        .unwrap();
    let store = PostgresEventStore::connect_with(
        schema.url(),
        PostgresOptions::new()
            .schema(schema.name())
            .transaction_pooler()
            .statement_timeout(Some(Duration::from_secs(7)))
            .max_connections(2),
    )
    .await
    .unwrap();
    let stream = StreamId::new("order-1").unwrap();
    let first = NewEvent::new("Placed", "{}");
    let id = first.id;
    store
        .append(&stream, ExpectedVersion::NoStream, vec![first.clone()])
        .await
        .unwrap();
    // A re-send is idempotent, a stale expectation conflicts.
    store
        .append(&stream, ExpectedVersion::NoStream, vec![first])
        .await
        .unwrap();
    let conflict = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("X", "{}")],
        )
        .await
        .unwrap_err();
    assert!(conflict.is_conflict(), "{conflict}");
    store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new("Paid", "{}"), NewEvent::new("Shipped", "{}")],
        )
        .await
        .unwrap();
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::new(3)
    );
    assert_eq!(store.get_event(id).await.unwrap().event_type, "Placed");
    let events: Vec<_> = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    let log: Vec<_> = store
        .read_all(ReadAll::after(Position::START))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(log.len(), 3);
    store
        .save_snapshot(&stream, Snapshot::new(Version::new(3), b"state".to_vec()))
        .await
        .unwrap();
    assert!(store.load_snapshot(&stream).await.unwrap().is_some());
    let checkpoints = store.checkpoints();
    checkpoints.save("p", log[2].position).await.unwrap();
    assert_eq!(checkpoints.load("p").await.unwrap(), Some(log[2].position));

    // Every connection of the pool: no named statement, no startup
    // statement_timeout, and no transaction left open.
    for _ in 0..2 {
        let mut conn = store.pool().acquire().await.unwrap();
        let named: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(named, 0);
        let timeout: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_ne!(
            timeout, "7s",
            "statement_timeout must not be a startup parameter"
        );
        // A simple query (one message): its implicit transaction starts with
        // it, unless a transaction was left open before.
        let row = sqlx::raw_sql("SELECT now() <> statement_timestamp()")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let in_tx: bool = sqlx::Row::try_get(&row, 0).unwrap();
        assert!(!in_tx, "a pooled connection was left in a transaction");
    }
    schema.teardown().await;
}

#[tokio::test]
async fn a_read_replica_serves_reads_and_the_primary_everything_else() {
    let (store, schema) = common::store().await;
    let replica = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(schema.url())
        .await
        .unwrap();
    let reading = store.with_read_replica(replica.clone()).await.unwrap();
    assert!(reading.reads_from_replica());
    let stream = StreamId::new("s").unwrap();
    let event = NewEvent::new("E", "{}");
    let id = event.id;
    reading
        .append(&stream, ExpectedVersion::Any, vec![event])
        .await
        .unwrap();
    let log: Vec<_> = reading
        .read_all(ReadAll::after(Position::START))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    // With the replica gone, reads fail and everything else works.
    replica.close().await;
    let err = reading
        .read_all(ReadAll::after(Position::START))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let err = reading
        .read_stream(ReadStream::forward(&stream))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    reading
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new("F", "{}")],
        )
        .await
        .unwrap();
    assert_eq!(
        reading.stream_version(&stream).await.unwrap(),
        Version::new(2)
    );
    assert_eq!(reading.get_event(id).await.unwrap().id, id);
    reading
        .save_snapshot(&stream, Snapshot::new(Version::new(2), b"s".to_vec()))
        .await
        .unwrap();
    assert!(reading.load_snapshot(&stream).await.unwrap().is_some());
    schema.teardown().await;
}
