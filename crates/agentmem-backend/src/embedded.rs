//! The store in this process.

use std::ops::Range;

use agentmem_core::{
    AgentId, AgentState, ContentId, ConversationId, Importance, Kind, MemStats, Store, TenantId,
    Visibility, DEFAULT_MAX_UNIT_SIZE,
};
use bytes::Bytes;

use crate::{Backend, Result};

/// Settings of an embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Bytes of RAM for hot and warm units together. Default: 256 MiB.
    pub ram_budget: u64,
    /// Bytes for hot (plain) units; `None` lets the store choose.
    /// Default: `None`.
    pub hot_budget: Option<u64>,
    /// Largest unit or message accepted. Default: 1 GiB.
    pub max_unit_size: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            ram_budget: 256 << 20,
            hot_budget: None,
            max_unit_size: DEFAULT_MAX_UNIT_SIZE,
        }
    }
}

/// An [`agentmem_core::Store`] owned by this process: many agents, one
/// process, no daemon.
#[derive(Clone, Debug)]
pub struct EmbeddedBackend {
    store: Store,
}

impl EmbeddedBackend {
    /// Build a store with these settings.
    pub fn open(options: &EmbeddedOptions) -> Result<EmbeddedBackend> {
        let mut b = Store::builder()
            .ram_budget(options.ram_budget)
            .max_unit_size(options.max_unit_size);
        if let Some(h) = options.hot_budget {
            b = b.hot_budget(h);
        }
        Ok(EmbeddedBackend { store: b.build()? })
    }

    /// The store, for callers that want all of it.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Backend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn register_agent(&self, name: &str, tenant: &str, importance: u8) -> Result<AgentId> {
        Ok(self
            .store
            .register_agent(name, &TenantId::new(tenant), Importance(importance))?)
    }

    fn release_agent(&self, agent: AgentId) -> Result<()> {
        Ok(self.store.release_agent(agent)?)
    }

    fn set_state(&self, agent: AgentId, state: AgentState) -> Result<()> {
        if state == AgentState::Active && self.store.agent_info(agent)?.state.is_parked() {
            // Waking a parked agent prefetches its units, as `resume` does.
            self.store.resume(agent)?;
            return Ok(());
        }
        Ok(self.store.set_state(agent, state)?)
    }

    fn put(&self, agent: AgentId, kind: Kind, data: &[u8], vis: Visibility) -> Result<ContentId> {
        Ok(self.store.put(agent, kind, data, vis)?)
    }

    fn get(&self, agent: AgentId, id: &ContentId) -> Result<Bytes> {
        Ok(self.store.get_for(agent, id)?)
    }

    fn share(&self, from: AgentId, id: &ContentId, to: AgentId) -> Result<()> {
        Ok(self.store.share(from, id, to)?)
    }

    fn release(&self, agent: AgentId, id: &ContentId) -> Result<()> {
        Ok(self.store.release(agent, id)?)
    }

    fn mark_hot(&self, agent: AgentId, id: &ContentId) -> Result<()> {
        Ok(self.store.mark_hot(agent, id)?)
    }

    fn create_conversation(&self, agent: AgentId) -> Result<ConversationId> {
        Ok(self.store.create_conversation(agent)?)
    }

    fn append(&self, conversation: ConversationId, message: &[u8]) -> Result<u64> {
        Ok(self.store.append(conversation, message)?)
    }

    fn conversation_len(&self, conversation: ConversationId) -> Result<u64> {
        Ok(self.store.conversation_len(conversation)?)
    }

    fn read_messages(&self, conversation: ConversationId, range: Range<u64>) -> Result<Vec<Bytes>> {
        let len = self.store.conversation_len(conversation)?;
        let range = range.start.min(len)..range.end.min(len);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.store.read_messages(conversation, range)?)
    }

    fn delete_conversation(&self, conversation: ConversationId) -> Result<()> {
        Ok(self.store.delete_conversation(conversation)?)
    }

    fn mem_stats(&self) -> Result<MemStats> {
        Ok(self.store.stats().mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn round_trip_and_errors_have_kinds() {
        let b = EmbeddedBackend::open(&EmbeddedOptions {
            max_unit_size: 1024,
            ..Default::default()
        })
        .unwrap();
        let a = b.register_agent("a", "t", 50).unwrap();
        let c = b.register_agent("c", "other", 50).unwrap();
        let id = b.put(a, Kind::Blob, b"hello", Visibility::Private).unwrap();
        assert_eq!(&b.get(a, &id).unwrap()[..], b"hello");
        assert_eq!(b.get(c, &id).unwrap_err().kind(), ErrorKind::AccessDenied);
        b.share(a, &id, c).unwrap();
        assert_eq!(&b.get(c, &id).unwrap()[..], b"hello");
        let big = vec![0u8; 2048];
        assert_eq!(
            b.put(a, Kind::Blob, &big, Visibility::Private)
                .unwrap_err()
                .kind(),
            ErrorKind::TooLarge
        );
        assert_eq!(
            b.put(a, Kind::Blob, b"", Visibility::Private)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        b.release(a, &id).unwrap();
        assert_eq!(b.release(a, &id).unwrap_err().kind(), ErrorKind::NotOwner);
        b.release(c, &id).unwrap();
        assert_eq!(b.get(a, &id).unwrap_err().kind(), ErrorKind::UnknownUnit);
        let x = b.register_agent("x", "t", 1).unwrap();
        b.release_agent(x).unwrap();

        let conv = b.create_conversation(a).unwrap();
        for i in 0..5 {
            assert_eq!(b.append(conv, format!("m{i}").as_bytes()).unwrap(), i);
        }
        let last = b.read_messages(conv, 3..100).unwrap();
        assert_eq!(last.len(), 2);
        assert_eq!(&last[1][..], b"m4");
        assert!(b.read_messages(conv, 9..10).unwrap().is_empty());
        b.set_state(a, AgentState::Paused).unwrap();
        b.set_state(a, AgentState::Active).unwrap();
        // Only the five 2-byte messages are left: "hello" was released by both.
        assert_eq!(b.mem_stats().unwrap().total_allocated, 5 * 2);
    }
}
