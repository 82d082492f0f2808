//! The semantic policy: whose memory goes first is decided by what its agent
//! is doing, then by how long it has been doing it, then by its importance.
//!
//! Each agent's units form an LRU list; agents are ordered by
//! `(state rank, virtual idle start)` where the rank comes from
//! [`AgentState::eviction_rank`] (paused and idle first, then waiting for a
//! person, then waiting for a model, then running a tool, then working) and
//! the virtual idle start is the time the agent entered its state, moved
//! later by [`IMPORTANCE_CREDIT`] per importance point above the default
//! (earlier below it). Units shared by several agents or public sit in one
//! list ranked after every agent, since evicting them hurts all sharers.
//! Victims come from the tail of the first agent's list. Every operation is
//! O(log agents).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::{ensure_len, AgentView, EvictionPolicy, KeyList, Links, UnitKey, UnitView, NIL};
use crate::clock::Timestamp;
use crate::types::{AgentId, AgentState, Importance};

/// How much later an agent's idle time starts counting per point of
/// importance above the default (50): an agent of importance 100 is kept as
/// if it had gone idle 100 s after an agent of importance 50.
pub const IMPORTANCE_CREDIT: Duration = Duration::from_secs(2);

/// The list holding shared and public units.
const SHARED: u32 = u32::MAX - 1;
/// Rank of the shared list: after every agent state.
const SHARED_RANK: u8 = 6;

#[derive(Debug)]
struct Group {
    list: KeyList,
    rank: u8,
    virtual_since: u64,
}

/// Agent-state-first eviction.
#[derive(Debug)]
pub struct Semantic {
    links: Vec<Links>,
    /// Which group each key is in, or `NIL`.
    group_of: Vec<u32>,
    groups: HashMap<u32, Group>,
    /// Groups with at least one unit, first victim first.
    order: BTreeSet<(u8, u64, u32)>,
    agents: HashMap<u32, AgentView>,
    len: usize,
}

fn virtual_since(v: &AgentView) -> u64 {
    let credit = IMPORTANCE_CREDIT.as_nanos() as i128;
    let shift = (i128::from(v.importance.0) - i128::from(Importance::default().0)) * credit;
    (i128::from(v.since.0) + shift).clamp(0, i128::from(u64::MAX)) as u64
}

impl Semantic {
    /// An empty policy.
    pub fn new() -> Self {
        Semantic {
            links: Vec::new(),
            group_of: Vec::new(),
            groups: HashMap::new(),
            order: BTreeSet::new(),
            agents: HashMap::new(),
            len: 0,
        }
    }

    fn group_key(&self, owner: Option<AgentId>, now: Timestamp) -> (u32, u8, u64) {
        match owner {
            None => (SHARED, SHARED_RANK, 0),
            Some(a) => match self.agents.get(&a.0) {
                Some(v) => (a.0, v.state.eviction_rank(), virtual_since(v)),
                // Not told about this agent yet: treat it as working now.
                None => (a.0, AgentState::Active.eviction_rank(), now.0),
            },
        }
    }

    fn attach(&mut self, k: u32, owner: Option<AgentId>, now: Timestamp) {
        let (g, rank, vs) = self.group_key(owner, now);
        let group = self.groups.entry(g).or_insert_with(|| Group {
            list: KeyList::new(),
            rank,
            virtual_since: vs,
        });
        if group.list.len() == 0 {
            group.rank = rank;
            group.virtual_since = vs;
            self.order.insert((rank, vs, g));
        }
        group.list.push_front(&mut self.links, k);
        self.group_of[k as usize] = g;
        self.len += 1;
    }

    fn detach(&mut self, k: u32) {
        let g = self.group_of[k as usize];
        if g == NIL {
            return;
        }
        let group = self.groups.get_mut(&g).expect("tracked key's group exists");
        group.list.unlink(&mut self.links, k);
        if group.list.len() == 0 {
            self.order.remove(&(group.rank, group.virtual_since, g));
            self.groups.remove(&g);
        }
        self.group_of[k as usize] = NIL;
        self.len -= 1;
    }
}

impl Default for Semantic {
    fn default() -> Self {
        Self::new()
    }
}

