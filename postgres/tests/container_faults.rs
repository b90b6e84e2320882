//! Server faults on a disposable PostgreSQL container (never the machine's own
//! server): the postmaster SIGKILLed and restarted while appends run, and the
//! server frozen (`docker pause`) during appends. Each runs [`ROUNDS`] rounds
//! against ONE store instance that is never rebuilt.
//!
//! The container comes from testcontainers-modules (`Postgres`, fsync on),
//! with a fixed loopback host port so the store's URL stays valid across
//! restarts; testcontainers removes it when the test ends, pass or fail.
//! Image: chosen by `annals_testing::postgres::image` — `ANNALS_TEST_PG_IMAGE`
//! (`name:tag`) if set; else `postgres:15-alpine` if present or pullable; else
//! the offline `annals-postgres:15` from `scripts/postgres-image.sh`.
//!
//! Run with `--nocapture` to see what each round saw (errors, recovery times).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use annals_testing::postgres as support;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use annals_core::{
    Error, EventId, EventStore, ExpectedVersion, NewEvent, ReadStream, StreamId, Version,
};
use annals_postgres::{PostgresEventStore, PostgresOptions};
use futures::TryStreamExt;
use sqlx::Connection;
use testcontainers_modules::{
    postgres::Postgres,
    testcontainers::{core::IntoContainerPort, ContainerAsync, ImageExt},
};

/// Rounds per fault test.
const ROUNDS: usize = 10;
/// The store's client-side bound on one call (and on acquiring a connection).
const BOUND: Duration = Duration::from_secs(2);
/// Scheduling slack allowed on top of [`BOUND`] on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// A disposable container with its PostgreSQL on a fixed loopback port.
async fn disposable() -> (ContainerAsync<Postgres>, String) {
    let port = support::free_port();
    let request = support::postgres_request(true).with_mapped_port(port, 5432.tcp());
    let container = support::start(request).await;
    // testcontainers removes it on drop; the reaper also covers a killed test.
    support::reap_after_exit(container.id());
    (container, support::url(port))
}

