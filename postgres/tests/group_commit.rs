//! Group commit on PostgreSQL (`group.rs`): one-stream appends that arrive
//! while another is in flight share one statement and one commit, and each
//! keeps its own semantics (version check, conflict, idempotency, atomicity,
//! gap-safe positions).
//!
//! The stores have a pool of 2, so one append runs alone at a time and one
//! group at a time (half the pool). To make groups form deterministically, a
//! test holds `LOCK TABLE … IN SHARE MODE` on the store's events table (no write, no transaction id, so other
//! tests' gap-safe reads are not held back): the first append runs alone and
//! waits for the lock, the next one becomes a group of one that waits too, and
//! the appends of interest queue behind them until the test lets go. Every
//! wait is for a condition, with a generous deadline.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::print_stdout
)]

mod common;

use std::time::{Duration, Instant};

use annals_postgres::{
    __GroupStats as GroupStats, EventId, EventStore, ExpectedVersion, NewEvent, PostgresEventStore,
    PostgresOptions, ReadAll, RecordedEvent, StreamId, Version,
};
use annals_testing::{child::Child, postgres::TestSchema};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::task::JoinHandle;

type Appended = annals_postgres::Result<annals_postgres::AppendResult>;

/// A pool of two: one append alone and one group in flight at a time.
fn options() -> PostgresOptions {
    PostgresOptions::new().max_connections(2)
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Happened", format!(r#"{{"n":{n}}}"#))
}

