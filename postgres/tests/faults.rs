//! Bad input, killed connections, cancelled and timed-out statements.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use annals_postgres::{
    Error, EventId, EventStore, ExpectedVersion, Metadata, NewEvent, PostgresEventStore,
    PostgresOptions, ReadAll, ReadFilter, ReadStream, Snapshot, StreamId, Version,
};
use annals_testing::postgres::{database_url, unique_schema_name};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

async fn count_events(store: &PostgresEventStore) -> usize {
    let all: Vec<_> = store
        .read_all(ReadAll::forward())
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
        ReadFilter::new().stream_glob("n\0*"),
    ] {
        let found: Vec<_> = store
            .read_all(ReadAll::forward().filter(filter))
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
    let limits = store.capabilities();
    let too_long = "x".repeat(limits.max_name_bytes + 1);
    let cases = vec![
        vec![NewEvent::new(too_long.as_str(), "{}")],
        vec![NewEvent::new("Ok", "{}").with_content_type(too_long.as_str())],
        vec![NewEvent::new("Ok", vec![0u8; limits.max_payload_bytes + 1])],
        vec![NewEvent::new("Ok", "{}").with_metadata(
            Metadata::new().with_field("big", "y".repeat(limits.max_metadata_bytes)),
        )],
        // More events than one transaction's range of positions holds.
        (0..=limits.max_events_per_append)
            .map(|_| NewEvent::new("E", ""))
            .collect(),
        // Every payload within bounds, but the batch is too big for one statement.
        (0..=limits.max_append_bytes / limits.max_payload_bytes)
            .map(|_| NewEvent::new("Ok", vec![7u8; limits.max_payload_bytes]))
            .collect(),
    ];
    // PostgreSQL's own limits: one transaction's range of positions, one
    // statement's size.
    assert_eq!(limits.max_events_per_append, (1 << 20) - 1);
    assert_eq!(limits.max_append_bytes, 256 * 1024 * 1024);
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
            Snapshot::new(Version::new(1), vec![0u8; limits.max_payload_bytes + 1]),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    // Values no stored event can have are the same rule on every backend: a read
    // after them is empty, an expectation of them is a conflict (never bound).
    let after_all: Vec<_> = store
        .read_stream(ReadStream::forward(&stream).after(Version::new(u64::MAX)))
        .try_collect()
        .await
        .unwrap();
    assert!(after_all.is_empty());
    for events in [vec![], vec![NewEvent::new("Ok", "{}")]] {
        let err = store
            .append(
                &stream,
                ExpectedVersion::Exact(Version::new(u64::MAX)),
                events,
            )
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{err}");
    }
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

/// Terminates every backend with application name `app`; the pids of those that were.
async fn terminate(admin: &mut PgConnection, app: &str) -> Vec<i32> {
    // The function runs in the select list, so only for the filtered rows (in a
    // WHERE clause PostgreSQL may call it before the filter, on every backend).
    let killed: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(app)
    .fetch_all(admin)
    .await
    .unwrap();
    killed
        .into_iter()
        .filter(|(_, k)| *k)
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits (at most 60 s) until none of the backends `pids` is left. (The store
/// may open new connections meanwhile — e.g. to send a NOTIFY after its last
/// append — so "no backend of the application" is not the condition.)
async fn wait_until_gone(admin: &mut PgConnection, pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(pids)
                .fetch_one(&mut *admin)
                .await
                .unwrap();
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} terminated backends still running after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
                        // A killed connection is the typed, retryable error.
                        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
                        assert!(e.is_transient());
                        failures += 1;
                    }
                }
            }
            (acknowledged, failures)
        })
    };
    // Kill at least 5 times, and until some connection was actually killed (the
    // pool's connections stay open after the writer is done), within a generous
    // deadline.
    let mut terminated = 0;
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while rounds < 5 || terminated == 0 {
        assert!(
            Instant::now() < deadline,
            "no connection of the store could be killed within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        terminated += terminate(&mut admin, &app).await.len();
        rounds += 1;
    }
    let (acknowledged, _failures) = writer.await.unwrap();

    // Kill everything once more while idle, and wait until those backends are
    // gone: the very next call must succeed.
    let killed = terminate(&mut admin, &app).await;
    wait_until_gone(&mut admin, &killed).await;
    let last = NewEvent::new("Tick", "{\"last\":true}");
    let last_id = last.id;
    store
        .append(&stream, ExpectedVersion::Any, vec![last])
        .await
        .expect("the next call after the backends were terminated succeeds");

    let stored: Vec<EventId> = store
        .read_stream(ReadStream::forward(&stream))
        .map_ok(|e| e.id)
        .try_collect()
        .await
        .unwrap();
    for id in acknowledged.iter().chain([&last_id]) {
        assert!(stored.contains(id), "acknowledged event {id} was lost");
    }
    let versions: Vec<u64> = store
        .read_stream(ReadStream::forward(&stream))
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
///
/// Cancels keep coming, at varying delays, until a writer has seen one (or a
/// generous deadline passes), so the test proves something however fast or slow
/// the machine is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_appends_leave_whole_batches_and_a_working_store() {
    const WRITERS: usize = 6;
    const DEADLINE: Duration = Duration::from_secs(120);
    let app = format!("annals-cancel-{}", EventId::new().as_uuid().simple());
    let (store, schema) = common::store_with(
        PostgresOptions::new()
            .max_connections(6)
            .application_name(&app)
            .operation_timeout(Duration::from_secs(30)),
    )
    .await;
    let mut admin = PgConnection::connect(schema.url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, stop, cancelled) =
                (store.clone(), Arc::clone(&stop), Arc::clone(&cancelled));
            tokio::spawn(async move {
                let stream = StreamId::new(format!("c{w}")).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let batch = (0..20)
                        .map(|n| NewEvent::new("T", format!("{i}.{n}")))
                        .collect();
                    i += 1;
                    if let Err(e) = store.append(&stream, ExpectedVersion::Any, batch).await {
                        // A cancelled statement is reported as a timeout.
                        assert!(matches!(e, Error::Timeout(_)), "{e}");
                        cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut delay_ms = 0_u64;
    let mut cancels = 0_usize;
    while cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < DEADLINE,
            "{cancels} cancel requests in {DEADLINE:?}, none observed by an append"
        );
        // 1..=37 ms, varying so the cancels land at different points of the
        // appends whatever their speed.
        delay_ms = (delay_ms * 7 + 5) % 37 + 1;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let sent: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND state = 'active'",
        )
        .bind(&app)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        cancels += sent.iter().filter(|s| **s).count();
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    for w in 0..WRITERS {
        let stream = StreamId::new(format!("c{w}")).unwrap();
        let events: Vec<_> = store
            .read_stream(ReadStream::forward(&stream))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(events.len() % 20, 0, "stream c{w} holds a partial batch");
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
    assert!(cancelled.load(Ordering::SeqCst) > 0);
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
