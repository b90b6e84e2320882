//! The example survives a restart: a second process on the same data directory
//! sees the first one's orders and versions. Also checks exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ok, order_line, run};

#[test]
fn second_run_sees_first_runs_orders_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    // The data directory does not exist yet: the program creates it.
    let data = dir.path().join("nested").join("data");

    // First process: the demo.
    let demo = ok(&data, &["demo"]);
    assert!(demo.contains("demo run #1"), "{demo}");
    assert!(
        demo.contains("loaded from the snapshot at version 100 + 51 newer events"),
        "the long-lived order must load from a snapshot:\n{demo}"
    );
    assert!(demo.contains("REJECTED"), "{demo}");
    assert!(data.join("orders.db").exists());

    // More processes: one command each, from the stored versions.
    common::later_processes_continue(&data);

    // The demo again: it sees run #1 and starts run #2.
    let again = ok(&data, &["demo"]);
    assert!(again.contains("demo run #2"), "{again}");
}

#[test]
fn exit_codes_distinguish_rejections_usage_and_storage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["place", "x-1", "Xavier"]);

    let rejected = run(data, &["ship", "x-1", "DHL"]);
    assert_eq!(rejected.code, 1);
    assert!(
        rejected.stderr.contains("cannot ship an unpaid order"),
        "{}",
        rejected.stderr
    );

    let missing = run(data, &["show", "nobody"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("does not exist"));

    let usage = run(data, &["add-item", "x-1", "tea", "two", "1.00"]);
    assert_eq!(usage.code, 2);
    assert!(usage.stderr.contains("is not a quantity"));

    let too_long = "x".repeat(300);
    let invalid = run(data, &["show", &too_long]);
    assert_eq!(invalid.code, 2, "{}", invalid.stderr);
    assert!(
        invalid.stderr.contains("invalid input"),
        "{}",
        invalid.stderr
    );

    let file = data.join("not-a-dir");
    std::fs::write(&file, b"plain file").unwrap();
    let storage = run(&file, &["list"]);
    assert_eq!(storage.code, 3, "{}", storage.stderr);
}

/// The statuses `list --by-status` prints, as `(status, order)` pairs.
fn by_status(output: &str) -> Vec<(String, String)> {
    let mut status = String::new();
    let mut rows = Vec::new();
    for line in output.lines() {
        if let Some(order) = line.strip_prefix("  ") {
            rows.push((status.clone(), order.to_owned()));
        } else if let Some(s) = line.strip_suffix(':') {
            status = s.to_owned();
        }
    }
    rows
}

/// How many new events the verbose run says it handled.
fn handled(output: &str) -> usize {
    let line = output
        .lines()
        .find(|l| l.starts_with("read model "))
        .unwrap_or_else(|| panic!("no read model line in:\n{output}"));
    let count = line.split(": ").nth(1).unwrap().split(' ').next().unwrap();
    count.parse().unwrap()
}

#[test]
fn the_by_status_read_model_survives_restarts_without_reprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&data, &["demo"]);

    let first = ok(&data, &["-v", "list", "--by-status"]);
    assert!(
        handled(&first) > 100,
        "the first run reads the whole log:\n{first}"
    );
    let rows = by_status(&first);
    assert!(
        rows.contains(&("shipped".into(), "d1-alice".into())),
        "{first}"
    );
    assert!(rows.contains(&("paid".into(), "d1-bob".into())), "{first}");
    assert!(
        rows.contains(&("cancelled".into(), "d1-carol".into())),
        "{first}"
    );
    // Every order appears once, under the status `show` reports.
    for (status, order) in &rows {
        let shown = ok(&data, &["show", order]);
        assert!(
            order_line(&shown, order).contains(status.as_str()),
            "{order}: {shown}"
        );
    }

    // A new process: nothing new to read, the same answer.
    let second = ok(&data, &["-v", "list", "--by-status"]);
    assert_eq!(handled(&second), 0, "{second}");
    assert_eq!(by_status(&second), rows);

    // One more event: the next run reads just that one.
    ok(&data, &["ship", "d1-bob", "DHL"]);
    let third = ok(&data, &["-v", "list", "--by-status"]);
    assert_eq!(handled(&third), 1, "{third}");
    let after = by_status(&third);
    assert!(
        after.contains(&("shipped".into(), "d1-bob".into())),
        "{third}"
    );
    assert!(
        !after.contains(&("paid".into(), "d1-bob".into())),
        "{third}"
    );
    assert_eq!(after.len(), rows.len());

    let bad = run(&data, &["list", "--by-color"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
