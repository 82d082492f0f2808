//! The store with a disk tier attached: warm victims go cold under the RAM
//! budget, come back on access and resume, and are deleted when released.

use std::sync::Arc;

use agentmem_core::prelude::*;
use agentmem_core::tier::DiskTier;

mod common;
use common::message;

#[test]
fn units_go_cold_under_the_ram_budget_and_come_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let cold = DiskTier::open(dir.path()).unwrap();
    let store = Store::builder()
        .ram_budget(256 << 10)
        .hot_budget(64 << 10)
        .cold_tier(Arc::new(cold.clone()))
        .build()
        .unwrap();
    let tenant = TenantId::new("t");
    let mut agents = Vec::new();
    for a in 0..40 {
        let id = store
            .register_agent(&format!("a{a}"), &tenant, Importance::default())
            .unwrap();
        let conv = store.create_conversation(id).unwrap();
        let blob = store
            .put(
                id,
                Kind::ToolResult,
                &message(a, 999).repeat(20),
                Visibility::Private,
            )
            .unwrap();
        for i in 0..150 {
            store.append(conv, &message(a, i)).unwrap();
        }
        store.pause(id).unwrap();
        agents.push((id, conv, blob, a));
    }
    let stats = store.stats();
    assert!(
        stats.mem.cold_bytes > 0,
        "nothing went cold: {:?}",
        stats.mem
    );
    assert!(
        stats.mem.hot_bytes + stats.mem.warm_bytes <= 256 << 10,
        "over the RAM budget: {:?}",
        stats.mem
    );
    assert!(!cold.is_empty());
    // Every message and unit reads back exactly, from whatever tier.
    for &(id, conv, blob, a) in &agents {
        let all = store.read_all(conv).unwrap();
        assert_eq!(all.len(), 150);
        for (i, m) in all.iter().enumerate() {
            assert_eq!(&m[..], &message(a, i)[..]);
        }
        assert_eq!(
            &store.get_for(id, &blob).unwrap()[..],
            &message(a, 999).repeat(20)[..]
        );
    }
    // Resume brings an agent's units back; appends to a cold open chunk work.
    let (id, conv, _, a) = agents[3];
    let r = store.resume(id).unwrap();
    assert!(r.units > 0);
    store.append(conv, &message(a, 150)).unwrap();
    assert_eq!(
        &store.read_last(conv, 1).unwrap()[0][..],
        &message(a, 150)[..]
    );
    // A background resume brings units back without the caller waiting.
    let (id, ..) = agents[5];
    store.pause(agents[3].0).unwrap();
    let hot_before = store.stats().mem.hot_bytes;
    store.resume_in_background(id).unwrap();
    let t0 = std::time::Instant::now();
    while store.stats().mem.hot_bytes <= hot_before {
        assert!(
            t0.elapsed().as_secs() < 10,
            "background prefetch never happened"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(store.agent_info(id).unwrap().state, AgentState::Active);
    // Releasing agents deletes their cold records.
    let before = cold.len();
    for &(id, ..) in &agents[..20] {
        store.release_agent(id).unwrap();
    }
    // Deletes are applied by the next checkpoint (after it stops naming them).
    let r = store.checkpoint().unwrap();
    assert!(r.deleted > 0, "{r:?}");
    assert!(cold.len() < before, "{} !< {before}", cold.len());
    assert!(cold.verify().is_ok());
}

fn snapshot_of(
    store: &Store,
    agents: &[(AgentId, ConversationId, ContentId, usize)],
) -> Vec<Vec<Vec<u8>>> {
    agents
        .iter()
        .map(|&(id, conv, blob, _)| {
            let mut v: Vec<Vec<u8>> = store
                .read_all(conv)
                .unwrap()
                .iter()
                .map(|b| b.to_vec())
                .collect();
            v.push(store.get_for(id, &blob).unwrap().to_vec());
            v.push(format!("{:?}", store.agent_info(id).unwrap().state).into_bytes());
            v
        })
        .collect()
}

#[test]
fn store_open_restores_agents_states_conversations_units_and_dictionaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    let (before, dicts, prompt) = {
        let store = Store::builder()
            .ram_budget(512 << 10)
            .train_dictionaries_after(64 << 10)
            .open(dir.path())
            .unwrap();
        assert!(!store.open_report().unwrap().restored);
        let tenant = TenantId::new("t");
        let mut prompt = None;
        for a in 0..30 {
            let id = store
                .register_agent(&format!("a{a}"), &tenant, Importance::default())
                .unwrap();
            prompt = Some(
                store
                    .put(
                        id,
                        Kind::SystemPrompt,
                        b"You are a careful agent.",
                        Visibility::Public,
                    )
                    .unwrap(),
            );
            let conv = store.create_conversation(id).unwrap();
            let blob = store
                .put(
                    id,
                    Kind::ToolResult,
                    &message(a, 7).repeat(3),
                    Visibility::Private,
                )
                .unwrap();
            for i in 0..(70 + a) {
                store.append(conv, &message(a, i)).unwrap();
            }
            store
                .set_state(
                    id,
                    if a % 2 == 0 {
                        AgentState::Paused
                    } else {
                        AgentState::WaitingForHuman
                    },
                )
                .unwrap();
            agents.push((id, conv, blob, a));
        }
        let snap = snapshot_of(&store, &agents);
        let dicts = store.stats().dictionaries.len();
        assert!(dicts > 0, "no dictionary was trained");
        store.checkpoint().unwrap();
        // Changes after the checkpoint are not in it (a crash would lose them).
        (snap, dicts, prompt.unwrap())
    };
    let store = Store::open(dir.path()).unwrap();
    let r = store.open_report().unwrap();
    assert!(r.restored);
    assert_eq!(r.agents, 30);
    assert_eq!(store.stats().dictionaries.len(), dicts);
    assert_eq!(snapshot_of(&store, &agents), before);
    assert_eq!(store.unit_info(&prompt).unwrap().refs, 30);
    // The restored store goes on: new appends, new agents, same dedup domain.
    let (id, conv, _, a) = agents[0];
    store.resume(id).unwrap();
    store.append(conv, &message(a, 1000)).unwrap();
    let x = store
        .register_agent("new", &TenantId::new("t"), Importance::default())
        .unwrap();
    assert_eq!(
        store
            .put(
                x,
                Kind::SystemPrompt,
                b"You are a careful agent.",
                Visibility::Public
            )
            .unwrap(),
        prompt
    );
    store.checkpoint().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        &store.read_last(conv, 1).unwrap()[0][..],
        &message(a, 1000)[..]
    );
    assert_eq!(store.unit_info(&prompt).unwrap().refs, 31);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Store::open(dir.path()).unwrap();
    let e = Store::open(dir.path()).unwrap_err();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain += &format!(": {s}");
        src = s.source();
    }
    assert!(chain.contains("already opened"), "{chain}");
}

