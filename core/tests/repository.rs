//! Repository behaviour against the in-memory store: load, execute, retries,
//! snapshots, upcasting, codecs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{
    atomic::{AtomicBool, AtomicU32, Ordering},
    Arc,
};

use annals_core::futures::TryStreamExt;
use annals_core::{
    backend::Backend, futures::future::BoxFuture, Aggregate, Capabilities, Committed, DomainEvent,
    Error, EventId, EventStore, EventStream, ExecuteError, ExpectedVersion, NewEvent,
    PreparedAppend, ReadAll, ReadStream, RecordedEvent, Repository, Result, RetryPolicy, Snapshot,
    SnapshotPolicy, StreamId, Upcasters, Version,
};
use annals_memory::MemoryEventStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String, limit: i64 },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
    Closed,
}

impl DomainEvent for AccountEvent {
    fn schema_version(name: &str) -> u32 {
        // Opened.v1 had no limit; v2 named the owner `holder`; v3 is current.
        if name == "Opened" {
            3
        } else {
            1
        }
    }
}

#[derive(Debug)]
enum Command {
    Open(String),
    Deposit(i64),
    Withdraw(i64),
    Close,
    Noop,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum Rejected {
    #[error("account already open")]
    AlreadyOpen,
    #[error("account not open")]
    NotOpen,
    #[error("insufficient funds")]
    Insufficient,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    owner: Option<String>,
    balance: i64,
    limit: i64,
    closed: bool,
    history: Vec<i64>,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Command = Command;
    type Error = Rejected;
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner, limit } => {
                self.owner = Some(owner.clone());
                self.limit = *limit;
            }
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.history.push(*amount);
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance -= amount;
                self.history.push(-amount);
            }
            AccountEvent::Closed => self.closed = true,
        }
    }

    fn handle(&self, command: &Command) -> std::result::Result<Vec<AccountEvent>, Rejected> {
        let open = self.owner.is_some() && !self.closed;
        match command {
            Command::Open(owner) if self.owner.is_none() => Ok(vec![AccountEvent::Opened {
                owner: owner.clone(),
                limit: 0,
            }]),
            Command::Open(_) => Err(Rejected::AlreadyOpen),
            _ if !open => Err(Rejected::NotOpen),
            Command::Deposit(amount) => Ok(vec![AccountEvent::Deposited { amount: *amount }]),
            Command::Withdraw(amount) if self.balance + self.limit >= *amount => {
                Ok(vec![AccountEvent::Withdrawn { amount: *amount }])
            }
            Command::Withdraw(_) => Err(Rejected::Insufficient),
            Command::Close => Ok(vec![AccountEvent::Closed]),
            Command::Noop => Ok(vec![]),
        }
    }
}

fn stream(id: &str) -> StreamId {
    Account::stream_id(id).unwrap()
}

#[tokio::test]
async fn execute_and_load_round_trip() {
    let repo = Repository::new(MemoryEventStore::new());
    let done = repo
        .execute::<Account>("a", &Command::Open("ann".into()))
        .await
        .unwrap();
    assert_eq!(done.version, Version::new(1));
    assert_eq!(done.attempts, 1);
    repo.execute::<Account>("a", &Command::Deposit(10))
        .await
        .unwrap();
    let done = repo
        .execute::<Account>("a", &Command::Withdraw(4))
        .await
        .unwrap();
    assert_eq!(done.state.balance, 6);
    assert_eq!(done.events, vec![AccountEvent::Withdrawn { amount: 4 }]);
    let loaded = repo.load::<Account>("a").await.unwrap();
    assert_eq!(loaded.state, done.state);
    assert_eq!(loaded.version, Version::new(3));
    assert_eq!(loaded.replayed, 3);
    assert_eq!(loaded.snapshot_version, None);

    // Stored with versioned type names.
    let a = stream("a");
    let first: Vec<RecordedEvent> = repo
        .store()
        .read_stream(ReadStream::forward(&a).limit(1))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(first[0].event_type, "Opened.v3");
}

