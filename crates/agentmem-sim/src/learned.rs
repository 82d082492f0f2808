//! The learned policy: an online estimate of how soon a unit will be
//! requested again, learnt from the trace as it is replayed (or from the
//! store as it runs), used to pick victims; and the same estimate read the
//! other way round to predict which agents resume soon (for prefetch).
//!
//! # How it decides
//!
//! Units are kept in one recency list per owner agent (shared and public
//! units in one more list) and in one global LRU list. Each decision looks
//! at a few groups: the group holding the global LRU unit, the group the
//! last victim came from (so an agent that is a good victim is emptied
//! rather than every agent losing a little), the shared group, for each
//! agent state the agent longest in it and the one newest in it, and
//! [`SAMPLED_GROUPS`] groups drawn at random. A group offers one unit:
//!
//! - the shared group its least recent one (LRU);
//! - an agent its least recent unit if that one is stale (see below), and
//!   otherwise its **most** recent one: an agent reads its context in
//!   order at every model call, a loop, and the unit it read last is the
//!   one it needs last next time (evicting the least recent would make the
//!   next read miss on every unit in turn, LRU's failure on loops).
//!
//! The candidate worth least per byte leaves: its *soonness* (below) times
//! how often it is requested within the horizon (the horizon over its mean
//! gap between requests, or over its time since the last one if longer; at
//! least 1), over the square root of its size — for an agent's unit the
//! mean size of that agent's units, since they all come back together.
//! Expected hits per byte would divide by the size itself; the square root
//! keeps the coarse per-cell estimate from evicting large units that are
//! about to be read. Ties go to the least recent. With no agents in the
//! trace there is one group, so the policy is exactly LRU: agent knowledge
//! is the only thing it adds.
//!
//! # The model
//!
//! A unit falls in one cell of a table, by its *class* and a *time bin*:
//!
//! - an agent's own unit that its agent did not read in its last period
//!   with reads (between two state changes) is **stale**: an earlier
//!   session's memory, or context the agent stopped reading; binned by the
//!   time since the unit's last request;
//! - another own unit is classed by its agent's **state**, binned by how
//!   long the agent has been in that state — so the table holds, per state,
//!   how the chance of a resume depends on the time waited so far: the
//!   agents' pause history, learnt from the trace (a long wait for a person
//!   predicts a longer one; a long wait for a model, an imminent resume);
//! - shared and public units, binned by the time since their last request.
//!
//! Bins are half powers of two of the clock's unit (nanoseconds in a
//! store). Each cell counts how many of its units were requested again
//! within a quarter of the horizon and within the horizon ([`SCALES`]); a
//! unit's *soonness* is the mean of the two rates. Each cell has its
//! class's rates (and, before any data, a prior from the store's semantic
//! ranking of states) as a Bayesian prior, so sparse cells borrow strength
//! from their class.
//!
//! # How it learns
//!
//! When it scores candidates it keeps a snapshot of their cell (at most
//! [`MAX_PENDING`] at a time). A snapshot is labelled with the time until
//! its unit is requested again — whether it was evicted meanwhile or not —
//! or as not reused when the horizon passes first. Counts halve when a cell
//! has seen [`FORGET_AFTER`] labels, so the table follows a changing
//! workload. The horizon is the cache's characteristic time (as in Che's
//! approximation of LRU): the running mean of the victims' ages, the reuse
//! distance that separates hits from misses in this cache.
//!
//! The model is a table rather than a logistic regression (this policy's
//! first version) because the chance of reuse depends on the state and the
//! time in it jointly and not monotonically — a weighted sum of features
//! cannot express "a short wait for a person means soon, a long one means
//! much later" — and because a table lookup and a count update fit the
//! 1 µs per decision budget with room to spare. The crates that offer
//! online learners (linfa, smartcore) train in batches over matrices.

use std::collections::{HashMap, VecDeque};

use agentmem_core::policy::{AgentView, UnitView};
use agentmem_core::{AgentId, AgentState, EvictionPolicy, Timestamp, UnitKey};

use crate::policy::{DList, Node, NIL};

