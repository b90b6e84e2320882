//! The store's own operations — refresh, status, forks, reconcile — run in
//! `tracing` spans with their outcome, like every `EventStore` operation, and
//! never carry a payload.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use annals_fs::{Choice, EventStore, ExpectedVersion, FsEventStore, Version};
use annals_testing::spans::SpanRecorder;
use common::{ev, sid, sync_files};

#[tokio::test(flavor = "current_thread")]
async fn refresh_status_forks_and_reconcile_are_traced_with_their_outcome() {
    let recorder = SpanRecorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let dir = tempfile::tempdir().unwrap();
    let a = FsEventStore::open(dir.path().join("a")).await.unwrap();
    a.append(&sid("doc"), ExpectedVersion::NoStream, vec![ev("start")])
        .await
        .unwrap();
    sync_files(a.root(), &dir.path().join("b"));
    let b = FsEventStore::open(dir.path().join("b")).await.unwrap();
    // Concurrent edits from the same base: a fork once the files are exchanged.
    let secret = annals_fs::NewEvent::new("Edited", b"password=hunter2".to_vec());
    a.append(
        &sid("doc"),
        ExpectedVersion::Exact(Version::new(1)),
        vec![secret],
    )
    .await
    .unwrap();
    b.append(
        &sid("doc"),
        ExpectedVersion::Exact(Version::new(1)),
        vec![ev("b-edit")],
    )
    .await
    .unwrap();
    sync_files(b.root(), a.root());
    assert_eq!(a.refresh().await.unwrap(), 1);
    assert_eq!(a.status().await.unwrap().forks.len(), 1);
    let forks = a.forks().await.unwrap();
    let unknown = a.reconcile("no-such-fork", Choice::Keep(0)).await;
    assert!(unknown.is_err());
    a.reconcile(&forks[0].id, Choice::KeepInOrder(vec![0, 1]))
        .await
        .unwrap();

    let ok = |name: &str| {
        let fields = recorder.fields(name);
        assert!(
            fields.iter().any(|f| f.contains(r#"outcome="ok""#)),
            "{name}: {fields:?} in {:?}",
            recorder.spans()
        );
    };
    ok("annals.fs_refresh");
    ok("annals.fs_status");
    ok("annals.fs_forks");
    ok("annals.fs_reconcile");
    let reconciles = recorder.fields("annals.fs_reconcile");
    assert!(
        reconciles
            .iter()
            .any(|f| f.contains("no-such-fork") && f.contains(r#"outcome="error""#)),
        "{reconciles:?}"
    );
    for (name, fields) in recorder.spans() {
        assert!(
            !fields.contains("hunter2"),
            "payload leaked into {name}: {fields}"
        );
    }
}
