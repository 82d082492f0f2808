//! Model-based crash test, in the manner of redb's `fuzz_redb`: several
//! threads run random store operations (put, get, release, share, append,
//! fork, state changes, pause/resume, maintain, checkpoint) against a store
//! whose cold tier, image and redo log all live on one in-memory `Storage`
//! that injects faults (failed and short writes, a full disk, failed
//! fsyncs). At a random instant the "machine" crashes — a power cut (only
//! fsynced bytes survive; `Durability::Sync`) or a killed process (every
//! written byte survives; group commit) — the store is reopened from what
//! survived and compared with a model of every operation acknowledged
//! before the crash:
//!
//! - every unit an agent holds is there, byte-exact; every unit released
//!   by all its holders is gone;
//! - every conversation holds exactly its acknowledged messages;
//! - every agent is in its acknowledged state;
//! - no operation failed unless a fault was injected.
//!
//! An operation that failed or returned around the crash may or may not be
//! there; the keys it touched are left out of the comparison (its thread
//! stops at its first failure).
//!
//! CI: 12 iterations, a few seconds. Longer:
//! `AGENTMEM_MODEL_ITERS=500 AGENTMEM_MODEL_SEED=1 cargo test --release -p agentmem-core --test model -- --nocapture`
//! (prints iterations, operations, faults injected and findings).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_cold::storage::{Faults, MemStorage};
use agentmem_cold::DiskTier;
use agentmem_core::prelude::*;
use agentmem_core::Durability;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

const THREADS: usize = 3;

#[derive(Default)]
struct Model {
    /// References each agent holds to each unit.
    refs: HashMap<(u32, ContentId), u32>,
    data: HashMap<ContentId, Vec<u8>>,
    public: HashSet<ContentId>,
    convs: HashMap<ConversationId, (u32, Vec<Vec<u8>>)>,
    states: HashMap<u32, AgentState>,
    /// Touched by an operation whose outcome is unknown.
    unsure_units: HashSet<ContentId>,
    unsure_convs: HashSet<ConversationId>,
    unsure_agents: HashSet<u32>,
    /// An operation whose new conversation id is unknown ran.
    unsure_new_conv: bool,
    /// Dictionaries loaded.
    dictionaries: u64,
    /// What happened to each unit, for a finding's message.
    history: HashMap<ContentId, Vec<String>>,
}

#[derive(Default, Debug, Clone, Copy)]
struct Figures {
    iterations: u64,
    operations: u64,
    acknowledged: u64,
    failed: u64,
    with_faults: u64,
    power_cuts: u64,
    kills: u64,
    units_checked: u64,
    messages_checked: u64,
    dictionaries: u64,
}

fn unit_bytes(rng: &mut impl Rng, tag: &str) -> Vec<u8> {
    let len = rng.random_range(1..6000usize);
    if rng.random_bool(0.5) {
        let mut v = format!("{{\"tool\":\"{tag}\",\"out\":\"").into_bytes();
        while v.len() < len {
            v.extend_from_slice(format!("line {} of {tag}; ", v.len() / 17).as_bytes());
        }
        v
    } else {
        let mut v = vec![0u8; len];
        let mut h = blake3::Hasher::new();
        h.update(tag.as_bytes());
        h.finalize_xof().fill(&mut v);
        v
    }
}

/// What one operation touched, for the model to mark unsure if needed.
enum Touch {
    Unit(ContentId),
    Conv(ConversationId),
    NewConv,
    Agent(u32),
    Nothing,
}

struct Ctx<'a> {
    store: &'a Store,
    model: &'a Mutex<Model>,
    crashed: &'a AtomicBool,
    faults_on: &'a AtomicBool,
    figures: &'a Mutex<Figures>,
}