/// Groups drawn at random per decision, besides the fixed candidates.
pub const SAMPLED_GROUPS: usize = 4;
/// Agent ids below this have their group found in a vector.
const DENSE_AGENTS: usize = 1 << 20;
/// Agent states plus "state not told yet".
const STATE_SETS: usize = 7;
/// Candidate groups per decision, at most: the random ones, the global LRU
/// unit's, the last victim's, the shared group, and per agent state the
/// agents longest and newest in it.
const MAX_CANDIDATES: usize = SAMPLED_GROUPS + 3 + 2 * STATE_SETS;
/// Training snapshots waiting for their label, at most.
pub const MAX_PENDING: usize = 16384;
/// Unit classes: the six agent states, shared units, stale units.
pub const CLASSES: usize = 8;
const CLASS_SHARED: usize = 6;
const CLASS_STALE: usize = 7;
/// Time bins per class (half powers of two).
pub const BINS: usize = 64;
/// Bin 0 holds times below 2^(BIN_OFFSET / 2): 0.26 ms in nanoseconds.
const BIN_OFFSET: i32 = 36;
/// Labels a cell counts before its counts are halved.
pub const FORGET_AFTER: f32 = 4096.0;
/// Weight, in labels, of a cell's prior (its class's rate).
const CELL_PRIOR: f32 = 2.0;
/// Weight, in labels, of a class's prior (from the state's rank).
const CLASS_PRIOR: f32 = 4.0;
/// Weight of each victim in the running mean of the victims' age.
const EWMA: f64 = 0.01;

/// The time bin of a duration: half powers of two, from 2^18 to 2^50
/// units of time.
#[inline]
fn time_bin(d: u64) -> usize {
    if d == 0 {
        return 0;
    }
    let log2 = 63 - d.leading_zeros() as i32;
    let half = if log2 > 0 {
        ((d >> (log2 - 1)) & 1) as i32
    } else {
        0
    };
    (2 * log2 + half - BIN_OFFSET).clamp(0, BINS as i32 - 1) as usize
}

/// The online reuse model: per class and time bin, how many snapshots were
/// requested again within each of the [`SCALES`] (fractions of the
/// horizon), out of how many.
#[derive(Debug, Clone)]
pub struct ReuseModel {
    /// `[reused within each scale.., labelled]` per cell, class-major.
    cells: Vec<[f32; SCALES.len() + 1]>,
    /// The same summed per class.
    classes: [[f32; SCALES.len() + 1]; CLASSES],
    trained: u64,
}

impl Default for ReuseModel {
    fn default() -> Self {
        ReuseModel {
            cells: vec![[0.0; SCALES.len() + 1]; CLASSES * BINS],
            classes: [[0.0; SCALES.len() + 1]; CLASSES],
            trained: 0,
        }
    }
}

/// The times, in horizons, within which reuse is predicted.
pub const SCALES: [f64; 2] = [0.25, 1.0];
const N: usize = SCALES.len();

impl ReuseModel {
    /// The prior of a class, before any label: the store's semantic ranking
    /// (parked agents' units least likely back, shared units most), from
    /// 0.1 for stale units up to 0.9 for shared ones.
    fn class_prior(class: usize) -> f32 {
        let rank = match class {
            CLASS_SHARED => 8.0,
            CLASS_STALE => 0.0,
            c => f32::from(AgentState::ALL[c].eviction_rank()) + 1.0,
        };
        0.1 + 0.1 * rank
    }

    #[inline]
    fn estimate(&self, class: usize, bin: usize, scale: usize) -> f32 {
        let c = self.classes[class];
        let pc = (c[scale] + CLASS_PRIOR * Self::class_prior(class)) / (c[N] + CLASS_PRIOR);
        let x = self.cells[class * BINS + bin];
        (x[scale] + CELL_PRIOR * pc) / (x[N] + CELL_PRIOR)
    }

    /// The probability that a unit of `class`, `bin` is requested again
    /// within the horizon.
    #[inline]
    pub fn probability(&self, class: usize, bin: usize) -> f32 {
        self.estimate(class, bin, N - 1)
    }

