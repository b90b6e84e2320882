//! Forks, reconciles and snapshots across two replicas, with "pulls" done by
//! copying event files (the real-git versions are in `git.rs`).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use annals_fs::{
    AppendRequest, Choice, EventStore, ExpectedVersion, FsError, FsEventStore, Snapshot, Version,
};
use common::{ev, log, sid, stream_events, sync_files};

struct Pair {
    _dir: tempfile::TempDir,
    a: FsEventStore,
    b: FsEventStore,
}

/// Two replicas with a shared history: `s` at version 2, `t` at 1, `u` at 1.
async fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let a = FsEventStore::open(dir.path().join("a")).await.unwrap();
    a.append(
        &sid("s"),
        ExpectedVersion::NoStream,
        vec![ev("s1"), ev("s2")],
    )
    .await
    .unwrap();
    a.append(&sid("t"), ExpectedVersion::NoStream, vec![ev("t1")])
        .await
        .unwrap();
    a.append(&sid("u"), ExpectedVersion::NoStream, vec![ev("u1")])
        .await
        .unwrap();
    sync_files(a.root(), &dir.path().join("b"));
    let b = FsEventStore::open(dir.path().join("b")).await.unwrap();
    assert_eq!(log(&a).await, log(&b).await);
    Pair { _dir: dir, a, b }
}

async fn exchange(p: &Pair) {
    sync_files(p.a.root(), p.b.root());
    sync_files(p.b.root(), p.a.root());
    p.a.refresh().await.unwrap();
    p.b.refresh().await.unwrap();
}

async fn assert_same_as_reopened(store: FsEventStore) -> FsEventStore {
    let root = store.root().to_path_buf();
    let before = store.debug_order();
    drop(store);
    let reopened = FsEventStore::open(&root).await.unwrap();
    assert_eq!(before, reopened.debug_order());
    reopened
}

#[tokio::test]
async fn concurrent_writes_fork_and_reads_and_appends_fail_until_reconciled() {
    let p = pair().await;
    // A: one multi-stream request on s and t. B: s alone, and t.
    p.a.commit(
        AppendRequest::new()
            .append(
                &sid("s"),
                ExpectedVersion::Exact(Version::new(2)),
                vec![ev("a-s3")],
            )
            .append(
                &sid("t"),
                ExpectedVersion::Exact(Version::new(1)),
                vec![ev("a-t2")],
            ),
    )
    .await
    .unwrap();
    p.b.commit(
        AppendRequest::new()
            .append(
                &sid("s"),
                ExpectedVersion::Exact(Version::new(2)),
                vec![ev("b-s3")],
            )
            .append(
                &sid("t"),
                ExpectedVersion::Exact(Version::new(1)),
                vec![ev("b-t2")],
            )
            .require(&sid("u"), ExpectedVersion::Exact(Version::new(1))),
    )
    .await
    .unwrap();
    // B also only reads u in another request, and A writes u: no fork on u.
    p.a.append(
        &sid("u"),
        ExpectedVersion::Exact(Version::new(1)),
        vec![ev("a-u2")],
    )
    .await
    .unwrap();
    exchange(&p).await;

    for store in [&p.a, &p.b] {
        let forks = store.forks().await.unwrap();
        assert_eq!(forks.len(), 1, "one fork unit for the multi-stream pair");
        assert_eq!(forks[0].streams, vec![sid("s"), sid("t")]);
        assert_eq!(forks[0].branches.len(), 2);
        assert_eq!(
            forks[0].bases,
            vec![(sid("s"), Version::new(2)), (sid("t"), Version::new(1))]
        );
        let err = stream_events(store, &sid("s")).await.unwrap_err();
        assert!(FsError::is_forked_error(&err), "{err}");
        let err = store.stream_version(&sid("t")).await.unwrap_err();
        assert!(FsError::is_forked_error(&err));
        let err = store
            .append(&sid("s"), ExpectedVersion::Any, vec![ev("x")])
            .await
            .unwrap_err();
        assert!(FsError::is_forked_error(&err));
        // u was only read by B: not a fork anchor, and it reads normally.
        assert_eq!(
            store.stream_version(&sid("u")).await.unwrap(),
            Version::new(2)
        );
    }
    assert_eq!(p.a.forks().await.unwrap(), p.b.forks().await.unwrap());

    // An append to another stream never resolves the fork.
    p.a.append(
        &sid("u"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("a-u3")],
    )
    .await
    .unwrap();
    assert_eq!(p.a.forks().await.unwrap().len(), 1);
    // A stale read-only condition still fails.
    let err =
        p.a.commit(
            AppendRequest::new()
                .append(&sid("v"), ExpectedVersion::Any, vec![ev("v1")])
                .require(&sid("u"), ExpectedVersion::Exact(Version::new(2))),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict());

    let fork = p.a.forks().await.unwrap().remove(0);
    let reconciled =
        p.a.reconcile(&fork.id, Choice::KeepInOrder(vec![1, 0]))
            .await
            .unwrap();
    assert_eq!(
        reconciled.versions,
        vec![(sid("s"), Version::new(4)), (sid("t"), Version::new(3))]
    );
    assert!(p.a.forks().await.unwrap().is_empty());
    let s = stream_events(&p.a, &sid("s")).await.unwrap();
    let first_branch: Vec<_> = fork.branches[1].events.iter().map(|e| e.id).collect();
    assert_eq!(s[2].id, first_branch[0]);
    assert_eq!(
        s.iter().map(|e| e.version.get()).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // Positions strictly increase in the log after the reconcile too.
    let positions: Vec<u64> = log(&p.a).await.iter().map(|e| e.0).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    exchange(&p).await;
    assert!(p.b.forks().await.unwrap().is_empty());
    assert_eq!(log(&p.a).await, log(&p.b).await);
    p.b.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(4)),
        vec![ev("b-s5")],
    )
    .await
    .unwrap();
    let a = assert_same_as_reopened(p.a).await;
    let b = assert_same_as_reopened(p.b).await;
    sync_files(b.root(), a.root());
    a.refresh().await.unwrap();
    assert_eq!(log(&a).await, log(&b).await);
}

