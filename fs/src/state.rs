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
    /// The `events/` directory's modification time, if every file it stands for
    /// is indexed: reads skip listing the folder while it is unchanged.
    pub(crate) seen: Option<SystemTime>,
    /// The modification time at the last listing or own write, trusted or not.
    pub(crate) listed: Option<SystemTime>,
    streams: HashMap<String, StreamId>,
    types: HashMap<String, Arc<str>>,
}

/// Where one event is stored and what the index says about it: enough to load it.
#[derive(Clone, Debug)]
pub(crate) struct EventRef {
    pub(crate) file: Arc<str>,
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
            store.inner.refresh_locked(true)?;
        }
        Ok(store)
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// Picks up files that arrived in `events/` since the last look (a `git pull`,
    /// a `git merge`) and recomputes the order. Returns how many new files were
    /// indexed. Reads and writes also do this by themselves when the folder changed.
    pub async fn refresh(&self) -> Result<usize, FsError> {
        let this = self.clone();
        off_runtime(move || {
            let _writer = this.inner.writer();
            this.inner.refresh_locked(true)
        })
        .await?
    }
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

fn replica_id(layout: &Layout) -> Result<String, FsError> {
    let path = layout.replica();
    match fs::read_to_string(&path) {
        Ok(text) if Uuid::parse_str(text.trim()).is_ok() => Ok(text.trim().to_owned()),
        Ok(_) | Err(_) => {
            let id = Uuid::now_v7().to_string();
            layout::write_durably(&layout.tmp(), &layout.local(), "replica", id.as_bytes())
                .map_err(FsError::io("writing the replica id"))?;
            Ok(id)
        }
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
        self.refresh_locked(false).map(|_| ())
    }

    /// Lists `events/` against the index, loads new files and rebuilds the order.
    /// The caller holds the writer mutex. Without `force`, skips the listing when
    /// the folder's modification time is the one seen at the last listing.
    pub(crate) fn refresh_locked(&self, force: bool) -> Result<usize, FsError> {
        let mtime = self.events_mtime();
        // A modification time this recent may be shared with a change still to
        // come (file systems stamp with a coarse clock): do not trust it later.
        let mtime_seen = mtime.filter(|m| {
            SystemTime::now()
                .duration_since(*m)
                .is_ok_and(|age| age > std::time::Duration::from_millis(100))
        });
        if !force && mtime.is_some() && mtime == self.read().seen {
            return Ok(0);
        }
        let dir = self.layout.events();
        let names = layout::list_events(&dir).map_err(FsError::io("listing events/"))?;
        let (fresh, vanished) = {
            let state = self.read();
            let listed: HashSet<&String> = names.iter().collect();
            let vanished = state.known.iter().any(|k| !listed.contains(k));
            // An explicit refresh also looks again at files reported bad (they may
            // have been restored).
            let retry: HashSet<String> = if force {
                state.bad.iter().map(|b| b.name.clone()).collect()
            } else {
                HashSet::new()
            };
            let fresh: Vec<&String> = names
                .iter()
                .filter(|n| vanished || !state.known.contains(*n) || retry.contains(*n))
                .collect();
            (fresh.into_iter().cloned().collect::<Vec<_>>(), vanished)
        };
        if fresh.is_empty() && !vanished && !force {
            let mut state = self.write_state();
            state.seen = mtime_seen;
            state.listed = mtime;
            return Ok(0);
        }
        let loaded = load_files(&dir, fresh);
        let mut state = self.write_state();
        if vanished {
            // Files were removed (a checkout of an older commit): start over.
            *state = State::default();
        }
        let count = loaded.len();
        for (name, outcome) in loaded {
            state.add(&name, outcome);
        }
        state.derived = Derived::rebuild(&state.txs, &state.by_tx);
        state.seen = mtime_seen;
        state.listed = mtime;
        tracing::debug!(
            new_files = count,
            transactions = state.txs.len(),
            "annals-fs: refreshed"
        );
        Ok(count)
    }

    /// Adds a transaction this process just wrote and folds it (it is last in the
    /// order, so this equals a cold rebuild). Returns its first slot index.
    ///
    /// `before` is the folder's modification time checked just before the write:
    /// if it is the one of the last listing (or own write), nothing arrived in
    /// between and the new time is trusted. (A file landing in the very same clock
    /// tick as that listing goes unnoticed until the folder changes again or
    /// `refresh()` is called.)
    pub(crate) fn add_written(
        &self,
        name: &str,
        bytes: &[u8],
        before: Option<SystemTime>,
    ) -> Result<usize, FsError> {
        let decoded = format::decode(name, bytes).map_err(|d| {
            FsError::Encode(format!("the file just written does not decode: {d:?}"))
        })?;
        let mut state = self.write_state();
        let first = state.derived.slots.len();
        let parents: Vec<usize> = decoded
            .header
            .parents
            .iter()
            .filter_map(|p| Uuid::parse_str(p).ok())
            .filter_map(|p| state.by_tx.get(&p).copied())
            .collect();
        let Some(t) = state.add(name, Ok(decoded)) else {
            return Err(FsError::Encode(
                "the file just written was not indexed".into(),
            ));
        };
        let State { txs, derived, .. } = &mut *state;
        derived.apply(txs, t, parents);
        let now = self.events_mtime();
        state.seen = if before.is_some() && before == state.listed {
            now
        } else {
            None
        };
        state.listed = now;
        Ok(first)
    }
}

