//! Forks and reconciling them.
//!
//! A **fork** is two or more transactions that wrote the same stream concurrently
//! (neither descends from the other) and that no reconcile transaction has replaced
//! yet. Streams a transaction only read (its conditions) are never fork anchors. All
//! the forked streams a set of concurrent transactions wrote form **one** fork unit:
//! a multi-stream pair is one fork, reconciled by one transaction.
//!
//! Only [`FsEventStore::reconcile`] resolves a fork. An ordinary append never does,
//! not even one that descends from every branch.

use std::collections::{BTreeMap, HashMap};

use annals_core::{NewEvent, RecordedEvent, StreamId, Timestamp, Version};
use uuid::Uuid;

use crate::state::traced;
use crate::{
    format::{self, Base, ConditionRecord, Header, Kept, Kind, OutEvent, Resolution, Write},
    layout,
    state::{off_runtime, Loader, Look, State},
    FsError, FsEventStore,
};

/// A fork waiting to be reconciled: its streams and its concurrent branches.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Fork {
    /// A stable id, computed from the streams and the branches' transactions: the
    /// same in every clone that has the same files.
    pub id: String,
    /// The forked streams, sorted.
    pub streams: Vec<StreamId>,
    /// Each stream's agreed version: the branches' events come after it.
    pub bases: Vec<(StreamId, Version)>,
    /// The concurrent branches, oldest first.
    pub branches: Vec<Branch>,
}

/// One side of a fork: the events of transactions that wrote the fork's streams
/// together. A request that wrote several forked streams puts all of them in one
/// branch; two transactions of the same side that wrote different streams
/// separately are two branches (keep both with [`Choice::KeepInOrder`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Branch {
    /// The ids of the transactions that wrote it.
    pub transactions: Vec<String>,
    /// Its events on the forked streams, stream by stream in the fork's stream
    /// order, each in its branch's version order (versions continue the base).
    pub events: Vec<RecordedEvent>,
}

/// How [`FsEventStore::reconcile`] resolves a fork.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Choice {
    /// Keep this branch (index into [`Fork::branches`]); drop the others' events.
    Keep(usize),
    /// Keep these branches' events, in this order (each index once).
    KeepInOrder(Vec<usize>),
    /// Drop every branch's events and append these instead, per stream. Streams of
    /// the fork that are not listed end at their base version.
    Replace(Vec<(StreamId, Vec<NewEvent>)>),
}

/// What a reconcile wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconciled {
    /// The id of the merge transaction.
    pub transaction: String,
    /// Each stream's version afterwards.
    pub versions: Vec<(StreamId, Version)>,
}

/// A fork as the index sees it (slots, not loaded events).
pub(crate) struct Unit {
    pub(crate) id: String,
    pub(crate) streams: Vec<StreamId>,
    pub(crate) bases: Vec<(StreamId, Version)>,
    /// Per branch: its transactions, and its slots per stream (unit stream order).
    pub(crate) branches: Vec<(Vec<usize>, Vec<Vec<usize>>)>,
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while let Some(&p) = parent.get(i) {
        if p == i {
            break;
        }
        let grand = parent.get(p).copied().unwrap_or(p);
        if let Some(slot) = parent.get_mut(i) {
            *slot = grand;
        }
        i = p;
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        if let Some(slot) = parent.get_mut(ra.max(rb)) {
            *slot = ra.min(rb);
        }
    }
}

