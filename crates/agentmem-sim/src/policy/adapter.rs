//! Runs a store policy ([`EvictionPolicy`]) in the simulator: the adapter
//! keeps the capacity accounting the store would keep and turns trace
//! records into the store's calls.

use agentmem_core::policy::{AgentView, UnitView};
use agentmem_core::{AgentId, AgentState, EvictionPolicy, Importance, Timestamp, UnitKey};

use super::{Capacity, SimPolicy};
use crate::trace::{Req, NO_AGENT};

/// Owner marker of a unit seen from several agents.
const SHARED: u32 = u32::MAX - 1;

/// A store policy with the store's bookkeeping around it. A unit's owner is
/// the one agent that has requested it; once a second agent requests it, it
/// is shared (owner `None`), as in the store.
#[derive(Debug)]
pub struct StoreAdapter<P> {
    policy: P,
    weight: Vec<u32>,
    owner: Vec<u32>,
    states: Vec<u8>,
    used: u64,
    cap: Capacity,
}

impl<P: EvictionPolicy> StoreAdapter<P> {
    /// Wrap `policy` for a cache of `cap` over `objects` ids.
    pub fn new(policy: P, cap: Capacity, objects: usize) -> Self {
        StoreAdapter {
            policy,
            weight: vec![0; objects],
            owner: vec![NO_AGENT; objects],
            states: Vec::new(),
            used: 0,
            cap,
        }
    }

    /// The wrapped policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    fn note_state(&mut self, agent: u32, state: AgentState, time: u64) {
        if agent == NO_AGENT || agent == SHARED {
            return;
        }
        let a = agent as usize;
        if a >= self.states.len() {
            if a > 1 << 24 {
                return; // not a dense id; the policy would gain nothing
            }
            self.states.resize(a + 1, u8::MAX);
        }
        if self.states[a] != state as u8 {
            self.states[a] = state as u8;
            self.policy.agent_changed(&AgentView {
                agent: AgentId(agent),
                state,
                importance: Importance::default(),
                since: Timestamp(time),
            });
        }
    }
}

impl<P: EvictionPolicy> SimPolicy for StoreAdapter<P> {
    fn request(&mut self, r: &Req) -> bool {
        self.note_state(r.agent, r.state, r.time);
        let i = r.id as usize;
        let owner = &mut self.owner[i];
        if *owner == NO_AGENT {
            *owner = r.agent;
        } else if *owner != r.agent {
            *owner = SHARED;
        }
        let view = UnitView {
            key: UnitKey(r.id),
            kind: r.kind,
            size: r.size,
            owner: match *owner {
                NO_AGENT | SHARED => None,
                a => Some(AgentId(a)),
            },
            now: Timestamp(r.time),
        };
        if self.weight[i] != 0 {
            self.policy.access(&view);
            return true;
        }
        let w = self.cap.weight(r).max(1);
        if w > self.cap.size {
            return false;
        }
        while self.used + w > self.cap.size {
            let Some(v) = self.policy.victim(Timestamp(r.time)) else {
                break;
            };
            let vi = v.index();
            self.used -= u64::from(self.weight.get(vi).copied().unwrap_or(0));
            if let Some(wt) = self.weight.get_mut(vi) {
                *wt = 0;
            }
        }
        self.policy.insert(&view);
        self.weight[i] = w as u32;
        self.used += w;
        false
    }

    fn agent_state(&mut self, agent: u32, state: AgentState, time: u64) {
        self.note_state(agent, state, time);
    }
}
