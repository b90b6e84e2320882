//! Compile-time proof that every public future of `annals-core` is `Send`, so users
//! can `tokio::spawn` them and hold them across `.await` in axum handlers. If a
//! change makes one of these futures `!Send`, this module stops compiling.
//!
//! `EventStore`'s methods return `BoxFuture`s and `BoxStream`s, which are `Send` by
//! their type; this covers the `async fn`s.

#![allow(dead_code)]

use crate::{
    codec::Codec,
    consume::{AppendSignal, Projection, Replay},
    Aggregate, EventStore, Metadata, Repository, Scope,
};

fn is_send<T: Send>(_: T) {}

fn repository_futures_are_send<S, C, A>(
    repo: &Repository<S, C>,
    command: &A::Command,
    scope: &Scope,
    stream: &crate::StreamId,
) where
    S: EventStore,
    C: Codec,
    A: Aggregate,
{
    let metadata = Metadata::new();
    is_send(Repository::load::<A>(repo, "id"));
    is_send(Repository::load_stream::<A>(repo, stream));
    is_send(Repository::execute::<A>(repo, "id", command));
    is_send(Repository::execute_with::<A>(
        repo, "id", command, &metadata,
    ));
    is_send(Repository::snapshot::<A>(repo, "id"));
    is_send(Repository::execute_across(repo, scope, |_draft| {
        Ok::<(), crate::ExecuteError<A::Error>>(())
    }));
    is_send(Repository::execute_across_with(
        repo,
        scope,
        &metadata,
        |_draft| Ok::<(), crate::ExecuteError<A::Error>>(()),
    ));
}

fn consume_futures_are_send<S, C, L>(
    store: &S,
    checkpoints: &C,
    leases: &L,
    projection: &Projection,
) where
    S: EventStore + ?Sized,
    C: crate::consume::CheckpointStore + ?Sized,
    L: crate::consume::LeaseProvider + ?Sized,
{
    is_send(Projection::run_as_leader(
        projection,
        leases,
        store,
        checkpoints,
        |_event| async { Ok::<(), std::io::Error>(()) },
    ));
    is_send(Projection::run(
        projection,
        store,
        checkpoints,
        |_event| async { Ok::<(), std::io::Error>(()) },
    ));
    is_send(crate::consume::Subscribe::subscribe_all(
        store,
        crate::consume::SubscribeAll::from_start(),
    ));
}

fn replay_futures_are_send<S: EventStore + ?Sized>(store: &S, replay: &Replay) {
    is_send(Replay::run(
        replay,
        store,
        |_event| async { Ok::<(), std::io::Error>(()) },
        |_progress| {},
    ));
}

fn signal_futures_are_send(signal: &AppendSignal) {
    // Not an `async fn`, but a public future all the same: `Changed`.
    is_send(AppendSignal::changed(signal, 0));
}
