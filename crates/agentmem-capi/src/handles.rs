//! The process-wide handle tables.
//!
//! C callers get plain 64-bit values, not pointers: an index plus a
//! generation, like a file descriptor that cannot be reused by mistake.
//! A freed handle, a handle of a closed context, zero, or a made-up
//! number is looked up, found wanting and answered with an error code —
//! never dereferenced. This costs one short mutex-protected lookup per
//! call, which the bindings' benchmark in docs/bindings.md measures.
//!
//! Every handle also carries its type in its top byte, so a value of one
//! type passed where another is expected (an agent's handle to
//! `agentmem_close`, a unit's to `agent_conversation_append`) is refused
//! with `AGENTMEM_INVALID_HANDLE` naming both types, even when the index
//! and generation would match a live entry of the other table.

use agentmem_backend::{AgentId, ContentId, ConversationId, Memory};
use parking_lot::Mutex;

/// What a lookup found.
pub(crate) enum Found<T> {
    Live(T),
    /// The slot exists but its value was removed (freed, closed).
    Stale,
    /// Zero or never handed out.
    Never,
    /// A live-looking handle of another type (its type's C name).
    WrongType(&'static str),
}

/// The C type name of each handle type, by the tag in its top byte.
const TYPE_NAMES: [&str; 5] = [
    "(none)",
    "agentmem_ctx",
    "agentmem_agent",
    "agentmem_smu",
    "agentmem_conversation",
];

/// The C type name of the handle type tagged in `raw`, if any.
pub(crate) fn type_name(raw: u64) -> Option<&'static str> {
    match (raw >> TAG_SHIFT) as usize {
        0 => None,
        t => TYPE_NAMES.get(t).copied(),
    }
}

const TAG_SHIFT: u32 = 56;
const GEN_MASK: u32 = 0x00ff_ffff;

/// A generational slab of one handle type: `raw = tag << 56 |
/// generation << 32 | (index + 1)` with a 24-bit generation, so zero is
/// never a valid handle and no two types share a value.
#[derive(Debug)]
pub(crate) struct Table<T> {
    tag: u8,
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T: Clone> Table<T> {
    const fn new(tag: u8) -> Self {
        Table {
            tag,
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> u64 {
        let index = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.0 = (slot.0.wrapping_add(1) & GEN_MASK).max(1);
                slot.1 = Some(value);
                i
            }
            None => {
                self.slots.push((1, Some(value)));
                (self.slots.len() - 1) as u32
            }
        };
        (u64::from(self.tag) << TAG_SHIFT)
            | (u64::from(self.slots[index as usize].0) << 32)
            | (u64::from(index) + 1)
    }

    fn slot(&self, raw: u64) -> Option<(usize, bool)> {
        let index = (raw & 0xffff_ffff) as usize;
        let gen = (raw >> 32) as u32 & GEN_MASK;
        if index == 0 || index > self.slots.len() || gen == 0 {
            return None;
        }
        let (slot_gen, value) = &self.slots[index - 1];
        Some((index - 1, *slot_gen == gen && value.is_some()))
    }

    /// Another table's handle, by its tag.
    fn foreign(&self, raw: u64) -> Option<&'static str> {
        let tag = (raw >> TAG_SHIFT) as u8;
        if tag == self.tag {
            return None;
        }
        Some(type_name(raw).unwrap_or("(untyped value)"))
    }

    pub(crate) fn get(&self, raw: u64) -> Found<T> {
        if raw != 0 {
            if let Some(t) = self.foreign(raw) {
                return Found::WrongType(t);
            }
        }
        match self.slot(raw) {
            None => Found::Never,
            Some((_, false)) => Found::Stale,
            Some((i, true)) => Found::Live(self.slots[i].1.clone().expect("checked live")),
        }
    }

    pub(crate) fn remove(&mut self, raw: u64) -> Found<T> {
        if raw != 0 {
            if let Some(t) = self.foreign(raw) {
                return Found::WrongType(t);
            }
        }
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
    ctxs: Table::new(1),
    agents: Table::new(2),
    smus: Table::new(3),
    convs: Table::new(4),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_made_up_handles_are_refused() {
        let mut t = Table::new(2);
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

    #[test]
    fn the_first_handles_of_each_type_differ_and_cross_type_use_is_named() {
        let mut tables: Vec<Table<u8>> = (1..=4).map(Table::new).collect();
        let firsts: Vec<u64> = tables.iter_mut().map(|t| t.insert(1)).collect();
        for (i, t) in tables.iter().enumerate() {
            for (j, &h) in firsts.iter().enumerate() {
                match t.get(h) {
                    Found::Live(_) => assert_eq!(i, j),
                    Found::WrongType(name) => {
                        assert_ne!(i, j);
                        assert_eq!(name, TYPE_NAMES[j + 1]);
                    }
                    _ => panic!("table {i}, handle {j}"),
                }
            }
        }
        // An untagged value (as handles were before) is of no type.
        assert!(matches!(
            tables[0].get(firsts[0] & 0xffff_ffff_ffff),
            Found::WrongType(_)
        ));
    }
}