/// Every current fork unit, in a deterministic order.
pub(crate) fn units(state: &State) -> Vec<Unit> {
    let d = &state.derived;
    let mut forked: Vec<&StreamId> = d
        .streams
        .iter()
        .filter(|(_, s)| s.is_forked())
        .map(|(id, _)| id)
        .collect();
    forked.sort();
    // Lines: (stream index, members).
    let mut lines: Vec<(usize, Vec<usize>, Vec<usize>)> = Vec::new();
    for (si, stream) in forked.iter().enumerate() {
        let Some(s) = d.streams.get(*stream) else {
            continue;
        };
        for line in &s.lines {
            let members = if line.txs.is_empty() {
                line.tips.clone()
            } else {
                line.txs.clone()
            };
            lines.push((si, members, line.slots.clone()));
        }
    }
    // Lines that share a transaction (one request wrote several streams) are one
    // branch; the streams of a branch are one unit. Lines of one stream are never
    // grouped by mere ancestry, so every unit keeps at least two branches.
    let mut line_set: Vec<usize> = (0..lines.len()).collect();
    let mut owner: HashMap<usize, usize> = HashMap::new();
    for (li, (_, members, _)) in lines.iter().enumerate() {
        for m in members {
            match owner.get(m) {
                Some(&other) => union(&mut line_set, li, other),
                None => {
                    owner.insert(*m, li);
                }
            }
        }
    }
    let mut stream_set: Vec<usize> = (0..forked.len()).collect();
    let mut first_stream: HashMap<usize, usize> = HashMap::new();
    for (li, (si, _, _)) in lines.iter().enumerate() {
        let root = find(&mut line_set, li);
        match first_stream.get(&root) {
            Some(&other) => union(&mut stream_set, *si, other),
            None => {
                first_stream.insert(root, *si);
            }
        }
    }
    let rank = |t: &usize| d.rank.get(*t).copied().flatten().unwrap_or(usize::MAX);
    let mut by_unit: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for si in 0..forked.len() {
        by_unit
            .entry(find(&mut stream_set, si))
            .or_default()
            .push(si);
    }
    let mut out = Vec::new();
    for stream_indices in by_unit.into_values() {
        let streams: Vec<StreamId> = stream_indices
            .iter()
            .filter_map(|&si| forked.get(si).map(|s| (*s).clone()))
            .collect();
        let mut branches: BTreeMap<usize, (Vec<usize>, Vec<Vec<usize>>)> = BTreeMap::new();
        for (li, (si, members, slots)) in lines.iter().enumerate() {
            let Some(pos) = stream_indices.iter().position(|x| x == si) else {
                continue;
            };
            let root = find(&mut line_set, li);
            let entry = branches
                .entry(root)
                .or_insert_with(|| (Vec::new(), vec![Vec::new(); stream_indices.len()]));
            for m in members {
                if !entry.0.contains(m) {
                    entry.0.push(*m);
                }
            }
            if let Some(s) = entry.1.get_mut(pos) {
                s.extend(slots.iter().copied());
            }
        }
        let mut branches: Vec<(Vec<usize>, Vec<Vec<usize>>)> = branches.into_values().collect();
        for (members, per_stream) in &mut branches {
            members.sort_by_key(rank);
            for slots in per_stream {
                slots.sort_unstable();
            }
        }
        branches.sort_by_key(|(members, _)| members.first().map_or(usize::MAX, rank));
        let bases = streams
            .iter()
            .map(|s| (s.clone(), state.version(s)))
            .collect();
        let mut text = String::new();
        for s in &streams {
            text.push_str(s.as_str());
            text.push('\n');
        }
        for (members, _) in &branches {
            let mut ids: Vec<String> = members
                .iter()
                .filter_map(|&m| state.txs.get(m))
                .map(|t| t.id.to_string())
                .collect();
            ids.sort();
            text.push('|');
            text.push_str(&ids.join(","));
        }
        let id = format::sha256_hex(text.as_bytes())
            .get(..16)
            .unwrap_or_default()
            .to_owned();
        out.push(Unit {
            id,
            streams,
            bases,
            branches,
        });
    }
    out
}

/// The forked streams among `streams`, as an error (or `None`).
pub(crate) fn forked_error<'a>(
    state: &State,
    streams: impl IntoIterator<Item = &'a StreamId>,
) -> Option<FsError> {
    let hit: Vec<StreamId> = streams
        .into_iter()
        .filter(|s| state.derived.is_forked(s))
        .cloned()
        .collect();
    if hit.is_empty() {
        return None;
    }
    let forks = units(state)
        .into_iter()
        .filter(|u| u.streams.iter().any(|s| hit.contains(s)))
        .map(|u| u.id)
        .collect();
    Some(FsError::Forked {
        streams: hit,
        forks,
    })
}

