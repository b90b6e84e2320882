//! Snapshots: upsert, newest wins, older ignored, never touching events.

use std::sync::Arc;

use annals_core::{EventStore, ExpectedVersion, Snapshot, Version};

use super::support::{all_events, batch, sid};

/// A saved snapshot loads back with every field intact.
pub async fn snapshot_save_and_load(store: Arc<dyn EventStore>) {
    let s = sid("order-1");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 5))
        .await
        .unwrap();
    let snap = Snapshot::json(Version::new(5), &serde_json::json!({"total": 99}))
        .unwrap()
        .with_schema_version(3);
    store.save_snapshot(&s, snap.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(snap));
    // Binary state with a custom content type.
    let other = sid("order-2");
    let bin = Snapshot::new(Version::new(2), vec![0u8, 255, 0, 1])
        .with_content_type("application/postcard");
    store.save_snapshot(&other, bin.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&other).await.unwrap(), Some(bin));
}

/// A stream without a snapshot loads `None`.
pub async fn snapshot_load_missing_is_none(store: Arc<dyn EventStore>) {
    assert_eq!(store.load_snapshot(&sid("none")).await.unwrap(), None);
    store
        .append(&sid("none"), ExpectedVersion::Any, batch(0, 1))
        .await
        .unwrap();
    assert_eq!(store.load_snapshot(&sid("none")).await.unwrap(), None);
}

/// A newer (or same-version) snapshot replaces the stored one.
pub async fn snapshot_newer_replaces_older(store: Arc<dyn EventStore>) {
    let s = sid("s");
    store
        .save_snapshot(&s, Snapshot::new(Version::new(3), b"three".to_vec()))
        .await
        .unwrap();
    let newer = Snapshot::new(Version::new(7), b"seven".to_vec());
    store.save_snapshot(&s, newer.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(newer));
    // Same version, new schema: replaces (a changed state type re-snapshots in place).
    let same = Snapshot::new(Version::new(7), b"seven-v2".to_vec()).with_schema_version(2);
    store.save_snapshot(&s, same.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(same));
}

/// A snapshot older than the stored one is ignored: the call succeeds, nothing changes.
pub async fn snapshot_older_than_stored_is_ignored(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let newer = Snapshot::new(Version::new(10), b"ten".to_vec());
    store.save_snapshot(&s, newer.clone()).await.unwrap();
    store
        .save_snapshot(&s, Snapshot::new(Version::new(9), b"nine".to_vec()))
        .await
        .unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(newer));
}

/// Deleting a snapshot removes it and leaves every event in place.
pub async fn snapshot_delete_removes_only_snapshot(store: Arc<dyn EventStore>) {
    let s = sid("s");
    store
        .append(&s, ExpectedVersion::Any, batch(0, 4))
        .await
        .unwrap();
    store
        .save_snapshot(&s, Snapshot::new(Version::new(4), b"four".to_vec()))
        .await
        .unwrap();
    store
        .save_snapshot(&sid("t"), Snapshot::new(Version::new(1), b"one".to_vec()))
        .await
        .unwrap();
    let events = all_events(&*store).await;
    store.delete_snapshot(&s).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
    assert!(
        store.load_snapshot(&sid("t")).await.unwrap().is_some(),
        "other streams keep theirs"
    );
    assert_eq!(all_events(&*store).await, events);
    // Deleting again is fine, and an older snapshot can now be saved.
    store.delete_snapshot(&s).await.unwrap();
    let older = Snapshot::new(Version::new(2), b"two".to_vec());
    store.save_snapshot(&s, older.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(older));
}

/// An invalid snapshot is `InvalidInput` and the stored one is kept.
pub async fn invalid_snapshot_is_rejected(store: Arc<dyn EventStore>) {
    let s = sid("s");
    let good = Snapshot::new(Version::new(1), b"ok".to_vec());
    store.save_snapshot(&s, good.clone()).await.unwrap();
    let huge = Snapshot::new(
        Version::new(2),
        vec![1u8; store.capabilities().max_payload_bytes + 1],
    );
    assert!(store
        .save_snapshot(&s, huge)
        .await
        .unwrap_err()
        .is_invalid_input());
    let bad_type = Snapshot::new(Version::new(2), b"x".to_vec()).with_content_type("a\0b");
    assert!(store
        .save_snapshot(&s, bad_type)
        .await
        .unwrap_err()
        .is_invalid_input());
    let empty_type = Snapshot::new(Version::new(2), b"x".to_vec()).with_content_type("");
    assert!(store
        .save_snapshot(&s, empty_type)
        .await
        .unwrap_err()
        .is_invalid_input());
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(good));
}
