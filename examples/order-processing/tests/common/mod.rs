//! Running the example binary, for its end-to-end tests (SQLite and fs data dirs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{ffi::OsStr, process::Command};

/// One run of the binary: its exit code and output.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// `--data-dir <data> args…` (a path for SQLite, `fs://<path>` for annals-fs).
pub(crate) fn run(data: impl AsRef<OsStr>, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_order-processing"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("the order-processing binary runs");
    Run {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// [`run`], which must succeed; its stdout.
pub(crate) fn ok(data: impl AsRef<OsStr>, args: &[&str]) -> String {
    let r = run(data, args);
    assert_eq!(r.code, 0, "{args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// The line of `order <id>` in `list`/`show` output.
pub(crate) fn order_line<'a>(output: &'a str, id: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(&format!("order {id} ")))
        .unwrap_or_else(|| panic!("no order {id} in:\n{output}"))
}

/// After a `demo` run on `data`: later processes, one command each, see every
/// order at its stored version, load the long order from its snapshot, and
/// continue from the stored versions.
pub(crate) fn later_processes_continue(data: impl AsRef<OsStr> + Copy) {
    ok(data, &["place", "r-1", "Rita"]);
    let added = ok(data, &["add-item", "r-1", "tea", "2", "4.50"]);
    assert!(added.contains("(version 2)"), "{added}");

    let list = ok(data, &["--verbose", "list"]);
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
        "the snapshot survives the restart:\n{list}"
    );

    let paid = ok(data, &["pay", "r-1", "9.00"]);
    assert!(paid.contains("recorded OrderPaid.v1 (version 3)"), "{paid}");
    let show = ok(data, &["show", "r-1"]);
    assert!(order_line(&show, "r-1").contains("[paid]"), "{show}");
}