#[test]
fn a_full_disk_keeps_units_in_ram_and_the_store_working() {
    use agentmem_cold::storage::Faults;
    let (mem, store, a, conv) = common::small_store_on_mem_storage();
    mem.set_faults(Faults {
        fail_writes_after: Some(0),
        disk_full: true,
        ..Default::default()
    });
    for i in 0..300 {
        store.append(conv, &message(1, i)).unwrap();
    }
    store.pause(a).unwrap();
    let e = store.cold_error().expect("the full disk was reported");
    assert!(e.contains("no space left"), "{e}");
    assert_eq!(store.stats().mem.cold_bytes, 0);
    assert!(store.stats().over_budget);
    // Space comes back: the next spill moves the units out.
    mem.set_faults(Faults::default());
    store.append(conv, &message(1, 300)).unwrap();
    store.pause(a).unwrap();
    assert!(store.stats().mem.cold_bytes > 0);
    let all = store.read_all(conv).unwrap();
    for (i, m) in all.iter().enumerate() {
        assert_eq!(&m[..], &message(1, i)[..]);
    }
}

/// What a SIGKILL leaves: the directory's files as they are now.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn periodic_checkpoints_bound_what_a_crash_loses_and_close_is_immediate() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .checkpoint_every(Some(std::time::Duration::from_millis(50)))
        .open(&live)
        .unwrap();
    let a = store
        .register_agent("a", &TenantId::new("t"), Importance::default())
        .unwrap();
    let conv = store.create_conversation(a).unwrap();
    for i in 0..50 {
        store.append(conv, &message(2, i)).unwrap();
    }
    store.resume_in_background(a).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let crashed = dir.path().join("crashed");
    copy_dir(&live, &crashed);
    // Closing joins the background threads: reopening at once works.
    drop(store);
    for _ in 0..5 {
        let s = Store::open(&live).unwrap();
        s.resume_in_background(a).unwrap();
        assert_eq!(s.conversation_len(conv).unwrap(), 50);
    }
    // Without any explicit checkpoint, the crash image has the work.
    let s = Store::open(&crashed).unwrap();
    assert_eq!(s.conversation_len(conv).unwrap(), 50);
    assert_eq!(&s.read_last(conv, 1).unwrap()[0][..], &message(2, 49)[..]);
}
