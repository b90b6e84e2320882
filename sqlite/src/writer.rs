//! The single writer: one rusqlite connection owned by a dedicated thread, fed by a
//! channel.
//!
//! SQLite allows one writer per database. Every append and snapshot write of a store
//! is a job sent to its writer thread, which runs the jobs in arrival order on its
//! own connection, so in-process writers never contend for SQLite's lock and never
//! see `SQLITE_BUSY` (only another process can make a write wait, for at most the
//! busy timeout). The thread talks to SQLite directly (rusqlite, cached prepared
//! statements): no per-statement hand-off to a driver worker, no async hop per
//! statement, one hop per append.
//!
//! **Group commit.** When the thread becomes free it takes the next job and every
//! append already queued behind it (at most [`SqliteOptions::max_group`] appends and
//! about [`SqliteOptions::max_group_bytes`] of payload) and runs them in one
//! transaction, each in its own `SAVEPOINT` (see `append.rs`). It never waits for
//! company: a lone appender's transaction starts as soon as it arrives. The group is
//! acknowledged after its `COMMIT`; one `fsync` then covers every append in it.
//!
//! A job whose caller went away before the job started (a cancelled append) is
//! skipped; once started, a job runs to its end whatever its caller does, so an
//! append is all or nothing and the connection is never left mid-statement.
//!
//! [`SqliteOptions::max_group`]: crate::SqliteOptions::max_group
//! [`SqliteOptions::max_group_bytes`]: crate::SqliteOptions::max_group_bytes

use std::{
    path::PathBuf,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rusqlite::{Connection, OpenFlags};
use sqlx::{pool::PoolConnection, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::{
    append, error::map_sqlx, options::Synchronous, sql::Statements, Committed, Error,
    PreparedAppend, Result, SqliteOptions,
};

/// What the writer connection opens.
#[derive(Debug)]
pub(crate) enum Target {
    /// The database file (already created and migrated).
    File(PathBuf),
    /// A named shared-cache in-memory database. Its connections cannot wait for each
    /// other's table locks, so every write takes the store's only sqlx connection
    /// (`turn`, which reads also take) for as long as it runs; `anchor` keeps the
    /// database alive for the store's lifetime.
    Memory {
        uri: String,
        turn: SqlitePool,
        anchor: std::sync::Mutex<SqliteConnection>,
    },
}

/// A snapshot write, run on the writer connection.
#[derive(Debug)]
pub(crate) enum SnapshotWrite {
    /// Upsert unless the stored one is newer.
    Put {
        stream: String,
        version: i64,
        content_type: String,
        schema_version: i64,
        state: Vec<u8>,
    },
    /// Delete the stream's snapshot.
    Delete { stream: String },
}

/// One append waiting for (or in) a group.
pub(crate) struct Member {
    pub(crate) append: PreparedAppend,
    pub(crate) reply: oneshot::Sender<Result<Committed>>,
    deadline: Instant,
    bytes: usize,
    turn: Option<PoolConnection<Sqlite>>,
}

enum Job {
    Append(Member),
    Snapshot {
        write: SnapshotWrite,
        reply: oneshot::Sender<Result<()>>,
        deadline: Instant,
        turn: Option<PoolConnection<Sqlite>>,
    },
    /// The caller's own work on the writer connection (see `outbox.rs`): it
    /// opens, ends and answers its transaction itself.
    Work {
        run: Work,
        deadline: Instant,
        turn: Option<PoolConnection<Sqlite>>,
    },
    Close(oneshot::Sender<()>),
}

/// The caller's work, given the writer connection, or why it cannot have it
/// (waited past the acquire timeout, the connection could not be opened).
pub(crate) type Work = Box<dyn for<'c> FnOnce(Result<&'c mut Connection>) + Send>;

/// The store's writer: the channel to its thread.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    turn: Option<SqlitePool>,
    timeout: Duration,
    /// Keeps an in-memory database alive (see [`Target::Memory`]).
    _anchor: Option<std::sync::Mutex<SqliteConnection>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Append(_) => "Job::Append",
            Job::Snapshot { .. } => "Job::Snapshot",
            Job::Work { .. } => "Job::Work",
            Job::Close(_) => "Job::Close",
        })
    }
}

/// How the writer thread opens and uses its connection.
struct Settings {
    path: String,
    flags: OpenFlags,
    synchronous: Option<Synchronous>,
    busy_timeout: Duration,
    acquire_timeout: Duration,
    statement_cache_capacity: usize,
    max_group: usize,
    max_group_bytes: usize,
    /// The store's statements (its table prefix applied).
    sql: Arc<Statements>,
    runtime: tokio::runtime::Handle,
}

fn closed() -> Error {
    Error::backend("writing to the store", "the store is closed")
}