#[tokio::test]
async fn keep_one_branch_and_replace_with_new_events() {
    for choice in [
        Choice::Keep(0),
        Choice::Replace(vec![(sid("s"), vec![ev("merged")])]),
    ] {
        let p = pair().await;
        p.a.append(
            &sid("s"),
            ExpectedVersion::Exact(Version::new(2)),
            vec![ev("a3"), ev("a4")],
        )
        .await
        .unwrap();
        p.b.append(
            &sid("s"),
            ExpectedVersion::Exact(Version::new(2)),
            vec![ev("b3")],
        )
        .await
        .unwrap();
        exchange(&p).await;
        let fork = p.b.forks().await.unwrap().remove(0);
        assert_eq!(fork.streams, vec![sid("s")]);
        let done = p.b.reconcile(&fork.id, choice.clone()).await.unwrap();
        let s = stream_events(&p.b, &sid("s")).await.unwrap();
        let types: Vec<_> = s.iter().map(|e| e.event_type.as_str()).collect();
        match choice {
            Choice::Keep(0) => {
                let kept: Vec<_> = fork.branches[0]
                    .events
                    .iter()
                    .map(|e| e.event_type.as_str())
                    .collect();
                assert_eq!(&types[2..], kept.as_slice());
            }
            _ => assert_eq!(types, vec!["s1", "s2", "merged"]),
        }
        assert_eq!(done.versions[0].1.get(), s.len() as u64);
        // The dropped events are gone from the log and by id.
        assert_eq!(common::all_events(&p.b).await.unwrap().len(), s.len() + 2);
        assert_same_as_reopened(p.b).await;
    }
}

