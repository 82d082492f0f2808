//! The store: units, agents, conversations, tiers and accounting.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::Mutex;
use serde::Serialize;
use smallvec::SmallVec;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::codec::{self, Dictionary, DictionaryInfo, Encoding, Frame, KindCodec};
use crate::conversation as chunk;
use crate::error::{Error, Result};
use crate::policy::{AgentView, EvictionPolicy, PolicyKind, UnitKey, UnitView};
use crate::redo::{self, Durability, Op};
use crate::similar::{self, Sketch};
use crate::stats::{AgentStats, KindStats, MemStats, Stats, TierStats};
use crate::tier::{ColdRecord, ColdTier};
use crate::trace::{AccessEvent, AccessOp, AccessSink};
use crate::types::{
    AgentId, AgentState, ConversationId, Importance, Kind, TenantId, Tier, Visibility,
};

#[path = "persist.rs"]
mod persist;
pub use persist::{check_references, CheckpointReport, OpenReport};

/// Largest unit accepted unless configured otherwise: 1 GiB.
pub const DEFAULT_MAX_UNIT_SIZE: u64 = 1 << 30;
const NIL: u32 = u32::MAX;
/// Near-duplicate candidates remembered per kind and domain.
const DELTA_CANDIDATES: usize = 64;
/// Longest chain of deltas (each decoded against the previous) allowed.
const MAX_CHAIN: u32 = 4;

/// The name of a unit: BLAKE3 of its bytes, keyed by its dedup domain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An id from its bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        ContentId(b)
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parse 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        blake3::Hash::from_hex(s)
            .map(|h| ContentId(*h.as_bytes()))
            .map_err(|e| Error::Config(format!("invalid content id {s:?}: {e}")))
    }

    /// First 8 bytes, little-endian: a well-mixed 64-bit name.
    pub fn short(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

type PolicyFactory = Arc<dyn Fn() -> Box<dyn EvictionPolicy> + Send + Sync>;

/// Builds a [`Store`].
pub struct StoreBuilder {
    ram_budget: u64,
    hot_budget: Option<u64>,
    max_unit_size: u64,
    clock: Arc<dyn Clock>,
    policy: PolicyKind,
    policy_factory: Option<PolicyFactory>,
    level: i32,
    dictionary_size: usize,
    train_after: usize,
    secret: Option<[u8; 32]>,
    sink: Option<Arc<dyn AccessSink>>,
    near_duplicates: bool,
    cold: Option<Arc<dyn ColdTier>>,
    checkpoint_every: Option<Duration>,
    durability: Durability,
}

impl fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("ram_budget", &self.ram_budget)
            .field("hot_budget", &self.hot_budget)
            .field("max_unit_size", &self.max_unit_size)
            .field("policy", &self.policy)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Default for StoreBuilder {
    fn default() -> Self {
        StoreBuilder {
            ram_budget: 256 << 20,
            hot_budget: None,
            max_unit_size: DEFAULT_MAX_UNIT_SIZE,
            clock: Arc::new(SystemClock::new()),
            policy: PolicyKind::default(),
            policy_factory: None,
            level: 9,
            dictionary_size: 110 * 1024,
            train_after: 1 << 20,
            secret: None,
            sink: None,
            near_duplicates: true,
            cold: None,
            checkpoint_every: Some(Duration::from_secs(30)),
            durability: Durability::DEFAULT,
        }
    }
}

impl StoreBuilder {
    /// Bytes of RAM the store may hold in hot and warm units together; above
    /// it, warm victims go to the cold tier when one is attached.
    /// Default: 256 MiB.
    pub fn ram_budget(mut self, bytes: u64) -> Self {
        self.ram_budget = bytes;
        self
    }

    /// Bytes of plain (hot) units; above it, the policy's victims are
    /// compressed into the warm tier. Default: a quarter of the RAM budget.
    pub fn hot_budget(mut self, bytes: u64) -> Self {
        self.hot_budget = Some(bytes);
        self
    }

    /// Largest unit accepted. Default: 1 GiB ([`DEFAULT_MAX_UNIT_SIZE`]).
    pub fn max_unit_size(mut self, bytes: u64) -> Self {
        self.max_unit_size = bytes;
        self
    }

    /// Where time comes from. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Which built-in policy chooses victims. Default: [`PolicyKind::Semantic`].
    pub fn policy(mut self, policy: PolicyKind) -> Self {
        self.policy = policy;
        self.policy_factory = None;
        self
    }

    /// Use policies made by `make` (one per tier) instead of a built-in one,
    /// e.g. a learned policy from another crate. Default: none.
    pub fn policy_factory(
        mut self,
        make: impl Fn() -> Box<dyn EvictionPolicy> + Send + Sync + 'static,
    ) -> Self {
        self.policy_factory = Some(Arc::new(make));
        self
    }

    /// zstd level for warm units (1–22); system prompts and tool
    /// definitions always get 19. Default: 9 (on the shared tau2
    /// conversations with a trained dictionary, 16 KiB chunks compress
    /// 6.5× at 9 and 5.5× at 3; decoding speed is the same).
    pub fn compression_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Size of each trained dictionary. Default: 110 KiB (zstd's own default).
    pub fn dictionary_size(mut self, bytes: usize) -> Self {
        self.dictionary_size = bytes;
        self
    }

    /// Bytes of samples of a kind collected before its dictionary is
    /// trained; 0 disables training. Default: 1 MiB.
    pub fn train_dictionaries_after(mut self, bytes: usize) -> Self {
        self.train_after = bytes;
        self
    }

    /// The secret that salts private dedup domains. Persistent stores pass
    /// the same secret on every open. Default: 32 random bytes.
    pub fn secret(mut self, secret: [u8; 32]) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Report every access to `sink` (trace recording). Default: none.
    pub fn access_sink(mut self, sink: Arc<dyn AccessSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Store large units that resemble a held one as deltas. Default: true.
    pub fn near_duplicates(mut self, on: bool) -> Self {
        self.near_duplicates = on;
        self
    }

    /// Attach a cold tier: warm victims go there when hot + warm bytes
    /// exceed the RAM budget, and come back on access or resume.
    /// Default: none (units stay in RAM).
    pub fn cold_tier(mut self, cold: Arc<dyn ColdTier>) -> Self {
        self.cold = Some(cold);
        self
    }

    /// With a cold tier, checkpoint the store this often in a background
    /// thread (see [`Store::checkpoint`]): a crash loses at most this much
    /// work. `None`: only explicit checkpoints. Default: 30 s.
    pub fn checkpoint_every(mut self, every: Option<Duration>) -> Self {
        self.checkpoint_every = every;
        self
    }

    /// When an acknowledged write of a store opened from a directory
    /// becomes durable (see [`Durability`]). Default:
    /// [`Durability::DEFAULT`], group commit every 10 ms.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Build the store.
    pub fn build(self) -> Result<Store> {
        if !(1..=22).contains(&self.level) {
            return Err(Error::Config(format!(
                "compression level {} is outside 1..=22",
                self.level
            )));
        }
        if self.max_unit_size == 0 || self.max_unit_size > u64::from(u32::MAX) {
            return Err(Error::Config(format!(
                "max unit size {} must be between 1 and {} bytes",
                self.max_unit_size,
                u32::MAX
            )));
        }
        let hot_budget = self.hot_budget.unwrap_or(self.ram_budget / 4);
        if hot_budget > self.ram_budget {
            return Err(Error::Config(format!(
                "hot budget {hot_budget} exceeds the RAM budget {}",
                self.ram_budget
            )));
        }
        let secret = match self.secret {
            Some(s) => s,
            None => random_secret()?,
        };
        let make: PolicyFactory = match self.policy_factory {
            Some(f) => f,
            None => {
                let kind = self.policy;
                Arc::new(move || kind.build())
            }
        };
        let state = State {
            units: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            agents: Vec::new(),
            tenants: HashMap::new(),
            conversations: Vec::new(),
            codecs: Default::default(),
            hot_policy: make(),
            warm_policy: make(),
            cold: self.cold.clone(),
            cold_deletes: Default::default(),
            candidates: HashMap::new(),
            counts: Default::default(),
            dedup_hits: 0,
            dedup_bytes: 0,
            delta_units: 0,
        };
        let checkpoint_every = self.checkpoint_every.filter(|_| self.cold.is_some());
        let store = Store {
            threads: Arc::new(Threads::default()),
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                cold_io: Mutex::new(()),
                opened: Mutex::new(None),
                cold_error: Mutex::new(None),
                prefetcher: std::sync::OnceLock::new(),
                redo: std::sync::OnceLock::new(),
                gate: parking_lot::RwLock::new(()),
                durability: self.durability,
                clock: self.clock,
                sink: self.sink,
                config: Config {
                    ram_budget: self.ram_budget,
                    hot_budget,
                    max_unit_size: self.max_unit_size,
                    level: self.level,
                    dictionary_size: self.dictionary_size,
                    train_after: self.train_after,
                    near_duplicates: self.near_duplicates,
                    public_key: blake3::derive_key("agentmem 2026 public domain v1", &[]),
                    secret,
                },
            }),
        };
        if let Some(every) = checkpoint_every {
            store.spawn("agentmem-checkpoint", every, move |store| {
                if let Err(e) = store.checkpoint() {
                    tracing::warn!("periodic checkpoint failed: {e}");
                }
                every
            })?;
        }
        Ok(store)
    }
}

fn put_op(agent: AgentId, kind: Kind, vis: Visibility, data: &[u8]) -> Op<'_> {
    Op::Put {
        agent: agent.0,
        kind,
        vis,
        data,
    }
}

fn random_secret() -> Result<[u8; 32]> {
    use std::io::Read;
    let mut s = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut s))
        .map_err(|e| Error::Config(format!("reading /dev/urandom for the store secret: {e}")))?;
    Ok(s)
}

