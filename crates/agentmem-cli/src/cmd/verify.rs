//! `agentmem verify`: read every record of a store directory, check every
//! checksum and that every index entry names a readable record, print a
//! summary and exit non-zero if anything is missing or corrupt.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use agentmem_core::tier::DiskTier;
use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::util::human_bytes;

/// Arguments of `agentmem verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store directory.
    #[arg(long, default_value = "agentmem-data")]
    dir: PathBuf,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Run the check.
pub fn run(args: Args) -> Result<ExitCode> {
    if !args.dir.is_dir() {
        bail!(
            "{} is not a directory (pass the store's --dir)",
            args.dir.display()
        );
    }
    let started = Instant::now();
    // Read-only: a shared lock, nothing written, so a live store's
    // directory can be checked only when its writer is stopped.
    let tier = match DiskTier::builder().read_only(true).open(&args.dir) {
        Ok(t) => t,
        // Damage that opening refuses (a bad record with whole ones after
        // it) is a finding, reported like the others.
        Err(e @ agentmem_core::tier::ColdError::Corrupt { .. }) => {
            let problem = e.to_string();
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "dir": args.dir.display().to_string(),
                        "ok": false,
                        "problems": [problem],
                        "elapsed_s": started.elapsed().as_secs_f64(),
                    }))?
                );
            } else {
                println!("agentmem verify: {}", args.dir.display());
                println!("  PROBLEM: {problem}");
                println!("  FAILED in {:.2} s", started.elapsed().as_secs_f64());
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("opening {} read-only", args.dir.display()))
        }
    };
    let stats = tier.stats();
    let mut report = tier.verify();
    for note in &stats.recovery.notes {
        if note.contains("cut") {
            report.problems.push(note.clone());
        }
    }
    let refs = crate::cmd::cold::check_references(&tier, &mut report.problems)?;
    let elapsed = started.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "dir": args.dir.display().to_string(),
                "ok": report.is_ok(),
                "segments": report.segments,
                "records": report.records,
                "bytes_read": report.bytes,
                "keys": report.keys,
                "references": refs,
                "disk_bytes": stats.disk_bytes,
                "live_bytes": stats.live_bytes,
                "dead_bytes": stats.dead_bytes,
                "open_ms": stats.recovery.elapsed.as_secs_f64() * 1e3,
                "open_from_snapshot": stats.recovery.from_snapshot,
                "open_replayed_records": stats.recovery.replayed_records,
                "problems": report.problems,
                "elapsed_s": elapsed.as_secs_f64(),
            }))?
        );
    } else {
        println!("agentmem verify: {}", args.dir.display());
        println!(
            "  {} segments, {} records ({}) read, {} keys read back, {} references checked",
            report.segments,
            report.records,
            human_bytes(report.bytes),
            report.keys,
            refs
        );
        println!(
            "  on disk {} (live {}, dead {})",
            human_bytes(stats.disk_bytes),
            human_bytes(stats.live_bytes),
            human_bytes(stats.dead_bytes)
        );
        println!(
            "  opened in {:.1} ms ({}, {} records replayed)",
            stats.recovery.elapsed.as_secs_f64() * 1e3,
            if stats.recovery.from_snapshot {
                "index snapshot"
            } else {
                "no index snapshot"
            },
            stats.recovery.replayed_records
        );
        for p in &report.problems {
            println!("  PROBLEM: {p}");
        }
        println!(
            "  {} in {:.2} s",
            if report.is_ok() { "OK" } else { "FAILED" },
            elapsed.as_secs_f64()
        );
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
