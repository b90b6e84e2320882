//! Compile-time proof that every public future of `annals-fs` is `Send`.

#![allow(dead_code)]

use crate::{Choice, FsEventStore};

fn is_send<T: Send>(_: T) {}

fn store_futures_are_send(store: &FsEventStore, choice: Choice) {
    is_send(FsEventStore::open("root"));
    is_send(FsEventStore::open_read_only("root"));
    is_send(store.refresh());
    is_send(store.status());
    is_send(store.forks());
    is_send(store.reconcile("fork", choice));
}
