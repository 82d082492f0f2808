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
//! victim is emptied rather than every agent losing a little), and
//! [`SAMPLED_GROUPS`] groups drawn at random. Each candidate's features are
//! scored by the model and the one least likely to be requested within the
//! horizon leaves. With no agents in the trace there is one group, so the
//! policy is exactly LRU: agent knowledge is the only thing it adds.
//!
//! # Features
//!
//! Recency (time since the unit's last request, relative to the horizon),
//! frequency, size, unit kind, the owner agent's state, how long the agent
//! has been in that state, and the agent's own history of how long that
//! state lasted before (its pause lengths and resume gaps); the last two are
//! per state, so the model can learn that a long wait for a person predicts
//! a longer one while a long wait for a model predicts an imminent resume.
//!
//! # How it learns
//!
//! When it scores candidates it keeps a snapshot of their features (at most
//! [`MAX_PENDING`] at a time). A snapshot is labelled positive if its unit
//! is requested again within the horizon, negative when the horizon passes
//! first, and each label is one stochastic-gradient step. The horizon is the
//! cache's own eviction age: the mean time its victims had gone unrequested,
//! which is the reuse distance that separates hits from misses in this
//! cache.
//!
//! The model is hand-written: it is a 32-weight dot product and a gradient
//! step, and the crates that offer logistic regression (linfa, smartcore)
//! train in batches over matrices, which cannot meet the 1 µs per decision
//! budget of a live store or learn continuously from a stream.

use std::collections::{HashMap, VecDeque};

use agentmem_core::policy::{AgentView, UnitView};
use agentmem_core::{AgentId, AgentState, EvictionPolicy, Kind, Timestamp, UnitKey};

use crate::policy::{DList, Node, NIL};

/// Groups drawn at random per decision, besides the two fixed candidates.
pub const SAMPLED_GROUPS: usize = 6;
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

/// Learning rate of the gradient steps.
const LEARNING_RATE: f32 = 0.05;
/// Weight of each new sample in the running means (horizon, pause lengths).
const EWMA: f64 = 0.02;

/// Online logistic regression over [`FEATURES`] inputs.
#[derive(Debug, Clone)]
pub struct ReuseModel {
    w: [f32; FEATURES],
    trained: u64,
}

