//! The open store: its files, the in-memory index, opening and refreshing.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::SystemTime,
};

use annals_core::{EventId, Position, RecordedEvent, StreamId, Timestamp, Version};
use uuid::Uuid;

use crate::{
    format::{self, Defect},
    ignore,
    layout::{self, Layout},
    lock::{LockError, WriterLock},
    order::{Derived, Ev, Tx},
    status::{BadFile, FileProblem},
    FsError,
};

/// An event store whose log is a folder of immutable JSON Lines files, meant to be
/// committed in a git repository and merged with `git merge`.
///
/// Clones share the same open store. See the [crate docs](crate) for the layout,
/// the order, forks and reconciling.
///
/// ```no_run
/// use annals_fs::{EventStore, ExpectedVersion, FsEventStore, NewEvent, StreamId};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = FsEventStore::open("model/history").await?;
/// let spec = StreamId::new("spec-login")?;
/// store
///     .append(&spec, ExpectedVersion::Any, vec![NewEvent::new("Drafted", br#"{"by":"ana"}"#.to_vec())])
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FsEventStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) layout: Layout,
    pub(crate) replica: String,
    pub(crate) writable: Option<WriterLock>,
    /// Serializes writes and refreshes (the state lock is only held briefly).
    pub(crate) writer: Mutex<()>,
    pub(crate) state: RwLock<State>,
    /// Wakes this process's subscriptions after its own appends.
    pub(crate) signal: annals_core::consume::AppendSignal,
}

/// The files and the index built from them.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) txs: Vec<Tx>,
    pub(crate) by_tx: HashMap<Uuid, usize>,
    /// Every file name looked at (valid or not).
    pub(crate) known: HashSet<String>,
    pub(crate) bad: Vec<BadFile>,
    pub(crate) derived: Derived,
    /// The size and modification time of every indexed (valid) file when it was
    /// read: an explicit refresh verifies again the files whose stamp changed.
    stamps: HashMap<String, Stamp>,
    /// The `events/` directory's modification time, if every file it stands for
    /// is indexed: reads skip listing the folder while it is unchanged. Only a
    /// listing sets it, and only with a time old enough that no later change can
    /// share it; an own write clears it.
    pub(crate) seen: Option<SystemTime>,
    /// The folder's modification time right after this process's last write.
    /// Only writes trust it, to skip listing before the next write: a file that
    /// arrived around that write is then found by the next read or refresh (which
    /// never trust it), not lost.
    written: Option<SystemTime>,
    streams: HashMap<String, StreamId>,
    types: HashMap<String, Arc<str>>,
}

/// A file's size and modification time when it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    /// The stamp a file has now.
    fn of(metadata: &fs::Metadata) -> Self {
        Stamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
        }
    }

    /// The stamp to record for content just read. A modification time this
    /// recent may be shared by an edit still to come (a coarse clock), so it is
    /// not recorded: the stamp then matches nothing, and the next
    /// [`FsEventStore::refresh`] verifies the file again.
    fn recorded(metadata: &fs::Metadata) -> Self {
        Stamp {
            len: metadata.len(),
            modified: metadata.modified().ok().filter(|m| old_enough(*m)),
        }
    }
}

/// What reading one file gave: its stamp (taken before reading, so an edit
/// racing the read shows as a changed stamp later) and the verified content.
pub(crate) struct Loaded {
    stamp: Option<Stamp>,
    outcome: Result<format::Decoded, FileProblem>,
}

/// Where one event is stored and what the index says about it: enough to load it.
#[derive(Clone, Debug)]
pub(crate) struct EventRef {
    pub(crate) file: Arc<str>,
    pub(crate) hash: Arc<str>,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) stream: StreamId,
    pub(crate) version: Version,
    pub(crate) position: Position,
    pub(crate) recorded_at: Timestamp,
}

impl std::fmt::Debug for FsEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.read();
        f.debug_struct("FsEventStore")
            .field("root", &self.inner.layout.root)
            .field("writable", &self.inner.writable.is_some())
            .field("transactions", &state.txs.len())
            .field("positions", &state.derived.slots.len())
            .finish()
    }
}