impl Ctx<'_> {
    /// Apply `f`'s model update if the operation succeeded before the
    /// crash; else mark what it touched unsure. Returns whether the thread
    /// goes on.
    fn done<T>(
        &self,
        r: Result<T>,
        touch: Vec<Touch>,
        apply: impl FnOnce(&mut Model, T),
    ) -> Option<()> {
        let crashed = self.crashed.load(Ordering::SeqCst);
        let mut m = self.model.lock();
        let mut fig = self.figures.lock();
        fig.operations += 1;
        match r {
            Ok(v) if !crashed => {
                fig.acknowledged += 1;
                apply(&mut m, v);
                Some(())
            }
            r => {
                let failed = r.is_err();
                if let Err(e) = &r {
                    fig.failed += 1;
                    assert!(
                        self.faults_on.load(Ordering::SeqCst),
                        "FINDING: an operation failed with no fault injected: {e}"
                    );
                }
                for t in touch {
                    match t {
                        Touch::Unit(id) => {
                            m.unsure_units.insert(id);
                        }
                        Touch::Conv(c) => {
                            m.unsure_convs.insert(c);
                        }
                        Touch::NewConv => m.unsure_new_conv = true,
                        Touch::Agent(a) => {
                            m.unsure_agents.insert(a);
                        }
                        Touch::Nothing => {}
                    }
                }
                // A failed thread stops; one past the crash stops too.
                (!failed && !crashed).then_some(())
            }
        }
    }
}

