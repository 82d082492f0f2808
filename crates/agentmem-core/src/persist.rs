//! Persistence: checkpoints of the store's metadata on the cold tier, and
//! [`Store::open`].
//!
//! Unit bytes live on the cold tier under each unit's cold key; a record is
//! never overwritten with other content (sealed units are content-addressed,
//! open chunks are keyed by their checksum). A *checkpoint* first makes sure
//! every unit's bytes are on disk, then writes one image of the metadata —
//! agents and their states, tenants, units with their owners and reference
//! counts, conversations, dictionaries — under a reserved key, fsyncs, and
//! only then deletes the records no unit needs any more. So after a crash at
//! any instant, the last complete checkpoint and every record it names are
//! on disk, and [`Store::open`] brings back exactly that state.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::{Agent, Body, Conversation, Store, StoreBuilder, Unit, NIL};
use crate::clock::Timestamp;
use crate::codec::{self, Dictionary, Encoding, Frame};
use crate::error::{Error, Result};
use crate::policy::UnitKey;
use crate::redo::{self, Durability, Op};
use crate::store::ContentId;
use crate::tier::{ColdRecord, DiskTier};
use crate::types::{AgentId, AgentState, ConversationId, Importance, Kind, TenantId, Tier};

/// Format of the image; a store written with another is refused clearly.
const IMAGE_VERSION: u32 = 2;

/// The reserved cold key of the metadata image (no content id can equal
/// it: content ids are keyed hashes of content).
fn image_key() -> [u8; 32] {
    blake3::derive_key("agentmem 2026 store image key", b"")
}

#[derive(Serialize, Deserialize)]
struct Image {
    version: u32,
    secret: [u8; 32],
    tenants: Vec<(String, u32, [u8; 32])>,
    agents: Vec<AgentImage>,
    units: Vec<Option<UnitImage>>,
    conversations: Vec<Option<ConversationImage>>,
    dictionaries: Vec<(Kind, u32, Vec<u8>)>,
    dedup_hits: u64,
    dedup_bytes: u64,
    delta_units: u64,
    /// Redo log operations the image covers (the log goes on from there).
    log_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct AgentImage {
    name: String,
    tenant: u32,
    state: AgentState,
    importance: Importance,
    since: u64,
    units: Vec<u32>,
    conversations: Vec<u32>,
    released: bool,
}

#[derive(Serialize, Deserialize)]
struct UnitImage {
    id: [u8; 32],
    disk_len: u32,
    disk_tag: u32,
    owners: Vec<(u32, u32)>,
    dependents: u32,
    base: u32,
    logical: u32,
    framing: u16,
    check: u64,
    last_access: u64,
    tenant: u32,
    kind: Kind,
    open: bool,
}

#[derive(Serialize, Deserialize)]
struct ConversationImage {
    agent: u32,
    chunks: Vec<(u32, u64)>,
    tail: u32,
    tail_first: u64,
    len: u64,
}

/// What a checkpoint did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CheckpointReport {
    /// Units whose bytes were written to the cold tier for it.
    pub units_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
    /// Size of the metadata image.
    pub image_bytes: u64,
    /// Records deleted after it (released units, stale open chunks).
    pub deleted: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// What [`Store::open`] restored.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct OpenReport {
    /// Whether a checkpoint was found (else the store is new).
    pub restored: bool,
    /// Agents restored (released ones included).
    pub agents: u64,
    /// Units restored.
    pub units: u64,
    /// Conversations restored.
    pub conversations: u64,
    /// Records no unit of the checkpoint names (written after it, before a
    /// crash), deleted on open.
    pub orphans_deleted: u64,
    /// Wall time of opening the cold tier (index snapshot and log replay).
    pub cold_open: Duration,
    /// Redo log operations replayed after the image.
    pub replayed: u64,
    /// Wall time of reading and replaying the redo log.
    pub replay: Duration,
    /// Wall time of the checkpoint taken right after a replay (zero when
    /// nothing was replayed).
    pub checkpoint: Duration,
    /// Wall time of the whole open.
    pub elapsed: Duration,
}

