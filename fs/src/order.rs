//! The deterministic total order and everything derived from it.
//!
//! **The rule.** Transactions form a DAG through their recorded parents. The order
//! is the topological order in which, among the transactions whose parents all came
//! before, the one with the smallest key `(created, tx id, file name)` comes next.
//! It uses only recorded values, so every clone with the same files computes the
//! same order.
//!
//! **The fold.** Positions, stream versions, forks and reconciles are computed by
//! folding [`Derived::apply`] over the transactions in that order. An append (or a
//! reconcile) written by this process has every current head as a parent, so it is
//! last in the order: applying it to the in-memory state is exactly the last step
//! of a cold rebuild, and the two can never disagree.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
    sync::Arc,
};

use annals_core::{EventId, StreamId, Timestamp};
use uuid::Uuid;

use crate::format::{Kind, Resolution, Write};

/// The total key among transactions whose parents all came before.
type OrderKey = (String, Uuid, Arc<str>, usize);

/// One event of a transaction, as the index keeps it (the payload stays on disk).
#[derive(Clone, Debug)]
pub(crate) struct Ev {
    pub(crate) id: EventId,
    pub(crate) stream: StreamId,
    pub(crate) event_type: Arc<str>,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// One valid transaction file.
#[derive(Clone, Debug)]
pub(crate) struct Tx {
    pub(crate) file: Arc<str>,
    /// The hash the file carries: a lazy read checks the file still has it.
    pub(crate) hash: Arc<str>,
    pub(crate) id: Uuid,
    pub(crate) created: Timestamp,
    pub(crate) created_text: String,
    pub(crate) kind: Kind,
    pub(crate) parents: Vec<Uuid>,
    pub(crate) writes: Vec<Write>,
    pub(crate) resolves: Vec<Resolution>,
    pub(crate) events: Vec<Ev>,
}

/// A place in the log: position `index + 1`. `emitter` is the transaction that put
/// the event there (a reconcile re-emits kept events); `(tx, ev)` is where it is
/// stored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) emitter: usize,
    pub(crate) tx: usize,
    pub(crate) ev: usize,
    pub(crate) version: u64,
    pub(crate) hidden: bool,
}

/// One line of writers of a forked stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Line {
    /// Its latest writers: a transaction that descends from any of them continues
    /// the line (two reconciles that agree are both tips).
    pub(crate) tips: Vec<usize>,
    /// The transactions that emitted `slots` (branch members).
    pub(crate) txs: Vec<usize>,
    pub(crate) slots: Vec<usize>,
}

/// A stream: its agreed events, and its lines (two or more: forked).
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamState {
    /// Slots of the agreed history, in version order (version = index + 1).
    pub(crate) settled: Vec<usize>,
    pub(crate) lines: Vec<Line>,
}

impl StreamState {
    pub(crate) fn is_forked(&self) -> bool {
        self.lines.len() > 1
    }
}

/// Everything computed from the transactions and their order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Derived {
    /// Transaction indices, in the total order.
    pub(crate) order: Vec<usize>,
    /// Each transaction's parents, as indices (filled when it is applied).
    pub(crate) parents: Vec<Vec<usize>>,
    /// Each transaction's place in `order` (`None`: dangling, left out).
    pub(crate) rank: Vec<Option<usize>>,
    /// Whether each transaction descends from every transaction before it.
    pub(crate) covering: Vec<bool>,
    /// Transactions without a child yet, in order of arrival.
    pub(crate) heads: Vec<usize>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) streams: HashMap<StreamId, StreamState>,
    /// The visible slot of every event id.
    pub(crate) by_id: HashMap<EventId, usize>,
    /// Transactions left out because a parent is missing (or a cycle), with the
    /// parents not found.
    pub(crate) dangling: Vec<(usize, Vec<Uuid>)>,
}