#[tokio::test]
async fn domain_errors_are_separate_and_write_nothing() {
    let repo = Repository::new(MemoryEventStore::new());
    let err = repo
        .execute::<Account>("b", &Command::Deposit(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecuteError::Domain(Rejected::NotOpen)));
    assert_eq!(err.domain(), Some(&Rejected::NotOpen));
    repo.execute::<Account>("b", &Command::Open("bo".into()))
        .await
        .unwrap();
    let err = repo
        .execute::<Account>("b", &Command::Withdraw(5))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "insufficient funds");
    assert_eq!(
        repo.store().stream_version(&stream("b")).await.unwrap(),
        Version::new(1)
    );
    // A command producing no events appends nothing.
    let done = repo.execute::<Account>("b", &Command::Noop).await.unwrap();
    assert!(done.events.is_empty());
    assert_eq!(done.version, Version::new(1));
    repo.execute::<Account>("b", &Command::Close).await.unwrap();
    let err = repo
        .execute::<Account>("b", &Command::Deposit(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecuteError::Domain(Rejected::NotOpen)));
}

#[tokio::test]
async fn works_through_arc_dyn_event_store() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let repo = Repository::new(store.clone());
    repo.execute::<Account>("c", &Command::Open("cy".into()))
        .await
        .unwrap();
    assert_eq!(
        store.stream_version(&stream("c")).await.unwrap(),
        Version::new(1)
    );
}

/// A store that lets another writer append to the stream right before the first
/// `failing` appends of the repository, so those appends conflict.
struct Interfering {
    inner: MemoryEventStore,
    remaining: AtomicU32,
    appends: AtomicU32,
    fail_snapshots: AtomicBool,
}

impl Interfering {
    fn new(conflicts: u32) -> Self {
        Interfering {
            inner: MemoryEventStore::new(),
            remaining: AtomicU32::new(conflicts),
            appends: AtomicU32::new(0),
            fail_snapshots: AtomicBool::new(false),
        }
    }
}

impl Backend for Interfering {
    fn limits(&self) -> Capabilities {
        self.inner.limits()
    }
    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>> {
        Box::pin(async move {
            self.appends.fetch_add(1, Ordering::SeqCst);
            let interfere = self
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if interfere {
                let other = AccountEvent::Deposited { amount: 100 }
                    .to_new_event()
                    .unwrap();
                for part in append.parts() {
                    self.inner
                        .append(
                            part.stream(),
                            ExpectedVersion::Any,
                            vec![other.clone().with_id(EventId::new())],
                        )
                        .await?;
                }
            }
            self.inner.write(append).await
        })
    }
    fn scan_stream(&self, read: ReadStream) -> EventStream<'_> {
        self.inner.scan_stream(read)
    }
    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        self.inner.scan_all(read)
    }
    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        self.inner.head_version(stream)
    }
    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        self.inner.find_event(id)
    }
    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        if self.fail_snapshots.load(Ordering::SeqCst) {
            return Box::pin(async { Err(Error::backend("saving snapshot", "disk full")) });
        }
        self.inner.put_snapshot(stream, snapshot)
    }
    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        self.inner.get_snapshot(stream)
    }
    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        self.inner.remove_snapshot(stream)
    }
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_base_delay(std::time::Duration::from_millis(1))
}

#[tokio::test]
async fn conflicts_are_retried_on_fresh_state() {
    let repo = Repository::new(Interfering::new(0)).with_retry_policy(fast_retries(3));
    repo.execute::<Account>("d", &Command::Open("di".into()))
        .await
        .unwrap();
    repo.store().remaining.store(2, Ordering::SeqCst);
    // Two other writers deposit 100 each before our first two appends.
    let done = repo
        .execute::<Account>("d", &Command::Deposit(1))
        .await
        .unwrap();
    assert_eq!(done.attempts, 3);
    assert_eq!(done.state.balance, 201);
    assert_eq!(done.state.history, [100, 100, 1]);
    assert_eq!(done.version, Version::new(4));
    assert_eq!(repo.load::<Account>("d").await.unwrap().state, done.state);
}