impl FsEventStore {
    /// Opens (creating if needed) the store rooted at `root` for reading and
    /// writing.
    ///
    /// Takes the writer lock ([`FsError::StoreLocked`] if another writer holds it),
    /// merges the store's rules into `.gitignore` and `.gitattributes`, removes stale
    /// temporary files, and indexes every file in `events/`. Files that fail their
    /// hash or cannot be parsed are reported by [`status`](Self::status) and left
    /// out; open never fails because of one.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self, FsError> {
        let root = root.as_ref().to_path_buf();
        off_runtime(move || Self::open_with(&root, true)).await?
    }

    /// Opens the store at `root` without the writer lock: reads only, alongside a
    /// writer in another process. Writes fail with [`FsError::ReadOnly`].
    pub async fn open_read_only(root: impl AsRef<Path>) -> Result<Self, FsError> {
        let root = root.as_ref().to_path_buf();
        off_runtime(move || Self::open_with(&root, false)).await?
    }

    fn open_with(root: &Path, writable: bool) -> Result<Self, FsError> {
        let layout = Layout::new(root);
        let (lock, replica) = if writable {
            for dir in [layout.events(), layout.tmp(), layout.snapshots()] {
                layout::ensure_dir(&dir)
                    .map_err(FsError::io(format!("creating {}", dir.display())))?;
            }
            let lock = match WriterLock::acquire(&layout.lock()) {
                Ok(lock) => lock,
                Err(LockError::Held) => {
                    return Err(FsError::StoreLocked {
                        root: root.to_path_buf(),
                    })
                }
                Err(LockError::Io(e)) => return Err(FsError::io("taking the writer lock")(e)),
            };
            let removed = layout::clean_tmp(&layout.tmp())
                .map_err(FsError::io("removing stale temporary files"))?;
            if removed > 0 {
                tracing::info!(removed, "annals-fs: removed stale temporary files");
            }
            ignore::merge_rules(
                &layout.root,
                &layout.tmp(),
                ".gitignore",
                ignore::GITIGNORE_RULES,
            )
            .map_err(FsError::io("merging .gitignore"))?;
            ignore::merge_rules(
                &layout.root,
                &layout.tmp(),
                ".gitattributes",
                ignore::GITATTRIBUTES_RULES,
            )
            .map_err(FsError::io("merging .gitattributes"))?;
            let replica = replica_id(&layout)?;
            (Some(lock), replica)
        } else {
            if !layout.root.is_dir() {
                return Err(FsError::Io {
                    context: format!("opening {}", root.display()),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
                });
            }
            (None, Uuid::now_v7().to_string())
        };
        let store = FsEventStore {
            inner: Arc::new(Inner {
                layout,
                replica,
                writable: lock,
                writer: Mutex::new(()),
                state: RwLock::new(State::default()),
                signal: annals_core::consume::AppendSignal::new(),
            }),
        };
        {
            let _writer = store.inner.writer();
            store.inner.refresh_locked(Look::Full)?;
        }
        Ok(store)
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// Picks up files that arrived in `events/` since the last look (a `git pull`,
    /// a `git merge`), drops files that were removed, and recomputes the order.
    ///
    /// It also looks again at every known file: one whose size or modification
    /// time changed (edited by hand while the store was open) is verified again —
    /// if it now fails its hash it is reported by [`status`](Self::status) and
    /// left out of the order — and files reported bad are retried (they may have
    /// been restored). Returns how many transaction files joined the order: new
    /// ones, and restored ones.
    ///
    /// Reads and writes pick up new and removed files by themselves when the
    /// folder changed; only this call re-checks files edited in place. A read that
    /// meets such a file before it fails with [`FsError::FileChanged`] rather than
    /// serving the edited content.
    pub async fn refresh(&self) -> Result<usize, FsError> {
        let this = self.clone();
        let span = tracing::debug_span!("annals.fs_refresh", outcome = tracing::field::Empty);
        traced(span, async move {
            off_runtime(move || {
                let _writer = this.inner.writer();
                this.inner.refresh_locked(Look::Full)
            })
            .await?
        })
        .await
    }
}

