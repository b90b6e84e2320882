//! [`Fixture`]: a store under test plus how to clean up after it.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc};

use annals_core::EventStore;
use futures::{future::BoxFuture, FutureExt};

/// A fresh store for one conformance case, and an optional teardown.
pub struct Fixture {
    store: Arc<dyn EventStore>,
    teardown: Option<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("teardown", &self.teardown.is_some())
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// Wraps a fresh, empty store.
    pub fn new(store: impl EventStore + 'static) -> Self {
        Fixture {
            store: Arc::new(store),
            teardown: None,
        }
    }

    /// Wraps a store that is already shared.
    pub fn from_arc(store: Arc<dyn EventStore>) -> Self {
        Fixture {
            store,
            teardown: None,
        }
    }

    /// Runs `teardown` after the case, whether it passed or failed.
    #[must_use]
    pub fn with_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(teardown.boxed());
        self
    }

    /// The store under test.
    pub fn store(&self) -> Arc<dyn EventStore> {
        Arc::clone(&self.store)
    }
}

/// Builds a fixture, runs one case on its store, runs the teardown (also when the
/// case panicked), then re-raises the case's panic.
pub async fn run_case<S, C, Fut>(setup: S, case: C)
where
    S: Future<Output = Fixture>,
    C: FnOnce(Arc<dyn EventStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let fixture = setup.await;
    let outcome = AssertUnwindSafe(case(fixture.store())).catch_unwind().await;
    let Fixture { store, teardown } = fixture;
    drop(store);
    if let Some(teardown) = teardown {
        teardown.await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