#[tokio::test]
async fn a_snapshot_taken_before_a_reconcile_is_not_used_after_it() {
    let p = pair().await;
    p.a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("a3")],
    )
    .await
    .unwrap();
    p.b.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("b3")],
    )
    .await
    .unwrap();
    // Each replica snapshots its own version 3, and version 2 of the agreed history.
    p.b.save_snapshot(
        &sid("s"),
        Snapshot::new(Version::new(3), b"{\"b\":3}".to_vec()),
    )
    .await
    .unwrap();
    p.a.save_snapshot(
        &sid("s"),
        Snapshot::new(Version::new(3), b"{\"a\":3}".to_vec()),
    )
    .await
    .unwrap();
    exchange(&p).await;
    let fork = p.b.forks().await.unwrap().remove(0);
    let a_branch = fork
        .branches
        .iter()
        .position(|b| b.events[0].event_type == "a3")
        .unwrap();
    p.b.reconcile(&fork.id, Choice::KeepInOrder(vec![a_branch, 1 - a_branch]))
        .await
        .unwrap();
    exchange(&p).await;
    // Version 3 now means a3: B's snapshot (of b3) is stale, A's is still right.
    assert_eq!(p.b.load_snapshot(&sid("s")).await.unwrap(), None);
    assert_eq!(
        p.a.load_snapshot(&sid("s"))
            .await
            .unwrap()
            .map(|s| s.version),
        Some(Version::new(3))
    );
}

#[tokio::test]
async fn dangling_parents_are_reported_then_healed() {
    let p = pair().await;
    p.a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("a3")],
    )
    .await
    .unwrap();
    let first: Vec<_> = std::fs::read_dir(p.a.root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    p.a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(3)),
        vec![ev("a4")],
    )
    .await
    .unwrap();
    let child = std::fs::read_dir(p.a.root().join("events"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| !first.contains(&e.file_name()))
        .unwrap();
    // B gets the child without its parent.
    std::fs::copy(
        child.path(),
        p.b.root().join("events").join(child.file_name()),
    )
    .unwrap();
    let status = p.b.status().await.unwrap();
    assert_eq!(status.dangling.len(), 1, "{status:?}");
    assert_eq!(status.dangling[0].missing_parents.len(), 1);
    assert_eq!(
        p.b.stream_version(&sid("s")).await.unwrap(),
        Version::new(2)
    );
    sync_files(p.a.root(), p.b.root());
    let status = p.b.status().await.unwrap();
    assert!(status.is_clean(), "{status:?}");
    assert_eq!(
        p.b.stream_version(&sid("s")).await.unwrap(),
        Version::new(4)
    );
    assert_eq!(log(&p.a).await, log(&p.b).await);
}

#[tokio::test]
async fn reconcile_rejects_unknown_forks_and_bad_choices() {
    let p = pair().await;
    assert!(matches!(
        p.a.reconcile("nope", Choice::Keep(0)).await,
        Err(FsError::UnknownFork(_))
    ));
    p.a.append(&sid("s"), ExpectedVersion::Any, vec![ev("a3")])
        .await
        .unwrap();
    p.b.append(&sid("s"), ExpectedVersion::Any, vec![ev("b3")])
        .await
        .unwrap();
    exchange(&p).await;
    let fork = p.a.forks().await.unwrap().remove(0);
    for bad in [
        Choice::Keep(2),
        Choice::KeepInOrder(vec![0, 0]),
        Choice::KeepInOrder(vec![]),
        Choice::Replace(vec![(sid("t"), vec![ev("x")])]),
    ] {
        assert!(matches!(
            p.a.reconcile(&fork.id, bad).await,
            Err(FsError::InvalidChoice(_))
        ));
    }
    assert_eq!(p.a.forks().await.unwrap().len(), 1);
}