/// The store under test, with [`BOUND`] on every call. Connecting (which
/// migrates a fresh schema) is tried again on a timeout, within a generous
/// deadline: a container that just started on a loaded machine can take longer
/// than the bound for the first connections, and that is not what these tests
/// are about.
async fn store_on(url: &str, schema: &str) -> PostgresEventStore {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let connected = PostgresEventStore::connect_with(
            url,
            PostgresOptions::new()
                .schema(schema)
                .max_connections(6)
                .acquire_timeout(BOUND)
                .operation_timeout(BOUND)
                .statement_timeout(Some(BOUND)),
        )
        .await;
        match connected {
            Ok(store) => return store,
            Err(Error::Timeout(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("connecting the store to the container: {e}"),
        }
    }
}

/// Waits until the server accepts a fresh connection (outside the store).
async fn wait_for_server(url: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(Ok(conn)) =
            tokio::time::timeout(Duration::from_secs(1), sqlx::PgConnection::connect(url)).await
        {
            let _ = conn.close().await;
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "server did not accept connections within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `docker pause`, tried again while the engine reports a transient failure to
/// freeze the container's cgroup (seen under load: "OCI runtime pause failed:
/// unable to freeze"), within a generous deadline.
/// The stream's version, asked until the server answers: right after a pause ends,
/// a busy machine can take longer than the store's 2 s bound to serve the first
/// statement. Gives up after a generous deadline.
async fn version_when_reachable(store: &PostgresEventStore, stream: &StreamId) -> Version {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match store.stream_version(stream).await {
            Ok(version) => return version,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the server did not answer within 120 s: {e}"),
        }
    }
}

fn pause(id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match support::docker(&["pause", id]) {
            Ok(_) => return,
            Err(e) if e.contains("unable to freeze") && Instant::now() < deadline => {
                eprintln!("docker pause failed transiently, trying again: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// One batch a writer sent, and what the store answered.
#[derive(Debug, Clone)]
struct Sent {
    stream: StreamId,
    events: Vec<NewEvent>,
    /// `Some(version)` when acknowledged, `None` when the call failed (outcome unknown).
    acked: Option<Version>,
}

fn batch(tag: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|k| {
            NewEvent::new("Faulted", format!("{tag}:{k}").into_bytes()).with_id(EventId::new())
        })
        .collect()
}

/// Short description of an error, for the round log.
fn kind(err: &Error) -> String {
    match err {
        Error::Timeout(d) => format!("Timeout({d:?})"),
        Error::Backend { message, source } => format!("Backend({message}: {source})"),
        other => format!("{other}"),
    }
}

/// Every stream: versions 1..=n, each batch entirely present or entirely
/// absent (and contiguous when present), every acknowledged batch present at
/// the version it was acknowledged with, no event id twice.
async fn check_streams(store: &PostgresEventStore, sent: &[Sent], must_be_present: bool) {
    let mut streams: BTreeMap<&str, &StreamId> = BTreeMap::new();
    for s in sent {
        streams.insert(s.stream.as_str(), &s.stream);
    }
    let mut at: HashMap<EventId, (String, Version)> = HashMap::new();
    for stream in streams.values() {
        let events: Vec<_> = store
            .read_stream(ReadStream::forward(stream))
            .try_collect()
            .await
            .unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e.version,
                Version::new(i as u64 + 1),
                "contiguous versions in {stream:?}"
            );
            let dup = at.insert(e.id, (stream.as_str().to_owned(), e.version));
            assert!(dup.is_none(), "event {:?} stored twice", e.id);
        }
    }
    for s in sent {
        let found: Vec<_> = s.events.iter().filter_map(|e| at.get(&e.id)).collect();
        assert!(
            found.is_empty() || found.len() == s.events.len(),
            "partial batch: {} of {} events stored",
            found.len(),
            s.events.len()
        );
        if s.acked.is_some() {
            assert_eq!(found.len(), s.events.len(), "acknowledged batch missing");
        }
        if must_be_present {
            assert_eq!(found.len(), s.events.len(), "re-sent batch missing");
        }
        if !found.is_empty() {
            let first = found[0].1.get();
            for (k, (stream, v)) in found.iter().enumerate() {
                assert_eq!(stream, s.stream.as_str());
                assert_eq!(v.get(), first + k as u64, "batch not contiguous");
            }
            if let Some(acked) = s.acked {
                assert_eq!(found[found.len() - 1].1, acked, "acknowledged version");
            }
        }
    }
}

/// SIGKILL the postmaster while appends run, start it again: acknowledged
/// appends survive, no batch is partial, versions stay contiguous, and the
/// same store instance works again as soon as the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_postmaster_during_appends_loses_no_acknowledged_append() {
    let (container, url) = disposable().await;
    let id = container.id().to_owned();
    let store = Arc::new(store_on(&url, "faults_kill").await);
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut total_errors = 0;

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let errors: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let mut writers = Vec::new();
        for w in 0..3 {
            let (store, sent, stop, errors) = (
                Arc::clone(&store),
                Arc::clone(&sent),
                Arc::clone(&stop),
                Arc::clone(&errors),
            );
            writers.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("kill-{w}")).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let events = batch(&format!("r{round}w{w}i{i}"), 1 + i % 4);
                    i += 1;
                    let result = store
                        .append(&stream, ExpectedVersion::Any, events.clone())
                        .await;
                    let acked = match result {
                        Ok(r) => Some(r.version),
                        Err(e) => {
                            *errors.lock().unwrap().entry(kind(&e)).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            None
                        }
                    };
                    sent.lock().unwrap().push(Sent {
                        stream: stream.clone(),
                        events,
                        acked,
                    });
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.acked.is_some())
            .count();
        support::docker(&["kill", "--signal", "KILL", &id]).unwrap();
        let killed_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        support::docker(&["start", &id]).unwrap();
        let ready = wait_for_server(&url, Duration::from_secs(60)).await;
        let down = killed_at.elapsed();

        // The same store instance, on its next call.
        let probe = StreamId::new("kill-probe").unwrap();
        let call = Instant::now();
        let next = store.stream_version(&probe).await;
        let first_call = call.elapsed();
        assert!(
            next.is_ok(),
            "round {round}: first call after restart failed: {next:?}"
        );

        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        let errors = errors.lock().unwrap().clone();
        total_errors += errors.values().sum::<usize>();
        let snapshot = sent.lock().unwrap().clone();
        check_streams(&store, &snapshot, false).await;
        eprintln!(
            "kill round {round}: {before} acked before kill, server back {ready:?} after start \
             ({down:?} after kill), first store call {first_call:?}, errors {errors:?}"
        );
    }

    // Re-send every batch whose outcome was unknown, with the same ids: each is
    // then stored exactly once.
    let snapshot = sent.lock().unwrap().clone();
    let unknown: Vec<_> = snapshot.iter().filter(|s| s.acked.is_none()).collect();
    for s in &unknown {
        store
            .append(&s.stream, ExpectedVersion::Any, s.events.clone())
            .await
            .unwrap();
    }
    check_streams(&store, &snapshot, true).await;
    eprintln!(
        "kill: {ROUNDS} rounds, {} batches sent, {} failed calls, {} unknown outcomes re-sent",
        snapshot.len(),
        total_errors,
        unknown.len()
    );
    assert!(
        total_errors > 0,
        "the kills must have disturbed some appends"
    );
}

