//! The kit on a small bank domain: every assertion passing once, and every failure
//! message checked once by its text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use annals_core::{
    Aggregate, DomainEvent, Error, ExecuteError, ExpectedVersion, Metadata, NewEvent, Scope,
    SnapshotPolicy, StreamId, Upcasters,
};
use annals_memory::{AppendRequest, EventStore, MemoryEventStore};
use annals_test_kit::{
    assert::{self, check_any, check_events, check_types, check_version},
    given,
    strategies::{assert_replay, check_replay, events_from_json, histories},
    AggregateTest, Clock, Fixture, Ids, StoreTest,
};
use futures::TryStreamExt;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    /// v2 added `currency`; v1 accounts were in euros.
    Opened {
        owner: String,
        currency: String,
    },
    Deposited {
        amount: u64,
    },
    Withdrawn {
        amount: u64,
    },
    Closed,
}

impl DomainEvent for AccountEvent {
    fn schema_version(name: &str) -> u32 {
        if name == "Opened" {
            2
        } else {
            1
        }
    }
}

fn upcasters() -> Upcasters {
    Upcasters::new().json("Opened", 1, |mut v| {
        v["currency"] = "EUR".into();
        Ok(v)
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum AccountError {
    #[error("account is not open")]
    NotOpen,
    #[error("account is already open")]
    AlreadyOpen,
    #[error("insufficient funds: balance {balance}, asked {asked}")]
    Insufficient { balance: u64, asked: u64 },
}

#[derive(Debug, Clone)]
enum Command {
    Open(&'static str),
    Deposit(u64),
    Withdraw(u64),
    Close,
    Nothing,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    open: bool,
    owner: String,
    currency: String,
    balance: u64,
}

use AccountEvent::{Closed, Deposited, Opened, Withdrawn};

impl Aggregate for Account {
    type Event = AccountEvent;
    type Command = Command;
    type Error = AccountError;
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            Opened { owner, currency } => {
                self.open = true;
                self.owner.clone_from(owner);
                self.currency.clone_from(currency);
            }
            Deposited { amount } => self.balance += amount,
            Withdrawn { amount } => self.balance -= amount,
            Closed => self.open = false,
        }
    }

    fn handle(&self, command: &Command) -> Result<Vec<AccountEvent>, AccountError> {
        if let Command::Open(owner) = command {
            if self.open {
                return Err(AccountError::AlreadyOpen);
            }
            return Ok(vec![Opened {
                owner: (*owner).to_owned(),
                currency: "USD".into(),
            }]);
        }
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(match command {
            Command::Deposit(amount) => vec![Deposited { amount: *amount }],
            Command::Withdraw(asked) if *asked > self.balance => {
                return Err(AccountError::Insufficient {
                    balance: self.balance,
                    asked: *asked,
                })
            }
            Command::Withdraw(amount) => vec![Withdrawn { amount: *amount }],
            Command::Close => vec![Closed],
            Command::Open(_) | Command::Nothing => vec![],
        })
    }
}

fn opened() -> AccountEvent {
    Opened {
        owner: "ann".into(),
        currency: "USD".into(),
    }
}

fn message<T: std::fmt::Debug>(result: Result<T, annals_test_kit::Mismatch>) -> String {
    result.unwrap_err().message().to_owned()
}

// ---------------------------------------------------------------- store-free

#[test]
fn given_when_then_passes() {
    given::<Account>([opened(), Deposited { amount: 50 }])
        .when(&Command::Withdraw(20))
        .then_expect(&[Withdrawn { amount: 20 }])
        .then_state(|a| a.balance == 30)
        .then_state_is(&Account {
            open: true,
            owner: "ann".into(),
            currency: "USD".into(),
            balance: 30,
        });
    given::<Account>([opened()])
        .when(&Command::Withdraw(1))
        .then_error(|e| {
            matches!(
                e,
                AccountError::Insufficient {
                    balance: 0,
                    asked: 1
                }
            )
        })
        .then_error_message("insufficient funds: balance 0, asked 1")
        .then_state(|a| a.balance == 0);
    given::<Account>([opened()])
        .when(&Command::Nothing)
        .then_no_events();
    AggregateTest::<Account>::new()
        .when(&Command::Deposit(1))
        .then_error(|e| *e == AccountError::NotOpen);
    let outcome = given::<Account>([opened()]).when(&Command::Close);
    assert_eq!(outcome.events(), Some(&[Closed][..]));
    assert!(outcome.error().is_none());
    assert!(!outcome.state().unwrap().open);
}

#[test]
fn given_raw_events_go_through_the_upcasters() {
    AggregateTest::<Account>::new()
        .with_upcasters(upcasters())
        .given_raw("Opened.v1", &json!({"owner": "old"}))
        .given([Deposited { amount: 5 }])
        .when(&Command::Deposit(1))
        .then_state(|a| a.currency == "EUR" && a.owner == "old" && a.balance == 6);
    // Without the upcaster the old shape does not load — as in production.
    let outcome = AggregateTest::<Account>::new()
        .given_raw("Opened.v1", &json!({"owner": "old"}))
        .when(&Command::Deposit(1));
    let text = message(outcome.try_then_expect(&[Deposited { amount: 1 }]));
    assert!(
        text.starts_with(
            "the test setup failed before the command ran: codec error: decoding event "
        ),
        "{text}"
    );
    assert!(text.contains("`Opened.v1`"), "{text}");
}

#[test]
fn event_diff_names_the_event_and_the_field() {
    let outcome = given::<Account>([opened()]).when(&Command::Deposit(30));
    assert_eq!(
        message(outcome.try_then_expect(&[Deposited { amount: 20 }, Closed])),
        "the command recorded other events than expected:\n  \
         events[0] Deposited: field `amount`: expected 20, found 30\n  \
         events[1]: expected Closed, found no event\n\
         expected 2 events: [Deposited, Closed]\n\
         found    1 event: [Deposited]"
    );
    assert_eq!(
        message(outcome.try_then_expect(&[Withdrawn { amount: 30 }])),
        "the command recorded other events than expected:\n  \
         events[0]: expected Withdrawn {\"amount\":30}, found Deposited {\"amount\":30}\n\
         expected 1 event: [Withdrawn]\n\
         found    1 event: [Deposited]"
    );
}

#[test]
fn store_free_failure_messages() {
    let rejected = given::<Account>([opened()]).when(&Command::Withdraw(5));
    assert_eq!(
        message(rejected.try_then_expect(&[Withdrawn { amount: 5 }])),
        "expected 1 event, but the command was rejected: insufficient funds: balance 0, asked 5 \
         (Insufficient { balance: 0, asked: 5 })"
    );
    assert_eq!(
        message(rejected.try_then_error(|e| *e == AccountError::NotOpen)),
        "the command was rejected, but not with the expected error: found \
         `insufficient funds: balance 0, asked 5` (Insufficient { balance: 0, asked: 5 })"
    );
    assert_eq!(
        message(rejected.try_then_error_message("account is not open")),
        "expected the rejection `account is not open`, found `insufficient funds: balance 0, asked 5`"
    );

    let accepted = given::<Account>([opened()]).when(&Command::Deposit(5));
    assert_eq!(
        message(accepted.try_then_error(|_| true)),
        "expected the command to be rejected, but it recorded 1 event: Deposited {\"amount\":5}"
    );
    assert_eq!(
        message(accepted.try_then_error_message("account is not open")),
        "expected the command to be rejected, but it recorded 1 event: Deposited {\"amount\":5}"
    );
    assert_eq!(
        message(accepted.try_then_state(|a| a.balance == 6)),
        "the state after the command does not satisfy the predicate; state: \
         {\"balance\":5,\"currency\":\"USD\",\"open\":true,\"owner\":\"ann\"}"
    );
    assert_eq!(
        message(accepted.try_then_state_is(&Account::default())),
        "the state after the command differs from the expected state:\n  \
         state: field `balance`: expected 0, found 5\n  \
         state: field `currency`: expected \"\", found \"USD\"\n  \
         state: field `open`: expected false, found true\n  \
         state: field `owner`: expected \"\", found \"ann\""
    );
    let nothing = given::<Account>([opened()]).when(&Command::Nothing);
    assert_eq!(
        message(nothing.try_then_error(|_| true)),
        "expected the command to be rejected, but it succeeded and recorded no events"
    );
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Odd {
    by_pair: BTreeMap<(u8, u8), u8>,
}

impl Aggregate for Odd {
    type Event = AccountEvent;
    type Command = ();
    type Error = AccountError;
    const CATEGORY: &'static str = "odd";
    fn apply(&mut self, _: &AccountEvent) {
        self.by_pair.insert((1, 2), 3);
    }
    fn handle(&self, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(vec![Closed])
    }
}

#[test]
fn values_that_do_not_serialize_are_reported() {
    let outcome = given::<Odd>([]).when(&());
    assert_eq!(
        message(outcome.try_then_state_is(&Odd::default())),
        "serializing for comparison: key must be a string"
    );
}

// ---------------------------------------------------------------- through a store

#[tokio::test]
async fn store_scenarios_cover_snapshots_and_upcasting() {
    let memory = MemoryEventStore::new();
    StoreTest::on(memory.clone())
        .with_upcasters(upcasters())
        // Due 2 events after the snapshot the load started from.
        .with_snapshot_policy(SnapshotPolicy::every(2))
        .given_raw::<Account>("a", "Opened.v1", &json!({"owner": "old"}))
        .given_stored::<Account>("a", [Deposited { amount: 10 }, Deposited { amount: 5 }])
        .given_snapshot::<Account>("a", 2)
        .when::<Account>("a", &Command::Withdraw(15))
        .await
        .then_loaded_from_snapshot(2)
        .then_expect(&[Withdrawn { amount: 15 }])
        .then_version(4)
        .then_snapshot_saved(4)
        .then_state(|a| a.currency == "EUR" && a.balance == 0);
    // The memory store is inspectable afterwards.
    let stream = StreamId::new("account-a").unwrap();
    assert::assert_types(
        &memory.events_of(&stream),
        &["Opened.v1", "Deposited", "Deposited", "Withdrawn.v1"],
    );
    assert_eq!(memory.snapshot_of(&stream).unwrap().version, 4);

    StoreTest::memory()
        .given_stored::<Account>("b", [opened()])
        .when::<Account>("b", &Command::Withdraw(1))
        .await
        .then_error(|e| matches!(e, AccountError::Insufficient { .. }))
        .then_error_message("insufficient funds: balance 0, asked 1");
}

/// Ids and recorded times are the same on every run: the command's events take
/// their ids from the injected `Ids`, the memory scenario's store records times
/// from a deterministic `Clock`.
#[tokio::test]
async fn ids_and_times_are_injectable() {
    let run = || async {
        let done = StoreTest::memory()
            .with_ids(Ids::seeded(9))
            .given_stored::<Account>("a", [opened()])
            .when::<Account>("a", &Command::Deposit(5))
            .await;
        done.then_expect(&[Deposited { amount: 5 }]);
        let events: Vec<annals_core::RecordedEvent> = done
            .store()
            .read_all(annals_core::ReadAll::forward())
            .try_collect()
            .await
            .unwrap();
        events
            .iter()
            .map(|e| (e.id.to_string(), e.recorded_at.to_string()))
            .collect::<Vec<_>>()
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert_eq!(
        first.last().unwrap(),
        &(
            "00000000-0000-0009-0000-000000000001".to_owned(),
            "2026-01-01T00:00:01.000000Z".to_owned()
        ),
        "the command's event: the first id of seed 9, one clock step after the given event"
    );

    // The same sources straight on a repository and a memory store.
    let clock = Clock::starting_at(annals_core::Timestamp::from_unix_micros(0));
    let store = MemoryEventStore::new().with_clock(clock);
    let repo = annals_core::Repository::new(store.clone()).with_ids(Ids::seeded(3));
    repo.execute::<Account>("x", &Command::Open("me"))
        .await
        .unwrap();
    let stored = store.all_events();
    assert_eq!(stored[0].id, Ids::seeded(3).next_id());
    assert_eq!(stored[0].recorded_at.as_unix_micros(), 0);
}

#[tokio::test]
async fn store_failure_messages() {
    let done = StoreTest::memory()
        .given_stored::<Account>("a", [opened(), Deposited { amount: 3 }])
        .given_snapshot::<Account>("a", 1)
        .with_snapshot_policy(SnapshotPolicy::Never)
        .when::<Account>("a", &Command::Deposit(1))
        .await;
    assert_eq!(done.appended().len(), 1);
    assert!(done.result().unwrap().is_ok());
    assert_eq!(
        done.store()
            .stream_version(&StreamId::new("account-a").unwrap())
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        message(done.try_then_expect(&[Deposited { amount: 2 }])),
        "the command recorded other events than expected:\n  \
         events[0] Deposited: field `amount`: expected 2, found 1\n\
         expected 1 event: [Deposited]\n\
         found    1 event: [Deposited]"
    );
    assert_eq!(
        message(done.try_then_version(2)),
        "expected the stream at version 2 after the command, found version 3"
    );
    assert_eq!(
        message(done.try_then_loaded_from_snapshot(2)),
        "expected the load to start from the snapshot at version 2, but it started from the \
         snapshot at version 1 (then replayed 1 events)"
    );
    assert_eq!(
        message(done.try_then_snapshot_saved(3)),
        "expected a snapshot saved at version 3, found none"
    );
    assert_eq!(
        message(done.try_then_error(|_| true)),
        "expected the command to be rejected, but it recorded 1 event: Deposited {\"amount\":1}"
    );
    assert_eq!(
        message(done.try_then_state(|a| a.balance == 0)),
        "the state after the command does not satisfy the predicate; state: \
         {\"balance\":4,\"currency\":\"USD\",\"open\":true,\"owner\":\"ann\"}"
    );

    let saved = StoreTest::memory()
        .given_stored::<Account>("a", [opened()])
        .with_snapshot_policy(SnapshotPolicy::every(1))
        .when::<Account>("a", &Command::Deposit(1))
        .await;
    assert_eq!(
        message(saved.try_then_snapshot_saved(1)),
        "expected a snapshot saved at version 1, found one at version 2"
    );
    assert_eq!(
        message(saved.try_then_loaded_from_snapshot(1)),
        "expected the load to start from the snapshot at version 1, but no snapshot was used: \
         it replayed all 1 events"
    );

    let rejected = StoreTest::memory()
        .when::<Account>("new", &Command::Deposit(1))
        .await;
    assert_eq!(
        message(rejected.try_then_state(|_| true)),
        "expected the command to succeed, but it was rejected: account is not open (NotOpen)"
    );
    assert_eq!(
        message(rejected.try_then_expect(&[])),
        "expected 0 events, but the command was rejected: account is not open (NotOpen)"
    );
    assert_eq!(
        message(rejected.try_then_error(|e| *e == AccountError::AlreadyOpen)),
        "the command was rejected, but not with the expected error: found `account is not open` (NotOpen)"
    );
    assert_eq!(
        message(rejected.try_then_error_message("nope")),
        "expected the rejection `nope`, found `account is not open`"
    );

    let bad_snapshot = StoreTest::memory()
        .given_stored::<Account>("a", [opened()])
        .given_snapshot::<Account>("a", 5)
        .when::<Account>("a", &Command::Deposit(1))
        .await;
    assert!(bad_snapshot.appended().is_empty());
    assert_eq!(
        message(bad_snapshot.try_then_version(1)),
        "the test setup failed before the command ran: cannot put a snapshot of `account-a` at \
         version 5: the given events reach version 1"
    );
}

// ---------------------------------------------------------------- several aggregates

fn transfer(scope: &mut Scope) -> (annals_core::Handle<Account>, annals_core::Handle<Account>) {
    (
        scope.aggregate::<Account>("alice").unwrap(),
        scope.aggregate::<Account>("bob").unwrap(),
    )
}

#[tokio::test]
async fn commands_across_aggregates() {
    let mut scope = Scope::new();
    let (from, to) = transfer(&mut scope);
    let scenario = || {
        StoreTest::memory()
            .given_stored::<Account>("alice", [opened(), Deposited { amount: 50 }])
            .given_stored::<Account>("bob", [opened()])
    };
    let move_30 = |draft: &mut annals_core::Draft<'_, annals_core::codec::Json>| {
        let balance = draft.state(from)?.balance;
        if balance < 30 {
            return Err(ExecuteError::Domain(AccountError::Insufficient {
                balance,
                asked: 30,
            }));
        }
        draft.append(from, &[Withdrawn { amount: 30 }])?;
        draft.append(to, &[Deposited { amount: 30 }])?;
        Ok(balance - 30)
    };
    let done = scenario().when_across(&scope, move_30).await;
    done.then_appended::<Account>("alice", &[Withdrawn { amount: 30 }])
        .then_appended::<Account>("bob", &[Deposited { amount: 30 }])
        .then_streams(&["account-alice", "account-bob"]);
    assert_eq!(done.value(), Some(&20));
    assert_eq!(done.appended().len(), 2);
    assert_eq!(
        done.store()
            .stream_version(&StreamId::new("account-bob").unwrap())
            .await
            .unwrap(),
        2
    );

    assert_eq!(
        message(done.try_then_appended::<Account>("bob", &[Deposited { amount: 31 }])),
        "on `account-bob`: the command recorded other events than expected:\n  \
         events[0] Deposited: field `amount`: expected 31, found 30\n\
         expected 1 event: [Deposited]\n\
         found    1 event: [Deposited]"
    );
    assert_eq!(
        message(done.try_then_streams(&["account-bob"])),
        "expected appends to [account-bob], found appends to [account-alice, account-bob]"
    );
    assert_eq!(
        message(done.try_then_error(|_| true)),
        "expected the command to be rejected, but it appended Withdrawn.v1 on account-alice, \
         Deposited.v1 on account-bob"
    );
    // Another aggregate type on the same category cannot read these events.
    let text = message(done.try_then_appended::<Impostor>("alice", &[]));
    assert!(
        text.starts_with(
            "the appended event 3 (`Withdrawn.v1`) on `account-alice` does not decode: "
        ),
        "{text}"
    );

    let poor = StoreTest::memory()
        .given_stored::<Account>("alice", [opened()])
        .given_stored::<Account>("bob", [opened()])
        .when_across(&scope, move_30)
        .await;
    poor.then_error(|e| matches!(e, AccountError::Insufficient { balance: 0, .. }));
    assert!(poor.appended().is_empty() && poor.value().is_none());
    assert_eq!(
        message(poor.try_then_streams(&[])),
        "expected the command to succeed, but it was rejected: insufficient funds: balance 0, \
         asked 30 (Insufficient { balance: 0, asked: 30 })"
    );
    assert_eq!(
        message(poor.try_then_error(|e| *e == AccountError::NotOpen)),
        "the command was rejected, but not with the expected error: found `insufficient funds: \
         balance 0, asked 30` (Insufficient { balance: 0, asked: 30 })"
    );

    let idle = scenario()
        .when_across(&scope, |_draft| Ok::<(), ExecuteError<AccountError>>(()))
        .await;
    idle.then_streams(&[]);
    assert_eq!(
        message(idle.try_then_error(|_| true)),
        "expected the command to be rejected, but it succeeded and appended nothing"
    );

    let broken = scenario()
        .when_across(&scope, |_draft| {
            Err::<(), _>(ExecuteError::<AccountError>::Store(Error::invalid_input(
                "boom",
            )))
        })
        .await;
    assert_eq!(
        message(broken.try_then_error(|_| true)),
        "the command failed in the store, not by a business rule: invalid input: boom"
    );
}

// ---------------------------------------------------------------- fixtures and assertions

#[test]
fn fixtures_seed_the_memory_store_in_one_call() {
    let store = MemoryEventStore::new();
    let fixture = Fixture::new()
        .with_ids(Ids::seeded(9))
        .with_metadata(Metadata::new().with_correlation_id("test-1"))
        .stream::<Account>("a", [opened()])
        .stream_of::<Account>("b", 100, |i| Deposited { amount: i as u64 })
        .stream::<Account>("a", [Closed]);
    assert_eq!(fixture.len(), 102);
    assert_eq!(fixture.streams().count(), 2);
    store.seed(fixture.request().unwrap()).unwrap();
    assert_eq!(store.len(), 102);
    let a = StreamId::new("account-a").unwrap();
    let events = store.events_of(&a);
    assert::assert_types(&events, &["Opened", "Closed"]);
    assert::assert_version(&events, 2);
    assert_eq!(
        events[0].id.to_string(),
        "00000000-0000-0009-0000-000000000001"
    );
    assert_eq!(events[0].metadata.correlation_id.as_deref(), Some("test-1"));
    // Seeding twice is the same as appending twice: ids already stored are not
    // stored again.
    store.seed(fixture.request().unwrap()).unwrap();
    assert_eq!(store.len(), 102);

    let recorded = Fixture::new()
        .stream::<Account>("a", [opened(), Closed])
        .recorded(&Clock::new())
        .unwrap();
    assert_eq!(recorded[1].version, 2);
    assert_eq!(
        recorded[1].recorded_at.to_string(),
        "2026-01-01T00:00:01.000000Z"
    );

    assert_eq!(store.all_events()[2].stream_id.as_str(), "account-b");
    store.reset();
    assert!(store.is_empty() && store.streams().is_empty() && store.all_events().is_empty());
}

#[tokio::test]
async fn seeded_store_for_projections() {
    let seeded = StoreTest::memory()
        .given_fixture(Fixture::new().stream_of::<Account>("p", 3, |_| Deposited { amount: 1 }))
        .into_store()
        .await
        .unwrap();
    let loaded = seeded.repository().load::<Account>("p").await.unwrap();
    assert_eq!((loaded.version.get(), loaded.state.balance), (3, 3));
    assert_eq!(
        seeded
            .store()
            .stream_version(&StreamId::new("account-p").unwrap())
            .await
            .unwrap(),
        3
    );
}

#[test]
fn stream_assertion_messages() {
    let store = MemoryEventStore::new();
    let s = StreamId::new("account-a").unwrap();
    store
        .seed(
            Fixture::new()
                .stream::<Account>("a", [opened(), Deposited { amount: 5 }])
                .request()
                .unwrap(),
        )
        .unwrap();
    let events = store.events_of(&s);
    assert::assert_any::<AccountEvent>(&events, "a deposit", |e| matches!(e, Deposited { .. }));
    assert::assert_events(
        &events,
        &[opened(), Deposited { amount: 5 }],
        &Upcasters::new(),
    );
    assert_eq!(
        message(check_types(&events, &["Opened"])),
        "event types differ at events[1]: expected no event, found `Deposited.v1`\n\
         expected: [Opened]\n\
         found:    [Opened.v2, Deposited.v1]"
    );
    assert_eq!(
        message(check_types(&events, &["Opened.v1", "Deposited", "Closed"])),
        "event types differ at events[0]: expected `Opened.v1`, found `Opened.v2`\n\
         expected: [Opened.v1, Deposited, Closed]\n\
         found:    [Opened.v2, Deposited.v1]"
    );
    assert_eq!(
        message(check_types(&events[..1], &["Opened", "Closed"])),
        "event types differ at events[1]: expected `Closed`, found no event\n\
         expected: [Opened, Closed]\n\
         found:    [Opened.v2]"
    );
    assert_eq!(
        message(check_version(&events, 3)),
        "expected the stream `account-a` at version 3, found version 2 (2 events)"
    );
    assert_eq!(
        message(check_version(&[], 1)),
        "expected the stream at version 1, found version 0 (0 events)"
    );
    assert_eq!(
        message(check_any::<AccountEvent>(
            &events,
            "a withdrawal",
            |e| matches!(e, Withdrawn { .. })
        )),
        "no event is a withdrawal; found 2 events: [Opened.v2, Deposited.v1]"
    );
    assert_eq!(
        message(check_events(
            &events,
            &[opened(), Deposited { amount: 6 }],
            &Upcasters::new()
        )),
        "the stored events differ from the expected ones:\n  \
         events[1] Deposited: field `amount`: expected 6, found 5\n\
         expected 2 events: [Opened, Deposited]\n\
         found    2 events: [Opened, Deposited]"
    );
    let raw = StreamId::new("account-raw").unwrap();
    store
        .seed(AppendRequest::new().append(
            &raw,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Opened.v1", b"{}".to_vec()).with_content_type("application/json")],
        ))
        .unwrap();
    let text = message(check_events::<AccountEvent>(
        &store.events_of(&raw),
        &[],
        &Upcasters::new(),
    ));
    assert!(
        text.starts_with("event 1 (`Opened.v1`) of `account-raw` does not decode: codec error"),
        "{text}"
    );
}

// ---------------------------------------------------------------- properties

fn commands() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Open("ann")),
        (0..100_u64).prop_map(Command::Deposit),
        (0..100_u64).prop_map(Command::Withdraw),
        Just(Command::Close),
    ]
}