#[derive(Debug)]
struct Config {
    ram_budget: u64,
    hot_budget: u64,
    max_unit_size: u64,
    level: i32,
    dictionary_size: usize,
    train_after: usize,
    near_duplicates: bool,
    public_key: [u8; 32],
    secret: [u8; 32],
}

/// The semantic store. Cheap to clone; clones share the same store.
#[derive(Clone)]
pub struct Store {
    // Declared first so it drops first: when the last handle goes, the
    // store's threads are stopped and joined before `inner` is released,
    // so the store (and its directory lock) closes on the dropping thread.
    threads: Arc<Threads>,
    inner: Arc<Inner>,
}

/// The store's background threads (checkpoints, prefetch).
#[derive(Default)]
struct Threads {
    stop: Arc<(Mutex<bool>, parking_lot::Condvar)>,
    handles: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        for h in self.handles.lock().drain(..) {
            let _ = h.join();
        }
    }
}

impl Threads {
    /// Sleep up to `d`; false once the store is closing.
    fn wait(stop: &(Mutex<bool>, parking_lot::Condvar), d: Duration) -> bool {
        let mut s = stop.0.lock();
        if !*s {
            stop.1.wait_for(&mut s, d);
        }
        !*s
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    state: Mutex<State>,
    /// Held while moving units to or deleting them from the cold tier, so a
    /// late delete can never remove a newer copy of the same id.
    cold_io: Mutex<()>,
    /// Set by [`Store::open`].
    opened: Mutex<Option<OpenReport>>,
    /// The last failure to move units to the cold tier.
    cold_error: Mutex<Option<String>>,
    /// Feeds the background prefetch thread ([`Store::resume_in_background`]).
    prefetcher: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<AgentId>>>,
    /// The redo log of a store opened from a directory (set once its log
    /// is replayed; unset while replaying, so replay logs nothing).
    redo: std::sync::OnceLock<Arc<redo::Log>>,
    /// Held shared by operations that change the store in more than one
    /// locked step (fork), exclusively by a checkpoint: its image never
    /// shows half an operation.
    gate: parking_lot::RwLock<()>,
    durability: Durability,
    clock: Arc<dyn Clock>,
    sink: Option<Arc<dyn AccessSink>>,
    config: Config,
}

/// What an agent is, as the store reports it.
#[derive(Clone, Debug, Serialize)]
pub struct AgentInfo {
    /// The agent.
    pub id: AgentId,
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its state.
    pub state: AgentState,
    /// Its importance.
    pub importance: Importance,
    /// Units it references.
    pub units: u64,
    /// Conversations it owns.
    pub conversations: u64,
}

/// What a unit is, as the store reports it.
#[derive(Clone, Debug, Serialize)]
pub struct UnitInfo {
    /// Its kind.
    pub kind: Kind,
    /// Where its bytes are.
    pub tier: Tier,
    /// Plain size.
    pub logical_bytes: u64,
    /// Size where it is held.
    pub stored_bytes: u64,
    /// References held by agents.
    pub refs: u64,
    /// Who may read it.
    pub visibility: Visibility,
    /// Whether it is stored as a delta against a similar unit.
    pub delta: bool,
}

/// What a resume brought back.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ResumeReport {
    /// Units promoted to hot.
    pub units: u64,
    /// Their plain bytes.
    pub bytes: u64,
    /// Wall time the prefetch took.
    pub elapsed: Duration,
}

#[derive(Debug)]
enum Body {
    /// Plain bytes, and the compressed frame they came from if it is still
    /// valid: demoting such a "clean" unit again costs nothing.
    Hot(Bytes, Option<Frame>),
    Warm(Frame),
    /// On the cold tier under the unit's id: its stored size and encoding.
    Cold(u32, Encoding),
}

#[derive(Debug)]
struct Unit {
    id: ContentId,
    body: Body,
    /// (agent, references) pairs.
    owners: SmallVec<[(u32, u32); 1]>,
    /// Units stored as deltas against this one.
    dependents: u32,
    /// The unit this one is a delta against, or `NIL`.
    base: u32,
    logical: u32,
    /// Bytes of `logical` that are the store's own framing (a conversation
    /// chunk's offset table), not agent data.
    framing: u16,
    /// 64-bit BLAKE3 of the plain bytes, checked on every decode.
    check: u64,
    last_access: Timestamp,
    /// Tenant index, or `NIL` for public units.
    tenant: u32,
    kind: Kind,
    /// An open conversation chunk: mutable, not in the dedup index.
    open: bool,
    /// The unit's current bytes are on the cold tier under [`Unit::cold_key`]
    /// with this stored size and encoding.
    disk: Option<(u32, Encoding)>,
    /// Bumped on every change of body, so that a decode done outside the
    /// lock is installed only if nothing changed meanwhile.
    generation: u32,
}

impl Unit {
    fn tier(&self) -> Tier {
        match self.body {
            Body::Hot(..) => Tier::Hot,
            Body::Warm(_) => Tier::Warm,
            Body::Cold(..) => Tier::Cold,
        }
    }

    fn stored(&self) -> u64 {
        match &self.body {
            Body::Hot(b, clean) => (b.len() + clean.as_ref().map_or(0, |f| f.bytes.len())) as u64,
            Body::Warm(f) => f.bytes.len() as u64,
            Body::Cold(n, _) => u64::from(*n),
        }
    }

    /// The unit's name on the cold tier. An open chunk's bytes change with
    /// every append, so its name includes their checksum: a record is never
    /// overwritten with other content, and the last checkpoint's records
    /// stay valid until the next one.
    fn cold_key(&self) -> ContentId {
        if self.open {
            ContentId(*blake3::keyed_hash(&self.id.0, &self.check.to_le_bytes()).as_bytes())
        } else {
            self.id
        }
    }

    fn refs(&self) -> u64 {
        self.owners.iter().map(|&(_, n)| u64::from(n)).sum()
    }

