//! No silent short reads (issue 14 §0).
//!
//! * A transaction of ANOTHER database of the cluster never delays or shortens
//!   `read_all` (it cannot write to this database's tables).
//! * A transaction of THIS database that holds committed events back makes
//!   `read_all` fail with [`ReadBlocked`] naming it (after the settle wait), never
//!   end as if the log ended there; bounded reads that are satisfied below it
//!   succeed.
//! * Under many concurrent appenders, `read_all` returns every event committed
//!   before it started and does not fail.
//!
//! No fixed sleeps: every wait is on an outcome, under a generous deadline.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeSet,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use annals_postgres::{
    EventStore, ExpectedVersion, NewEvent, PostgresOptions, ReadAll, ReadBlocked, ReadFilter,
    ReadStream, RecordedEvent, StreamId,
};
use futures::TryStreamExt;
use sqlx::{postgres::PgConnectOptions, Connection, PgConnection};

/// The tests of this file hold transactions open in the test database, and a read
/// is held back by (and names) the OLDEST one: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Far above anything the tests need; only reached if a read hangs.
const DEADLINE: Duration = Duration::from_secs(120);

fn sid(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn three() -> Vec<NewEvent> {
    (1..=3)
        .map(|i| NewEvent::new("Counted", format!("{{\"n\":{i}}}")))
        .collect()
}

async fn collect(
    stream: annals_postgres::EventStream<'_>,
) -> annals_postgres::Result<Vec<RecordedEvent>> {
    tokio::time::timeout(DEADLINE, stream.try_collect())
        .await
        .expect("the read finished within the deadline")
}

/// A connection to another database of the same cluster than `url`'s, and a
/// database to drop afterwards if one had to be created.
async fn other_database(url: &str) -> (PgConnection, Option<String>) {
    let mut here = PgConnection::connect(url).await.unwrap();
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database \
         WHERE datallowconn AND NOT datistemplate AND datname <> current_database() \
         ORDER BY datname = 'test' DESC, datname = 'postgres' DESC, datname LIMIT 1",
    )
    .fetch_optional(&mut here)
    .await
    .unwrap();
    let (name, created) = match existing {
        Some(name) => (name, None),
        None => {
            let name = format!("annals_other_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut here)
                .await
                .unwrap();
            (name.clone(), Some(name))
        }
    };
    here.close().await.unwrap();
    let options = PgConnectOptions::from_str(url).unwrap().database(&name);
    (PgConnection::connect_with(&options).await.unwrap(), created)
}

/// The reproduced defect: an xid held open in another database made `read_all`
/// wait the whole settle timeout, then end with no events and no error.
///
/// The settle timeout is set far above the deadline, so the test can only pass
/// if the read is not held back at all — no timing assertion needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_another_database_never_holds_reads_back() {
    let _serial = SERIAL.lock().await;
    let (store, schema) =
        common::store_with(PostgresOptions::new().read_settle_timeout(Duration::from_secs(3600)))
            .await;
    let (mut other, created) = other_database(schema.url()).await;
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut other)
        .await
        .unwrap();

    let s = sid("elsewhere");
    let appended = store
        .append(&s, ExpectedVersion::NoStream, three())
        .await
        .unwrap();
    assert_eq!(appended.version.get(), 3);

    let forward = collect(store.read_all(ReadAll::forward())).await.unwrap();
    assert_eq!(
        forward.iter().map(|e| e.position).collect::<Vec<_>>(),
        appended.positions,
        "read_all returns the 3 events while transaction {xid} runs in another database"
    );
    let backward = collect(store.read_all(ReadAll::backward())).await.unwrap();
    assert_eq!(backward.len(), 3);
    let filtered = collect(
        store.read_all(
            ReadAll::forward().filter(
                ReadFilter::new()
                    .event_types(["Counted"])
                    .stream_prefix("else"),
            ),
        ),
    )
    .await
    .unwrap();
    assert_eq!(filtered.len(), 3);
    assert_eq!(
        collect(store.read_stream(ReadStream::forward(&s)))
            .await
            .unwrap()
            .len(),
        3
    );

    // The other transaction is still running: the test really had it open.
    let still: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(still, xid);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    if let Some(name) = created {
        let mut here = PgConnection::connect(schema.url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\"")))
            .execute(&mut here)
            .await
            .unwrap();
    }
    drop(store);
    schema.teardown().await;
}

