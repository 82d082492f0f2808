//! The store's public behaviour.

use std::collections::HashMap;
use std::sync::Arc;

use agentmem_core::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn store() -> Store {
    Store::builder()
        .clock(Arc::new(ManualClock::new()))
        .build()
        .unwrap()
}

fn agent(s: &Store, tenant: &str) -> AgentId {
    s.register_agent("a", &TenantId::new(tenant), Importance::default())
        .unwrap()
}

fn text(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let words = [
        "the",
        "agent",
        "waits",
        "for",
        "a",
        "reply",
        "tool",
        "call",
        "result",
        "user",
        "{\"role\":",
        "null,",
    ];
    let mut out = Vec::new();
    while out.len() < n {
        out.extend_from_slice(words[rng.random_range(0..words.len())].as_bytes());
        out.push(if rng.random_bool(0.1) { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

#[test]
fn identical_content_is_stored_once_and_freed_with_its_last_reference() {
    let s = store();
    let (a, b) = (agent(&s, "t"), agent(&s, "t"));
    let data = text(5000, 1);
    let id1 = s
        .put(a, Kind::ToolResult, &data, Visibility::Private)
        .unwrap();
    let id2 = s
        .put(b, Kind::ToolResult, &data, Visibility::Private)
        .unwrap();
    assert_eq!(id1, id2);
    assert_eq!(s.unit_info(&id1).unwrap().refs, 2);
    let st = s.stats();
    assert_eq!(st.kind(Kind::ToolResult).units, 1);
    assert_eq!(st.kind(Kind::ToolResult).logical_bytes, 10_000);
    assert_eq!(st.dedup_hits, 1);
    s.release(a, &id1).unwrap();
    assert_eq!(&s.get(&id1).unwrap()[..], &data[..]);
    assert!(matches!(s.release(a, &id1), Err(Error::NotOwner { .. })));
    s.release(b, &id1).unwrap();
    assert!(matches!(s.get(&id1), Err(Error::UnknownUnit { .. })));
    assert_eq!(s.stats().kind(Kind::ToolResult).units, 0);
}

#[test]
fn domains_separate_tenants_but_not_public_content() {
    let s = store();
    let (a, b) = (agent(&s, "alice"), agent(&s, "bob"));
    let data = b"the same bytes in two tenants".to_vec();
    let pa = s.put(a, Kind::Blob, &data, Visibility::Private).unwrap();
    let pb = s.put(b, Kind::Blob, &data, Visibility::Private).unwrap();
    assert_ne!(pa, pb, "private content must not dedup across tenants");
    let qa = s
        .put(a, Kind::SystemPrompt, &data, Visibility::Public)
        .unwrap();
    let qb = s
        .put(b, Kind::SystemPrompt, &data, Visibility::Public)
        .unwrap();
    assert_eq!(qa, qb);
    assert!(matches!(s.get_for(b, &pa), Err(Error::AccessDenied { .. })));
    assert_eq!(&s.get_for(b, &qa).unwrap()[..], &data[..]);
    let c = agent(&s, "alice");
    assert!(matches!(s.get_for(c, &pa), Err(Error::AccessDenied { .. })));
    s.share(a, &pa, c).unwrap();
    assert_eq!(&s.get_for(c, &pa).unwrap()[..], &data[..]);
}

#[test]
fn bad_input_gives_typed_errors() {
    let s = Store::builder().max_unit_size(1000).build().unwrap();
    let a = agent(&s, "t");
    assert!(matches!(
        s.put(a, Kind::Blob, b"", Visibility::Private),
        Err(Error::EmptyUnit { .. })
    ));
    let e = s
        .put(a, Kind::Blob, &[1u8; 1001], Visibility::Private)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnitTooLarge {
                size: 1001,
                max: 1000,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("1001"));
    assert!(matches!(
        s.put(AgentId(99), Kind::Blob, b"x", Visibility::Private),
        Err(Error::UnknownAgent(_))
    ));
    let unknown = ContentId::from_bytes([7; 32]);
    assert!(matches!(s.get(&unknown), Err(Error::UnknownUnit { .. })));
    assert!(matches!(
        s.release(a, &unknown),
        Err(Error::UnknownUnit { .. })
    ));
    assert!(matches!(
        s.append(ConversationId(5), b"m"),
        Err(Error::UnknownConversation(_))
    ));
    let c = s.create_conversation(a).unwrap();
    s.append(c, b"one").unwrap();
    assert!(matches!(
        s.read_messages(c, 0..2),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        s.load_dictionary(Kind::Blob, 1, b"garbage"),
        Err(Error::CorruptDictionary { .. })
    ));
    assert!(Store::builder().compression_level(0).build().is_err());
    assert!(Store::builder()
        .ram_budget(10)
        .hot_budget(11)
        .build()
        .is_err());
    s.release_agent(a).unwrap();
    assert!(matches!(
        s.put(a, Kind::Blob, b"x", Visibility::Private),
        Err(Error::UnknownAgent(_))
    ));
}

#[test]
fn hot_budget_demotes_and_warm_units_read_back_exact() {
    let s = Store::builder()
        .ram_budget(1 << 20)
        .hot_budget(64 * 1024)
        .build()
        .unwrap();
    let a = agent(&s, "t");
    let items: Vec<(ContentId, Vec<u8>)> = (0..50)
        .map(|i| {
            let d = text(8000, i);
            (
                s.put(a, Kind::ToolResult, &d, Visibility::Private).unwrap(),
                d,
            )
        })
        .collect();
    let st = s.stats();
    assert!(st.mem.hot_bytes <= 64 * 1024, "hot {}", st.mem.hot_bytes);
    assert!(st.mem.warm_bytes > 0);
    assert!(
        st.mem.warm_bytes < st.tier(Tier::Warm).logical_bytes / 2,
        "warm is compressed"
    );
    for (id, d) in &items {
        assert_eq!(&s.get(id).unwrap()[..], &d[..]);
    }
    assert!(s.stats().mem.hot_bytes <= 64 * 1024);
}

#[test]
fn pause_demotes_and_resume_prefetches() {
    let s = store();
    let (a, b) = (agent(&s, "t"), agent(&s, "t"));
    let mine = s
        .put(a, Kind::ToolResult, &text(6000, 3), Visibility::Private)
        .unwrap();
    let shared = s
        .put(a, Kind::SystemPrompt, &text(6000, 4), Visibility::Public)
        .unwrap();
    s.put(b, Kind::SystemPrompt, &text(6000, 4), Visibility::Public)
        .unwrap();
    let c = s.create_conversation(a).unwrap();
    for i in 0..10 {
        s.append(c, &text(300, 100 + i)).unwrap();
    }
    s.pause(a).unwrap();
    assert_eq!(s.unit_info(&mine).unwrap().tier, Tier::Warm);
    assert_eq!(
        s.unit_info(&shared).unwrap().tier,
        Tier::Hot,
        "b still works with the shared prompt"
    );
    assert_eq!(s.stats().kind(Kind::Conversation).hot_bytes, 0);
    let r = s.resume(a).unwrap();
    assert!(r.units >= 2, "{r:?}");
    assert_eq!(s.unit_info(&mine).unwrap().tier, Tier::Hot);
    assert_eq!(s.agent_info(a).unwrap().state, AgentState::Active);
    assert_eq!(s.read_all(c).unwrap().len(), 10);
}

#[test]
fn near_duplicate_and_its_reference_read_back_after_the_reference_is_released() {
    let s = Store::builder().hot_budget(0).build().unwrap();
    let a = agent(&s, "t");
    let base: Vec<u8> = (0..600)
        .flat_map(|i| {
            format!(
                "rule {i}: always check the {} before acting\n",
                i * 7919 % 1000
            )
            .into_bytes()
        })
        .collect();
    let mut variant = base.clone();
    variant.splice(5000..5000, b"an extra rule in the middle\n".iter().copied());
    let id_base = s
        .put(a, Kind::SystemPrompt, &base, Visibility::Public)
        .unwrap();
    let id_var = s
        .put(a, Kind::SystemPrompt, &variant, Visibility::Public)
        .unwrap();
    let info = s.unit_info(&id_var).unwrap();
    assert!(info.delta, "{info:?}");
    assert!(info.stored_bytes < 200, "{info:?}");
    s.release(a, &id_base).unwrap();
    assert_eq!(&s.get(&id_var).unwrap()[..], &variant[..]);
    // The base is gone for users (kept only for its dependent)...
    assert!(matches!(s.get(&id_base), Err(Error::UnknownUnit { .. })));
    // ... and storing it again revives it, byte-exact.
    assert_eq!(
        s.put(a, Kind::SystemPrompt, &base, Visibility::Public)
            .unwrap(),
        id_base
    );
    assert_eq!(&s.get(&id_base).unwrap()[..], &base[..]);
    s.release(a, &id_base).unwrap();
    s.release(a, &id_var).unwrap();
    assert!(s.get(&id_base).is_err());
    assert_eq!(s.stats().kind(Kind::SystemPrompt).units, 0);
}

#[test]
fn conversations_read_ranges_and_forks_share_their_prefix() {
    let s = Store::builder().hot_budget(32 * 1024).build().unwrap();
    let (a, b) = (agent(&s, "t"), agent(&s, "t"));
    let c = s.create_conversation(a).unwrap();
    let msgs: Vec<Vec<u8>> = (0..200)
        .map(|i| text(200 + (i * 37) % 900, i as u64))
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(s.append(c, m).unwrap(), i as u64);
    }
    assert_eq!(s.conversation_len(c).unwrap(), 200);
    let got = s.read_messages(c, 13..150).unwrap();
    assert_eq!(got.len(), 137);
    for (g, m) in got.iter().zip(&msgs[13..150]) {
        assert_eq!(&g[..], &m[..]);
    }
    let last = s.read_last(c, 5).unwrap();
    assert_eq!(&last[4][..], &msgs[199][..]);
    assert!(s.read_messages(c, 7..7).unwrap().is_empty());
    let before = s.stats().kind(Kind::Conversation).unique_bytes;
    let f = s.fork_conversation(b, c, 120).unwrap();
    assert_eq!(s.conversation_len(f).unwrap(), 120);
    let after = s.stats().kind(Kind::Conversation).unique_bytes;
    let copied = after - before;
    assert!(
        copied < 20 * 1024,
        "a fork copies at most the partial chunk, copied {copied}"
    );
    s.append(f, b"a different turn").unwrap();
    let all_f = s.read_all(f).unwrap();
    assert_eq!(&all_f[119][..], &msgs[119][..]);
    assert_eq!(&all_f[120][..], b"a different turn");
    s.delete_conversation(c).unwrap();
    assert_eq!(&s.read_all(f).unwrap()[0][..], &msgs[0][..]);
    let other = agent(&s, "other-tenant");
    assert!(s.fork_conversation(other, f, 1).is_err());
}

#[test]
fn dictionaries_are_trained_from_the_stores_own_data() {
    let s = Store::builder()
        .hot_budget(0)
        .train_dictionaries_after(256 * 1024)
        .build()
        .unwrap();
    let a = agent(&s, "t");
    let c = s.create_conversation(a).unwrap();
    for i in 0..2000u64 {
        let m = format!(
            "{{\"role\":\"{}\",\"content\":\"{}\",\"tool_calls\":null,\"turn_idx\":{i},\"cost\":0.0{}}}",
            if i % 2 == 0 { "user" } else { "assistant" },
            String::from_utf8(text(150, i)).unwrap().replace('\n', " "),
            i % 97
        );
        s.append(c, m.as_bytes()).unwrap();
    }
    let st = s.stats();
    assert_eq!(st.dictionaries.len(), 1, "{:?}", st.dictionaries);
    s.maintain(usize::MAX).unwrap();
    let st = s.stats();
    assert!(
        st.kind(Kind::Conversation).ratio > 3.0,
        "{:?}",
        st.kind(Kind::Conversation)
    );
    let raw = s
        .tenant_dictionary(&TenantId::new("t"), Kind::Conversation, 1)
        .unwrap();
    // A dictionary written out and loaded into another store works.
    let s2 = store();
    s2.load_dictionary(Kind::Conversation, 1, &raw).unwrap();
    assert_eq!(s.read_all(c).unwrap().len(), 2000);
}

#[test]
fn per_agent_accounting_charges_shared_bytes_proportionally() {
    let s = Store::builder().hot_budget(1 << 20).build().unwrap();
    let agents: Vec<AgentId> = (0..4).map(|_| agent(&s, "t")).collect();
    let prompt = text(4000, 9);
    for &a in &agents {
        s.put(a, Kind::SystemPrompt, &prompt, Visibility::Public)
            .unwrap();
    }
    let own = s
        .put(agents[0], Kind::Blob, &text(1000, 10), Visibility::Private)
        .unwrap();
    let st = s.stats();
    let stored_prompt = 4000;
    let a0 = st.agents.iter().find(|x| x.agent == agents[0]).unwrap();
    let a1 = st.agents.iter().find(|x| x.agent == agents[1]).unwrap();
    assert_eq!(a1.shared_bytes, stored_prompt / 4);
    assert_eq!(a0.exclusive_bytes, s.unit_info(&own).unwrap().stored_bytes);
    assert_eq!(a0.logical_bytes, 5000);
    let total: u64 = st.agents.iter().map(|x| x.charged_bytes).sum();
    assert_eq!(total, st.mem.hot_bytes + st.mem.warm_bytes);
    assert_eq!(st.mem.total_allocated, 4 * 4000 + 1000);
    assert_eq!(st.mem.total_deduplicated, 3 * 4000);
}

/// Random puts, gets, releases and appends against a plain model.
#[test]
fn random_operations_match_a_hashmap_model() {
    for seed in 0..4u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let s = Store::builder()
            .hot_budget(48 * 1024)
            .ram_budget(1 << 30)
            .train_dictionaries_after(64 * 1024)
            .build()
            .unwrap();
        let agents: Vec<AgentId> = (0..4)
            .map(|i| agent(&s, if i < 2 { "x" } else { "y" }))
            .collect();
        // (agent, id) -> (refs, bytes)
        let mut model: HashMap<(AgentId, ContentId), (u32, Vec<u8>)> = HashMap::new();
        let mut convs: Vec<(ConversationId, Vec<Vec<u8>>)> = Vec::new();
        for step in 0..3000 {
            let a = agents[rng.random_range(0..agents.len())];
            match rng.random_range(0..100) {
                0..=29 => {
                    let d = text(rng.random_range(1..6000), rng.random_range(0..40));
                    let id = s.put(a, Kind::ToolResult, &d, Visibility::Private).unwrap();
                    model.entry((a, id)).or_insert((0, d)).0 += 1;
                }
                30..=54 => {
                    if let Some(((_, id), (_, d))) =
                        model.iter().nth(rng.random_range(0..model.len().max(1)))
                    {
                        assert_eq!(&s.get(id).unwrap()[..], &d[..], "seed {seed} step {step}");
                    }
                }
                55..=69 => {
                    if let Some(&(ag, id)) =
                        model.keys().nth(rng.random_range(0..model.len().max(1)))
                    {
                        s.release(ag, &id).unwrap();
                        let e = model.get_mut(&(ag, id)).unwrap();
                        e.0 -= 1;
                        if e.0 == 0 {
                            model.remove(&(ag, id));
                        }
                        let still_held = model.keys().any(|(_, i)| *i == id);
                        assert_eq!(s.get(&id).is_ok(), still_held, "seed {seed} step {step}");
                    }
                }
                70..=89 => {
                    if convs.is_empty() || rng.random_bool(0.05) {
                        convs.push((s.create_conversation(a).unwrap(), Vec::new()));
                    }
                    let i = rng.random_range(0..convs.len());
                    let m = text(rng.random_range(0..2000), rng.random_range(0..1000));
                    s.append(convs[i].0, &m).unwrap();
                    convs[i].1.push(m);
                }
                90..=94 => {
                    if let Some((c, msgs)) = convs.get(rng.random_range(0..convs.len().max(1))) {
                        let n = msgs.len() as u64;
                        let lo = rng.random_range(0..=n);
                        let hi = rng.random_range(lo..=n);
                        let got = s.read_messages(*c, lo..hi).unwrap();
                        assert_eq!(got.len() as u64, hi - lo);
                        for (g, m) in got.iter().zip(&msgs[lo as usize..hi as usize]) {
                            assert_eq!(&g[..], &m[..], "seed {seed} step {step}");
                        }
                    }
                }
                95..=97 => s.pause(a).unwrap(),
                _ => {
                    s.resume(a).unwrap();
                }
            }
        }
        let st = s.stats();
        let distinct: std::collections::HashSet<ContentId> =
            model.keys().map(|(_, i)| *i).collect();
        // Released units are freed, except bases that deltas still need.
        let units = st.kind(Kind::ToolResult).units;
        assert!(units >= distinct.len() as u64, "seed {seed}");
        assert!(
            units <= distinct.len() as u64 + st.delta_units,
            "seed {seed}: {units} units"
        );
        for ((_, id), (_, d)) in &model {
            assert_eq!(&s.get(id).unwrap()[..], &d[..]);
        }
        for (c, msgs) in &convs {
            let all = s.read_all(*c).unwrap();
            assert_eq!(all.len(), msgs.len());
            assert!(all.iter().zip(msgs).all(|(g, m)| g[..] == m[..]));
        }
    }
}
