//! Failover under load on a highly available cluster (Patroni + etcd + HAProxy,
//! `synchronous_mode: true`): nothing acknowledged is lost.
//!
//! Needs the cluster of `scripts/ha-cluster.sh up` and `ANNALS_HA_URL` (HAProxy's
//! primary port). `scripts/ha-test.sh` brings the cluster up, runs this target
//! with `--include-ignored` and tears the cluster down, also when the test fails.
//! Run by hand:
//!
//! ```text
//! scripts/ha-cluster.sh up
//! ANNALS_HA_URL=postgres://annals:annals@127.0.0.1:5440/annals \
//!     cargo test -p annals-postgres --test ha_failover -- --include-ignored --nocapture
//! scripts/ha-cluster.sh down
//! ```
//!
//! Per round: 8 tasks append continuously (`ExpectedVersion::Any`, one event per
//! append, each event with its own id); an append failing with a transient error
//! (`Error::Timeout`, or `Error::Unavailable`: the connection died, the pool could
//! not connect, the server was demoted) is retried
//! with the SAME event, so a retry after an unknown outcome is idempotent. Two
//! readers tail `read_all(ReadAll::after(last))`. The primary's postmaster is
//! SIGKILLed (`ANNALS_HA_SCENARIO=patroni`: its Patroni) at a random moment;
//! Patroni promotes the synchronous standby and HAProxy follows. Then, on the new
//! primary:
//!
//! * every acknowledged append is present, and nothing that was not acknowledged;
//! * no event id twice; each stream's versions are 1..=n;
//! * every append acknowledged after the kill is above every position
//!   acknowledged before it (positions come from transaction ids, and a promoted
//!   standby continues above every xid it replayed: every acknowledged commit);
//! * both readers saw every event exactly once, in position order;
//! * the first append after the kill succeeded within `ANNALS_HA_MAX_RESUME_S`
//!   (default 10) seconds.
//!
//! `ANNALS_HA_ROUNDS` (default 3) sets the number of rounds.
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::panic
)]

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use annals_postgres::{
    Error, EventId, EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore,
    PostgresOptions, ReadAll, ReadStream, StreamId,
};
use futures::TryStreamExt;

const WRITERS: usize = 8;
const READERS: usize = 2;
/// How long one append may keep failing before the test gives up on it.
const RETRY_BUDGET: Duration = Duration::from_secs(90);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cluster_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ha-cluster.sh")
}

