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

/// The newest file in `events/` (file names start with a time-ordered id).
fn newest_file(root: &std::path::Path) -> std::path::PathBuf {
    event_files(root).pop().unwrap()
}

/// Replaces `from` by `to` (the same length) in a file, in place: same inode, same
/// size, only the content and the modification time change.
fn edit_in_place(file: &std::path::Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let text = fs::read_to_string(file).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from} in {text}");
    let mut handle = fs::OpenOptions::new().write(true).open(file).unwrap();
    std::io::Write::write_all(&mut handle, text.replacen(from, to, 1).as_bytes()).unwrap();
    handle.sync_all().unwrap();
}

fn set_mtime(path: &std::path::Path, at: std::time::SystemTime) {
    fs::File::open(path).unwrap().set_modified(at).unwrap();
}

#[tokio::test]
async fn a_file_that_arrives_unnoticed_around_an_own_write_is_read_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let a = FsEventStore::open(dir.path().join("a")).await.unwrap();
    let b = FsEventStore::open(dir.path().join("b")).await.unwrap();
    a.append(&sid("mine"), ExpectedVersion::NoStream, vec![ev("A1")])
        .await
        .unwrap();
    b.append(&sid("pulled"), ExpectedVersion::NoStream, vec![ev("B1")])
        .await
        .unwrap();
    let events = a.root().join("events");
    // A listing of a folder whose time is old enough to be trusted.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
    set_mtime(&events, past);
    assert_eq!(stream_events(&a, &sid("mine")).await.unwrap().len(), 1);
    // A file arrives (a `git pull`) and leaves no trace in the folder's time: what
    // happens when it lands in the clock tick of the write that follows, or
    // between that write's last look at the folder and its rename.
    assert_eq!(common::sync_files(b.root(), a.root()), 1);
    set_mtime(&events, past);
    a.append(
        &sid("mine"),
        ExpectedVersion::Exact(Version::new(1)),
        vec![ev("A2")],
    )
    .await
    .unwrap();
    // The folder's time after the own write is not trusted: the next read lists
    // it and finds the pulled file, without an explicit refresh.
    let pulled = stream_events(&a, &sid("pulled")).await.unwrap();
    assert_eq!(pulled.len(), 1, "the pulled file stays invisible");
    assert_eq!(pulled[0].event_type, "B1");
    assert_eq!(log(&a).await.len(), 3);
}

#[tokio::test]
async fn a_payload_edited_while_open_is_never_served_and_refresh_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    store
        .append(&sid("kept"), ExpectedVersion::NoStream, vec![ev("K1")])
        .await
        .unwrap();
    store
        .append(&sid("edited"), ExpectedVersion::NoStream, vec![ev("E1")])
        .await
        .unwrap();
    let edited_id = stream_events(&store, &sid("edited")).await.unwrap()[0].id;
    let file = newest_file(dir.path());
    let original = fs::read(&file).unwrap();
    // Same length, valid JSON: only the hash can tell.
    edit_in_place(&file, "\\\"kind\\\":\\\"E1", "\\\"kind\\\":\\\"X1");

    // Before a refresh the index still lists the event, but a read checks the
    // file against its hash and fails rather than serving the edited payload.
    let err = stream_events(&store, &sid("edited")).await.unwrap_err();
    match FsError::find(&err) {
        Some(FsError::FileChanged { file: changed }) => {
            assert_eq!(
                changed,
                &std::path::Path::new("events").join(file.file_name().unwrap())
            );
        }
        other => panic!("expected FileChanged, got {other:?} ({err})"),
    }
    let err = store.get_event(edited_id).await.unwrap_err();
    assert!(
        matches!(FsError::find(&err), Some(FsError::FileChanged { .. })),
        "{err}"
    );
    assert!(common::all_events(&store).await.is_err());

    // refresh() sees the changed stamp, verifies the file again, reports it and
    // leaves it out of the order.
    store.refresh().await.unwrap();
    let status = store.status().await.unwrap();
    assert_eq!(status.bad_files.len(), 1, "{status:?}");
    assert_eq!(status.bad_files[0].problem, FileProblem::HashMismatch);
    assert_eq!(
        status.bad_files[0].file,
        std::path::Path::new("events").join(file.file_name().unwrap())
    );
    assert!(stream_events(&store, &sid("edited"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.stream_version(&sid("edited")).await.unwrap(),
        Version::ZERO
    );
    assert!(store.get_event(edited_id).await.unwrap_err().is_not_found());
    let all = common::all_events(&store).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].event_type, "K1");

    // Restored (`git checkout -- events/`): the next refresh takes it back.
    fs::write(&file, original).unwrap();
    store.refresh().await.unwrap();
    assert!(store.status().await.unwrap().is_clean());
    let back = stream_events(&store, &sid("edited")).await.unwrap();
    assert_eq!(back[0].payload, br#"{"kind":"E1"}"#.to_vec());
}