/// Runs one of the store's own operations (refresh, status, forks, reconcile)
/// in `span`, recording `outcome` (`ok` or the error's kind) when it ends, as
/// every `EventStore` operation does. Nothing but names and counts goes in.
pub(crate) async fn traced<T>(
    span: tracing::Span,
    operation: impl std::future::Future<Output = Result<T, FsError>>,
) -> Result<T, FsError> {
    let result = tracing::Instrument::instrument(operation, span.clone()).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(FsError::Forked { .. }) => "forked",
        Err(FsError::StoreLocked { .. }) => "store_locked",
        Err(_) => "error",
    };
    span.record("outcome", outcome);
    result
}

/// Runs blocking file work (reads, writes, `fsync`) on tokio's blocking threads
/// when a tokio runtime is running, so async workers are never stalled; inline
/// otherwise. The work runs to completion even if the caller's future is dropped:
/// an append is then all-or-nothing, never half-written.
pub(crate) async fn off_runtime<T, F>(work: F) -> Result<T, FsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FsError::Io {
            context: "a blocking file task failed".into(),
            source: std::io::Error::other(e.to_string()),
        })
}

/// This clone's replica id: read from `.annals/replica`, created only when that
/// file is missing. A file that cannot be read or holds no UUID is an error, never
/// silently replaced (it is written atomically, so it is never half-written).
fn replica_id(layout: &Layout) -> Result<String, FsError> {
    let path = layout.replica();
    match fs::read_to_string(&path) {
        Ok(text) => match Uuid::parse_str(text.trim()) {
            Ok(id) => Ok(id.to_string()),
            Err(_) => Err(FsError::Io {
                context: format!("reading the replica id in {}", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the file does not hold a UUID (remove it to let the store pick a new replica id)",
                ),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Uuid::now_v7().to_string();
            layout::write_durably(&layout.tmp(), &layout.local(), "replica", id.as_bytes())
                .map_err(FsError::io("writing the replica id"))?;
            Ok(id)
        }
        Err(e) => Err(FsError::io(format!(
            "reading the replica id in {}",
            path.display()
        ))(e)),
    }
}

impl Inner {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn events_mtime(&self) -> Option<SystemTime> {
        fs::metadata(self.layout.events())
            .and_then(|m| m.modified())
            .ok()
    }

    /// Refreshes if `events/` changed since it was last listed.
    pub(crate) fn refresh_if_changed(&self) -> Result<(), FsError> {
        let now = self.events_mtime();
        if now.is_some() && now == self.read().seen {
            return Ok(());
        }
        let _writer = self.writer();
        self.refresh_locked(Look::Read).map(|_| ())
    }

    /// Lists `events/` against the index, loads new files, forgets removed ones and
    /// rebuilds the order. The caller holds the writer mutex. See [`Look`] for
    /// when the listing is skipped.
    pub(crate) fn refresh_locked(&self, look: Look) -> Result<usize, FsError> {
        let force = look == Look::Full;
        let mtime = self.events_mtime();
        // A modification time this recent may be shared with a change still to
        // come (file systems stamp with a coarse clock): do not trust it later.
        let mtime_seen = mtime.filter(|m| old_enough(*m));
        if !force && mtime.is_some() {
            let state = self.read();
            if mtime == state.seen || (look == Look::Write && mtime == state.written) {
                return Ok(0);
            }
        }
        let dir = self.layout.events();
        let names = layout::list_events(&dir).map_err(FsError::io("listing events/"))?;
        let (fresh, forget) = {
            let state = self.read();
            // Files removed (a checkout of an older commit) leave the index. (If
            // every known name is listed, none was removed: no set to build.)
            let known_listed = names.iter().filter(|n| state.known.contains(*n)).count();
            let mut forget: HashSet<String> = if known_listed == state.known.len() {
                HashSet::new()
            } else {
                let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
                state
                    .known
                    .iter()
                    .filter(|k| !listed.contains(k.as_str()))
                    .cloned()
                    .collect()
            };
            let mut retry: HashSet<String> = HashSet::new();
            if force {
                // Known files edited in place since they were read: verified again.
                for (name, stamp) in &state.stamps {
                    if forget.contains(name) {
                        continue;
                    }
                    let now = fs::metadata(dir.join(name)).ok().map(|m| Stamp::of(&m));
                    if now != Some(*stamp) {
                        tracing::debug!(file = %name, "annals-fs: a known file changed on disk (or was read too recently to trust its time); verifying it again");
                        forget.insert(name.clone());
                    }
                }
            }
            if force || !forget.is_empty() {
                // Files reported bad may have been restored, or (a duplicate
                // transaction) may be valid now that the other file is gone.
                retry.extend(state.bad.iter().map(|b| b.name.clone()));
            }
            let fresh: Vec<String> = names
                .iter()
                .filter(|n| !state.known.contains(*n) || forget.contains(*n) || retry.contains(*n))
                .cloned()
                .collect();
            for name in retry {
                forget.insert(name);
            }
            (fresh, forget)
        };
        if fresh.is_empty() && forget.is_empty() && !force {
            self.write_state().seen = mtime_seen;
            return Ok(0);
        }
        let loaded = load_files(&dir, fresh, &load_file);
        let read = loaded.len();
        let mut state = self.write_state();
        let indexed: HashSet<Arc<str>> = state.txs.iter().map(|t| Arc::clone(&t.file)).collect();
        state.forget(&forget);
        for (name, loaded) in loaded {
            state.add(&name, loaded);
        }
        let count = state
            .txs
            .iter()
            .filter(|t| !indexed.contains(&t.file))
            .count();
        state.derived = Derived::rebuild(&state.txs, &state.by_tx);
        state.seen = mtime_seen;
        tracing::debug!(
            files_read = read,
            joined = count,
            files_forgotten = forget.len(),
            transactions = state.txs.len(),
            "annals-fs: refreshed"
        );
        Ok(count)
    }

    /// Adds a transaction this process just wrote and folds it (it is last in the
    /// order, so this equals a cold rebuild). Returns its first slot index.
    ///
    /// The folder's modification time after an own write is never trusted by
    /// reads: a file that arrived (a `git pull`) between the last listing and this
    /// write, in the same clock tick or not, left no trace but the time this write
    /// also set. So the next read lists the folder again. The next write may skip
    /// that listing (it could not tell such a file apart either): it is as if the
    /// file had arrived during that write, and the read after picks it up.
    pub(crate) fn add_written(&self, name: &str, bytes: &[u8]) -> Result<usize, FsError> {
        let decoded = format::decode(name, bytes).map_err(|d| {
            FsError::Encode(format!("the file just written does not decode: {d:?}"))
        })?;
        let stamp = fs::metadata(self.layout.events().join(name))
            .ok()
            .map(|m| Stamp::recorded(&m));
        let mut state = self.write_state();
        let first = state.derived.slots.len();
        let loaded = Loaded {
            stamp,
            outcome: Ok(decoded),
        };
        let Some(t) = state.add(name, loaded) else {
            return Err(FsError::Encode(
                "the file just written was not indexed".into(),
            ));
        };
        let parents: Vec<usize> = state
            .txs
            .get(t)
            .map(|tx| {
                tx.parents
                    .iter()
                    .filter_map(|p| state.by_tx.get(p).copied())
                    .filter(|&p| p != t)
                    .collect()
            })
            .unwrap_or_default();
        let State { txs, derived, .. } = &mut *state;
        derived.apply(txs, t, parents);
        state.seen = None;
        state.written = self.events_mtime();
        Ok(first)
    }
}

/// How much a refresh looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Look {
    /// Open and [`FsEventStore::refresh`]: always list, retry files reported bad,
    /// and verify again every known file whose size or modification time changed.
    Full,
    /// Before a read: list unless the folder's time is the one trusted at the last
    /// listing.
    Read,
    /// Before a write: as a read, and also skip when the folder's time is the one
    /// right after this process's last write.
    Write,
}

/// Whether a modification time is old enough that no change still to come can
/// carry the same time.
fn old_enough(mtime: SystemTime) -> bool {
    SystemTime::now()
        .duration_since(mtime)
        .is_ok_and(|age| age > std::time::Duration::from_millis(100))
}

/// Reads and verifies files with `load`, on a few threads when there are many.
/// A panic while loading one file is that file's problem, reported by name; it
/// never takes the other files (or the open) with it.
fn load_files<F>(dir: &Path, names: Vec<String>, load: &F) -> Vec<(String, Loaded)>
where
    F: Fn(&Path, &str) -> Loaded + Sync,
{
    let guarded = |name: String| {
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(dir, &name)))
            .unwrap_or_else(|_| panicked());
        (name, loaded)
    };
    // Opening is mostly waiting for the disk: more readers than cores help a cold
    // page cache.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_mul(4)
        .clamp(2, 8);
    if names.len() < 256 || threads < 2 {
        return names.into_iter().map(guarded).collect();
    }
    let chunk = names.len().div_ceil(threads);
    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut names = names.into_iter().peekable();
    while names.peek().is_some() {
        parts.push(names.by_ref().take(chunk).collect());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let names = part.clone();
                let handle = scope.spawn(move || part.into_iter().map(guarded).collect::<Vec<_>>());
                (names, handle)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(names, handle)| {
                handle
                    .join()
                    .unwrap_or_else(|_| names.into_iter().map(|name| (name, panicked())).collect())
            })
            .collect()
    })
}