type Todo = (
    u32,
    u32,
    ContentId,
    std::result::Result<Frame, (Bytes, Kind)>,
);

impl Store {
    /// Open the persistent store in `dir` with every default (see
    /// [`StoreBuilder::open`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder().open(dir)
    }

    /// What the open of this store restored (`None` for a store not
    /// opened from a directory).
    pub fn open_report(&self) -> Option<OpenReport> {
        *self.inner.opened.lock()
    }

    /// Make the store's current state durable: write every unit's bytes not
    /// yet on the cold tier, then the metadata image, fsync, then delete the
    /// records nothing refers to any more. Needs a cold tier.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        let started = Instant::now();
        let cold = self.inner.state.lock().cold.clone().ok_or_else(|| {
            Error::Config(
                "a checkpoint needs a cold tier: open the store with Store::open(dir)".into(),
            )
        })?;
        let _gate = self.inner.gate.write();
        let _io = self.inner.cold_io.lock();
        let mut report = CheckpointReport::default();
        let level = self.cfg().level;
        let (image, deletes) = 'ready: {
            for _ in 0..16 {
                let todo: Vec<Todo> = {
                    let mut st = self.inner.state.lock();
                    let todo: Vec<Todo> = st
                        .units
                        .iter()
                        .enumerate()
                        .filter_map(|(k, u)| {
                            let u = u.as_ref()?;
                            if u.disk.is_some() || u.logical == 0 {
                                return None;
                            }
                            let what = match &u.body {
                                Body::Warm(f) | Body::Hot(_, Some(f)) => Ok(f.clone()),
                                Body::Hot(p, None) => Err((p.clone(), u.kind)),
                                Body::Cold(..) => return None,
                            };
                            Some((k as u32, u.generation, u.cold_key(), what))
                        })
                        .collect();
                    if todo.is_empty() {
                        // The log restarts where the image stands.
                        let seq = match self.inner.redo.get() {
                            Some(l) => l.rotate()?,
                            None => 0,
                        };
                        let image = self.image(&st, seq);
                        let deletes = std::mem::take(&mut st.cold_deletes);
                        break 'ready (image, deletes);
                    }
                    for (_, _, key, _) in &todo {
                        st.cold_deletes.remove(key);
                    }
                    todo
                };
                let mut done = Vec::with_capacity(todo.len());
                for (k, generation, key, what) in todo {
                    let frame = match what {
                        Ok(f) => f,
                        Err((plain, kind)) => {
                            let dict = self.inner.state.lock().codecs[kind.index()]
                                .current()
                                .cloned();
                            codec::compress(&plain, codec::level_for(kind, level), dict.as_deref())
                        }
                    };
                    cold.put(&ColdRecord {
                        id: *key.as_bytes(),
                        encoding: frame.encoding.tag(),
                        bytes: frame.bytes.to_vec(),
                    })
                    .map_err(Error::cold)?;
                    report.units_written += 1;
                    report.bytes_written += frame.bytes.len() as u64;
                    done.push((k, generation, key, frame.bytes.len() as u32, frame.encoding));
                }
                let mut st = self.inner.state.lock();
                for (k, generation, key, len, enc) in done {
                    match st.units[k as usize].as_mut() {
                        Some(u) if u.generation == generation && u.cold_key() == key => {
                            u.disk = Some((len, enc));
                        }
                        _ => {
                            st.cold_deletes.insert(key);
                        }
                    }
                }
            }
            return Err(Error::cold(std::io::Error::other(
                "checkpoint: the store kept changing faster than its units could be written; try again",
            )));
        };
        cold.sync().map_err(Error::cold)?;
        let image_seq = image.log_seq;
        let bytes = postcard::to_stdvec(&image)
            .map_err(|e| Error::Config(format!("encoding the store image: {e}")))?;
        report.image_bytes = bytes.len() as u64;
        cold.put(&ColdRecord {
            id: image_key(),
            encoding: IMAGE_VERSION,
            bytes,
        })
        .map_err(Error::cold)?;
        cold.sync().map_err(Error::cold)?;
        // Only now may the log before the image and records the previous
        // image named go.
        if let Some(l) = self.inner.redo.get() {
            l.truncate_before(image_seq)?;
        }
        for key in deletes {
            cold.delete(key.as_bytes()).map_err(Error::cold)?;
            report.deleted += 1;
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Checkpoint and close (other clones of this handle keep the store
    /// open, without the directory's data being any less durable).
    pub fn close(self) -> Result<CheckpointReport> {
        self.checkpoint()
    }

    fn image(&self, st: &super::State, log_seq: u64) -> Image {
        let mut tenants: Vec<(String, u32, [u8; 32])> = st
            .tenants
            .iter()
            .map(|(t, (i, k))| (t.0.clone(), *i, *k))
            .collect();
        tenants.sort_by_key(|t| t.1);
        let mut dictionaries = Vec::new();
        for c in &st.codecs {
            for d in &c.versions {
                dictionaries.push((d.kind, d.version, d.raw.to_vec()));
            }
        }
        Image {
            version: IMAGE_VERSION,
            secret: self.cfg().secret,
            tenants,
            agents: st
                .agents
                .iter()
                .map(|a| AgentImage {
                    name: a.name.clone(),
                    tenant: a.tenant,
                    state: a.state,
                    importance: a.importance,
                    since: a.since.0,
                    units: a.units.clone(),
                    conversations: a.conversations.clone(),
                    released: a.released,
                })
                .collect(),
            units: st
                .units
                .iter()
                .map(|u| {
                    let u = u.as_ref()?;
                    let (disk_len, enc) = u.disk.unwrap_or((0, Encoding::Raw));
                    Some(UnitImage {
                        id: u.id.0,
                        disk_len,
                        disk_tag: enc.tag(),
                        owners: u.owners.to_vec(),
                        dependents: u.dependents,
                        base: u.base,
                        logical: u.logical,
                        framing: u.framing,
                        check: u.check,
                        last_access: u.last_access.0,
                        tenant: u.tenant,
                        kind: u.kind,
                        open: u.open,
                    })
                })
                .collect(),
            conversations: st
                .conversations
                .iter()
                .map(|c| {
                    c.as_ref().map(|c| ConversationImage {
                        agent: c.agent,
                        chunks: c.chunks.clone(),
                        tail: c.tail,
                        tail_first: c.tail_first,
                        len: c.len,
                    })
                })
                .collect(),
            dictionaries,
            dedup_hits: st.dedup_hits,
            dedup_bytes: st.dedup_bytes,
            delta_units: st.delta_units,
            log_seq,
        }
    }
}

/// Check a store directory's last checkpoint against its cold tier: every
/// unit it names must be there, decode with its dictionary and match its
/// checksum, and every reference (owners, conversation chunks, delta bases)
/// must name a unit. Returns how many references were checked; appends one
/// line per problem.
pub fn check_references(tier: &DiskTier, problems: &mut Vec<String>) -> Result<u64> {
    let Some((version, bytes)) = tier.get(&image_key()).map_err(Error::Cold)? else {
        return Ok(0);
    };
    if version != IMAGE_VERSION {
        problems.push(format!(
            "store image version {version}, expected {IMAGE_VERSION}"
        ));
        return Ok(0);
    }
    let img: Image = match postcard::from_bytes(&bytes) {
        Ok(i) => i,
        Err(e) => {
            problems.push(format!("store image does not decode: {e}"));
            return Ok(0);
        }
    };
    let mut dicts: std::collections::HashMap<(Kind, u32), Dictionary> = Default::default();
    for (kind, version, raw) in &img.dictionaries {
        match Dictionary::load(*kind, *version, Bytes::from(raw.clone()), 3) {
            Ok(d) => {
                dicts.insert((*kind, *version), d);
            }
            Err(e) => problems.push(format!("{kind} dictionary {version}: {e}")),
        }
    }
    let n = img.units.len() as u32;
    let mut refs = 0u64;
    let mut check = |what: String, k: u32, problems: &mut Vec<String>| {
        refs += 1;
        if k >= n || img.units[k as usize].is_none() {
            problems.push(format!("{what} names unit slot {k}, which is empty"));
        }
    };
    for (i, a) in img.agents.iter().enumerate() {
        for &k in &a.units {
            check(format!("agent {i}"), k, problems);
        }
    }
    for (i, c) in img.conversations.iter().enumerate() {
        let Some(c) = c else { continue };
        for &(k, _) in &c.chunks {
            check(format!("conversation {i}"), k, problems);
        }
        if c.tail != NIL {
            check(format!("conversation {i}'s open chunk"), c.tail, problems);
        }
    }
    for (k, u) in img.units.iter().enumerate() {
        if let Some(u) = u {
            if u.base != NIL {
                check(format!("unit slot {k}'s delta base"), u.base, problems);
            }
        }
    }
    // Decode every unit (bases first, memoised) and check its checksum.
    let mut plain: Vec<Option<Bytes>> = vec![None; img.units.len()];
    fn decode(
        k: usize,
        img: &Image,
        tier: &DiskTier,
        dicts: &std::collections::HashMap<(Kind, u32), Dictionary>,
        plain: &mut Vec<Option<Bytes>>,
        depth: u32,
    ) -> std::result::Result<Bytes, String> {
        if let Some(p) = &plain[k] {
            return Ok(p.clone());
        }
        let u = img.units[k].as_ref().ok_or("empty slot")?;
        if u.logical == 0 {
            return Ok(Bytes::new());
        }
        let key = if u.open {
            *blake3::keyed_hash(&u.id, &u.check.to_le_bytes()).as_bytes()
        } else {
            u.id
        };
        let (tag, bytes) = tier
            .get(&key)
            .map_err(|e| e.to_string())?
            .ok_or("missing from the cold tier")?;
        let enc = Encoding::from_tag(tag);
        let dict = match enc {
            Encoding::Zstd { dict } if dict > 0 => Some(
                dicts
                    .get(&(u.kind, dict))
                    .ok_or(format!("needs missing dictionary {dict}"))?,
            ),
            _ => None,
        };
        let base = if enc == Encoding::Delta {
            if depth > 8 || u.base == NIL {
                return Err("bad delta chain".into());
            }
            Some(decode(u.base as usize, img, tier, dicts, plain, depth + 1)?)
        } else {
            None
        };
        let frame = Frame {
            bytes: Bytes::from(bytes),
            encoding: enc,
        };
        let p = codec::decompress(&frame, u.logical as usize, dict, base.as_deref())
            .map_err(|e| e.to_string())?;
        if super::check_of(&p) != u.check {
            return Err("checksum mismatch after decoding".into());
        }
        let p = Bytes::from(p);
        plain[k] = Some(p.clone());
        Ok(p)
    }
    // The redo log must follow the image, and every record in it decode.
    let read = redo::read(&*tier.storage(), img.log_seq, false, |r| {
        refs += 1;
        if let Err(e) = redo::decode(r) {
            problems.push(e.to_string());
        }
        Ok(())
    });
    if let Err(e) = read {
        problems.push(e.to_string());
    }
    for k in 0..img.units.len() {
        if img.units[k].is_some() {
            if let Err(e) = decode(k, &img, tier, &dicts, &mut plain, 0) {
                problems.push(format!("unit slot {k}: {e}"));
            }
            // Keep only bases in memory.
            if img.units[k].as_ref().is_some_and(|u| u.dependents == 0) {
                plain[k] = None;
            }
        }
    }
    Ok(refs)
}

impl StoreBuilder {
    /// Open the persistent store in `dir` (created if missing): a
    /// [`DiskTier`] there as the cold tier, and the state of its last
    /// checkpoint restored — every unit starts cold and comes back on
    /// access or resume. The store's secret is the one it was created with.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Store> {
        let started = Instant::now();
        let tier = DiskTier::open(dir.as_ref()).map_err(Error::Cold)?;
        self.open_tier(tier, started)
    }

    /// [`StoreBuilder::open`] on any [`Storage`]: the cold tier, the
    /// store's image (kept in it) and the redo log all live there, so a
    /// test can run the store on
    /// [`MemStorage`](agentmem_cold::storage::MemStorage), inject faults
    /// and cut the power.
    ///
    /// [`Storage`]: agentmem_cold::storage::Storage
    pub fn open_storage(self, storage: Arc<dyn agentmem_cold::storage::Storage>) -> Result<Store> {
        let started = Instant::now();
        let tier = DiskTier::builder()
            .open_storage(storage)
            .map_err(Error::Cold)?;
        self.open_tier(tier, started)
    }

    /// [`StoreBuilder::open`] on a [`DiskTier`] opened by the caller (who
    /// may keep a clone for its stats); `started` is when the caller began
    /// opening it, for the report.
    pub fn open_tier(mut self, tier: DiskTier, started: Instant) -> Result<Store> {
        let cold_open = started.elapsed();
        let dir = std::path::PathBuf::from(tier.dir());
        let image = match tier.get(&image_key()).map_err(Error::Cold)? {
            None => None,
            Some((version, _)) if version != IMAGE_VERSION => {
                return Err(Error::Config(format!(
                    "{} holds a store image of version {version}; this agentmem reads version {IMAGE_VERSION}",
                    dir.display()
                )))
            }
            Some((_, bytes)) => Some(postcard::from_bytes::<Image>(&bytes).map_err(|e| {
                Error::Corrupt {
                    what: format!("store image in {}", dir.display()),
                    detail: e.to_string(),
                }
            })?),
        };
        // Checkpoints start once the log is replayed.
        let every = self.checkpoint_every.take();
        let durability = self.durability;
        let mut builder = self.cold_tier(Arc::new(tier.clone()));
        if let Some(img) = &image {
            builder = builder.secret(img.secret);
        }
        let store = builder.build()?;
        let mut report = OpenReport {
            cold_open,
            ..Default::default()
        };
        let log_seq = image.as_ref().map_or(0, |i| i.log_seq);
        let fresh = image.is_none();
        if let Some(img) = image {
            store.restore(img, &tier, &mut report)?;
        }
        // Work done after the last checkpoint is gone with the crash; so
        // are the records it wrote. Nobody else has the directory (locked).
        let named: hashbrown::HashSet<[u8; 32]> = {
            let st = store.inner.state.lock();
            st.units
                .iter()
                .flatten()
                .filter(|u| u.disk.is_some())
                .map(|u| u.cold_key().0)
                .chain([image_key()])
                .collect()
        };
        for key in tier.keys() {
            if !named.contains(&key) {
                tier.delete(&key).map_err(Error::Cold)?;
                report.orphans_deleted += 1;
            }
        }
        // Then the operations logged after the image, through the API.
        // No dictionary is trained meanwhile: those the logged run trained
        // are in the log, at the point they were installed.
        let replay_started = Instant::now();
        store.pause_training(true);
        let end = redo::read(&*tier.storage(), log_seq, true, |payload| {
            if fresh {
                return Err(Error::Corrupt {
                    what: format!("store in {}", dir.display()),
                    detail: "it has a redo log but no store image (the log cannot be replayed without the image's secret)".into(),
                });
            }
            report.replayed += 1;
            store.replay(payload)
        })?;
        store.pause_training(false);
        report.replay = replay_started.elapsed();
        if fresh {
            // A new store: its first image fixes the secret content ids
            // are keyed with, before anything is logged under it.
            store.checkpoint()?;
        }
        let log = Arc::new(redo::Log::open(
            tier.storage(),
            end,
            durability != Durability::Checkpoint,
        )?);
        store
            .inner
            .redo
            .set(log.clone())
            .expect("the log is set once, here");
        if report.replayed > 0 {
            // What was replayed goes into a new image now, and the log it
            // came from is deleted: otherwise a crash loop (open, work, be
            // killed before the first periodic checkpoint) grows the log
            // and every restart replays all of it again.
            let c = store.checkpoint()?;
            report.checkpoint = c.elapsed;
        }
        if let Durability::Group(every) = durability {
            let every = every.max(Duration::from_millis(1));
            store.spawn("agentmem-group-commit", every, move |_| {
                if let Err(e) = log.sync_to(log.logged()) {
                    tracing::error!("redo log group commit failed: {e}");
                }
                every
            })?;
        }
        if let Some(every) = every {
            store.spawn("agentmem-checkpoint", every, move |store| {
                if let Err(e) = store.checkpoint() {
                    tracing::warn!("periodic checkpoint failed: {e}");
                }
                every
            })?;
        }
        report.elapsed = started.elapsed();
        *store.inner.opened.lock() = Some(report);
        Ok(store)
    }
}

