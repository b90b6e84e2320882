//! Table prefixes (`PostgresOptions::table_prefix`): stores with different
//! prefixes in one schema are fully independent, and hostile prefixes are
//! refused before anything is created.
//!
//! * `conformance`: the whole conformance suite on a store with prefix `two_`,
//!   in a schema where a default-prefix store and a `one_` store already hold
//!   events (the suite needs an empty store: that proves the independence);
//! * after heavy use of `two_` (races, multi-stream appends, the outbox,
//!   snapshots, checkpoints, leases, queries), the other two read back exactly
//!   what they held;
//! * hostile prefixes are `InvalidInput` and create nothing.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use annals_postgres::{
    consume::{CheckpointStore, LeaseProvider},
    futures::TryStreamExt,
    sqlx, AppendRequest, EventId, EventQuery, EventStore, ExpectedVersion, Metadata, NewEvent,
    Position, PostgresEventStore, PostgresOptions, ReadAll, ReadStream, RecordedEvent, Snapshot,
    StreamId, Version,
};
use annals_testing::postgres::{drop_schema, unique_schema_name, TestSchema};

/// Generous bound for anything awaited.
const DEADLINE: Duration = Duration::from_secs(60);

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn event(event_type: &str) -> NewEvent {
    NewEvent::new(event_type, b"{}".to_vec())
}

fn options(prefix: &str) -> PostgresOptions {
    PostgresOptions::new()
        .table_prefix(prefix)
        .max_connections(8)
}

/// Writes a little of everything to `store`, tagged with `tag`: the same
/// stream ids, snapshot streams and checkpoint names in every store.
async fn seed(store: &PostgresEventStore, tag: &str, extra: usize) {
    let order = stream("order-1");
    let mut events: Vec<NewEvent> = (0..2 + extra)
        .map(|i| {
            event(&format!("{tag}Placed{i}"))
                .with_metadata(Metadata::new().with_correlation_id("corr-1"))
        })
        .collect();
    events[0] = events[0].clone().with_id(shared_id());
    store
        .append(&order, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    store
        .commit(
            AppendRequest::new()
                .append(&stream("order-2"), ExpectedVersion::Any, vec![event(tag)])
                .append(&stream("stock"), ExpectedVersion::Any, vec![event(tag)])
                .require(&stream("prices"), ExpectedVersion::NoStream),
        )
        .await
        .unwrap();
    store
        .save_snapshot(
            &order,
            Snapshot::new(Version::new(2), format!("{tag}-state").into_bytes()),
        )
        .await
        .unwrap();
    store
        .checkpoints()
        .save("relay", Position::new(7 + extra as u64))
        .await
        .unwrap();
}

/// One event id used in every store: idempotency is per store.
fn shared_id() -> EventId {
    EventId::from_uuid(sqlx::types::Uuid::from_u128(0x5eed))
}

mod conformance {
    use super::*;

    /// The `two_` store, in a schema where the default-prefix store and the
    /// `one_` store already hold events.
    async fn fixture() -> annals_testing::Fixture {
        let schema = TestSchema::create().await;
        for (prefix, extra) in [("", 0), ("one_", 1)] {
            let neighbour = common::store_in(&schema, options(prefix).max_connections(2)).await;
            seed(
                &neighbour,
                if prefix.is_empty() { "zero" } else { prefix },
                extra,
            )
            .await;
            neighbour.pool().close().await;
        }
        let store = common::store_in(&schema, options("two_").max_connections(20)).await;
        assert_eq!(store.table_prefix(), "two_");
        annals_testing::Fixture::new(store).with_teardown(schema.teardown())
    }

    annals_testing::conformance_suite!(fixture());
}

/// Everything a store holds that `seed` and the tests look at.
#[derive(Debug, PartialEq)]
struct Held {
    log: Vec<RecordedEvent>,
    streams: Vec<(String, Version, Vec<RecordedEvent>)>,
    snapshot: Option<Snapshot>,
    checkpoint: Option<Position>,
    shared: RecordedEvent,
    correlated: Vec<RecordedEvent>,
}

async fn held(store: &PostgresEventStore) -> Held {
    let log: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    let mut streams = Vec::new();
    for name in ["order-1", "order-2", "stock", "prices"] {
        let s = stream(name);
        let version = store.stream_version(&s).await.unwrap();
        let events = store
            .read_stream(ReadStream::forward(&s))
            .try_collect()
            .await
            .unwrap();
        streams.push((name.to_owned(), version, events));
    }
    Held {
        log,
        streams,
        snapshot: store.load_snapshot(&stream("order-1")).await.unwrap(),
        checkpoint: store.checkpoints().load("relay").await.unwrap(),
        shared: store.get_event(shared_id()).await.unwrap(),
        correlated: store
            .query(EventQuery::new().correlation_id("corr-1"))
            .try_collect()
            .await
            .unwrap(),
    }
}

/// Appends to `order-1` of `store` from many tasks at once, each expecting the
/// version it last read: races on the (prefixed) unique constraint must come
/// back as conflicts, nothing else.
async fn race(store: &PostgresEventStore) -> usize {
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let order = stream("order-1");
            let mut written = 0;
            for i in 0..10 {
                let version = store.stream_version(&order).await.unwrap();
                match store
                    .append(
                        &order,
                        ExpectedVersion::Exact(version),
                        vec![event(&format!("Raced{task}-{i}"))],
                    )
                    .await
                {
                    Ok(_) => written += 1,
                    Err(e) if e.is_conflict() => {}
                    Err(e) => panic!("a lost race must be a conflict: {e}"),
                }
            }
            written
        }));
    }
    let mut written = 0;
    for task in tasks {
        written += task.await.unwrap();
    }
    written
}