fn panicked() -> Loaded {
    Loaded {
        stamp: None,
        outcome: Err(FileProblem::Unreadable(
            "loading it panicked (a bug in annals-fs)".into(),
        )),
    }
}

/// Reads and verifies one file.
fn load_file(dir: &Path, name: &str) -> Loaded {
    let failed = |problem| Loaded {
        stamp: None,
        outcome: Err(problem),
    };
    if !format::is_candidate(name) {
        return failed(FileProblem::Ignored);
    }
    let unreadable = |e: std::io::Error| FileProblem::Unreadable(e.to_string());
    let mut file = match fs::File::open(dir.join(name)) {
        Ok(file) => file,
        Err(e) => return failed(unreadable(e)),
    };
    // The stamp before the content: an edit racing this read shows later as a
    // changed stamp, never as a stamp that vouches for content not read.
    let stamp = match file.metadata() {
        Ok(m) => Stamp::recorded(&m),
        Err(e) => return failed(unreadable(e)),
    };
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
    if let Err(e) = std::io::Read::read_to_end(&mut file, &mut bytes) {
        return failed(unreadable(e));
    }
    let outcome = format::decode(name, &bytes).map_err(|defect| match defect {
        Defect::Name => FileProblem::UnrecognizedName,
        Defect::Malformed(why) => FileProblem::Malformed(why),
        Defect::HashMismatch => FileProblem::HashMismatch,
    });
    Loaded {
        stamp: Some(stamp),
        outcome,
    }
}

