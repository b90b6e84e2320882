//! `EventStore::query` on SQLite: every filter pushed into SQL (migration 0003's
//! indexes), checked against core's reference semantics (`query::scan`), the
//! query plans on a million-event store, and the upgrade of a store created
//! before the indexes existed.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::print_stdout
)]

use std::{path::Path, time::Instant};

use annals_sqlite::{
    cloud::DEFAULT_SOURCE,
    first_page_statement,
    futures::TryStreamExt,
    query::scan,
    rusqlite::{self, params_from_iter},
    AppendRequest, EventQuery, EventStore, ExpectedVersion, Metadata, NewEvent, Position, ReadAll,
    RecordedEvent, SqliteEventStore, StreamId, Timestamp,
};

/// A day in microseconds.
const DAY: i64 = 86_400_000_000;

async fn query(store: &SqliteEventStore, q: EventQuery) -> Vec<RecordedEvent> {
    store.query(q).try_collect().await.unwrap()
}

/// Core's reference semantics: the log read in order and filtered in Rust.
async fn reference(store: &SqliteEventStore, q: EventQuery) -> Vec<RecordedEvent> {
    scan(store, q).try_collect().await.unwrap()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.get()).collect()
}

// ---------------------------------------------------------------------------
// Correctness against `query::scan`.
// ---------------------------------------------------------------------------

/// Streams, among them ids that end at the edges of UTF-8 (prefix ranges).
const STREAMS: [&str; 7] = [
    "order-1",
    "order-2",
    "order-10",
    "user-1",
    "ab\u{FFFF}",
    "ab\u{10000}z",
    "\u{10FFFF}\u{10FFFF}",
];

/// Events in the sample store.
const SAMPLE: usize = 2_600;

/// A fixed time in the past, far from the recorded times (now).
const PAST: i64 = 1_600_000_000_000_000;

/// Event `i` of the sample store: types, sources (default, explicit default,
/// others), subjects (default, equal to another stream's id, explicit),
/// correlation ids and event times (none, in the past, in the future) that vary
/// independently.
fn sample_event(i: usize) -> NewEvent {
    let mut e = NewEvent::new(["a", "b", "c"][(i / 2) % 3], format!("{{\"i\":{i}}}"));
    match i % 5 {
        0 => e = e.with_source("/s1"),
        1 => e = e.with_source(DEFAULT_SOURCE),
        2 => e = e.with_source("/s2"),
        _ => {}
    }
    match i % 6 {
        0 => e = e.with_subject("order-9"),
        1 => e = e.with_subject("order-1"),
        2 => e = e.with_subject("ab\u{FFFF}q"),
        3 => e = e.with_subject("user-10"),
        _ => {}
    }
    if i.is_multiple_of(4) {
        let mut meta = e
            .metadata
            .clone()
            .with_correlation_id(format!("c{}", i % 3));
        meta = meta.with_field("n", i as u64);
        e = e.with_metadata(meta);
    }
    match i % 9 {
        0 => e = e.with_time(Timestamp::from_unix_micros(PAST - DAY * (i % 5) as i64)),
        1 => e = e.with_time(Timestamp::from_unix_micros(PAST + 10 * DAY)),
        2 => {
            let future = Timestamp::now().as_unix_micros() + DAY;
            e = e.with_time(Timestamp::from_unix_micros(future));
        }
        _ => {}
    }
    e
}

/// A file store with [`SAMPLE`] events, appended 100 at a time across streams.
async fn sample_store() -> (tempfile::TempDir, SqliteEventStore, Timestamp) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let started = Timestamp::now();
    for batch in 0..SAMPLE / 100 {
        let mut request = AppendRequest::new();
        for (k, name) in STREAMS.iter().enumerate() {
            let events: Vec<_> = (batch * 100..(batch + 1) * 100)
                .filter(|i| i % STREAMS.len() == k)
                .map(sample_event)
                .collect();
            let stream = StreamId::new(*name).unwrap();
            request = request.append(&stream, ExpectedVersion::Any, events);
        }
        store.commit(request).await.unwrap();
    }
    (dir, store, started)
}

