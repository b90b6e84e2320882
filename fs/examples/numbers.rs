//! Measures annals-fs: append throughput with fsync (single events, batches of
//! 100) and opening 100,000 events in 10,000 files (time and memory), both with
//! `open` (the writer) and `open_read_only`.
//!
//! `cargo run --release -p annals-fs --example numbers [dir]` (set `NUMBERS_KEEP=1`
//! to keep the 100,000-event store between runs; `NUMBERS_APPENDS_ONLY=1` to skip
//! it). Each open runs in a fresh process (so its memory is its own): first with
//! the page cache dropped if `NUMBERS_DROP_CACHES=1` and the process may write
//! `/proc/sys/vm/drop_caches` (root; `sync` first), then twice warm.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::{path::Path, process::Command, time::Instant};

use annals_fs::{EventStore, ExpectedVersion, FsEventStore, NewEvent, ReadAll, StreamId};
use futures::TryStreamExt;

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "Measured",
        format!("{{\"n\":{n},\"text\":\"some payload of a typical small event\"}}").into_bytes(),
    )
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Empties the page cache (root only): `sync`, then `echo 3 > /proc/sys/vm/drop_caches`.
fn drop_caches() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

async fn cold_open(dir: &Path, mode: &str, cache: &str) {
    let rss_before = status_kb("VmRSS:");
    let started = Instant::now();
    let store = if mode == "open" {
        FsEventStore::open(dir).await.unwrap()
    } else {
        FsEventStore::open_read_only(dir).await.unwrap()
    };
    let opened = started.elapsed();
    let rss_after = status_kb("VmRSS:");
    let status = store.status().await.unwrap();
    let started = Instant::now();
    let count = store
        .read_all(ReadAll::forward())
        .try_fold(0_u64, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap();
    let read = started.elapsed();
    // A read after the folder changed (an own write, a pull) lists events/ again:
    // what that costs here, with the folder's time bumped by hand (median of 21).
    let stream = StreamId::new("stream-7").unwrap();
    let mut relist = Vec::new();
    for _ in 0..21 {
        std::fs::File::open(dir.join("events"))
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .unwrap();
        let started = Instant::now();
        store.stream_version(&stream).await.unwrap();
        relist.push(started.elapsed().as_secs_f64());
    }
    relist.sort_by(f64::total_cmp);
    let relist_ms = relist.get(relist.len() / 2).copied().unwrap_or(0.0) * 1000.0;
    println!(
        "{mode} ({cache}): {} transactions, {} positions in {:.3} s; RSS {} MB -> {} MB (peak {} MB); read_all of {count} events {:.3} s; a read after the folder changed {relist_ms:.1} ms",
        status.transactions,
        status.positions,
        opened.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024,
        status_kb("VmHWM:") / 1024,
        read.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(mode @ ("open" | "open_read_only")), Some(dir), Some(cache)) =
        (args.get(1).map(String::as_str), args.get(2), args.get(3))
    {
        cold_open(Path::new(dir), mode, cache).await;
        return;
    }
    let base = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("annals-fs-numbers"));
    let keep = std::env::var_os("NUMBERS_KEEP").is_some();
    if !keep {
        let _ = std::fs::remove_dir_all(&base);
    }
    let _ = std::fs::remove_dir_all(base.join("appends"));

    let store = FsEventStore::open(base.join("appends")).await.unwrap();
    let stream = StreamId::new("single").unwrap();
    let n = 500;
    let started = Instant::now();
    for i in 0..n {
        store
            .append(&stream, ExpectedVersion::Any, vec![event(i)])
            .await
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "append single event (fsync): {:.0} appends/s ({:.2} ms each)",
        n as f64 / secs,
        secs * 1000.0 / n as f64
    );
    let stream = StreamId::new("batched").unwrap();
    let batches = 100;
    let started = Instant::now();
    for b in 0..batches {
        let events = (0..100).map(|i| event(b * 100 + i)).collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "append batches of 100 (fsync): {:.0} batches/s, {:.0} events/s",
        batches as f64 / secs,
        (batches * 100) as f64 / secs
    );
    drop(store);
    if std::env::var_os("NUMBERS_APPENDS_ONLY").is_some() {
        return;
    }

    let big = base.join("big");
    if !big.join("events").is_dir() {
        build_big(&big).await;
    }
    let exe = std::env::current_exe().unwrap();
    let drop_wanted = std::env::var_os("NUMBERS_DROP_CACHES").is_some();
    for mode in ["open_read_only", "open"] {
        for run in 0..3 {
            let cache = if run == 0 && drop_wanted && drop_caches() {
                "page cache dropped"
            } else {
                "warm"
            };
            let status = Command::new(&exe)
                .args([mode, big.to_str().unwrap(), cache])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&base);
    }
}

async fn build_big(big: &Path) {
    let store = FsEventStore::open(big).await.unwrap();
    let started = Instant::now();
    let mut thousand = Instant::now();
    for f in 0..10_000_u64 {
        let stream = StreamId::new(format!("stream-{}", f % 1_000)).unwrap();
        let events = (0..10).map(|i| event(f * 10 + i)).collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
        if f % 1_000 == 999 {
            // How appends (of 10 events) slow down as the folder grows.
            println!(
                "  appends {}..={}: {:.0} appends/s",
                f - 999,
                f,
                1_000.0 / thousand.elapsed().as_secs_f64()
            );
            thousand = Instant::now();
        }
    }
    println!(
        "built 100,000 events in 10,000 files in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(store);
}
