//! Helpers shared by the SQLite integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use annals_sqlite::{
    futures::TryStreamExt, EventStore, NewEvent, ReadAll, RecordedEvent, SqliteEventStore,
};

/// Event `n`: type `Noted`, a small JSON payload `{"n": n}`.
pub(crate) fn event(n: u64) -> NewEvent {
    NewEvent::json("Noted", &serde_json::json!({ "n": n })).unwrap()
}

/// The whole global log, in position order.
pub(crate) async fn read_everything(store: &SqliteEventStore) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap()
}