#[tokio::test]
async fn retries_are_bounded() {
    let repo = Repository::new(Interfering::new(0)).with_retry_policy(fast_retries(2));
    repo.execute::<Account>("e", &Command::Open("ed".into()))
        .await
        .unwrap();
    repo.store().remaining.store(5, Ordering::SeqCst);
    repo.store().appends.store(0, Ordering::SeqCst);
    let err = repo
        .execute::<Account>("e", &Command::Deposit(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExecuteError::RetriesExhausted { attempts: 2, ref last } if last.is_conflict()),
        "{err:?}"
    );
    assert!(err.is_conflict());
    let message = err.to_string();
    assert!(
        message.contains("2 attempts") && message.contains("max_attempts"),
        "the message says retries ran out and how to raise them: {message}"
    );
    assert_eq!(repo.store().appends.load(Ordering::SeqCst), 2);

    let repo = Repository::new(Interfering::new(1)).with_retry_policy(RetryPolicy::none());
    let err = repo
        .execute::<Account>("f", &Command::Open("fe".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecuteError::Store(Error::Conflict { .. })));
}

#[tokio::test]
async fn snapshots_follow_the_policy_and_shorten_loads() {
    let repo =
        Repository::new(MemoryEventStore::new()).with_snapshot_policy(SnapshotPolicy::every(10));
    repo.execute::<Account>("g", &Command::Open("gi".into()))
        .await
        .unwrap();
    let mut saved = Vec::new();
    for i in 0..24 {
        let done = repo
            .execute::<Account>("g", &Command::Deposit(i))
            .await
            .unwrap();
        saved.extend(done.snapshot_saved);
    }
    assert_eq!(saved, vec![Version::new(10), Version::new(20)]);
    let loaded = repo.load::<Account>("g").await.unwrap();
    assert_eq!(loaded.snapshot_version, Some(Version::new(20)));
    assert_eq!(loaded.replayed, 5);
    assert_eq!(loaded.version, Version::new(25));

    // Deleting the snapshot changes nothing but the work done.
    repo.store().delete_snapshot(&stream("g")).await.unwrap();
    let replayed = repo.load::<Account>("g").await.unwrap();
    assert_eq!(replayed.state, loaded.state);
    assert_eq!(replayed.replayed, 25);

    // Never: no snapshots.
    let repo = repo.with_snapshot_policy(SnapshotPolicy::Never);
    for _ in 0..12 {
        let done = repo
            .execute::<Account>("g", &Command::Deposit(1))
            .await
            .unwrap();
        assert_eq!(done.snapshot_saved, None);
    }
    assert!(repo
        .store()
        .load_snapshot(&stream("g"))
        .await
        .unwrap()
        .is_none());

    // An explicit snapshot.
    assert_eq!(
        repo.snapshot::<Account>("g").await.unwrap(),
        Some(Version::new(37))
    );
    assert_eq!(repo.snapshot::<Account>("nobody").await.unwrap(), None);
}

#[tokio::test]
async fn stale_schema_and_corrupt_snapshots_are_ignored() {
    let repo = Repository::new(MemoryEventStore::new());
    repo.execute::<Account>("h", &Command::Open("ha".into()))
        .await
        .unwrap();
    repo.execute::<Account>("h", &Command::Deposit(7))
        .await
        .unwrap();
    let expected = repo.load::<Account>("h").await.unwrap().state;

    let wrong_schema = Snapshot::json(Version::new(2), &Account::default())
        .unwrap()
        .with_schema_version(99);
    repo.store()
        .save_snapshot(&stream("h"), wrong_schema)
        .await
        .unwrap();
    let loaded = repo.load::<Account>("h").await.unwrap();
    assert_eq!((loaded.snapshot_version, &loaded.state), (None, &expected));

    let corrupt = Snapshot::new(Version::new(2), b"{garbage".to_vec()).with_schema_version(1);
    repo.store()
        .save_snapshot(&stream("h"), corrupt)
        .await
        .unwrap();
    let loaded = repo.load::<Account>("h").await.unwrap();
    assert_eq!((loaded.snapshot_version, &loaded.state), (None, &expected));

    let unknown_codec = Snapshot::new(Version::new(2), b"x".to_vec())
        .with_schema_version(1)
        .with_content_type("application/x-nope");
    repo.store()
        .save_snapshot(&stream("h"), unknown_codec)
        .await
        .unwrap();
    assert_eq!(repo.load::<Account>("h").await.unwrap().state, expected);
}

#[tokio::test]
async fn failed_snapshot_save_is_not_an_error() {
    let repo = Repository::new(Interfering::new(0)).with_snapshot_policy(SnapshotPolicy::every(1));
    repo.store().fail_snapshots.store(true, Ordering::SeqCst);
    let done = repo
        .execute::<Account>("i", &Command::Open("io".into()))
        .await
        .unwrap();
    assert_eq!(done.snapshot_saved, None);
    assert_eq!(done.version, Version::new(1));
    repo.store().fail_snapshots.store(false, Ordering::SeqCst);
    let done = repo
        .execute::<Account>("i", &Command::Deposit(1))
        .await
        .unwrap();
    assert_eq!(done.snapshot_saved, Some(Version::new(2)));
}

