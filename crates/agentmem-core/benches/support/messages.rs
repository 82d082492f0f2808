//! Real messages for the store's benchmark and examples (included with
//! `#[path]` by `benches/store.rs` and `examples/durability.rs`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// Up to `n` real messages (compact JSON), each a few hundred bytes to a few KB.
pub fn messages(n: usize) -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = [
        std::env::var("AGENTMEM_DATA")
            .map(PathBuf::from)
            .unwrap_or_default(),
        root.join("../shared/data"),
        root.join("data/sample"),
    ];
    let file = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join("conversations")).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())))
        .find(|p| p.to_string_lossy().ends_with(".jsonl.zst"))
        .expect("a conversations/*.jsonl.zst file");
    let reader = BufReader::new(
        zstd::stream::read::Decoder::new(std::fs::File::open(file).unwrap()).unwrap(),
    );
    let mut out = Vec::new();
    for line in reader.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        for m in v["messages"].as_array().unwrap() {
            out.push(serde_json::to_vec(m).unwrap());
            if out.len() == n {
                return out;
            }
        }
    }
    out
}