    /// How soon a unit of `class`, `bin` is expected back: the mean over
    /// the [`SCALES`] of the probability of a request within that time (1:
    /// surely within a quarter horizon; 0: surely not within one).
    #[inline]
    pub fn soonness(&self, class: usize, bin: usize) -> f32 {
        // The mean of the two estimates, with two divisions instead of four.
        let c = self.classes[class];
        let pc =
            (c[0] + c[1] + 2.0 * CLASS_PRIOR * Self::class_prior(class)) / (c[N] + CLASS_PRIOR);
        let x = self.cells[class * BINS + bin];
        (x[0] + x[1] + CELL_PRIOR * pc) / (2.0 * (x[N] + CELL_PRIOR))
    }

    /// Count one label for a cell (`class * BINS + bin`): the time until
    /// its unit was requested again, in horizons (infinite if not within
    /// the horizon).
    pub fn train(&mut self, cell: usize, gap: f64) {
        let Some(c) = self.cells.get_mut(cell) else {
            return;
        };
        let class = &mut self.classes[cell / BINS];
        for x in [c, class] {
            for (i, s) in SCALES.iter().enumerate() {
                x[i] += f32::from(u8::from(gap <= *s));
            }
            x[N] += 1.0;
        }
        let c = &mut self.cells[cell];
        if c[N] >= FORGET_AFTER {
            // Forget half, so the estimate follows a changing workload.
            let class = &mut self.classes[cell / BINS];
            for i in 0..=N {
                class[i] -= c[i] / 2.0;
                c[i] /= 2.0;
            }
        }
        self.trained += 1;
    }

