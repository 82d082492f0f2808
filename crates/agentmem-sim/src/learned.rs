//! The learned policy: an online logistic-regression model of "will this
//! unit be requested again within the horizon", used to pick victims, and
//! the same model read the other way round to predict which agents resume
//! soon (for prefetch).
//!
//! # How it decides
//!
//! Units are kept in one LRU list per owner agent (shared and public units
//! in one more list) and in one global LRU list. A victim is chosen among the
//! tails (least recent units) of a few groups: the group holding the global
//! LRU unit, the group the last victim came from (so an agent that is a good
//! victim is emptied rather than every agent losing a little), the shared
//! group, for each agent state the agent longest in it, and
//! [`SAMPLED_GROUPS`] groups drawn at random. Each candidate's features
//! are scored by the model and the one least likely to be requested within
//! the horizon leaves. With no agents in the trace there is one group, so the
//! policy is exactly LRU: agent knowledge is the only thing it adds.
//!
//! # Features
//!
//! Recency (time since the unit's last request, relative to the horizon),
//! frequency, the unit's mean gap between requests, size, unit kind, the
//! owner agent's state, how long the agent has been in that state, the
//! agent's own history of how long that state lasted before (its pause
//! lengths and resume gaps), and the expected rest of the wait given the
//! time already waited, from a histogram of every agent's past durations of
//! that state. Elapsed time and history are per state, so the model can
//! learn that a long wait for a person predicts a longer one while a long
//! wait for a model predicts an imminent resume.
//!
//! # How it learns
//!
//! When it scores candidates it keeps a snapshot of their features (at most
//! [`MAX_PENDING`] at a time). A snapshot is labelled positive if its unit
//! is requested again within the horizon, negative when the horizon passes
//! first, and each label is one stochastic-gradient step. The horizon is how
//! long a unit stays in this cache (by Little's law, the number of units over
//! the rate at which new units enter), the reuse distance that separates
//! hits from misses in it.
//!
//! The model is hand-written: it is a 32-weight dot product and a gradient
//! step, and the crates that offer logistic regression (linfa, smartcore)
//! train in batches over matrices, which cannot meet the 1 µs per decision
//! budget of a live store or learn continuously from a stream.

use std::collections::{HashMap, VecDeque};

use agentmem_core::policy::{AgentView, UnitView};
use agentmem_core::{AgentId, AgentState, EvictionPolicy, Kind, Timestamp, UnitKey};

use crate::policy::{DList, Node, NIL};

/// Groups drawn at random per decision, besides the fixed candidates.
pub const SAMPLED_GROUPS: usize = 2;
/// Candidate groups per decision, at most: the random ones, the global LRU
/// unit's, the last victim's, the shared group, and per agent state the
/// agent longest in it.
const MAX_CANDIDATES: usize = SAMPLED_GROUPS + 3 + STATE_SETS;
/// Agent states plus "state not told yet".
const STATE_SETS: usize = 7;
/// Training snapshots waiting for their label, at most.
pub const MAX_PENDING: usize = 4096;
/// Number of model weights.
pub const FEATURES: usize = 32;

const F_BIAS: usize = 0;
const F_AGE: usize = 1;
const F_FREQ: usize = 2;
const F_KIND: usize = 3; // 5 slots
const F_STATE: usize = 8; // 6 states + shared
const F_SHARED: usize = 14;
const F_ELAPSED: usize = 15; // per state, 6 slots
const F_HISTORY: usize = 21; // per state, 6 slots
const F_SIZE: usize = 27;
const F_RESIDUAL: usize = 28;
const F_UNIT_GAP: usize = 29;

/// Prior log-odds step between neighbouring ranks of
/// [`AgentState::eviction_rank`].
const PRIOR_STATE_STEP: f32 = 1.0;
/// Learning rate of the gradient steps.
const LEARNING_RATE: f32 = 0.05;
/// Weight of each new sample in the running means (horizon, pause lengths).
const EWMA: f64 = 0.02;

