//! One process-wide timer thread for retry backoff.
//!
//! Core must not tie itself to one async runtime, and must not start a thread per
//! wait either. So the first [`sleep`] starts a single thread that keeps every
//! pending deadline in a heap and wakes each waiting task when its time comes; the
//! thread stays for the life of the process and is idle (parked on a condition
//! variable) when nothing waits.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    pin::Pin,
    sync::{Arc, Condvar, Mutex, OnceLock, PoisonError},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

struct Entry {
    deadline: Instant,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.deadline.cmp(&other.deadline)
    }
}

#[derive(Default)]
struct Timer {
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

impl Timer {
    /// The shared timer, starting its thread on first use; `None` if no thread could
    /// be started (then sleeps return at once: a retry without backoff is still
    /// correct).
    fn get() -> Option<&'static Arc<Timer>> {
        static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();
        TIMER
            .get_or_init(|| {
                let timer = Arc::new(Timer::default());
                let worker = Arc::clone(&timer);
                std::thread::Builder::new()
                    .name("annals-timer".into())
                    .spawn(move || worker.run())
                    .ok()
                    .map(|_| timer)
            })
            .as_ref()
    }

    fn run(&self) {
        let mut heap = self.heap.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
                if let Some(Reverse(entry)) = heap.pop() {
                    entry.waker.wake();
                }
            }
            heap = match heap.peek().map(|Reverse(e)| e.deadline) {
                Some(next) => {
                    let wait = next.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(heap, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(heap)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    fn register(&self, deadline: Instant, waker: Waker) {
        let mut heap = self.heap.lock().unwrap_or_else(PoisonError::into_inner);
        heap.push(Reverse(Entry { deadline, waker }));
        self.changed.notify_one();
    }
}

/// A future that completes once `delay` has passed, on any executor.
pub(crate) fn sleep(delay: Duration) -> Sleep {
    Sleep {
        deadline: Instant::now().checked_add(delay),
    }
}

/// See [`sleep`].
pub(crate) struct Sleep {
    /// `None` when the delay is too large to represent: returns at once.
    deadline: Option<Instant>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline else {
            return Poll::Ready(());
        };
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        let Some(timer) = Timer::get() else {
            return Poll::Ready(());
        };
        // Register on every poll that is not yet due: a spurious poll (or a new
        // waker) gets a fresh entry; stale entries only cause a harmless wake.
        timer.register(deadline, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn many_sleeps_share_one_thread_and_all_finish() {
        let started = Instant::now();
        futures::future::join_all((0..200).map(|i| sleep(Duration::from_millis(i % 20)))).await;
        assert!(started.elapsed() >= Duration::from_millis(19));
        sleep(Duration::ZERO).await;
        sleep(Duration::MAX).await;
    }
}