impl Writer {
    /// Opens the writer connection and starts its thread, which runs `sql`.
    pub(crate) async fn start(
        target: Target,
        options: &SqliteOptions,
        sql: Arc<Statements>,
    ) -> Result<Writer> {
        let base = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let (path, flags, synchronous, turn, anchor) = match target {
            Target::File(path) => (
                path.to_str()
                    .ok_or_else(|| {
                        Error::invalid_input(format!(
                            "database path `{}` is not valid UTF-8",
                            path.display()
                        ))
                    })?
                    .to_owned(),
                base | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE,
                Some(options.synchronous),
                None,
                None,
            ),
            Target::Memory { uri, turn, anchor } => (
                uri,
                base | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_SHARED_CACHE,
                None,
                Some(turn),
                Some(anchor),
            ),
        };
        let settings = Settings {
            path,
            flags,
            synchronous,
            busy_timeout: options.busy_timeout,
            acquire_timeout: options.acquire_timeout,
            statement_cache_capacity: options.statement_cache_capacity,
            max_group: options.max_group.max(1),
            max_group_bytes: options.max_group_bytes,
            sql,
            runtime: tokio::runtime::Handle::current(),
        };
        let (settings, conn) = tokio::task::spawn_blocking(move || {
            let conn = settings.open();
            (settings, conn)
        })
        .await
        .map_err(|e| Error::backend("opening the writer connection", e))?;
        let conn = conn.map_err(|e| Error::backend("opening the writer connection", e))?;
        let (jobs, receiver) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("annals-sqlite-writer".into())
            .spawn(move || run(&settings, Some(conn), receiver))
            .map_err(|e| Error::backend("starting the writer thread", e))?;
        Ok(Writer {
            jobs,
            thread: std::sync::Mutex::new(Some(thread)),
            turn,
            timeout: options.acquire_timeout,
            _anchor: anchor,
        })
    }

    /// For an in-memory store: the turn a write holds while it runs.
    async fn turn(&self) -> Result<Option<PoolConnection<Sqlite>>> {
        match &self.turn {
            None => Ok(None),
            Some(pool) => pool
                .acquire()
                .await
                .map(Some)
                .map_err(map_sqlx("waiting for the writer", self.timeout)),
        }
    }

