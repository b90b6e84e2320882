//! Your own SQL on the store's writer (`commit_with`, `write_with`): business rows
//! and events commit together or not at all, also when the process is SIGKILLed
//! between the business write and the commit; an app's own tables in the store's
//! file are written alongside busy appenders without `SQLITE_BUSY`.
//!
//! The killed process is this test binary itself, re-executed with
//! `CHILD_DB_ENV` set and filtered to run only `outbox_child`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::Duration;

use annals_sqlite::{
    futures::TryStreamExt, rusqlite, AppendRequest, Error, EventStore, ExpectedVersion, NewEvent,
    ReadAll, SqliteEventStore, StreamId, Version,
};
use annals_testing::child::Child;

const CHILD_DB_ENV: &str = "ANNALS_SQLITE_OUTBOX_CHILD_DB";
/// What the child prints once its business row is written, before the commit.
const BETWEEN: &str = "annals-outbox-child-between-write-and-commit";

/// An app error that wraps the store's and its own SQL errors.
#[derive(Debug)]
enum AppError {
    Store(Error),
    Sql(rusqlite::Error),
    Rejected(&'static str),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Store(e)
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Sql(e)
    }
}

async fn store_with_orders_table(path: &std::path::Path) -> SqliteEventStore {
    let store = SqliteEventStore::open(path).await.unwrap();
    store
        .write_with(|db| {
            db.execute(
                "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, status TEXT NOT NULL)",
                [],
            )?;
            Ok::<_, AppError>(())
        })
        .await
        .unwrap();
    store
}

async fn order_rows(store: &SqliteEventStore) -> Vec<(String, String)> {
    store
        .write_with(|db| {
            let mut rows = db.prepare("SELECT id, status FROM orders ORDER BY id")?;
            let rows = rows
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
            Ok::<_, AppError>(rows)
        })
        .await
        .unwrap()
}

async fn event_types(store: &SqliteEventStore) -> Vec<String> {
    store
        .read_all(ReadAll::forward())
        .map_ok(|e| e.event_type)
        .try_collect()
        .await
        .unwrap()
}

fn placed(order: &StreamId, expected: ExpectedVersion) -> AppendRequest {
    AppendRequest::new().append(order, expected, vec![NewEvent::new("OrderPlaced", "{}")])
}

#[tokio::test]
async fn business_rows_and_events_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_orders_table(&dir.path().join("shop.db")).await;
    let order = StreamId::new("order-1").unwrap();

    // Committed: the row and the event are both there.
    let (rows, committed) = store
        .commit_with(placed(&order, ExpectedVersion::NoStream), |db| {
            Ok::<_, AppError>(db.execute("INSERT INTO orders VALUES ('order-1', 'placed')", [])?)
        })
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(committed.positions().count(), 1);
    assert_eq!(committed.parts[0].version, Version::new(1));
    assert_eq!(
        order_rows(&store).await,
        vec![("order-1".into(), "placed".into())]
    );
    assert_eq!(event_types(&store).await, vec!["OrderPlaced"]);

    // The work fails after writing: neither its row nor the event.
    let order2 = StreamId::new("order-2").unwrap();
    let failed = store
        .commit_with(placed(&order2, ExpectedVersion::NoStream), |db| {
            db.execute("INSERT INTO orders VALUES ('order-2', 'placed')", [])?;
            Err::<(), _>(AppError::Rejected("credit limit"))
        })
        .await;
    assert!(
        matches!(failed, Err(AppError::Rejected("credit limit"))),
        "{failed:?}"
    );

    // The append fails its check (the stream moved): the work's row is rolled back.
    let conflict = store
        .commit_with(placed(&order, ExpectedVersion::NoStream), |db| {
            Ok::<_, AppError>(db.execute(
                "UPDATE orders SET status = 'again' WHERE id = 'order-1'",
                [],
            )?)
        })
        .await;
    match conflict {
        Err(AppError::Store(e)) => assert!(e.is_conflict(), "{e}"),
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Bad SQL in the work: the store's error type is not involved, and nothing stays.
    let bad_sql = store
        .commit_with(placed(&order2, ExpectedVersion::NoStream), |db| {
            db.execute("INSERT INTO orders VALUES ('order-2', 'placed')", [])?;
            Ok::<_, AppError>(db.execute("INSERT INTO nowhere VALUES (1)", [])?)
        })
        .await;
    match bad_sql {
        Err(AppError::Sql(e)) => assert!(e.to_string().contains("nowhere"), "{e}"),
        other => panic!("expected the SQL error, got {other:?}"),
    }

    // A panicking work is an error, rolled back; the writer keeps working.
    let panicked = store
        .commit_with(
            placed(&order2, ExpectedVersion::NoStream),
            |db| -> Result<(), AppError> {
                db.execute("INSERT INTO orders VALUES ('order-2', 'placed')", [])?;
                panic!("a bug in the caller's work");
            },
        )
        .await;
    match panicked {
        Err(AppError::Store(e)) => assert!(e.to_string().contains("panicked"), "{e}"),
        other => panic!("expected the panic reported, got {other:?}"),
    }

    // Ending the store's transaction from the work is refused, and nothing stays
    // of what came after.
    let ended = store
        .commit_with(placed(&order2, ExpectedVersion::NoStream), |db| {
            db.execute_batch("ROLLBACK")?;
            Ok::<_, AppError>(())
        })
        .await;
    match ended {
        Err(AppError::Store(e)) => assert!(e.is_invalid_input(), "{e}"),
        other => panic!("expected invalid input, got {other:?}"),
    }

    // Bad input in the request: refused before any work runs.
    let invalid = store
        .commit_with(AppendRequest::new(), |_| -> Result<(), AppError> {
            panic!("the work must not run for an invalid request")
        })
        .await;
    match invalid {
        Err(AppError::Store(e)) => assert!(e.is_invalid_input(), "{e}"),
        other => panic!("expected invalid input, got {other:?}"),
    }

    // After all that: exactly the first commit is there, and the store works.
    assert_eq!(
        order_rows(&store).await,
        vec![("order-1".into(), "placed".into())]
    );
    assert_eq!(event_types(&store).await, vec!["OrderPlaced"]);
    let next = store
        .commit_with(placed(&order2, ExpectedVersion::NoStream), |db| {
            Ok::<_, AppError>(db.execute("INSERT INTO orders VALUES ('order-2', 'placed')", [])?)
        })
        .await
        .unwrap();
    assert!(next.1.last_position() > committed.last_position());
    assert_eq!(order_rows(&store).await.len(), 2);
}