fn worker(ctx: &Ctx<'_>, t: usize, agents: &[AgentId], seed: u64, stop: &AtomicBool) {
    let pos_now = || ctx.store.log_position();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let me = agents[t];
    let mut mine: Vec<ContentId> = Vec::new();
    let mut convs: Vec<ConversationId> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let s = ctx.store;
        let go = match rng.random_range(0..100) {
            0..=24 => {
                let again = (!mine.is_empty() && rng.random_bool(0.1))
                    .then(|| mine[rng.random_range(0..mine.len())]);
                // Dedup: the same bytes again.
                let data = again
                    .and_then(|id| ctx.model.lock().data.get(&id).cloned())
                    .unwrap_or_else(|| unit_bytes(&mut rng, &format!("{seed}/{t}/{n}")));
                let public = rng.random_bool(0.2);
                let vis = if public {
                    Visibility::Public
                } else {
                    Visibility::Private
                };
                let r = s.put(me, Kind::ToolResult, &data, vis);
                if let Ok(id) = &r {
                    mine.push(*id);
                }
                let touch = match (r.as_ref().ok().copied(), again) {
                    (Some(id), _) | (None, Some(id)) => vec![Touch::Unit(id), Touch::Agent(me.0)],
                    // New bytes and no id: the unit may exist, but nobody
                    // knows its id to compare it.
                    (None, None) => vec![Touch::Agent(me.0)],
                };
                ctx.done(r, touch, |m, id| {
                    m.history.entry(id).or_default().push(format!(
                        "put by {} (log at {:?})",
                        me.0,
                        pos_now()
                    ));
                    *m.refs.entry((me.0, id)).or_default() += 1;
                    m.data.insert(id, data);
                    if public {
                        m.public.insert(id);
                    }
                })
            }
            25..=39 => {
                if let Some(&id) = mine.get(rng.random_range(0..mine.len().max(1))) {
                    // A read checks live bytes; it changes nothing durable.
                    let want = ctx.model.lock().data.get(&id).cloned();
                    let got = s.get_for(me, &id);
                    match (&got, want) {
                        (Ok(b), Some(w)) => assert_eq!(&b[..], &w[..], "FINDING: wrong bytes"),
                        (Err(e), _) => assert!(
                            ctx.faults_on.load(Ordering::SeqCst),
                            "FINDING: a get failed with no fault injected: {e}"
                        ),
                        _ => {}
                    }
                }
                Some(())
            }
            40..=47 => match mine.is_empty() {
                true => Some(()),
                false => {
                    let id = mine.swap_remove(rng.random_range(0..mine.len()));
                    ctx.done(
                        s.release(me, &id),
                        vec![Touch::Unit(id), Touch::Agent(me.0)],
                        |m, ()| {
                            m.history.entry(id).or_default().push(format!(
                                "released by {} (log at {:?})",
                                me.0,
                                pos_now()
                            ));
                            let c = m.refs.get_mut(&(me.0, id)).expect("held");
                            *c -= 1;
                        },
                    )
                }
            },
            48..=52 => match mine.last() {
                None => Some(()),
                Some(&id) => {
                    let to = agents[rng.random_range(0..agents.len())];
                    ctx.done(
                        s.share(me, &id, to),
                        vec![Touch::Unit(id), Touch::Agent(to.0)],
                        |m, ()| {
                            m.history
                                .entry(id)
                                .or_default()
                                .push(format!("shared by {} to {}", me.0, to.0));
                            *m.refs.entry((to.0, id)).or_default() += 1
                        },
                    )
                }
            },
            53..=56 => {
                let r = s.create_conversation(me);
                if let Ok(c) = &r {
                    convs.push(*c);
                }
                ctx.done(r, vec![Touch::NewConv, Touch::Agent(me.0)], |m, c| {
                    m.convs.insert(c, (me.0, Vec::new()));
                })
            }
            57..=79 => match convs.get(rng.random_range(0..convs.len().max(1))) {
                None => Some(()),
                Some(&c) => {
                    let msg = format!(
                        r#"{{"role":"user","content":"{seed} {t} {n} {}"}}"#,
                        "z".repeat(rng.random_range(0..900))
                    )
                    .into_bytes();
                    ctx.done(s.append(c, &msg), vec![Touch::Conv(c)], |m, at| {
                        let v = &mut m.convs.get_mut(&c).expect("known").1;
                        assert_eq!(at, v.len() as u64, "FINDING: append index");
                        v.push(msg);
                    })
                }
            },
            80..=82 => match convs.get(rng.random_range(0..convs.len().max(1))) {
                None => Some(()),
                Some(&c) => {
                    let len = ctx.model.lock().convs[&c].1.len() as u64;
                    let at = rng.random_range(0..=len);
                    let r = s.fork_conversation(me, c, at);
                    if let Ok(f) = &r {
                        convs.push(*f);
                    }
                    ctx.done(
                        r,
                        vec![Touch::NewConv, Touch::Conv(c), Touch::Agent(me.0)],
                        |m, f| {
                            let prefix = m.convs[&c].1[..at as usize].to_vec();
                            m.convs.insert(f, (me.0, prefix));
                        },
                    )
                }
            },
            83..=90 => {
                let r = match rng.random_range(0..4) {
                    0 => s.pause(me),
                    1 => s.resume(me).map(drop),
                    _ => s.set_state(
                        me,
                        AgentState::ALL[rng.random_range(0..AgentState::ALL.len())],
                    ),
                };
                let r = r.and_then(|()| s.agent_info(me).map(|i| i.state));
                ctx.done(r, vec![Touch::Agent(me.0)], |m, st| {
                    m.states.insert(me.0, st);
                })
            }
            91..=92 => ctx.done(s.maintain(16), vec![Touch::Nothing], |_, _| {}),
            // Thread 0 alone loads the trained dictionary again as the
            // next version (so no two loads race for a number): replay
            // must number it as this run did.
            93..=98 if t == 0 => {
                let mut v = 1;
                while s.dictionary(Kind::ToolResult, v + 1).is_some() {
                    v += 1;
                }
                match s.dictionary(Kind::ToolResult, 1) {
                    Some(raw) if v < 4 => ctx.done(
                        s.load_dictionary(Kind::ToolResult, v + 1, &raw),
                        vec![Touch::Nothing],
                        |m, ()| m.dictionaries += 1,
                    ),
                    _ => Some(()),
                }
            }
            93..=98 => Some(()),
            _ => ctx.done(s.checkpoint(), vec![Touch::Nothing], |_, _| {}),
        };
        if go.is_none() {
            return;
        }
    }
}