/// Runs `scripts/ha-cluster.sh ARGS`, returning its stdout; panics on failure.
fn cluster(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(cluster_script())
        .args(args)
        .output()
        .expect("running scripts/ha-cluster.sh");
    assert!(
        out.status.success(),
        "scripts/ha-cluster.sh {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Errors worth retrying during a failover: the connection died or could not be
/// made (`Unavailable`), or the call ran past its bound (`Timeout`) — what
/// `Error::is_transient` says. Either way the outcome of an append is unknown,
/// and re-sending the same events is safe.
fn retryable(err: &Error) -> bool {
    err.is_transient()
}

#[derive(Clone, Debug)]
struct Ack {
    id: EventId,
    stream: String,
    position: u64,
    version: u64,
    acked_at: Instant,
    /// When its first attempt was sent.
    sent_at: Instant,
    /// The append failed at least once before it was acknowledged.
    retried: bool,
}

impl Ack {
    /// Acknowledged by the new primary: after the kill, and either failed
    /// before (it went through the failover) or first sent after the kill (the
    /// old primary was gone). An append acknowledged after the kill that was
    /// sent before it and never failed may have committed on the old primary
    /// just before it died. A writer may never see an error: an append queued
    /// for a group whose connection broke is retried by the store, and may be
    /// acknowledged by the new primary within its bound.
    fn through_failover(&self, killed_at: Instant) -> bool {
        self.acked_at > killed_at && (self.retried || self.sent_at > killed_at)
    }
}

async fn writer(
    store: PostgresEventStore,
    stream: StreamId,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let id = EventId::new();
        let event = NewEvent::new("Tick", format!("{{\"n\":{n}}}")).with_id(id);
        let first_try = Instant::now();
        let mut retried = false;
        let result = loop {
            match store
                .append(&stream, ExpectedVersion::Any, vec![event.clone()])
                .await
            {
                Ok(result) => break result,
                Err(err) if retryable(&err) && first_try.elapsed() < RETRY_BUDGET => {
                    if !retried {
                        errors.lock().unwrap().push(err.to_string());
                    }
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!(
                    "append to {stream} failed with a non-retryable error (or for {RETRY_BUDGET:?}): {err}"
                ),
            }
        };
        let position = result.first_position().expect("one position").get();
        acks.lock().unwrap().push(Ack {
            id,
            stream: stream.to_string(),
            position,
            version: result.version.get(),
            acked_at: Instant::now(),
            sent_at: first_try,
            retried,
        });
    }
}

/// Tails the log after `start` until `stop` is set and the log's end `end` (set
/// by the test once the writers are done) has been reached.
async fn reader(
    store: PostgresEventStore,
    start: Position,
    end: Arc<Mutex<Option<u64>>>,
    give_up: Arc<AtomicBool>,
) -> (Vec<(u64, EventId)>, usize) {
    let mut seen = Vec::new();
    let mut last = start;
    let mut errors = 0;
    loop {
        if let Some(end) = *end.lock().unwrap() {
            if last.get() >= end {
                return (seen, errors);
            }
        }
        if give_up.load(Ordering::SeqCst) {
            return (seen, errors);
        }
        let page: Result<Vec<_>, _> = store
            .read_all(ReadAll::after(last).limit(500))
            .try_collect()
            .await;
        match page {
            Ok(page) => {
                for event in &page {
                    seen.push((event.position.get(), event.id));
                    last = event.position;
                }
                if page.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(err) if retryable(&err) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("read_all failed with a non-retryable error: {err}"),
        }
    }
}

async fn log_after(
    store: &PostgresEventStore,
    start: Position,
) -> Vec<(u64, EventId, String, u64)> {
    // The new primary may still be settling: retry connection errors.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result: Result<Vec<_>, _> = store
            .read_all(ReadAll::after(start))
            .map_ok(|e| {
                (
                    e.position.get(),
                    e.id,
                    e.stream_id.to_string(),
                    e.version.get(),
                )
            })
            .try_collect()
            .await;
        match result {
            Ok(log) => return log,
            Err(err) if retryable(&err) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("reading the log after the failover: {err}"),
        }
    }
}

struct RoundReport {
    first_append_s: f64,
    all_writers_s: f64,
    acked: usize,
    before_per_s: f64,
    after_per_s: f64,
}

async fn round(
    store: &PostgresEventStore,
    round: usize,
    scenario: &str,
    start: Position,
) -> (RoundReport, Position) {
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let end = Arc::new(Mutex::new(None));
    let give_up = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            tokio::spawn(reader(
                store.clone(),
                start,
                Arc::clone(&end),
                Arc::clone(&give_up),
            ))
        })
        .collect();
    let streams: Vec<StreamId> = (0..WRITERS)
        .map(|w| StreamId::new(format!("ha-r{round}-w{w}")).unwrap())
        .collect();
    let writers: Vec<_> = streams
        .iter()
        .map(|s| {
            tokio::spawn(writer(
                store.clone(),
                s.clone(),
                Arc::clone(&stop),
                Arc::clone(&acks),
                Arc::clone(&errors),
            ))
        })
        .collect();

    // A random moment after a warm-up of 2 to 3 s.
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    let warmup = Duration::from_millis(2000 + u64::from(jitter));
    tokio::time::sleep(warmup).await;
    let before_kill = acks.lock().unwrap().len();
    let kill_cmd = format!("kill-{scenario}");
    let killed = tokio::task::spawn_blocking(move || cluster(&[&kill_cmd]))
        .await
        .unwrap();
    let killed_at = Instant::now();
    let old = killed.split_whitespace().next().unwrap().to_owned();
    eprintln!("round {round}: SIGKILLed the {scenario} of {old}");

    // Wait until every writer had an append acknowledged by the new primary
    // (`Ack::through_failover`), then let them run on for 3 s.
    let deadline = killed_at + Duration::from_secs(120);
    loop {
        let resumed: HashSet<String> = acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.through_failover(killed_at))
            .map(|a| a.stream.clone())
            .collect();
        if resumed.len() == WRITERS {
            break;
        }
        if Instant::now() >= deadline {
            let acks = acks.lock().unwrap();
            let stalled: Vec<String> = streams
                .iter()
                .filter(|s| !resumed.contains(s.as_str()))
                .map(|s| {
                    let after: Vec<&Ack> = acks
                        .iter()
                        .filter(|a| a.stream == s.as_str() && a.acked_at > killed_at)
                        .collect();
                    format!(
                        "{s}: {} acks after the kill, none through the failover; last ack {:?} after the kill",
                        after.len(),
                        after.last().map(|a| a.acked_at.duration_since(killed_at))
                    )
                })
                .collect();
            panic!(
                "round {round}: only {} of {WRITERS} writers resumed within 120 s of the kill; {stalled:?}",
                resumed.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer task");
    }
    let acks = acks.lock().unwrap().clone();

    // ---- verification, on the new primary
    let log = log_after(store, start).await;
    let new_end = log.last().map_or(start.get(), |e| e.0);
    *end.lock().unwrap() = Some(new_end);
    let waited = Instant::now();
    let mut seen = Vec::new();
    let watchdog = {
        let give_up = Arc::clone(&give_up);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            give_up.store(true, Ordering::SeqCst);
        })
    };
    for r in readers {
        seen.push(r.await.expect("reader task"));
    }
    watchdog.abort();
    let readers_caught_up = waited.elapsed();

    let acked_ids: HashSet<EventId> = acks.iter().map(|a| a.id).collect();
    let stored_ids: Vec<EventId> = log.iter().map(|e| e.1).collect();
    let stored: HashSet<EventId> = stored_ids.iter().copied().collect();
    assert_eq!(
        stored.len(),
        stored_ids.len(),
        "round {round}: an event id is stored twice"
    );
    let missing: Vec<_> = acked_ids.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "round {round}: {} ACKNOWLEDGED appends are missing after the failover, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let extra: Vec<_> = stored.difference(&acked_ids).collect();
    assert!(
        extra.is_empty(),
        "round {round}: {} stored events were never acknowledged (a writer stops only after its append returned)",
        extra.len()
    );
    // Acknowledged positions and versions are the stored ones.
    let by_id: HashMap<EventId, &(u64, EventId, String, u64)> =
        log.iter().map(|e| (e.1, e)).collect();
    for a in &acks {
        let e = by_id[&a.id];
        assert_eq!(
            (e.0, e.3),
            (a.position, a.version),
            "round {round}: event {} acknowledged at position {} version {} but stored at {} / {}",
            a.id,
            a.position,
            a.version,
            e.0,
            e.3
        );
    }
    assert!(
        log.windows(2).all(|w| w[0].0 < w[1].0),
        "round {round}: the log is not in strictly increasing position order"
    );
    for s in &streams {
        let versions: Vec<u64> = store
            .read_stream(ReadStream::forward(s))
            .map_ok(|e| e.version.get())
            .try_collect()
            .await
            .expect("read_stream on the new primary");
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(
            versions, expected,
            "round {round}: {s}: versions not contiguous"
        );
        let acked_here = acks.iter().filter(|a| a.stream == s.as_str()).count();
        assert_eq!(
            versions.len(),
            acked_here,
            "round {round}: {s}: stored != acknowledged"
        );
    }
    let max_before = acks
        .iter()
        .filter(|a| a.acked_at < killed_at)
        .map(|a| a.position)
        .max()
        .unwrap_or(0);
    // Appends first sent after the kill can only commit on the new primary, so
    // their positions must continue above every one acknowledged before. (A
    // retry of an append sent before the kill may be an idempotent re-send of a
    // commit the old primary made: it rightly returns that older position.)
    let min_after = acks
        .iter()
        .filter(|a| a.sent_at > killed_at)
        .map(|a| a.position)
        .min()
        .unwrap();
    assert!(
        min_after > max_before,
        "round {round}: position {min_after} of an append sent after the failover is not above {max_before} acknowledged before it"
    );
    let expected_seen: Vec<(u64, EventId)> = log.iter().map(|e| (e.0, e.1)).collect();
    for (i, (seen, errs)) in seen.iter().enumerate() {
        assert_eq!(
            seen.len(),
            expected_seen.len(),
            "round {round}: reader {i} saw {} events, the log has {} (it had {errs} retried errors)",
            seen.len(),
            expected_seen.len()
        );
        assert!(
            seen == &expected_seen,
            "round {round}: reader {i} did not see every event exactly once in position order"
        );
    }

    // ---- numbers
    let first = acks
        .iter()
        .filter(|a| a.through_failover(killed_at))
        .map(|a| a.acked_at)
        .min()
        .unwrap();
    let mut per_writer_first: HashMap<&str, Instant> = HashMap::new();
    for a in acks.iter().filter(|a| a.through_failover(killed_at)) {
        let e = per_writer_first
            .entry(a.stream.as_str())
            .or_insert(a.acked_at);
        if a.acked_at < *e {
            *e = a.acked_at;
        }
    }
    let all_writers = per_writer_first.values().max().copied().unwrap();
    let after_window_start = all_writers + Duration::from_millis(500);
    let after = acks
        .iter()
        .filter(|a| a.acked_at > after_window_start)
        .count();
    let after_secs = acks
        .iter()
        .map(|a| a.acked_at)
        .max()
        .unwrap()
        .saturating_duration_since(after_window_start)
        .as_secs_f64();
    let report = RoundReport {
        first_append_s: first.duration_since(killed_at).as_secs_f64(),
        all_writers_s: all_writers.duration_since(killed_at).as_secs_f64(),
        acked: acks.len(),
        before_per_s: before_kill as f64 / warmup.as_secs_f64(),
        after_per_s: if after_secs > 0.0 {
            after as f64 / after_secs
        } else {
            0.0
        },
    };
    let first_errors: Vec<String> = {
        let e = errors.lock().unwrap();
        let mut distinct: Vec<String> = e
            .iter()
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        distinct.sort();
        distinct.truncate(3);
        distinct
    };
    eprintln!(
        "round {round}: killed {old}; first append {:.2} s after the kill, all {WRITERS} writers {:.2} s; \
         {} acknowledged, all present; {:.0}/s before, {:.0}/s after; readers caught up in {:.2} s; \
         retried errors: {first_errors:?}",
        report.first_append_s,
        report.all_writers_s,
        report.acked,
        report.before_per_s,
        report.after_per_s,
        readers_caught_up.as_secs_f64()
    );
    (report, Position::new(new_end))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/ha-cluster.sh up; run by scripts/ha-test.sh"]
