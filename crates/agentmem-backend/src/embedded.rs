//! The store in this process.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use agentmem_core::{
    AgentId, AgentState, ContentId, ConversationId, Importance, Kind, MemStats, Store, TenantId,
    Visibility, DEFAULT_MAX_UNIT_SIZE,
};
use bytes::Bytes;
use parking_lot::Mutex;

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
    /// Directory of a persistent store: opened (created if missing, its
    /// last checkpoint restored) and locked against other processes;
    /// checkpointed by [`crate::Memory::close`]. `None`: RAM only.
    /// Default: `None`.
    pub dir: Option<PathBuf>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            ram_budget: 256 << 20,
            hot_budget: None,
            max_unit_size: DEFAULT_MAX_UNIT_SIZE,
            dir: None,
        }
    }
}

/// Restored agents by (tenant, name).
type Restored = HashMap<(String, String), Vec<AgentId>>;

/// An [`agentmem_core::Store`] owned by this process: many agents, one
/// process, no daemon.
///
/// With a directory, agents restored from it wait to be claimed: the first
/// [`Backend::register_agent`] of the same name and tenant gets the restored
/// agent back (its units and conversations, state `Active`), so a program
/// that registers its agents the same way after a restart finds their
/// memory again.
#[derive(Clone, Debug)]
pub struct EmbeddedBackend {
    store: Store,
    persistent: bool,
    /// Restored agents not claimed yet, by (tenant, name), oldest first.
    restored: Arc<Mutex<Restored>>,
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
        let Some(dir) = &options.dir else {
            return Ok(EmbeddedBackend {
                store: b.build()?,
                persistent: false,
                restored: Arc::default(),
            });
        };
        if dir.as_os_str().is_empty() {
            return Err(crate::Error::InvalidArgument(
                "the store directory is empty: pass a directory path, or none for RAM only".into(),
            ));
        }
        // The agents' private units live here: only this user may read a
        // directory made for them.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    crate::Error::Store(agentmem_core::Error::Cold(
                        agentmem_core::tier::ColdError::Io {
                            what: "creating the store directory".into(),
                            dir: dir.display().to_string(),
                            source: e,
                        },
                    ))
                })?;
        }
        let store = b.open(dir)?;
        let mut restored = Restored::new();
        for a in store.agents() {
            restored
                .entry((a.tenant.0.clone(), a.name.clone()))
                .or_default()
                .push(a.id);
        }
        for v in restored.values_mut() {
            // Popped from the end: oldest first.
            v.reverse();
        }
        Ok(EmbeddedBackend {
            store,
            persistent: true,
            restored: Arc::new(Mutex::new(restored)),
        })
    }

    /// Whether the store lives in a directory.
    pub fn is_persistent(&self) -> bool {
        self.persistent
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
        let claimed = self
            .restored
            .lock()
            .get_mut(&(tenant.to_string(), name.to_string()))
            .and_then(Vec::pop);
        if let Some(id) = claimed {
            self.store.set_importance(id, Importance(importance))?;
            self.set_state(id, AgentState::Active)?;
            return Ok(id);
        }
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

    fn close(&self) -> Result<()> {
        if self.persistent {
            self.store.checkpoint()?;
        }
        Ok(())
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
