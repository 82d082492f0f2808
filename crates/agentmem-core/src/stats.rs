//! What a store reports about itself.

use serde::Serialize;

use crate::codec::DictionaryInfo;
use crate::types::{AgentId, AgentState, Kind, Tier};

/// Bytes of one kind of unit.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindStats {
    /// The kind.
    pub kind: Option<Kind>,
    /// Distinct units held.
    pub units: u64,
    /// Bytes as the agents see them: each unit counted once per reference.
    pub logical_bytes: u64,
    /// Plain bytes of the distinct units (after dedup, before compression).
    pub unique_bytes: u64,
    /// Bytes actually held, all tiers.
    pub stored_bytes: u64,
    /// Stored bytes per tier.
    pub hot_bytes: u64,
    /// Stored bytes per tier.
    pub warm_bytes: u64,
    /// Stored bytes per tier.
    pub cold_bytes: u64,
    /// `logical_bytes / stored_bytes` (dedup and compression together).
    pub ratio: f64,
}

/// Bytes in one tier.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TierStats {
    /// The tier.
    pub tier: Option<Tier>,
    /// Units in it.
    pub units: u64,
    /// Their plain size.
    pub logical_bytes: u64,
    /// What they occupy there.
    pub stored_bytes: u64,
}

/// One agent's share of the store.
#[derive(Clone, Debug, Serialize)]
pub struct AgentStats {
    /// The agent.
    pub agent: AgentId,
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its state.
    pub state: AgentState,
    /// Its importance.
    pub importance: u8,
    /// Units it references.
    pub units: u64,
    /// Bytes it sees (plain size of everything it references).
    pub logical_bytes: u64,
    /// Stored bytes of units only it references.
    pub exclusive_bytes: u64,
    /// Its proportional share of units it shares with others (like PSS:
    /// a unit held by four agents charges a quarter to each).
    pub shared_bytes: u64,
    /// `exclusive_bytes + shared_bytes`.
    pub charged_bytes: u64,
}

/// The seed's `agent_mem_stats` figures.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MemStats {
    /// Bytes the agents have stored, as they see them (every reference).
    pub total_allocated: u64,
    /// Bytes not stored thanks to deduplication.
    pub total_deduplicated: u64,
    /// Plain bytes of distinct units over bytes held.
    pub compression_ratio: f64,
    /// Bytes held in the hot tier.
    pub hot_bytes: u64,
    /// Bytes held in the warm tier.
    pub warm_bytes: u64,
    /// Bytes held in the cold tier.
    pub cold_bytes: u64,
}

/// A snapshot of a store's accounting.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Per kind, in [`Kind::ALL`] order.
    pub kinds: Vec<KindStats>,
    /// Per tier, hottest first.
    pub tiers: Vec<TierStats>,
    /// The seed's summary figures.
    pub mem: MemStats,
    /// Per agent.
    pub agents: Vec<AgentStats>,
    /// Trained dictionaries.
    pub dictionaries: Vec<DictionaryInfo>,
    /// Bytes the dictionaries occupy (raw size; zstd's prepared tables for
    /// them are counted in `overhead_bytes`).
    pub dictionary_bytes: u64,
    /// Estimated bytes of bookkeeping: unit records, indexes, agents,
    /// conversations, sketches, samples awaiting training, zstd's prepared
    /// dictionaries and cached compression contexts.
    pub overhead_bytes: u64,
    /// Everything the store holds in RAM: hot + warm + dictionaries +
    /// overhead. This is what the store's accounting says its resident
    /// memory should be.
    pub accounted_ram_bytes: u64,
    /// Puts and seals that found their content already stored.
    pub dedup_hits: u64,
    /// Units stored as a delta against a similar unit.
    pub delta_units: u64,
    /// Conversations held.
    pub conversations: u64,
    /// The RAM budget (hot + warm) in bytes.
    pub ram_budget: u64,
    /// The hot budget in bytes.
    pub hot_budget: u64,
    /// Whether hot + warm exceeds the RAM budget with nothing left to demote
    /// (no cold tier attached).
    pub over_budget: bool,
}

impl Stats {
    /// Stats of one kind.
    pub fn kind(&self, kind: Kind) -> &KindStats {
        &self.kinds[kind.index()]
    }

    /// Stats of one tier.
    pub fn tier(&self, tier: Tier) -> &TierStats {
        &self.tiers[tier as usize]
    }
}
