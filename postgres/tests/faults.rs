//! Bad input, killed connections, cancelled and timed-out statements.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use annals_postgres::{
    Error, EventId, EventStore, ExpectedVersion, Metadata, NewEvent, Position, PostgresEventStore,
    PostgresOptions, ReadFilter, Snapshot, StreamId, Version, MAX_BATCH_BYTES, MAX_BATCH_EVENTS,
};
use annals_testing::postgres::{database_url, unique_schema_name};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

async fn count_events(store: &PostgresEventStore) -> usize {
    let all: Vec<_> = store
        .read_all(Position::START, ReadFilter::new(), None)
        .try_collect()
        .await
        .unwrap();
    all.len()
}

#[tokio::test]
async fn nul_in_text_fields_is_invalid_input_and_writes_nothing() {
    let (store, schema) = common::store().await;
    let stream = StreamId::new("nul").unwrap();
    let cases = [
        NewEvent::new("Bad\0Type", "{}"),
        NewEvent::new("Ok", "{}").with_content_type("application/\0json"),
        NewEvent::new("Ok", "{}").with_metadata(Metadata::new().with_correlation_id("a\0b")),
        NewEvent::new("Ok", "{}").with_metadata(Metadata::new().with_field("k\0", 1)),
        NewEvent::new("Ok", "{}").with_metadata(Metadata::new().with_field("k", "v\0")),
    ];
    for event in cases {
        let err = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new("Ok", "{}"), event],
            )
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    assert!(StreamId::new("a\0b").unwrap_err().is_invalid_input());
    let err = store
        .save_snapshot(
            &stream,
            Snapshot::new(Version::new(1), "{}").with_content_type("x\0"),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    // NUL in a payload is just bytes.
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Ok", b"a\0b".to_vec())],
        )
        .await
        .unwrap();
    // A filter value with NUL matches nothing instead of reaching PostgreSQL.
    for filter in [
        ReadFilter::new().stream_prefix("n\0"),
        ReadFilter::new().event_type("Ok\0"),
    ] {
        let found: Vec<_> = store
            .read_all(Position::START, filter, None)
            .try_collect()
            .await
            .unwrap();
        assert!(found.is_empty());
    }
    assert_eq!(count_events(&store).await, 1);
    drop(store);
    schema.teardown().await;
}

#[tokio::test]
async fn oversized_values_are_invalid_input_and_write_nothing() {
    let (store, schema) = common::store().await;
    let stream = StreamId::new("big").unwrap();
    let too_long = "x".repeat(256);
    let cases = vec![
        vec![NewEvent::new(too_long.as_str(), "{}")],
        vec![NewEvent::new("Ok", "{}").with_content_type(too_long.as_str())],
        vec![NewEvent::new(
            "Ok",
            vec![0u8; annals_postgres::limits::MAX_PAYLOAD_LEN + 1],
        )],
        vec![NewEvent::new("Ok", "{}").with_metadata(
            Metadata::new()
                .with_field("big", "y".repeat(annals_postgres::limits::MAX_METADATA_LEN)),
        )],
        // More events than one transaction's range of positions holds.
        (0..=MAX_BATCH_EVENTS)
            .map(|_| NewEvent::new("E", ""))
            .collect(),
        // Every payload within bounds, but the batch is too big for one statement.
        (0..=MAX_BATCH_BYTES / annals_postgres::limits::MAX_PAYLOAD_LEN)
            .map(|_| NewEvent::new("Ok", vec![7u8; annals_postgres::limits::MAX_PAYLOAD_LEN]))
            .collect(),
    ];
    for batch in cases {
        let err = store
            .append(&stream, ExpectedVersion::Any, batch)
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    assert!(StreamId::new(&too_long).unwrap_err().is_invalid_input());
    let err = store
        .save_snapshot(
            &stream,
            Snapshot::new(
                Version::new(1),
                vec![0u8; annals_postgres::limits::MAX_PAYLOAD_LEN + 1],
            ),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let err = store
        .read_stream(&stream, Version::new(u64::MAX), None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let err = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(u64::MAX)),
            vec![],
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(count_events(&store).await, 0);
    drop(store);
    schema.teardown().await;
}

#[tokio::test]
async fn invalid_schema_names_and_urls_are_invalid_input() {
    let url = database_url().await;
    for name in [
        "",
        "1x",
        "a-b",
        "a\"b",
        "x; DROP TABLE y",
        "pg_temp",
        "a\0b",
        &"s".repeat(64),
    ] {
        let err = PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(name))
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{name:?}: {err}");
    }
    let err = PostgresEventStore::connect("postgres://u:hunter2@host:notaport/db")
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(
        !err.to_string().contains("hunter2"),
        "the password leaked: {err}"
    );
}

#[tokio::test]
async fn passwords_never_reach_debug_output() {
    let name = unique_schema_name();
    // The local test server trusts 127.0.0.1, so any password is accepted.
    let base = database_url().await;
    let url = base.replacen("postgres://postgres@", "postgres://postgres:s3cret-pw@", 1);
    let store = PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&name))
        .await
        .unwrap();
    let debug = format!("{store:?} {:?}", store.options());
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    drop(store);
    annals_testing::postgres::drop_schema(&base, &name).await;
}

