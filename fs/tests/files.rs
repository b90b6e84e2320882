//! The on-disk layout: file format, git rules merged without clobbering, the writer
//! lock, read-only opens, stale tmp files, and bad files reported, never fatal.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;

use annals_fs::{
    AppendRequest, EventStore, ExpectedVersion, FileProblem, FsError, FsEventStore, Version,
};
use common::{ev, log, sid, stream_events};

fn event_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(root.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn one_file_per_request_with_a_hashed_header() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    store
        .commit(
            AppendRequest::new()
                .append(
                    &sid("a"),
                    ExpectedVersion::NoStream,
                    vec![ev("A1"), ev("A2")],
                )
                .append(&sid("b"), ExpectedVersion::NoStream, vec![ev("B1")])
                .require(&sid("c"), ExpectedVersion::NoStream),
        )
        .await
        .unwrap();
    // Binary payloads round-trip too.
    store
        .append(
            &sid("a"),
            ExpectedVersion::Any,
            vec![annals_fs::NewEvent::new("Bin", vec![0xff, 0, 7])],
        )
        .await
        .unwrap();
    let files = event_files(dir.path());
    assert_eq!(files.len(), 2);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with(".jsonl") && name.len() == 32 + 1 + 16 + 6,
        "{name}"
    );
    let text = fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    for field in [
        "hash",
        "format",
        "tx",
        "replica",
        "created",
        "parents",
        "writes",
        "conditions",
    ] {
        assert!(
            header.get(field).is_some(),
            "header lacks {field}: {header}"
        );
    }
    assert_eq!(header["created"].as_str().unwrap().len(), 27);
    assert_eq!(header["writes"][0]["base"], 0);
    assert_eq!(header["conditions"][0]["stream"], "c");
    assert!(name.contains(&header["hash"].as_str().unwrap()[..16]));
    let second: serde_json::Value = serde_json::from_str(
        fs::read_to_string(&files[1])
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(second["parents"][0], header["tx"]);
    drop(store);
    let store = FsEventStore::open(dir.path()).await.unwrap();
    let a = stream_events(&store, &sid("a")).await.unwrap();
    assert_eq!(a[2].payload, vec![0xff, 0, 7]);
}

#[tokio::test]
async fn git_rules_are_merged_into_existing_files_without_clobbering() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".gitignore"), "target/\n*.log").unwrap();
    fs::write(dir.path().join(".gitattributes"), "*.png binary\n").unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    drop(store);
    let ignore = fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert!(ignore.starts_with("target/\n*.log\n"), "{ignore}");
    assert!(ignore.lines().any(|l| l == "/.annals/"));
    let attributes = fs::read_to_string(dir.path().join(".gitattributes")).unwrap();
    assert!(attributes.starts_with("*.png binary\n"));
    assert!(attributes.lines().any(|l| l == "/events/** -text"));
    // Reopening adds nothing twice; a user's later rules stay.
    fs::write(dir.path().join(".gitignore"), format!("{ignore}build/\n")).unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    drop(store);
    let again = fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert_eq!(again, format!("{ignore}build/\n"));
    assert_eq!(
        fs::read_to_string(dir.path().join(".gitattributes")).unwrap(),
        attributes
    );
}

#[tokio::test]
async fn a_second_writer_gets_store_locked_and_readers_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let writer = FsEventStore::open(dir.path()).await.unwrap();
    writer
        .append(&sid("a"), ExpectedVersion::NoStream, vec![ev("A1")])
        .await
        .unwrap();
    match FsEventStore::open(dir.path()).await {
        Err(FsError::StoreLocked { root }) => assert_eq!(root, dir.path()),
        other => panic!("expected StoreLocked, got {other:?}"),
    }
    let reader = FsEventStore::open_read_only(dir.path()).await.unwrap();
    assert_eq!(
        reader.stream_version(&sid("a")).await.unwrap(),
        Version::new(1)
    );
    let err = reader
        .append(&sid("a"), ExpectedVersion::Any, vec![ev("A2")])
        .await
        .unwrap_err();
    assert!(matches!(FsError::find(&err), Some(FsError::ReadOnly)));
    // The reader sees the writer's later appends without reopening.
    writer
        .append(&sid("a"), ExpectedVersion::Any, vec![ev("A2")])
        .await
        .unwrap();
    assert_eq!(
        reader.stream_version(&sid("a")).await.unwrap(),
        Version::new(2)
    );
    drop(writer);
    FsEventStore::open(dir.path()).await.unwrap();
}