impl EvictionPolicy for Semantic {
    fn name(&self) -> &'static str {
        "semantic"
    }

    fn insert(&mut self, unit: &UnitView) {
        ensure_len(&mut self.links, unit.key, Links::default());
        ensure_len(&mut self.group_of, unit.key, NIL);
        self.detach(unit.key.0);
        self.attach(unit.key.0, unit.owner, unit.now);
    }

    fn access(&mut self, unit: &UnitView) {
        if self
            .group_of
            .get(unit.key.index())
            .is_some_and(|&g| g != NIL)
        {
            self.detach(unit.key.0);
            self.attach(unit.key.0, unit.owner, unit.now);
        }
    }

    fn remove(&mut self, key: UnitKey) {
        if key.index() < self.group_of.len() {
            self.detach(key.0);
        }
    }

    fn victim(&mut self, _now: Timestamp) -> Option<UnitKey> {
        let &(_, _, g) = self.order.first()?;
        let k = self.groups.get(&g)?.list.tail()?;
        self.detach(k);
        Some(UnitKey(k))
    }

    fn agent_changed(&mut self, agent: &AgentView) {
        self.agents.insert(agent.agent.0, *agent);
        if let Some(group) = self.groups.get_mut(&agent.agent.0) {
            let (rank, vs) = (agent.state.eviction_rank(), virtual_since(agent));
            self.order
                .remove(&(group.rank, group.virtual_since, agent.agent.0));
            group.rank = rank;
            group.virtual_since = vs;
            self.order.insert((rank, vs, agent.agent.0));
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Kind;

    fn owned(k: u32, agent: u32, t: u64) -> UnitView {
        UnitView {
            key: UnitKey(k),
            kind: Kind::Conversation,
            size: 100,
            owner: Some(AgentId(agent)),
            now: Timestamp(t),
        }
    }

    fn set(p: &mut Semantic, agent: u32, state: AgentState, importance: u8, since: u64) {
        p.agent_changed(&AgentView {
            agent: AgentId(agent),
            state,
            importance: Importance(importance),
            since: Timestamp(since),
        });
    }

    #[test]
    fn agent_state_decides_before_recency() {
        let mut p = Semantic::new();
        set(&mut p, 1, AgentState::WaitingForModel, 50, 0);
        set(&mut p, 2, AgentState::WaitingForHuman, 50, 10);
        set(&mut p, 3, AgentState::Paused, 50, 20);
        set(&mut p, 4, AgentState::Active, 50, 0);
        p.insert(&owned(10, 1, 1));
        p.insert(&owned(20, 2, 2));
        p.insert(&owned(30, 3, 3));
        p.insert(&owned(40, 4, 0));
        p.insert(&UnitView {
            owner: None,
            ..owned(50, 0, 0)
        });
        let order: Vec<u32> = std::iter::from_fn(|| p.victim(Timestamp(0)).map(|k| k.0)).collect();
        // Paused, then waiting for a person, then for a model, then working,
        // and the shared unit last although it is the oldest.
        assert_eq!(order, vec![30, 20, 10, 40, 50]);
    }

    #[test]
    fn longer_idle_goes_first_and_importance_buys_time() {
        let mut p = Semantic::new();
        let s = 1_000_000_000u64; // one second in nanoseconds
        set(&mut p, 1, AgentState::WaitingForHuman, 50, 100 * s);
        set(&mut p, 2, AgentState::WaitingForHuman, 50, 50 * s);
        p.insert(&owned(1, 1, 0));
        p.insert(&owned(2, 2, 0));
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(2)));
        p.insert(&owned(2, 2, 0));
        // Agent 2 idle 50 s longer, but 30 points more important (60 s credit).
        set(&mut p, 2, AgentState::WaitingForHuman, 80, 50 * s);
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(1)));
    }

    #[test]
    fn within_an_agent_least_recent_unit_goes_first() {
        let mut p = Semantic::new();
        for k in 0..3 {
            p.insert(&owned(k, 7, u64::from(k)));
        }
        p.access(&owned(0, 7, 5));
        assert_eq!(p.victim(Timestamp(0)), Some(UnitKey(1)));
    }
}
