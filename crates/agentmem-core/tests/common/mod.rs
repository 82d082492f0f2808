//! Helpers shared by the store's integration tests.

/// A JSON chat message for agent `a`, number `i`: hex of a hash stream,
/// so it compresses about 2x, like real tool output.
pub fn message(a: usize, i: usize) -> Vec<u8> {
    let mut noise = vec![0u8; 100 + (a * 7 + i) % 400];
    blake3::Hasher::new()
        .update(&[a as u8, i as u8, (i >> 8) as u8])
        .finalize_xof()
        .fill(&mut noise);
    let hex: String = noise.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        r#"{{"role":"{}","content":"agent {a} message {i}: {hex}"}}"#,
        if i % 2 == 0 { "user" } else { "assistant" },
    )
    .into_bytes()
}
