//! `agentmem sim`: replay a trace against eviction policies at several
//! cache sizes and report miss ratios.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use agentmem_sim::{simulate, PolicyName, Report, SimResult, Trace, TraceFormat, Unit};

/// Arguments of `agentmem sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trace file: oracleGeneral, agent-aware (.amt), LIRS text, cache2k
    /// big-endian or CSV, optionally .gz/.xz/.zst compressed.
    #[arg(long)]
    trace: PathBuf,
    /// Trace format, when the file name does not tell it (oracle-general,
    /// agent, lirs, cache2k, csv).
    #[arg(long)]
    format: Option<String>,
    /// Policies, comma separated: fifo, lru, lru-k, clock, arc, s3fifo,
    /// sieve, semantic, learned, belady. Default: all.
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Cache sizes, comma separated: counts (1000), sizes (64MiB, 2G), or
    /// percentages of the trace's footprint (10%).
    #[arg(long, value_delimiter = ',', required = true)]
    sizes: Vec<String>,
    /// Count cache size in objects or bytes.
    #[arg(long, default_value = "bytes")]
    unit: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw miss ratio against cache size to this SVG file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Replays to run at once. Default: the number of CPUs.
    #[arg(long)]
    jobs: Option<usize>,
}

/// Run the simulation.
pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let unit: Unit = args.unit.parse()?;
    let format = args
        .format
        .as_deref()
        .map(str::parse::<TraceFormat>)
        .transpose()?;
    let policies: Vec<PolicyName> = if args.policies.is_empty() {
        PolicyName::ALL.to_vec()
    } else {
        args.policies
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?
    };
    let t0 = Instant::now();
    let trace = Trace::load(&args.trace, format)?;
    let load_s = t0.elapsed().as_secs_f64();
    let sizes: Vec<u64> = args
        .sizes
        .iter()
        .map(|s| agentmem_sim::sim::parse_size(s, &trace, unit))
        .collect::<Result<_, _>>()?;
    let jobs: Vec<(PolicyName, u64)> = policies
        .iter()
        .flat_map(|&p| sizes.iter().map(move |&s| (p, s)))
        .collect();
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, SimResult, f64)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(p, size)) = jobs.get(i) else {
                    break;
                };
                let t = Instant::now();
                let r = simulate(&trace, p, size, unit);
                let secs = t.elapsed().as_secs_f64();
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r, secs));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|d| d.0);
    let results: Vec<SimResult> = done.iter().map(|d| d.1.clone()).collect();
    if let Some(chart) = &args.chart {
        let name = args
            .trace
            .file_name()
            .map_or_else(|| "trace".into(), |n| n.to_string_lossy().to_string());
        let unit_label = match unit {
            Unit::Objects => "objects",
            Unit::Bytes => "bytes",
        };
        agentmem_sim::chart::draw(chart, &name, unit_label, &results)?;
    }
    if args.json {
        let report = Report {
            trace: args.trace.display().to_string(),
            requests: trace.requests,
            results,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "trace {}: {} requests, {} objects, {} bytes footprint{} (loaded in {load_s:.2} s)",
            args.trace.display(),
            trace.requests,
            trace.objects,
            trace.footprint_bytes,
            if trace.agent_aware {
                ", agent-aware"
            } else {
                ""
            },
        );
        println!(
            "{:<10} {:>14} {:>12} {:>10} {:>10} {:>12}",
            "policy", "cache_size", "misses", "miss", "byte_miss", "Mreq/s"
        );
        for (_, r, secs) in &done {
            println!(
                "{:<10} {:>14} {:>12} {:>10.4} {:>10.4} {:>12.1}",
                r.policy,
                r.cache_size,
                r.misses,
                r.miss_ratio,
                r.byte_miss_ratio,
                trace.requests as f64 / secs.max(1e-9) / 1e6
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