#[tokio::test]
async fn heavy_use_of_one_prefix_leaves_the_others_exactly_as_they_were() {
    let schema = TestSchema::create().await;
    let zero = common::store_in(&schema, options("")).await;
    let one = common::store_in(&schema, options("one_")).await;
    seed(&zero, "zero", 0).await;
    seed(&one, "one", 1).await;
    let zero_before = held(&zero).await;
    let one_before = held(&one).await;
    // Each read back its own, though the ids and names are the same.
    assert_eq!(zero_before.log.len(), 4);
    assert_eq!(one_before.log.len(), 5);
    assert_eq!(zero_before.shared.event_type, "zeroPlaced0");
    assert_eq!(one_before.shared.event_type, "onePlaced0");
    assert_eq!(zero_before.checkpoint, Some(Position::new(7)));
    assert_eq!(one_before.checkpoint, Some(Position::new(8)));
    assert_eq!(one_before.correlated.len(), 3);

    let two = common::store_in(&schema, options("two_").max_connections(20)).await;
    assert!(two
        .read_all(ReadAll::forward())
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .is_empty());
    seed(&two, "two", 5).await;

    // Races (the unique-constraint path), plain and multi-stream appends.
    let raced = race(&two).await;
    assert!(raced > 0);
    for i in 0..20 {
        two.commit(
            AppendRequest::new()
                .append(
                    &stream("order-2"),
                    ExpectedVersion::Any,
                    vec![event("More")],
                )
                .append(
                    &stream(&format!("two-{i}")),
                    ExpectedVersion::NoStream,
                    vec![event("New")],
                )
                .require(&stream("prices"), ExpectedVersion::NoStream),
        )
        .await
        .unwrap();
    }
    // A re-sent event id is idempotent within `two_` only.
    let resent = two
        .append(
            &stream("order-1"),
            ExpectedVersion::Any,
            vec![event("Different").with_id(shared_id())],
        )
        .await;
    assert!(resent.is_err(), "same id, other content in the same store");

    // The outbox: two appends in one transaction (the second one collides with
    // the first's positions on the prefixed primary key, and continues them).
    let mut tx = two.pool().begin().await.unwrap();
    two.commit_in(
        &mut tx,
        AppendRequest::new().append(&stream("stock"), ExpectedVersion::Any, vec![event("In")]),
    )
    .await
    .unwrap();
    two.append_in(
        &mut tx,
        &stream("stock"),
        ExpectedVersion::Any,
        vec![event("In2")],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Snapshots and checkpoints with the same names.
    let order = stream("order-1");
    two.save_snapshot(&order, Snapshot::new(Version::new(9), b"two-9".to_vec()))
        .await
        .unwrap();
    two.delete_snapshot(&order).await.unwrap();
    two.save_snapshot(&order, Snapshot::new(Version::new(3), b"two-3".to_vec()))
        .await
        .unwrap();
    two.checkpoints()
        .save("relay", Position::new(1_000))
        .await
        .unwrap();
    two.checkpoints().reset("relay").await.unwrap();
    two.checkpoints()
        .save("relay", Position::new(99))
        .await
        .unwrap();

    // Leases of the same name are held by two stores at once.
    let zero_lease = tokio::time::timeout(DEADLINE, zero.leases().acquire("relay"))
        .await
        .unwrap()
        .unwrap();
    let two_lease = tokio::time::timeout(DEADLINE, two.leases().acquire("relay"))
        .await
        .expect("a lease of another prefix does not block this one")
        .unwrap();
    drop((zero_lease, two_lease));

    // `two_` sees only its own.
    let two_now = held(&two).await;
    assert_eq!(two_now.shared.event_type, "twoPlaced0");
    assert_eq!(two_now.checkpoint, Some(Position::new(99)));
    assert_eq!(two_now.snapshot.unwrap().state, b"two-3");
    assert_eq!(two_now.correlated.len(), 7);
    assert_eq!(
        two_now.streams[0].1,
        Version::new(7 + u64::try_from(raced).unwrap())
    );
    let two_ids: BTreeSet<EventId> = two_now.log.iter().map(|e| e.id).collect();
    let zero_ids: BTreeSet<EventId> = zero_before.log.iter().map(|e| e.id).collect();
    assert_eq!(
        two_ids.intersection(&zero_ids).count(),
        1,
        "only the shared id"
    );

    // The others are exactly as they were, also on new connections.
    assert_eq!(held(&zero).await, zero_before);
    assert_eq!(held(&one).await, one_before);
    let zero_again = common::store_in(&schema, options("")).await;
    let one_again = common::store_in(&schema, options("one_").migrate(false)).await;
    let two_again = common::store_in(&schema, options("two_").migrate(false)).await;
    assert_eq!(held(&zero_again).await, zero_before);
    assert_eq!(held(&one_again).await, one_before);
    assert_eq!(held(&two_again).await.log, two_now.log);

    // Every object of the default schema exists once per prefix, and the
    // migrations are recorded per prefix.
    let relations: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 UNION ALL \
         SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = $1",
    )
    .bind(schema.name())
    .fetch_all(zero.pool())
    .await
    .unwrap();
    let relations: BTreeSet<String> = relations.into_iter().collect();
    let defaults: Vec<&String> = relations
        .iter()
        .filter(|r| !r.starts_with("one_") && !r.starts_with("two_"))
        .collect();
    assert!(defaults.len() > 20, "{defaults:?}");
    for name in &defaults {
        for prefix in ["one_", "two_"] {
            let prefixed = format!("{prefix}{name}");
            assert!(
                relations.contains(&prefixed),
                "{prefixed} missing: {relations:?}"
            );
        }
    }
    assert_eq!(relations.len(), defaults.len() * 3, "{relations:?}");
    for table in [
        "_sqlx_migrations",
        "one__sqlx_migrations",
        "two__sqlx_migrations",
    ] {
        let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{}\".{table} WHERE success",
            schema.name()
        )))
        .fetch_one(zero.pool())
        .await
        .unwrap();
        assert_eq!(applied, embedded_migrations(), "{table}");
    }

    for store in [zero, one, two, zero_again, one_again, two_again] {
        store.pool().close().await;
    }
    schema.teardown().await;
}

