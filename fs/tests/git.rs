//! Real git: an origin and two clones, divergent multi-stream appends, `git
//! merge` in both directions, the fork detected in both clones, a reconcile pushed
//! and pulled until both clones converge, and a merge that brings a dangling parent,
//! healed by the next pull.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use annals_fs::{
    AppendRequest, Choice, EventStore, ExpectedVersion, FsError, FsEventStore, Version,
};
use common::{ev, log, sid, stream_events};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "annals")
        .env("GIT_AUTHOR_EMAIL", "annals@example.com")
        .env("GIT_COMMITTER_NAME", "annals")
        .env("GIT_COMMITTER_EMAIL", "annals@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("the git binary");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn commit_all(repo: &Path, message: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
}

struct Repos {
    _dir: tempfile::TempDir,
    origin: PathBuf,
    a: PathBuf,
    b: PathBuf,
}

/// A bare origin with a first commit of the store (in a sub-folder), cloned twice.
async fn repos() -> Repos {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    let a = dir.path().join("a");
    git(dir.path(), &["clone", "-q", origin.to_str().unwrap(), "a"]);
    git(&a, &["checkout", "-q", "-b", "main"]);
    std::fs::write(a.join("README.md"), "a model\n").unwrap();
    {
        let store = FsEventStore::open(a.join("history")).await.unwrap();
        store
            .append(&sid("spec"), ExpectedVersion::NoStream, vec![ev("Drafted")])
            .await
            .unwrap();
        store
            .append(
                &sid("review"),
                ExpectedVersion::NoStream,
                vec![ev("Opened")],
            )
            .await
            .unwrap();
    }
    commit_all(&a, "history");
    git(&a, &["push", "-q", "origin", "main"]);
    let b = dir.path().join("b");
    git(
        dir.path(),
        &["clone", "-q", "-b", "main", origin.to_str().unwrap(), "b"],
    );
    Repos {
        _dir: dir,
        origin,
        a,
        b,
    }
}