proptest! {
    #[test]
    fn replaying_any_valid_history_gives_the_same_state(history in histories::<Account, _>(commands(), 30)) {
        prop_assert!(check_replay::<Account>(&history).is_ok());
    }

    #[test]
    fn events_from_json_shapes(event in events_from_json::<AccountEvent>(
        (0..3_u64).prop_map(|n| json!({"Deposited": {"amount": n}}))
    )) {
        let small = matches!(event, Deposited { amount } if amount < 3);
        prop_assert!(small);
    }
}

#[test]
fn valid_histories_replay() {
    assert_replay::<Account>(&[opened(), Deposited { amount: 3 }, Withdrawn { amount: 1 }]);
}

/// An aggregate whose snapshot loses a field: the property catches it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Forgetful {
    #[serde(skip_deserializing)]
    seen: u32,
}

impl Aggregate for Forgetful {
    type Event = AccountEvent;
    type Command = ();
    type Error = AccountError;
    const CATEGORY: &'static str = "forgetful";
    fn apply(&mut self, _: &AccountEvent) {
        self.seen += 1;
    }
    fn handle(&self, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(vec![])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Shouting {
    Said {
        #[serde(deserialize_with = "upper")]
        text: String,
    },
    Refused {
        #[serde(deserialize_with = "refuse")]
        n: u32,
    },
}

fn refuse<'de, D: serde::Deserializer<'de>>(_: D) -> Result<u32, D::Error> {
    Err(serde::de::Error::custom("refused"))
}

/// Another aggregate on the `account` category, with other events.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Impostor;

impl Aggregate for Impostor {
    type Event = Shouting;
    type Command = ();
    type Error = AccountError;
    const CATEGORY: &'static str = "account";
    fn apply(&mut self, _: &Shouting) {}
    fn handle(&self, _: &()) -> Result<Vec<Shouting>, AccountError> {
        Ok(vec![])
    }
}

/// A state that never reads back from a snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stubborn {
    #[serde(deserialize_with = "refuse")]
    n: u32,
}

impl Aggregate for Stubborn {
    type Event = AccountEvent;
    type Command = ();
    type Error = AccountError;
    const CATEGORY: &'static str = "stubborn";
    fn apply(&mut self, _: &AccountEvent) {}
    fn handle(&self, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(vec![])
    }
}
impl DomainEvent for Shouting {}

fn upper<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| s.to_uppercase())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Listener;