#[tokio::test]
async fn a_re_sent_outbox_request_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_orders_table(&dir.path().join("shop.db")).await;
    let order = StreamId::new("order-9").unwrap();
    let event = NewEvent::new("OrderPlaced", "{}");
    // The request with its business row; sent twice, as a retry after an
    // unknown outcome would.
    let send = || {
        let request =
            AppendRequest::new().append(&order, ExpectedVersion::NoStream, vec![event.clone()]);
        store.commit_with(request, |db| {
            Ok::<_, AppError>(db.execute(
                "INSERT OR REPLACE INTO orders VALUES ('order-9', 'placed')",
                [],
            )?)
        })
    };
    let (_, first) = send().await.unwrap();
    // The same events again: the original result.
    let (_, again) = send().await.unwrap();
    assert_eq!(first.last_position(), again.last_position());
    assert!(first.last_position().is_some());
    assert_eq!(event_types(&store).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_tables_are_written_beside_busy_appenders_without_busy_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_orders_table(&dir.path().join("shop.db")).await;
    store
        .write_with(|db| {
            db.execute(
                "CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL)",
                [],
            )?;
            db.execute("INSERT INTO counters VALUES ('hits', 0)", [])?;
            Ok::<_, AppError>(())
        })
        .await
        .unwrap();
    const TASKS: usize = 8;
    const EACH: usize = 50;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("busy-{t}")).unwrap();
            for i in 0..EACH {
                store
                    .append(
                        &stream,
                        ExpectedVersion::Any,
                        vec![NewEvent::new("Busy", "{}")],
                    )
                    .await
                    .unwrap();
                // The app's own write, in turn with the appends.
                store
                    .write_with(move |db| {
                        db.execute("UPDATE counters SET n = n + 1 WHERE name = 'hits'", [])?;
                        db.execute(
                            "INSERT INTO orders VALUES (?1, 'busy')",
                            [format!("busy-{t}-{i}")],
                        )?;
                        Ok::<_, AppError>(())
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let hits = store
        .write_with(|db| {
            Ok::<i64, AppError>(db.query_row("SELECT n FROM counters", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(usize::try_from(hits).unwrap(), TASKS * EACH);
    assert_eq!(order_rows(&store).await.len(), TASKS * EACH);
    assert_eq!(event_types(&store).await.len(), TASKS * EACH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailing_reader_never_skips_the_events_of_a_long_outbox_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_orders_table(&dir.path().join("shop.db")).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The reader follows the log with exclusive cursors, as a subscription does.
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = annals_sqlite::Position::START;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page: Vec<_> = store
                    .read_all(ReadAll::after(after))
                    .try_collect()
                    .await
                    .unwrap();
                if let Some(last) = page.last() {
                    after = last.position;
                }
                seen.extend(page.into_iter().map(|e| e.position));
                if finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = Vec::new();
    for round in 0..5 {
        // A long outbox transaction…
        let slow = {
            let store = store.clone();
            tokio::spawn(async move {
                let order = StreamId::new(format!("slow-{round}")).unwrap();
                store
                    .commit_with(placed(&order, ExpectedVersion::NoStream), move |db| {
                        db.execute(
                            "INSERT INTO orders VALUES (?1, 'slow')",
                            [format!("slow-{round}")],
                        )?;
                        std::thread::sleep(Duration::from_millis(50));
                        Ok::<_, AppError>(())
                    })
                    .await
                    .unwrap();
            })
        };
        // …and plain appends queued behind it.
        for k in 0..4 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("fast-{round}-{k}")).unwrap();
                store
                    .append(
                        &stream,
                        ExpectedVersion::NoStream,
                        vec![NewEvent::new("Fast", "{}")],
                    )
                    .await
                    .unwrap();
            }));
        }
        writers.push(slow);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<_> = store
        .read_all(ReadAll::forward())
        .map_ok(|e| e.position)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 25);
    assert_eq!(
        seen, all,
        "the tailing reader saw every event once, in order"
    );
}

/// The child: writes a business row in `commit_with`, says so, and hangs before
/// the commit until it is killed. Does nothing as an ordinary test.
#[tokio::test]
async fn outbox_child() {
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let store = SqliteEventStore::open(&path).await.unwrap();
    let order = StreamId::new("order-killed").unwrap();
    let _ = store
        .commit_with(
            placed(&order, ExpectedVersion::NoStream),
            |db| -> Result<(), AppError> {
                db.execute("INSERT INTO orders VALUES ('order-killed', 'placed')", [])?;
                println!("{BETWEEN}");
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            },
        )
        .await;
}

#[tokio::test]
async fn a_sigkill_between_business_write_and_commit_leaves_neither() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    let store = store_with_orders_table(&path).await;
    store.close().await;
    for round in 0..3 {
        let mut child = Child::spawn("outbox_child", &[(CHILD_DB_ENV, path.as_os_str())]);
        child.wait_for(BETWEEN, Duration::from_secs(120));
        child.kill();
        let store = SqliteEventStore::open(&path).await.unwrap();
        assert!(
            order_rows(&store).await.is_empty(),
            "round {round}: the row survived"
        );
        assert!(
            event_types(&store).await.is_empty(),
            "round {round}: the event survived"
        );
        store.close().await;
    }
}

/// `transact` reruns the work after a conflict (its rows of the failed attempt
/// rolled back), gives up after the policy's attempts with nothing written, and
/// returns the work's own errors at once.
#[tokio::test]
async fn transact_retries_conflicts_and_returns_work_errors() {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use annals_sqlite::RetryPolicy;

    let dir = tempfile::tempdir().unwrap();
    let store = store_with_orders_table(&dir.path().join("t.db")).await;
    let order = StreamId::new("order-t").unwrap();
    let policy = RetryPolicy::default()
        .with_max_attempts(3)
        .with_base_delay(Duration::from_millis(1));

    // The first attempt expects the wrong version; the second reads it inside
    // the transaction.
    let calls = Arc::new(AtomicU32::new(0));
    let (value, committed) = store
        .transact(policy, {
            let (calls, order) = (Arc::clone(&calls), order.clone());
            move |db| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                db.execute("INSERT INTO orders VALUES ('t-1', 'placed')", [])?;
                let expected = if n == 0 {
                    ExpectedVersion::Exact(Version::new(7))
                } else {
                    ExpectedVersion::NoStream
                };
                Ok::<_, AppError>((n, placed(&order, expected)))
            }
        })
        .await
        .unwrap();
    assert_eq!((value, calls.load(Ordering::SeqCst)), (1, 2));
    assert_eq!(committed.positions().count(), 1);
    assert_eq!(
        order_rows(&store).await.len(),
        1,
        "the first attempt rolled back"
    );

    // Always conflicting: three attempts, then the conflict; nothing written.
    let calls = Arc::new(AtomicU32::new(0));
    let err = store
        .transact(policy, {
            let (calls, order) = (Arc::clone(&calls), order.clone());
            move |db| {
                calls.fetch_add(1, Ordering::SeqCst);
                db.execute("INSERT INTO orders VALUES ('t-2', 'placed')", [])?;
                Ok::<_, AppError>(((), placed(&order, ExpectedVersion::NoStream)))
            }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppError::Store(ref e) if e.is_conflict()),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(order_rows(&store).await.len(), 1);

    // The work's own error: returned after one call.
    let calls = Arc::new(AtomicU32::new(0));
    let err = store
        .transact(policy, {
            let calls = Arc::clone(&calls);
            move |_db| -> Result<((), AppendRequest), AppError> {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(AppError::Rejected("out of stock"))
            }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Rejected(_)), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(event_types(&store).await.len(), 1);
}
