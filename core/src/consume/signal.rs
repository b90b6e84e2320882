//! [`AppendSignal`]: how a backend wakes the subscriptions of its own process the
//! moment an append commits, instead of leaving them to their next poll.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll, Waker},
};

/// A wake-up call for subscribers: "something was appended".
///
/// A backend keeps one, calls [`notify`](AppendSignal::notify) after every commit
/// and hands clones out through
/// [`EventStore::append_signal`](crate::EventStore::append_signal). A caught-up
/// [`Subscription`](super::Subscription) waits for the signal *or* its idle poll,
/// whichever comes first. The signal is only a hint: a subscriber always reads
/// to find out what is new, and keeps polling, so appends the signal cannot see
/// (another process writing the same database) are still delivered.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use annals_core::consume::AppendSignal;
///
/// let signal = AppendSignal::new();
/// let seen = signal.generation();
/// let waiter = signal.clone();
/// let woken = tokio::spawn(async move { waiter.changed(seen).await });
/// signal.notify();
/// woken.await.unwrap();
/// assert_eq!(signal.generation(), seen + 1);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct AppendSignal {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: AtomicU64,
    /// Tasks waiting for the next notification, at most one entry per task.
    waiting: Mutex<Vec<Waker>>,
}

impl AppendSignal {
    /// A signal nobody has notified yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many notifications there have been. Read it *before* looking for new
    /// events, then wait with [`changed`](AppendSignal::changed): a notification
    /// in between is never missed.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Wakes every task waiting in [`changed`](AppendSignal::changed).
    pub fn notify(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        let waiting = std::mem::take(
            &mut *self
                .inner
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for waker in waiting {
            waker.wake();
        }
    }

    /// Completes once the generation differs from `since` (at once if it already
    /// does).
    pub fn changed(&self, since: u64) -> Changed<'_> {
        Changed {
            signal: self,
            since,
        }
    }
}

/// The future of [`AppendSignal::changed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Changed<'a> {
    signal: &'a AppendSignal,
    since: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation() != self.since {
            return Poll::Ready(());
        }
        {
            let mut waiting = self
                .signal
                .inner
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
        }
        // A notify between the first check and the registration bumped the
        // generation before taking the lock: look again.
        if self.signal.generation() != self.since {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