fn open(storage: &MemStorage, durability: Durability) -> Result<Store> {
    let tier = DiskTier::builder()
        .segment_size(1 << 20)
        .sync_interval(Some(Duration::from_millis(2)))
        .open_storage(Arc::new(storage.clone()))
        .map_err(Error::Cold)?;
    Store::builder()
        .ram_budget(192 << 10)
        .hot_budget(64 << 10)
        .durability(durability)
        .checkpoint_every(None)
        .train_dictionaries_after(32 << 10)
        .dictionary_size(4 << 10)
        .open_tier(tier, Instant::now())
}

fn iteration(seed: u64, fig: &Mutex<Figures>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let disk = MemStorage::new();
    let power_cut = rng.random_bool(0.5);
    let durability = if power_cut {
        Durability::Sync
    } else {
        Durability::Group(Duration::from_millis(5))
    };
    let store = open(&disk, durability).unwrap();
    let model = Mutex::new(Model::default());
    let agents: Vec<AgentId> = (0..THREADS)
        .map(|i| {
            let a = store
                .register_agent(&format!("a{i}"), &TenantId::new("t"), Importance::default())
                .unwrap();
            model.lock().states.insert(a.0, AgentState::Active);
            a
        })
        .collect();
    store.sync().unwrap();
    let crashed = AtomicBool::new(false);
    let faults_on = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let ctx = Ctx {
        store: &store,
        model: &model,
        crashed: &crashed,
        faults_on: &faults_on,
        figures: fig,
    };
    let run_ms = rng.random_range(5..120u64);
    let fault_at = rng
        .random_bool(0.5)
        .then(|| rng.random_range(0..run_ms.max(1)));
    let faults = Faults {
        fail_writes_after: rng.random_bool(0.6).then(|| rng.random_range(0..400)),
        disk_full: rng.random_bool(0.5),
        short_writes: rng.random_bool(0.3),
        fail_syncs_after: rng.random_bool(0.4).then(|| rng.random_range(0..60)),
    };
    let survivor = std::thread::scope(|sc| {
        for t in 0..THREADS {
            let (ctx, agents, stop) = (&ctx, &agents, &stop);
            let s = seed.wrapping_mul(31).wrapping_add(t as u64);
            sc.spawn(move || worker(ctx, t, agents, s, stop));
        }
        let started = Instant::now();
        if let Some(at) = fault_at {
            std::thread::sleep(Duration::from_millis(at));
            faults_on.store(true, Ordering::SeqCst);
            disk.set_faults(faults.clone());
        }
        std::thread::sleep(Duration::from_millis(run_ms).saturating_sub(started.elapsed()));
        // The crash: operations that return from now on are unsure.
        crashed.store(true, Ordering::SeqCst);
        let survivor = if power_cut {
            disk.power_cut()
        } else {
            disk.kill()
        };
        stop.store(true, Ordering::SeqCst);
        survivor
    });
    {
        let mut f = fig.lock();
        f.iterations += 1;
        f.with_faults += u64::from(fault_at.is_some());
        f.power_cuts += u64::from(power_cut);
        f.kills += u64::from(!power_cut);
    }
    // The old process is gone; its handle goes without touching `survivor`.
    disk.set_faults(Faults::default());
    drop(store);
    let s = open(&survivor, durability).unwrap_or_else(|e| {
        panic!("FINDING (seed {seed}): the store does not reopen after the crash: {e}")
    });
    let m = model.into_inner();
    let faulted = fault_at.is_some();
    let ctx = |what: String| {
        format!(
            "FINDING (AGENTMEM_MODEL_ONLY={seed}, power cut {power_cut}, faults {faulted}): {what}"
        )
    };
    let mut checked_units = HashSet::new();
    for (&(a, id), &n) in &m.refs {
        if m.unsure_units.contains(&id) || m.unsure_agents.contains(&a) {
            continue;
        }
        checked_units.insert(id);
        let got = s.get_for(AgentId(a), &id);
        if n > 0 {
            let got = got
                .unwrap_or_else(|e| panic!("{}", ctx(format!("unit {id} of agent {a} lost: {e}"))));
            assert_eq!(
                &got[..],
                &m.data[&id][..],
                "{}",
                ctx(format!("unit {id}: wrong bytes"))
            );
        } else if !m.public.contains(&id) {
            // Released: the agent may not read it any more (a released
            // unit may live on as another's delta base, but not for it).
            assert!(
                got.is_err(),
                "{}",
                ctx(format!(
                    "agent {a} released unit {id}, yet reads it: {:?}; history {:?}; reopened {:?}",
                    s.unit_info(&id),
                    m.history.get(&id),
                    s.open_report(),
                ))
            );
        }
    }
    let checked_units = checked_units.len() as u64;
    let mut checked_msgs = 0;
    for (c, (owner, msgs)) in &m.convs {
        if m.unsure_convs.contains(c) {
            continue;
        }
        let got = s
            .read_all(*c)
            .unwrap_or_else(|e| panic!("{}", ctx(format!("{c:?} of agent {owner} lost: {e}"))));
        assert_eq!(
            got.len(),
            msgs.len(),
            "{}",
            ctx(format!("{c:?}: message count"))
        );
        for (i, (g, w)) in got.iter().zip(msgs).enumerate() {
            assert_eq!(&g[..], &w[..], "{}", ctx(format!("{c:?} message {i}")));
        }
        checked_msgs += msgs.len() as u64;
    }
    for (a, st) in &m.states {
        if m.unsure_agents.contains(a) {
            continue;
        }
        let info = s.agent_info(AgentId(*a)).unwrap();
        assert_eq!(info.state, *st, "{}", ctx(format!("agent {a}: state")));
        if !m.unsure_new_conv {
            let n = m.convs.values().filter(|(o, _)| o == a).count() as u64;
            assert_eq!(
                info.conversations,
                n,
                "{}",
                ctx(format!("agent {a}: conversations"))
            );
        }
    }
    assert_eq!(s.agents().len(), THREADS, "{}", ctx("agents".into()));
    // And the reopened store takes writes and checkpoints.
    let id = s
        .put(
            agents[0],
            Kind::Blob,
            b"after the crash",
            Visibility::Private,
        )
        .unwrap();
    s.checkpoint().unwrap();
    assert_eq!(&s.get(&id).unwrap()[..], b"after the crash");
    let mut f = fig.lock();
    f.units_checked += checked_units;
    f.dictionaries += m.dictionaries;
    f.messages_checked += checked_msgs;
}

