//! What sqlx 0.9 sends through PgBouncer 1.18 in transaction pooling mode, on
//! the wire: why [`PostgresOptions::prepared_statements(false)`] runs every call
//! in a transaction of its own, and that the store works that way.
//!
//! Needs the cluster of `scripts/ha-cluster.sh up` (pgbouncer on 6432 in
//! transaction mode, with a database `annals_one` whose pool has ONE server
//! connection, so that two clients always share it) and `ANNALS_HA_BOUNCER_URL`,
//! `ANNALS_HA_URL`. `scripts/ha-test.sh` runs it.
//!
//! * named statements, even with `statement_cache_capacity(0)`: sqlx names every
//!   persistent statement `sqlx_s_N`, counted per client connection, and with
//!   the cache off never closes it; the second client on the same server
//!   connection fails with `prepared statement "sqlx_s_1" already exists`;
//! * `.persistent(false)` (the unnamed statement) on its own is **not** enough:
//!   sqlx sends `Parse`/`Describe`/`Sync`, waits for `ReadyForQuery`, then sends
//!   `Bind`/`Execute`/`Sync`. PgBouncer hands the server connection back at that
//!   first `ReadyForQuery`, and another client's `Parse` can replace the unnamed
//!   statement before the `Bind`: the `Bind` then fails or binds the other
//!   client's statement;
//! * the same unnamed statements inside `BEGIN` … `COMMIT` never mix;
//! * the store with [`PostgresOptions::transaction_pooler`] appends and reads
//!   through PgBouncer, and its sessions hold no named prepared statement.
//!
//! [`PostgresOptions::prepared_statements(false)`]: annals_postgres::PostgresOptions::prepared_statements
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::panic
)]

use std::{str::FromStr, time::Duration};

use annals_postgres::{
    sqlx::{self, postgres::PgConnectOptions, Connection, PgConnection},
    EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore, PostgresOptions, ReadAll,
    ReadStream, StreamId,
};
use futures::TryStreamExt;

const ROUNDS: i64 = 300;

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the HA cluster's pgbouncer. Run \
             scripts/ha-test.sh, or scripts/ha-cluster.sh up and export the variables of \
             scripts/ha-cluster.sh urls"
        )
    })
}

/// pgbouncer's `annals_one` database: one server connection for every client.
fn one_server_url() -> String {
    let url = required("ANNALS_HA_BOUNCER_URL");
    let base = url.rsplit_once('/').expect("a URL with a database").0;
    format!("{base}/annals_one")
}

async fn connect(url: &str, cache: usize) -> PgConnection {
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .statement_cache_capacity(cache);
    PgConnection::connect_with(&options).await.unwrap()
}