#[tokio::test]
async fn a_header_edited_while_open_fails_its_hash_at_the_next_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    store
        .append(&sid("s"), ExpectedVersion::NoStream, vec![ev("E1")])
        .await
        .unwrap();
    store
        .append(
            &sid("s"),
            ExpectedVersion::Exact(Version::new(1)),
            vec![ev("E2")],
        )
        .await
        .unwrap();
    let first = event_files(dir.path()).remove(0);
    // Rewrite the first file's replica id (one hex digit): the header, not an event.
    let header: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&first).unwrap().lines().next().unwrap()).unwrap();
    let replica = header["replica"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if replica.starts_with('0') { '1' } else { '0' },
        &replica[1..]
    );
    edit_in_place(&first, &replica, &flipped);
    store.refresh().await.unwrap();
    let status = store.status().await.unwrap();
    assert_eq!(status.bad_files.len(), 1, "{status:?}");
    assert_eq!(status.bad_files[0].problem, FileProblem::HashMismatch);
    // The second transaction descends from the first: it waits for its parent.
    assert_eq!(status.dangling.len(), 1, "{status:?}");
    assert_eq!(
        status.dangling[0].missing_parents,
        vec![header["tx"].as_str().unwrap()]
    );
    assert_eq!(
        store.stream_version(&sid("s")).await.unwrap(),
        Version::ZERO
    );
    assert!(log(&store).await.is_empty());
}

/// Rewrites a valid file with `from` replaced by `to` in its header, the hash
/// recomputed and the file renamed to match: a file that passes its hash.
fn forge(file: &std::path::Path, from: &str, to: &str) -> std::path::PathBuf {
    use sha2::Digest as _;
    let text = fs::read_to_string(file).unwrap();
    let (header, events) = text.split_once('\n').unwrap();
    assert!(header.contains(from), "{header}");
    let zeroed = format!("{{\"hash\":\"{}\"", "0".repeat(64));
    let header = format!("{zeroed}{}", &header.replacen(from, to, 1)[zeroed.len()..]);
    let body = format!("{header}\n{events}");
    let hash: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = body.replacen(&"0".repeat(64), &hash, 1);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let renamed = file.with_file_name(format!("{}-{}.jsonl", &name[..32], &hash[..16]));
    fs::remove_file(file).unwrap();
    fs::write(&renamed, body).unwrap();
    renamed
}