/// Terminates every backend of the store (from a separate admin connection, by
/// the store's application name) while a writer keeps appending: calls fail only
/// while the connections die, the store recovers by itself on the next call, and
/// every acknowledged event is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_recovers_from_terminated_backends_without_losing_acknowledged_events() {
    let app = format!("annals-fault-{}", EventId::new().as_uuid().simple());
    let (store, schema) = common::store_with(
        PostgresOptions::new()
            .max_connections(4)
            .application_name(&app)
            .operation_timeout(Duration::from_secs(20)),
    )
    .await;
    let mut admin = PgConnection::connect(schema.url()).await.unwrap();
    let stream = StreamId::new("survivor").unwrap();

    let writer = {
        let (store, stream) = (store.clone(), stream.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failures = 0;
            for i in 0..300 {
                let event = NewEvent::new("Tick", format!("{{\"i\":{i}}}"));
                let id = event.id;
                match store
                    .append(&stream, ExpectedVersion::Any, vec![event])
                    .await
                {
                    Ok(_) => acknowledged.push(id),
                    Err(e) => {
                        assert!(matches!(e, Error::Backend { .. }), "{e}");
                        failures += 1;
                    }
                }
            }
            (acknowledged, failures)
        })
    };
    let mut terminated = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        terminated += killed.iter().filter(|k| **k).count();
    }
    let (acknowledged, _failures) = writer.await.unwrap();
    assert!(
        terminated > 0,
        "the test must actually kill the store's connections"
    );

    // Kill everything once more while idle: the very next call must succeed.
    let _: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = NewEvent::new("Tick", "{\"last\":true}");
    let last_id = last.id;
    store
        .append(&stream, ExpectedVersion::Any, vec![last])
        .await
        .expect("the next call after the backends were terminated succeeds");

    let stored: Vec<EventId> = store
        .read_stream(&stream, Version::FIRST, None)
        .map_ok(|e| e.id)
        .try_collect()
        .await
        .unwrap();
    for id in acknowledged.iter().chain([&last_id]) {
        assert!(stored.contains(id), "acknowledged event {id} was lost");
    }
    let versions: Vec<u64> = store
        .read_stream(&stream, Version::FIRST, None)
        .map_ok(|e| e.version.get())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    admin.close().await.unwrap();
    drop(store);
    schema.teardown().await;
}

/// A statement that cannot finish (another session holds a lock on the events
/// table) ends in `Error::Timeout`, from the server's statement_timeout or the
/// client's operation timeout, writes nothing, and leaves every pooled connection
/// usable: once the blocker is gone, appends work again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_appends_time_out_and_leave_no_lock_behind() {
    for (statement, operation) in [
        (Some(Duration::from_millis(300)), Duration::from_secs(10)),
        (None, Duration::from_millis(400)),
    ] {
        let (store, schema) = common::store_with(
            PostgresOptions::new()
                .statement_timeout(statement)
                .operation_timeout(operation),
        )
        .await;
        let stream = StreamId::new("blocked").unwrap();
        let mut admin = PgConnection::connect(schema.url()).await.unwrap();
        let mut blocker = admin.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE \"{}\".events IN ACCESS EXCLUSIVE MODE",
            schema.name()
        )))
        .execute(&mut *blocker)
        .await
        .unwrap();
        let err = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new("A", "{}")],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        blocker.rollback().await.unwrap();
        // Every connection of the pool must be able to append now, and the timed-out
        // append wrote nothing (versions continue at 1).
        for i in 0..12 {
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("A", format!("{i}"))],
                )
                .await
                .unwrap();
        }
        admin.close().await.unwrap();
        drop(store);
        schema.teardown().await;
    }
}

/// Cancelling appends in flight (`pg_cancel_backend`) surfaces as `Error::Timeout`
/// and never leaves a partial batch: every stream holds whole batches of 20 at
/// contiguous versions, and the store keeps working with the same pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_appends_leave_whole_batches_and_a_working_store() {
    let app = format!("annals-cancel-{}", EventId::new().as_uuid().simple());
    let (store, schema) = common::store_with(
        PostgresOptions::new()
            .max_connections(6)
            .application_name(&app)
            .operation_timeout(Duration::from_secs(5)),
    )
    .await;
    let mut admin = PgConnection::connect(schema.url()).await.unwrap();
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(format!("c{w}")).unwrap();
                for i in 0..100 {
                    let batch = (0..20)
                        .map(|n| NewEvent::new("T", format!("{i}.{n}")))
                        .collect();
                    if let Err(e) = store.append(&stream, ExpectedVersion::Any, batch).await {
                        // A cancelled statement is reported as a timeout.
                        assert!(matches!(e, Error::Timeout(_)), "{e}");
                    }
                }
            })
        })
        .collect();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let _: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app)
        .fetch_all(&mut admin)
        .await
        .unwrap();
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut cancelled_somewhere = false;
    for w in 0..6 {
        let stream = StreamId::new(format!("c{w}")).unwrap();
        let events: Vec<_> = store
            .read_stream(&stream, Version::FIRST, None)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(events.len() % 20, 0, "stream c{w} holds a partial batch");
        cancelled_somewhere |= events.len() < 2000;
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.version.get(), i as u64 + 1, "stream c{w} has a gap");
            // Batches are whole and in order: event n of a batch is "<i>.<n>".
            let payload = std::str::from_utf8(&event.payload).unwrap();
            assert!(
                payload.ends_with(&format!(".{}", i % 20)),
                "{payload} at {i}"
            );
        }
    }
    assert!(
        cancelled_somewhere,
        "no append was cancelled; the test proved nothing"
    );
    store
        .append(
            &StreamId::new("after").unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("A", "{}")],
        )
        .await
        .unwrap();
    admin.close().await.unwrap();
    drop(store);
    schema.teardown().await;
}