/// Runs `ROUNDS` unnamed-statement queries on `conn`, `in_tx`: each in
/// `BEGIN`/`COMMIT`. Query `which` 0 returns `$1 * 2` as int8, 1 returns
/// `$1 || '-b'` as text. Returns how many failed or returned another
/// statement's result.
async fn unnamed_queries(mut conn: PgConnection, which: u8, in_tx: bool) -> (usize, Vec<String>) {
    let mut bad = 0;
    let mut errors = Vec::new();
    for i in 0..ROUNDS {
        if in_tx {
            sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
        }
        let ok = if which == 0 {
            match sqlx::query_scalar::<_, i64>("SELECT $1::int8 * 2 AS a")
                .persistent(false)
                .bind(i)
                .fetch_one(&mut conn)
                .await
            {
                Ok(v) => v == i * 2,
                Err(e) => {
                    errors.push(e.to_string());
                    false
                }
            }
        } else {
            match sqlx::query_scalar::<_, String>("SELECT $1::text || '-b' AS b")
                .persistent(false)
                .bind(i.to_string())
                .fetch_one(&mut conn)
                .await
            {
                Ok(v) => v == format!("{i}-b"),
                Err(e) => {
                    errors.push(e.to_string());
                    false
                }
            }
        };
        if !ok {
            bad += 1;
        }
        if in_tx {
            // After a failed statement COMMIT ends the aborted transaction.
            sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
        }
    }
    errors.truncate(3);
    (bad, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/ha-cluster.sh up; run by scripts/ha-test.sh"]
async fn named_statements_collide_even_without_a_cache() {
    let url = one_server_url();
    let mut a = connect(&url, 0).await;
    let mut b = connect(&url, 0).await;
    let first: i64 = sqlx::query_scalar("SELECT $1::int8")
        .bind(1_i64)
        .fetch_one(&mut a)
        .await
        .expect("the first client's statement");
    assert_eq!(first, 1);
    let second = sqlx::query_scalar::<_, i64>("SELECT $1::int8")
        .bind(2_i64)
        .fetch_one(&mut b)
        .await;
    let err = second.expect_err("a second client's sqlx_s_1 on the same server connection");
    eprintln!("statement_cache_capacity(0), second client: {err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    deallocate_all(&url).await;
}

/// Drops every named statement on `annals_one`'s server connection (pgbouncer
/// runs no reset query in transaction mode: they outlive their client).
async fn deallocate_all(url: &str) {
    let mut conn = connect(url, 0).await;
    sqlx::raw_sql("DEALLOCATE ALL")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/ha-cluster.sh up; run by scripts/ha-test.sh"]
async fn unnamed_statements_mix_between_clients_unless_in_a_transaction() {
    let url = one_server_url();
    let run = |in_tx: bool| {
        let url = url.clone();
        async move {
            let a = tokio::spawn(unnamed_queries(connect(&url, 100).await, 0, in_tx));
            let b = tokio::spawn(unnamed_queries(connect(&url, 100).await, 1, in_tx));
            let (a, b) = (a.await.unwrap(), b.await.unwrap());
            (a.0 + b.0, [a.1, b.1].concat())
        }
    };
    let (bad, errors) = run(false).await;
    eprintln!(
        ".persistent(false) outside a transaction, 2 clients x {ROUNDS} queries on one \
         server connection: {bad} failed or wrong; e.g. {errors:?}"
    );
    assert!(
        bad > 0,
        "expected unnamed statements split over two Syncs to mix through pgbouncer"
    );
    let (bad, errors) = run(true).await;
    eprintln!(".persistent(false) in BEGIN/COMMIT: {bad} failed or wrong {errors:?}");
    assert_eq!(bad, 0, "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/ha-cluster.sh up; run by scripts/ha-test.sh"]
async fn the_store_works_through_pgbouncer_in_transaction_mode() {
    let bouncer = one_server_url();
    let direct = required("ANNALS_HA_URL");
    deallocate_all(&bouncer).await;
    let schema = format!("ha_bouncer_{}", std::process::id());
    let options = PostgresOptions::new()
        .schema(schema.as_str())
        .statement_timeout(Some(Duration::from_secs(20)));
    // Default options through pgbouncer: the migration cannot run there.
    let refused = PostgresEventStore::connect_with(&bouncer, options.clone()).await;
    eprintln!(
        "default options through pgbouncer: {}",
        refused
            .as_ref()
            .map_or_else(ToString::to_string, |_| "connected".into())
    );
    // Migrate through the direct URL, then use pgbouncer.
    let migrated = PostgresEventStore::connect_with(&direct, options.clone())
        .await
        .expect("migrating through the direct URL");
    migrated.pool().close().await;
    let store = PostgresEventStore::connect_with(&bouncer, options.transaction_pooler())
        .await
        .expect("connecting through pgbouncer with transaction_pooler()");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(format!("s-{}", w % 3)).unwrap();
                for i in 0..40 {
                    let events = (0..1 + i % 3)
                        .map(|n| {
                            NewEvent::new("Tick", format!("{{\"w\":{w},\"i\":{i},\"n\":{n}}}"))
                        })
                        .collect();
                    store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                        .expect("append through pgbouncer");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let log: Vec<_> = store
        .read_all(ReadAll::after(Position::START))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(log.len(), 8 * (14 + 13 * 2 + 13 * 3));
    let mut total = 0;
    for s in 0..3 {
        let stream = StreamId::new(format!("s-{s}")).unwrap();
        let events: Vec<_> = store
            .read_stream(ReadStream::forward(&stream))
            .try_collect()
            .await
            .unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version.get(), i as u64 + 1);
        }
        assert_eq!(
            store.stream_version(&stream).await.unwrap().get(),
            events.len() as u64
        );
        total += events.len();
    }
    assert_eq!(total, log.len());
    // No named statement on the (one) server connection: everything was unnamed.
    // (The other tests' statements may be there: count the store's.)
    let mut tx = store.pool().begin().await.unwrap();
    let named: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, $1) > 0",
    )
    .persistent(false)
    .bind(schema.as_str())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        named, 0,
        "named prepared statements on pgbouncer's server connection"
    );
    eprintln!(
        "store through pgbouncer (transaction mode, one server connection): {} events appended \
         by 8 tasks and read back; no named prepared statements",
        log.len()
    );
    annals_testing::postgres::drop_schema(&direct, &schema).await;
}
