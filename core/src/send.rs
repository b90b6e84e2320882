//! Compile-time proof that every public future of `annals-core` is `Send`, so users
//! can `tokio::spawn` them and hold them across `.await` in axum handlers. If a
//! change makes one of these futures `!Send`, this module stops compiling.
//!
//! `EventStore`'s methods return `BoxFuture`s and `BoxStream`s, which are `Send` by
//! their type; this covers the `async fn`s.

#![allow(dead_code)]

use crate::{codec::Codec, Aggregate, EventStore, Metadata, Repository, Scope};

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
    is_send(repo.load::<A>("id"));
    is_send(repo.load_stream::<A>(stream));
    is_send(repo.execute::<A>("id", command));
    is_send(repo.execute_with::<A>("id", command, &metadata));
    is_send(repo.snapshot::<A>("id"));
    is_send(repo.execute_across(scope, |_draft| Ok::<(), crate::ExecuteError<A::Error>>(())));
    is_send(repo.execute_across_with(scope, &metadata, |_draft| {
        Ok::<(), crate::ExecuteError<A::Error>>(())
    }));
}

fn consume_futures_are_send<S, C, L>(
    store: &S,
    checkpoints: &C,
    leases: &L,
    projection: &crate::consume::Projection,
) where
    S: EventStore + ?Sized,
    C: crate::consume::CheckpointStore + ?Sized,
    L: crate::consume::LeaseProvider + ?Sized,
{
    is_send(
        projection.run_as_leader(leases, store, checkpoints, |_event| async {
            Ok::<(), std::io::Error>(())
        }),
    );
    is_send(projection.run(store, checkpoints, |_event| async {
        Ok::<(), std::io::Error>(())
    }));
    is_send(crate::consume::Subscribe::subscribe_all(
        store,
        crate::consume::SubscribeAll::from_start(),
    ));
}

fn replay_futures_are_send<S: EventStore + ?Sized>(store: &S, replay: &crate::consume::Replay) {
    is_send(replay.run(
        store,
        |_event| async { Ok::<(), std::io::Error>(()) },
        |_progress| {},
    ));
}