/// An idle-in-transaction writer of THIS database: `read_all` returns what is
/// below it, then fails with an error naming it (pid, xid, database) — it never
/// ends as if the log ended there. Reads bounded below it succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_this_database_makes_an_unbounded_read_fail_naming_it() {
    let _serial = SERIAL.lock().await;
    let (store, schema) =
        common::store_with(PostgresOptions::new().read_settle_timeout(Duration::from_millis(300)))
            .await;
    let s = sid("held");
    let early = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Early", "{}")],
        )
        .await
        .unwrap();

    // An idle-in-transaction session with an xid, older than the next appends.
    let mut idle = PgConnection::connect(schema.url()).await.unwrap();
    sqlx::query("SET application_name = 'annals-short-read-test'")
        .execute(&mut idle)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut idle)
        .await
        .unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut idle)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut idle).await.unwrap();
    let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut idle)
        .await
        .unwrap();

    let late = store
        .append(&s, ExpectedVersion::Any, three())
        .await
        .unwrap();

    // Forward: the event below the blocker, then the error.
    let mut read = store.read_all(ReadAll::forward());
    let first = read.try_next().await.unwrap().unwrap();
    assert_eq!(first.position, early.positions[0]);
    let err = tokio::time::timeout(DEADLINE, read.try_next())
        .await
        .unwrap()
        .expect_err("never a silent short read");
    drop(read);
    let blocked = ReadBlocked::find(&err).unwrap_or_else(|| panic!("not ReadBlocked: {err}"));
    assert_eq!(blocked.position, late.positions[0].get());
    assert!(blocked.waited >= Duration::from_millis(300));
    let blocker = blocked.blocker.as_ref().expect("the blocker is identified");
    assert_eq!(blocker.xid, u64::try_from(xid).unwrap(), "{err}");
    assert_eq!(blocker.pid, Some(pid), "{err}");
    assert_eq!(blocker.database.as_deref(), Some(database.as_str()));
    assert_eq!(blocker.state.as_deref(), Some("idle in transaction"));
    assert_eq!(
        blocker.application_name.as_deref(),
        Some("annals-short-read-test")
    );
    assert!(
        blocker.running_for.is_some(),
        "same role: xact_start is shown"
    );
    let message = err.to_string();
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert!(message.contains(&format!("transaction {xid}")), "{message}");

    // Backward from the top: the same.
    let err = collect(store.read_all(ReadAll::backward()))
        .await
        .unwrap_err();
    assert!(ReadBlocked::find(&err).is_some(), "{err}");

    // Reads satisfied below the blocker need not wait or fail.
    let limited = collect(store.read_all(ReadAll::forward().limit(1)))
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    let below = collect(store.read_all(ReadAll::before(late.positions[0])))
        .await
        .unwrap();
    assert_eq!(below.len(), 1);
    // read_stream is not affected.
    assert_eq!(
        collect(store.read_stream(ReadStream::forward(&s)))
            .await
            .unwrap()
            .len(),
        4
    );

    // Once the transaction ends, everything is readable.
    sqlx::query("ROLLBACK").execute(&mut idle).await.unwrap();
    let all = collect(store.read_all(ReadAll::forward())).await.unwrap();
    assert_eq!(all.len(), 4);
    let all = collect(store.read_all(ReadAll::backward())).await.unwrap();
    assert_eq!(all.len(), 4);
    idle.close().await.unwrap();
    drop(store);
    schema.teardown().await;
}

/// The same with an annals append left open inside the caller's transaction
/// (the xid holder really wrote to this table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_append_transaction_is_named_too() {
    let _serial = SERIAL.lock().await;
    let (store, schema) =
        common::store_with(PostgresOptions::new().read_settle_timeout(Duration::from_millis(300)))
            .await;
    let mut writer = PgConnection::connect(schema.url()).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut writer)
        .await
        .unwrap();
    let mut tx = writer.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{s}\".events (position, event_id, stream_id, version, event_type, \
         content_type, payload, metadata) \
         VALUES (\"{s}\".position_base() + 1, gen_random_uuid(), 'open', 1, 'Open', \
                 'application/json', '\\x7b7d', '{{}}')",
        s = schema.name()
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let done = store
        .append(&sid("closed"), ExpectedVersion::NoStream, three())
        .await
        .unwrap();
    let err = collect(store.read_all(ReadAll::forward()))
        .await
        .unwrap_err();
    let blocked = ReadBlocked::find(&err).unwrap_or_else(|| panic!("not ReadBlocked: {err}"));
    assert_eq!(blocked.position, done.positions[0].get());
    assert_eq!(blocked.blocker.as_ref().and_then(|b| b.pid), Some(pid));
    tx.commit().await.unwrap();
    let all = collect(store.read_all(ReadAll::forward())).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all[0].event_type, "Open",
        "the open append's event comes first"
    );
    writer.close().await.unwrap();
    drop(store);
    schema.teardown().await;
}

/// Busy writers in this database: `read_all` returns every event committed
/// before it started, in order, and does not fail. (The settle wait is raised
/// from the default so that an append stalled for seconds on an overloaded
/// machine cannot fail the test; the read only waits for transactions that
/// were running when it started.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_writers_never_make_a_read_short_or_fail() {
    let _serial = SERIAL.lock().await;
    let (store, schema) = common::store_with(
        PostgresOptions::new()
            .max_connections(12)
            .page_size(50)
            .read_settle_timeout(Duration::from_secs(60)),
    )
    .await;
    let store = Arc::new(store);
    let committed = Arc::new(Mutex::new(BTreeSet::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (store, committed, stop) = (store.clone(), committed.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let s = sid(&format!("busy-{w}"));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 400 {
                let batch = (0..(n % 5 + 1))
                    .map(|_| NewEvent::new("Busy", "{}"))
                    .collect();
                let result = store.append(&s, ExpectedVersion::Any, batch).await.unwrap();
                committed
                    .lock()
                    .unwrap()
                    .extend(result.positions.iter().map(|p| p.get()));
                n += 1;
            }
        }));
    }
    let mut reads = 0;
    let mut longest = 0;
    while reads < 12 || committed.lock().unwrap().len() < 200 {
        let before: BTreeSet<u64> = committed.lock().unwrap().clone();
        let seen: Vec<u64> = collect(store.read_all(ReadAll::forward()))
            .await
            .unwrap_or_else(|e| panic!("read {reads} failed: {e}"))
            .iter()
            .map(|e| e.position.get())
            .collect();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in position order");
        let seen_set: BTreeSet<u64> = seen.iter().copied().collect();
        let missing: Vec<_> = before.difference(&seen_set).take(5).collect();
        assert!(
            missing.is_empty(),
            "read {reads} missed events committed before it started: {missing:?}"
        );
        longest = longest.max(seen.len());
        reads += 1;
        if writers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let all = collect(store.read_all(ReadAll::forward())).await.unwrap();
    assert_eq!(all.len(), committed.lock().unwrap().len());
    assert!(longest > 0, "the reads saw events");
    drop(store);
    schema.teardown().await;
}