fn upcasters() -> Upcasters {
    Upcasters::new()
        .json("Opened", 1, |mut v| {
            v["limit"] = 0.into();
            Ok(v)
        })
        .json("Opened", 2, |mut v| {
            let holder = v
                .as_object_mut()
                .and_then(|o| o.remove("holder"))
                .ok_or("Opened.v2 without holder")?;
            v["owner"] = holder;
            Ok(v)
        })
}

#[tokio::test]
async fn v1_events_are_read_as_v3_after_registering_upcasters() {
    let store = MemoryEventStore::new();
    // Written by an old version of the application.
    store
        .append(
            &stream("j"),
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("Opened.v1", br#"{"holder":"jo"}"#.to_vec()),
                NewEvent::new("Deposited.v1", br#"{"amount":5}"#.to_vec()),
            ],
        )
        .await
        .unwrap();
    // Without upcasters the old shape is a codec error naming the event.
    let plain = Repository::new(&store);
    let err = plain.load::<Account>("j").await.unwrap_err();
    assert!(
        matches!(&err, Error::Codec { context, .. } if context.contains("Opened.v1")),
        "{err:?}"
    );

    let repo = Repository::new(&store).with_upcasters(upcasters());
    let loaded = repo.load::<Account>("j").await.unwrap();
    assert_eq!(loaded.state.owner.as_deref(), Some("jo"));
    assert_eq!(loaded.state.balance, 5);
    // New writes use v3.
    repo.execute::<Account>("j", &Command::Deposit(1))
        .await
        .unwrap();
    let j = stream("j");
    let all: Vec<RecordedEvent> = store
        .read_stream(ReadStream::forward(&j))
        .try_collect()
        .await
        .unwrap();
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Opened.v1", "Deposited.v1", "Deposited.v1"]);
    assert_eq!(
        AccountEvent::Opened {
            owner: "x".into(),
            limit: 0
        }
        .event_type()
        .unwrap(),
        "Opened.v3"
    );
}

#[tokio::test]
async fn unknown_event_types_fail_unless_skipped() {
    let store = MemoryEventStore::new();
    let repo = Repository::new(&store);
    repo.execute::<Account>("k", &Command::Open("ki".into()))
        .await
        .unwrap();
    store
        .append(
            &stream("k"),
            ExpectedVersion::Any,
            vec![NewEvent::new("Audited.v1", b"{}".to_vec())],
        )
        .await
        .unwrap();
    let err = repo.load::<Account>("k").await.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownEventType { event_type, .. } if event_type == "Audited.v1"),
        "{err:?}"
    );
    let skipping = Repository::new(&store).skip_unknown_events(true);
    let loaded = skipping.load::<Account>("k").await.unwrap();
    assert_eq!(loaded.version, Version::new(2));
    assert_eq!(loaded.state.owner.as_deref(), Some("ki"));
}

#[tokio::test]
async fn mixed_codecs_in_one_stream_load() {
    let store = MemoryEventStore::new();
    Repository::new(&store)
        .execute::<Account>("m", &Command::Open("mo".into()))
        .await
        .unwrap();
    #[cfg(feature = "postcard")]
    {
        let repo = Repository::new(&store)
            .with_codec(annals_core::codec::Postcard)
            .with_snapshot_policy(SnapshotPolicy::every(2));
        let done = repo
            .execute::<Account>("m", &Command::Deposit(3))
            .await
            .unwrap();
        assert_eq!(done.snapshot_saved, Some(Version::new(2)));
        let snap = store.load_snapshot(&stream("m")).await.unwrap().unwrap();
        assert_eq!(snap.content_type, "application/x-postcard");
        // A JSON repository reads postcard events and snapshots by content type.
        let loaded = Repository::new(&store).load::<Account>("m").await.unwrap();
        assert_eq!(loaded.state.balance, 3);
        assert_eq!(loaded.snapshot_version, Some(Version::new(2)));
    }
    let loaded = Repository::new(&store).load::<Account>("m").await.unwrap();
    assert_eq!(loaded.state.owner.as_deref(), Some("mo"));
}