    /// Number of labels learnt from.
    pub fn trained(&self) -> u64 {
        self.trained
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    last: u64,
    /// `1 / sqrt(size)`, kept rather than computed per decision.
    inv_sqrt_size: f32,
    gap: f32,
    freq: u32,
    size: u32,
    group: u32,
    pending: u32,
    /// The key has been inserted since it was last removed: an insert of a
    /// seen key is a read that missed, not new content.
    seen: bool,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            last: 0,
            inv_sqrt_size: 1.0,
            gap: 0.0,
            freq: 0,
            size: 0,
            group: NIL,
            pending: NIL,
            seen: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Group {
    list: DList,
    /// The agent (0 for the shared group).
    agent: u32,
    /// The last decision that took this group as a candidate.
    marked: u32,
    /// Bytes of the units in `list`.
    bytes: u64,
    /// Position in `LearnedPolicy::nonempty`, or `NIL`.
    pos: u32,
    state: Option<AgentState>,
    since: u64,
    /// Whether the agent read one of its units since its last state change.
    read_in_period: bool,
    /// Start of the agent's last finished period with reads: its units
    /// requested before then were not read in it (stale).
    read_start: u64,
}

impl Group {
    fn new() -> Self {
        Group {
            list: DList::default(),
            agent: 0,
            marked: 0,
            bytes: 0,
            pos: NIL,
            state: None,
            since: 0,
            read_in_period: false,
            read_start: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Sample {
    key: u32,
    cell: u16,
    live: bool,
    taken: u64,
    horizon: f64,
}

/// The learned eviction policy; see the [module docs](self).
#[derive(Debug)]
pub struct LearnedPolicy {
    model: ReuseModel,
    slots: Vec<Slot>,
    group_links: Vec<Node>,
    global_links: Vec<Node>,
    global: DList,
    /// Group 0 holds shared and public units; agent `a`'s group is
    /// `dense_groups[a]` (`NIL`: none yet) for ids below [`DENSE_AGENTS`],
    /// `sparse_groups[a]` above: a store's agent ids are dense, and a
    /// vector lookup is a good part of an access's cost cheaper than a hash.
    groups: Vec<Group>,
    dense_groups: Vec<u32>,
    sparse_groups: HashMap<u32, u32>,
    /// Number of the current decision, to mark candidate groups.
    decision: u32,
    nonempty: Vec<u32>,
    /// Non-empty agent groups by state (index 6: state unknown), newest
    /// first: a group is put at the head when it enters the set, so the tail
    /// is (nearly always) the agent longest in that state.
    by_state: [DList; STATE_SETS],
    state_links: Vec<Node>,
    sticky: u32,
    /// Mean time between insertions of units, and the last one.
    /// Running mean of the victims' ages (time since their last request):
    /// the horizon.
    victim_age: f64,
    pending: VecDeque<Sample>,
    /// Sequence number of `pending[0]`.
    pending_base: u32,
    rng: u64,
    len: usize,
}

impl Default for LearnedPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl LearnedPolicy {
    /// An empty policy with an untrained model.
    pub fn new() -> Self {
        LearnedPolicy {
            model: ReuseModel::default(),
            slots: Vec::new(),
            group_links: Vec::new(),
            global_links: Vec::new(),
            global: DList::default(),
            groups: vec![Group::new()],
            dense_groups: Vec::new(),
            sparse_groups: HashMap::new(),
            decision: 0,
            nonempty: Vec::new(),
            by_state: [DList::default(); STATE_SETS],
            state_links: vec![Node::default()],
            sticky: NIL,
            victim_age: 0.0,
            pending: VecDeque::new(),
            pending_base: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            len: 0,
        }
    }

    /// The model.
    pub fn model(&self) -> &ReuseModel {
        &self.model
    }

    /// The current horizon (in the clock's units, nanoseconds in a store):
    /// the cache's characteristic time (as in Che's approximation of LRU),
    /// estimated as the running mean of the victims' ages — the time since
    /// their last request. A unit requested again within it would have
    /// been a hit.
    pub fn horizon(&self) -> f64 {
        self.victim_age
    }

    /// Agent `agent`'s group, if it has one.
    #[inline]
    fn group_of(&self, agent: u32) -> Option<u32> {
        match self.dense_groups.get(agent as usize) {
            Some(&g) if g != NIL => Some(g),
            Some(_) => None,
            None => self.sparse_groups.get(&agent).copied(),
        }
    }

    fn group_for(&mut self, agent: u32) -> u32 {
        if let Some(g) = self.group_of(agent) {
            return g;
        }
        let g = self.groups.len() as u32;
        let mut grp = Group::new();
        grp.agent = agent;
        self.groups.push(grp);
        self.state_links.push(Node::default());
        if (agent as usize) < DENSE_AGENTS {
            if self.dense_groups.len() <= agent as usize {
                self.dense_groups.resize(agent as usize + 1, NIL);
            }
            self.dense_groups[agent as usize] = g;
        } else {
            self.sparse_groups.insert(agent, g);
        }
        g
    }

    fn ensure(&mut self, k: u32) {
        let n = k as usize + 1;
        if self.slots.len() < n {
            self.slots.resize(n, Slot::default());
            self.group_links.resize(n, Node::default());
            self.global_links.resize(n, Node::default());
        }
    }

    fn attach(&mut self, k: u32, g: u32) {
        let grp = &mut self.groups[g as usize];
        grp.list.push_front(&mut self.group_links, k);
        grp.bytes += u64::from(self.slots[k as usize].size);
        if grp.pos == NIL {
            grp.pos = self.nonempty.len() as u32;
            self.nonempty.push(g);
            if g != 0 {
                let set = grp.state.map_or(STATE_SETS - 1, |s| s as usize);
                self.by_state[set].push_front(&mut self.state_links, g);
            }
        }
        self.global.push_front(&mut self.global_links, k);
        self.slots[k as usize].group = g;
        self.len += 1;
    }

    fn detach(&mut self, k: u32) {
        let g = self.slots[k as usize].group;
        if g == NIL {
            return;
        }
        let grp = &mut self.groups[g as usize];
        grp.list.unlink(&mut self.group_links, k);
        grp.bytes -= u64::from(self.slots[k as usize].size);
        if grp.list.len == 0 {
            let pos = grp.pos as usize;
            grp.pos = NIL;
            if g != 0 {
                let set = grp.state.map_or(STATE_SETS - 1, |s| s as usize);
                self.by_state[set].unlink(&mut self.state_links, g);
            }
            self.nonempty.swap_remove(pos);
            if let Some(&moved) = self.nonempty.get(pos) {
                self.groups[moved as usize].pos = pos as u32;
            }
        }
        self.global.unlink(&mut self.global_links, k);
        self.slots[k as usize].group = NIL;
        self.len -= 1;
    }

    fn h(&self) -> f64 {
        self.horizon().max(1.0)
    }

    /// The model's cell for unit `k` at `now`: `class * BINS + bin`.
    #[inline]
    fn cell(&self, k: u32, now: u64) -> usize {
        let s = &self.slots[k as usize];
        let (class, bin) = if s.group == 0 {
            (CLASS_SHARED, time_bin(now.saturating_sub(s.last)))
        } else {
            let g = &self.groups[s.group as usize];
            if s.last < g.read_start {
                (CLASS_STALE, time_bin(now.saturating_sub(s.last)))
            } else {
                let st = g.state.unwrap_or(AgentState::Active);
                (st as usize, time_bin(now.saturating_sub(g.since)))
            }
        };
        class * BINS + bin
    }

    /// What keeping unit `k` is worth per byte; see the module docs.
    #[inline]
    fn score(&self, k: u32, cell: usize, now: u64) -> f32 {
        let s = &self.slots[k as usize];
        let p = self.model.soonness(cell / BINS, cell % BINS);
        let reuses = if s.freq > 1 {
            let gap = s.gap.max(now.saturating_sub(s.last) as f32).max(1.0);
            (self.h() as f32 / gap).clamp(1.0, 1e6)
        } else {
            1.0
        };
        let inv_sqrt_size = if s.group == 0 {
            s.inv_sqrt_size
        } else {
            let grp = &self.groups[s.group as usize];
            (grp.list.len as f32 / grp.bytes.max(1) as f32).sqrt()
        };
        p * reuses * inv_sqrt_size
    }

    /// The unit group `g` offers as a victim; see the module docs.
    #[inline]
    fn candidate(&self, g: u32) -> u32 {
        let grp = &self.groups[g as usize];
        let t = grp.list.tail;
        if g == 0 || self.slots[t as usize].last < grp.read_start {
            t
        } else {
            grp.list.head
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: a few cycles, and the choice need not be strong.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Label `k`'s pending snapshot, if any: it was requested at `now`.
    fn touch(&mut self, k: u32, now: u64) {
        let pending = self.slots[k as usize].pending;
        if pending != NIL {
            self.slots[k as usize].pending = NIL;
            let idx = pending.wrapping_sub(self.pending_base) as usize;
            if let Some(s) = self.pending.get_mut(idx) {
                if s.live && s.key == k {
                    s.live = false;
                    let gap = now.saturating_sub(s.taken) as f64;
                    self.model.train(usize::from(s.cell), gap / s.horizon);
                }
            }
        }
    }

    /// Label the snapshots whose horizon has passed: not reused in time.
    fn expire(&mut self, now: u64) {
        while let Some(s) = self.pending.front() {
            // When the queue is full, the oldest is labelled early with what
            // it has counted, so one long horizon cannot stop learning.
            if s.taken as f64 + s.horizon >= now as f64 && self.pending.len() < MAX_PENDING {
                break;
            }
            let Some(s) = self.pending.pop_front() else {
                break;
            };
            if s.live {
                self.model.train(usize::from(s.cell), f64::INFINITY);
                let seq = self.pending_base;
                if let Some(slot) = self.slots.get_mut(s.key as usize) {
                    if slot.pending == seq {
                        slot.pending = NIL;
                    }
                }
            }
            self.pending_base = self.pending_base.wrapping_add(1);
        }
    }

    fn snapshot(&mut self, k: u32, cell: usize, now: u64) {
        if self.pending.len() >= MAX_PENDING || self.slots[k as usize].pending != NIL {
            return;
        }
        let seq = self.pending_base.wrapping_add(self.pending.len() as u32);
        if seq == NIL {
            return; // would read as "no sample"; skip this one
        }
        self.slots[k as usize].pending = seq;
        self.pending.push_back(Sample {
            key: k,
            cell: cell as u16,
            live: true,
            taken: now,
            horizon: self.h(),
        });
    }

    fn update(&mut self, unit: &UnitView) {
        let k = unit.key.0;
        let now = unit.now.0;
        self.touch(k, now);
        let g = match unit.owner {
            None => 0,
            Some(a) => self.group_for(a.0),
        };
        let same_group = self.slots[k as usize].group == g;
        if same_group {
            let list = &mut self.groups[g as usize].list;
            list.move_to_front(&mut self.group_links, k);
            self.global.move_to_front(&mut self.global_links, k);
        } else {
            self.detach(k);
        }
        let s = &mut self.slots[k as usize];
        if s.seen && g != 0 {
            // A request for content the store had before: a read.
            self.groups[g as usize].read_in_period = true;
        }
        if !s.seen {
            s.freq = 0;
        } else {
            let gap = now.saturating_sub(s.last) as f32;
            s.gap = if s.freq <= 1 {
                gap
            } else {
                s.gap + 0.25 * (gap - s.gap)
            };
        }
        s.freq = s.freq.saturating_add(1);
        s.seen = true;
        s.last = now;
        if s.size != unit.size {
            if same_group {
                let grp = &mut self.groups[g as usize];
                grp.bytes = grp.bytes - u64::from(s.size) + u64::from(unit.size);
            }
            s.size = unit.size;
            s.inv_sqrt_size = 1.0 / (unit.size.max(1) as f32).sqrt();
        }
        if !same_group {
            self.attach(k, g);
        }
    }

    /// The probability, by the model, that `agent` requests its memory
    /// within the horizon from `now`: high for an agent about to resume.
    /// `None` for an agent never seen or whose state was never told.
    pub fn resume_probability(&self, agent: AgentId, now: Timestamp) -> Option<f32> {
        let g = self.group_of(agent.0)?;
        let grp = &self.groups[g as usize];
        let st = grp.state?;
        let bin = time_bin(now.0.saturating_sub(grp.since));
        Some(self.model.probability(st as usize, bin))
    }

    /// Agents that are not working now whose
    /// [`resume_probability`](Self::resume_probability) is at least
    /// `min_probability`, most likely first: the ones whose units to
    /// prefetch.
    pub fn prefetch_candidates(&self, now: Timestamp, min_probability: f32) -> Vec<(AgentId, f32)> {
        let mut out: Vec<(AgentId, f32)> = self.groups[1..]
            .iter()
            .filter(|g| g.state.is_some_and(|s| s != AgentState::Active))
            .filter_map(|g| {
                let p = self.resume_probability(AgentId(g.agent), now)?;
                (p >= min_probability).then_some((AgentId(g.agent), p))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

impl EvictionPolicy for LearnedPolicy {
    fn name(&self) -> &'static str {
        "learned"
    }

    fn insert(&mut self, unit: &UnitView) {
        self.ensure(unit.key.0);
        self.update(unit);
    }

    fn access(&mut self, unit: &UnitView) {
        if self
            .slots
            .get(unit.key.index())
            .is_some_and(|s| s.group != NIL)
        {
            self.update(unit);
        }
    }

    fn remove(&mut self, key: UnitKey) {
        if let Some(s) = self.slots.get_mut(key.index()) {
            // The unit is gone (its key may be reused): its sample says
            // nothing about reuse, so drop it unlabelled.
            s.seen = false;
            if s.pending != NIL {
                let idx = s.pending.wrapping_sub(self.pending_base) as usize;
                s.pending = NIL;
                if let Some(p) = self.pending.get_mut(idx) {
                    p.live = false;
                }
            }
            self.detach(key.0);
        }
    }

    fn victim(&mut self, now: Timestamp) -> Option<UnitKey> {
        let now = now.0;
        if self.len == 0 {
            return None;
        }
        if self.victim_age == 0.0 {
            // No victim yet: start from the age of the least recent unit.
            self.victim_age = now.saturating_sub(self.slots[self.global.tail as usize].last) as f64;
        }
        self.expire(now);
        let mut cands = [NIL; MAX_CANDIDATES];
        let mut n = 0;
        // Marks rather than a search of the list: a group is a candidate once.
        self.decision = self.decision.wrapping_add(1);
        let decision = self.decision;
        let mut add = |g: u32, groups: &mut [Group], cands: &mut [u32; MAX_CANDIDATES]| {
            if g != NIL && n < MAX_CANDIDATES && groups[g as usize].marked != decision {
                groups[g as usize].marked = decision;
                cands[n] = g;
                n += 1;
            }
        };
        add(
            self.slots[self.global.tail as usize].group,
            &mut self.groups,
            &mut cands,
        );
        if self.sticky != NIL && self.groups[self.sticky as usize].list.len > 0 {
            add(self.sticky, &mut self.groups, &mut cands);
        }
        if self.groups[0].list.len > 0 {
            add(0, &mut self.groups, &mut cands);
        }
        for set in &self.by_state {
            add(set.tail, &mut self.groups, &mut cands);
            add(set.head, &mut self.groups, &mut cands);
        }
        for _ in 0..SAMPLED_GROUPS.min(self.nonempty.len()) {
            let i = (self.next_random() % self.nonempty.len() as u64) as usize;
            add(self.nonempty[i], &mut self.groups, &mut cands);
        }
        let mut best = NIL;
        // Expected reuses per byte freed; ties to the least recent.
        let mut best_score = f32::INFINITY;
        let mut best_last = u64::MAX;
        for &g in &cands[..n] {
            let k = self.candidate(g);
            let cell = self.cell(k, now);
            let score = self.score(k, cell, now);
            let s = &self.slots[k as usize];
            let last = s.last;
            if score < best_score || (score == best_score && last < best_last) {
                best = k;
                best_score = score;
                best_last = last;
            }
            self.snapshot(k, cell, now);
        }
        if best == NIL {
            return None;
        }
        let age = now.saturating_sub(self.slots[best as usize].last) as f64;
        self.victim_age += EWMA * (age - self.victim_age);
        self.sticky = self.slots[best as usize].group;
        self.detach(best);
        Some(UnitKey(best))
    }

    fn agent_changed(&mut self, agent: &AgentView) {
        let g = self.group_for(agent.agent.0);
        let grp = &mut self.groups[g as usize];
        if grp.state == Some(agent.state) {
            return; // an importance change: the state's clock keeps running
        }
        if grp.pos != NIL {
            let old = grp.state.map_or(STATE_SETS - 1, |s| s as usize);
            self.by_state[old].unlink(&mut self.state_links, g);
            self.by_state[agent.state as usize].push_front(&mut self.state_links, g);
        }
        if grp.read_in_period {
            grp.read_start = grp.since;
            grp.read_in_period = false;
        }
        grp.state = Some(agent.state);
        grp.since = agent.since.0;
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    //! The store's policy contract (`agentmem_core::policy::conformance`,
    //! through core's `test-util` feature), and the model's predictions.

    use agentmem_core::policy::conformance;
    use agentmem_core::{Importance, Kind};

    use super::*;

    #[test]
    fn passes_the_store_policy_conformance_suite() {
        conformance::run("learned", &mut || Box::new(LearnedPolicy::new()));
    }

    /// Group byte counts and list lengths stay equal to what is tracked,
    /// through random inserts, accesses with changing sizes and owners,
    /// removals, state changes and evictions.
    #[test]
    fn group_accounting_matches_the_tracked_units() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(9);
        let mut p = LearnedPolicy::new();
        for step in 0..20_000u64 {
            let k = rng.random_range(0..300u32);
            let v = UnitView {
                key: UnitKey(k),
                kind: Kind::Conversation,
                size: rng.random_range(1..5_000),
                owner: rng
                    .random_bool(0.8)
                    .then(|| AgentId(rng.random_range(0..12))),
                now: Timestamp(step * 1_000_000),
            };
            match rng.random_range(0..10) {
                0..=3 => p.insert(&v),
                4..=5 => p.access(&v),
                6 => p.remove(UnitKey(k)),
                7 => set_state(
                    &mut p,
                    k % 12,
                    AgentState::ALL[rng.random_range(0..6)],
                    step * 1_000_000,
                ),
                _ => {
                    p.victim(Timestamp(step * 1_000_000));
                }
            }
            let mut units = 0usize;
            for (g, grp) in p.groups.iter().enumerate() {
                let mut k = grp.list.head;
                let (mut b, mut n) = (0u64, 0usize);
                while k != NIL {
                    assert_eq!(p.slots[k as usize].group, g as u32);
                    b += u64::from(p.slots[k as usize].size);
                    n += 1;
                    k = p.group_links[k as usize].next;
                }
                assert_eq!((b, n), (grp.bytes, grp.list.len), "group {g} step {step}");
                units += n;
            }
            assert_eq!(units, p.len(), "step {step}");
        }
        assert!(p.model().trained() > 0);
    }

    #[test]
    fn time_bins_are_half_powers_of_two() {
        assert_eq!(time_bin(0), 0);
        assert_eq!(time_bin(1 << 18), 0);
        assert_eq!(time_bin(1 << 20), 4);
        assert_eq!(time_bin(3 << 19), 5);
        assert!(time_bin(1 << 30) < time_bin(1 << 31));
        assert_eq!(time_bin(u64::MAX), BINS - 1);
    }

    /// A unit its agent skipped in its last reading period is stale and is
    /// evicted before the agent's fresh ones, whatever their age.
    #[test]
    fn units_an_agent_stopped_reading_go_first() {
        let mut p = LearnedPolicy::new();
        let view = |k: u32, t: u64| UnitView {
            key: UnitKey(k),
            kind: Kind::Conversation,
            size: 100,
            owner: Some(AgentId(1)),
            now: Timestamp(t),
        };
        set_state(&mut p, 1, AgentState::Active, 0);
        p.insert(&view(0, 1)); // the old session
        p.insert(&view(1, 2));
        set_state(&mut p, 1, AgentState::Idle, 10);
        set_state(&mut p, 1, AgentState::Active, 100);
        p.insert(&view(2, 101)); // the new session
        p.access(&view(1, 102)); // reads unit 1 again, not unit 0
        set_state(&mut p, 1, AgentState::WaitingForModel, 103);
        assert_eq!(p.victim(Timestamp(104)), Some(UnitKey(0)));
    }

    fn set_state(p: &mut LearnedPolicy, agent: u32, state: AgentState, since: u64) {
        p.agent_changed(&AgentView {
            agent: AgentId(agent),
            state,
            importance: Importance::default(),
            since: Timestamp(since),
        });
    }

    /// Agents 0..10 wait briefly for a model and come back every round;
    /// agents 10..20 wait for a person and come back every 40 rounds. After
    /// training on that, the model rates the first kind likelier to resume
    /// and lists them first for prefetch.
    #[test]
    fn learns_which_waits_end_soon() {
        let mut p = LearnedPolicy::new();
        let mut t = 0u64;
        for round in 0..600u32 {
            for a in 0..20u32 {
                if a >= 10 && round % 40 != a % 40 {
                    continue;
                }
                set_state(&mut p, a, AgentState::Active, t);
                for u in 0..10 {
                    p.insert(&UnitView {
                        key: UnitKey(a * 10 + u),
                        kind: Kind::Conversation,
                        size: 100,
                        owner: Some(AgentId(a)),
                        now: Timestamp(t),
                    });
                    t += 1;
                }
                let state = if a < 10 {
                    AgentState::WaitingForModel
                } else {
                    AgentState::WaitingForHuman
                };
                set_state(&mut p, a, state, t);
                t += 10;
                // Keep the cache at 120 of the 200 units, as a store over
                // budget would.
                while p.len() > 120 {
                    p.victim(Timestamp(t));
                }
            }
        }
        assert!(p.model().trained() > 1000, "{}", p.model().trained());
        let now = Timestamp(t);
        let quick = p.resume_probability(AgentId(3), now).unwrap();
        let slow = p.resume_probability(AgentId(13), now).unwrap();
        assert!(
            quick > slow,
            "model-waiting {quick} vs human-waiting {slow}"
        );
        let cands = p.prefetch_candidates(now, 0.0);
        assert_eq!(cands.len(), 20);
        assert!(
            cands[0].0 .0 < 10,
            "first prefetch candidate {:?}",
            cands[0]
        );
    }
}
