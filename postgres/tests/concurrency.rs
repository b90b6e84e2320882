//! Racing writers and racing connects.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use annals_postgres::{
    EventStore, ExpectedVersion, NewEvent, PostgresEventStore, PostgresOptions, ReadAll,
    ReadStream, StreamId, Version,
};
use annals_testing::postgres::{database_url, drop_schema, unique_schema_name};
use futures::TryStreamExt;
use tokio::sync::Barrier;

/// 16 connections race `Exact` appends on one stream, version after version:
/// exactly one wins each version, every loser gets a `Conflict`, and the stream
/// ends up contiguous with exactly the winners' events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_connections_racing_exact_appends_have_one_winner_per_version() {
    const RACERS: usize = 16;
    const VERSIONS: u64 = 25;
    let (store, schema) = common::store().await;
    let stream = StreamId::new("contended").unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|racer| {
            let (store, stream, barrier) = (store.clone(), stream.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                let mut wins = Vec::new();
                for version in 0..VERSIONS {
                    barrier.wait().await;
                    let event =
                        NewEvent::new("Raced", format!("{{\"racer\":{racer},\"v\":{version}}}"));
                    let id = event.id;
                    match store
                        .append(
                            &stream,
                            ExpectedVersion::Exact(Version::new(version)),
                            vec![event],
                        )
                        .await
                    {
                        Ok(result) => {
                            assert_eq!(result.version, Version::new(version + 1));
                            wins.push((version + 1, id));
                        }
                        Err(e) => assert!(e.is_conflict(), "racer {racer} at {version}: {e}"),
                    }
                    // Everyone waits until this version is settled before the next.
                    barrier.wait().await;
                }
                wins
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    winners.sort();
    let versions: Vec<u64> = winners.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        (1..=VERSIONS).collect::<Vec<_>>(),
        "exactly one winner per version"
    );

    let stored: Vec<_> = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, VERSIONS);
    for (event, (version, id)) in stored.iter().zip(&winners) {
        assert_eq!(event.version.get(), *version);
        assert_eq!(event.id, *id, "the stored event is the winner's");
    }
    drop(store);
    schema.teardown().await;
}

/// Two stores connecting at the same moment to a fresh schema both succeed (one
/// creates and migrates it, the other waits on the migration lock), and they see
/// the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connects_on_a_fresh_schema_both_succeed() {
    let url = database_url().await;
    for _ in 0..5 {
        let name = unique_schema_name();
        let options = PostgresOptions::new().schema(&name).max_connections(2);
        let (a, b) = tokio::join!(
            PostgresEventStore::connect_with(&url, options.clone()),
            PostgresEventStore::connect_with(&url, options.clone()),
        );
        let outcome = async {
            let (a, b) = (a.expect("first connect"), b.expect("second connect"));
            let stream = StreamId::new("s").unwrap();
            a.append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new("A", "{}")],
            )
            .await
            .unwrap();
            let seen: Vec<_> = b.read_all(ReadAll::forward()).try_collect().await.unwrap();
            assert_eq!(seen.len(), 1);
            let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{name}\"._sqlx_migrations"
            )))
            .fetch_one(a.pool())
            .await
            .unwrap();
            let files = std::fs::read_dir(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../migrations/postgres"
            ))
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "sql"))
            })
            .count();
            assert_eq!(
                applied,
                i64::try_from(files).unwrap(),
                "each migration was applied once, in the store's schema"
            );
        };
        let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
        drop_schema(&url, &name).await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

/// A store connecting again to an existing schema does not re-run migrations and
/// keeps the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_keeps_data() {
    let (store, schema) = common::store().await;
    let stream = StreamId::new("kept").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("A", "{}")],
        )
        .await
        .unwrap();
    let again = PostgresEventStore::connect_with(
        schema.url(),
        PostgresOptions::new().schema(schema.name()),
    )
    .await
    .unwrap();
    assert_eq!(
        again.stream_version(&stream).await.unwrap(),
        Version::new(1)
    );
    drop((store, again));
    schema.teardown().await;
}

/// `from_pool` shares an application's pool: the store migrates its schema
/// through it and works like a connected one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_pool_uses_the_given_pool() {
    let url = database_url().await;
    let name = unique_schema_name();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(&url)
        .await
        .unwrap();
    let outcome = async {
        let store =
            PostgresEventStore::from_pool_with(pool.clone(), PostgresOptions::new().schema(&name))
                .await
                .unwrap();
        assert_eq!(store.schema(), name);
        let stream = StreamId::new("pooled").unwrap();
        let result = store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new("A", "{}")],
            )
            .await
            .unwrap();
        assert_eq!(result.version, Version::new(1));
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{name}\".events"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(count, 1);
    };
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    pool.close().await;
    drop_schema(&url, &name).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Every constructor's future is `Send`: connecting runs inside `tokio::spawn`
/// (the migrations used to make it `!Send`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_runs_in_a_spawned_task() {
    let url = database_url().await;
    let name = unique_schema_name();
    let spawned = {
        let (url, name) = (url.clone(), name.clone());
        tokio::spawn(async move {
            let store = PostgresEventStore::connect_with(
                &url,
                PostgresOptions::new().schema(&name).max_connections(2),
            )
            .await?;
            store
                .append(
                    &StreamId::new("spawned").unwrap(),
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new("A", "{}")],
                )
                .await?;
            let pool = store.pool().clone();
            // `from_pool` is spawned too, on the same schema.
            let again = tokio::spawn(async move {
                PostgresEventStore::from_pool_with(pool, PostgresOptions::new().schema(&name)).await
            })
            .await
            .expect("from_pool task")?;
            again
                .stream_version(&StreamId::new("spawned").unwrap())
                .await
        })
    };
    let version = spawned.await.expect("connect task");
    drop_schema(&url, &name).await;
    assert_eq!(version.unwrap(), Version::new(1));
}