impl Default for ReuseModel {
    fn default() -> Self {
        let mut w = [0.0; FEATURES];
        // Untrained, older means less likely to be reused: LRU.
        w[F_BIAS] = 1.0;
        w[F_AGE] = -2.0;
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
        sigmoid(self.logit(x))
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

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[inline]
fn ln1p_ratio(a: u64, h: f64) -> f32 {
    ((a as f64) / h).ln_1p() as f32
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    last: u64,
    freq: u32,
    size: u32,
    group: u32,
    pending: u32,
    kind: u8,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            last: 0,
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
    sticky: u32,
    /// Mean duration of each state over all agents.
    global_mean: [f64; 6],
    /// The horizon: mean age of victims.
    horizon: f64,
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
            sticky: NIL,
            global_mean: [0.0; 6],
            horizon: 0.0,
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

    /// The current horizon (in the clock's units, nanoseconds in a store).
    pub fn horizon(&self) -> f64 {
        self.horizon
    }

    fn group_for(&mut self, agent: u32) -> u32 {
        if let Some(&g) = self.group_of.get(&agent) {
            return g;
        }
        let g = self.groups.len() as u32;
        self.groups.push(Group::new());
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
        self.horizon.max(1.0)
    }

    fn features(&self, k: u32, now: u64) -> [f32; FEATURES] {
        let s = &self.slots[k as usize];
        let h = self.h();
        let mut x = [0.0f32; FEATURES];
        x[F_BIAS] = 1.0;
        x[F_AGE] = ln1p_ratio(now.saturating_sub(s.last), h);
        x[F_FREQ] = (s.freq as f32).ln_1p() / 3.0;
        x[F_KIND + usize::from(s.kind).min(4)] = 1.0;
        x[F_SIZE] = (s.size as f32).ln_1p() / 16.0;
        let g = &self.groups[s.group as usize];
        match g.state {
            Some(st) if s.group != 0 => {
                let i = st as usize;
                x[F_STATE + i] = 1.0;
                x[F_ELAPSED + i] = ln1p_ratio(now.saturating_sub(g.since), h);
                let m = if g.mean[i] > 0.0 {
                    g.mean[i]
                } else {
                    self.global_mean[i]
                };
                x[F_HISTORY + i] = (m / h).ln_1p() as f32;
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
                    let reused = now <= s.deadline;
                    let x = s.x;
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
            let s = self.pending.pop_front().unwrap_or_else(|| unreachable!());
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
        self.detach(k);
        let s = &mut self.slots[k as usize];
        if !tracked {
            s.freq = 0;
        }
        s.last = unit.now.0;
        s.freq = s.freq.saturating_add(1);
        s.size = unit.size;
        s.kind = unit.kind as u8;
        self.attach(k, g);
    }

    /// The probability, by the model, that `agent` requests its memory
    /// within the horizon from `now`: high for an agent about to resume.
    /// `None` for an agent never seen.
    pub fn resume_probability(&self, agent: AgentId, now: Timestamp) -> Option<f32> {
        let &g = self.group_of.get(&agent.0)?;
        let grp = &self.groups[g as usize];
        let st = grp.state?;
        let h = self.h();
        let i = st as usize;
        let mut x = [0.0f32; FEATURES];
        x[F_BIAS] = 1.0;
        x[F_AGE] = ln1p_ratio(now.0.saturating_sub(grp.since), h);
        x[F_FREQ] = 1.0f32.ln_1p() / 3.0;
        x[F_KIND + Kind::Conversation as usize] = 1.0;
        x[F_STATE + i] = 1.0;
        x[F_ELAPSED + i] = x[F_AGE];
        let m = if grp.mean[i] > 0.0 {
            grp.mean[i]
        } else {
            self.global_mean[i]
        };
        x[F_HISTORY + i] = (m / h).ln_1p() as f32;
        Some(self.model.probability(&x))
    }

    /// Agents that are not working now, most likely to resume first, with
    /// their [`resume_probability`](Self::resume_probability) at least
    /// `min_probability`: the ones whose units to prefetch.
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
        let mut cands = [NIL; SAMPLED_GROUPS + 2];
        let mut n = 0;
        let mut add = |g: u32, cands: &mut [u32; SAMPLED_GROUPS + 2]| {
            if g != NIL && !cands[..n].contains(&g) {
                cands[n] = g;
                n += 1;
            }
        };
        add(self.slots[self.global.tail as usize].group, &mut cands);
        if self.sticky != NIL && self.groups[self.sticky as usize].list.len > 0 {
            add(self.sticky, &mut cands);
        }
        if self.nonempty.len() <= SAMPLED_GROUPS {
            for i in 0..self.nonempty.len() {
                add(self.nonempty[i], &mut cands);
            }
        } else {
            for _ in 0..SAMPLED_GROUPS {
                let i = (self.next_random() % self.nonempty.len() as u64) as usize;
                add(self.nonempty[i], &mut cands);
            }
        }
        let mut best = NIL;
        let mut best_score = f32::INFINITY;
        let mut best_last = u64::MAX;
        for &g in &cands[..n] {
            let k = self.groups[g as usize].list.tail;
            let x = self.features(k, now);
            let score = self.model.logit(&x);
            let last = self.slots[k as usize].last;
            if score < best_score || (score == best_score && last < best_last) {
                best = k;
                best_score = score;
                best_last = last;
            }
            self.snapshot(k, x, now);
        }
        if best == NIL {
            return None;
        }
        let age = now.saturating_sub(self.slots[best as usize].last).max(1) as f64;
        self.horizon = if self.horizon == 0.0 {
            age
        } else {
            self.horizon + EWMA * (age - self.horizon)
        };
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
        if let Some(prev) = grp.state {
            let d = agent.since.0.saturating_sub(grp.since) as f64;
            let i = prev as usize;
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