/// Waits (generously) until `done` holds for the store's group statistics.
async fn wait_for(store: &PostgresEventStore, what: &str, done: impl Fn(GroupStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = store.__group_stats();
        if done(stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The lock that holds every append of the store in `schema` (see the module docs).
struct Hold(PgConnection);

impl Hold {
    async fn take(schema: &TestSchema) -> Hold {
        let mut conn = PgConnection::connect(schema.url()).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "BEGIN; LOCK TABLE \"{}\".events IN SHARE MODE",
            schema.name()
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        Hold(conn)
    }

    async fn release(mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.0)
            .await
            .unwrap();
        self.0.close().await.unwrap();
    }
}

fn spawn_append(
    store: &PostgresEventStore,
    to: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> JoinHandle<Appended> {
    let store = store.clone();
    let to = stream(to);
    tokio::spawn(async move { store.append(&to, expected, events).await })
}

/// Holds the store's appends and puts one append in flight alone and one
/// group of one in flight, both waiting for the lock; appends made next queue.
async fn hold_and_fill(
    store: &PostgresEventStore,
    schema: &TestSchema,
) -> (Hold, Vec<JoinHandle<Appended>>) {
    hold_and_fill_with(store, schema, 1).await
}

/// [`hold_and_fill`] for a store that runs `alone` appends alone at a time:
/// the handles of the `alone` appends in flight alone (`alone-{n}`), then the
/// group of one's (`grouped`).
async fn hold_and_fill_with(
    store: &PostgresEventStore,
    schema: &TestSchema,
    alone: u64,
) -> (Hold, Vec<JoinHandle<Appended>>) {
    let hold = Hold::take(schema).await;
    let mut handles = Vec::new();
    for n in 0..alone {
        handles.push(spawn_append(
            store,
            &format!("alone-{n}"),
            ExpectedVersion::NoStream,
            vec![event(n)],
        ));
        wait_for(store, "the next append alone", |s| s.alone as u64 == n + 1).await;
    }
    let groups = store.__group_stats().groups;
    handles.push(spawn_append(
        store,
        "grouped",
        ExpectedVersion::NoStream,
        vec![event(0)],
    ));
    wait_for(store, "a group of one in flight", |s| {
        s.groups == groups + 1 && s.queued == 0
    })
    .await;
    (hold, handles)
}

async fn finish(handles: Vec<JoinHandle<Appended>>) {
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
}

async fn read_stream(store: &PostgresEventStore, name: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(annals_postgres::ReadStream::forward(&stream(name)))
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_half_conflicting_only_the_conflicting_fail() {
    let (store, schema) = common::store_with(options()).await;
    for i in 0..16 {
        store
            .append(
                &stream(&format!("s-{i}")),
                ExpectedVersion::NoStream,
                vec![event(1)],
            )
            .await
            .unwrap();
    }
    let (hold, first) = hold_and_fill(&store, &schema).await;
    let groups = store.__group_stats().groups;
    let members: Vec<_> = (0..16)
        .map(|i| {
            // Odd streams expect a version they are not at.
            let expected = if i % 2 == 0 { 1 } else { 7 };
            spawn_append(
                &store,
                &format!("s-{i}"),
                ExpectedVersion::Exact(Version::new(expected)),
                vec![event(2), event(3)],
            )
        })
        .collect();
    wait_for(&store, "16 queued appends", |s| s.queued == 16).await;
    hold.release().await;
    finish(first).await;

    for (i, member) in members.into_iter().enumerate() {
        let result = member.await.unwrap();
        if i % 2 == 0 {
            let appended = result.unwrap_or_else(|e| panic!("s-{i}: {e}"));
            assert_eq!(appended.version, Version::new(3));
            assert_eq!(appended.positions.len(), 2);
            assert!(appended.positions[0] < appended.positions[1]);
        } else {
            match result {
                Err(annals_postgres::Error::Conflict { actual, .. }) => {
                    assert_eq!(actual, Version::new(1), "s-{i}");
                }
                other => panic!("s-{i}: expected a conflict, got {other:?}"),
            }
        }
    }
    let stats = store.__group_stats();
    assert!(stats.groups > groups, "{stats:?}");
    assert_eq!(
        stats.largest, 16,
        "the 16 appends shared one group: {stats:?}"
    );

    for i in 0..16 {
        let events = read_stream(&store, &format!("s-{i}")).await;
        let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
        let want: Vec<u64> = if i % 2 == 0 { vec![1, 2, 3] } else { vec![1] };
        assert_eq!(versions, want, "s-{i}");
    }
    // The log in order, every event once.
    let all: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 16 + 8 * 2 + 2);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    // A member's events are consecutive in the log.
    for i in (0..16).step_by(2) {
        let at: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, e)| e.stream_id.as_str() == format!("s-{i}") && e.version.get() > 1)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(at.len(), 2);
        assert_eq!(at[1], at[0] + 1, "s-{i}");
    }
    schema.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_with_bad_input_fails_alone() {
    let (store, schema) = common::store_with(options()).await;
    let taken = EventId::new();
    store
        .append(
            &stream("owner"),
            ExpectedVersion::NoStream,
            vec![event(1).with_id(taken)],
        )
        .await
        .unwrap();
    let (hold, first) = hold_and_fill(&store, &schema).await;
    let mut members: Vec<_> = (0..7)
        .map(|i| {
            spawn_append(
                &store,
                &format!("ok-{i}"),
                ExpectedVersion::NoStream,
                vec![event(i)],
            )
        })
        .collect();
    // The same id with other content: core rules it invalid input.
    members.push(spawn_append(
        &store,
        "thief",
        ExpectedVersion::NoStream,
        vec![event(99).with_id(taken)],
    ));
    wait_for(&store, "8 queued appends", |s| s.queued == 8).await;
    hold.release().await;
    finish(first).await;

    let bad = members.pop().unwrap().await.unwrap();
    assert!(
        matches!(bad, Err(annals_postgres::Error::InvalidInput(_))),
        "{bad:?}"
    );
    for (i, member) in members.into_iter().enumerate() {
        member
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("ok-{i}: {e}"));
        assert_eq!(read_stream(&store, &format!("ok-{i}")).await.len(), 1);
    }
    assert!(read_stream(&store, "thief").await.is_empty());
    assert_eq!(store.__group_stats().largest, 8);
    let owner = read_stream(&store, "owner").await;
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0].payload, br#"{"n":1}"#);
    schema.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_members_are_all_or_nothing_and_the_store_stays_usable() {
    let (store, schema) = common::store_with(options()).await;

    // Cancelled while its group is in flight: written whole.
    let hold = Hold::take(&schema).await;
    let alone = spawn_append(&store, "first", ExpectedVersion::Any, vec![event(0)]);
    wait_for(&store, "an append in flight alone", |s| s.alone == 1).await;
    let three = vec![event(1), event(2), event(3)];
    let victim = spawn_append(&store, "victim", ExpectedVersion::NoStream, three);
    wait_for(&store, "the group in flight", |s| {
        s.queued == 0 && s.groups == 1
    })
    .await;
    victim.abort();
    assert!(victim.await.unwrap_err().is_cancelled());
    hold.release().await;
    alone.await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let written = loop {
        // The group runs on after its caller went away: wait for its commit.
        let events = read_stream(&store, "victim").await;
        if !events.is_empty() || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(written.len(), 3, "all of the cancelled append, not a part");

    // Cancelled before its group started: skipped, nothing written.
    let (hold, first) = hold_and_fill(&store, &schema).await;
    let skipped = spawn_append(&store, "skipped", ExpectedVersion::NoStream, vec![event(1)]);
    let kept = spawn_append(&store, "kept", ExpectedVersion::NoStream, vec![event(1)]);
    wait_for(&store, "2 queued appends", |s| s.queued == 2).await;
    skipped.abort();
    assert!(skipped.await.unwrap_err().is_cancelled());
    hold.release().await;
    finish(first).await;
    kept.await.unwrap().unwrap();
    assert!(read_stream(&store, "skipped").await.is_empty());

    // The store goes on.
    store
        .append(
            &stream("victim"),
            ExpectedVersion::Exact(Version::new(3)),
            vec![event(4)],
        )
        .await
        .unwrap();
    store
        .append(
            &stream("skipped"),
            ExpectedVersion::NoStream,
            vec![event(1)],
        )
        .await
        .unwrap();
    let all: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    // first, victim ×3, first, second, kept, victim, skipped.
    assert_eq!(all.len(), 1 + 3 + 1 + 1 + 1 + 1 + 1);
    schema.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_to_one_stream_go_in_separate_groups_in_order() {
    let (store, schema) = common::store_with(options()).await;
    let (hold, first) = hold_and_fill(&store, &schema).await;
    // Four appends to one stream (each expecting anything) and one elsewhere.
    let mut same = Vec::new();
    for n in 0..4 {
        same.push(spawn_append(
            &store,
            "hot",
            ExpectedVersion::Any,
            vec![event(n)],
        ));
        wait_for(&store, "the next queued append", |s| {
            s.queued == n as usize + 1
        })
        .await;
    }
    let other = spawn_append(&store, "cold", ExpectedVersion::Any, vec![event(0)]);
    wait_for(&store, "5 queued appends", |s| s.queued == 5).await;
    hold.release().await;
    finish(first).await;
    finish(same).await;
    other.await.unwrap().unwrap();
    let hot = read_stream(&store, "hot").await;
    let payloads: Vec<&[u8]> = hot.iter().map(|e| e.payload.as_slice()).collect();
    // One per group, in arrival order.
    assert_eq!(
        payloads,
        [
            &br#"{"n":0}"#[..],
            br#"{"n":1}"#,
            br#"{"n":2}"#,
            br#"{"n":3}"#
        ]
    );
    assert_eq!(
        store.__group_stats().largest,
        2,
        "{:?}",
        store.__group_stats()
    );
    schema.teardown().await;
}

/// With a pool of ten, four appends run alone, but still only one group is in
/// flight: whatever arrives while it runs waits and becomes the next group
/// (larger groups; see `GROUPS_IN_FLIGHT` in `group.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_group_in_flight_the_rest_form_the_next_group() {
    let (store, schema) = common::store_with(PostgresOptions::new().max_connections(10)).await;
    let (hold, mut handles) = hold_and_fill_with(&store, &schema, 4).await;
    assert_eq!(store.__group_stats().groups, 1);
    for n in 0..10 {
        handles.push(spawn_append(
            &store,
            &format!("queued-{n}"),
            ExpectedVersion::NoStream,
            vec![event(n)],
        ));
    }
    // Were a second group let in flight, it would take these from the queue.
    wait_for(&store, "10 queued appends", |s| s.queued == 10).await;
    assert_eq!(store.__group_stats().groups, 1);
    hold.release().await;
    finish(handles).await;
    let stats = store.__group_stats();
    assert_eq!((stats.groups, stats.largest), (2, 10), "{stats:?}");
    let all: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 4 + 1 + 10);
    schema.teardown().await;
}

/// While a group is in flight, a new append joins the next group even when
/// the slots for appends alone are free: under load every append is grouped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_a_group_is_in_flight_new_appends_queue_even_with_free_slots() {
    let (store, schema) = common::store_with(PostgresOptions::new().max_connections(10)).await;
    let (hold, mut alone) = hold_and_fill_with(&store, &schema, 4).await;
    let grouped = alone.pop().unwrap();
    assert_eq!(store.__group_stats().groups, 1);
    // The appends alone go away (their callers cancelled): four free slots.
    for handle in alone {
        handle.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
    }
    wait_for(&store, "no append alone", |s| s.alone == 0).await;
    let next = spawn_append(&store, "next", ExpectedVersion::NoStream, vec![event(0)]);
    wait_for(&store, "the new append queued", |s| s.queued == 1).await;
    assert_eq!(store.__group_stats().alone, 0);
    hold.release().await;
    finish(vec![grouped, next]).await;
    let stats = store.__group_stats();
    assert_eq!(stats.groups, 2, "{stats:?}");
    assert_eq!(read_stream(&store, "next").await.len(), 1);
    schema.teardown().await;
}