impl Derived {
    /// A cold rebuild: order every transaction and fold.
    pub(crate) fn rebuild(txs: &[Tx], by_tx: &HashMap<Uuid, usize>) -> Self {
        let mut derived = Derived {
            rank: vec![None; txs.len()],
            covering: vec![false; txs.len()],
            parents: vec![Vec::new(); txs.len()],
            ..Derived::default()
        };
        let mut pending = vec![0_usize; txs.len()];
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); txs.len()];
        let mut missing: Vec<Vec<Uuid>> = vec![Vec::new(); txs.len()];
        let mut resolved: Vec<Vec<usize>> = vec![Vec::new(); txs.len()];
        for (i, tx) in txs.iter().enumerate() {
            let mut seen = HashSet::new();
            for parent in &tx.parents {
                if !seen.insert(*parent) {
                    continue;
                }
                match by_tx.get(parent) {
                    Some(&p) if p != i => {
                        if let Some(c) = children.get_mut(p) {
                            c.push(i);
                        }
                        if let Some(n) = pending.get_mut(i) {
                            *n += 1;
                        }
                        if let Some(r) = resolved.get_mut(i) {
                            r.push(p);
                        }
                    }
                    _ => {
                        if let Some(m) = missing.get_mut(i) {
                            m.push(*parent);
                        }
                    }
                }
            }
        }
        let key = |i: usize| {
            txs.get(i)
                .map(|t| (t.created_text.clone(), t.id, t.file.clone(), i))
        };
        let mut ready: BinaryHeap<Reverse<OrderKey>> = (0..txs.len())
            .filter(|&i| pending.get(i) == Some(&0) && missing.get(i).is_some_and(Vec::is_empty))
            .filter_map(key)
            .map(Reverse)
            .collect();
        while let Some(Reverse((_, _, _, i))) = ready.pop() {
            let parents = resolved.get_mut(i).map(std::mem::take).unwrap_or_default();
            derived.apply(txs, i, parents);
            for &child in children.get(i).map(Vec::as_slice).unwrap_or_default() {
                let Some(n) = pending.get_mut(child) else {
                    continue;
                };
                *n -= 1;
                if *n == 0 && missing.get(child).is_some_and(Vec::is_empty) {
                    if let Some(k) = key(child) {
                        ready.push(Reverse(k));
                    }
                }
            }
        }
        for (i, rank) in derived.rank.iter().enumerate() {
            if rank.is_none() {
                let m = missing.get(i).cloned().unwrap_or_default();
                derived.dangling.push((i, m));
            }
        }
        derived
    }

    /// Folds one more transaction, which must come after every one applied so far.
    pub(crate) fn apply(&mut self, txs: &[Tx], t: usize, parents: Vec<usize>) {
        let Some(tx) = txs.get(t) else {
            return;
        };
        if self.rank.len() <= t {
            self.rank.resize(t + 1, None);
            self.covering.resize(t + 1, false);
            self.parents.resize(t + 1, Vec::new());
        }
        let covering = self.heads.iter().all(|h| parents.contains(h));
        if let Some(c) = self.covering.get_mut(t) {
            *c = covering;
        }
        if let Some(r) = self.rank.get_mut(t) {
            *r = Some(self.order.len());
        }
        self.order.push(t);
        self.heads.retain(|h| !parents.contains(h));
        self.heads.push(t);
        if let Some(p) = self.parents.get_mut(t) {
            *p = parents;
        }

        let resolved: HashSet<&str> = tx
            .resolves
            .iter()
            .flat_map(|r| r.streams.iter().map(String::as_str))
            .collect();
        if tx.kind == Kind::Reconcile {
            for resolution in &tx.resolves {
                for stream in &resolution.streams {
                    self.resolve(txs, t, stream, resolution);
                }
            }
        }
        // The transaction's own events, stream by stream, in file order.
        let mut done: HashSet<&StreamId> = HashSet::new();
        for ev in &tx.events {
            if !done.insert(&ev.stream) {
                continue;
            }
            let mine: Vec<usize> = tx
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.stream == ev.stream)
                .map(|(i, _)| i)
                .collect();
            let base = tx
                .writes
                .iter()
                .find(|w| w.stream == ev.stream.as_str())
                .map_or(0, |w| w.base);
            if resolved.contains(ev.stream.as_str()) {
                self.extend_resolved(txs, t, &ev.stream, &mine);
            } else {
                self.write(txs, t, &ev.stream, base, &mine);
            }
        }
    }

    /// New slots for events `evs` of transaction `t`, versions from `first`.
    fn emit(
        &mut self,
        txs: &[Tx],
        emitter: usize,
        tx: usize,
        evs: &[usize],
        first: u64,
    ) -> Vec<usize> {
        let mut out = Vec::with_capacity(evs.len());
        for (n, &ev) in evs.iter().enumerate() {
            let index = self.slots.len();
            self.slots.push(Slot {
                emitter,
                tx,
                ev,
                version: first + n as u64,
                hidden: false,
            });
            if let Some(e) = txs.get(tx).and_then(|t| t.events.get(ev)) {
                self.by_id.insert(e.id, index);
            }
            out.push(index);
        }
        out
    }

    /// An ordinary write of `evs` (events of `t`) to `stream`, recorded at `base`.
    fn write(&mut self, txs: &[Tx], t: usize, stream: &StreamId, base: u64, evs: &[usize]) {
        let state = self.streams.remove(stream).unwrap_or_default();
        let state = self.write_into(txs, t, state, base, evs);
        self.streams.insert(stream.clone(), state);
    }

    fn write_into(
        &mut self,
        txs: &[Tx],
        t: usize,
        mut state: StreamState,
        base: u64,
        evs: &[usize],
    ) -> StreamState {
        let below: Vec<usize> = state
            .lines
            .iter()
            .enumerate()
            .filter(|(_, line)| self.below(line, t))
            .map(|(i, _)| i)
            .collect();
        match (state.lines.len(), below.as_slice()) {
            (0, _) | (1, [_]) => {
                let first = state.settled.len() as u64 + 1;
                let slots = self.emit(txs, t, t, evs, first);
                state.settled.extend(slots);
                state.lines = vec![Line {
                    tips: vec![t],
                    ..Line::default()
                }];
            }
            (1, _) => {
                // Concurrent with the only line: a fork from `base`.
                let keep = usize::try_from(base)
                    .unwrap_or(usize::MAX)
                    .min(state.settled.len());
                let tail = state.settled.split_off(keep);
                let mut members = Vec::new();
                for &s in &tail {
                    if let Some(slot) = self.slots.get(s) {
                        if !members.contains(&slot.emitter) {
                            members.push(slot.emitter);
                        }
                    }
                }
                let old_tips = state
                    .lines
                    .first()
                    .map_or_else(Vec::new, |l| l.tips.clone());
                let first = state.settled.len() as u64 + 1;
                let slots = self.emit(txs, t, t, evs, first);
                state.lines = vec![
                    Line {
                        tips: old_tips,
                        txs: members,
                        slots: tail,
                    },
                    Line {
                        tips: vec![t],
                        txs: vec![t],
                        slots,
                    },
                ];
            }
            (_, [one]) => {
                let one = *one;
                let first = state.settled.len() as u64
                    + state.lines.get(one).map_or(0, |l| l.slots.len()) as u64
                    + 1;
                let slots = self.emit(txs, t, t, evs, first);
                if let Some(line) = state.lines.get_mut(one) {
                    line.tips = vec![t];
                    line.txs.push(t);
                    line.slots.extend(slots);
                }
            }
            _ => {
                // Descends from none or several lines without reconciling: one more
                // line, never a silent merge.
                let first = state.settled.len() as u64 + 1;
                let slots = self.emit(txs, t, t, evs, first);
                state.lines.push(Line {
                    tips: vec![t],
                    txs: vec![t],
                    slots,
                });
            }
        }
        state
    }

    /// A reconcile `t` resolving `stream`: the lines it descends from are replaced by
    /// the kept events, re-emitted in the stated order.
    fn resolve(&mut self, txs: &[Tx], t: usize, stream: &str, resolution: &Resolution) {
        let Ok(stream_id) = StreamId::new(stream) else {
            return;
        };
        let mut state = self.streams.remove(&stream_id).unwrap_or_default();
        let wanted: Vec<EventId> = resolution
            .keep
            .iter()
            .filter(|k| k.stream == stream)
            .flat_map(|k| k.events.iter())
            .filter_map(|id| Uuid::parse_str(id).ok())
            .map(EventId::from_uuid)
            .collect();
        if !state.lines.is_empty() && !state.lines.iter().any(|l| self.below(l, t)) {
            // Another reconcile (or writer) got there first, concurrently.
            let base = resolution
                .bases
                .iter()
                .find(|b| b.stream == stream)
                .map_or(u64::MAX, |b| b.version);
            let state = self.resolve_concurrent(txs, t, &stream_id, state, base, &wanted);
            self.streams.insert(stream_id, state);
            return;
        }
        let (replaced, remaining): (Vec<Line>, Vec<Line>) =
            state.lines.drain(..).partition(|line| self.below(line, t));
        let mut candidates: HashMap<EventId, usize> = HashMap::new();
        for line in &replaced {
            for &s in &line.slots {
                if let Some(slot) = self.slots.get_mut(s) {
                    slot.hidden = true;
                    if let Some(e) = txs.get(slot.tx).and_then(|x| x.events.get(slot.ev)) {
                        candidates.insert(e.id, s);
                        if self.by_id.get(&e.id) == Some(&s) {
                            self.by_id.remove(&e.id);
                        }
                    }
                }
            }
        }
        let kept: Vec<usize> = wanted
            .iter()
            .filter_map(|id| candidates.remove(id))
            .collect();
        let first = state.settled.len() as u64 + 1;
        let mut slots = Vec::with_capacity(kept.len());
        for (n, s) in kept.into_iter().enumerate() {
            let Some(source) = self.slots.get(s).copied() else {
                continue;
            };
            let mut emitted = self.emit(txs, t, source.tx, &[source.ev], first + n as u64);
            slots.append(&mut emitted);
        }
        if remaining.is_empty() {
            state.settled.extend(slots);
            state.lines = vec![Line {
                tips: vec![t],
                ..Line::default()
            }];
        } else {
            state.lines = remaining;
            state.lines.push(Line {
                tips: vec![t],
                txs: vec![t],
                slots,
            });
        }
        self.streams.insert(stream_id, state);
    }

    /// A reconcile `t` that descends from none of the stream's lines: a concurrent
    /// reconcile already replaced them. If both kept the same events (and `t` adds
    /// none), they agree and `t` joins the line; otherwise the two outcomes are a
    /// new fork from the base `t` recorded.
    fn resolve_concurrent(
        &mut self,
        txs: &[Tx],
        t: usize,
        stream: &StreamId,
        mut state: StreamState,
        base: u64,
        wanted: &[EventId],
    ) -> StreamState {
        let id_of = |this: &Self, slot: usize| {
            this.slots
                .get(slot)
                .and_then(|s| txs.get(s.tx)?.events.get(s.ev))
                .map(|e| e.id)
        };
        let base = usize::try_from(base)
            .unwrap_or(usize::MAX)
            .min(state.settled.len());
        let adds_own = txs
            .get(t)
            .is_some_and(|tx| tx.events.iter().any(|e| &e.stream == stream));
        let tail = state.settled.get(base..).unwrap_or_default();
        if !state.is_forked() && !adds_own {
            let tail_ids: Vec<EventId> = tail.iter().filter_map(|&s| id_of(self, s)).collect();
            if tail_ids == wanted {
                if let Some(line) = state.lines.first_mut() {
                    line.tips.push(t);
                }
                return state;
            }
        }
        // The kept events may be hidden by the other reconcile: look in every slot
        // (rare: only two reconciles of one fork get here).
        let mut sources: HashMap<EventId, (usize, usize)> = HashMap::new();
        for (s, slot) in self.slots.iter().enumerate() {
            if let Some(id) = id_of(self, s) {
                if wanted.contains(&id) {
                    sources.insert(id, (slot.tx, slot.ev));
                }
            }
        }
        if !state.is_forked() {
            let tail = state.settled.split_off(base);
            let mut members = Vec::new();
            for &s in &tail {
                if let Some(slot) = self.slots.get(s) {
                    if !members.contains(&slot.emitter) {
                        members.push(slot.emitter);
                    }
                }
            }
            let tips = state
                .lines
                .first()
                .map_or_else(Vec::new, |l| l.tips.clone());
            state.lines = vec![Line {
                tips,
                txs: members,
                slots: tail,
            }];
        }
        let first = state.settled.len() as u64 + 1;
        let mut slots = Vec::with_capacity(wanted.len());
        for id in wanted {
            let Some(&(tx, ev)) = sources.get(id) else {
                continue;
            };
            let mut emitted = self.emit(txs, t, tx, &[ev], first + slots.len() as u64);
            slots.append(&mut emitted);
        }
        state.lines.push(Line {
            tips: vec![t],
            txs: vec![t],
            slots,
        });
        state
    }

    /// Whether `t` continues `line` (descends from one of its tips).
    fn below(&self, line: &Line, t: usize) -> bool {
        line.tips.iter().any(|&tip| self.is_ancestor(tip, t))
    }

    /// A reconcile's own (caller-supplied) events for a stream it resolved.
    fn extend_resolved(&mut self, txs: &[Tx], t: usize, stream: &StreamId, evs: &[usize]) {
        let mut state = self.streams.remove(stream).unwrap_or_default();
        if state.is_forked() {
            let first = state.settled.len() as u64
                + state.lines.last().map_or(0, |l| l.slots.len()) as u64
                + 1;
            let slots = self.emit(txs, t, t, evs, first);
            if let Some(line) = state.lines.last_mut() {
                line.slots.extend(slots);
            }
        } else {
            let first = state.settled.len() as u64 + 1;
            let slots = self.emit(txs, t, t, evs, first);
            state.settled.extend(slots);
        }
        self.streams.insert(stream.clone(), state);
    }

    /// Whether `a` is `b` or one of its ancestors. Both must be in the order.
    pub(crate) fn is_ancestor(&self, a: usize, b: usize) -> bool {
        if a == b {
            return true;
        }
        let (Some(Some(ra)), Some(Some(rb))) = (self.rank.get(a), self.rank.get(b)) else {
            return false;
        };
        let (ra, rb) = (*ra, *rb);
        if ra >= rb {
            return false;
        }
        let mut stack = vec![b];
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            if n == a {
                return true;
            }
            if !seen.insert(n) {
                continue;
            }
            let Some(Some(rn)) = self.rank.get(n) else {
                continue;
            };
            if *rn < ra {
                continue;
            }
            // A covering transaction descends from everything before it.
            if self.covering.get(n) == Some(&true) && *rn > ra {
                return true;
            }
            stack.extend(self.parents.get(n).into_iter().flatten().copied());
        }
        false
    }

    /// The stream's visible slots in version order (`None` if forked).
    pub(crate) fn settled(&self, stream: &StreamId) -> Result<&[usize], ()> {
        match self.streams.get(stream) {
            None => Ok(&[]),
            Some(state) if state.is_forked() => Err(()),
            Some(state) => Ok(&state.settled),
        }
    }

    /// Whether `stream` is forked.
    pub(crate) fn is_forked(&self, stream: &StreamId) -> bool {
        self.streams.get(stream).is_some_and(StreamState::is_forked)
    }
}
