//! Aggregates, the repository and snapshots over a real backend: snapshot + tail
//! equals full replay, snapshots are only an optimisation, conflicts retry.

use std::{convert::Infallible, sync::Arc};

use annals_core::{
    Aggregate, DomainEvent, EventStore, ExpectedVersion, NewEvent, ReadStream, RecordedEvent,
    Repository, RetryPolicy, Snapshot, SnapshotPolicy, Upcasters, Version,
};
use futures::TryStreamExt;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::generators::{cases, check, unique_prefix};

/// Events of the test aggregate. Order matters (`Added` and `Multiplied` do not
/// commute, `digest` folds every event), so a replay in the wrong order, a missing
/// or a doubled event changes the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum LedgerEvent {
    Added { n: i64 },
    Multiplied { by: i64 },
    // v1 had no `weight`; the upcaster defaults it to 1.
    Tagged { tag: String, weight: u8 },
    Reset,
}

impl DomainEvent for LedgerEvent {
    fn schema_version(name: &str) -> u32 {
        if name == "Tagged" {
            2
        } else {
            1
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Ledger {
    value: i64,
    events: u64,
    tags: Vec<(String, u8)>,
    digest: u64,
}

impl Ledger {
    fn fold(events: &[LedgerEvent]) -> Self {
        let mut state = Ledger::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}

impl Aggregate for Ledger {
    type Event = LedgerEvent;
    type Command = Vec<LedgerEvent>;
    type Error = Infallible;
    const CATEGORY: &'static str = "ledger";
    const SNAPSHOT_SCHEMA_VERSION: u32 = 3;

    fn apply(&mut self, event: &LedgerEvent) {
        let code = match event {
            LedgerEvent::Added { n } => {
                self.value = self.value.wrapping_add(*n);
                1
            }
            LedgerEvent::Multiplied { by } => {
                self.value = self.value.wrapping_mul(*by);
                2
            }
            LedgerEvent::Tagged { tag, weight } => {
                self.tags.push((tag.clone(), *weight));
                3 + u64::from(*weight)
            }
            LedgerEvent::Reset => {
                self.value = 0;
                self.tags.clear();
                7
            }
        };
        self.events += 1;
        self.digest = self
            .digest
            .wrapping_mul(1_000_003)
            .wrapping_add(code ^ self.value.unsigned_abs());
    }

    fn handle(&self, command: &Vec<LedgerEvent>) -> Result<Vec<LedgerEvent>, Infallible> {
        Ok(command.clone())
    }
}

fn ledger_event() -> impl Strategy<Value = LedgerEvent> {
    prop_oneof![
        4 => (-50i64..50).prop_map(|n| LedgerEvent::Added { n }),
        2 => (-3i64..4).prop_map(|by| LedgerEvent::Multiplied { by }),
        2 => ("[a-z]{0,6}", 1u8..4).prop_map(|(tag, weight)| LedgerEvent::Tagged { tag, weight }),
        1 => Just(LedgerEvent::Reset),
    ]
}

/// Batches of events (one command each) and, per batch, whether to take an
/// explicit snapshot after it.
fn batches() -> impl Strategy<Value = Vec<(Vec<LedgerEvent>, bool)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(ledger_event(), 1..6),
            any::<bool>(),
        ),
        1..16,
    )
}

fn repo(store: Arc<dyn EventStore>, every: u64) -> Repository<Arc<dyn EventStore>> {
    Repository::new(store).with_snapshot_policy(SnapshotPolicy::every(every))
}

/// For random event sequences, snapshot policies and explicit snapshot points,
/// loading from the newest snapshot plus the tail gives exactly the state of a
/// full replay — and the same state after the snapshot is deleted.
pub async fn prop_snapshot_plus_tail_equals_full_replay(store: Arc<dyn EventStore>) {
    check(
        store,
        cases(16),
        (batches(), 0u64..8),
        |store, (batches, every)| async move {
            let id = format!("{}x", unique_prefix("snap"));
            let repo = repo(Arc::clone(&store), every);
            let mut all = Vec::new();
            for (events, snapshot_now) in &batches {
                let done = repo.execute::<Ledger>(&id, events).await.unwrap();
                all.extend(events.iter().cloned());
                assert_eq!(done.version, Version::new(all.len() as u64));
                assert_eq!(done.state, Ledger::fold(&all));
                if *snapshot_now {
                    let saved = repo.snapshot::<Ledger>(&id).await.unwrap();
                    assert_eq!(saved, Some(done.version));
                }
            }
            let expected = Ledger::fold(&all);
            let total = all.len() as u64;
            let loaded = repo.load::<Ledger>(&id).await.unwrap();
            assert_eq!(loaded.state, expected, "snapshot + tail != full replay");
            assert_eq!(loaded.version, Version::new(total));
            let snap_version = loaded.snapshot_version.map_or(0, Version::get);
            assert_eq!(loaded.replayed, total - snap_version);
            let explicit = batches.iter().any(|(_, s)| *s);
            if explicit || (every > 0 && total >= every) {
                assert!(
                    loaded.snapshot_version.is_some(),
                    "a snapshot was due (every {every}, {total} events) but none was used"
                );
            }

            let stream = Ledger::stream_id(&id).unwrap();
            store.delete_snapshot(&stream).await.unwrap();
            let replayed = repo.load::<Ledger>(&id).await.unwrap();
            assert_eq!(replayed.state, expected, "full replay differs");
            assert_eq!(replayed.snapshot_version, None);
            assert_eq!(replayed.replayed, total);
        },
    )
    .await;
}

/// Several aggregates with events appended directly and snapshots taken at random
/// points: deleting every snapshot changes no loaded state or version.
pub async fn prop_deleting_snapshots_changes_no_loaded_state(store: Arc<dyn EventStore>) {
    let aggregates = proptest::collection::vec(
        (
            proptest::collection::vec(ledger_event(), 0..40),
            proptest::option::of(0usize..40),
        ),
        1..4,
    );
    check(
        store,
        cases(12),
        aggregates,
        |store, aggregates| async move {
            let prefix = unique_prefix("del");
            let repo = repo(Arc::clone(&store), 0);
            let mut before = Vec::new();
            for (i, (events, snapshot_at)) in aggregates.iter().enumerate() {
                let id = format!("{prefix}{i}");
                let stream = Ledger::stream_id(&id).unwrap();
                let cut = snapshot_at.map_or(events.len(), |at| at.min(events.len()));
                let (head, tail) = events.split_at(cut);
                for (part, snapshot_after) in [(head, snapshot_at.is_some()), (tail, false)] {
                    if !part.is_empty() {
                        let batch = part.iter().map(|e| e.to_new_event().unwrap()).collect();
                        store
                            .append(&stream, ExpectedVersion::Any, batch)
                            .await
                            .unwrap();
                    }
                    if snapshot_after {
                        repo.snapshot::<Ledger>(&id).await.unwrap();
                    }
                }
                let loaded = repo.load::<Ledger>(&id).await.unwrap();
                assert_eq!(loaded.state, Ledger::fold(events));
                before.push((id, stream, loaded.state, loaded.version));
            }
            for (_, stream, _, _) in &before {
                store.delete_snapshot(stream).await.unwrap();
                assert!(store.load_snapshot(stream).await.unwrap().is_none());
            }
            for (id, _, state, version) in before {
                let after = repo.load::<Ledger>(&id).await.unwrap();
                assert_eq!(after.state, state);
                assert_eq!(after.version, version);
                assert_eq!(after.snapshot_version, None);
            }
        },
    )
    .await;
}

/// The repository loads a new aggregate at version 0 and reports how it loaded:
/// snapshot version and number of events replayed, through this backend.
pub async fn aggregate_load_uses_snapshot_and_tail(store: Arc<dyn EventStore>) {
    let id = format!("{}a", unique_prefix("load"));
    let repo = repo(store, 10);
    let fresh = repo.load::<Ledger>(&id).await.unwrap();
    assert_eq!(fresh.version, Version::ZERO);
    assert_eq!(fresh.state, Ledger::default());
    let mut all = Vec::new();
    for n in 0..25 {
        let event = LedgerEvent::Added { n };
        repo.execute::<Ledger>(&id, &vec![event.clone()])
            .await
            .unwrap();
        all.push(event);
    }
    let loaded = repo.load::<Ledger>(&id).await.unwrap();
    assert_eq!(loaded.snapshot_version, Some(Version::new(20)));
    assert_eq!(loaded.replayed, 5);
    assert_eq!(loaded.state, Ledger::fold(&all));
}

/// Writers racing commands on one aggregate: every command lands exactly once,
/// because conflicts are retried on reloaded state.
pub async fn aggregate_concurrent_commands_retry_to_success(store: Arc<dyn EventStore>) {
    let id = format!("{}race", unique_prefix("retry"));
    let repo =
        Arc::new(repo(store, 4).with_retry_policy(RetryPolicy::default().with_max_attempts(100)));
    let writers = 8_i64;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (repo, id) = (Arc::clone(&repo), id.clone());
            tokio::spawn(async move {
                repo.execute::<Ledger>(&id, &vec![LedgerEvent::Added { n: 1 << w }])
                    .await
            })
        })
        .collect();
    for task in tasks {
        let done = task.await.unwrap();
        assert!(done.is_ok(), "command failed after retries: {done:?}");
    }
    let loaded = repo.load::<Ledger>(&id).await.unwrap();
    assert_eq!(loaded.version, Version::new(writers.unsigned_abs()));
    assert_eq!(
        loaded.state.value,
        (1 << writers) - 1,
        "every command exactly once"
    );
}

