//! Issue 14, attack 2: a tenant must not learn another tenant's private
//! data from the sizes of its own compressed units. Dictionaries are kept
//! per dedup domain (public, and one per tenant), so a tenant's units are
//! never compressed with anything learnt from another tenant's private
//! units.

use agentmem_core::prelude::*;

#[path = "../benches/support/messages.rs"]
mod messages;

fn tool_result(secret: &str, filler: &[u8]) -> Vec<u8> {
    let mut out = format!(
        r#"{{"tool":"get_credentials","status":"ok","result":{{"api_key":"{secret}","scope":"billing"}},"context":"#
    )
    .into_bytes();
    out.extend_from_slice(filler);
    out.push(b'}');
    out
}

fn hex(seed: u64) -> String {
    let mut b = [0u8; 16];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn another_tenants_guess_of_a_secret_is_not_smaller_than_wrong_guesses() {
    let store = Store::builder().build().unwrap();
    let msgs = messages::messages(3000);
    let alice = store
        .register_agent("victim", &TenantId::new("alice"), Importance::default())
        .unwrap();
    let bob = store
        .register_agent("attacker", &TenantId::new("bob"), Importance::default())
        .unwrap();
    // Alice's tool results, each holding the secret, well past the 1 MiB
    // of samples a dictionary is trained on.
    let secret = format!("sk-live-{}", hex(424242));
    let mut written = 0;
    let mut i = 0;
    while written < 2 << 20 {
        let data = tool_result(&secret, &msgs[i % msgs.len()]);
        written += data.len();
        store
            .put(alice, Kind::ToolResult, &data, Visibility::Private)
            .unwrap();
        i += 1;
    }
    store.pause(alice).unwrap();
    // Bob guesses: 99 wrong secrets and the right one, same filler.
    let right = 57;
    let mut ids = Vec::new();
    for g in 0..100u64 {
        let guess = if g == right {
            secret.clone()
        } else {
            format!("sk-live-{}", hex(g))
        };
        let data = tool_result(&guess, b"\"none\"");
        ids.push(
            store
                .put(bob, Kind::ToolResult, &data, Visibility::Private)
                .unwrap(),
        );
    }
    store.pause(bob).unwrap();
    let sizes: Vec<u64> = ids
        .iter()
        .map(|id| {
            let info = store.unit_info(id).unwrap();
            assert_eq!(info.tier, Tier::Warm);
            info.stored_bytes
        })
        .collect();
    let wrong: Vec<u64> = sizes
        .iter()
        .enumerate()
        .filter(|&(g, _)| g as u64 != right)
        .map(|(_, &s)| s)
        .collect();
    let (lo, hi) = (*wrong.iter().min().unwrap(), *wrong.iter().max().unwrap());
    let r = sizes[right as usize];
    assert!(
        (lo..=hi).contains(&r),
        "the right guess is {r} B, wrong guesses {lo}..={hi} B: its size gives the secret away"
    );
    // Alice's own units do use a dictionary trained on her data, and it
    // is hers alone.
    let stats = store.stats();
    assert!(
        stats.dictionaries.iter().any(|d| d.kind == Kind::ToolResult
            && d.tenant.as_ref().map(|t| t.0.as_str()) == Some("alice")),
        "{:?}",
        stats.dictionaries
    );
    assert!(stats
        .dictionaries
        .iter()
        .all(|d| d.tenant.as_ref().map(|t| t.0.as_str()) != Some("bob")));
    // Dedup: Bob storing Alice's exact unit gets another id and no hit.
    let alices = tool_result(&secret, &msgs[0]);
    let hits = stats.dedup_hits;
    let a_id = store
        .put(alice, Kind::ToolResult, &alices, Visibility::Private)
        .unwrap();
    assert_eq!(
        store.stats().dedup_hits,
        hits + 1,
        "Alice's own copy dedups"
    );
    let b_id = store
        .put(bob, Kind::ToolResult, &alices, Visibility::Private)
        .unwrap();
    assert_ne!(a_id, b_id);
    assert_eq!(store.stats().dedup_hits, hits + 1, "no hit across tenants");
    assert_eq!(store.unit_info(&b_id).unwrap().refs, 1);
    println!("right guess {r} B, wrong guesses {lo}..={hi} B");
}

/// Tenants' sample copies are capped in total; a tenant past the cap still
/// gets its dictionary, trained on its own units.
#[test]
fn every_tenant_gets_its_own_dictionary_past_the_cap_on_sample_copies() {
    let store = Store::builder()
        .train_dictionaries_after(64 << 10)
        .dictionary_size(8 << 10)
        .build()
        .unwrap();
    let msgs = messages::messages(3000);
    let tenants: Vec<AgentId> = (0..20)
        .map(|t| {
            store
                .register_agent("a", &TenantId::new(format!("t{t}")), Importance::default())
                .unwrap()
        })
        .collect();
    let mut next = 0usize;
    let mut put_bytes = |a: AgentId, n: usize| {
        let mut written = 0;
        while written < n {
            let mut m = msgs[next % msgs.len()].clone();
            m.extend_from_slice(format!(" #{next}").as_bytes());
            next += 1;
            written += m.len();
            store
                .put(a, Kind::ToolResult, &m, Visibility::Private)
                .unwrap();
        }
    };
    // 20 x 60 KiB of copies would pass the cap (16 x 64 KiB): the last
    // tenants keep counters only.
    for &a in &tenants {
        put_bytes(a, 60 << 10);
    }
    for &a in &tenants {
        put_bytes(a, 8 << 10);
    }
    let stats = store.stats();
    for t in 0..20 {
        let name = format!("t{t}");
        assert!(
            stats
                .dictionaries
                .iter()
                .any(|d| d.tenant.as_ref().is_some_and(|x| x.0 == name)),
            "tenant {name} has no dictionary: {:?}",
            stats.dictionaries
        );
    }
}

/// A tenant's trained dictionary is logged with its domain: after a crash
/// replay installs it for that tenant (not the public domain), and every
/// unit reads back.
#[test]
fn a_tenants_dictionary_replays_into_its_own_domain() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::builder()
        .checkpoint_every(None)
        .train_dictionaries_after(64 << 10)
        .open(&live)
        .unwrap();
    let tenant = TenantId::new("alice");
    let a = store
        .register_agent("a", &tenant, Importance::default())
        .unwrap();
    let msgs = messages::messages(3000);
    store.checkpoint().unwrap();
    let mut ids = Vec::new();
    let mut i = 0;
    while store
        .tenant_dictionary(&tenant, Kind::ToolResult, 1)
        .is_none()
    {
        let data = tool_result(&format!("k{i}"), &msgs[i % msgs.len()]);
        ids.push((
            store
                .put(a, Kind::ToolResult, &data, Visibility::Private)
                .unwrap(),
            data,
        ));
        i += 1;
        assert!(i < 5000, "no dictionary was trained");
    }
    for j in i..i + 20 {
        let data = tool_result(&format!("k{j}"), &msgs[j % msgs.len()]);
        ids.push((
            store
                .put(a, Kind::ToolResult, &data, Visibility::Private)
                .unwrap(),
            data,
        ));
    }
    store.pause(a).unwrap();
    store.sync().unwrap();
    let raw = store
        .tenant_dictionary(&tenant, Kind::ToolResult, 1)
        .unwrap();
    let crashed = dir.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    for e in std::fs::read_dir(&live).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), crashed.join(e.file_name())).unwrap();
    }
    drop(store);
    let s = Store::builder()
        .train_dictionaries_after(64 << 10)
        .open(&crashed)
        .unwrap_or_else(|e| panic!("reopening: {e}"));
    assert_eq!(
        s.tenant_dictionary(&tenant, Kind::ToolResult, 1).unwrap(),
        raw
    );
    assert!(s.dictionary(Kind::ToolResult, 1).is_none());
    for (id, data) in &ids {
        assert_eq!(&s.get_for(a, id).unwrap()[..], &data[..]);
    }
}