#[tokio::test]
async fn mislabelled_payload_is_a_codec_error_naming_the_event() {
    let store = MemoryEventStore::new();
    let event = NewEvent::new("Opened.v3", vec![0xff, 0x00, 0x13]);
    let id = event.id;
    store
        .append(&stream("n"), ExpectedVersion::NoStream, vec![event])
        .await
        .unwrap();
    let err = Repository::new(&store)
        .load::<Account>("n")
        .await
        .unwrap_err();
    let Error::Codec { context, .. } = &err else {
        panic!("expected a codec error, got {err:?}");
    };
    assert!(
        context.contains(&id.to_string()) && context.contains("Opened.v3"),
        "{context}"
    );
}

// ---- commands across several aggregates ----------------------------------------

async fn open_with(repo: &Repository<MemoryEventStore>, id: &str, amount: i64) {
    repo.execute::<Account>(id, &Command::Open(id.into()))
        .await
        .unwrap();
    if amount > 0 {
        repo.execute::<Account>(id, &Command::Deposit(amount))
            .await
            .unwrap();
    }
}

fn transfer(
    from: annals_core::Handle<Account>,
    to: annals_core::Handle<Account>,
    amount: i64,
) -> impl Fn(
    &mut annals_core::Draft<'_, annals_core::codec::Json>,
) -> std::result::Result<(), ExecuteError<Rejected>> {
    move |draft| {
        let source = draft.state(from)?;
        let events = source
            .handle(&Command::Withdraw(amount))
            .map_err(ExecuteError::Domain)?;
        draft.append(from, &events)?;
        draft.append(to, &[AccountEvent::Deposited { amount }])?;
        Ok(())
    }
}

#[tokio::test]
async fn execute_across_commits_both_aggregates_or_neither() {
    let repo = Repository::new(MemoryEventStore::new());
    open_with(&repo, "alice", 100).await;
    open_with(&repo, "bob", 0).await;
    let mut scope = annals_core::Scope::new();
    let alice = scope.aggregate::<Account>("alice").unwrap();
    let bob = scope.aggregate::<Account>("bob").unwrap();

    let done = repo
        .execute_across(&scope, transfer(alice, bob, 30))
        .await
        .unwrap();
    let committed = done.committed.expect("events were appended");
    assert_eq!(committed.parts.len(), 2);
    assert_eq!(done.attempts, 1);
    assert_eq!(
        repo.load::<Account>("alice").await.unwrap().state.balance,
        70
    );
    assert_eq!(repo.load::<Account>("bob").await.unwrap().state.balance, 30);

    let before = repo.store().len();
    let refused = repo
        .execute_across(&scope, transfer(alice, bob, 1_000))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ExecuteError::Domain(Rejected::Insufficient)),
        "{refused:?}"
    );
    assert_eq!(
        repo.store().len(),
        before,
        "a rejected command writes nothing"
    );

    assert!(
        scope
            .aggregate::<Account>("alice")
            .unwrap_err()
            .is_invalid_input(),
        "an aggregate is in a scope once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_retry_and_conserve_money() {
    let repo = Repository::new(MemoryEventStore::new()).with_retry_policy(fast_retries(64));
    open_with(&repo, "a", 1_000).await;
    open_with(&repo, "b", 1_000).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move {
                let mut scope = annals_core::Scope::new();
                let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
                let from = scope.aggregate::<Account>(from).unwrap();
                let to = scope.aggregate::<Account>(to).unwrap();
                let mut attempts = 0;
                for _ in 0..10 {
                    attempts += repo
                        .execute_across(&scope, transfer(from, to, 7))
                        .await
                        .unwrap()
                        .attempts;
                }
                attempts
            })
        })
        .collect();
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap();
    }
    assert!(attempts >= 80);
    let a = repo.load::<Account>("a").await.unwrap().state.balance;
    let b = repo.load::<Account>("b").await.unwrap().state.balance;
    assert_eq!(
        a + b,
        2_000,
        "money is conserved across 80 concurrent transfers"
    );
    assert_eq!(a, 1_000, "as many transfers went each way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_only_read_is_checked_at_commit() {
    let repo = Repository::new(MemoryEventStore::new()).with_retry_policy(fast_retries(5));
    open_with(&repo, "src", 100).await;
    open_with(&repo, "dst", 0).await;
    open_with(&repo, "policy", 50).await;
    let mut scope = annals_core::Scope::new();
    let src = scope.aggregate::<Account>("src").unwrap();
    let dst = scope.aggregate::<Account>("dst").unwrap();
    let policy = scope.aggregate::<Account>("policy").unwrap();
    let moved = AtomicBool::new(false);
    let store = repo.store().clone();
    let done = repo
        .execute_across(&scope, |draft| {
            // The policy aggregate is only read: its balance caps the transfer.
            let cap = draft.state(policy)?.balance;
            if !moved.swap(true, Ordering::SeqCst) {
                // Another writer changes the policy after we read it, before we commit.
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(store.append(
                        &stream("policy"),
                        ExpectedVersion::Any,
                        vec![AccountEvent::Deposited { amount: 10 }.to_new_event().unwrap()],
                    ))
                })?;
            }
            transfer(src, dst, cap)(draft)?;
            Ok(cap)
        })
        .await
        .unwrap();
    assert_eq!(
        done.attempts, 2,
        "the stale read of `policy` made the first commit conflict"
    );
    assert_eq!(
        done.value, 60,
        "the retry decided on the policy's new state"
    );
    assert!(
        done.committed.unwrap().stream(&stream("policy")).is_none(),
        "nothing appended to a read-only aggregate"
    );
    assert_eq!(repo.load::<Account>("dst").await.unwrap().state.balance, 60);
}

