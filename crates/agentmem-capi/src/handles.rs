//! The process-wide handle tables.
//!
//! C callers get plain 64-bit values, not pointers: an index plus a
//! generation, like a file descriptor that cannot be reused by mistake.
//! A freed handle, a handle of a closed context, zero, or a made-up
//! number is looked up, found wanting and answered with an error code —
//! never dereferenced. This costs one short mutex-protected lookup per
//! call, which the bindings' benchmark in docs/bindings.md measures.

use agentmem_backend::{AgentId, ContentId, ConversationId, Memory};
use parking_lot::Mutex;

/// What a lookup found.
pub(crate) enum Found<T> {
    Live(T),
    /// The slot exists but its value was removed (freed, closed).
    Stale,
    /// Zero or never handed out.
    Never,
}

/// A generational slab: `raw = generation << 32 | (index + 1)`, so zero is
/// never a valid handle.
#[derive(Debug)]
pub(crate) struct Table<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T: Clone> Table<T> {
    const fn new() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> u64 {
        let index = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.0 = slot.0.wrapping_add(1).max(1);
                slot.1 = Some(value);
                i
            }
            None => {
                self.slots.push((1, Some(value)));
                (self.slots.len() - 1) as u32
            }
        };
        (u64::from(self.slots[index as usize].0) << 32) | (u64::from(index) + 1)
    }

    fn slot(&self, raw: u64) -> Option<(usize, bool)> {
        let index = (raw & 0xffff_ffff) as usize;
        let gen = (raw >> 32) as u32;
        if index == 0 || index > self.slots.len() || gen == 0 {
            return None;
        }
        let (slot_gen, value) = &self.slots[index - 1];
        Some((index - 1, *slot_gen == gen && value.is_some()))
    }

    pub(crate) fn get(&self, raw: u64) -> Found<T> {
        match self.slot(raw) {
            None => Found::Never,
            Some((_, false)) => Found::Stale,
            Some((i, true)) => Found::Live(self.slots[i].1.clone().expect("checked live")),
        }
    }

    pub(crate) fn remove(&mut self, raw: u64) -> Found<T> {
        match self.slot(raw) {
            None => Found::Never,
            Some((_, false)) => Found::Stale,
            Some((i, true)) => {
                self.free.push(i as u32);
                Found::Live(self.slots[i].1.take().expect("checked live"))
            }
        }
    }

    /// Remove every value for which `keep` is false.
    pub(crate) fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.1.as_ref().is_some_and(|v| !keep(v)) {
                slot.1 = None;
                self.free.push(i as u32);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.1.is_some()).count()
    }
}

/// An agent handle's target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AgentEntry {
    pub ctx: u64,
    pub agent: AgentId,
}

/// A unit handle's target: one reference of one agent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SmuEntry {
    pub ctx: u64,
    pub agent: AgentId,
    pub id: ContentId,
    pub size: u64,
}

/// A conversation handle's target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvEntry {
    pub ctx: u64,
    pub agent: AgentId,
    pub conv: ConversationId,
}

/// Every live handle of the process.
#[derive(Debug)]
pub(crate) struct Registry {
    pub ctxs: Table<Memory>,
    pub agents: Table<AgentEntry>,
    pub smus: Table<SmuEntry>,
    pub convs: Table<ConvEntry>,
}

impl Registry {
    /// Forget every handle that belongs to a context.
    pub(crate) fn drop_ctx(&mut self, ctx: u64) {
        self.agents.retain(|e| e.ctx != ctx);
        self.smus.retain(|e| e.ctx != ctx);
        self.convs.retain(|e| e.ctx != ctx);
    }

    /// Forget every handle that belongs to one agent of a context.
    pub(crate) fn drop_agent(&mut self, ctx: u64, agent: AgentId) {
        self.smus.retain(|e| e.ctx != ctx || e.agent != agent);
        self.convs.retain(|e| e.ctx != ctx || e.agent != agent);
    }
}

pub(crate) static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    ctxs: Table::new(),
    agents: Table::new(),
    smus: Table::new(),
    convs: Table::new(),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_made_up_handles_are_refused() {
        let mut t = Table::new();
        let a = t.insert(7u8);
        assert!(matches!(t.get(a), Found::Live(7)));
        assert!(matches!(t.get(0), Found::Never));
        assert!(matches!(t.get(a + 5), Found::Never));
        assert!(matches!(t.remove(a), Found::Live(7)));
        assert!(matches!(t.get(a), Found::Stale));
        assert!(matches!(t.remove(a), Found::Stale));
        // The slot is reused with a new generation: the old handle stays dead.
        let b = t.insert(9u8);
        assert_ne!(a, b);
        assert!(matches!(t.get(a), Found::Stale));
        assert!(matches!(t.get(b), Found::Live(9)));
        t.retain(|v| *v != 9);
        assert_eq!(t.live(), 0);
    }
}