    /// Commits `append` (alone or in a group) and returns what it stored.
    pub(crate) async fn append(&self, append: PreparedAppend) -> Result<Committed> {
        let turn = self.turn().await?;
        let bytes = append
            .parts()
            .iter()
            .flat_map(|part| part.events())
            .map(|event| event.payload.len())
            .sum();
        let (reply, answer) = oneshot::channel();
        let member = Member {
            append,
            reply,
            deadline: Instant::now() + self.timeout,
            bytes,
            turn,
        };
        self.jobs.send(Job::Append(member)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs a snapshot write.
    pub(crate) async fn snapshot(&self, write: SnapshotWrite) -> Result<()> {
        let turn = self.turn().await?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Snapshot {
                write,
                reply,
                deadline: Instant::now() + self.timeout,
                turn,
            })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `run` on the writer connection, in turn with every other write (or
    /// hands it the error: waited longer than the acquire timeout, no connection).
    pub(crate) async fn work(&self, run: Work) -> Result<()> {
        let turn = self.turn().await?;
        self.jobs
            .send(Job::Work {
                run,
                deadline: Instant::now() + self.timeout,
                turn,
            })
            .map_err(|_| closed())
    }

    /// Runs the writes queued so far, then closes the writer connection and stops
    /// the thread; later writes fail.
    pub(crate) async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Job::Close(reply)).is_ok() {
            let _ = done.await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The thread ends when the channel closes; wait for it so that dropping the
        // last clone of a store has closed its file.
        let (jobs, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.jobs, jobs));
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Settings {
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(&self.path, self.flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Every append runs in a savepoint (one per group member), and SQLite keeps
        // the original of each page a savepoint changes in a sub-journal, spilled
        // to a temporary file past 64 KiB: an append whose events touch many index
        // pages (random caller ids, many subjects) wrote every such page to disk
        // once more. In memory it costs at most one copy of the pages one request
        // changes. 100-event appends: +20–40% (docs/performance.md).
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        match self.synchronous {
            Some(Synchronous::Normal) => conn.pragma_update(None, "synchronous", "NORMAL")?,
            Some(Synchronous::Full) => conn.pragma_update(None, "synchronous", "FULL")?,
            None => {}
        }
        conn.set_prepared_statement_cache_capacity(self.statement_cache_capacity);
        Ok(conn)
    }

    /// Gives an in-memory store's turn back (returning a pooled sqlx connection
    /// needs the runtime).
    fn release(&self, turn: Option<PoolConnection<Sqlite>>) {
        if let Some(turn) = turn {
            let _runtime = self.runtime.enter();
            drop(turn);
        }
    }
}

/// The writer thread: runs jobs until the channel closes or `close` asks it to stop.
fn run(settings: &Settings, mut conn: Option<Connection>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut held: Option<Job> = None;
    loop {
        let job = match held.take() {
            Some(job) => job,
            None => match jobs.blocking_recv() {
                Some(job) => job,
                None => break,
            },
        };
        match job {
            Job::Close(done) => {
                drop(conn.take());
                jobs.close();
                let _ = done.send(());
                break;
            }
            Job::Snapshot {
                write,
                reply,
                deadline,
                turn,
            } => {
                if !reply.is_closed() {
                    let result = if Instant::now() > deadline {
                        Err(Error::Timeout(settings.acquire_timeout))
                    } else {
                        with_conn(settings, &mut conn, |c| snapshot(c, &settings.sql, &write))
                    };
                    let _ = reply.send(result);
                }
                settings.release(turn);
            }
            Job::Work {
                run,
                deadline,
                turn,
            } => {
                if Instant::now() > deadline {
                    run(Err(Error::Timeout(settings.acquire_timeout)));
                } else {
                    match connection(settings, &mut conn) {
                        Ok(c) => {
                            run(Ok(&mut *c));
                            if !c.is_autocommit() {
                                // Left inside a transaction: closing rolls it back.
                                conn = None;
                            }
                        }
                        Err(e) => run(Err(Error::backend(
                            "opening the writer connection",
                            e.to_string(),
                        ))),
                    }
                }
                settings.release(turn);
            }
            Job::Append(first) => {
                let mut bytes = first.bytes;
                let mut group = vec![first];
                while group.len() < settings.max_group && bytes < settings.max_group_bytes {
                    match jobs.try_recv() {
                        Ok(Job::Append(member)) => {
                            bytes = bytes.saturating_add(member.bytes);
                            group.push(member);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut turns = Vec::new();
                let mut live = Vec::with_capacity(group.len());
                let now = Instant::now();
                for mut member in group {
                    turns.push(member.turn.take());
                    if member.reply.is_closed() {
                        // Cancelled before it started: nothing written, nobody to tell.
                        continue;
                    }
                    if now > member.deadline {
                        // Waited longer than the acquire timeout; never started.
                        let _ = member
                            .reply
                            .send(Err(Error::Timeout(settings.acquire_timeout)));
                        continue;
                    }
                    live.push(member);
                }
                if !live.is_empty() {
                    match connection(settings, &mut conn) {
                        Ok(c) => {
                            if append::run_group(c, &settings.sql, live) {
                                // The transaction could not be ended: start afresh.
                                conn = None;
                            }
                        }
                        Err(e) => {
                            for member in live {
                                let _ = member.reply.send(Err(Error::backend(
                                    "opening the writer connection",
                                    e.to_string(),
                                )));
                            }
                        }
                    }
                }
                for turn in turns {
                    settings.release(turn);
                }
            }
        }
    }
}

/// The open writer connection, reopened if a failure discarded it.
fn connection<'c>(
    settings: &Settings,
    conn: &'c mut Option<Connection>,
) -> rusqlite::Result<&'c mut Connection> {
    if conn.is_none() {
        *conn = Some(settings.open()?);
    }
    match conn.as_mut() {
        Some(c) => Ok(c),
        None => Err(rusqlite::Error::InvalidQuery),
    }
}

/// Runs `write` on the connection; discards the connection if it is left inside a
/// transaction.
fn with_conn<T>(
    settings: &Settings,
    conn: &mut Option<Connection>,
    write: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let c = connection(settings, conn)
        .map_err(|e| Error::backend("opening the writer connection", e))?;
    let result = write(c);
    if !c.is_autocommit() {
        *conn = None;
    }
    result
}

fn snapshot(conn: &Connection, sql: &Statements, write: &SnapshotWrite) -> Result<()> {
    match write {
        SnapshotWrite::Put {
            stream,
            version,
            content_type,
            schema_version,
            state,
        } => conn
            .prepare_cached(&sql.put_snapshot)
            .and_then(|mut s| {
                s.execute(rusqlite::params![
                    stream,
                    version,
                    content_type,
                    schema_version,
                    state
                ])
            })
            .map_err(|e| Error::backend("saving a snapshot", e))?,
        SnapshotWrite::Delete { stream } => conn
            .prepare_cached(&sql.delete_snapshot)
            .and_then(|mut s| s.execute([stream]))
            .map_err(|e| Error::backend("deleting a snapshot", e))?,
    };
    Ok(())
}