/// How many migrations the crate embeds (`migrations/postgres/*.sql`).
fn embedded_migrations() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/postgres");
    let files = std::fs::read_dir(dir)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "sql")
        })
        .count();
    i64::try_from(files).unwrap()
}

/// The objects (relations, functions) in `schema`, and whether it exists.
async fn objects_in(url: &str, schema: &str) -> (bool, i64) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&pool)
            .await
            .unwrap();
    let objects: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1) \
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = $1)",
    )
    .bind(schema)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    (exists, objects)
}

#[tokio::test]
async fn hostile_prefixes_are_invalid_input_and_create_nothing() {
    let existing = TestSchema::create().await;
    let fresh = unique_schema_name();
    let long = "a".repeat(33);
    let hostile = [
        "x\"y",
        "x;DROP TABLE events",
        "a'b",
        long.as_str(),
        "Billing",
        "1abc",
        "a b",
        "a-b",
        "a.b",
        "é",
    ];
    for bad in hostile {
        for schema in [existing.name(), fresh.as_str()] {
            let options = PostgresOptions::new().schema(schema).table_prefix(bad);
            assert!(options.validate().unwrap_err().is_invalid_input(), "{bad}");
            let err = PostgresEventStore::connect_with(existing.url(), options.clone())
                .await
                .unwrap_err();
            assert!(err.is_invalid_input(), "{bad}: {err}");
            let pool = sqlx::PgPool::connect_lazy(existing.url()).unwrap();
            let err = PostgresEventStore::from_pool_with(pool.clone(), options)
                .await
                .unwrap_err();
            assert!(err.is_invalid_input(), "{bad}: {err}");
            pool.close().await;
        }
    }
    assert_eq!(objects_in(existing.url(), existing.name()).await, (true, 0));
    assert_eq!(objects_in(existing.url(), &fresh).await, (false, 0));
    // In case a check above failed after all.
    drop_schema(existing.url(), &fresh).await;
    existing.teardown().await;
}

#[tokio::test]
async fn the_longest_prefix_works() {
    let prefix = "p".repeat(32);
    let (store, schema) = common::store_with(options(&prefix)).await;
    assert_eq!(store.table_prefix(), prefix);
    seed(&store, "long", 0).await;
    let held = held(&store).await;
    assert_eq!(held.log.len(), 4);
    assert_eq!(held.checkpoint, Some(Position::new(7)));
    store.pool().close().await;
    schema.teardown().await;
}