impl Aggregate for Listener {
    type Event = Shouting;
    type Command = ();
    type Error = AccountError;
    const CATEGORY: &'static str = "listener";
    fn apply(&mut self, _: &Shouting) {}
    fn handle(&self, _: &()) -> Result<Vec<Shouting>, AccountError> {
        Ok(vec![])
    }
}

#[test]
fn replay_failure_messages() {
    assert_eq!(
        message(check_replay::<Forgetful>(&[Closed, Closed])),
        "replaying from a snapshot at version 1 gives another state than replaying all 2 events:\n  \
         state: field `seen`: expected 2, found 1"
    );
    assert_eq!(
        message(check_replay::<Listener>(&[Shouting::Said {
            text: "hi".into()
        }])),
        "events[0] changes on its way through the store:\n  \
         events[0] Said: field `text`: expected \"hi\", found \"HI\""
    );
    let text = message(check_replay::<Listener>(&[Shouting::Refused { n: 1 }]));
    assert!(
        text.starts_with("events[0] does not decode from its stored form: codec error"),
        "{text}"
    );
    assert_eq!(
        message(check_replay::<Stubborn>(&[])),
        "the state at version 0 does not read back from its snapshot: refused at line 1 column 5"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_same_scenario_on_a_sqlite_file() {
    StoreTest::sqlite()
        .await
        .unwrap()
        .with_upcasters(upcasters())
        .given_raw::<Account>("a", "Opened.v1", &json!({"owner": "old"}))
        .given_stored::<Account>("a", [Deposited { amount: 10 }])
        .given_snapshot::<Account>("a", 2)
        .when::<Account>("a", &Command::Withdraw(4))
        .await
        .then_loaded_from_snapshot(2)
        .then_expect(&[Withdrawn { amount: 4 }])
        .then_state(|a| a.currency == "EUR" && a.balance == 6);
}
