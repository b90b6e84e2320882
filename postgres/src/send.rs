//! Compile-time proof that every public `async fn` of the crate returns a `Send`
//! future, so each can run in `tokio::spawn` (checked complete by
//! `testing/tests/send_list.rs`).

use sqlx::{postgres::PgConnectOptions, PgPool};

use crate::{PostgresCheckpoints, PostgresEventStore, PostgresOptions};

/// Compile-time proof that every public `async fn` of the crate returns a `Send`
/// future, so each can run in `tokio::spawn`. Never called: it only has to
/// type-check (the trait methods return boxed `Send` futures by signature).
#[allow(dead_code)]
fn public_futures_are_send(
    pool: PgPool,
    connect: PgConnectOptions,
    checkpoints: &PostgresCheckpoints,
    conn: &mut sqlx::PgConnection,
    store: &PostgresEventStore,
    stream: &annals_core::StreamId,
) {
    fn is_send<T: Send>(_: T) {}
    let options = PostgresOptions::default();
    is_send(PostgresEventStore::connect(""));
    is_send(PostgresEventStore::connect_with("", options.clone()));
    is_send(PostgresEventStore::connect_with_options(
        connect,
        options.clone(),
    ));
    is_send(PostgresEventStore::from_pool(pool.clone()));
    is_send(PostgresEventStore::from_pool_with(pool.clone(), options));
    is_send(PostgresEventStore::with_read_replica(store.clone(), pool));
    is_send(PostgresEventStore::with_read_replica_url(store.clone(), ""));
    is_send(PostgresEventStore::commit_in(
        store,
        &mut *conn,
        annals_core::AppendRequest::new(),
    ));
    is_send(PostgresEventStore::append_in(
        store,
        &mut *conn,
        stream,
        annals_core::ExpectedVersion::Any,
        Vec::new(),
    ));
    is_send(PostgresEventStore::transact(
        store,
        annals_core::RetryPolicy::default(),
        |_: &mut sqlx::PgConnection| {
            Box::pin(async { Ok::<_, annals_core::Error>(((), annals_core::AppendRequest::new())) })
                as futures::future::BoxFuture<'_, _>
        },
    ));
    is_send(PostgresCheckpoints::save_in(
        checkpoints,
        conn,
        "",
        annals_core::Position::START,
    ));
}