impl State {
    fn stream_id(&mut self, name: &str) -> Option<StreamId> {
        if let Some(id) = self.streams.get(name) {
            return Some(id.clone());
        }
        let id = StreamId::new(name).ok()?;
        self.streams.insert(name.to_owned(), id.clone());
        Some(id)
    }

    fn event_type(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.types.get(name) {
            return Arc::clone(t);
        }
        let t: Arc<str> = Arc::from(name);
        self.types.insert(name.to_owned(), Arc::clone(&t));
        t
    }

    /// Drops files from the index (removed, or to be read again). Transaction
    /// indices change: the caller rebuilds the order.
    fn forget(&mut self, names: &HashSet<String>) {
        if names.is_empty() {
            return;
        }
        self.known.retain(|k| !names.contains(k));
        self.bad.retain(|b| !names.contains(&b.name));
        self.stamps.retain(|k, _| !names.contains(k));
        let before = self.txs.len();
        self.txs.retain(|t| !names.contains(&*t.file));
        if self.txs.len() != before {
            self.by_tx = self
                .txs
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id, i))
                .collect();
        }
    }

    /// Indexes one file; returns its transaction index if it is valid.
    fn add(&mut self, name: &str, loaded: Loaded) -> Option<usize> {
        self.known.insert(name.to_owned());
        self.bad.retain(|b| b.name != name);
        let decoded = match loaded.outcome {
            Ok(decoded) => decoded,
            Err(FileProblem::Ignored) => return None,
            Err(problem) => {
                tracing::warn!(file = %name, ?problem, "annals-fs: file left out of the order");
                self.bad.push(BadFile {
                    file: PathBuf::from("events").join(name),
                    name: name.to_owned(),
                    problem,
                });
                return None;
            }
        };
        let header = decoded.header;
        let bad = |state: &mut State, problem: FileProblem| {
            tracing::warn!(file = %name, ?problem, "annals-fs: file left out of the order");
            state.bad.push(BadFile {
                file: PathBuf::from("events").join(name),
                name: name.to_owned(),
                problem,
            });
            None
        };
        let Ok(id) = Uuid::parse_str(&header.tx) else {
            return bad(self, FileProblem::Malformed("transaction id".into()));
        };
        if self.by_tx.contains_key(&id) {
            return bad(self, FileProblem::DuplicateTransaction);
        }
        let Some(created) = format::parse_timestamp(&header.created) else {
            return bad(self, FileProblem::Malformed("created time".into()));
        };
        let mut events = Vec::with_capacity(decoded.events.len());
        for e in decoded.events {
            let Some(stream) = self.stream_id(&e.stream) else {
                return bad(self, FileProblem::Malformed("invalid stream id".into()));
            };
            let event_type = self.event_type(&e.event_type);
            events.push(Ev {
                id: e.id,
                stream,
                event_type,
                offset: e.offset,
                len: e.len,
            });
        }
        // `decode` checked every parent id; a file that slipped through is
        // reported, never read with a parent dropped.
        let Ok(parents) = header
            .parents
            .iter()
            .map(|p| Uuid::parse_str(p))
            .collect::<Result<Vec<_>, _>>()
        else {
            return bad(
                self,
                FileProblem::Malformed("a parent id is not a UUID".into()),
            );
        };
        if let Some(stamp) = loaded.stamp {
            self.stamps.insert(name.to_owned(), stamp);
        }
        let t = self.txs.len();
        self.txs.push(Tx {
            file: Arc::from(name),
            hash: Arc::from(header.hash.as_str()),
            id,
            created,
            created_text: header.created,
            kind: header.kind,
            parents,
            writes: header.writes,
            resolves: header.resolves,
            events,
        });
        self.by_tx.insert(id, t);
        Some(t)
    }

    /// What loading the event in `slot` needs.
    pub(crate) fn event_ref(&self, slot: usize) -> Option<EventRef> {
        let s = self.derived.slots.get(slot)?;
        let tx = self.txs.get(s.tx)?;
        let ev = tx.events.get(s.ev)?;
        Some(EventRef {
            file: Arc::clone(&tx.file),
            hash: Arc::clone(&tx.hash),
            offset: ev.offset,
            len: ev.len,
            stream: ev.stream.clone(),
            version: Version::new(s.version),
            position: Position::new(slot as u64 + 1),
            recorded_at: tx.created,
        })
    }

    /// The index's view of the event in `slot` (no payload), for filters.
    pub(crate) fn event_head(&self, slot: usize) -> Option<(&StreamId, &Arc<str>, EventId)> {
        let s = self.derived.slots.get(slot)?;
        let ev = self.txs.get(s.tx)?.events.get(s.ev)?;
        Some((&ev.stream, &ev.event_type, ev.id))
    }

    /// The current version of a stream that is not forked.
    pub(crate) fn version(&self, stream: &StreamId) -> Version {
        Version::new(
            self.derived
                .streams
                .get(stream)
                .map_or(0, |s| s.settled.len() as u64),
        )
    }

    /// The ids of the transactions without a child: the parents of the next write.
    pub(crate) fn head_ids(&self) -> Vec<String> {
        self.derived
            .heads
            .iter()
            .filter_map(|&h| self.txs.get(h))
            .map(|t| t.id.to_string())
            .collect()
    }
}

