//! Replaying a trace against a policy at a cache size.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::learned::LearnedPolicy;
use crate::policy::adapter::StoreAdapter;
use crate::policy::{
    Arc, Belady, Capacity, Clock, Fifo, Lru, LruK, PolicyName, S3Fifo, Sieve, SimPolicy, Unit,
};
use crate::trace::Trace;

/// The outcome of one replay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimResult {
    /// The policy.
    pub policy: &'static str,
    /// Cache size, in the run's unit.
    pub cache_size: u64,
    /// Requests that missed.
    pub misses: u64,
    /// Misses / requests.
    pub miss_ratio: f64,
    /// Bytes of the missed requests / bytes of all requests.
    pub byte_miss_ratio: f64,
}

/// What `agentmem sim --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The trace file.
    pub trace: String,
    /// Requests in it.
    pub requests: u64,
    /// One entry per policy and size.
    pub results: Vec<SimResult>,
}

fn replay<P: SimPolicy>(trace: &Trace, mut p: P) -> (u64, u64, u64) {
    let (mut misses, mut miss_bytes, mut bytes) = (0u64, 0u64, 0u64);
    for r in &trace.reqs {
        if !r.op.is_request() {
            if r.agent != crate::trace::NO_AGENT {
                p.agent_state(r.agent, r.state, r.time);
            }
            continue;
        }
        let hit = p.request(r);
        if r.op.is_write() {
            continue;
        }
        bytes += u64::from(r.size);
        if !hit {
            misses += 1;
            miss_bytes += u64::from(r.size);
        }
    }
    (misses, miss_bytes, bytes)
}

/// Replay `trace` against `policy` with a cache of `size` `unit`s.
pub fn simulate(trace: &Trace, policy: PolicyName, size: u64, unit: Unit) -> SimResult {
    let cap = Capacity { size, unit };
    let n = trace.objects;
    let (misses, miss_bytes, bytes) = match policy {
        PolicyName::Fifo => replay(trace, Fifo::new(cap, n)),
        PolicyName::Lru => replay(trace, Lru::new(cap, n)),
        PolicyName::LruK => replay(trace, LruK::new(cap, n)),
        PolicyName::Clock => replay(trace, Clock::new(cap, n)),
        PolicyName::Arc => replay(trace, Arc::new(cap, n)),
        PolicyName::S3Fifo => replay(trace, S3Fifo::new(cap, n)),
        PolicyName::Sieve => replay(trace, Sieve::new(cap, n)),
        PolicyName::Belady => replay(trace, Belady::new(cap, n)),
        PolicyName::Semantic => replay(
            trace,
            StoreAdapter::new(agentmem_core::policy::Semantic::new(), cap, n),
        ),
        PolicyName::Learned => replay(trace, StoreAdapter::new(LearnedPolicy::new(), cap, n)),
    };
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    SimResult {
        policy: policy.name(),
        cache_size: size,
        misses,
        miss_ratio: ratio(misses, trace.requests),
        byte_miss_ratio: ratio(miss_bytes, bytes),
    }
}

/// Parse a cache size: a count (`1000`), a count with a binary suffix
/// (`64KiB`, `1MiB`, `2GiB`, or `k`/`M`/`G` for powers of 1000), or a
/// percentage of the trace's footprint (`10%`: of its distinct objects, or
/// of their bytes with [`Unit::Bytes`]).
pub fn parse_size(s: &str, trace: &Trace, unit: Unit) -> Result<u64> {
    let t = s.trim();
    let bad = |why: &str| Error::arg("cache size", s, why.to_string());
    let v = if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.parse().map_err(|_| bad("not a percentage"))?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(bad("a percentage must be in (0, 100]"));
        }
        let whole = match unit {
            Unit::Objects => trace.objects as f64,
            Unit::Bytes => trace.footprint_bytes as f64,
        };
        (whole * p / 100.0).round() as u64
    } else {
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        let mult: f64 = match suffix {
            "" => 1.0,
            "k" | "K" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad("unknown suffix; use k, M, G, KiB, MiB, GiB or %")),
        };
        let n: f64 = num.parse().map_err(|_| bad("not a number"))?;
        (n * mult).round() as u64
    };
    if v == 0 {
        return Err(bad("a cache must hold at least one unit"));
    }
    Ok(v)
}
