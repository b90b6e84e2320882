//! SIGKILL during appends: a child process (this test binary, re-executed) appends
//! and reports each acknowledged event id; the parent kills it at varying moments,
//! reopens, and checks every acknowledged append is there and no partial file is
//! visible. 20 rounds.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use annals_fs::{EventStore, ExpectedVersion, FsEventStore, NewEvent, Version};
use common::{sid, stream_events};

const CHILD_ENV: &str = "ANNALS_FS_CRASH_ROOT";

/// In the child: append until killed, printing `ack <id>` after each commit.
#[tokio::test]
async fn sigkill_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = FsEventStore::open(&root).await.unwrap();
    let stream = sid("crash");
    let mut out = std::io::stdout().lock();
    for n in 0_u64.. {
        let size = 1 + (n % 7) as usize * 15;
        let events: Vec<NewEvent> = (0..size)
            .map(|i| NewEvent::new("Tick", format!("{{\"n\":{n},\"i\":{i}}}").into_bytes()))
            .collect();
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
        for id in ids {
            writeln!(out, "ack {id}").unwrap();
        }
        out.flush().unwrap();
    }
}

#[tokio::test]
async fn every_acknowledged_append_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut acked = Vec::new();
    for round in 0..20_usize {
        let mut child = Command::new(&exe)
            .args([
                "sigkill_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let wanted = 1 + (round * 37) % 120;
        let mut seen = 0;
        while seen < wanted {
            let Some(line) = lines.next() else { break };
            if let Some(id) = line.unwrap().strip_prefix("ack ") {
                acked.push(id.to_owned());
                seen += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Acks already printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.to_owned());
            }
        }
        assert!(seen > 0, "round {round}: the child acknowledged nothing");

        let store = FsEventStore::open(&root).await.unwrap();
        let status = store.status().await.unwrap();
        assert!(status.is_clean(), "round {round}: {status:?}");
        let events = stream_events(&store, &sid("crash")).await.unwrap();
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e.version, Version::new(n as u64 + 1));
        }
        let stored: std::collections::HashSet<String> =
            events.iter().map(|e| e.id.to_string()).collect();
        for id in &acked {
            assert!(
                stored.contains(id),
                "round {round}: acknowledged event {id} is missing"
            );
        }
        assert!(std::fs::read_dir(root.join(".annals/tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}