/// Loads events from their files, reading each file once per run of events in it.
#[derive(Default)]
pub(crate) struct Loader {
    cached: Option<(Arc<str>, Arc<Vec<u8>>)>,
}

impl Loader {
    /// Loads one event. The file is verified against the hash it was indexed
    /// with before any line of it is used: a file edited (or removed) since is
    /// [`FsError::FileChanged`], never served.
    pub(crate) fn load(&mut self, dir: &Path, r: EventRef) -> Result<RecordedEvent, FsError> {
        let changed = || FsError::FileChanged {
            file: PathBuf::from("events").join(&*r.file),
        };
        let bytes = match &self.cached {
            Some((file, bytes)) if *file == r.file => Arc::clone(bytes),
            _ => {
                let bytes = match fs::read(dir.join(&*r.file)) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(changed()),
                    Err(e) => return Err(FsError::io(format!("reading events/{}", r.file))(e)),
                };
                if !format::unchanged(&bytes, &r.hash) {
                    tracing::warn!(file = %r.file, "annals-fs: a file changed on disk after it was indexed; not serving it");
                    return Err(changed());
                }
                let bytes = Arc::new(bytes);
                self.cached = Some((Arc::clone(&r.file), Arc::clone(&bytes)));
                bytes
            }
        };
        let line = bytes.get(r.offset..r.offset + r.len).ok_or_else(changed)?;
        format::decode_event(line, r.stream, r.version, r.position, r.recorded_at)
            .map_err(|e| FsError::Encode(format!("decoding an event of events/{}: {e}", r.file)))
    }
}