/// Online logistic regression over [`FEATURES`] inputs: the probability
/// that a unit is requested again within the horizon.
#[derive(Debug, Clone)]
pub struct ReuseModel {
    w: [f32; FEATURES],
    trained: u64,
}

impl Default for ReuseModel {
    fn default() -> Self {
        let mut w = [0.0; FEATURES];
        // Untrained: the longer a unit has gone unrequested, or the longer
        // its agent is expected to stay away, the less likely it is back in
        // time (LRU's bet, refined by agent state).
        w[F_BIAS] = 1.0;
        w[F_AGE] = -2.0;
        w[F_RESIDUAL] = -2.0;
        // And the store's semantic ranking as the prior on agent state:
        // parked agents' units least likely back, shared units most.
        for st in AgentState::ALL {
            w[F_STATE + st as usize] = (f32::from(st.eviction_rank()) - 3.0) * PRIOR_STATE_STEP;
        }
        w[F_SHARED] = 3.0 * PRIOR_STATE_STEP;
        ReuseModel { w, trained: 0 }
    }
}

impl ReuseModel {
    /// The log-odds that a unit with features `x` is reused in time.
    #[inline]
    pub fn logit(&self, x: &[f32; FEATURES]) -> f32 {
        self.w.iter().zip(x).map(|(w, x)| w * x).sum()
    }

    /// The probability that a unit with features `x` is reused in time.
    pub fn probability(&self, x: &[f32; FEATURES]) -> f32 {
        1.0 / (1.0 + (-self.logit(x)).exp())
    }

    /// One gradient step of the logistic loss towards `reused`.
    pub fn train(&mut self, x: &[f32; FEATURES], reused: bool) {
        let g = self.probability(x) - if reused { 1.0 } else { 0.0 };
        for (w, x) in self.w.iter_mut().zip(x) {
            *w -= LEARNING_RATE * g * x;
        }
        self.trained += 1;
    }

    /// Number of labelled samples learnt from.
    pub fn trained(&self) -> u64 {
        self.trained
    }

    /// The weights, for inspection.
    pub fn weights(&self) -> &[f32; FEATURES] {
        &self.w
    }
}

/// `ln(1 + t / h)`: a time relative to the horizon, on a log scale.
#[inline]
fn rel(t: f64, h: f64) -> f32 {
    fast_ln1p((t.max(0.0) / h) as f32)
}

/// `ln(1 + x)` for `x >= 0` to about 0.5%: the exponent of the float plus a
/// quadratic for the mantissa's log. A feature needs no more, and the
/// library `ln_1p` was most of a decision's cost.
#[inline]
fn fast_ln1p(x: f32) -> f32 {
    let y = 1.0 + x.max(0.0);
    if !y.is_finite() {
        return 88.0; // ln(f32::MAX)
    }
    let bits = y.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let log2 = exponent as f32 + (-0.344_845 * m + 2.024_658) * m - 1.674_877;
    log2 * std::f32::consts::LN_2
}

#[derive(Debug, Clone)]
struct Durations {
    count: [f64; 64],
    sum: [f64; 64],
    tail_count: [f64; 65],
    tail_sum: [f64; 65],
}

impl Durations {
    fn new() -> Self {
        Durations {
            count: [0.0; 64],
            sum: [0.0; 64],
            tail_count: [0.0; 65],
            tail_sum: [0.0; 65],
        }
    }

    fn bin(d: u64) -> usize {
        (64 - d.leading_zeros()) as usize % 64
    }

    fn add(&mut self, d: u64) {
        let b = Self::bin(d);
        self.count[b] += 1.0;
        self.sum[b] += d as f64;
        if self.count[b] > 1e6 {
            // Forget slowly so the estimate follows a changing workload.
            for i in 0..64 {
                self.count[i] *= 0.5;
                self.sum[i] *= 0.5;
            }
        }
        for i in (0..64).rev() {
            self.tail_count[i] = self.tail_count[i + 1] + self.count[i];
            self.tail_sum[i] = self.tail_sum[i + 1] + self.sum[i];
        }
    }

