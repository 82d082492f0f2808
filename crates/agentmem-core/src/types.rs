//! The domain's vocabulary: kinds of memory, tiers, agents and their states.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a semantic memory unit (SMU) holds. The kind picks the compression
/// dictionary and tells policies how the unit is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Kind {
    /// A system prompt; usually public and shared by many agents.
    SystemPrompt = 0,
    /// A set of tool definitions; usually public and shared.
    ToolDefs = 1,
    /// A chunk of a conversation (one or more consecutive messages).
    Conversation = 2,
    /// The output of a tool call.
    ToolResult = 3,
    /// Anything else.
    Blob = 4,
}

impl Kind {
    /// Every kind, in index order.
    pub const ALL: [Kind; 5] = [
        Kind::SystemPrompt,
        Kind::ToolDefs,
        Kind::Conversation,
        Kind::ToolResult,
        Kind::Blob,
    ];

    /// Dense index, for per-kind tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kind with this index, if any.
    pub const fn from_index(i: u8) -> Option<Kind> {
        match i {
            0 => Some(Kind::SystemPrompt),
            1 => Some(Kind::ToolDefs),
            2 => Some(Kind::Conversation),
            3 => Some(Kind::ToolResult),
            4 => Some(Kind::Blob),
            _ => None,
        }
    }

    /// The snake_case name used in stats, JSON and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::SystemPrompt => "system_prompt",
            Kind::ToolDefs => "tool_defs",
            Kind::Conversation => "conversation",
            Kind::ToolResult => "tool_result",
            Kind::Blob => "blob",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a unit's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Tier {
    /// T0: plain bytes in RAM, served without decoding.
    Hot = 0,
    /// T1: compressed bytes in RAM.
    Warm = 1,
    /// T2: compressed bytes on local disk (see [`crate::tier::ColdTier`]).
    Cold = 2,
}

impl Tier {
    /// Every tier, hottest first.
    pub const ALL: [Tier; 3] = [Tier::Hot, Tier::Warm, Tier::Cold];

    /// The snake_case name used in stats and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

/// What an agent is doing, which is what decides whose memory goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum AgentState {
    /// Working: reading and writing its memory now.
    Active = 0,
    /// Waiting for a model reply, which is usually due in seconds.
    WaitingForModel = 1,
    /// Waiting for a person, which may take minutes or hours.
    WaitingForHuman = 2,
    /// Running a tool; it will read its context when the tool returns.
    RunningTool = 3,
    /// Paused by an orchestrator or the user.
    Paused = 4,
    /// Registered but not doing anything (finished, or its process exited).
    Idle = 5,
}

impl AgentState {
    /// Every state.
    pub const ALL: [AgentState; 6] = [
        AgentState::Active,
        AgentState::WaitingForModel,
        AgentState::WaitingForHuman,
        AgentState::RunningTool,
        AgentState::Paused,
        AgentState::Idle,
    ];

    /// How soon the agent is expected to touch its memory again; a lower
    /// rank is a better eviction victim. Paused and idle agents go first,
    /// then agents waiting for a person, then those waiting for a model,
    /// and agents that are working or running a tool go last.
    pub const fn eviction_rank(self) -> u8 {
        match self {
            AgentState::Paused => 0,
            AgentState::Idle => 1,
            AgentState::WaitingForHuman => 2,
            AgentState::WaitingForModel => 3,
            AgentState::RunningTool => 4,
            AgentState::Active => 5,
        }
    }

    /// Whether the agent is not expected back soon, so its units are demoted
    /// as soon as it enters this state.
    pub const fn is_parked(self) -> bool {
        matches!(self, AgentState::Paused | AgentState::Idle)
    }

    /// The snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            AgentState::Active => "active",
            AgentState::WaitingForModel => "waiting_for_model",
            AgentState::WaitingForHuman => "waiting_for_human",
            AgentState::RunningTool => "running_tool",
            AgentState::Paused => "paused",
            AgentState::Idle => "idle",
        }
    }

    /// The state with this index, if any.
    pub const fn from_index(i: u8) -> Option<AgentState> {
        match i {
            0 => Some(AgentState::Active),
            1 => Some(AgentState::WaitingForModel),
            2 => Some(AgentState::WaitingForHuman),
            3 => Some(AgentState::RunningTool),
            4 => Some(AgentState::Paused),
            5 => Some(AgentState::Idle),
            _ => None,
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AgentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgentState::ALL
            .into_iter()
            .find(|st| st.name() == s || st.name().replace('_', "-") == s)
            .ok_or_else(|| {
                format!(
                    "unknown agent state {s:?}; expected one of active, waiting_for_model, \
                     waiting_for_human, running_tool, paused, idle"
                )
            })
    }
}

/// An agent registered with a store. Dense and never reused within a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentId(pub u32);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent#{}", self.0)
    }
}

/// A tenant: the owner of a private dedup domain. Content of one tenant is
/// never deduplicated against another tenant's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantId(pub String);

impl TenantId {
    /// A tenant with this name.
    pub fn new(name: impl Into<String>) -> Self {
        TenantId(name.into())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may see a unit and which dedup domain its id lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Shareable content (stock prompts, bundled tool definitions): one
    /// domain for everybody, so identical content is stored once store-wide.
    Public,
    /// Everything else: deduplicated only within the writer's tenant.
    Private,
}

/// How much an agent's memory matters when the store must choose a victim;
/// higher keeps it longer. Default: 50.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Importance(pub u8);

impl Default for Importance {
    fn default() -> Self {
        Importance(50)
    }
}

/// A conversation held by a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConversationId(pub u32);

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conversation#{}", self.0)
    }
}