#[tokio::test]
async fn a_parent_id_that_is_not_a_uuid_is_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    store
        .append(&sid("s"), ExpectedVersion::NoStream, vec![ev("E1")])
        .await
        .unwrap();
    drop(store);
    let forged = forge(
        &newest_file(dir.path()),
        "\"parents\":[]",
        "\"parents\":[\"not-a-uuid\"]",
    );
    let store = FsEventStore::open(dir.path()).await.unwrap();
    let status = store.status().await.unwrap();
    assert_eq!(status.bad_files.len(), 1, "{status:?}");
    assert_eq!(
        status.bad_files[0].file,
        std::path::Path::new("events").join(forged.file_name().unwrap())
    );
    match &status.bad_files[0].problem {
        FileProblem::Malformed(why) => assert!(why.contains("not-a-uuid"), "{why}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert!(log(&store).await.is_empty());
}

#[tokio::test]
async fn the_replica_id_is_kept_and_an_unreadable_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let replica_file = dir.path().join(".annals/replica");
    let store = FsEventStore::open(dir.path()).await.unwrap();
    store
        .append(&sid("s"), ExpectedVersion::NoStream, vec![ev("E1")])
        .await
        .unwrap();
    drop(store);
    let id = fs::read_to_string(&replica_file).unwrap();
    let header: serde_json::Value = serde_json::from_str(
        fs::read_to_string(newest_file(dir.path()))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["replica"], id.as_str());

    // Not a UUID: an error, and the file is left as it is.
    fs::write(&replica_file, "garbage").unwrap();
    let err = FsEventStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, FsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("replica"), "{err}");
    assert_eq!(fs::read_to_string(&replica_file).unwrap(), "garbage");
    // Unreadable (here: a folder in its place): an error too.
    fs::remove_file(&replica_file).unwrap();
    fs::create_dir(&replica_file).unwrap();
    let err = FsEventStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, FsError::Io { .. }), "{err}");
    assert!(replica_file.is_dir());
    // Restored: the same id again.
    fs::remove_dir(&replica_file).unwrap();
    fs::write(&replica_file, &id).unwrap();
    drop(FsEventStore::open(dir.path()).await.unwrap());
    assert_eq!(fs::read_to_string(&replica_file).unwrap(), id);
    // Missing: a new one.
    fs::remove_file(&replica_file).unwrap();
    drop(FsEventStore::open(dir.path()).await.unwrap());
    let new = fs::read_to_string(&replica_file).unwrap();
    assert_ne!(new, id);
    assert!(uuid::Uuid::parse_str(&new).is_ok(), "{new}");
}

#[tokio::test]
async fn a_snapshot_file_that_does_not_parse_is_treated_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsEventStore::open(dir.path()).await.unwrap();
    store
        .append(&sid("s"), ExpectedVersion::NoStream, vec![ev("E1")])
        .await
        .unwrap();
    store
        .save_snapshot(
            &sid("s"),
            annals_fs::Snapshot::new(Version::new(1), b"state".to_vec()),
        )
        .await
        .unwrap();
    let snapshots: Vec<_> = fs::read_dir(dir.path().join(".annals/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snapshots.len(), 1);
    assert!(store.load_snapshot(&sid("s")).await.unwrap().is_some());
    fs::write(&snapshots[0], "{ half a snap").unwrap();
    assert_eq!(store.load_snapshot(&sid("s")).await.unwrap(), None);
    // The next save replaces it.
    store
        .save_snapshot(
            &sid("s"),
            annals_fs::Snapshot::new(Version::new(1), b"again".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(
        store.load_snapshot(&sid("s")).await.unwrap().unwrap().state,
        b"again".to_vec()
    );
}

const LOCK_CHILD_ENV: &str = "ANNALS_FS_LOCK_CHILD_ROOT";
const LOCKED: &str = "annals-fs-child-holds-the-writer-lock";

/// In the child: open the store for writing, say so, and hold it until killed.
/// Does nothing when run as an ordinary test.
#[tokio::test]
async fn store_locked_child() {
    let Ok(root) = std::env::var(LOCK_CHILD_ENV) else {
        return;
    };
    let store = FsEventStore::open(&root).await.unwrap();
    store
        .append(&sid("child"), ExpectedVersion::NoStream, vec![ev("C1")])
        .await
        .unwrap();
    #[allow(clippy::print_stdout)]
    {
        println!("{LOCKED}");
    }
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn a_writer_in_another_process_locks_the_store_until_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut child = annals_testing::child::Child::spawn(
        "store_locked_child",
        &[(LOCK_CHILD_ENV, root.as_os_str())],
    );
    child.wait_for(LOCKED, std::time::Duration::from_secs(120));
    match FsEventStore::open(&root).await {
        Err(FsError::StoreLocked { root: locked }) => assert_eq!(locked, root),
        other => panic!("expected StoreLocked, got {other:?}"),
    }
    // Readers are allowed alongside the other process's writer.
    let reader = FsEventStore::open_read_only(&root).await.unwrap();
    assert_eq!(
        reader.stream_version(&sid("child")).await.unwrap(),
        Version::new(1)
    );
    // The OS releases the lock with the process: no stale lock after a SIGKILL.
    child.kill();
    let store = FsEventStore::open(&root).await.unwrap();
    store
        .append(
            &sid("child"),
            ExpectedVersion::Exact(Version::new(1)),
            vec![ev("P1")],
        )
        .await
        .unwrap();
}
