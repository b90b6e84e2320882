//! Compile-time proof that every public future of `annals-fs` is `Send`.

#![allow(dead_code)]

use crate::{Choice, FsEventStore};

fn is_send<T: Send>(_: T) {}

fn store_futures_are_send(store: &FsEventStore, choice: Choice) {
    is_send(FsEventStore::open("root"));
    is_send(FsEventStore::open_read_only("root"));
    is_send(FsEventStore::refresh(store));
    is_send(FsEventStore::status(store));
    is_send(FsEventStore::forks(store));
    is_send(FsEventStore::reconcile(store, "fork", choice));
}