/// A group whose statement never returns is abandoned after the operation
/// timeout, and the queue moves on to the next group. Here the lock holds the
/// group's statement for as long as the test likes and the server has no
/// statement timeout (like a group on a primary that died silently); appends
/// keep arriving, each bounded by its own operation timeout, and a second group
/// must start while the first is still stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_group_is_abandoned_after_the_operation_timeout() {
    // Long enough that `hold_and_fill` is done well within it.
    let bound = Duration::from_secs(5);
    let (store, schema) =
        common::store_with(options().operation_timeout(bound).statement_timeout(None)).await;
    let (hold, mut handles) = hold_and_fill(&store, &schema).await;
    let stuck_since = Instant::now();
    let deadline = stuck_since + Duration::from_secs(60);
    let mut n = 0;
    while store.__group_stats().groups < 2 {
        assert!(
            Instant::now() < deadline,
            "no second group within 60 s of the first getting stuck: {:?}",
            store.__group_stats()
        );
        // A steady trickle of appends, so some are always waiting in the queue.
        handles.push(spawn_append(
            &store,
            &format!("next-{n}"),
            ExpectedVersion::NoStream,
            vec![event(n)],
        ));
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stuck_since.elapsed() >= bound,
        "the first group was abandoned before its bound: {:?}",
        stuck_since.elapsed()
    );
    hold.release().await;
    for handle in handles {
        // Each append either committed or timed out (outcome unknown), nothing else.
        match handle.await.unwrap() {
            Ok(_) | Err(annals_postgres::Error::Timeout(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // The store is usable, and whatever committed is whole and in order.
    let appended = store
        .append(&stream("after"), ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    assert_eq!(appended.version, Version::new(1));
    let all: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    for e in &all {
        assert_eq!(e.version, Version::new(1), "one event per stream: {e:?}");
    }
    let mut ids: Vec<EventId> = all.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "no event twice");
    assert!(all.iter().any(|e| e.stream_id.as_str() == "after"));
    schema.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouping_can_be_turned_off() {
    let (store, schema) = common::store_with(PostgresOptions::new().max_group(1)).await;
    let hold = Hold::take(&schema).await;
    let appends: Vec<_> = (0..4)
        .map(|i| {
            spawn_append(
                &store,
                &format!("s-{i}"),
                ExpectedVersion::NoStream,
                vec![event(i)],
            )
        })
        .collect();
    // Each waits for the lock on its own connection; none queues.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = PgConnection::connect(schema.url()).await.unwrap();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '%INSERT INTO%' AND query LIKE '%' || $1 || '%'",
        )
        .bind(schema.name())
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} appends waiting for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.close().await.unwrap();
    assert_eq!(store.__group_stats(), GroupStats::default());
    hold.release().await;
    finish(appends).await;
    assert_eq!(store.__group_stats().groups, 0);
    schema.teardown().await;
}

const CHILD_SCHEMA_ENV: &str = "ANNALS_PG_GROUP_CHILD_SCHEMA";
const CHILD_URL_ENV: &str = "ANNALS_PG_GROUP_CHILD_URL";
/// Events per append in the child: a half-written append would show as a
/// stream version that is not a multiple of this.
const CHILD_BATCH: u64 = 3;

/// The child: 16 tasks appending 3-event batches to their own streams, as fast
/// as they can, printing `ACK <stream> <version> <largest group>` after each
/// acknowledged append, until it is killed. Does nothing as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_appends_child() {
    let (Ok(schema), Ok(url)) = (
        std::env::var(CHILD_SCHEMA_ENV),
        std::env::var(CHILD_URL_ENV),
    ) else {
        return;
    };
    let store = PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&schema))
        .await
        .unwrap();
    // The default pool: four appends alone, then groups.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("w-{t}");
                // Earlier rounds' children wrote to the same streams.
                let mut version = store.stream_version(&stream(&name)).await.unwrap().get();
                loop {
                    let events = (0..CHILD_BATCH).map(|k| event(version + k)).collect();
                    let appended = store
                        .append(
                            &stream(&name),
                            ExpectedVersion::Exact(Version::new(version)),
                            events,
                        )
                        .await
                        .unwrap();
                    version = appended.version.get();
                    println!("ACK {name} {version} {}", store.__group_stats().largest);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn sigkill_during_grouped_appends_keeps_every_acknowledged_append_whole() {
    let (store, schema) = common::store_with(options()).await;
    let mut largest = 0;
    for round in 0..3 {
        let mut child = Child::spawn(
            "grouped_appends_child",
            &[
                (CHILD_SCHEMA_ENV, schema.name()),
                (CHILD_URL_ENV, schema.url()),
            ],
        );
        // Kill it mid-flight, after a few hundred acknowledged appends.
        let mut lines = Vec::new();
        while lines.len() < 300 {
            let line = child.next_line(Duration::from_secs(120));
            if line.starts_with("ACK ") {
                lines.push(line);
            }
        }
        lines.extend(
            child
                .kill_and_collect()
                .into_iter()
                .filter(|l| l.starts_with("ACK ")),
        );

        let mut acked: std::collections::HashMap<String, u64> = Default::default();
        for line in &lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let version: u64 = parts[2].parse().unwrap();
            largest = largest.max(parts[3].parse::<usize>().unwrap());
            let top = acked.entry(parts[1].to_owned()).or_default();
            *top = (*top).max(version);
        }
        // The server ends the dead client's connections; an append in flight
        // either committed or did not. Every acknowledged one is there, and no
        // stream holds part of an append.
        for t in 0..16 {
            let name = format!("w-{t}");
            let events = read_stream(&store, &name).await;
            let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
            assert_eq!(
                versions,
                (1..=versions.len() as u64).collect::<Vec<_>>(),
                "round {round}: {name} has a gap"
            );
            assert_eq!(
                versions.len() as u64 % CHILD_BATCH,
                0,
                "round {round}: {name} holds part of an append"
            );
            let acknowledged = acked.get(&name).copied().unwrap_or(0);
            assert!(
                versions.len() as u64 >= acknowledged,
                "round {round}: {name} lost acknowledged events: {} < {acknowledged}",
                versions.len()
            );
        }
    }
    assert!(largest >= 2, "the child's appends never shared a group");
    let all: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    schema.teardown().await;
}
