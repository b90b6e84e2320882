//! Compile-time proof that every public `async fn` of the crate returns a `Send`
//! future (checked complete by `testing/tests/send_list.rs`).

use crate::{SqliteCheckpoints, SqliteEventStore, SqliteOptions};

/// Every public async fn of the crate returns a `Send` future (compile-time check;
/// never called).
#[allow(dead_code)]
fn _assert_send(
    store: &SqliteEventStore,
    options: SqliteOptions,
    conn: &mut sqlx::SqliteConnection,
) {
    fn is_send<T: Send>(_: T) {}
    is_send(SqliteEventStore::open("events.db"));
    is_send(SqliteEventStore::in_memory());
    is_send(SqliteEventStore::open_with(options.clone()));
    is_send(SqliteOptions::open(options));
    is_send(SqliteEventStore::close(store));
    is_send(SqliteEventStore::backup_to(store, "backup.db"));
    is_send(SqliteEventStore::commit_with(
        store,
        crate::AppendRequest::new(),
        |_: &rusqlite::Connection| Ok::<(), crate::Error>(()),
    ));
    is_send(SqliteEventStore::write_with(
        store,
        |_: &rusqlite::Connection| Ok::<(), crate::Error>(()),
    ));
    is_send(SqliteEventStore::transact(
        store,
        crate::RetryPolicy::default(),
        |_: &rusqlite::Connection| Ok::<_, crate::Error>(((), crate::AppendRequest::new())),
    ));
    is_send(SqliteCheckpoints::save_in(
        &store.checkpoints(),
        conn,
        "",
        annals_core::Position::START,
    ));
}