    /// Expected remaining time after `elapsed`, or `None` with no data.
    /// Past every duration seen, the remaining time is guessed to equal the
    /// time already spent (the heavy-tail rule of thumb).
    fn residual(&self, elapsed: u64) -> Option<f64> {
        if self.tail_count[0] == 0.0 {
            return None;
        }
        let b = Self::bin(elapsed);
        // Durations in later bins are all longer than `elapsed`; those in
        // its own bin count half.
        let c = self.tail_count[b + 1] + 0.5 * self.count[b];
        let s = self.tail_sum[b + 1] + 0.5 * self.sum[b];
        if c < 1.0 {
            return Some(elapsed as f64);
        }
        Some((s / c - elapsed as f64).max(0.0))
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The frequency and size features, computed when they change rather
    /// than at every decision.
    freq_feature: f32,
    size_feature: f32,
    last: u64,
    /// Running mean of the gaps between this unit's requests.
    gap: f32,
    freq: u32,
    size: u32,
    group: u32,
    pending: u32,
    kind: u8,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            freq_feature: 0.0,
            size_feature: 0.0,
            last: 0,
            gap: 0.0,
            freq: 0,
            size: 0,
            group: NIL,
            pending: NIL,
            kind: Kind::Blob as u8,
        }
    }
}

#[derive(Debug, Clone)]
struct Group {
    list: DList,
    /// Position in `LearnedPolicy::nonempty`, or `NIL`.
    pos: u32,
    state: Option<AgentState>,
    since: u64,
    /// Mean duration of each state for this agent (0 = never seen).
    mean: [f64; 6],
}

impl Group {
    fn new() -> Self {
        Group {
            list: DList::default(),
            pos: NIL,
            state: None,
            since: 0,
            mean: [0.0; 6],
        }
    }
}