    fn single_owner(&self) -> Option<AgentId> {
        match self.owners.as_slice() {
            [(a, _)] if self.tenant != NIL => Some(AgentId(*a)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Agent {
    name: String,
    tenant: u32,
    state: AgentState,
    importance: Importance,
    since: Timestamp,
    /// Units it references (each once).
    units: Vec<u32>,
    conversations: Vec<u32>,
    released: bool,
}

#[derive(Debug)]
struct Conversation {
    agent: u32,
    /// Sealed chunks: (unit, index of its first message).
    chunks: Vec<(u32, u64)>,
    /// The open chunk, or `NIL`.
    tail: u32,
    /// Index of the open chunk's first message.
    tail_first: u64,
    len: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    units: u64,
    logical: u64,
    stored: u64,
}

struct State {
    units: Vec<Option<Unit>>,
    free: Vec<u32>,
    /// Dedup index over sealed units: slot numbers, hashed by content id.
    index: HashTable<u32>,
    agents: Vec<Agent>,
    tenants: HashMap<TenantId, (u32, [u8; 32])>,
    conversations: Vec<Option<Conversation>>,
    codecs: [KindCodec; 5],
    hot_policy: Box<dyn EvictionPolicy>,
    /// Chooses warm units to move to the cold tier (when one is attached).
    warm_policy: Box<dyn EvictionPolicy>,
    cold: Option<Arc<dyn ColdTier>>,
    /// Cold records no unit needs any more; deleted by the next checkpoint
    /// (after it no longer refers to them), outside the lock.
    cold_deletes: hashbrown::HashSet<ContentId>,
    /// Near-duplicate bases per (kind, tenant or NIL).
    candidates: HashMap<(Kind, u32), Vec<(u32, Sketch)>>,
    /// Per kind, per tier.
    counts: [[Count; 3]; 5],
    dedup_hits: u64,
    dedup_bytes: u64,
    delta_units: u64,
}

/// A decode to do outside the lock.
struct Pending {
    key: u32,
    generation: u32,
    frame: Frame,
    len: usize,
    check: u64,
    dict: Option<Arc<Dictionary>>,
    base: Option<Bytes>,
    /// Set when the frame is on the cold tier: where to fetch it from.
    cold: Option<(Arc<dyn ColdTier>, ContentId)>,
    /// The frame fetched from the cold tier, kept so that promoting the
    /// unit leaves it clean (demoting it again costs nothing).
    fetched: std::cell::OnceCell<Frame>,
}

fn check_of(data: &[u8]) -> u64 {
    let h = blake3::hash(data);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

impl Pending {
    fn decode(&self) -> Result<Bytes> {
        let frame = match &self.cold {
            None => &self.frame,
            Some((cold, id)) => {
                let rec = cold
                    .get(id.as_bytes())
                    .map_err(Error::cold)?
                    .ok_or_else(|| Error::Corrupt {
                        what: "cold unit".into(),
                        detail: format!("{id} is missing from the cold tier"),
                    })?;
                let f = Frame {
                    bytes: Bytes::from(rec.bytes),
                    encoding: self.frame.encoding,
                };
                if Encoding::from_tag(rec.encoding) != f.encoding {
                    return Err(Error::Corrupt {
                        what: "cold unit".into(),
                        detail: format!("{id} was stored with another encoding"),
                    });
                }
                self.fetched.get_or_init(|| f)
            }
        };
        let plain = codec::decompress(frame, self.len, self.dict.as_deref(), self.base.as_deref())?;
        if check_of(&plain) != self.check {
            return Err(Error::Corrupt {
                what: "warm unit".into(),
                detail: "checksum mismatch after decompression".into(),
            });
        }
        Ok(Bytes::from(plain))
    }
}

impl State {
    fn unit(&self, k: u32) -> &Unit {
        self.units[k as usize].as_ref().expect("live unit")
    }

    fn unit_mut(&mut self, k: u32) -> &mut Unit {
        self.units[k as usize].as_mut().expect("live unit")
    }

    fn lookup(&self, id: &ContentId) -> Option<u32> {
        self.index
            .find(id.short(), |&k| {
                self.units[k as usize].as_ref().is_some_and(|u| u.id == *id)
            })
            .copied()
    }

    fn index_insert(&mut self, k: u32) {
        let State { index, units, .. } = self;
        let short = units[k as usize].as_ref().expect("live unit").id.short();
        index.insert_unique(short, k, |&x| {
            units[x as usize]
                .as_ref()
                .expect("indexed units are live")
                .id
                .short()
        });
    }

    /// A unit some agent still references. A unit kept only because deltas
    /// depend on it is not visible (until someone stores it again).
    fn lookup_held(&self, id: &ContentId) -> Result<u32> {
        self.lookup(id)
            .filter(|&k| !self.unit(k).owners.is_empty())
            .ok_or_else(|| Error::unknown_unit(id))
    }

    /// How many deltas must be decoded to read this unit.
    fn chain_depth(&self, mut k: u32) -> u32 {
        let mut depth = 0;
        while self.unit(k).base != NIL {
            k = self.unit(k).base;
            depth += 1;
        }
        depth
    }

    fn agent(&self, a: AgentId) -> Result<&Agent> {
        self.agents
            .get(a.0 as usize)
            .filter(|ag| !ag.released)
            .ok_or(Error::UnknownAgent(a))
    }

    fn count(&mut self, u_kind: Kind, tier: Tier, logical: u64, stored: u64, add: bool) {
        let c = &mut self.counts[u_kind.index()][tier as usize];
        if add {
            c.units += 1;
            c.logical += logical;
            c.stored += stored;
        } else {
            c.units -= 1;
            c.logical -= logical;
            c.stored -= stored;
        }
    }

    fn tier_bytes(&self, tier: Tier) -> u64 {
        self.counts.iter().map(|k| k[tier as usize].stored).sum()
    }

    fn view(&self, k: u32, now: Timestamp) -> UnitView {
        let u = self.unit(k);
        UnitView {
            key: UnitKey(k),
            kind: u.kind,
            size: u.stored() as u32,
            owner: u.single_owner(),
            now,
        }
    }

    fn alloc(&mut self, unit: Unit) -> u32 {
        let (kind, tier, logical, stored) = (
            unit.kind,
            unit.tier(),
            u64::from(unit.logical),
            unit.stored(),
        );
        self.count(kind, tier, logical, stored, true);
        match self.free.pop() {
            Some(k) => {
                self.units[k as usize] = Some(unit);
                k
            }
            None => {
                self.units.push(Some(unit));
                (self.units.len() - 1) as u32
            }
        }
    }

    fn add_owner(&mut self, k: u32, agent: u32) {
        let u = self.unit_mut(k);
        if let Some(o) = u.owners.iter_mut().find(|o| o.0 == agent) {
            o.1 += 1;
        } else {
            u.owners.push((agent, 1));
            self.agents[agent as usize].units.push(k);
        }
    }

    /// Drop one of `agent`'s references; frees the unit when none is left.
    fn drop_ref(&mut self, k: u32, agent: u32) -> bool {
        let u = self.unit_mut(k);
        let Some(pos) = u.owners.iter().position(|o| o.0 == agent) else {
            return false;
        };
        u.owners[pos].1 -= 1;
        if u.owners[pos].1 == 0 {
            u.owners.swap_remove(pos);
            let list = &mut self.agents[agent as usize].units;
            if let Some(p) = list.iter().position(|&x| x == k) {
                list.swap_remove(p);
            }
        }
        self.maybe_free(k);
        true
    }

    fn maybe_free(&mut self, k: u32) {
        let u = self.unit(k);
        if !u.owners.is_empty() || u.dependents > 0 {
            return;
        }
        let u = self.units[k as usize].take().expect("live unit");
        self.count(u.kind, u.tier(), u64::from(u.logical), u.stored(), false);
        self.hot_policy.remove(UnitKey(k));
        self.warm_policy.remove(UnitKey(k));
        if u.disk.is_some() {
            self.cold_deletes.insert(u.cold_key());
        }
        if !u.open {
            if let Ok(e) = self.index.find_entry(u.id.short(), |&x| x == k) {
                e.remove();
            }
        }
        if let Some(c) = self.candidates.get_mut(&(u.kind, u.tenant)) {
            c.retain(|(x, _)| *x != k);
        }
        if u.base != NIL {
            self.delta_units -= 1;
            self.unit_mut(u.base).dependents -= 1;
            self.maybe_free(u.base);
        }
        self.free.push(k);
    }

    fn set_body(&mut self, k: u32, body: Body) {
        let u = self.unit(k);
        let (logical, check) = (u.logical, u.check);
        self.replace_body(k, body, logical, check);
    }

    /// Replace a unit's body (and plain size), keeping the counts right.
    fn replace_body(&mut self, k: u32, body: Body, logical: u32, check: u64) {
        let u = self.units[k as usize].as_mut().expect("live unit");
        let (kind, old_tier, old_logical, old_stored) =
            (u.kind, u.tier(), u64::from(u.logical), u.stored());
        u.body = body;
        u.logical = logical;
        u.check = check;
        u.generation = u.generation.wrapping_add(1);
        let (new_tier, new_stored) = (u.tier(), u.stored());
        self.count(kind, old_tier, old_logical, old_stored, false);
        self.count(kind, new_tier, u64::from(logical), new_stored, true);
        if self.cold.is_some() && old_tier != new_tier {
            if old_tier == Tier::Warm {
                self.warm_policy.remove(UnitKey(k));
            }
            if new_tier == Tier::Warm {
                let v = self.view(k, self.unit(k).last_access);
                self.warm_policy.insert(&v);
            }
        }
    }

    /// Plain bytes of a unit that is hot or whose decode can be done here.
    fn plain_locked(&self, k: u32) -> Result<Bytes> {
        if matches!(self.unit(k).body, Body::Cold(..)) {
            // Disk I/O never happens under the store's lock.
            return Err(Error::cold(std::io::Error::other(
                "internal: a cold unit was needed under the store lock; fetch it first",
            )));
        }
        match self.pending(k)? {
            Ok(b) => Ok(b),
            Err(p) => p.decode(),
        }
    }

    /// The dictionary a frame of `kind` with `encoding` needs, if any.
    fn dictionary_for(&self, kind: Kind, encoding: Encoding) -> Result<Option<Arc<Dictionary>>> {
        match encoding {
            Encoding::Zstd { dict } if dict > 0 => self.codecs[kind.index()]
                .version(dict)
                .cloned()
                .map(Some)
                .ok_or_else(|| Error::Corrupt {
                    what: format!("{kind} unit"),
                    detail: format!("it needs dictionary version {dict}, which is missing"),
                }),
            _ => Ok(None),
        }
    }

    /// Hot bytes, or what is needed to decode them outside the lock.
    fn pending(&self, k: u32) -> Result<Result<Bytes, Pending>> {
        let u = self.unit(k);
        match &u.body {
            Body::Hot(b, _) => Ok(Ok(b.clone())),
            &Body::Cold(_, encoding) => {
                let dict = self.dictionary_for(u.kind, encoding)?;
                let cold = self
                    .cold
                    .clone()
                    .expect("cold units exist only with a cold tier");
                Ok(Err(Pending {
                    key: k,
                    generation: u.generation,
                    frame: Frame {
                        bytes: Bytes::new(),
                        encoding,
                    },
                    len: u.logical as usize,
                    check: u.check,
                    dict,
                    base: None,
                    cold: Some((cold, u.cold_key())),
                    fetched: Default::default(),
                }))
            }
            Body::Warm(frame) => {
                let dict = self.dictionary_for(u.kind, frame.encoding)?;
                let base = if frame.encoding == Encoding::Delta {
                    Some(self.plain_locked(u.base)?)
                } else {
                    None
                };
                Ok(Err(Pending {
                    key: k,
                    generation: u.generation,
                    frame: frame.clone(),
                    len: u.logical as usize,
                    check: u.check,
                    dict,
                    base,
                    cold: None,
                    fetched: Default::default(),
                }))
            }
        }
    }

    /// Compress a hot unit into the warm tier.
    fn demote(&mut self, k: u32, level: i32) -> Result<()> {
        let u = self.unit(k);
        let Body::Hot(plain, clean) = &u.body else {
            return Ok(());
        };
        if let Some(frame) = clean {
            let frame = frame.clone();
            self.hot_policy.remove(UnitKey(k));
            self.set_body(k, Body::Warm(frame));
            return Ok(());
        }
        let plain = plain.clone();
        let kind = u.kind;
        let base = u.base;
        let dict = self.codecs[kind.index()].current().cloned();
        let mut frame = codec::compress(&plain, codec::level_for(kind, level), dict.as_deref());
        if base != NIL {
            let reference = self.plain_locked(base)?;
            match codec::compress_delta(&plain, &reference) {
                Some(d) if d.len() < frame.bytes.len() => {
                    frame = Frame {
                        bytes: d,
                        encoding: Encoding::Delta,
                    }
                }
                _ => {
                    // The delta does not pay: stand alone from now on.
                    self.unit_mut(k).base = NIL;
                    self.delta_units -= 1;
                    self.unit_mut(base).dependents -= 1;
                    self.maybe_free(base);
                }
            }
        }
        self.hot_policy.remove(UnitKey(k));
        self.set_body(k, Body::Warm(frame));
        Ok(())
    }

    fn promote(&mut self, k: u32, plain: Bytes, now: Timestamp, fetched: Option<Frame>) {
        let clean = match &self.unit(k).body {
            Body::Warm(f) => Some(f.clone()),
            Body::Cold(..) => fetched,
            Body::Hot(..) => None,
        };
        self.set_body(k, Body::Hot(plain, clean));
        let v = self.view(k, now);
        self.hot_policy.insert(&v);
    }

    fn touch(&mut self, k: u32, now: Timestamp) {
        self.unit_mut(k).last_access = now;
        if matches!(self.unit(k).body, Body::Hot(..)) {
            let v = self.view(k, now);
            self.hot_policy.access(&v);
        }
    }

    /// Whether every owner of the unit is paused or idle (so nobody will
    /// read it soon).
    fn all_owners_parked(&self, k: u32) -> bool {
        self.unit(k)
            .owners
            .iter()
            .all(|&(a, _)| self.agents[a as usize].state.is_parked())
    }

    fn enforce_hot_budget(&mut self, budget: u64, level: i32, now: Timestamp) -> Result<()> {
        while self.tier_bytes(Tier::Hot) > budget {
            let Some(UnitKey(k)) = self.hot_policy.victim(now) else {
                break;
            };
            if self.units.get(k as usize).is_some_and(|u| u.is_some()) {
                self.demote(k, level)?;
            }
        }
        Ok(())
    }

    fn agent_view(&self, a: u32) -> AgentView {
        let ag = &self.agents[a as usize];
        AgentView {
            agent: AgentId(a),
            state: ag.state,
            importance: ag.importance,
            since: ag.since,
        }
    }
}

impl Store {
    /// A builder with the documented defaults.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// A store with every default.
    pub fn new() -> Result<Store> {
        Self::builder().build()
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Log a mutating operation (under the state lock, after it
    /// succeeded). Returns the log position to [`Store::commit`] to.
    fn log(&self, _st: &State, op: &Op<'_>) -> Result<u64> {
        match self.inner.redo.get() {
            Some(l) => Ok(l.append(op)? + 1),
            None => Ok(0),
        }
    }

    /// After releasing the lock: the operation logged at `pos` goes to the
    /// log file (with [`Durability::Sync`], fdatasynced) before the call
    /// that made it returns.
    fn commit(&self, pos: u64) -> Result<()> {
        match (self.inner.redo.get(), self.inner.durability) {
            (Some(l), Durability::Sync) if pos > 0 => l.sync_to(pos),
            (Some(l), Durability::Group(_)) if pos > 0 => l.write_out(pos).map(drop),
            _ => Ok(()),
        }
    }

    /// Make every write acknowledged so far durable now (write and
    /// fdatasync the redo log). With [`Durability::Checkpoint`], take a
    /// checkpoint instead. A store without a directory has nothing to do.
    pub fn sync(&self) -> Result<()> {
        match self.inner.redo.get() {
            Some(l) if l.enabled() => l.sync_to(l.logged()),
            Some(_) => self.checkpoint().map(|_| ()),
            None => Ok(()),
        }
    }

    /// How many operations the redo log has taken since the store was
    /// created, and how many of them are fdatasynced: an operation that
    /// returned when the first figure was `n` survives a power cut once the
    /// second is `>= n` (it survives the process being killed as soon as it
    /// returned). `(0, 0)` without a redo log.
    pub fn log_position(&self) -> (u64, u64) {
        match self.inner.redo.get() {
            Some(l) if l.enabled() => (l.logged(), l.durable()),
            _ => (0, 0),
        }
    }

    /// The store's durability policy.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// fdatasyncs of the redo log since open.
    pub fn log_fsyncs(&self) -> u64 {
        self.inner.redo.get().map_or(0, |l| l.fsyncs())
    }

    fn cfg(&self) -> &Config {
        &self.inner.config
    }

    fn record(&self, st: &State, k: u32, agent: Option<u32>, op: AccessOp, now: Timestamp) {
        if let Some(sink) = &self.inner.sink {
            let u = st.unit(k);
            let (agent, agent_state) = match agent {
                Some(a) => (Some(AgentId(a)), st.agents[a as usize].state),
                None => (None, AgentState::Active),
            };
            sink.record(&AccessEvent {
                time: now,
                object: u.id.short(),
                size: u.logical,
                kind: u.kind,
                agent,
                agent_state,
                op,
            });
        }
    }

    // ---- agents -------------------------------------------------------

    /// Register an agent of `tenant`. Names need not be unique.
    pub fn register_agent(
        &self,
        name: &str,
        tenant: &TenantId,
        importance: Importance,
    ) -> Result<AgentId> {
        let now = self.now();
        let mut st = self.inner.state.lock();
        let next = st.tenants.len() as u32;
        let secret = self.cfg().secret;
        let t = st
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                let mut h = blake3::Hasher::new_derive_key("agentmem 2026 tenant domain v1");
                h.update(&secret);
                h.update(tenant.0.as_bytes());
                (next, *h.finalize().as_bytes())
            })
            .0;
        let id = u32::try_from(st.agents.len())
            .ok()
            .filter(|&i| i < NIL)
            .ok_or_else(|| Error::Config("too many agents".into()))?;
        st.agents.push(Agent {
            name: name.to_string(),
            tenant: t,
            state: AgentState::Active,
            importance,
            since: now,
            units: Vec::new(),
            conversations: Vec::new(),
            released: false,
        });
        let v = st.agent_view(id);
        st.hot_policy.agent_changed(&v);
        st.warm_policy.agent_changed(&v);
        let pos = self.log(
            &st,
            &Op::Register {
                name,
                tenant: &tenant.0,
                importance,
            },
        )?;
        drop(st);
        self.commit(pos)?;
        Ok(AgentId(id))
    }

    /// What the store knows of an agent.
    pub fn agent_info(&self, agent: AgentId) -> Result<AgentInfo> {
        let st = self.inner.state.lock();
        let ag = st.agent(agent)?;
        Ok(self.info_of(&st, agent.0, ag))
    }

    fn info_of(&self, st: &State, id: u32, ag: &Agent) -> AgentInfo {
        let tenant = st
            .tenants
            .iter()
            .find(|(_, (i, _))| *i == ag.tenant)
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| TenantId::new("?"));
        AgentInfo {
            id: AgentId(id),
            name: ag.name.clone(),
            tenant,
            state: ag.state,
            importance: ag.importance,
            units: ag.units.len() as u64,
            conversations: ag.conversations.len() as u64,
        }
    }

    /// Every registered agent.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let st = self.inner.state.lock();
        st.agents
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.released)
            .map(|(i, a)| self.info_of(&st, i as u32, a))
            .collect()
    }

    /// Change an agent's state. Entering [`AgentState::Paused`] or
    /// [`AgentState::Idle`] demotes every hot unit of the agent that no
    /// working agent also holds.
    pub fn set_state(&self, agent: AgentId, state: AgentState) -> Result<()> {
        let now = self.now();
        let level = self.cfg().level;
        let mut st = self.inner.state.lock();
        st.agent(agent)?;
        let ag = &mut st.agents[agent.0 as usize];
        if ag.state == state {
            return Ok(());
        }
        ag.state = state;
        ag.since = now;
        let pos = self.log(
            &st,
            &Op::SetState {
                agent: agent.0,
                state,
            },
        )?;
        let v = st.agent_view(agent.0);
        st.hot_policy.agent_changed(&v);
        st.warm_policy.agent_changed(&v);
        if state.is_parked() {
            let units = st.agents[agent.0 as usize].units.clone();
            for k in units {
                if matches!(st.unit(k).body, Body::Hot(..)) && st.all_owners_parked(k) {
                    st.demote(k, level)?;
                }
            }
        }
        drop(st);
        self.commit(pos)?;
        self.spill_best_effort();
        Ok(())
    }

    /// Move warm victims to the cold tier while hot + warm bytes exceed the
    /// RAM budget, and delete freed units from it. The writes happen outside
    /// the store's lock; a unit that changed meanwhile stays where it is.
    fn spill(&self) -> Result<()> {
        if self.inner.state.lock().cold.is_none() {
            return Ok(());
        }
        // One spiller at a time; others go on (the budget is a target).
        let Some(_io) = self.inner.cold_io.try_lock() else {
            return Ok(());
        };
        self.spill_locked()
    }

    /// Spill, but a failing disk (full, poisoned) only leaves units in RAM
    /// over the budget: the operation that triggered it has succeeded.
    fn spill_best_effort(&self) {
        if let Err(e) = self.spill() {
            let mut chain = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                chain += &format!(": {c}");
                src = c.source();
            }
            tracing::warn!("units stay in RAM over the budget: {chain}");
            *self.inner.cold_error.lock() = Some(chain);
        }
    }

    /// Why the last move to the cold tier failed, if one did (units then
    /// stay in RAM over the budget until the disk accepts writes again).
    pub fn cold_error(&self) -> Option<String> {
        self.inner.cold_error.lock().clone()
    }

    /// [`Store::spill`] with `cold_io` held.
    fn spill_locked(&self) -> Result<()> {
        let budget = self.cfg().ram_budget;
        for _ in 0..1024 {
            let (cold, batch) = {
                let mut st = self.inner.state.lock();
                let cold = st.cold.clone().expect("checked");
                let mut excess =
                    (st.tier_bytes(Tier::Hot) + st.tier_bytes(Tier::Warm)).saturating_sub(budget);
                let now = self.now();
                let mut batch = Vec::new();
                while excess > 0 && batch.len() < 256 {
                    let Some(UnitKey(k)) = st.warm_policy.victim(now) else {
                        break;
                    };
                    let Some(u) = st.units.get(k as usize).and_then(Option::as_ref) else {
                        continue;
                    };
                    // Delta bases and deltas stay in RAM: decoding one must
                    // never need disk I/O under the lock.
                    if u.dependents > 0 || u.base != NIL {
                        continue;
                    }
                    let Body::Warm(f) = &u.body else { continue };
                    excess = excess.saturating_sub(f.bytes.len() as u64);
                    if let Some((len, enc)) = u.disk {
                        // Its bytes are on disk already: nothing to write.
                        st.set_body(k, Body::Cold(len, enc));
                        continue;
                    }
                    let key = u.cold_key();
                    batch.push((k, u.generation, key, f.clone()));
                    // A put supersedes a pending delete of the same record.
                    st.cold_deletes.remove(&key);
                }
                (cold, batch)
            };
            if batch.is_empty() {
                return Ok(());
            }
            let mut written: Vec<(u32, u32, ContentId, u32, Encoding)> =
                Vec::with_capacity(batch.len());
            let mut failed = None;
            for (k, generation, key, frame) in batch {
                let rec = ColdRecord {
                    id: *key.as_bytes(),
                    encoding: frame.encoding.tag(),
                    bytes: frame.bytes.to_vec(),
                };
                if let Err(e) = cold.put(&rec) {
                    failed = Some((k, e));
                    break;
                }
                written.push((k, generation, key, frame.bytes.len() as u32, frame.encoding));
            }
            let mut st = self.inner.state.lock();
            for (k, generation, key, len, encoding) in written {
                let still = st.units[k as usize].as_ref().is_some_and(|u| {
                    u.generation == generation
                        && matches!(u.body, Body::Warm(_))
                        && u.cold_key() == key
                });
                if still {
                    st.unit_mut(k).disk = Some((len, encoding));
                    st.set_body(k, Body::Cold(len, encoding));
                } else {
                    // It changed or went meanwhile: the record is stale.
                    st.cold_deletes.insert(key);
                }
            }
            if let Some((k, e)) = failed {
                // Put it back in the running so it is tried again.
                if st.units[k as usize]
                    .as_ref()
                    .is_some_and(|u| matches!(u.body, Body::Warm(_)))
                {
                    let v = st.view(k, self.now());
                    st.warm_policy.insert(&v);
                }
                return Err(Error::cold(e));
            }
        }
        Ok(())
    }

    /// Bring a conversation's open chunk back from the cold tier before an
    /// append needs its bytes (outside the lock).
    fn fetch_tail(&self, c: ConversationId) -> Result<()> {
        let p = {
            let st = self.inner.state.lock();
            let conv = Self::conv(&st, c)?;
            if conv.tail == NIL || !matches!(st.unit(conv.tail).body, Body::Cold(..)) {
                return Ok(());
            }
            match st.pending(conv.tail)? {
                Ok(_) => return Ok(()),
                Err(p) => p,
            }
        };
        let plain = p.decode()?;
        let now = self.now();
        let mut st = self.inner.state.lock();
        if st.units[p.key as usize]
            .as_ref()
            .is_some_and(|u| u.generation == p.generation)
        {
            st.promote(p.key, plain, now, p.fetched.get().cloned());
        }
        Ok(())
    }

    /// Change an agent's importance (higher keeps its memory longer).
    pub fn set_importance(&self, agent: AgentId, importance: Importance) -> Result<()> {
        let mut st = self.inner.state.lock();
        st.agent(agent)?;
        st.agents[agent.0 as usize].importance = importance;
        let v = st.agent_view(agent.0);
        st.hot_policy.agent_changed(&v);
        st.warm_policy.agent_changed(&v);
        let pos = self.log(
            &st,
            &Op::SetImportance {
                agent: agent.0,
                importance,
            },
        )?;
        drop(st);
        self.commit(pos)
    }

    /// Pause an agent: its state becomes [`AgentState::Paused`] and its
    /// units are demoted.
    pub fn pause(&self, agent: AgentId) -> Result<()> {
        self.set_state(agent, AgentState::Paused)
    }

    /// Resume an agent: its state becomes [`AgentState::Active`] and its
    /// units are brought back to hot (newest first, up to half the hot
    /// budget) before this returns.
    pub fn resume(&self, agent: AgentId) -> Result<ResumeReport> {
        let started = Instant::now();
        self.set_state(agent, AgentState::Active)?;
        self.prefetch(agent, started)
    }

    /// Resume an agent without waiting: its state becomes
    /// [`AgentState::Active`] now, and a background thread (one per store,
    /// started on first use) brings its working set back from the warm and
    /// cold tiers, as [`Store::resume`] would. Reads meanwhile fetch what
    /// they need themselves; nothing waits for the prefetch.
    pub fn resume_in_background(&self, agent: AgentId) -> Result<()> {
        self.set_state(agent, AgentState::Active)?;
        let tx = self.inner.prefetcher.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<AgentId>();
            let rx = Mutex::new(rx);
            let spawned = self.spawn("agentmem-prefetch", Duration::ZERO, move |store| {
                // Wait for work a short while at a time, so a closing store
                // is never held up for long.
                if let Ok(agent) = rx.lock().recv_timeout(Duration::from_millis(50)) {
                    if let Err(e) = store.prefetch(agent, Instant::now()) {
                        tracing::warn!(%agent, "background prefetch failed: {e}");
                    }
                }
                Duration::ZERO
            });
            if let Err(e) = spawned {
                tracing::warn!("could not start the prefetch thread: {e}");
            }
            Mutex::new(tx)
        });
        // If the thread could not start, the agent is still resumed: its
        // reads fetch what they need.
        let _ = tx.lock().send(agent);
        Ok(())
    }

    /// Run `tick` on a background thread until the store closes; it
    /// returns how long to sleep before the next tick. The thread holds the
    /// store only while ticking.
    fn spawn(
        &self,
        name: &str,
        first: Duration,
        mut tick: impl FnMut(&Store) -> Duration + Send + 'static,
    ) -> Result<()> {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.threads.stop.clone();
        // The thread's own handle must not keep the threads alive.
        let threads = Arc::new(Threads::default());
        let mut sleep = first;
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while Threads::wait(&stop, sleep) {
                    let Some(inner) = weak.upgrade() else { return };
                    let store = Store {
                        threads: threads.clone(),
                        inner,
                    };
                    sleep = tick(&store);
                }
            })
            .map_err(|e| Error::Config(format!("starting the {name} thread: {e}")))?;
        self.threads.handles.lock().push(h);
        Ok(())
    }

    /// Bring an agent's units back to hot (newest first, up to half the
    /// hot budget), decoding and reading the disk outside the lock.
    fn prefetch(&self, agent: AgentId, started: Instant) -> Result<ResumeReport> {
        let pending: Vec<Pending> = {
            let st = self.inner.state.lock();
            st.agent(agent)?;
            let mut budget = self.cfg().hot_budget / 2;
            let mut out = Vec::new();
            for &k in st.agents[agent.0 as usize].units.iter().rev() {
                let u = st.unit(k);
                if matches!(u.tier(), Tier::Warm | Tier::Cold) {
                    if u64::from(u.logical) > budget {
                        break;
                    }
                    budget -= u64::from(u.logical);
                    if let Err(p) = st.pending(k)? {
                        out.push(p);
                    }
                }
            }
            out
        };
        let decoded: Vec<(u32, u32, Bytes, Option<Frame>)> = pending
            .iter()
            .map(|p| {
                p.decode()
                    .map(|b| (p.key, p.generation, b, p.fetched.get().cloned()))
            })
            .collect::<Result<_>>()?;
        let mut report = ResumeReport::default();
        let now = self.now();
        let mut st = self.inner.state.lock();
        for (k, generation, plain, fetched) in decoded {
            if st.units[k as usize]
                .as_ref()
                .is_some_and(|u| u.generation == generation)
            {
                report.units += 1;
                report.bytes += plain.len() as u64;
                st.promote(k, plain, now, fetched);
                self.record(&st, k, Some(agent.0), AccessOp::Prefetch, now);
            }
        }
        st.enforce_hot_budget(self.cfg().hot_budget, self.cfg().level, now)?;
        drop(st);
        report.elapsed = started.elapsed();
        self.spill_best_effort();
        Ok(report)
    }

    /// Drop every reference and conversation of an agent and forget it.
    pub fn release_agent(&self, agent: AgentId) -> Result<()> {
        let mut st = self.inner.state.lock();
        st.agent(agent)?;
        for c in st.agents[agent.0 as usize].conversations.clone() {
            Self::delete_conversation_locked(&mut st, ConversationId(c))?;
        }
        for k in st.agents[agent.0 as usize].units.clone() {
            let n = st
                .unit(k)
                .owners
                .iter()
                .find(|o| o.0 == agent.0)
                .map_or(0, |o| o.1);
            for _ in 0..n {
                st.drop_ref(k, agent.0);
            }
        }
        st.agents[agent.0 as usize].released = true;
        let pos = self.log(&st, &Op::ReleaseAgent { agent: agent.0 })?;
        drop(st);
        self.commit(pos)
    }

    // ---- units --------------------------------------------------------

    fn domain(&self, st: &State, agent: AgentId, vis: Visibility) -> Result<(u32, [u8; 32])> {
        let tenant = st.agent(agent)?.tenant;
        Ok(match vis {
            Visibility::Public => (NIL, self.cfg().public_key),
            Visibility::Private => {
                let key = st
                    .tenants
                    .values()
                    .find(|(i, _)| *i == tenant)
                    .map(|(_, k)| *k)
                    .expect("agent's tenant exists");
                (tenant, key)
            }
        })
    }

    fn check_size(&self, kind: Kind, len: usize) -> Result<()> {
        if len == 0 {
            return Err(Error::EmptyUnit { kind });
        }
        if len as u64 > self.cfg().max_unit_size {
            return Err(Error::UnitTooLarge {
                kind,
                size: len as u64,
                max: self.cfg().max_unit_size,
            });
        }
        Ok(())
    }

    /// Store `data` for `agent` and return its id; the agent holds one more
    /// reference to it. Identical content in the same domain is stored once.
    pub fn put(
        &self,
        agent: AgentId,
        kind: Kind,
        data: &[u8],
        vis: Visibility,
    ) -> Result<ContentId> {
        self.check_size(kind, data.len())?;
        let (tenant, key) = {
            let st = self.inner.state.lock();
            self.domain(&st, agent, vis)?
        };
        // Hashing and sketching run outside the lock.
        let id = ContentId(*blake3::keyed_hash(&key, data).as_bytes());
        let check = check_of(data);
        let sketch = (self.cfg().near_duplicates
            && data.len() >= similar::MIN_DELTA_SIZE
            && kind != Kind::Conversation)
            .then(|| Sketch::of(data));
        let now = self.now();
        let mut st = self.inner.state.lock();
        st.agent(agent)?;
        if let Some(k) = st.lookup(&id) {
            st.add_owner(k, agent.0);
            st.dedup_hits += 1;
            st.dedup_bytes += data.len() as u64;
            st.touch(k, now);
            self.record(&st, k, Some(agent.0), AccessOp::Put, now);
            let pos = self.log(&st, &put_op(agent, kind, vis, data))?;
            drop(st);
            self.commit(pos)?;
            return Ok(id);
        }
        let mut base = NIL;
        if let Some(sketch) = &sketch {
            let best = st.candidates.get(&(kind, tenant)).and_then(|c| {
                c.iter()
                    .filter(|(k, _)| st.chain_depth(*k) < MAX_CHAIN)
                    .map(|(k, s)| (*k, sketch.similarity(s)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
            });
            if let Some((k, sim)) = best {
                if sim >= similar::MIN_SIMILARITY {
                    base = k;
                }
            }
        }
        let k = st.alloc(Unit {
            id,
            body: Body::Hot(Bytes::copy_from_slice(data), None),
            owners: SmallVec::new(),
            dependents: 0,
            base,
            logical: data.len() as u32,
            framing: 0,
            check,
            last_access: now,
            tenant,
            kind,
            open: false,
            disk: None,
            generation: 0,
        });
        if base != NIL {
            st.unit_mut(base).dependents += 1;
            st.delta_units += 1;
        }
        if let Some(sketch) = sketch {
            let c = st.candidates.entry((kind, tenant)).or_default();
            if c.len() == DELTA_CANDIDATES {
                c.remove(0);
            }
            c.push((k, sketch));
        }
        st.index_insert(k);
        st.add_owner(k, agent.0);
        let v = st.view(k, now);
        st.hot_policy.insert(&v);
        self.record(&st, k, Some(agent.0), AccessOp::Put, now);
        let pos = self.log(&st, &put_op(agent, kind, vis, data))?;
        self.after_write(st, kind, data, now)?;
        self.commit(pos)?;
        self.spill_best_effort();
        Ok(id)
    }

    /// Bookkeeping after a write: collect a dictionary sample, keep the hot
    /// budget, and train the kind's dictionary once it has enough samples
    /// (outside the lock).
    fn after_write(
        &self,
        mut st: parking_lot::MutexGuard<'_, State>,
        kind: Kind,
        sample: &[u8],
        now: Timestamp,
    ) -> Result<()> {
        let train_after = self.cfg().train_after;
        let c = &mut st.codecs[kind.index()];
        let mut to_train = None;
        if train_after > 0 && codec::trains(kind) && c.versions.is_empty() && !c.training {
            c.samples
                .extend_from_slice(&sample[..sample.len().min(64 * 1024)]);
            c.sample_sizes.push(sample.len().min(64 * 1024));
            if c.samples.len() >= train_after && c.sample_sizes.len() >= 16 {
                c.training = true;
                to_train = Some((
                    std::mem::take(&mut c.samples),
                    std::mem::take(&mut c.sample_sizes),
                ));
            }
        }
        st.enforce_hot_budget(self.cfg().hot_budget, self.cfg().level, now)?;
        drop(st);
        if let Some((samples, sizes)) = to_train {
            self.train(kind, &samples, &sizes)?;
        }
        Ok(())
    }

    fn train(&self, kind: Kind, samples: &[u8], sizes: &[usize]) -> Result<()> {
        let trained = codec::train(samples, sizes, self.cfg().dictionary_size);
        let mut st = self.inner.state.lock();
        let c = &mut st.codecs[kind.index()];
        c.training = false;
        let Some(raw) = trained else {
            // Too little variety to train on: keep compressing without.
            tracing::debug!(%kind, "dictionary training found nothing to learn");
            return Ok(());
        };
        let version = c.versions.len() as u32 + 1;
        let dict = Dictionary::load(kind, version, Bytes::from(raw), self.cfg().level)?;
        // Logged (before it is installed) like an explicit load, so replay
        // numbers dictionary versions as this run did.
        let pos = self.log(
            &st,
            &Op::Dictionary {
                kind,
                version,
                domain: None,
                raw: &dict.raw,
            },
        )?;
        let c = &mut st.codecs[kind.index()];
        c.versions.push(Arc::new(dict));
        c.trained_on = sizes.len() as u64;
        tracing::debug!(%kind, version, "trained dictionary");
        drop(st);
        self.commit(pos)
    }

    /// Load a dictionary (e.g. one persisted with the data that needs it) as
    /// the next version for `kind`. Fails with
    /// [`Error::CorruptDictionary`] if zstd rejects it or its version is not
    /// the next one.
    pub fn load_dictionary(&self, kind: Kind, version: u32, raw: &[u8]) -> Result<()> {
        let dict = Dictionary::load(kind, version, Bytes::copy_from_slice(raw), self.cfg().level)?;
        let mut st = self.inner.state.lock();
        let c = &mut st.codecs[kind.index()];
        if version as usize != c.versions.len() + 1 {
            return Err(Error::CorruptDictionary {
                kind,
                version,
                detail: format!("expected version {}", c.versions.len() + 1),
            });
        }
        c.versions.push(Arc::new(dict));
        let pos = self.log(&st, &Op::LoadDictionary { kind, version, raw })?;
        drop(st);
        self.commit(pos)
    }

    /// The bytes of a dictionary, to persist it.
    pub fn dictionary(&self, kind: Kind, version: u32) -> Option<Bytes> {
        let st = self.inner.state.lock();
        st.codecs[kind.index()]
            .version(version)
            .map(|d| d.raw.clone())
    }

    /// Read a unit, whoever holds it (embedded use; see [`Store::get_for`]).
    pub fn get(&self, id: &ContentId) -> Result<Bytes> {
        self.read(None, id)
    }

    /// Read a unit on behalf of `agent`, which must hold a reference to it
    /// or the unit must be public; otherwise [`Error::AccessDenied`].
    pub fn get_for(&self, agent: AgentId, id: &ContentId) -> Result<Bytes> {
        self.read(Some(agent), id)
    }

    /// Check that `agent` may read a unit (it holds a reference or the unit
    /// is public) without reading it: the same errors as
    /// [`Store::get_for`].
    pub fn check_read(&self, agent: AgentId, id: &ContentId) -> Result<()> {
        let st = self.inner.state.lock();
        st.agent(agent)?;
        let k = st.lookup_held(id)?;
        let u = st.unit(k);
        if u.tenant != NIL && !u.owners.iter().any(|o| o.0 == agent.0) {
            return Err(Error::AccessDenied {
                agent,
                id: id.to_hex(),
            });
        }
        Ok(())
    }

    fn read(&self, agent: Option<AgentId>, id: &ContentId) -> Result<Bytes> {
        let now = self.now();
        let pending = {
            let mut st = self.inner.state.lock();
            if let Some(a) = agent {
                st.agent(a)?;
            }
            let k = st.lookup_held(id)?;
            if let Some(a) = agent {
                let u = st.unit(k);
                if u.tenant != NIL && !u.owners.iter().any(|o| o.0 == a.0) {
                    return Err(Error::AccessDenied {
                        agent: a,
                        id: id.to_hex(),
                    });
                }
            }
            st.touch(k, now);
            self.record(&st, k, agent.map(|a| a.0), AccessOp::Get, now);
            match st.pending(k)? {
                Ok(b) => return Ok(b),
                Err(p) => p,
            }
        };
        self.finish_decode(pending)
    }

    /// Decode outside the lock, then promote the unit to hot unless it
    /// changed meanwhile or nobody is expected to read it soon.
    fn finish_decode(&self, p: Pending) -> Result<Bytes> {
        let plain = p.decode()?;
        let now = self.now();
        let mut st = self.inner.state.lock();
        if st.units[p.key as usize]
            .as_ref()
            .is_some_and(|u| u.generation == p.generation)
            && !st.all_owners_parked(p.key)
        {
            st.promote(p.key, plain.clone(), now, p.fetched.get().cloned());
            st.enforce_hot_budget(self.cfg().hot_budget, self.cfg().level, now)?;
            drop(st);
            self.spill_best_effort();
        }
        Ok(plain)
    }

    /// Give `to` a reference to a unit `from` holds (so `to` may read it).
    pub fn share(&self, from: AgentId, id: &ContentId, to: AgentId) -> Result<()> {
        let mut st = self.inner.state.lock();
        st.agent(from)?;
        let to_tenant = st.agent(to)?.tenant;
        let k = st.lookup_held(id)?;
        if !st.unit(k).owners.iter().any(|o| o.0 == from.0) {
            return Err(Error::NotOwner {
                agent: from,
                id: id.to_hex(),
            });
        }
        let _ = to_tenant;
        st.add_owner(k, to.0);
        let pos = self.log(
            &st,
            &Op::Share {
                from: from.0,
                id: id.0,
                to: to.0,
            },
        )?;
        drop(st);
        self.commit(pos)
    }

    /// Drop one of `agent`'s references to a unit; the unit is freed when no
    /// reference is left.
    pub fn release(&self, agent: AgentId, id: &ContentId) -> Result<()> {
        let now = self.now();
        let mut st = self.inner.state.lock();
        st.agent(agent)?;
        let k = st.lookup_held(id)?;
        self.record(&st, k, Some(agent.0), AccessOp::Release, now);
        if !st.drop_ref(k, agent.0) {
            return Err(Error::NotOwner {
                agent,
                id: id.to_hex(),
            });
        }
        let pos = self.log(
            &st,
            &Op::Release {
                agent: agent.0,
                id: id.0,
            },
        )?;
        drop(st);
        self.commit(pos)
    }

    /// Bring a unit to hot now (the caller expects to read it soon).
    pub fn mark_hot(&self, agent: AgentId, id: &ContentId) -> Result<()> {
        let pending = {
            let st = self.inner.state.lock();
            st.agent(agent)?;
            let k = st.lookup_held(id)?;
            match st.pending(k)? {
                Ok(_) => return Ok(()),
                Err(p) => p,
            }
        };
        let plain = pending.decode()?;
        let now = self.now();
        let mut st = self.inner.state.lock();
        if st.units[pending.key as usize]
            .as_ref()
            .is_some_and(|u| u.generation == pending.generation)
        {
            st.promote(pending.key, plain, now, pending.fetched.get().cloned());
            st.enforce_hot_budget(self.cfg().hot_budget, self.cfg().level, now)?;
        }
        Ok(())
    }

    /// What the store holds under an id.
    pub fn unit_info(&self, id: &ContentId) -> Result<UnitInfo> {
        let st = self.inner.state.lock();
        let k = st.lookup_held(id)?;
        let u = st.unit(k);
        Ok(UnitInfo {
            kind: u.kind,
            tier: u.tier(),
            logical_bytes: u64::from(u.logical),
            stored_bytes: u.stored(),
            refs: u.refs(),
            visibility: if u.tenant == NIL {
                Visibility::Public
            } else {
                Visibility::Private
            },
            delta: matches!(&u.body, Body::Warm(f) if f.encoding == Encoding::Delta),
        })
    }

    // ---- conversations ------------------------------------------------

    /// Start an empty conversation owned by `agent`.
    pub fn create_conversation(&self, agent: AgentId) -> Result<ConversationId> {
        let mut st = self.inner.state.lock();
        st.agent(agent)?;
        let c = Self::new_conversation(&mut st, agent.0);
        let pos = self.log(&st, &Op::CreateConversation { agent: agent.0 })?;
        drop(st);
        self.commit(pos)?;
        Ok(c)
    }

    fn new_conversation(st: &mut State, agent: u32) -> ConversationId {
        let id = st.conversations.len() as u32;
        st.conversations.push(Some(Conversation {
            agent,
            chunks: Vec::new(),
            tail: NIL,
            tail_first: 0,
            len: 0,
        }));
        st.agents[agent as usize].conversations.push(id);
        ConversationId(id)
    }

    fn conv(st: &State, c: ConversationId) -> Result<&Conversation> {
        st.conversations
            .get(c.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(Error::UnknownConversation(c))
    }

    /// Append a message; returns its index.
    pub fn append(&self, conversation: ConversationId, message: &[u8]) -> Result<u64> {
        self.check_size(Kind::Conversation, message.len().max(1))?;
        let now = self.now();
        // The open chunk must be in RAM under the lock; another thread's
        // spill may send it back to disk between the fetch and the lock, so
        // fetch again until it stays (a few rounds at most in practice).
        let mut rounds = 0;
        let mut st = loop {
            self.fetch_tail(conversation)?;
            let st = self.inner.state.lock();
            let conv = Self::conv(&st, conversation)?;
            rounds += 1;
            if conv.tail == NIL
                || !matches!(st.unit(conv.tail).body, Body::Cold(..))
                || rounds == 64
            {
                break st;
            }
        };
        let i = self.append_locked(&mut st, conversation, message, now)?;
        let pos = self.log(
            &st,
            &Op::Append {
                conversation: conversation.0,
                data: message,
            },
        )?;
        self.after_write(st, Kind::Conversation, message, now)?;
        self.commit(pos)?;
        self.spill_best_effort();
        Ok(i)
    }

    fn append_locked(
        &self,
        st: &mut State,
        c: ConversationId,
        message: &[u8],
        now: Timestamp,
    ) -> Result<u64> {
        let conv = Self::conv(st, c)?;
        let (agent, tail, index) = (conv.agent, conv.tail, conv.len);
        let tenant = st.agents[agent as usize].tenant;
        let tail = if tail == NIL {
            // Open chunks are named by conversation and position; they are
            // not content-addressed until sealed.
            let mut h = blake3::Hasher::new_keyed(&self.cfg().secret);
            h.update(b"open chunk");
            h.update(&c.0.to_le_bytes());
            h.update(&index.to_le_bytes());
            let k = st.alloc(Unit {
                id: ContentId(*h.finalize().as_bytes()),
                body: Body::Hot(Bytes::new(), None),
                owners: SmallVec::new(),
                dependents: 0,
                base: NIL,
                logical: 0,
                framing: 0,
                check: 0,
                last_access: now,
                tenant,
                kind: Kind::Conversation,
                open: true,
                disk: None,
                generation: 0,
            });
            st.add_owner(k, agent);
            let conv = st.conversations[c.0 as usize].as_mut().expect("checked");
            conv.tail = k;
            conv.tail_first = index;
            let v = st.view(k, now);
            st.hot_policy.insert(&v);
            k
        } else {
            tail
        };
        let old = st.plain_locked(tail)?;
        let new = chunk::append(&old, message)?;
        let n = chunk::count(&new)?;
        let full = new.len() >= chunk::CHUNK_TARGET_BYTES || n >= chunk::CHUNK_MAX_MESSAGES;
        let was_hot = st.unit(tail).tier() == Tier::Hot;
        if st.unit(tail).disk.is_some() {
            let key = st.unit(tail).cold_key();
            st.cold_deletes.insert(key);
            st.unit_mut(tail).disk = None;
        }
        let (len, check) = (new.len() as u32, check_of(&new));
        st.replace_body(tail, Body::Hot(Bytes::from(new), None), len, check);
        st.unit_mut(tail).framing = (4 * (n + 1)) as u16;
        let v = st.view(tail, now);
        if was_hot {
            st.hot_policy.access(&v);
        } else {
            st.hot_policy.insert(&v);
        }
        st.unit_mut(tail).last_access = now;
        self.record(st, tail, Some(agent), AccessOp::Append, now);
        let conv = st.conversations[c.0 as usize].as_mut().expect("checked");
        conv.len += 1;
        if full {
            self.seal(st, c, now)?;
        }
        Ok(index)
    }

    /// Turn the open chunk into a content-addressed unit (or a reference to
    /// an identical one, e.g. from a fork).
    fn seal(&self, st: &mut State, c: ConversationId, _now: Timestamp) -> Result<()> {
        let conv = Self::conv(st, c)?;
        let (tail, first, agent) = (conv.tail, conv.tail_first, conv.agent);
        if tail == NIL {
            return Ok(());
        }
        let plain = st.plain_locked(tail)?;
        let tenant = st.unit(tail).tenant;
        let key = st
            .tenants
            .values()
            .find(|(i, _)| *i == tenant)
            .map(|(_, k)| *k)
            .expect("tenant exists");
        let id = ContentId(*blake3::keyed_hash(&key, &plain).as_bytes());
        let sealed = match st.lookup(&id) {
            Some(existing) => {
                st.add_owner(existing, agent);
                st.dedup_hits += 1;
                st.dedup_bytes += plain.len() as u64;
                st.drop_ref(tail, agent);
                existing
            }
            None => {
                let u = st.unit_mut(tail);
                u.id = id;
                u.open = false;
                st.index_insert(tail);
                tail
            }
        };
        let conv = st.conversations[c.0 as usize].as_mut().expect("checked");
        conv.chunks.push((sealed, first));
        conv.tail = NIL;
        conv.tail_first = conv.len;
        Ok(())
    }

    /// Number of messages in a conversation.
    pub fn conversation_len(&self, conversation: ConversationId) -> Result<u64> {
        let st = self.inner.state.lock();
        Ok(Self::conv(&st, conversation)?.len)
    }

    /// The agent that owns a conversation.
    pub fn conversation_owner(&self, conversation: ConversationId) -> Result<AgentId> {
        let st = self.inner.state.lock();
        Ok(AgentId(Self::conv(&st, conversation)?.agent))
    }

    /// Messages `range` of a conversation.
    pub fn read_messages(
        &self,
        conversation: ConversationId,
        range: Range<u64>,
    ) -> Result<Vec<Bytes>> {
        let now = self.now();
        // Collect the chunks to read under the lock, decode outside it.
        let (parts, agent) = {
            let mut st = self.inner.state.lock();
            let conv = Self::conv(&st, conversation)?;
            if range.start > range.end || range.end > conv.len {
                return Err(Error::OutOfRange {
                    conversation,
                    len: conv.len,
                    what: format!("messages {}..{}", range.start, range.end),
                });
            }
            let agent = conv.agent;
            let mut chunks: Vec<(u32, u64)> = conv.chunks.clone();
            if conv.tail != NIL {
                chunks.push((conv.tail, conv.tail_first));
            }
            let start_at = chunks
                .partition_point(|&(_, first)| first <= range.start)
                .saturating_sub(1);
            let mut parts = Vec::new();
            for (i, &(k, first)) in chunks.iter().enumerate().skip(start_at) {
                if first >= range.end {
                    break;
                }
                let next = chunks.get(i + 1).map_or(u64::MAX, |c| c.1);
                if next <= range.start {
                    continue;
                }
                st.touch(k, now);
                self.record(&st, k, Some(agent), AccessOp::Get, now);
                parts.push((first, st.pending(k)?));
            }
            (parts, agent)
        };
        let _ = agent;
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (first, part) in parts {
            let plain = match part {
                Ok(b) => b,
                Err(p) => self.finish_decode(p)?,
            };
            let n = chunk::count(&plain)? as u64;
            let lo = range.start.max(first) - first;
            let hi = range.end.min(first + n) - first;
            for i in lo..hi {
                out.push(plain.slice(chunk::message_range(&plain, i as usize)?));
            }
        }
        Ok(out)
    }

    /// The last `n` messages (fewer if the conversation is shorter).
    pub fn read_last(&self, conversation: ConversationId, n: u64) -> Result<Vec<Bytes>> {
        let len = self.conversation_len(conversation)?;
        self.read_messages(conversation, len.saturating_sub(n)..len)
    }

    /// Every message.
    pub fn read_all(&self, conversation: ConversationId) -> Result<Vec<Bytes>> {
        self.read_last(conversation, u64::MAX)
    }

    /// A new conversation for `agent` holding the first `at` messages of
    /// `parent`. Sealed chunks are shared, not copied. The agent must be of
    /// the parent owner's tenant.
    pub fn fork_conversation(
        &self,
        agent: AgentId,
        parent: ConversationId,
        at: u64,
    ) -> Result<ConversationId> {
        let now = self.now();
        let _gate = self.inner.gate.read();
        let mut st = self.inner.state.lock();
        let tenant = st.agent(agent)?.tenant;
        let p = Self::conv(&st, parent)?;
        if at > p.len {
            return Err(Error::OutOfRange {
                conversation: parent,
                len: p.len,
                what: format!("fork at {at}"),
            });
        }
        if st.agents[p.agent as usize].tenant != tenant {
            return Err(Error::AccessDenied {
                agent,
                id: parent.to_string(),
            });
        }
        let shared: Vec<(u32, u64)> = p
            .chunks
            .iter()
            .enumerate()
            .take_while(|(i, _)| p.chunks.get(i + 1).map_or(p.tail_first, |c| c.1) <= at)
            .map(|(_, c)| *c)
            .collect();
        let copied_from = p.chunks.get(shared.len()).map_or(p.tail_first, |c| c.1);
        let id = Self::new_conversation(&mut st, agent.0);
        for &(k, _) in &shared {
            st.add_owner(k, agent.0);
        }
        let conv = st.conversations[id.0 as usize].as_mut().expect("just made");
        conv.chunks = shared;
        conv.len = copied_from;
        conv.tail_first = copied_from;
        // Logged now, in order with the conversation id it took; replay
        // copies the same messages (those before `at` never change).
        let pos = self.log(
            &st,
            &Op::Fork {
                agent: agent.0,
                parent: parent.0,
                at,
            },
        )?;
        drop(st);
        // The rest (part of one chunk) is appended message by message.
        let rest = self.read_messages(parent, copied_from..at)?;
        let mut st = self.inner.state.lock();
        for m in rest {
            self.append_locked(&mut st, id, &m, now)?;
        }
        st.enforce_hot_budget(self.cfg().hot_budget, self.cfg().level, now)?;
        drop(st);
        self.commit(pos)?;
        Ok(id)
    }

    /// Delete a conversation, releasing its chunks.
    pub fn delete_conversation(&self, conversation: ConversationId) -> Result<()> {
        let mut st = self.inner.state.lock();
        Self::delete_conversation_locked(&mut st, conversation)?;
        let pos = self.log(
            &st,
            &Op::DeleteConversation {
                conversation: conversation.0,
            },
        )?;
        drop(st);
        self.commit(pos)
    }

    fn delete_conversation_locked(st: &mut State, c: ConversationId) -> Result<()> {
        Self::conv(st, c)?;
        let conv = st.conversations[c.0 as usize].take().expect("checked");
        for (k, _) in conv.chunks {
            st.drop_ref(k, conv.agent);
        }
        if conv.tail != NIL {
            st.drop_ref(conv.tail, conv.agent);
        }
        st.agents[conv.agent as usize]
            .conversations
            .retain(|&x| x != c.0);
        Ok(())
    }

    // ---- upkeep and stats ---------------------------------------------

    /// Periodic upkeep: recompress warm units that were compressed before
    /// their kind had a dictionary, at most `limit` of them per call.
    /// Returns how many were recompressed.
    pub fn maintain(&self, limit: usize) -> Result<usize> {
        let level = self.cfg().level;
        let mut st = self.inner.state.lock();
        let mut done = 0;
        for k in 0..st.units.len() as u32 {
            if done >= limit {
                break;
            }
            let Some(u) = st.units[k as usize].as_ref() else {
                continue;
            };
            let stale = matches!(&u.body, Body::Warm(f) if matches!(f.encoding, Encoding::Zstd { dict: 0 } | Encoding::Raw))
                && !st.codecs[u.kind.index()].versions.is_empty();
            if stale {
                let plain = st.plain_locked(k)?;
                let dict = st.codecs[u.kind.index()].current().cloned();
                let frame =
                    codec::compress(&plain, codec::level_for(u.kind, level), dict.as_deref());
                if frame.bytes.len() < u.stored() as usize {
                    st.set_body(k, Body::Warm(frame));
                    done += 1;
                }
            }
        }
        Ok(done)
    }

    /// A snapshot of the store's accounting.
    pub fn stats(&self) -> Stats {
        let st = self.inner.state.lock();
        let cfg = self.cfg();
        let mut kinds: Vec<KindStats> = Kind::ALL
            .iter()
            .map(|&k| KindStats {
                kind: Some(k),
                ..Default::default()
            })
            .collect();
        let mut agents: Vec<AgentStats> = st
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| AgentStats {
                agent: AgentId(i as u32),
                name: a.name.clone(),
                tenant: String::new(),
                state: a.state,
                importance: a.importance.0,
                units: a.units.len() as u64,
                logical_bytes: 0,
                exclusive_bytes: 0,
                shared_bytes: 0,
                charged_bytes: 0,
            })
            .collect();
        let mut owners_heap = 0u64;
        for u in st.units.iter().flatten() {
            let ks = &mut kinds[u.kind.index()];
            let refs = u.refs();
            ks.units += 1;
            let visible = u64::from(u.logical - u32::from(u.framing));
            ks.logical_bytes += visible * refs;
            ks.unique_bytes += visible;
            let stored = u.stored();
            match u.tier() {
                Tier::Hot => ks.hot_bytes += stored,
                Tier::Warm => ks.warm_bytes += stored,
                Tier::Cold => ks.cold_bytes += stored,
            }
            if u.owners.spilled() {
                owners_heap += (u.owners.capacity() * 8) as u64;
            }
            for &(a, n) in &u.owners {
                let s = &mut agents[a as usize];
                s.logical_bytes += visible * u64::from(n);
                if u.owners.len() == 1 {
                    s.exclusive_bytes += stored;
                } else {
                    s.shared_bytes += stored * u64::from(n) / refs.max(1);
                }
            }
        }
        for ks in &mut kinds {
            ks.stored_bytes = ks.hot_bytes + ks.warm_bytes + ks.cold_bytes;
            ks.ratio = ratio(ks.logical_bytes, ks.stored_bytes);
        }
        let tenant_names: HashMap<u32, &TenantId> =
            st.tenants.iter().map(|(t, (i, _))| (*i, t)).collect();
        for (s, a) in agents.iter_mut().zip(&st.agents) {
            s.charged_bytes = s.exclusive_bytes + s.shared_bytes;
            s.tenant = tenant_names
                .get(&a.tenant)
                .map(|t| t.0.clone())
                .unwrap_or_default();
        }
        agents.retain(|s| !st.agents[s.agent.0 as usize].released);
        let tiers: Vec<TierStats> = Tier::ALL
            .iter()
            .map(|&t| TierStats {
                tier: Some(t),
                units: st.counts.iter().map(|k| k[t as usize].units).sum(),
                logical_bytes: st.counts.iter().map(|k| k[t as usize].logical).sum(),
                stored_bytes: st.counts.iter().map(|k| k[t as usize].stored).sum(),
            })
            .collect();
        let mut dictionaries = Vec::new();
        let mut dictionary_bytes = 0u64;
        let mut dictionary_tables = 0u64;
        let mut samples_bytes = 0u64;
        for c in &st.codecs {
            samples_bytes += (c.samples.capacity() + c.sample_sizes.capacity() * 8) as u64;
            for d in &c.versions {
                dictionary_bytes += d.raw.len() as u64;
                dictionary_tables += d.memory() as u64;
                dictionaries.push(DictionaryInfo {
                    kind: d.kind,
                    version: d.version,
                    bytes: d.raw.len() as u64,
                    samples: c.trained_on,
                });
            }
        }
        let total_allocated: u64 = kinds.iter().map(|k| k.logical_bytes).sum();
        let unique: u64 = kinds.iter().map(|k| k.unique_bytes).sum();
        let hot = tiers[0].stored_bytes;
        let warm = tiers[1].stored_bytes;
        let cold = tiers[2].stored_bytes;
        let overhead = self.overhead(&st)
            + owners_heap
            + samples_bytes
            + dictionary_tables
            + codec::context_memory() as u64;
        Stats {
            mem: MemStats {
                total_allocated,
                total_deduplicated: total_allocated - unique,
                compression_ratio: ratio(unique, hot + warm + cold),
                hot_bytes: hot,
                warm_bytes: warm,
                cold_bytes: cold,
            },
            kinds,
            tiers,
            agents,
            dictionaries,
            dictionary_bytes,
            overhead_bytes: overhead,
            accounted_ram_bytes: hot + warm + dictionary_bytes + overhead,
            dedup_hits: st.dedup_hits,
            delta_units: st.delta_units,
            conversations: st.conversations.iter().flatten().count() as u64,
            ram_budget: cfg.ram_budget,
            hot_budget: cfg.hot_budget,
            over_budget: hot + warm > cfg.ram_budget,
        }
    }

    /// Bytes of the store's own records (capacity, not length: that is what
    /// the allocator holds).
    fn overhead(&self, st: &State) -> u64 {
        use std::mem::size_of;
        let units = st.units.capacity() * size_of::<Option<Unit>>() + st.free.capacity() * 4;
        // hashbrown: one control byte per bucket plus the slot, buckets are
        // capacity * 8 / 7 rounded up to a power of two.
        let index = (st.index.capacity() * 8 / 7).next_power_of_two() * (4 + 1);
        let agents: usize = st
            .agents
            .iter()
            .map(|a| {
                size_of::<Agent>()
                    + a.name.capacity()
                    + a.units.capacity() * 4
                    + a.conversations.capacity() * 4
            })
            .sum();
        let convs: usize = st.conversations.capacity() * size_of::<Option<Conversation>>()
            + st.conversations
                .iter()
                .flatten()
                .map(|c| c.chunks.capacity() * size_of::<(u32, u64)>())
                .sum::<usize>();
        let sketches: usize = st
            .candidates
            .values()
            .map(|v| v.capacity() * size_of::<(u32, Sketch)>() + v.len() * 64 * 8)
            .sum();
        (units + index + agents + convs + sketches) as u64
    }
}

fn ratio(logical: u64, stored: u64) -> f64 {
    if stored == 0 {
        0.0
    } else {
        logical as f64 / stored as f64
    }
}
