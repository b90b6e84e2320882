//! `audit` and `import`: the log as an audit log and a publisher's target, end to
//! end through the binary on an SQLite data dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{io::Write, process::Stdio};

use common::{ok, run};

fn import(data: &std::path::Path, input: &str) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_order-processing"))
        .arg("--data-dir")
        .arg(data)
        .arg("import")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn audit_prints_cloudevents_and_import_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["place", "a-1", "ann"]);
    ok(data, &["add-item", "a-1", "tea", "2", "4.50"]);

    let audit = ok(data, &["audit", "--last", "1"]);
    let newest: serde_json::Value = serde_json::from_str(audit.trim()).unwrap();
    assert_eq!(newest["type"], "ItemAdded.v1");
    assert_eq!(newest["specversion"], "1.0");
    assert_eq!(newest["subject"], "order-a-1");
    assert_eq!(newest["data"]["sku"], "tea");

    let documents = concat!(
        r#"{"specversion":"1.0","type":"partner.order","source":"/partner","id":"P-1","subject":"partner-1","data":{"n":1}}"#,
        "\n\n",
        r#"{"specversion":"1.0","type":"partner.order","source":"/partner","id":"P-2","subject":"partner-1","data":{"n":2}}"#,
        "\n",
    );
    for _ in 0..2 {
        let out = import(data, documents);
        assert!(out.status.success(), "{out:?}");
    }
    let imported = ok(data, &["audit", "--type", "partner.order"]);
    let ids: Vec<String> = imported
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, [r#""P-2""#, r#""P-1""#], "newest first, stored once");

    let bad = import(data, "{\"specversion\":\"0.3\"}\n");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 1"));
    assert_eq!(run(data, &["audit", "--last", "x"]).code, 2);
}