#[tokio::test]
async fn two_clones_fork_detect_reconcile_and_converge() {
    let r = repos().await;
    let a = FsEventStore::open(r.a.join("history")).await.unwrap();
    let b = FsEventStore::open(r.b.join("history")).await.unwrap();
    assert_eq!(log(&a).await, log(&b).await);
    // Machine-local files are ignored by git.
    assert_eq!(git(&r.a, &["status", "--porcelain"]), "");

    // Divergent appends: A and B each write spec and review in one request.
    a.commit(
        AppendRequest::new()
            .append(
                &sid("spec"),
                ExpectedVersion::Exact(Version::new(1)),
                vec![ev("A-Edited")],
            )
            .append(
                &sid("review"),
                ExpectedVersion::Exact(Version::new(1)),
                vec![ev("A-Commented")],
            ),
    )
    .await
    .unwrap();
    commit_all(&r.a, "a: edit");
    b.commit(
        AppendRequest::new()
            .append(
                &sid("spec"),
                ExpectedVersion::Exact(Version::new(1)),
                vec![ev("B-Edited")],
            )
            .append(
                &sid("review"),
                ExpectedVersion::Exact(Version::new(1)),
                vec![ev("B-Commented")],
            ),
    )
    .await
    .unwrap();
    b.append(
        &sid("notes"),
        ExpectedVersion::NoStream,
        vec![ev("B-Noted")],
    )
    .await
    .unwrap();
    commit_all(&r.b, "b: edit");
    let a_head = git(&r.a, &["rev-parse", "HEAD"]).trim().to_owned();

    // git merge in both directions.
    git(
        &r.a,
        &[
            "pull",
            "-q",
            "--no-rebase",
            "--no-edit",
            r.b.to_str().unwrap(),
            "main",
        ],
    );
    git(&r.b, &["fetch", "-q", r.a.to_str().unwrap(), "main"]);
    git(&r.b, &["merge", "-q", "--no-edit", &a_head]);

    let (fa, fb) = (a.forks().await.unwrap(), b.forks().await.unwrap());
    // Two multi-stream requests on the same streams: ONE fork unit, not one fork
    // per stream, with one branch per request holding both streams' events.
    assert_eq!(fa.len(), 1, "A sees one fork: {fa:?}");
    assert_eq!(fa, fb, "both clones see the same fork");
    assert_eq!(fa[0].streams, vec![sid("review"), sid("spec")]);
    assert_eq!(fa[0].branches.len(), 2);
    for branch in &fa[0].branches {
        assert_eq!(branch.transactions.len(), 1);
        let mut streams: Vec<_> = branch.events.iter().map(|e| e.stream_id.clone()).collect();
        streams.sort();
        assert_eq!(streams, vec![sid("review"), sid("spec")]);
    }
    for store in [&a, &b] {
        for forked in ["spec", "review"] {
            let err = stream_events(store, &sid(forked)).await.unwrap_err();
            assert!(FsError::is_forked_error(&err), "{forked}: {err}");
        }
        // notes, written by B alone, is not forked.
        assert_eq!(
            store.stream_version(&sid("notes")).await.unwrap(),
            Version::new(1)
        );
    }

    // Reconcile in A (keep both, B's first), push; B pulls.
    let b_first = fa[0]
        .branches
        .iter()
        .position(|br| br.events.iter().any(|e| e.event_type == "B-Edited"))
        .unwrap();
    let reconciled = a
        .reconcile(&fa[0].id, Choice::KeepInOrder(vec![b_first, 1 - b_first]))
        .await
        .unwrap();
    assert_eq!(
        reconciled.versions,
        vec![
            (sid("review"), Version::new(3)),
            (sid("spec"), Version::new(3))
        ]
    );
    commit_all(&r.a, "a: reconcile");
    git(&r.a, &["push", "-q", "origin", "main"]);
    git(
        &r.b,
        &[
            "pull",
            "-q",
            "--no-rebase",
            "--no-edit",
            r.origin.to_str().unwrap(),
            "main",
        ],
    );
    assert!(b.forks().await.unwrap().is_empty());
    let spec: Vec<_> = stream_events(&b, &sid("spec"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(spec, vec!["Drafted", "B-Edited", "A-Edited"]);
    let review: Vec<_> = stream_events(&b, &sid("review"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(review, vec!["Opened", "B-Commented", "A-Commented"]);
    assert_eq!(log(&a).await, log(&b).await, "both clones converge");

    // Both continue; the next exchange is a plain merge, no fork.
    b.append(
        &sid("spec"),
        ExpectedVersion::Exact(Version::new(3)),
        vec![ev("B-Approved")],
    )
    .await
    .unwrap();
    commit_all(&r.b, "b: approve");
    git(&r.b, &["push", "-q", "origin", "HEAD:main"]);
    git(
        &r.a,
        &["pull", "-q", "--no-rebase", "--no-edit", "origin", "main"],
    );
    assert!(a.status().await.unwrap().is_clean());
    assert_eq!(
        a.stream_version(&sid("spec")).await.unwrap(),
        Version::new(4)
    );
    assert_eq!(log(&a).await, log(&b).await);
    // And a cold open agrees with both.
    let path = r.a.join("history");
    drop(a);
    let reopened = FsEventStore::open(path).await.unwrap();
    assert_eq!(log(&reopened).await, log(&b).await);
}

#[tokio::test]
async fn a_merge_bringing_a_dangling_parent_is_reported_then_healed() {
    let r = repos().await;
    let base = git(&r.a, &["rev-parse", "HEAD"]).trim().to_owned();
    let a = FsEventStore::open(r.a.join("history")).await.unwrap();
    let before: Vec<_> = std::fs::read_dir(r.a.join("history/events"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    a.append(
        &sid("spec"),
        ExpectedVersion::Exact(Version::new(1)),
        vec![ev("Parent")],
    )
    .await
    .unwrap();
    let parent: Vec<_> = std::fs::read_dir(r.a.join("history/events"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !before.contains(n))
        .collect();
    a.append(
        &sid("spec"),
        ExpectedVersion::Exact(Version::new(2)),
        vec![ev("Child")],
    )
    .await
    .unwrap();
    commit_all(&r.a, "a: two appends");
    // A branch off the base with only the child: what a partial pull brings.
    git(&r.a, &["checkout", "-q", "-b", "partial", &base]);
    git(&r.a, &["checkout", "-q", "main", "--", "history/events"]);
    git(
        &r.a,
        &[
            "rm",
            "-q",
            "--cached",
            &format!("history/events/{}", parent[0].to_string_lossy()),
        ],
    );
    std::fs::remove_file(r.a.join("history/events").join(&parent[0])).unwrap();
    git(&r.a, &["commit", "-q", "-m", "partial"]);
    git(&r.a, &["push", "-q", "origin", "partial", "main"]);
    git(&r.a, &["checkout", "-q", "main"]);

    let b = FsEventStore::open(r.b.join("history")).await.unwrap();
    git(
        &r.b,
        &[
            "pull",
            "-q",
            "--no-rebase",
            "--no-edit",
            "origin",
            "partial",
        ],
    );
    let status = b.status().await.unwrap();
    assert_eq!(status.dangling.len(), 1, "{status:?}");
    assert_eq!(
        b.stream_version(&sid("spec")).await.unwrap(),
        Version::new(1)
    );
    git(
        &r.b,
        &["pull", "-q", "--no-rebase", "--no-edit", "origin", "main"],
    );
    let status = b.status().await.unwrap();
    assert!(status.is_clean(), "{status:?}");
    assert_eq!(
        b.stream_version(&sid("spec")).await.unwrap(),
        Version::new(3)
    );
    drop(a);
    let a = FsEventStore::open(r.a.join("history")).await.unwrap();
    assert_eq!(log(&a).await, log(&b).await);
}