impl FsEventStore {
    /// The computed log, one line per position: `position tx event stream version
    /// hidden`, then one line per stream state. For tests that compare the state in
    /// memory with a cold rebuild; not a stable format.
    #[doc(hidden)]
    pub fn debug_order(&self) -> Vec<String> {
        let state = self.inner.read();
        let mut out = Vec::new();
        for (i, slot) in state.derived.slots.iter().enumerate() {
            let tx = state.txs.get(slot.tx).map(|t| t.id.to_string());
            let emitter = state.txs.get(slot.emitter).map(|t| t.id.to_string());
            let ev = state.event_head(i).map(|(s, _, id)| format!("{id} {s}"));
            out.push(format!(
                "{} {tx:?} {emitter:?} {ev:?} v{} hidden={}",
                i + 1,
                slot.version,
                slot.hidden
            ));
        }
        let mut streams: Vec<_> = state.derived.streams.iter().collect();
        streams.sort_by(|a, b| a.0.cmp(b.0));
        for (id, s) in streams {
            out.push(format!(
                "{id}: settled {:?} lines {:?}",
                s.settled,
                s.lines.iter().map(|l| l.slots.clone()).collect::<Vec<_>>()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_loading_one_file_names_that_file_and_spares_the_others() {
        // Few files load on this thread, many on several: both paths.
        for count in [10, 600] {
            let names: Vec<String> = (0..count).map(|i| format!("f{i}")).collect();
            let load = |_: &Path, name: &str| {
                if name == "f7" {
                    panic!("a bug while loading {name}");
                }
                Loaded {
                    stamp: None,
                    outcome: Err(FileProblem::UnrecognizedName),
                }
            };
            let out = load_files(Path::new("."), names.clone(), &load);
            let got: Vec<&String> = out.iter().map(|(name, _)| name).collect();
            assert_eq!(got, names.iter().collect::<Vec<_>>());
            for (name, loaded) in &out {
                match (name.as_str(), &loaded.outcome) {
                    ("f7", Err(FileProblem::Unreadable(why))) => assert!(why.contains("panicked")),
                    ("f7", _) => panic!("f7 is not reported as unreadable"),
                    (_, outcome) => assert!(
                        matches!(outcome, Err(FileProblem::UnrecognizedName)),
                        "{name}"
                    ),
                }
            }
        }
    }
}