/// Reads and verifies files, on a few threads when there are many.
fn load_files(
    dir: &Path,
    names: Vec<String>,
) -> Vec<(String, Result<format::Decoded, FileProblem>)> {
    // Opening is mostly waiting for the disk: more readers than cores help a cold
    // page cache.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_mul(4)
        .clamp(2, 8);
    if names.len() < 256 || threads < 2 {
        return names
            .into_iter()
            .map(|name| {
                let outcome = load_file(dir, &name);
                (name, outcome)
            })
            .collect();
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
                scope.spawn(move || {
                    part.into_iter()
                        .map(|name| {
                            let outcome = load_file(dir, &name);
                            (name, outcome)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![(
                        String::new(),
                        Err(FileProblem::Unreadable("a loader thread panicked".into())),
                    )]
                })
            })
            .collect()
    })
}

/// Reads and verifies one file.
fn load_file(dir: &Path, name: &str) -> Result<format::Decoded, FileProblem> {
    if !format::is_candidate(name) {
        return Err(FileProblem::Ignored);
    }
    let bytes = fs::read(dir.join(name)).map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    format::decode(name, &bytes).map_err(|defect| match defect {
        Defect::Name => FileProblem::UnrecognizedName,
        Defect::Malformed(why) => FileProblem::Malformed(why),
        Defect::HashMismatch => FileProblem::HashMismatch,
    })
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

    /// Indexes one file; returns its transaction index if it is valid.
    fn add(&mut self, name: &str, outcome: Result<format::Decoded, FileProblem>) -> Option<usize> {
        self.known.insert(name.to_owned());
        self.bad.retain(|b| b.name != name);
        let decoded = match outcome {
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
        let parents = header
            .parents
            .iter()
            .filter_map(|p| Uuid::parse_str(p).ok())
            .collect();
        let t = self.txs.len();
        self.txs.push(Tx {
            file: Arc::from(name),
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
    pub(crate) fn load(&mut self, dir: &Path, r: EventRef) -> Result<RecordedEvent, FsError> {
        let bytes = match &self.cached {
            Some((file, bytes)) if *file == r.file => Arc::clone(bytes),
            _ => {
                let bytes = Arc::new(
                    fs::read(dir.join(&*r.file))
                        .map_err(FsError::io(format!("reading events/{}", r.file)))?,
                );
                self.cached = Some((Arc::clone(&r.file), Arc::clone(&bytes)));
                bytes
            }
        };
        let line = bytes.get(r.offset..r.offset + r.len).ok_or_else(|| {
            FsError::Encode(format!(
                "events/{} changed on disk after it was indexed",
                r.file
            ))
        })?;
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