#[tokio::test]
async fn stale_tmp_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(FsEventStore::open(dir.path()).await.unwrap());
    let stale = dir.path().join(".annals/tmp/half-written.jsonl.tmp");
    fs::write(&stale, "{\"hash\":").unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    assert!(!stale.exists());
    assert!(store.status().await.unwrap().is_clean());
}

#[tokio::test]
async fn bad_files_are_reported_and_left_out_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    for n in 0..3 {
        store
            .append(
                &sid(&format!("s{n}")),
                ExpectedVersion::NoStream,
                vec![ev("E")],
            )
            .await
            .unwrap();
    }
    drop(store);
    let files = event_files(dir.path());
    // Hand-edit the last file's payload (keeps valid JSON), truncate nothing else.
    let original = fs::read(&files[2]).unwrap();
    let edited = fs::read_to_string(&files[2])
        .unwrap()
        .replace("\"kind\\\":\\\"E", "\"kind\\\":\\\"F");
    assert_ne!(edited, fs::read_to_string(&files[2]).unwrap());
    fs::write(&files[2], edited).unwrap();
    fs::write(dir.path().join("events/notes.txt"), "hello").unwrap();
    fs::write(
        dir.path()
            .join("events/0190a0a0a0a07000800000000000000a-0123456789abcdef.jsonl"),
        "not json\n",
    )
    .unwrap();
    fs::write(dir.path().join("events/.gitkeep"), "").unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    let status = store.status().await.unwrap();
    let mut problems: Vec<_> = status.bad_files.iter().map(|b| b.problem.clone()).collect();
    problems.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(problems.len(), 3, "{status:?}");
    assert!(problems.contains(&FileProblem::HashMismatch));
    assert!(problems.contains(&FileProblem::UnrecognizedName));
    assert!(problems
        .iter()
        .any(|p| matches!(p, FileProblem::Malformed(_))));
    assert_eq!(log(&store).await.len(), 2);
    assert_eq!(
        store.stream_version(&sid("s2")).await.unwrap(),
        Version::ZERO
    );
    // Restoring the file (say `git checkout -- events/`) and refreshing heals it.
    fs::write(&files[2], original).unwrap();
    store.refresh().await.unwrap();
    assert_eq!(store.status().await.unwrap().bad_files.len(), 2);
    assert_eq!(
        store.stream_version(&sid("s2")).await.unwrap(),
        Version::new(1)
    );
}

#[tokio::test]
async fn refresh_picks_up_files_that_arrive_without_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let a = FsEventStore::open(dir.path().join("a")).await.unwrap();
    let b = FsEventStore::open(dir.path().join("b")).await.unwrap();
    a.append(&sid("s"), ExpectedVersion::NoStream, vec![ev("A1")])
        .await
        .unwrap();
    assert_eq!(common::sync_files(a.root(), b.root()), 1);
    assert_eq!(b.refresh().await.unwrap(), 1);
    assert_eq!(b.refresh().await.unwrap(), 0);
    a.append(
        &sid("s"),
        ExpectedVersion::Exact(Version::new(1)),
        vec![ev("A2")],
    )
    .await
    .unwrap();
    common::sync_files(a.root(), b.root());
    // Detected on read, no explicit refresh.
    assert_eq!(stream_events(&b, &sid("s")).await.unwrap().len(), 2);
    assert_eq!(log(&a).await, log(&b).await);
}
