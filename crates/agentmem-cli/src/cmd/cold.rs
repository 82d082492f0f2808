//! The disk tier as the CLI uses it: opening a store directory for
//! `simulate --dir`, and checking one for `verify`.

use std::path::Path;
use std::time::Instant;

use agentmem_core::tier::DiskTier;
use agentmem_core::{Store, StoreBuilder};
use anyhow::{bail, Context, Result};
use serde_json::json;

/// Default store directory when the cold tier is enabled without `--dir`.
pub const DEFAULT_DIR: &str = "agentmem-data";

/// Open a fresh persistent store in `dir` for a simulation. With `fresh`,
/// the directory's cold-tier files are removed first; without it, a
/// directory that already holds a store is refused.
pub fn open_fresh(dir: &Path, fresh: bool, builder: StoreBuilder) -> Result<(Store, DiskTier)> {
    if fresh && dir.is_dir() {
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if (name.starts_with("seg-") && name.ends_with(".log"))
                || name.starts_with("index.snap")
                || (name.starts_with("redo-") && name.ends_with(".wal"))
            {
                std::fs::remove_file(dir.join(&*name))
                    .with_context(|| format!("removing {}/{name}", dir.display()))?;
            }
        }
    }
    let started = Instant::now();
    let tier = DiskTier::open(dir)
        .with_context(|| format!("opening the store directory {}", dir.display()))?;
    if !tier.is_empty() {
        bail!(
            "{} already holds a store ({} records); simulate starts from an empty one: pass --fresh to \
             replace it, or another --dir",
            dir.display(),
            tier.len()
        );
    }
    let store = builder
        .open_tier(tier.clone(), started)
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    Ok((store, tier))
}

/// The cold tier's figures for a report.
pub fn figures(tier: &DiskTier) -> serde_json::Value {
    let s = tier.stats();
    json!({
        "dir": tier.dir(),
        "records": s.keys,
        "segments": s.segments,
        "bytes_written": s.bytes_written,
        "disk_bytes": s.disk_bytes,
        "live_bytes": s.live_bytes,
        "dead_bytes": s.dead_bytes,
        "syncs": s.syncs,
        "index_ram_bytes": s.index_ram_bytes,
    })
}

/// Check the store image's references and decode every unit it names.
pub fn check_references(tier: &DiskTier, problems: &mut Vec<String>) -> Result<u64> {
    agentmem_core::check_references(tier, problems).context("checking the store image")
}