async fn failover_loses_nothing_acknowledged() {
    let url = std::env::var("ANNALS_HA_URL").unwrap_or_else(|_| {
        panic!(
            "ANNALS_HA_URL is not set: this test needs the HA cluster. Run scripts/ha-test.sh, \
             or scripts/ha-cluster.sh up and ANNALS_HA_URL=postgres://annals:annals@127.0.0.1:5440/annals"
        )
    });
    let rounds: usize = env_or("ANNALS_HA_ROUNDS", 3);
    let max_resume: f64 = env_or("ANNALS_HA_MAX_RESUME_S", 10.0);
    let scenario = std::env::var("ANNALS_HA_SCENARIO").unwrap_or_else(|_| "postgres".into());
    assert!(
        scenario == "postgres" || scenario == "patroni",
        "ANNALS_HA_SCENARIO must be `postgres` or `patroni`"
    );
    let schema = format!(
        "ha_failover_{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    tokio::task::spawn_blocking(|| cluster(&["heal", "240"]))
        .await
        .unwrap();
    let store = PostgresEventStore::connect_with(
        &url,
        PostgresOptions::new()
            .schema(schema.as_str())
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connecting to the HA cluster through HAProxy (is scripts/ha-cluster.sh up?)");

    let mut start = Position::START;
    let mut reports = Vec::new();
    for r in 1..=rounds {
        tokio::task::spawn_blocking(|| cluster(&["heal", "240"]))
            .await
            .unwrap();
        let (report, end) = round(&store, r, &scenario, start).await;
        start = end;
        reports.push(report);
    }
    tokio::task::spawn_blocking(|| cluster(&["heal", "240"]))
        .await
        .unwrap();

    let firsts: Vec<f64> = reports.iter().map(|r| r.first_append_s).collect();
    eprintln!(
        "ha_failover ({scenario}): {rounds} rounds, {} appends acknowledged, none lost; \
         first append after the kill (s): {firsts:.2?}; all writers (s): {:.2?}",
        reports.iter().map(|r| r.acked).sum::<usize>(),
        reports.iter().map(|r| r.all_writers_s).collect::<Vec<_>>()
    );
    for (i, f) in firsts.iter().enumerate() {
        assert!(
            *f <= max_resume,
            "round {}: writers resumed {f:.2} s after the kill, above the {max_resume} s target",
            i + 1
        );
    }
}