impl Store {
    /// Stop (or let go on) dictionary training, for replay: marks every
    /// kind as "training under way", which makes writes skip sampling.
    fn pause_training(&self, pause: bool) {
        for c in self.inner.state.lock().codecs.iter_mut() {
            c.training = pause;
        }
    }

    /// Apply one redo log record.
    fn replay(&self, payload: &[u8]) -> Result<()> {
        let (seq, op) = redo::decode(payload)?;
        let r = match op {
            Op::Register {
                name,
                tenant,
                importance,
            } => self
                .register_agent(name, &TenantId::new(tenant), importance)
                .map(drop),
            Op::SetState { agent, state } => self.set_state(AgentId(agent), state),
            Op::SetImportance { agent, importance } => {
                self.set_importance(AgentId(agent), importance)
            }
            Op::ReleaseAgent { agent } => self.release_agent(AgentId(agent)),
            Op::Put {
                agent,
                kind,
                vis,
                data,
            } => self.put(AgentId(agent), kind, data, vis).map(drop),
            Op::Share { from, id, to } => self.share(AgentId(from), &ContentId(id), AgentId(to)),
            Op::Release { agent, id } => self.release(AgentId(agent), &ContentId(id)),
            Op::CreateConversation { agent } => self.create_conversation(AgentId(agent)).map(drop),
            Op::Append { conversation, data } => {
                self.append(ConversationId(conversation), data).map(drop)
            }
            Op::Fork { agent, parent, at } => self
                .fork_conversation(AgentId(agent), ConversationId(parent), at)
                .map(drop),
            Op::DeleteConversation { conversation } => {
                self.delete_conversation(ConversationId(conversation))
            }
            Op::LoadDictionary { kind, version, raw } => self.load_dictionary(kind, version, raw),
            Op::Dictionary {
                kind,
                version,
                domain: None,
                raw,
            } => self.load_dictionary(kind, version, raw),
            Op::Dictionary {
                domain: Some(d), ..
            } => Err(Error::Config(format!(
                "a dictionary for dedup domain {d}: this agentmem keeps one per kind"
            ))),
        };
        r.map_err(|e| Error::Corrupt {
            what: format!("redo log operation {seq}"),
            detail: format!("does not apply to the store image: {e}"),
        })
    }