/// Filters of every kind, alone and combined.
fn sample_filters(started: Timestamp) -> Vec<EventQuery> {
    let at = Timestamp::from_unix_micros;
    let q = EventQuery::new;
    vec![
        q(),
        q().event_type("a"),
        q().event_type("a").event_type("c"),
        q().event_type("nope"),
        q().source("/s1"),
        q().source(DEFAULT_SOURCE),
        q().source(DEFAULT_SOURCE).source("/s2"),
        q().source("/s1").source("/s2"),
        q().source("/nope"),
        q().subject("order-1"),
        q().subject("order-9").subject("user-1"),
        q().subject("ab\u{FFFF}q"),
        q().subject_prefix("order-1"),
        q().subject_prefix("user-1"),
        q().subject_prefix("ab\u{FFFF}"),
        q().subject_prefix("ab"),
        q().subject_prefix("\u{10FFFF}"),
        q().subject_prefix(""),
        q().correlation_id("c1"),
        q().correlation_id("nope"),
        q().time_from(started),
        q().time_until(started),
        q().time_from(at(PAST - 2 * DAY)).time_until(at(PAST + DAY)),
        q().time_from(at(PAST + 10 * DAY))
            .time_until(at(PAST + 10 * DAY + 1)),
        q().event_type("b").time_until(at(PAST + 20 * DAY)),
        q().event_type("b")
            .source("/s1")
            .subject_prefix("order")
            .correlation_id("c0"),
        q().source(DEFAULT_SOURCE)
            .subject("order-1")
            .time_from(started),
        q().positions(Position::new(100)..Position::new(3_000))
            .event_type("c"),
    ]
}

/// The same query with each ordering, page and limit option.
fn variants(base: &EventQuery) -> Vec<EventQuery> {
    let mut all = Vec::new();
    for descending in [false, true] {
        let q = if descending {
            base.clone().descending()
        } else {
            base.clone()
        };
        all.push(q.clone());
        all.push(q.clone().limit(7));
        all.push(q.clone().limit(2_100));
        all.push(q.clone().offset(3));
        all.push(q.clone().offset(2_050).limit(10));
        all.push(if descending {
            q.clone().before(Position::new(2_500)).limit(3_000)
        } else {
            q.clone().after(Position::new(2_500)).offset(1)
        });
    }
    all
}

#[tokio::test]
async fn queries_match_the_reference_semantics() {
    let (_dir, store, started) = sample_store().await;
    let mut checked = 0;
    let mut non_empty = 0;
    for base in sample_filters(started) {
        for q in variants(&base) {
            let got = query(&store, q.clone()).await;
            let want = reference(&store, q.clone()).await;
            assert_eq!(positions(&got), positions(&want), "{q:?}");
            assert_eq!(got, want, "{q:?}");
            checked += 1;
            non_empty += usize::from(!got.is_empty());
        }
    }
    println!("{checked} queries, {non_empty} with results");
    assert!(non_empty >= checked * 2 / 3, "{non_empty} of {checked}");
}

#[tokio::test]
async fn the_default_attributes_are_matched() {
    let (_dir, store, started) = sample_store().await;
    let everything = query(&store, EventQuery::new()).await;
    assert_eq!(everything.len(), SAMPLE);

    // The default source: events without one and events that set it explicitly.
    let default = query(&store, EventQuery::new().source(DEFAULT_SOURCE)).await;
    let expected: Vec<_> = everything
        .iter()
        .filter(|e| e.source() == DEFAULT_SOURCE)
        .collect();
    assert_eq!(default.len(), expected.len());
    assert!(default.iter().any(|e| e.metadata.source.is_none()));
    assert!(default.iter().any(|e| e.metadata.source.is_some()));

    // A subject is the stream id unless the event sets one.
    let order_1 = query(&store, EventQuery::new().subject("order-1")).await;
    assert!(order_1
        .iter()
        .any(|e| e.metadata.subject.is_none() && e.stream_id.as_str() == "order-1"));
    assert!(order_1
        .iter()
        .any(|e| e.metadata.subject.is_some() && e.stream_id.as_str() != "order-1"));
    assert!(order_1.iter().all(|e| e.subject() == "order-1"));

    // The time is `ce_time` if set, else the recorded time.
    let recent = query(&store, EventQuery::new().time_from(started)).await;
    assert!(recent.iter().any(|e| e.metadata.time.is_none()));
    assert!(recent.iter().any(|e| e.metadata.time.is_some()));
    assert!(recent.iter().all(|e| e.time() >= started));
    let past = query(
        &store,
        EventQuery::new().time_until(Timestamp::from_unix_micros(PAST + DAY)),
    )
    .await;
    assert!(!past.is_empty());
    assert!(past.iter().all(|e| e.metadata.time.is_some()));
}

