//! [`PostgresLeases`]: leader leases as session advisory locks, each on a
//! dedicated connection kept alive for as long as the lease is held.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use annals_core::{
    consume::{check_checkpoint_name, traced, ConsumeOp, Lease, LeaseProvider},
    Error, Result,
};
use futures::future::BoxFuture;
use sqlx::{Connection, PgConnection};

use crate::{error::bounded, PostgresEventStore};

/// How often a waiting instance tries to take the lease.
const RETRY: Duration = Duration::from_millis(250);
/// How often the holder checks that its connection (and so its lock) is alive.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The lock key: 64 bits of md5(schema/name), or md5(schema.prefix/name) with a
/// table prefix, so stores in different schemas of one database or with
/// different prefixes, and different names, never share a lock. (A schema name
/// has no `.` and a prefix no `/`, so the keys of different stores differ.)
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(('x' || left(md5($1), 16))::bit(64)::bigint)";

/// Leader leases for the consumers of one store: a session-level advisory lock
/// per name, held on a dedicated connection (not one of the pool's).
///
/// A waiting instance retries every 250 ms. When the holder's process dies,
/// even by SIGKILL, its connection closes and PostgreSQL releases the lock, so a
/// waiter takes over within about a quarter of a second of the server noticing.
/// The holder pings its connection every second; if the connection breaks, the
/// lock is gone with it and the [`Lease`] reports itself lost.
///
/// ```no_run
/// use annals_postgres::{consume::{MemoryCheckpoints, Projection}, PostgresEventStore};
/// # async fn demo(store: PostgresEventStore) -> Result<(), Box<dyn std::error::Error>> {
/// let report = Projection::new("orders-by-status")
///     .run_as_leader(&store.leases(), &store, &store.checkpoints(), |event| {
///         let kind = event.event_type.clone();
///         async move { println!("{kind}"); Ok::<(), std::io::Error>(()) }
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresLeases {
    store: PostgresEventStore,
}

impl PostgresEventStore {
    /// Leader leases in this store's database (see [`PostgresLeases`]).
    pub fn leases(&self) -> PostgresLeases {
        PostgresLeases {
            store: self.clone(),
        }
    }
}

/// Keeps the lease's connection alive; dropping it closes the connection,
/// which releases the lock.
struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LeaseProvider for PostgresLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        traced(ConsumeOp::LeaseAcquire, "postgres", name, async move {
            check_checkpoint_name(name)?;
            let inner = self.store.inner();
            let key = lock_key(&inner.schema, inner.queries.names().prefix.as_str(), name);
            let connect = inner.pool.connect_options();
            let mut conn = bounded(inner.options.acquire_timeout, async {
                PgConnection::connect_with(&connect)
                    .await
                    .map_err(|e| inner.map_err(e, "connecting for a leader lease"))
            })
            .await?;
            loop {
                let got: bool = bounded(inner.options.operation_timeout, async {
                    sqlx::query_scalar(TRY_LOCK)
                        .bind(&key)
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|e| inner.map_err(e, "taking a leader lease"))
                })
                .await?;
                if got {
                    break;
                }
                tokio::time::sleep(RETRY).await;
            }
            tracing::debug!(lease = name, "leader lease taken");
            let lost = Arc::new(AtomicBool::new(false));
            let keeper = tokio::spawn(keep_alive(conn, Arc::clone(&lost), name.to_owned()));
            Ok(Lease::new(name, lost, Keeper(keeper)))
        })
    }
}

/// The text whose md5 is the lock key (see [`TRY_LOCK`]).
fn lock_key(schema: &str, prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        format!("{schema}/{name}")
    } else {
        format!("{schema}.{prefix}/{name}")
    }
}

/// Pings the lease's connection until it fails (the lease is then lost) or the
/// lease is dropped (the task is aborted, closing the connection).
async fn keep_alive(mut conn: PgConnection, lost: Arc<AtomicBool>, name: String) {
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        let alive = tokio::time::timeout(KEEPALIVE * 5, conn.ping()).await;
        if !matches!(alive, Ok(Ok(()))) {
            lost.store(true, Ordering::Release);
            let error = match alive {
                Ok(Err(e)) => Error::backend("pinging the lease connection", e).to_string(),
                _ => "no answer within 5 s".to_owned(),
            };
            tracing::warn!(lease = %name, %error, "leader lease lost: its connection broke");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_differ_per_prefix() {
        assert_eq!(lock_key("annals", "", "relay"), "annals/relay");
        assert_eq!(lock_key("annals", "two_", "relay"), "annals.two_/relay");
        assert_ne!(
            lock_key("annals", "", "two_/relay"),
            lock_key("annals", "two_", "relay")
        );
    }
}
