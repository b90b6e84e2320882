//! Peak resident memory of a whole-log read (issue 18 §3), one measurement per
//! process, read from `/proc/self/status` (`VmRSS`, `VmHWM`; Linux only).
//!
//! ```text
//! rss fill <sqlite|postgres|fs> <n> <path|schema>         # fill a kept store
//! rss read <sqlite|postgres|fs> <n> <read_all|subscribe> <path|schema>
//! rss read memory <n> <read_all|subscribe>                # fills in-process first
//! rss drop <schema>                                       # drop a PostgreSQL schema
//! ```
//!
//! `read` opens the store, records `VmRSS` as the baseline, resets the high-water
//! mark (`5` to `/proc/self/clear_refs`), consumes exactly `n` events one by one
//! (`read_all(ReadAll::forward())`, or `subscribe_all(SubscribeAll::from_start())`
//! until `n` events arrived) and prints the baseline, the peak (`VmHWM`) and their
//! difference in MiB, with the elapsed time and events/s. The memory backend holds
//! the log itself, so its fill runs in the same process and its own footprint
//! (`VmRSS` after the fill minus before) is printed separately.
//!
//! `cargo run --release -p annals-benches --example rss -- read sqlite 100000 read_all /tmp/x.db`
// A measurement aborts on any error: a figure from a failed run is meaningless.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::time::Instant;

use annals_benches::{events, runtime};
use annals_core::{
    consume::{Subscribe, SubscribeAll},
    EventStore, ExpectedVersion, ReadAll, StreamId,
};
use annals_fs::FsEventStore;
use annals_memory::MemoryEventStore;
use annals_postgres::{PostgresEventStore, PostgresOptions};
use annals_sqlite::SqliteEventStore;
use annals_testing::postgres::{database_url, drop_schema};
use futures::TryStreamExt;

const MIB: f64 = 1024.0 * 1024.0;
/// Events per append call while filling.
const BATCH: usize = 500;

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

fn rss() -> u64 {
    status_bytes("VmRSS")
}

fn hwm() -> u64 {
    status_bytes("VmHWM")
}

/// Resets `VmHWM` to the current `VmRSS`; fails loudly if the kernel ignores it,
/// since the peak would then include everything before the read.
fn reset_hwm() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (peak, now) = (hwm(), rss());
    assert!(
        peak <= now + 1024 * 1024,
        "VmHWM was not reset ({peak} > {now})"
    );
}

async fn fill(store: &dyn EventStore, n: usize) {
    let stream = StreamId::new("fill").unwrap();
    for _ in 0..n.div_ceil(BATCH) {
        store
            .append(&stream, ExpectedVersion::Any, events(BATCH))
            .await
            .unwrap();
    }
}

/// Consumes exactly `n` events one by one and returns how many bytes of payload
/// went past (so nothing is optimised away).
async fn consume(store: &dyn EventStore, n: usize, mode: &str) -> usize {
    let mut bytes = 0;
    match mode {
        "read_all" => {
            let mut events = store.read_all(ReadAll::forward());
            let mut seen = 0;
            while let Some(event) = events.try_next().await.unwrap() {
                bytes += event.payload.len();
                seen += 1;
            }
            assert_eq!(seen, n, "the log holds {seen} events, not {n}");
        }
        "subscribe" => {
            let mut events = store.subscribe_all(SubscribeAll::from_start());
            for _ in 0..n {
                bytes += events.try_next().await.unwrap().unwrap().payload.len();
            }
        }
        other => panic!("unknown mode {other}: read_all or subscribe"),
    }
    bytes
}

async fn open(backend: &str, location: &str) -> Box<dyn EventStore> {
    match backend {
        "sqlite" => Box::new(SqliteEventStore::open(location).await.unwrap()),
        "postgres" => Box::new(
            PostgresEventStore::connect_with(
                &database_url().await,
                PostgresOptions::new().schema(location),
            )
            .await
            .unwrap(),
        ),
        "fs" => Box::new(FsEventStore::open(location).await.unwrap()),
        other => panic!("unknown backend {other}: memory, sqlite, postgres or fs"),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

async fn read(backend: &str, n: usize, mode: &str, location: Option<&str>) {
    let start = rss();
    let store: Box<dyn EventStore> = if backend == "memory" {
        let store = MemoryEventStore::new();
        fill(&store, n).await;
        Box::new(store)
    } else {
        open(backend, location.expect("a path or schema")).await
    };
    let opened = rss();
    reset_hwm();
    let baseline = rss();
    let began = Instant::now();
    let bytes = consume(&*store, n, mode).await;
    let elapsed = began.elapsed().as_secs_f64();
    let peak = hwm();
    println!(
        "backend={backend} n={n} mode={mode} store_footprint_mib={:.1} baseline_mib={:.1} \
         peak_mib={:.1} delta_mib={:.1} secs={elapsed:.2} events_per_s={:.0} payload_bytes={bytes}",
        mib(opened.saturating_sub(start)),
        mib(baseline),
        mib(peak),
        mib(peak.saturating_sub(baseline)),
        n as f64 / elapsed,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let usage = "usage: rss fill <backend> <n> <location> | rss read <backend> <n> <mode> [location] | rss drop <schema>";
    let rt = runtime();
    match args.as_slice() {
        ["fill", backend, n, location] => rt.block_on(async {
            let n: usize = n.parse().unwrap();
            let store = open(backend, location).await;
            let began = Instant::now();
            fill(&*store, n).await;
            println!(
                "filled backend={backend} n={n} secs={:.1}",
                began.elapsed().as_secs_f64()
            );
        }),
        ["read", backend, n, mode, rest @ ..] => {
            let n: usize = n.parse().unwrap();
            rt.block_on(read(backend, n, mode, rest.first().copied()));
        }
        ["drop", schema] => rt.block_on(async {
            drop_schema(&database_url().await, schema).await;
        }),
        _ => panic!("{usage}"),
    }
}