impl FsEventStore {
    /// Every fork waiting to be reconciled, with its branches' events.
    pub async fn forks(&self) -> Result<Vec<Fork>, FsError> {
        let span = tracing::debug_span!("annals.fs_forks", outcome = tracing::field::Empty);
        traced(span, async move {
            self.inner.refresh_if_changed()?;
            self.fork_list()
        })
        .await
    }

    pub(crate) fn fork_list(&self) -> Result<Vec<Fork>, FsError> {
        let (found, refs) = {
            let state = self.inner.read();
            let found = units(&state);
            let refs: Vec<Vec<Vec<_>>> = found
                .iter()
                .map(|u| {
                    u.branches
                        .iter()
                        .map(|(_, per_stream)| {
                            per_stream
                                .iter()
                                .flatten()
                                .filter_map(|&slot| state.event_ref(slot))
                                .collect()
                        })
                        .collect()
                })
                .collect();
            let txids: Vec<Vec<Vec<String>>> = found
                .iter()
                .map(|u| {
                    u.branches
                        .iter()
                        .map(|(members, _)| {
                            members
                                .iter()
                                .filter_map(|&m| state.txs.get(m))
                                .map(|t| t.id.to_string())
                                .collect()
                        })
                        .collect()
                })
                .collect();
            (
                found
                    .into_iter()
                    .zip(txids)
                    .map(|(u, ids)| (u.id, u.streams, u.bases, ids))
                    .collect::<Vec<_>>(),
                refs,
            )
        };
        let dir = self.inner.layout.events();
        let mut loader = Loader::default();
        let mut out = Vec::with_capacity(found.len());
        for ((id, streams, bases, txids), refs) in found.into_iter().zip(refs) {
            let mut branches = Vec::with_capacity(txids.len());
            for (transactions, refs) in txids.into_iter().zip(refs) {
                let events = refs
                    .into_iter()
                    .map(|r| loader.load(&dir, r))
                    .collect::<Result<Vec<_>, _>>()?;
                branches.push(Branch {
                    transactions,
                    events,
                });
            }
            out.push(Fork {
                id,
                streams,
                bases,
                branches,
            });
        }
        Ok(out)
    }

    /// Resolves the fork `fork` (its [`Fork::id`]) by writing **one** merge
    /// transaction that descends from every branch and says which events the forked
    /// streams keep, in which order.
    ///
    /// Afterwards the streams read normally again and their versions are stable.
    /// Snapshots of them taken before, whose versions now mean other events, are
    /// no longer returned.
    pub async fn reconcile(&self, fork: &str, choice: Choice) -> Result<Reconciled, FsError> {
        let span =
            tracing::debug_span!("annals.fs_reconcile", fork, outcome = tracing::field::Empty);
        let (this, fork) = (self.clone(), fork.to_owned());
        traced(span, async move {
            off_runtime(move || this.reconcile_now(&fork, &choice)).await?
        })
        .await
    }