/// Freeze the server during appends: the call fails with a timeout within the
/// configured bound instead of hanging; after unpause a retry with the same
/// event ids succeeds and nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_server_times_out_within_bound_and_retry_is_idempotent() {
    let (container, url) = disposable().await;
    let id = container.id().to_owned();
    let store = Arc::new(store_on(&url, "faults_pause").await);
    let stream = StreamId::new("pause").unwrap();
    let mut sent = Vec::new();
    let mut timeouts = 0;

    for round in 0..ROUNDS {
        // Even rounds: the server is frozen before the call. Odd rounds: appends
        // run back to back and the server freezes under one of them.
        let (version, events, result, took) = if round % 2 == 0 {
            let version = version_when_reachable(&store, &stream).await;
            let events = batch(&format!("r{round}"), 3 + round);
            pause(&id);
            let call = Instant::now();
            let result = tokio::time::timeout(
                BOUND * 5,
                store.append(&stream, ExpectedVersion::Exact(version), events.clone()),
            )
            .await;
            (version, events, result, call.elapsed())
        } else {
            // The writer says when its first append is acknowledged: the pause
            // must come after that (on a busy machine the writer can take longer
            // than any fixed delay to get going, and a pause before its first
            // call would leave it waiting for a server nobody unpauses).
            let (running, first_ack) = tokio::sync::oneshot::channel::<()>();
            let writer = {
                let (store, stream) = (Arc::clone(&store), stream.clone());
                tokio::spawn(async move {
                    let mut running = Some(running);
                    let mut acked = Vec::new();
                    let mut version = version_when_reachable(&store, &stream).await;
                    let mut i = 0;
                    loop {
                        let events = batch(&format!("r{round}i{i}"), 1 + i % 3);
                        i += 1;
                        let call = Instant::now();
                        let result = tokio::time::timeout(
                            BOUND * 5,
                            store.append(&stream, ExpectedVersion::Exact(version), events.clone()),
                        )
                        .await;
                        match result {
                            Ok(Ok(r)) => {
                                version = r.version;
                                acked.push((events, r.version));
                                if let Some(running) = running.take() {
                                    let _ = running.send(());
                                }
                            }
                            other => return (acked, version, events, other, call.elapsed()),
                        }
                    }
                })
            };
            tokio::time::timeout(Duration::from_secs(120), first_ack)
                .await
                .expect("the writer's first append within 120 s")
                .expect("the writer reports its first append");
            tokio::time::sleep(Duration::from_millis(50)).await;
            pause(&id);
            let (acked, version, events, result, took) = writer.await.unwrap();
            for (events, v) in acked {
                sent.push(Sent {
                    stream: stream.clone(),
                    events,
                    acked: Some(v),
                });
            }
            (version, events, result, took)
        };
        let result = result.unwrap_or_else(|_| {
            let _ = support::docker(&["unpause", &id]);
            panic!(
                "round {round}: append hung for {:?} on a paused server",
                BOUND * 5
            )
        });
        match &result {
            Err(Error::Timeout(_)) => timeouts += 1,
            other => {
                let _ = support::docker(&["unpause", &id]);
                panic!("round {round}: expected a timeout, got {other:?} after {took:?}")
            }
        }
        support::docker(&["unpause", &id]).unwrap();
        assert!(
            took <= BOUND + SLACK,
            "round {round}: timeout after {took:?}"
        );
        let unpaused = Instant::now();

        // Retry the same batch (same ids, same expectation) on the same store.
        let retry = store
            .append(&stream, ExpectedVersion::Exact(version), events.clone())
            .await;
        let retry_took = unpaused.elapsed();
        let retry = retry.unwrap_or_else(|e| panic!("round {round}: retry failed: {e:?}"));
        assert_eq!(retry.version.get(), version.get() + events.len() as u64);
        sent.push(Sent {
            stream: stream.clone(),
            events,
            acked: Some(retry.version),
        });
        check_streams(&store, &sent, true).await;
        eprintln!(
            "pause round {round} ({}): {result:?} after {took:?} (bound {BOUND:?}); \
             retry after unpause ok in {retry_took:?} at {:?}",
            if round % 2 == 0 {
                "frozen before the call"
            } else {
                "frozen under a running append"
            },
            retry.version
        );
    }
    eprintln!("pause: {ROUNDS} rounds, {timeouts} timeouts");
    assert_eq!(timeouts, ROUNDS);
}