#[tokio::test]
async fn two_replicas_reconciling_the_same_fork() {
    // The same choice on both sides: they agree, no new fork.
    let p = pair().await;
    p.a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("a3")],
    )
    .await
    .unwrap();
    p.b.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("b3")],
    )
    .await
    .unwrap();
    exchange(&p).await;
    let fork = p.a.forks().await.unwrap().remove(0);
    p.a.reconcile(&fork.id, Choice::KeepInOrder(vec![0, 1]))
        .await
        .unwrap();
    p.b.reconcile(&fork.id, Choice::KeepInOrder(vec![0, 1]))
        .await
        .unwrap();
    exchange(&p).await;
    assert!(p.a.forks().await.unwrap().is_empty());
    assert_eq!(log(&p.a).await, log(&p.b).await);
    // Both sides keep appending without a false fork.
    p.a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(4)),
        vec![ev("a5")],
    )
    .await
    .unwrap();
    exchange(&p).await;
    p.b.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(5)),
        vec![ev("b6")],
    )
    .await
    .unwrap();
    exchange(&p).await;
    assert!(p.b.status().await.unwrap().is_clean());
    assert_eq!(log(&p.a).await, log(&p.b).await);
    assert_same_as_reopened(p.a).await;

    // Different choices: the two outcomes are a new fork, reconciled once more.
    let p = pair().await;
    p.a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("a3")],
    )
    .await
    .unwrap();
    p.b.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("b3")],
    )
    .await
    .unwrap();
    exchange(&p).await;
    let fork = p.a.forks().await.unwrap().remove(0);
    p.a.reconcile(&fork.id, Choice::Keep(0)).await.unwrap();
    p.b.reconcile(&fork.id, Choice::Keep(1)).await.unwrap();
    exchange(&p).await;
    let again = p.a.forks().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again, p.b.forks().await.unwrap());
    let outcomes: Vec<Vec<String>> = again[0]
        .branches
        .iter()
        .map(|b| b.events.iter().map(|e| e.event_type.clone()).collect())
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes.contains(&vec!["a3".to_owned()]) && outcomes.contains(&vec!["b3".to_owned()]),
        "{outcomes:?}"
    );
    p.b.reconcile(&again[0].id, Choice::KeepInOrder(vec![1, 0]))
        .await
        .unwrap();
    exchange(&p).await;
    assert!(p.a.forks().await.unwrap().is_empty());
    assert_eq!(stream_events(&p.a, &sid("s")).await.unwrap().len(), 4);
    assert_eq!(log(&p.a).await, log(&p.b).await);
    assert_same_as_reopened(p.b).await;
}

#[tokio::test]
async fn get_event_of_a_forked_stream_is_forked_like_its_reads() {
    let p = pair().await;
    let agreed = stream_events(&p.a, &sid("s")).await.unwrap();
    let t1 = stream_events(&p.a, &sid("t")).await.unwrap().remove(0);
    p.a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("a3")],
    )
    .await
    .unwrap();
    p.b.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("b3")],
    )
    .await
    .unwrap();
    exchange(&p).await;
    let fork = p.a.forks().await.unwrap().remove(0);
    let branch_events: Vec<_> = fork.branches.iter().map(|b| b.events[0].id).collect();
    for store in [&p.a, &p.b] {
        // A branch event, and an agreed event before the fork: both Forked, never
        // a branch-local version.
        for id in [branch_events[0], branch_events[1], agreed[0].id] {
            let err = store.get_event(id).await.unwrap_err();
            assert!(FsError::is_forked_error(&err), "{id}: {err}");
        }
        // Events of other streams read normally.
        assert_eq!(store.get_event(t1.id).await.unwrap(), t1);
    }
    // After the reconcile: the kept event has its agreed version, the dropped one
    // is gone.
    let a_branch = fork
        .branches
        .iter()
        .position(|b| b.events[0].event_type == "a3")
        .unwrap();
    p.a.reconcile(&fork.id, Choice::Keep(a_branch))
        .await
        .unwrap();
    exchange(&p).await;
    for store in [&p.a, &p.b] {
        let kept = store.get_event(branch_events[a_branch]).await.unwrap();
        assert_eq!(
            (kept.event_type.as_str(), kept.version),
            ("a3", Version::new(3))
        );
        let dropped = store
            .get_event(branch_events[1 - a_branch])
            .await
            .unwrap_err();
        assert!(dropped.is_not_found(), "{dropped}");
        assert_eq!(store.get_event(agreed[0].id).await.unwrap(), agreed[0]);
    }
}
