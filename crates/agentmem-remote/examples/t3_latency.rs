//! Latency of the remote tier's operations against the bucket named by the
//! `AGENTMEM_S3_*` variables (e.g. `source $DIR/env` after
//! `scripts/garage-cluster.sh start`).
//!
//! ```sh
//! cargo run --release -p agentmem-remote --example t3_latency -- [OPS] [BYTES]
//! ```
//! Defaults: 200 operations of 16384-byte records (a sealed conversation
//! chunk's plain size). Prints p50/p99 per operation, in milliseconds.

use std::time::{Duration, Instant};

use agentmem_remote::{BlockingRemote, PutOutcome, RemoteConfig, RemoteRecord};
use bytes::Bytes;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ops: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let size: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(16 << 10);
    let remote = BlockingRemote::connect(&RemoteConfig::from_env()?)?;
    // Ids unique to this run, so every first put uploads.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let records: Vec<RemoteRecord> = (0..ops)
        .map(|i| {
            let id = *blake3::hash(format!("{run}/{i}").as_bytes()).as_bytes();
            RemoteRecord {
                id,
                encoding: 0,
                bytes: Bytes::from(
                    (0..size)
                        .map(|j| (j as u8).wrapping_add(i as u8))
                        .collect::<Vec<_>>(),
                ),
            }
        })
        .collect();
    let mut put_new = Vec::new();
    let mut put_present = Vec::new();
    let mut get = Vec::new();
    let mut contains = Vec::new();
    for r in &records {
        let t = Instant::now();
        assert_eq!(remote.put(r)?, PutOutcome::Uploaded);
        put_new.push(t.elapsed());
    }
    for r in &records {
        let t = Instant::now();
        assert_eq!(remote.put(r)?, PutOutcome::AlreadyPresent);
        put_present.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(&remote.get(&r.id)?, r);
        get.push(t.elapsed());
        let t = Instant::now();
        assert!(remote.contains(&r.id)?);
        contains.push(t.elapsed());
    }
    for r in &records {
        remote.delete(&r.id)?;
    }
    println!("{ops} operations each, {size}-byte records");
    for (name, mut v) in [
        ("put (upload)", put_new),
        ("put (already present)", put_present),
        ("get (checked)", get),
        ("contains", contains),
    ] {
        v.sort();
        let q = |p: f64| -> Duration { v[((v.len() - 1) as f64 * p).round() as usize] };
        println!(
            "{name:>22}: p50 {:.2} ms, p99 {:.2} ms",
            q(0.5).as_secs_f64() * 1e3,
            q(0.99).as_secs_f64() * 1e3
        );
    }
    Ok(())
}