#[tokio::test]
async fn cursors_page_through_every_match() {
    let (_dir, store, started) = sample_store().await;
    for base in sample_filters(started) {
        let all_forward = reference(&store, base.clone()).await;
        let mut paged = Vec::new();
        let mut q = base.clone().limit(300);
        loop {
            let page = query(&store, q.clone()).await;
            let Some(last) = page.last() else { break };
            q = q.after(last.position);
            paged.extend(page);
        }
        assert_eq!(positions(&paged), positions(&all_forward), "{base:?}");

        let all_backward = reference(&store, base.clone().descending()).await;
        let mut paged = Vec::new();
        let mut q = base.clone().descending().limit(300);
        loop {
            let page = query(&store, q.clone()).await;
            let Some(last) = page.last() else { break };
            q = q.before(last.position);
            paged.extend(page);
        }
        assert_eq!(positions(&paged), positions(&all_backward), "{base:?}");
    }
}

#[tokio::test]
async fn in_memory_stores_push_queries_down_too() {
    let store = SqliteEventStore::in_memory().await.unwrap();
    let stream = StreamId::new("order-1").unwrap();
    let events = (0..50).map(sample_event).collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    for base in sample_filters(Timestamp::UNIX_EPOCH) {
        for q in variants(&base) {
            let got = query(&store, q.clone()).await;
            let want = reference(&store, q.clone()).await;
            assert_eq!(got, want, "{q:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Query plans on a million events.
// ---------------------------------------------------------------------------

/// Events in the large store.
const MILLION: i64 = 1_000_000;

/// Fills the `events` table of the (migrated, empty) store at `path` with
/// [`MILLION`] events in one `INSERT`, recorded over the 30 days before `now`:
/// 10 types, 5% with a source (8 values), 5% with a subject (1,000 values), 5% with
/// a correlation id (5,000 values), 1 in 7 with an event time two days before the
/// recorded one; all of them spread over every type. Then `ANALYZE`.
fn fill_million(path: &Path, now: i64) {
    const FILL: &str = r#"
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
        INSERT INTO events (position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at)
        SELECT i, CAST(printf('%016d', i) AS BLOB), 'stream-' || (i % 10000), i / 10000 + 1, 'type-' || (i / 20 % 10),
            'application/json', CAST('{"n":' || i || '}' AS BLOB),
            '{' || rtrim(
                CASE WHEN i % 20 = 3 THEN '"correlation_id":"corr-' || (i / 20 % 5000) || '",' ELSE '' END ||
                CASE WHEN i % 20 = 1 THEN '"ce_source":"/src/' || (i / 20 % 8) || '",' ELSE '' END ||
                CASE WHEN i % 20 = 2 THEN '"ce_subject":"subj-' || (i / 20 % 1000) || '",' ELSE '' END ||
                CASE WHEN i % 7 = 4 THEN '"ce_time":' || (?2 + i * ?3 - 2 * 86400000000) || ',' ELSE '' END,
                ',') || '}',
            ?2 + i * ?3
        FROM n"#;
    let conn = rusqlite::Connection::open(path).unwrap();
    // Event ids rise with the position (as UUID v7s do), and the indexes being
    // filled stay in the page cache: a random insert order into B-trees larger
    // than the cache is what makes a bulk load slow.
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -524288")
        .unwrap();
    let started = Instant::now();
    // Building an index from the filled table (one sort) is faster than growing it
    // row by row: drop the indexes, fill, and create them again from their stored
    // definitions (so they are exactly the migrations' indexes).
    let indexes: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(indexes.len(), 6, "{indexes:?}");
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX {name}")).unwrap();
    }
    let step = 30 * DAY / MILLION;
    let rows = conn
        .execute(FILL, [MILLION, now - 30 * DAY - step, step])
        .unwrap();
    assert_eq!(rows as i64, MILLION);
    let inserted = started.elapsed();
    for (_, sql) in &indexes {
        conn.execute_batch(sql).unwrap();
    }
    let filled = started.elapsed();
    conn.execute_batch("ANALYZE").unwrap();
    println!(
        "filled {MILLION} events in {filled:.1?} (INSERT {inserted:.1?}, indexes {:.1?}), ANALYZE in {:.1?}",
        filled - inserted,
        started.elapsed() - filled
    );
}

/// A store of [`MILLION`] events (see [`fill_million`]) and the time it ends at.
async fn million_store(dir: &Path) -> (SqliteEventStore, i64) {
    let path = dir.join("million.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    let now = Timestamp::now().as_unix_micros();
    fill_million(&path, now);
    (store, now)
}

/// The query-plan lines of the statement `query`'s first page runs, with its
/// parameters bound (SQLite's STAT4 plans with the values).
fn plan(conn: &rusqlite::Connection, query: &EventQuery) -> Vec<String> {
    let (sql, params) = first_page_statement(query);
    let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = statement
        .query_map(params_from_iter(params), |row| row.get::<_, String>(3))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// The shapes the indexes of migration 0003 serve, and the index each uses.
fn indexed_shapes(now: i64) -> Vec<(&'static str, EventQuery, &'static str)> {
    let day_ago = Timestamp::from_unix_micros(now - DAY);
    let week_ago = Timestamp::from_unix_micros(now - 7 * DAY);
    vec![
        (
            "type + last day",
            EventQuery::new().event_type("type-3").time_from(day_ago),
            "events_type_time",
        ),
        (
            "types + time range",
            EventQuery::new()
                .event_type("type-3")
                .event_type("type-4")
                .time_from(week_ago)
                .time_until(day_ago),
            "events_type_time",
        ),
        (
            "source",
            EventQuery::new().source("/src/3"),
            "events_ce_source",
        ),
        (
            "subject",
            EventQuery::new().subject("subj-3"),
            "events_ce_subject",
        ),
        (
            "correlation id",
            EventQuery::new().correlation_id("corr-7"),
            "events_correlation_id",
        ),
    ]
}

#[tokio::test]
async fn indexed_shapes_never_scan_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (store, now) = million_store(dir.path()).await;
    let conn = rusqlite::Connection::open(dir.path().join("million.db")).unwrap();
    for (name, base, index) in indexed_shapes(now) {
        for q in [
            base.clone().limit(100),
            base.clone().descending().limit(100),
            base.clone(),
            base.clone().descending(),
        ] {
            let lines = plan(&conn, &q);
            println!("{name}, {:?}: {}", q.direction, lines.join(" / "));
            for line in &lines {
                let allowed = line.starts_with("SEARCH events USING ")
                    || line.starts_with("LIST SUBQUERY ")
                    || line == "USE TEMP B-TREE FOR ORDER BY"
                    || line == "MULTI-INDEX OR"
                    || line.starts_with("INDEX ");
                assert!(allowed, "{name}: {line} in {lines:?}");
                assert!(!line.starts_with("SCAN"), "{name}: {lines:?}");
            }
            assert!(
                lines.iter().any(|l| l.contains(index)),
                "{name} should use {index}: {lines:?}"
            );
        }
        // And the statement runs: a first page of the newest matches.
        let newest = query(&store, base.clone().descending().limit(100)).await;
        assert!(!newest.is_empty(), "{name}");
        assert!(newest.iter().all(|e| base.matches(e)), "{name}");
        assert!(newest.windows(2).all(|w| w[0].position > w[1].position));
    }
    // Shapes no index of 0003 serves on its own, for the record (not checked).
    for (name, q) in [
        (
            "subject prefix",
            EventQuery::new().subject_prefix("subj-12"),
        ),
        ("default source", EventQuery::new().source(DEFAULT_SOURCE)),
        (
            "time only",
            EventQuery::new().time_from(Timestamp::from_unix_micros(now - DAY)),
        ),
        ("type only", EventQuery::new().event_type("type-3")),
    ] {
        println!("{name}: {}", plan(&conn, &q.limit(100)).join(" / "));
    }
    println!("plan test took {:.1?}", started.elapsed());
}

/// p50 and p99 of `samples` (sorted here), in microseconds.
fn percentiles(samples: &mut [std::time::Duration]) -> (u128, u128) {
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)].as_micros();
    (at(50), at(99))
}

/// Latencies on the million-event store (run with `--ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: fills a million events, then times 200 runs of each query"]
async fn latency_on_a_million_events() {
    const RUNS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let (store, now) = million_store(dir.path()).await;
    let day_ago = Timestamp::from_unix_micros(now - DAY);
    let types: Vec<String> = (0..10).map(|t| format!("type-{t}")).collect();
    for descending in [false, true] {
        let mut samples = Vec::with_capacity(RUNS);
        for run in 0..RUNS {
            let mut q = EventQuery::new()
                .event_type(&types[run % 10])
                .time_from(day_ago)
                .limit(100);
            if descending {
                q = q.descending();
            }
            let started = Instant::now();
            let page = query(&store, q).await;
            samples.push(started.elapsed());
            assert_eq!(page.len(), 100);
        }
        let (p50, p99) = percentiles(&mut samples);
        println!(
            "type X + last day, first 100, descending={descending}: p50 {p50} µs, p99 {p99} µs"
        );
    }

    // Events with a CloudEvents (source, id), appended through the store.
    let stream = StreamId::new("cloud").unwrap();
    for batch in 0..10 {
        let events = (0..100)
            .map(|k| {
                NewEvent::new("cloud", "{}")
                    .with_source("/bench")
                    .with_cloud_id(format!("id-{}", batch * 100 + k))
            })
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let mut samples = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let id = format!("id-{}", run * 7 % 1000);
        let started = Instant::now();
        let found = store.get_by_source_id("/bench", &id).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(found.cloud_id(), id);
    }
    let (p50, p99) = percentiles(&mut samples);
    println!("get_by_source_id: p50 {p50} µs, p99 {p99} µs");

    for (name, base, _) in indexed_shapes(now) {
        for descending in [false, true] {
            let mut samples = Vec::with_capacity(RUNS);
            for _ in 0..RUNS / 4 {
                let q = if descending {
                    base.clone().descending()
                } else {
                    base.clone()
                };
                let started = Instant::now();
                let page = query(&store, q.limit(100)).await;
                samples.push(started.elapsed());
                assert!(!page.is_empty());
            }
            let (p50, p99) = percentiles(&mut samples);
            println!("{name}, first 100, descending={descending}: p50 {p50} µs, p99 {p99} µs");
        }
    }
}

// ---------------------------------------------------------------------------
// Upgrading a store created before migration 0003.
// ---------------------------------------------------------------------------

/// Creates a store at `path` with only the schema of migrations 0001 and 0002,
/// through sqlx's migrator as an older annals-sqlite did.
async fn old_store(path: &Path) {
    use annals_sqlite::sqlx::{
        migrate::Migrator,
        sqlite::{SqliteConnectOptions, SqliteJournalMode},
        ConnectOptions, Connection,
    };
    let migrations = tempfile::tempdir().unwrap();
    for name in [
        "0001_create_events_and_snapshots.sql",
        "0002_checkpoints.sql",
    ] {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations/sqlite")
            .join(name);
        std::fs::copy(source, migrations.path().join(name)).unwrap();
    }
    let migrator = Migrator::new(migrations.path()).await.unwrap();
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    migrator.run_direct(None, &mut conn, false).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_store_created_before_the_query_indexes_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    old_store(&path).await;

    // Events as the old code wrote them: metadata `{}` or with a correlation id.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'events_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2, "only the indexes of 0001");
    let recorded = Timestamp::now().as_unix_micros() - 3 * DAY;
    let old: Vec<(i64, &str, i64, &str, &str)> = vec![
        (1, "order-1", 1, "Placed", "{}"),
        (2, "order-1", 2, "Paid", r#"{"correlation_id":"req-1"}"#),
        (
            3,
            "order-2",
            1,
            "Placed",
            r#"{"correlation_id":"req-1","causation_id":"x"}"#,
        ),
        (4, "order-2", 2, "Paid", r#"{"user":"alice"}"#),
    ];
    for (position, stream, version, event_type, metadata) in &old {
        conn.execute(
            "INSERT INTO events (position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at) \
             VALUES (?1, randomblob(16), ?2, ?3, ?4, 'application/json', CAST('{}' AS BLOB), ?5, ?6)",
            rusqlite::params![position, stream, version, event_type, metadata, recorded + position],
        )
        .unwrap();
    }
    drop(conn);

    let store = SqliteEventStore::open(&path).await.unwrap();
    let events: Vec<RecordedEvent> = store
        .read_all(ReadAll::forward())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), old.len());
    for (event, (position, stream, version, event_type, metadata)) in events.iter().zip(&old) {
        assert_eq!(event.position.get() as i64, *position);
        assert_eq!(event.stream_id.as_str(), *stream);
        assert_eq!(event.version.get() as i64, *version);
        assert_eq!(event.event_type, *event_type);
        assert_eq!(event.payload, b"{}");
        assert_eq!(event.metadata, Metadata::from_json(metadata).unwrap());
        assert_eq!(event.recorded_at.as_unix_micros(), recorded + position);
        assert_eq!(event.source(), DEFAULT_SOURCE);
        assert_eq!(event.subject(), *stream);
        assert_eq!(event.time(), event.recorded_at);
    }

    // The new migration ran: version 3 is recorded and its indexes exist.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'events_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        names,
        [
            "events_ce_source",
            "events_ce_subject",
            "events_correlation_id",
            "events_event_id",
            "events_stream_version",
            "events_type_time"
        ]
    );

    // Queries work on the old events.
    let req_1 = query(&store, EventQuery::new().correlation_id("req-1")).await;
    assert_eq!(positions(&req_1), [2, 3]);
    let order_2 = query(&store, EventQuery::new().subject("order-2").descending()).await;
    assert_eq!(positions(&order_2), [4, 3]);
    let placed = query(
        &store,
        EventQuery::new()
            .event_type("Placed")
            .source(DEFAULT_SOURCE)
            .time_from(Timestamp::from_unix_micros(recorded + 2)),
    )
    .await;
    assert_eq!(positions(&placed), [3]);

    // New events with attributes append next to them and are found.
    let stream = StreamId::new("order-3").unwrap();
    let new = NewEvent::new("Placed", "{}")
        .with_metadata(Metadata::new().with_correlation_id("req-2"))
        .with_source("/shop")
        .with_cloud_id("A-1")
        .with_subject("customer-7")
        .with_time(Timestamp::from_unix_micros(recorded - DAY));
    store
        .append(&stream, ExpectedVersion::NoStream, vec![new])
        .await
        .unwrap();
    let by_source = query(&store, EventQuery::new().source("/shop")).await;
    assert_eq!(positions(&by_source), [5]);
    assert_eq!(by_source[0].subject(), "customer-7");
    let found = store.get_by_source_id("/shop", "A-1").await.unwrap();
    assert_eq!(found.position.get(), 5);
    let early = query(
        &store,
        EventQuery::new().time_until(Timestamp::from_unix_micros(recorded)),
    )
    .await;
    assert_eq!(positions(&early), [5]);
    let all: Vec<_> = query(&store, EventQuery::new()).await;
    assert_eq!(all, reference(&store, EventQuery::new()).await);
    store.close().await;
}