#[tokio::test]
async fn empty_and_too_long_aggregate_ids_are_rejected_clearly() {
    let repo = Repository::new(MemoryEventStore::new());
    let err = repo
        .execute::<Account>("", &Command::Open("x".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecuteError::Store(e) if e.is_invalid_input()),
        "{err:?}"
    );
    assert!(err.to_string().contains("must not be empty"), "{err}");
    assert!(repo.store().is_empty(), "nothing was written to `account-`");
    assert!(annals_core::Scope::new().aggregate::<Account>("").is_err());

    let long = "x".repeat(250);
    let err = repo.load::<Account>(&long).await.unwrap_err();
    assert!(
        err.to_string().contains("category prefix `account-`"),
        "{err}"
    );
}

#[test]
fn errors_show_their_cause_when_printed() {
    let io = std::io::Error::other("file is not a database");
    let err = Error::backend("opening the SQLite event store", io);
    assert!(err.to_string().contains("file is not a database"), "{err}");
    let bad: std::result::Result<AccountEvent, _> = serde_json::from_str("{\"Deposited\":{}}");
    let err = Error::codec("decoding event 1 (`Deposited.v1`)", bad.unwrap_err());
    assert!(err.to_string().contains("missing field `amount`"), "{err}");
}

/// Ids 1, 2, 3, … from an injected source.
#[derive(Debug, Default)]
struct CountingIds(std::sync::atomic::AtomicU64);

impl annals_core::source::IdSource for CountingIds {
    fn next_id(&self) -> EventId {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        EventId::from_bytes(u128::from(n).to_be_bytes())
    }
}

#[tokio::test]
async fn new_events_take_their_ids_from_the_injected_source() {
    let store = MemoryEventStore::new();
    let repo = Repository::new(store.clone()).with_ids(CountingIds::default());
    open_with(&repo, "alice", 100).await;
    open_with(&repo, "bob", 0).await;
    let mut scope = annals_core::Scope::new();
    let alice = scope.aggregate::<Account>("alice").unwrap();
    let bob = scope.aggregate::<Account>("bob").unwrap();
    repo.execute_across(&scope, transfer(alice, bob, 30))
        .await
        .unwrap();

    let ids: Vec<u128> = store
        .read_all(ReadAll::forward())
        .map_ok(|e| u128::from_be_bytes(*e.id.as_bytes()))
        .try_collect()
        .await
        .unwrap();
    // Open + deposit for alice, open for bob, then the transfer's two events.
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    // A clone of the repository shares the source: no id is handed out twice.
    repo.clone()
        .execute::<Account>("bob", &Command::Deposit(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .find_event(EventId::from_bytes(6_u128.to_be_bytes()))
            .await
            .unwrap()
            .stream_id
            .as_str(),
        "account-bob"
    );
}