/// A snapshot stored with another schema version is ignored (full replay), not
/// mis-decoded; so is one whose bytes do not decode.
pub async fn aggregate_stale_snapshot_schema_is_ignored(store: Arc<dyn EventStore>) {
    let id = format!("{}s", unique_prefix("schema"));
    let stream = Ledger::stream_id(&id).unwrap();
    let repo = repo(Arc::clone(&store), 0);
    let events = vec![
        LedgerEvent::Added { n: 5 },
        LedgerEvent::Multiplied { by: 3 },
    ];
    repo.execute::<Ledger>(&id, &events).await.unwrap();
    let bogus = Ledger {
        value: 999,
        ..Ledger::default()
    };
    let stale = Snapshot::json(Version::new(2), &bogus)
        .unwrap()
        .with_schema_version(Ledger::SNAPSHOT_SCHEMA_VERSION - 1);
    store.save_snapshot(&stream, stale).await.unwrap();
    let loaded = repo.load::<Ledger>(&id).await.unwrap();
    assert_eq!(loaded.snapshot_version, None);
    assert_eq!(loaded.state, Ledger::fold(&events));

    let corrupt = Snapshot::new(Version::new(2), b"{\"value\":".to_vec())
        .with_schema_version(Ledger::SNAPSHOT_SCHEMA_VERSION);
    store.save_snapshot(&stream, corrupt).await.unwrap();
    let loaded = repo.load::<Ledger>(&id).await.unwrap();
    assert_eq!(loaded.snapshot_version, None);
    assert_eq!(loaded.state.value, 15);

    // A valid snapshot with the current schema is used.
    assert_eq!(
        repo.snapshot::<Ledger>(&id).await.unwrap(),
        Some(Version::new(2))
    );
    let loaded = repo.load::<Ledger>(&id).await.unwrap();
    assert_eq!(loaded.snapshot_version, Some(Version::new(2)));
    assert_eq!(loaded.state.value, 15);
}

/// Events stored in an old schema version are read back in the current one after
/// registering an upcaster; new writes use the current version.
pub async fn aggregate_old_event_versions_are_upcast(store: Arc<dyn EventStore>) {
    let id = format!("{}u", unique_prefix("upcast"));
    let stream = Ledger::stream_id(&id).unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Tagged.v1", br#"{"tag":"old"}"#.to_vec())],
        )
        .await
        .unwrap();
    let plain = repo(Arc::clone(&store), 0);
    assert!(plain.load::<Ledger>(&id).await.is_err());
    let upcasting = plain.with_upcasters(Upcasters::new().json("Tagged", 1, |mut value| {
        if let Some(object) = value.as_object_mut() {
            object.insert("weight".into(), 1.into());
        }
        Ok(value)
    }));
    let done = upcasting
        .execute::<Ledger>(
            &id,
            &vec![LedgerEvent::Tagged {
                tag: "new".into(),
                weight: 2,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        done.state.tags,
        vec![("old".to_owned(), 1), ("new".to_owned(), 2)]
    );
    let stored: Vec<RecordedEvent> = store
        .read_stream(ReadStream::forward(&stream))
        .try_collect()
        .await
        .unwrap();
    let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Tagged.v1", "Tagged.v2"]);
}