    fn restore(&self, img: Image, tier: &DiskTier, report: &mut OpenReport) -> Result<()> {
        let level = self.cfg().level;
        let mut st = self.inner.state.lock();
        report.restored = true;
        for (name, i, key) in img.tenants {
            st.tenants.insert(TenantId(name), (i, key));
        }
        for (kind, version, raw) in img.dictionaries {
            let d = Dictionary::load(kind, version, Bytes::from(raw), level)?;
            st.codecs[kind.index()].versions.push(Arc::new(d));
        }
        st.units = Vec::with_capacity(img.units.len());
        for (k, u) in img.units.into_iter().enumerate() {
            let Some(u) = u else {
                st.units.push(None);
                st.free.push(k as u32);
                continue;
            };
            let enc = Encoding::from_tag(u.disk_tag);
            let body = if u.logical == 0 {
                // An empty open chunk has nothing on disk.
                Body::Hot(Bytes::new(), None)
            } else {
                Body::Cold(u.disk_len, enc)
            };
            let unit = Unit {
                id: ContentId(u.id),
                body,
                owners: SmallVec::from_vec(u.owners),
                dependents: u.dependents,
                base: u.base,
                logical: u.logical,
                framing: u.framing,
                check: u.check,
                last_access: Timestamp(u.last_access),
                tenant: u.tenant,
                kind: u.kind,
                open: u.open,
                disk: (u.logical > 0).then_some((u.disk_len, enc)),
                generation: 0,
            };
            let tier_now = unit.tier();
            st.count(
                unit.kind,
                tier_now,
                u64::from(unit.logical),
                unit.stored(),
                true,
            );
            st.units.push(Some(unit));
            report.units += 1;
        }
        for k in 0..st.units.len() as u32 {
            if st.units[k as usize].as_ref().is_some_and(|u| !u.open) {
                st.index_insert(k);
            }
        }
        st.agents = img
            .agents
            .into_iter()
            .map(|a| Agent {
                name: a.name,
                tenant: a.tenant,
                state: a.state,
                importance: a.importance,
                since: Timestamp(a.since),
                units: a.units,
                conversations: a.conversations,
                released: a.released,
            })
            .collect();
        report.agents = st.agents.len() as u64;
        for a in 0..st.agents.len() as u32 {
            let v = st.agent_view(a);
            st.hot_policy.agent_changed(&v);
            st.warm_policy.agent_changed(&v);
        }
        st.conversations = img
            .conversations
            .into_iter()
            .map(|c| {
                c.map(|c| Conversation {
                    agent: c.agent,
                    chunks: c.chunks,
                    tail: c.tail,
                    tail_first: c.tail_first,
                    len: c.len,
                })
            })
            .collect();
        report.conversations = st.conversations.iter().flatten().count() as u64;
        st.dedup_hits = img.dedup_hits;
        st.dedup_bytes = img.dedup_bytes;
        st.delta_units = img.delta_units;
        // Delta bases and deltas are decoded under the lock, so they live
        // in RAM: load them now, before anyone else holds the store.
        let resident: Vec<u32> = (0..st.units.len() as u32)
            .filter(|&k| {
                st.units[k as usize].as_ref().is_some_and(|u| {
                    (u.dependents > 0 || u.base != NIL) && matches!(u.body, Body::Cold(..))
                })
            })
            .collect();
        for k in resident {
            let u = st.unit(k);
            let key = u.cold_key();
            let (tag, bytes) = tier
                .get(key.as_bytes())
                .map_err(Error::Cold)?
                .ok_or_else(|| Error::Corrupt {
                    what: "store image".into(),
                    detail: format!("unit {} is missing from the cold tier", u.id),
                })?;
            let frame = Frame {
                bytes: Bytes::from(bytes),
                encoding: Encoding::from_tag(tag),
            };
            st.set_body(k, Body::Warm(frame));
        }
        for k in 0..st.units.len() as u32 {
            if st.units[k as usize]
                .as_ref()
                .is_some_and(|u| u.tier() == Tier::Hot)
            {
                let v = st.view(k, Timestamp(0));
                st.hot_policy.insert(&v);
            }
        }
        let _ = UnitKey(0);
        Ok(())
    }
}
