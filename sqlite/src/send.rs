//! Compile-time proof that every public `async fn` of the crate returns a `Send`
//! future (checked complete by `testing/tests/send_list.rs`).

use crate::{SqliteEventStore, SqliteOptions};

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
    is_send(options.open());
    is_send(store.close());
    is_send(store.backup_to("backup.db"));
    is_send(
        store
            .checkpoints()
            .save_in(conn, "", annals_core::Position::START),
    );
}
