//! The example end to end on annals-fs (`--data-dir fs://<dir>`): the demo, later
//! processes continuing from the stored versions and snapshot, the by-status read
//! model, and a fork between two copies of the folder reported, not interleaved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{fs, path::Path, process::Command};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `--data-dir fs://<root>` then `args`.
fn run(root: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_order-processing"))
        .arg("--data-dir")
        .arg(format!("fs://{}", root.display()))
        .args(args)
        .output()
        .expect("the order-processing binary runs");
    Run {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn ok(root: &Path, args: &[&str]) -> String {
    let r = run(root, args);
    assert_eq!(r.code, 0, "{args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// The line of `order <id>` in `list`/`show` output.
fn order_line<'a>(output: &'a str, id: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(&format!("order {id} ")))
        .unwrap_or_else(|| panic!("no order {id} in:\n{output}"))
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
    ok(&root, &["place", "r-1", "Rita"]);
    let added = ok(&root, &["add-item", "r-1", "tea", "2", "4.50"]);
    assert!(added.contains("(version 2)"), "{added}");
    let list = ok(&root, &["--verbose", "list"]);
    let alice = order_line(&list, "d1-alice");
    assert!(
        alice.contains("[shipped]") && alice.contains("version 6"),
        "{alice}"
    );
    assert!(order_line(&list, "d1-bob").contains("version 3"));
    assert!(order_line(&list, "d1-carol").contains("[cancelled]"));
    let legacy = order_line(&list, "d1-legacy");
    assert!(
        legacy.contains("[paid]") && legacy.contains("version 3"),
        "{legacy}"
    );
    assert!(order_line(&list, "d1-erin").contains("version 151"));
    assert!(order_line(&list, "r-1").contains("version 2"));
    assert!(
        list.contains("loaded from the snapshot at version 100 + 51 newer events"),
        "the snapshot in .annals/ survives the restart:\n{list}"
    );
    let paid = ok(&root, &["pay", "r-1", "9.00"]);
    assert!(paid.contains("recorded OrderPaid.v1 (version 3)"), "{paid}");

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