#[test]
fn random_operations_faults_and_crashes_match_the_model() {
    let iters: u64 = std::env::var("AGENTMEM_MODEL_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("AGENTMEM_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let fig = Mutex::new(Figures::default());
    let started = Instant::now();
    let done = AtomicU64::new(0);
    let only: Option<u64> = std::env::var("AGENTMEM_MODEL_ONLY")
        .ok()
        .and_then(|s| s.parse().ok());
    for i in 0..iters {
        if let Some(o) = only {
            if i > 0 {
                break;
            }
            iteration(o, &fig);
            continue;
        }
        iteration(seed.wrapping_mul(1_000_003).wrapping_add(i), &fig);
        done.fetch_add(1, Ordering::Relaxed);
    }
    let f = *fig.lock();
    eprintln!(
        "model test, seed {seed}: {} iterations in {:.1} s ({} power cuts, {} kills, {} with faults injected); {} operations ({} acknowledged, {} failed under faults); {} dictionaries loaded; {} units and {} messages compared after reopening; findings: 0",
        f.iterations,
        started.elapsed().as_secs_f64(),
        f.power_cuts,
        f.kills,
        f.with_faults,
        f.operations,
        f.acknowledged,
        f.failed,
        f.dictionaries,
        f.units_checked,
        f.messages_checked
    );
    assert!(f.acknowledged > 0);
}
