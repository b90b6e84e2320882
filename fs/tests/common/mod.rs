//! Helpers shared by the annals-fs tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{fs, path::Path};

use annals_fs::{
    futures::TryStreamExt, EventStore, NewEvent, ReadAll, ReadStream, RecordedEvent, StreamId,
};

pub(crate) fn sid(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

pub(crate) fn ev(kind: &str) -> NewEvent {
    NewEvent::new(kind, format!("{{\"kind\":\"{kind}\"}}").into_bytes())
}

/// Copies every event file of `from` that `to` lacks (what a pull does).
pub(crate) fn sync_files(from: &Path, to: &Path) -> usize {
    let (src, dst) = (from.join("events"), to.join("events"));
    fs::create_dir_all(&dst).unwrap();
    let mut copied = 0;
    for entry in fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if !target.exists() {
            fs::copy(entry.path(), target).unwrap();
            copied += 1;
        }
    }
    copied
}

pub(crate) async fn stream_events(
    store: &dyn EventStore,
    stream: &StreamId,
) -> annals_fs::Result<Vec<RecordedEvent>> {
    store
        .read_stream(ReadStream::forward(stream))
        .try_collect()
        .await
}

pub(crate) async fn all_events(store: &dyn EventStore) -> annals_fs::Result<Vec<RecordedEvent>> {
    store.read_all(ReadAll::forward()).try_collect().await
}

/// `(position, id, stream, version)` of every visible event.
pub(crate) async fn log(store: &dyn EventStore) -> Vec<(u64, String, String, u64)> {
    all_events(store)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.position.get(),
                e.id.to_string(),
                e.stream_id.to_string(),
                e.version.get(),
            )
        })
        .collect()
}