/// A subscription survives the server being SIGKILLed and restarted: it reports
/// `Retrying` while the server is down, resumes after the last event it
/// delivered, and hands out every stored event exactly once, in order. The
/// writer retries each append with the same event until it is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_survives_a_killed_and_restarted_server() {
    use annals_core::{
        consume::{Subscribe, SubscribeAll, SubscriptionState},
        ReadAll, RecordedEvent,
    };
    const EVENTS: usize = 200;
    let (container, url) = disposable().await;
    let id = container.id().to_owned();
    let store = Arc::new(store_on(&url, "faults_subscribe").await);
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let saw_retrying = Arc::new(AtomicBool::new(false));

    let subscriber = {
        let (store, saw_retrying) = (Arc::clone(&store), Arc::clone(&saw_retrying));
        tokio::spawn(async move {
            let mut events = store.subscribe_all(SubscribeAll::from_start());
            let mut seen: Vec<RecordedEvent> = Vec::new();
            while seen.len() < EVENTS {
                // Look at the state while waiting, to see the retries happen.
                match tokio::time::timeout(Duration::from_millis(100), events.try_next()).await {
                    Ok(next) => seen.push(next.unwrap().expect("never ends by itself")),
                    Err(_) => {
                        if matches!(events.state(), SubscriptionState::Retrying { .. }) {
                            saw_retrying.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            seen
        })
    };
    let writer = {
        let (store, acked) = (Arc::clone(&store), Arc::clone(&acked));
        tokio::spawn(async move {
            let stream = StreamId::new("followed").unwrap();
            for i in 0..EVENTS {
                let event = NewEvent::new("Followed", format!("{{\"i\":{i}}}").into_bytes());
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    match store
                        .append(&stream, ExpectedVersion::Any, vec![event.clone()])
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if e.is_transient() && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("append {i}: {e}"),
                    }
                }
                acked.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Kill the server once a quarter of the events are in.
    let start = Instant::now();
    while acked.load(Ordering::Relaxed) < EVENTS / 4 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the writer got going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    support::docker(&["kill", "--signal", "KILL", &id]).unwrap();
    // Down long enough for the subscription to notice.
    let down = Instant::now();
    while !saw_retrying.load(Ordering::Relaxed) {
        assert!(
            down.elapsed() < Duration::from_secs(120),
            "the subscription noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    support::docker(&["start", &id]).unwrap();
    wait_for_server(&url, Duration::from_secs(60)).await;

    writer.await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(120), subscriber)
        .await
        .expect("the subscription delivers everything after the restart")
        .unwrap();
    let stored: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stored.len(), EVENTS, "each acknowledged append once");
    assert!(
        seen == stored,
        "every event once, in order, across the restart"
    );
    drop(container);
}