    fn reconcile_now(&self, fork: &str, choice: &Choice) -> Result<Reconciled, FsError> {
        if self.inner.writable.is_none() {
            return Err(FsError::ReadOnly);
        }
        let _writer = self.inner.writer();
        self.inner.refresh_locked(Look::Write)?;
        let (header, own, versions) = {
            let state = self.inner.read();
            let unit = units(&state)
                .into_iter()
                .find(|u| u.id == fork)
                .ok_or_else(|| FsError::UnknownFork(fork.to_owned()))?;
            let kept_branches: Vec<usize> = match choice {
                Choice::Keep(i) => vec![*i],
                Choice::KeepInOrder(order) => order.clone(),
                Choice::Replace(_) => Vec::new(),
            };
            for (n, b) in kept_branches.iter().enumerate() {
                if *b >= unit.branches.len() {
                    return Err(FsError::InvalidChoice(format!(
                        "the fork has {} branches; there is no branch {b}",
                        unit.branches.len()
                    )));
                }
                if kept_branches.iter().take(n).any(|x| x == b) {
                    return Err(FsError::InvalidChoice(format!(
                        "branch {b} is listed twice"
                    )));
                }
            }
            if matches!(choice, Choice::KeepInOrder(o) if o.is_empty()) {
                return Err(FsError::InvalidChoice("no branch to keep".into()));
            }
            let mut keep = Vec::new();
            let mut versions = Vec::new();
            let replace: &[(StreamId, Vec<NewEvent>)] = match choice {
                Choice::Replace(r) => r,
                _ => &[],
            };
            for (stream, _) in replace {
                if !unit.streams.contains(stream) {
                    return Err(FsError::InvalidChoice(format!(
                        "stream `{stream}` is not part of fork {fork}"
                    )));
                }
            }
            let mut writes = Vec::new();
            for (si, stream) in unit.streams.iter().enumerate() {
                let mut ids = Vec::new();
                for &b in &kept_branches {
                    if let Some((_, per_stream)) = unit.branches.get(b) {
                        for &slot in per_stream.get(si).into_iter().flatten() {
                            if let Some((_, _, id)) = state.event_head(slot) {
                                ids.push(id.as_uuid().to_string());
                            }
                        }
                    }
                }
                let base = state.version(stream).get() + ids.len() as u64;
                let mut count = 0;
                for (s, events) in replace.iter().filter(|(s, _)| s == stream) {
                    if count > 0 {
                        return Err(FsError::InvalidChoice(format!(
                            "stream `{s}` is listed twice"
                        )));
                    }
                    count = events.len() as u64;
                }
                if count > 0 {
                    writes.push(Write {
                        stream: stream.to_string(),
                        base,
                        count,
                    });
                }
                versions.push((stream.clone(), Version::new(base + count)));
                keep.push(Kept {
                    stream: stream.to_string(),
                    events: ids,
                });
            }
            let mut own = Vec::new();
            for (stream, events) in replace {
                let base = writes
                    .iter()
                    .find(|w| w.stream == stream.as_str())
                    .map_or(0, |w| w.base);
                for (n, event) in events.iter().enumerate() {
                    let metadata = event.validate()?;
                    if state.derived.by_id.contains_key(&event.id) {
                        return Err(FsError::InvalidChoice(format!(
                            "event id {} is already stored",
                            event.id
                        )));
                    }
                    own.push((
                        stream.clone(),
                        Version::new(base + n as u64 + 1),
                        event.clone(),
                        metadata,
                    ));
                }
            }
            let branches = unit
                .branches
                .iter()
                .map(|(members, _)| {
                    members
                        .iter()
                        .filter_map(|&m| state.txs.get(m))
                        .map(|t| t.id.to_string())
                        .collect()
                })
                .collect();
            let header = Header {
                hash: String::new(),
                format: format::FORMAT,
                tx: Uuid::now_v7().to_string(),
                replica: self.inner.replica.clone(),
                created: format::format_timestamp(Timestamp::now()),
                kind: Kind::Reconcile,
                parents: state.head_ids(),
                writes,
                conditions: Vec::<ConditionRecord>::new(),
                resolves: vec![Resolution {
                    fork: unit.id.clone(),
                    bases: unit
                        .bases
                        .iter()
                        .map(|(s, v)| Base {
                            stream: s.to_string(),
                            version: v.get(),
                        })
                        .collect(),
                    streams: unit.streams.iter().map(ToString::to_string).collect(),
                    branches,
                    keep,
                }],
            };
            (header, own, versions)
        };
        let out: Vec<OutEvent<'_>> = own
            .iter()
            .map(|(stream, version, event, metadata)| OutEvent {
                stream,
                version: *version,
                event,
                metadata,
            })
            .collect();
        let (name, bytes) = format::encode(&header, &out).map_err(FsError::Encode)?;
        let layout = &self.inner.layout;
        layout::write_durably(&layout.tmp(), &layout.events(), &name, &bytes)
            .map_err(FsError::io(format!("writing events/{name}")))?;
        self.inner.add_written(&name, &bytes)?;
        tracing::info!(fork, tx = %header.tx, "annals-fs: reconciled a fork");
        Ok(Reconciled {
            transaction: header.tx,
            versions,
        })
    }
}
