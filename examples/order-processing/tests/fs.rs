//! The example end to end on annals-fs (`--data-dir fs://<dir>`): the demo, later
//! processes continuing from the stored versions and snapshot, the by-status read
//! model, and a fork between two copies of the folder reported, not interleaved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{fs, path::Path};

mod common;

use common::order_line;

/// `--data-dir fs://<root>`.
fn fs_dir(root: &Path) -> String {
    format!("fs://{}", root.display())
}

fn ok(root: &Path, args: &[&str]) -> String {
    common::ok(fs_dir(root), args)
}

fn run(root: &Path, args: &[&str]) -> common::Run {
    common::run(fs_dir(root), args)
}

fn event_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What `git pull` does to the folder, without git: copy the event files `to` lacks.
fn pull(from: &Path, to: &Path) -> usize {
    let mut copied = 0;
    for name in event_files(from) {
        let target = to.join("events").join(&name);
        if !target.exists() {
            fs::copy(from.join("events").join(&name), target).unwrap();
            copied += 1;
        }
    }
    copied
}

#[test]
fn the_demo_and_later_runs_work_on_an_fs_folder() {
    let dir = tempfile::tempdir().unwrap();
    // The folder does not exist yet: the store creates it.
    let root = dir.path().join("nested").join("orders-log");

    let demo = ok(&root, &["demo"]);
    assert!(
        demo.contains(&format!("storage: annals-fs folder {}", root.display())),
        "{demo}"
    );
    assert!(demo.contains("demo run #1"), "{demo}");
    assert!(demo.contains("REJECTED"), "{demo}");
    assert!(
        demo.contains("loaded from the snapshot at version 100 + 51 newer events"),
        "the long-lived order must load from a snapshot:\n{demo}"
    );
    // The log is files in events/, one per append request; nothing else is
    // committed, and no SQLite file appears.
    let files = event_files(&root);
    assert!(files.len() > 150, "{} files", files.len());
    assert!(files.iter().all(|f| f.ends_with(".jsonl")), "{files:?}");
    assert!(fs::read_to_string(root.join(".gitignore"))
        .unwrap()
        .lines()
        .any(|l| l == "/.annals/"));
    assert!(!root.join("orders.db").exists());

    // More processes, one command each, continue from the stored versions.
    common::later_processes_continue(fs_dir(&root).as_str());

    // The by-status read model, kept in the git-ignored .annals/ folder.
    let by_status = ok(&root, &["list", "--by-status"]);
    assert!(by_status.contains("shipped:\n  d1-alice"), "{by_status}");
    assert!(by_status.contains("  r-1"), "{by_status}");
    assert!(root.join(".annals").join("read-model.db").exists());

    // Another run of the demo sees run #1.
    let again = ok(&root, &["demo"]);
    assert!(again.contains("demo run #2"), "{again}");
}

#[test]
fn concurrent_edits_in_two_copies_are_a_fork_the_example_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&a, &["place", "o-1", "Olga"]);
    ok(&a, &["add-item", "o-1", "tea", "1", "4.50"]);
    // A clone: the same event files, its own machine-local state.
    fs::create_dir_all(b.join("events")).unwrap();
    assert_eq!(pull(&a, &b), 2);
    let shown = ok(&b, &["show", "o-1"]);
    assert!(order_line(&shown, "o-1").contains("version 2"), "{shown}");

    // Both add an item to the same order, offline, then exchange files.
    ok(&a, &["add-item", "o-1", "cake", "1", "3.00"]);
    ok(&b, &["add-item", "o-1", "scone", "2", "2.00"]);
    assert_eq!(pull(&b, &a), 1);
    assert_eq!(pull(&a, &b), 1);

    // Neither copy silently interleaves the two histories: the order is forked
    // (a storage error, exit code 3) in both, and commands on it are refused.
    for root in [&a, &b] {
        let show = run(root, &["show", "o-1"]);
        assert_eq!(show.code, 3, "{}\n{}", show.stdout, show.stderr);
        assert!(show.stderr.contains("forked"), "{}", show.stderr);
        let pay = run(root, &["pay", "o-1", "8.50"]);
        assert_eq!(pay.code, 3, "{}\n{}", pay.stdout, pay.stderr);
        // Other orders are not affected.
        ok(root, &["place", "o-2", "Otto"]);
    }
}