#[derive(Debug, Clone)]
struct Sample {
    x: [f32; FEATURES],
    key: u32,
    deadline: u64,
    live: bool,
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
    /// `group_of[a]`.
    groups: Vec<Group>,
    group_of: HashMap<u32, u32>,
    nonempty: Vec<u32>,
    /// Non-empty agent groups by state (index 6: state unknown), newest
    /// first: a group is put at the head when it enters the set, so the tail
    /// is (nearly always) the agent longest in that state.
    by_state: [DList; STATE_SETS],
    state_links: Vec<Node>,
    sticky: u32,
    /// Mean duration of each state over all agents.
    global_mean: [f64; 6],
    /// Distribution of each state's duration over all agents.
    durations: Vec<Durations>,
    /// Mean time between insertions of new units, and the last one.
    insert_gap: f64,
    last_insert: u64,
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
    /// An empty policy with an untrained model (which behaves as LRU).
    pub fn new() -> Self {
        LearnedPolicy {
            model: ReuseModel::default(),
            slots: Vec::new(),
            group_links: Vec::new(),
            global_links: Vec::new(),
            global: DList::default(),
            groups: vec![Group::new()],
            group_of: HashMap::new(),
            nonempty: Vec::new(),
            by_state: [DList::default(); STATE_SETS],
            state_links: vec![Node::default()],
            sticky: NIL,
            global_mean: [0.0; 6],
            durations: vec![Durations::new(); 6],
            insert_gap: 0.0,
            last_insert: 0,
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
    /// how long a unit stays in the cache on average, by Little's law the
    /// number of units over the rate at which new ones enter.
    pub fn horizon(&self) -> f64 {
        self.len as f64 * self.insert_gap
    }

    fn group_for(&mut self, agent: u32) -> u32 {
        if let Some(&g) = self.group_of.get(&agent) {
            return g;
        }
        let g = self.groups.len() as u32;
        self.groups.push(Group::new());
        self.state_links.push(Node::default());
        self.group_of.insert(agent, g);
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

    fn features(&self, k: u32, now: u64) -> [f32; FEATURES] {
        let s = &self.slots[k as usize];
        let h = self.h();
        let mut x = [0.0f32; FEATURES];
        x[F_BIAS] = 1.0;
        let age = now.saturating_sub(s.last) as f64;
        x[F_AGE] = rel(age, h);
        x[F_FREQ] = s.freq_feature;
        x[F_KIND + usize::from(s.kind).min(4)] = 1.0;
        x[F_SIZE] = s.size_feature;
        if s.freq > 1 {
            x[F_UNIT_GAP] = rel(f64::from(s.gap) - age, h);
        }
        let g = &self.groups[s.group as usize];
        match g.state {
            Some(st) if s.group != 0 => {
                let i = st as usize;
                let elapsed = now.saturating_sub(g.since);
                x[F_STATE + i] = 1.0;
                x[F_ELAPSED + i] = rel(elapsed as f64, h);
                let m = if g.mean[i] > 0.0 {
                    g.mean[i]
                } else {
                    self.global_mean[i]
                };
                x[F_HISTORY + i] = rel(m, h);
                if st != AgentState::Active {
                    if let Some(r) = self.durations[i].residual(elapsed) {
                        x[F_RESIDUAL] = rel(r, h);
                    }
                }
            }
            _ if s.group != 0 => x[F_STATE + AgentState::Active as usize] = 1.0,
            _ => x[F_SHARED] = 1.0,
        }
        x
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

    fn touch(&mut self, k: u32, now: u64) {
        let pending = self.slots[k as usize].pending;
        if pending != NIL {
            self.slots[k as usize].pending = NIL;
            let idx = pending.wrapping_sub(self.pending_base) as usize;
            if let Some(s) = self.pending.get_mut(idx) {
                if s.live && s.key == k {
                    s.live = false;
                    let (x, reused) = (s.x, now <= s.deadline);
                    self.model.train(&x, reused);
                }
            }
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(s) = self.pending.front() {
            if s.deadline >= now {
                break;
            }
            let Some(s) = self.pending.pop_front() else {
                break;
            };
            if s.live {
                self.model.train(&s.x, false);
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

    fn snapshot(&mut self, k: u32, x: [f32; FEATURES], now: u64) {
        if self.pending.len() >= MAX_PENDING || self.slots[k as usize].pending != NIL {
            return;
        }
        let seq = self.pending_base.wrapping_add(self.pending.len() as u32);
        if seq == NIL {
            return; // would read as "no sample"; skip this one
        }
        self.slots[k as usize].pending = seq;
        self.pending.push_back(Sample {
            x,
            key: k,
            deadline: now.saturating_add(self.h() as u64),
            live: true,
        });
    }

    fn update(&mut self, unit: &UnitView) {
        let k = unit.key.0;
        self.touch(k, unit.now.0);
        let g = match unit.owner {
            None => 0,
            Some(a) => self.group_for(a.0),
        };
        let tracked = self.slots[k as usize].group != NIL;
        let same_group = self.slots[k as usize].group == g;
        if same_group {
            let list = &mut self.groups[g as usize].list;
            list.move_to_front(&mut self.group_links, k);
            self.global.move_to_front(&mut self.global_links, k);
        } else {
            self.detach(k);
        }
        let s = &mut self.slots[k as usize];
        if !tracked {
            s.freq = 0;
            let gap = unit.now.0.saturating_sub(self.last_insert) as f64;
            self.last_insert = self.last_insert.max(unit.now.0);
            self.insert_gap += EWMA * (gap - self.insert_gap);
        }
        if tracked {
            let gap = unit.now.0.saturating_sub(s.last) as f32;
            s.gap = if s.freq <= 1 {
                gap
            } else {
                s.gap + 0.25 * (gap - s.gap)
            };
        }
        s.last = unit.now.0;
        s.freq = s.freq.saturating_add(1);
        s.freq_feature = fast_ln1p(s.freq as f32) / 3.0;
        if s.size != unit.size || !tracked {
            s.size_feature = fast_ln1p(unit.size as f32) / 16.0;
        }
        s.size = unit.size;
        s.kind = unit.kind as u8;
        if !same_group {
            self.attach(k, g);
        }
    }

    /// The probability, by the model, that `agent` requests its memory
    /// within the horizon from `now`: high for an agent about to resume.
    /// `None` for an agent never seen or whose state was never told.
    pub fn resume_probability(&self, agent: AgentId, now: Timestamp) -> Option<f32> {
        let &g = self.group_of.get(&agent.0)?;
        let grp = &self.groups[g as usize];
        let st = grp.state?;
        let h = self.h();
        let i = st as usize;
        let elapsed = now.0.saturating_sub(grp.since);
        let mut x = [0.0f32; FEATURES];
        x[F_BIAS] = 1.0;
        x[F_AGE] = rel(elapsed as f64, h);
        x[F_FREQ] = fast_ln1p(1.0) / 3.0;
        x[F_KIND + Kind::Conversation as usize] = 1.0;
        x[F_STATE + i] = 1.0;
        x[F_ELAPSED + i] = x[F_AGE];
        let m = if grp.mean[i] > 0.0 {
            grp.mean[i]
        } else {
            self.global_mean[i]
        };
        x[F_HISTORY + i] = rel(m, h);
        if st != AgentState::Active {
            if let Some(r) = self.durations[i].residual(elapsed) {
                x[F_RESIDUAL] = rel(r, h);
            }
        }
        Some(self.model.probability(&x))
    }

    /// Agents that are not working now whose
    /// [`resume_probability`](Self::resume_probability) is at least
    /// `min_probability`, most likely first: the ones whose units to
    /// prefetch.
    pub fn prefetch_candidates(&self, now: Timestamp, min_probability: f32) -> Vec<(AgentId, f32)> {
        let mut out: Vec<(AgentId, f32)> = self
            .group_of
            .iter()
            .filter(|(_, &g)| {
                self.groups[g as usize]
                    .state
                    .is_some_and(|s| s != AgentState::Active)
            })
            .filter_map(|(&a, _)| {
                let p = self.resume_probability(AgentId(a), now)?;
                (p >= min_probability).then_some((AgentId(a), p))
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
        self.expire(now);
        let mut cands = [NIL; MAX_CANDIDATES];
        let mut n = 0;
        let mut add = |g: u32, cands: &mut [u32; MAX_CANDIDATES]| {
            if g != NIL && n < MAX_CANDIDATES && !cands[..n].contains(&g) {
                cands[n] = g;
                n += 1;
            }
        };
        add(self.slots[self.global.tail as usize].group, &mut cands);
        if self.sticky != NIL && self.groups[self.sticky as usize].list.len > 0 {
            add(self.sticky, &mut cands);
        }
        if self.groups[0].list.len > 0 {
            add(0, &mut cands);
        }
        for set in &self.by_state {
            add(set.tail, &mut cands);
        }
        for _ in 0..SAMPLED_GROUPS.min(self.nonempty.len()) {
            let i = (self.next_random() % self.nonempty.len() as u64) as usize;
            add(self.nonempty[i], &mut cands);
        }
        let mut best = NIL;
        let mut best_score = f32::INFINITY;
        let mut best_last = u64::MAX;
        // Learn from the victim and from one other candidate per decision:
        // enough samples, at a fraction of the cost of keeping them all.
        let sampled = (self.next_random() % n as u64) as usize;
        let mut best_x = [0.0; FEATURES];
        for (i, &g) in cands[..n].iter().enumerate() {
            let k = self.groups[g as usize].list.tail;
            let x = self.features(k, now);
            let score = self.model.logit(&x);
            let last = self.slots[k as usize].last;
            if score < best_score || (score == best_score && last < best_last) {
                best = k;
                best_score = score;
                best_last = last;
                best_x = x;
            }
            if i == sampled {
                self.snapshot(k, x, now);
            }
        }
        if best != NIL {
            self.snapshot(best, best_x, now);
        }
        if best == NIL {
            return None;
        }
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
        if let Some(prev) = grp.state {
            let d = agent.since.0.saturating_sub(grp.since) as f64;
            let i = prev as usize;
            self.durations[i].add(d as u64);
            grp.mean[i] = if grp.mean[i] == 0.0 {
                d
            } else {
                0.7 * grp.mean[i] + 0.3 * d
            };
            self.global_mean[i] = if self.global_mean[i] == 0.0 {
                d
            } else {
                self.global_mean[i] + EWMA * (d - self.global_mean[i])
            };
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
    //! The store's policy contract (the same checks as
    //! `agentmem_core::policy::conformance`, which is private to that crate),
    //! and the model's predictions.

    use std::collections::BTreeSet;

    use agentmem_core::Importance;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn view(k: u32, size: u32) -> UnitView {
        UnitView {
            key: UnitKey(k),
            kind: Kind::Conversation,
            size,
            owner: Some(AgentId(k % 5)),
            now: Timestamp(u64::from(k)),
        }
    }

    #[test]
    fn fast_ln1p_is_close() {
        for i in 0..2000 {
            let x = (i as f32 * 0.37).powf(2.5);
            let (fast, exact) = (fast_ln1p(x), x.ln_1p());
            assert!(
                (fast - exact).abs() <= 0.01 + 0.005 * exact,
                "{x}: {fast} vs {exact}"
            );
        }
        assert!(fast_ln1p(f32::INFINITY).is_finite());
    }

    #[test]
    fn empty_policy_has_no_victim() {
        let mut p = LearnedPolicy::new();
        assert_eq!(p.victim(Timestamp(0)), None);
        p.remove(UnitKey(3));
        p.access(&view(3, 1));
        assert_eq!(p.len(), 0);
        assert_eq!(p.victim(Timestamp(0)), None);
    }

    #[test]
    fn drains_every_key_exactly_once() {
        let mut p = LearnedPolicy::new();
        for k in 0..100 {
            p.insert(&view(k, 1 + k % 7));
        }
        for k in (0..100).step_by(3) {
            p.access(&view(k, 1 + k % 7));
        }
        let mut seen = BTreeSet::new();
        while let Some(k) = p.victim(Timestamp(1000)) {
            assert!(seen.insert(k), "victim {k:?} returned twice");
        }
        assert_eq!(seen.len(), 100);
        assert!(p.is_empty());
    }

    #[test]
    fn random_operations_keep_the_contract() {
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut p = LearnedPolicy::new();
            let mut model = BTreeSet::new();
            for step in 0..5_000u64 {
                let k = rng.random_range(0..200u32);
                let mut v = view(k, rng.random_range(1..10_000));
                v.now = Timestamp(step);
                if rng.random_bool(0.2) {
                    v.owner = None;
                }
                match rng.random_range(0..100) {
                    0..=34 => {
                        p.insert(&v);
                        model.insert(k);
                    }
                    35..=59 => p.access(&v),
                    60..=69 => {
                        p.remove(UnitKey(k));
                        model.remove(&k);
                    }
                    70..=74 => p.agent_changed(&AgentView {
                        agent: AgentId(k % 5),
                        state: AgentState::ALL[rng.random_range(0..AgentState::ALL.len())],
                        importance: Importance(rng.random_range(0..=100)),
                        since: Timestamp(step),
                    }),
                    _ => match p.victim(Timestamp(step)) {
                        Some(victim) => assert!(
                            model.remove(&victim.0),
                            "seed {seed}: victim {victim:?} was not tracked"
                        ),
                        None => assert!(model.is_empty(), "seed {seed}: no victim"),
                    },
                }
                assert_eq!(p.len(), model.len(), "seed {seed} step {step}");
            }
            while let Some(victim) = p.victim(Timestamp(u64::MAX)) {
                assert!(model.remove(&victim.0), "seed {seed}: drained untracked");
            }
            assert!(model.is_empty(), "seed {seed}: never evicted: {model:?}");
        }
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
