//! Positions come from transaction ids (see the migration). These tests pin the
//! parts of that scheme a user can observe: positions start small whatever the
//! cluster's age, a normal reconnect never moves the clock, and a log copied in
//! from a cluster whose transaction ids are higher (dump/restore, logical
//! replication) is repaired on connect — every restored event readable, new
//! positions above all of them.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use annals_postgres::{
    EventStore, ExpectedVersion, NewEvent, PostgresEventStore, PostgresOptions, ReadAll, StreamId,
};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const SLOT: u64 = 1 << 20;

async fn positions(store: &PostgresEventStore) -> Vec<u64> {
    store
        .read_all(ReadAll::forward())
        .map_ok(|e| e.position.get())
        .try_collect()
        .await
        .unwrap()
}

async fn offset(admin: &mut PgConnection, schema: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT xid_offset FROM \"{schema}\".position_clock"
    )))
    .fetch_one(admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn positions_start_just_above_one_slot_and_a_reconnect_keeps_the_clock() {
    let (store, schema) = common::store().await;
    let stream = StreamId::new("clock").unwrap();
    let first = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("A", "1"), NewEvent::new("A", "2")],
        )
        .await
        .unwrap();
    let p = first.positions.iter().map(|p| p.get()).collect::<Vec<_>>();
    // Counted from the schema's creation: a young schema has small positions, and
    // a batch occupies consecutive positions of its transaction's slot.
    assert!(p[0] > SLOT && p[0] < 1_000 * SLOT, "{p:?}");
    assert_eq!(p[1], p[0] + 1);
    assert_eq!(p[0] % SLOT, 1, "a batch starts at index 1 of its slot");

    let mut admin = PgConnection::connect(schema.url()).await.unwrap();
    let before = offset(&mut admin, schema.name()).await;
    let again = PostgresEventStore::connect_with(
        schema.url(),
        PostgresOptions::new().schema(schema.name()),
    )
    .await
    .unwrap();
    assert_eq!(offset(&mut admin, schema.name()).await, before);
    let next = again
        .append(&stream, ExpectedVersion::Any, vec![NewEvent::new("A", "3")])
        .await
        .unwrap();
    assert!(next.positions[0] > first.positions[1]);
    assert_eq!(positions(&again).await.len(), 3);
    admin.close().await.unwrap();
    drop((store, again));
    schema.teardown().await;
}

/// What a restore from an older, busier cluster leaves behind: three rows of
/// stream `restored` (versions from `first_version`) whose positions come from
/// transaction ids this cluster has not reached yet. Returns the first one's
/// slot base.
async fn insert_restored_rows(admin: &mut PgConnection, schema: &str, first_version: i64) -> u64 {
    let far = 5_000_000_000u64 * SLOT;
    for (i, position) in [far + 1, far + 2, far + 7 * SLOT + 1]
        .into_iter()
        .enumerate()
    {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".events (position, event_id, stream_id, version, event_type, \
             content_type, payload, metadata) \
             VALUES ($1, gen_random_uuid(), 'restored', $2, 'A', 'application/json', '\\x31', '{{}}')"
        )))
        .bind(i64::try_from(position).unwrap())
        .bind(i64::try_from(i).unwrap() + first_version)
        .execute(&mut *admin)
        .await
        .unwrap();
    }
    far
}

/// The same when such rows come on a later page of a read (fetched ahead while
/// the caller handles the page before): the read returns every event below
/// them, then fails the same way, never ending as if the log ended there.
#[tokio::test]
async fn rows_ahead_of_the_clock_on_a_later_page_fail_the_read() {
    let (store, schema) = common::store_with(
        PostgresOptions::new()
            .read_settle_timeout(std::time::Duration::from_millis(200))
            .page_size(1),
    )
    .await;
    let stream = StreamId::new("restored").unwrap();
    let local: Vec<NewEvent> = (0..6).map(|i| NewEvent::new("A", format!("{i}"))).collect();
    store
        .append(&stream, ExpectedVersion::NoStream, local)
        .await
        .unwrap();
    let mut admin = PgConnection::connect(schema.url()).await.unwrap();
    insert_restored_rows(&mut admin, schema.name(), 7).await;
    // Pages of 1, 2, 4 rows: the third page holds the last three local events
    // and stops at the first restored row; the fourth starts there.
    let mut read = store.read_all(ReadAll::forward());
    for version in 1..=6 {
        let event = read.try_next().await.unwrap().unwrap();
        assert_eq!(event.version.get(), version);
    }
    let err = read.try_next().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("ahead of this cluster's transaction ids"),
        "{err}"
    );
    drop(read);
    admin.close().await.unwrap();
    drop(store);
    schema.teardown().await;
}

#[tokio::test]
async fn a_log_from_a_cluster_with_higher_transaction_ids_is_repaired_on_connect() {
    let (store, schema) = common::store_with(
        PostgresOptions::new().read_settle_timeout(std::time::Duration::from_millis(200)),
    )
    .await;
    let stream = StreamId::new("restored").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("A", "local")],
        )
        .await
        .unwrap();
    let mut admin = PgConnection::connect(schema.url()).await.unwrap();
    let far = insert_restored_rows(&mut admin, schema.name(), 2).await;
    // Before the repair those rows are ahead of the cluster's transaction ids: a
    // reader never skips them and never ends as if the log ended before them —
    // it returns the event below them, then fails, saying what to do.
    let mut read = store.read_all(ReadAll::forward());
    let first_seen = read.try_next().await.unwrap().unwrap();
    assert_eq!(first_seen.event_type, "A");
    let err = read.try_next().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("ahead of this cluster's transaction ids"),
        "{err}"
    );
    drop(read);
    let err = store
        .read_all(ReadAll::backward())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("ahead of this cluster's transaction ids"),
        "{err}"
    );

    let repaired = PostgresEventStore::connect_with(
        schema.url(),
        PostgresOptions::new().schema(schema.name()),
    )
    .await
    .unwrap();
    let seen = positions(&repaired).await;
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(&seen[1..], &[far + 1, far + 2, far + 7 * SLOT + 1]);
    // New appends — through either store, the clock lives in the database —
    // continue above the restored log.
    for s in [&store, &repaired] {
        let result = s
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new("A", "new")],
            )
            .await
            .unwrap();
        assert!(result.positions[0].get() > far + 8 * SLOT, "{result:?}");
    }
    let seen = positions(&repaired).await;
    assert_eq!(seen.len(), 6);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    admin.close().await.unwrap();
    drop((store, repaired));
    schema.teardown().await;
}
