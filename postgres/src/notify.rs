//! Cross-process wake-ups: `NOTIFY` after appends, `LISTEN` for subscribers.
//!
//! A subscription waits on the store's [`AppendSignal`]. Appends made through
//! *this* store notify it directly (core does that after every write). Appends
//! made by other processes reach it through PostgreSQL: after each successful
//! append the store sends `pg_notify(channel, token)`, and the first subscriber
//! makes the store `LISTEN` on a dedicated connection and notify the signal for
//! every notification whose token is not its own.
//!
//! Notifications are only a hint, never a source of events: the subscriber reads
//! to find out what is new, keeps polling, and a notification that arrives before
//! its events are readable (held back behind an older transaction) is covered by
//! the subscription's short retries after a wake that found nothing.
//!
//! Costs are kept off the append path. `NOTIFY` is not sent inside the append's
//! transaction (PostgreSQL serialises the commits of notifying transactions on
//! one lock), but afterwards, by one background task per store that coalesces:
//! however many appends commit while a notification is in flight, one more
//! follows it. Listening uses its own connection, outside the store's pool.

use std::{
    hash::BuildHasher,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use annals_core::consume::AppendSignal;
use sqlx::{
    postgres::{PgListener, PgPoolOptions},
    PgPool,
};
use tokio::task::AbortHandle;

/// PostgreSQL's limit on a channel name (NAMEDATALEN - 1).
const MAX_CHANNEL: usize = 63;

/// The sending and listening halves of one store's notifications.
#[derive(Debug)]
pub(crate) struct Notifications {
    enabled: bool,
    /// Named prepared statements ([`crate::PostgresOptions::prepared_statements`]);
    /// without them, `NOTIFY` runs in a transaction of its own (see `session.rs`).
    prepared: bool,
    channel: String,
    /// Identifies this store's own notifications, which its listener skips
    /// (core already notified the signal for them).
    token: String,
    /// A notification is wanted that no running send has covered yet.
    pending: AtomicBool,
    /// The sending task is running.
    sending: AtomicBool,
    /// The listening task, started by the first subscriber.
    listener: OnceLock<Option<AbortHandle>>,
}

impl Notifications {
    pub(crate) fn new(schema: &str, prefix: &str, enabled: bool, prepared: bool) -> Self {
        let token = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Self {
            enabled,
            prepared,
            channel: channel(schema, prefix),
            token: format!("{token:016x}"),
            pending: AtomicBool::new(false),
            sending: AtomicBool::new(false),
            listener: OnceLock::new(),
        }
    }

    /// Called after every successful append: makes sure a `NOTIFY` follows it.
    pub(crate) fn appended(self: &Arc<Self>, pool: &PgPool) {
        if !self.enabled {
            return;
        }
        self.pending.store(true, Ordering::SeqCst);
        if self.sending.swap(true, Ordering::SeqCst) {
            return; // the running task sends again after its current notification
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sending.store(false, Ordering::SeqCst);
            return;
        };
        let this = Arc::clone(self);
        let pool = pool.clone();
        runtime.spawn(async move {
            loop {
                this.pending.store(false, Ordering::SeqCst);
                this.send(&pool).await;
                if this.pending.load(Ordering::SeqCst) {
                    continue;
                }
                this.sending.store(false, Ordering::SeqCst);
                // An append between the load above and the store just made saw
                // `sending` still set and left the work to us: take it back.
                if !this.pending.load(Ordering::SeqCst) || this.sending.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }

    async fn send(&self, pool: &PgPool) {
        let notify = sqlx::query("SELECT pg_notify($1, $2)")
            .persistent(self.prepared)
            .bind(&self.channel)
            .bind(&self.token);
        let sent = if self.prepared {
            notify.execute(pool).await.map(drop)
        } else {
            match pool.begin().await {
                Ok(mut tx) => match notify.execute(&mut *tx).await {
                    Ok(_) => tx.commit().await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        if let Err(error) = sent {
            // A hint lost: subscribers elsewhere find the events at their next poll.
            tracing::debug!(%error, channel = %self.channel, "annals-postgres: NOTIFY failed");
        }
    }

    /// The channel to `NOTIFY` from inside a caller's transaction
    /// (`outbox.rs`), if notifications are on.
    pub(crate) fn channel_if_enabled(&self) -> Option<&str> {
        self.enabled.then_some(self.channel.as_str())
    }

    /// Starts listening (once) so that other processes' appends notify `signal`.
    pub(crate) fn listen(&self, pool: &PgPool, signal: &AppendSignal) {
        if !self.enabled {
            return;
        }
        self.listener.get_or_init(|| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            // Its own one-connection pool: the listener holds its connection for
            // as long as the store lives, which must not cost the store a slot.
            let own = PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_lazy_with((*pool.connect_options()).clone());
            let task = listen(
                own,
                self.channel.clone(),
                self.token.clone(),
                signal.clone(),
            );
            Some(runtime.spawn(task).abort_handle())
        });
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        if let Some(Some(task)) = self.listener.get() {
            task.abort();
        }
    }
}

/// The channel of a store: `annals.<schema>`, or `annals.<schema>.<prefix>`
/// with a table prefix (a schema name has no `.`, so the two kinds never
/// collide), or a hash of that name when it would be longer than PostgreSQL
/// allows.
fn channel(schema: &str, prefix: &str) -> String {
    let name = if prefix.is_empty() {
        schema.to_owned()
    } else {
        format!("{schema}.{prefix}")
    };
    let plain = format!("annals.{name}");
    if plain.len() <= MAX_CHANNEL {
        return plain;
    }
    // FNV-1a: stable across processes and versions (unlike std's hasher).
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("annals.{hash:016x}")
}

/// Listens until aborted, reconnecting with backoff. Every *re*connection
/// notifies the signal once, for whatever was appended while it was not
/// listening. (The first connection does not: subscribers started by reading.)
async fn listen(pool: PgPool, channel: String, token: String, signal: AppendSignal) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(&channel).await {
                Ok(()) => {
                    tracing::debug!(%channel, "annals-postgres: listening for appends");
                    backoff = Duration::from_millis(100);
                    if !std::mem::replace(&mut first, false) {
                        signal.notify();
                    }
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(note)) if note.payload() == token => {}
                            // Another process appended, or the connection was lost
                            // and remade (appends in between went unheard).
                            Ok(_) => signal.notify(),
                            Err(error) => {
                                tracing::debug!(%error, "annals-postgres: LISTEN connection failed");
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, "annals-postgres: LISTEN failed"),
            },
            Err(error) => tracing::debug!(%error, "annals-postgres: connecting to LISTEN failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::channel;

    #[test]
    fn channels_fit_postgres_limit() {
        assert_eq!(channel("annals", ""), "annals.annals");
        let long = "s".repeat(63);
        let hashed = channel(&long, "");
        assert!(hashed.len() <= super::MAX_CHANNEL, "{hashed}");
        assert_eq!(hashed, channel(&long, ""), "stable");
        assert_ne!(hashed, channel(&"t".repeat(63), ""));
    }

    #[test]
    fn each_prefix_has_its_own_channel() {
        assert_eq!(channel("annals", "two_"), "annals.annals.two_");
        assert_ne!(channel("annals", "two_"), channel("annals", "one_"));
        assert_ne!(channel("annals", "two_"), channel("annals", ""));
        let long = "s".repeat(63);
        let hashed = channel(&long, "two_");
        assert!(hashed.len() <= super::MAX_CHANNEL, "{hashed}");
        assert_ne!(hashed, channel(&long, ""));
        assert_ne!(hashed, channel(&long, "one_"));
    }
}
