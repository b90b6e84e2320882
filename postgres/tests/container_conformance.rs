//! The PostgreSQL backend against a real container started by
//! testcontainers-modules (`Postgres`): a representative subset of the
//! conformance suite plus an ordering check.
//!
//! One container per test binary, a fresh schema per case (dropped after it).
//! The image is chosen by the one launcher, `annals_testing::postgres::image`:
//! `ANNALS_TEST_PG_IMAGE=name:tag` if set; else the official `postgres:15-alpine`
//! if present or pullable; else the offline `annals-postgres:15` built by
//! `scripts/postgres-image.sh`.
//! Without a Docker engine these tests fail and say how to get one.
//! The whole suite runs against a plain server in `tests/conformance.rs`; this
//! file proves the testcontainers path, so it stays lean.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use annals_testing::postgres as support;

use std::{collections::HashMap, sync::Arc};

use annals_core::{EventStore, ExpectedVersion, NewEvent, Position, ReadAll, StreamId, Version};
use annals_postgres::{PostgresEventStore, PostgresOptions};
use annals_testing::{cases, run_case, Fixture};
use futures::TryStreamExt;
use sqlx::Connection;

/// A store on a fresh schema of the shared container; the schema is dropped
/// after the case, pass or fail.
async fn fixture() -> Fixture {
    let pg = support::shared_pg();
    let schema = support::fresh_schema("ctc");
    let store = PostgresEventStore::connect_with(
        &pg.url,
        PostgresOptions::new().schema(&schema).max_connections(8),
    )
    .await
    .unwrap_or_else(|e| panic!("connecting to the container at {}: {e}", pg.url));
    let url = pg.url.clone();
    Fixture::new(store).with_teardown(async move {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    })
}

macro_rules! container_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            run_case(fixture(), cases::$case).await;
        }
    )*};
}

container_cases!(
    first_event_has_version_one,
    versions_are_contiguous,
    expected_exact_fails_when_behind_or_ahead,
    conflict_reports_stream_expected_and_actual,
    failed_append_writes_nothing,
    invalid_event_fields_are_rejected_and_nothing_written,
    binary_and_unicode_payloads_round_trip,
    read_stream_from_version,
    read_all_returns_everything_in_position_order,
    read_all_filters_by_stream_prefix,
    positions_strictly_increase_across_streams,
    recorded_event_round_trips_all_fields,
    get_event_by_id,
    idempotent_reappend_returns_original_result,
    reused_event_id_with_different_content_is_rejected,
    snapshot_newer_replaces_older,
    large_batch_is_atomic,
    concurrent_exact_appends_have_one_winner_per_version,
    concurrent_appends_to_different_streams_all_succeed,
);

/// The container runs the image that was asked for, and it is PostgreSQL 15.
#[tokio::test]
async fn container_serves_the_selected_postgres_image() {
    let pg = support::shared_pg();
    let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(version.starts_with("15"), "server_version {version}");
    let image = support::docker(&["inspect", "--format", "{{.Config.Image}}", &pg.id]).unwrap();
    let (name, tag) = support::image();
    assert_eq!(image, format!("{name}:{tag}"));
}

/// Ordering across concurrent writers: `read_all` returns every event once, in
/// strictly increasing position order, and each stream's events in version
/// order with the positions its appends reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_all_orders_concurrent_writers_consistently() {
    run_case(fixture(), |store: Arc<dyn EventStore>| async move {
        const WRITERS: usize = 6;
        const APPENDS: usize = 15;
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("order-{w}")).unwrap();
                let mut reported = Vec::new();
                for i in 0..APPENDS {
                    let events = (0..1 + i % 3)
                        .map(|k| NewEvent::new("Ordered", format!("{w}:{i}:{k}").into_bytes()))
                        .collect();
                    let result = store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                    reported.extend(result.positions);
                }
                (stream, reported)
            }));
        }
        let mut reported: HashMap<String, Vec<Position>> = HashMap::new();
        for task in tasks {
            let (stream, positions) = task.await.unwrap();
            reported.insert(stream.as_str().to_owned(), positions);
        }

        let all: Vec<_> = store
            .read_all(ReadAll::forward())
            .try_collect()
            .await
            .unwrap();
        let expected_total: usize = reported.values().map(Vec::len).sum();
        assert_eq!(all.len(), expected_total);
        assert!(
            all.windows(2).all(|w| w[0].position < w[1].position),
            "read_all positions must strictly increase"
        );
        let mut next_version: HashMap<&str, u64> = HashMap::new();
        let mut seen: HashMap<&str, Vec<Position>> = HashMap::new();
        for event in &all {
            let v = next_version.entry(event.stream_id.as_str()).or_insert(1);
            assert_eq!(event.version, Version::new(*v), "versions in stream order");
            *v += 1;
            seen.entry(event.stream_id.as_str())
                .or_default()
                .push(event.position);
        }
        for (stream, positions) in &reported {
            assert_eq!(
                seen.get(stream.as_str()),
                Some(positions),
                "stream {stream}"
            );
        }
    })
    .await;
}
