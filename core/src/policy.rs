//! [`RetryPolicy`] and [`SnapshotPolicy`] for the [`Repository`](crate::Repository).

use std::{
    hash::{BuildHasher, Hasher},
    time::Duration,
};

/// How often [`Repository::execute`](crate::Repository::execute) tries a command
/// when another writer appended to the stream first ([`Error::Conflict`](crate::Error::Conflict)).
///
/// Each retry reloads the aggregate and decides the command again against the new
/// state, so a command is never applied on stale state. Between attempts it waits
/// an exponential backoff (`base_delay · 2^(retry-1)`, capped at `max_delay`) with
/// jitter: a random delay in `[d/2, d]`, so racing writers spread out.
///
/// The default is 3 attempts, 5 ms base delay, 100 ms cap. The waits run on a
/// single process-wide timer thread, so the policy works with any async runtime.
///
/// ```
/// use std::time::Duration;
/// use annals_core::RetryPolicy;
///
/// let policy = RetryPolicy::default().with_max_attempts(5).with_base_delay(Duration::from_millis(1));
/// assert_eq!(policy.max_attempts(), 5);
/// assert_eq!(RetryPolicy::none().max_attempts(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// One attempt: a conflict is returned to the caller at once.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Total attempts including the first (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Delay before the first retry.
    #[must_use]
    pub fn with_base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Upper bound of any one delay.
    #[must_use]
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Turns jitter on (default) or off (delays are then exactly the backoff).
    #[must_use]
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Total attempts including the first.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait before retry number `retry` (1 = first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(20);
        let backoff = self
            .base_delay
            .saturating_mul(1_u32 << exp)
            .min(self.max_delay);
        if !self.jitter || backoff.is_zero() {
            return backoff;
        }
        let half = backoff / 2;
        let span = u64::try_from((backoff - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(cheap_random() % span.saturating_add(1))
    }
}

/// A random-enough number for jitter, without a random-number dependency: the
/// standard library's randomly keyed hasher over the current time.
fn cheap_random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// When the [`Repository`](crate::Repository) saves a snapshot.
///
/// With `Every(n)`, a snapshot is saved after a successful append once at least
/// `n` events were recorded since the last snapshot (or since the start). Snapshots
/// only shorten loads: the state loaded with or without them is the same.
///
/// ```
/// use annals_core::SnapshotPolicy;
///
/// assert_eq!(SnapshotPolicy::default(), SnapshotPolicy::every(100));
/// assert_eq!(SnapshotPolicy::every(0), SnapshotPolicy::Never);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotPolicy {
    /// Never save snapshots (loads replay every event).
    Never,
    /// Save after at least this many events since the last snapshot.
    Every(std::num::NonZeroU64),
}

impl SnapshotPolicy {
    /// `Every(n)`, or `Never` for 0.
    pub fn every(n: u64) -> Self {
        std::num::NonZeroU64::new(n).map_or(SnapshotPolicy::Never, SnapshotPolicy::Every)
    }

    /// Whether to snapshot after `since_last` events without a snapshot.
    pub fn is_due(&self, since_last: u64) -> bool {
        match self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::Every(n) => since_last >= n.get(),
        }
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy::every(100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered_within_bounds() {
        let p = RetryPolicy::default()
            .with_base_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(30));
        for _ in 0..100 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(5) && d1 <= Duration::from_millis(10));
            let d5 = p.delay(5);
            assert!(d5 >= Duration::from_millis(15) && d5 <= Duration::from_millis(30));
        }
        let exact = p.with_jitter(false);
        assert_eq!(exact.delay(2), Duration::from_millis(20));
        assert_eq!(exact.delay(u32::MAX), Duration::from_millis(30));
        assert_eq!(
            RetryPolicy::default().with_max_attempts(0).max_attempts(),
            1
        );
    }

    #[test]
    fn snapshot_policy_due() {
        assert!(!SnapshotPolicy::Never.is_due(u64::MAX));
        assert!(!SnapshotPolicy::every(3).is_due(2));
        assert!(SnapshotPolicy::every(3).is_due(3));
    }
}
