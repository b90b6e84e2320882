//! `LISTEN/NOTIFY`: appends made through another store instance (another
//! process, as far as the subscriber can tell: another pool, another signal)
//! wake a caught-up subscription at once, also when the notification arrives
//! before its events are readable.
//!
//! Every subscription here polls once an hour, so only a notification can
//! deliver within the tests' (generous) deadlines.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use annals_postgres::{
    consume::{Subscribe, SubscribeAll, Subscription, SubscriptionState},
    futures::{Stream, StreamExt, TryStreamExt},
    sqlx::{self, Connection},
    EventStore, ExpectedVersion, NewEvent, PostgresEventStore, PostgresOptions, RecordedEvent,
    StreamId, Version,
};

/// Far longer than any deadline below: a delivery within the deadline came from
/// a notification, never from the poll.
const NEVER: Duration = Duration::from_secs(3600);
/// How long a notified delivery may take on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

async fn other_instance(schema: &annals_testing::postgres::TestSchema) -> PostgresEventStore {
    PostgresEventStore::connect_with(schema.url(), PostgresOptions::new().schema(schema.name()))
        .await
        .expect("a second store instance on the same schema")
}

/// Waits until `store`'s listener has run `LISTEN` on its schema's channel.
async fn until_listening(store: &PostgresEventStore) {
    let listen = format!("LISTEN \"annals.{}\"", store.schema());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let listening: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query = $1")
                .bind(&listen)
                .fetch_one(store.pool())
                .await
                .unwrap();
        if listening > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber's store never ran {listen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the subscription until it is caught up and waiting (nothing may be
/// delivered meanwhile), so that what is appended next can only reach it by a
/// notification.
async fn until_live(events: &mut Subscription<'_>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while events.state() != SubscriptionState::Live {
        assert!(tokio::time::Instant::now() < deadline, "never caught up");
        if let Ok(early) = tokio::time::timeout(Duration::from_millis(20), events.next()).await {
            panic!("nothing new was appended, yet got {early:?}");
        }
    }
}

async fn next(
    events: &mut (impl Stream<Item = annals_postgres::Result<RecordedEvent>> + Unpin),
) -> RecordedEvent {
    tokio::time::timeout(DEADLINE, events.try_next())
        .await
        .expect("delivered within the deadline: the notification woke the subscriber")
        .expect("no error")
        .expect("the subscription does not end")
}

#[tokio::test]
async fn another_instances_appends_wake_a_caught_up_subscription() {
    let (subscriber, schema) = common::store().await;
    let writer = other_instance(&schema).await;
    let mut events = subscriber.subscribe_all(SubscribeAll::from_start().idle_poll(NEVER));
    let stream = StreamId::new("order-1").unwrap();
    until_listening(&subscriber).await;
    for round in 1..=5_u64 {
        until_live(&mut events).await;
        let event = NewEvent::new(format!("Round{round}"), vec![]);
        writer
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
        let got = next(&mut events).await;
        assert_eq!(got.event_type, format!("Round{round}"));
        assert_eq!(got.version.get(), round);
    }
    drop(events);
    drop(writer);
    drop(subscriber);
    schema.teardown().await;
}

#[tokio::test]
async fn a_notification_ahead_of_its_events_is_followed_up() {
    let (subscriber, schema) = common::store().await;
    let writer = other_instance(&schema).await;
    let mut events = subscriber.subscribe_all(SubscribeAll::from_start().idle_poll(NEVER));
    let stream = StreamId::new("order-2").unwrap();

    until_listening(&subscriber).await;
    until_live(&mut events).await;
    writer
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Warmup", vec![])],
        )
        .await
        .unwrap();
    assert_eq!(next(&mut events).await.event_type, "Warmup");

    // An older transaction of the same database holds the next event back: its
    // NOTIFY arrives, the subscriber reads, and finds nothing readable yet.
    let mut blocker = sqlx::PgConnection::connect(schema.url()).await.unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .unwrap();
    until_live(&mut events).await;
    writer
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new("HeldBack", vec![])],
        )
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(
        early.is_err(),
        "nothing is delivered while an older transaction is open, got {early:?}"
    );

    // No further append and no poll: the subscriber must still be watching.
    tx.commit().await.unwrap();
    let got = next(&mut events).await;
    assert_eq!(got.event_type, "HeldBack");
    assert_eq!(got.version.get(), 2);
    drop(events);
    drop(writer);
    drop(subscriber);
    schema.teardown().await;
}
