//! `agentmem simulate`: replay real agent data for many agents and measure
//! what their memory costs, in plain process memory (`--mode naive`, the way
//! agent runtimes hold it today) or in the agentmem store.
//!
//! Each agent gets a system prompt variant, a tool declaration set and its
//! own real conversation, appended message by message in simulated time.
//! Agents take turns and move through states with these distributions
//! (log-normal, by the role of the message they wait for):
//!
//! | waiting for | state | median | sigma |
//! |---|---|---|---|
//! | an assistant message | waiting for the model | 4 s | 0.6 |
//! | a tool result | running a tool | 0.8 s | 1.0 |
//! | a user message | waiting for a person | 20 s | 1.0 |
//! | a user message, 10% of the time | paused | 20 min | 1.0 |
//!
//! Agents start uniformly over the first 30 minutes; before every model
//! call an agent reads its whole context (prompt, tools, conversation), as
//! a runtime building the request does. A finished agent is idle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_core::prelude::*;
use agentmem_core::Timestamp;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde_json::json;

use crate::data::{self, Corpus};
use crate::util::{human_bytes, parse_bytes, rss_bytes, settle_heap};

/// Default number of agents.
const DEFAULT_AGENTS: usize = 800;
/// How many agents may replay the same conversation (each in its own
/// tenant); beyond that the workload is mostly copies.
const MAX_COPIES: usize = 16;

/// Where agent memory is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// In plain process memory: each agent holds its own copies as strings.
    Naive,
    /// In the agentmem store.
    Agentmem,
}

/// Arguments of `agentmem simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of agents, each with its own distinct conversation. Default:
    /// 800, or every conversation in the data if it holds fewer.
    #[arg(long)]
    agents: Option<usize>,
    /// Data directory laid out like the shared data set (conversations/,
    /// prompts/). Default: the sample bundled in the repository (data/sample).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where agent memory is held.
    #[arg(long, value_enum, default_value_t = Mode::Agentmem)]
    mode: Mode,
    /// RAM budget of the store (hot + warm), e.g. 64MiB or 1GiB.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    ram_budget: u64,
    /// Hot (plain) budget of the store. Default: a quarter of the RAM budget.
    #[arg(long, value_parser = parse_bytes)]
    hot_budget: Option<u64>,
    /// Eviction policy: lru, sieve, s3fifo, semantic, or learned
    /// (agentmem-sim's `LearnedPolicy`, through the store's policy factory).
    #[arg(long, default_value = "semantic", value_parser = parse_policy)]
    policy: PolicyChoice,
    /// Write the agent-aware trace of the run (agentmem's `.amt` format, see
    /// docs/sim.md) to FILE, from a background thread; `agentmem sim
    /// --trace FILE` replays it.
    #[arg(long, value_name = "FILE")]
    trace_out: Option<PathBuf>,
    /// zstd level for warm units.
    #[arg(long, default_value_t = 9)]
    level: i32,
    /// Size of each trained zstd dictionary.
    #[arg(long, default_value = "110KiB", value_parser = parse_bytes)]
    dictionary_size: u64,
    /// Bytes of samples of a kind collected before its dictionary is trained.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    train_after: u64,
    /// Seed of the workload's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Store directory: enables the cold tier on local disk there (warm
    /// units beyond the RAM budget go to disk), checkpoints the store at
    /// the end, reopens it and checks every unit again.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Enable the cold tier in ./agentmem-data (same as --dir agentmem-data).
    #[arg(long)]
    cold: bool,
    /// Remove the cold-tier files already in the store directory first.
    #[arg(long)]
    fresh: bool,
}

/// The store's eviction policy: a built-in one, or the learned one from
/// agentmem-sim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyChoice {
    BuiltIn(PolicyKind),
    Learned,
}

impl PolicyChoice {
    fn name(self) -> &'static str {
        match self {
            PolicyChoice::BuiltIn(k) => k.name(),
            PolicyChoice::Learned => "learned",
        }
    }
}

fn parse_policy(s: &str) -> Result<PolicyChoice, String> {
    if s.eq_ignore_ascii_case("learned") {
        return Ok(PolicyChoice::Learned);
    }
    s.parse::<PolicyKind>()
        .map(PolicyChoice::BuiltIn)
        .map_err(|_| {
            format!("unknown policy {s:?}: expected lru, sieve, s3fifo, semantic or learned")
        })
}

/// What one agent holds in naive mode: its own copies, as a runtime does.
#[derive(Debug)]
#[allow(dead_code)] // held to be measured, never read
struct NaiveAgent {
    system_prompt: String,
    tools: String,
    messages: Vec<String>,
}

struct Workload {
    model: LogNormal<f64>,
    tool: LogNormal<f64>,
    human: LogNormal<f64>,
    pause: LogNormal<f64>,
}

impl Workload {
    fn new() -> Self {
        let ln =
            |median: f64, sigma: f64| LogNormal::new(median.ln(), sigma).expect("valid parameters");
        Workload {
            model: ln(4.0, 0.6),
            tool: ln(0.8, 1.0),
            human: ln(20.0, 1.0),
            pause: ln(20.0 * 60.0, 1.0),
        }
    }

    /// The state an agent waits in before a message of `role`, and for how long.
    fn wait_for(&self, role: &str, rng: &mut SmallRng) -> (AgentState, Duration) {
        let (state, secs) = match role {
            "user" if rng.random_bool(0.1) => (AgentState::Paused, self.pause.sample(rng)),
            "user" => (AgentState::WaitingForHuman, self.human.sample(rng)),
            "tool" => (AgentState::RunningTool, self.tool.sample(rng)),
            _ => (AgentState::WaitingForModel, self.model.sample(rng)),
        };
        (state, Duration::from_secs_f64(secs))
    }
}

struct Agent {
    id: AgentId,
    conversation: ConversationId,
    prompt: ContentId,
    tools: ContentId,
    next: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Run the simulation.
pub fn run(args: Args) -> Result<std::process::ExitCode> {
    let dir = match &args.data {
        Some(d) => d.clone(),
        None => data::bundled_sample()?,
    };
    let corpus = data::load(&dir)?;
    let available = corpus.conversations.len();
    let agents = match args.agents {
        Some(0) => bail!("--agents must be at least 1"),
        Some(n) if n > available * MAX_COPIES => bail!(
            "{} holds {available} distinct conversations but --agents is {n}; agents beyond that replay a \
             conversation again (in a separate tenant), at most {MAX_COPIES} times each: pass at most \
             --agents {} or a larger --data directory",
            dir.display(),
            available * MAX_COPIES
        ),
        Some(n) if n > available => {
            // Agents beyond the data's conversations replay one again, each
            // copy in its own tenant, so deduplication cannot merge them.
            eprintln!(
                "agentmem: {} holds {available} distinct conversations; agents beyond that replay them again \
                 in separate tenants (no deduplication between copies)",
                dir.display()
            );
            n
        }
        Some(n) => n,
        None if available < DEFAULT_AGENTS => {
            eprintln!(
                "agentmem: {} holds {available} conversations; simulating {available} agents (pass --data with \
                 the full data set for {DEFAULT_AGENTS})",
                dir.display()
            );
            available
        }
        None => DEFAULT_AGENTS,
    };
    let total_messages: usize = (0..agents)
        .map(|i| corpus.conversations[i % available].messages.len())
        .sum();
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::with_draw_target(
            Some(total_messages as u64),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} messages ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(format!("{} agents", agents));

    settle_heap();
    let rss_before = rss_bytes()?;
    let started = Instant::now();
    let report = match args.mode {
        Mode::Naive => run_naive(&corpus, agents, args.seed, &bar, rss_before)?,
        Mode::Agentmem => run_store(&args, &corpus, agents, &bar, rss_before)?,
    };
    bar.finish_and_clear();
    let mut report = report;
    report["agents"] = json!(agents);
    report["data"] = json!(corpus.dir.display().to_string());
    report["messages"] = json!(total_messages);
    report["elapsed_s"] = json!(started.elapsed().as_secs_f64());
    report["rss_before_bytes"] = json!(rss_before);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Events in simulated time: (when, agent), earliest first.
fn schedule(agents: usize, rng: &mut SmallRng) -> BinaryHeap<Reverse<(Duration, usize)>> {
    (0..agents)
        .map(|i| Reverse((Duration::from_secs_f64(rng.random_range(0.0..1800.0)), i)))
        .collect()
}

fn run_naive(
    corpus: &Corpus,
    agents: usize,
    seed: u64,
    bar: &ProgressBar,
    rss_before: u64,
) -> Result<serde_json::Value> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let workload = Workload::new();
    let mut held: Vec<NaiveAgent> = (0..agents)
        .map(|i| NaiveAgent {
            system_prompt: corpus.prompts[i % corpus.prompts.len()].clone(),
            tools: corpus.tool_sets[i % corpus.tool_sets.len()].clone(),
            messages: Vec::new(),
        })
        .collect();
    let mut queue = schedule(agents, &mut rng);
    while let Some(Reverse((now, i))) = queue.pop() {
        let conv = &corpus.conversations[i % corpus.conversations.len()];
        let n = held[i].messages.len();
        held[i].messages.push(conv.messages[n].clone());
        bar.inc(1);
        if let Some(role) = conv.roles.get(n + 1) {
            let (_, wait) = workload.wait_for(role, &mut rng);
            queue.push(Reverse((now + wait, i)));
        }
    }
    settle_heap();
    let rss_after = rss_bytes()?;
    let logical: u64 = held
        .iter()
        .map(|a| {
            (a.system_prompt.len()
                + a.tools.len()
                + a.messages.iter().map(String::len).sum::<usize>()) as u64
        })
        .sum();
    let kind = |f: &dyn Fn(&NaiveAgent) -> usize| {
        let b: u64 = held.iter().map(|a| f(a) as u64).sum();
        json!({"logical": b, "stored": b, "ratio": 1.0})
    };
    let report = json!({
        "mode": "naive",
        "logical_bytes": logical,
        "stored_bytes": {"hot": logical, "warm": 0, "cold": 0},
        "rss_after_bytes": rss_after,
        "rss_growth_bytes": rss_after.saturating_sub(rss_before),
        "accounted_bytes": logical,
        "kinds": {
            "system_prompt": kind(&|a| a.system_prompt.len()),
            "tool_defs": kind(&|a| a.tools.len()),
            "conversation": kind(&|a| a.messages.iter().map(String::len).sum()),
        },
        "resume_ms": {"p50": 0.0, "p99": 0.0, "samples": 0},
    });
    drop(held);
    Ok(report)
}

fn run_store(
    args: &Args,
    corpus: &Corpus,
    agents: usize,
    bar: &ProgressBar,
    rss_before: u64,
) -> Result<serde_json::Value> {
    let clock = ManualClock::new();
    let mut builder = Store::builder()
        .ram_budget(args.ram_budget)
        .compression_level(args.level)
        .dictionary_size(args.dictionary_size as usize)
        .train_dictionaries_after(args.train_after as usize)
        .clock(Arc::new(clock.clone()));
    if let Some(h) = args.hot_budget {
        builder = builder.hot_budget(h);
    }
    builder = match args.policy {
        PolicyChoice::BuiltIn(kind) => builder.policy(kind),
        PolicyChoice::Learned => {
            builder.policy_factory(|| Box::new(agentmem_sim::LearnedPolicy::new()))
        }
    };
    let trace_writer = match &args.trace_out {
        Some(path) => {
            let w = Arc::new(agentmem_sim::TraceWriter::create(
                path,
                agentmem_sim::writer::DEFAULT_QUEUE,
            )?);
            builder = builder.access_sink(w.clone());
            Some(w)
        }
        None => None,
    };
    let cold_dir = args.dir.clone().or_else(|| {
        args.cold
            .then(|| PathBuf::from(crate::cmd::cold::DEFAULT_DIR))
    });
    let (store, tier) = match &cold_dir {
        Some(d) => {
            let (s, t) = crate::cmd::cold::open_fresh(d, args.fresh, builder)?;
            (s, Some(t))
        }
        None => (builder.build().context("building the store")?, None),
    };
    let available = corpus.conversations.len();
    let tenants: Vec<TenantId> = (0..agents.div_ceil(available))
        .map(|r| {
            TenantId::new(if r == 0 {
                "simulate".to_string()
            } else {
                format!("simulate-{r}")
            })
        })
        .collect();
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let workload = Workload::new();
    let mut state: Vec<Agent> = Vec::with_capacity(agents);
    for i in 0..agents {
        let id = store.register_agent(
            &format!("agent-{i}"),
            &tenants[i / available],
            Importance::default(),
        )?;
        let prompt = corpus.prompts[i % corpus.prompts.len()].as_bytes();
        let tools = corpus.tool_sets[i % corpus.tool_sets.len()].as_bytes();
        state.push(Agent {
            id,
            conversation: store.create_conversation(id)?,
            prompt: store.put(id, Kind::SystemPrompt, prompt, Visibility::Public)?,
            tools: store.put(id, Kind::ToolDefs, tools, Visibility::Public)?,
            next: 0,
        });
        // Registered agents wait for their first turn.
        store.set_state(id, AgentState::WaitingForHuman)?;
    }
    let mut resume_ms = Vec::new();
    let mut context_reads = 0u64;
    let mut queue = schedule(agents, &mut rng);
    let mut events = 0u64;
    while let Some(Reverse((now, i))) = queue.pop() {
        clock.set(Timestamp(now.as_nanos() as u64));
        let conv = &corpus.conversations[i % available];
        let a = &mut state[i];
        let info_state = store.agent_info(a.id)?.state;
        if info_state == AgentState::Paused {
            let r = store.resume(a.id)?;
            resume_ms.push(r.elapsed.as_secs_f64() * 1e3);
        } else {
            store.set_state(a.id, AgentState::Active)?;
        }
        store.append(a.conversation, conv.messages[a.next].as_bytes())?;
        a.next += 1;
        bar.inc(1);
        match conv.roles.get(a.next) {
            Some(role) => {
                let (st, wait) = workload.wait_for(role, &mut rng);
                if st == AgentState::WaitingForModel {
                    // Building the model request reads the whole context.
                    store.get_for(a.id, &a.prompt)?;
                    store.get_for(a.id, &a.tools)?;
                    store.read_all(a.conversation)?;
                    context_reads += 1;
                }
                store.set_state(a.id, st)?;
                queue.push(Reverse((now + wait, i)));
            }
            None => store.set_state(a.id, AgentState::Idle)?,
        }
        events += 1;
        if events % 4096 == 0 {
            store.maintain(256)?;
        }
    }
    while store.maintain(4096)? > 0 {}
    // The run's trace ends here; the verification reads below are not part
    // of the workload.
    let trace_stats = match &trace_writer {
        Some(w) => Some(w.close()?),
        None => None,
    };
    settle_heap();
    let rss_after = rss_bytes()?;
    let stats = store.stats();

    let verified = verify_all(&store, &state, corpus)?;
    let cold = match (tier, cold_dir) {
        (Some(tier), Some(dir)) => {
            // Make it durable, close, reopen: the recovery figures.
            let cp = store.checkpoint().context("checkpointing the store")?;
            let mut figures = crate::cmd::cold::figures(&tier);
            drop(store);
            drop(tier);
            let reopened = Store::builder()
                .ram_budget(args.ram_budget)
                .open(&dir)
                .with_context(|| format!("reopening the store in {}", dir.display()))?;
            let open = reopened.open_report().unwrap_or_default();
            let again = verify_all(&reopened, &state, corpus)?;
            figures["checkpoint_ms"] = json!(cp.elapsed.as_secs_f64() * 1e3);
            figures["image_bytes"] = json!(cp.image_bytes);
            figures["recovery_ms"] = json!(open.elapsed.as_secs_f64() * 1e3);
            figures["recovery_cold_open_ms"] = json!(open.cold_open.as_secs_f64() * 1e3);
            figures["verified_after_reopen"] = json!(again);
            figures
        }
        _ => json!(null),
    };
    let peak = crate::util::peak_rss_bytes()?;
    resume_ms.sort_by(f64::total_cmp);
    let kind = |k: Kind| {
        let s = stats.kind(k);
        json!({"logical": s.logical_bytes, "stored": s.stored_bytes, "ratio": s.ratio, "units": s.units})
    };
    let growth = rss_after.saturating_sub(rss_before);
    Ok(json!({
        "mode": "agentmem",
        "policy": args.policy.name(),
        "ram_budget": args.ram_budget,
        "hot_budget": stats.hot_budget,
        "logical_bytes": stats.mem.total_allocated,
        "stored_bytes": {"hot": stats.mem.hot_bytes, "warm": stats.mem.warm_bytes, "cold": stats.mem.cold_bytes},
        "rss_after_bytes": rss_after,
        "rss_peak_bytes": peak,
        "rss_growth_bytes": growth,
        "accounted_bytes": stats.accounted_ram_bytes,
        "accounting_error": if growth > 0 { stats.accounted_ram_bytes as f64 / growth as f64 - 1.0 } else { 0.0 },
        "kinds": {
            "system_prompt": kind(Kind::SystemPrompt),
            "tool_defs": kind(Kind::ToolDefs),
            "conversation": kind(Kind::Conversation),
        },
        "resume_ms": {
            "p50": percentile(&resume_ms, 0.5),
            "p99": percentile(&resume_ms, 0.99),
            "samples": resume_ms.len(),
        },
        "dedup_hits": stats.dedup_hits,
        "delta_units": stats.delta_units,
        "dictionary_bytes": stats.dictionary_bytes,
        "overhead_bytes": stats.overhead_bytes,
        "compression_ratio": stats.mem.compression_ratio,
        "context_reads": context_reads,
        "verified_units": verified,
        "cold": cold,
        "trace_out": args.trace_out.as_ref().map(|p| json!({
            "path": p.display().to_string(),
            "written": trace_stats.map_or(0, |s| s.written),
            "dropped": trace_stats.map_or(0, |s| s.dropped),
        })),
    }))
}

/// Read every agent's conversation, prompt and tools back and compare them
/// with the data; returns how many units and messages were checked.
fn verify_all(store: &Store, state: &[Agent], corpus: &Corpus) -> Result<u64> {
    let mut verified = 0u64;
    for (i, a) in state.iter().enumerate() {
        let conv = &corpus.conversations[i % corpus.conversations.len()];
        let got = store.read_all(a.conversation)?;
        if got.len() != conv.messages.len()
            || got
                .iter()
                .zip(&conv.messages)
                .any(|(g, m)| g[..] != *m.as_bytes())
        {
            bail!("agent {i}: conversation read back differs from what was appended");
        }
        if store.get(&a.prompt)?[..] != *corpus.prompts[i % corpus.prompts.len()].as_bytes()
            || store.get(&a.tools)?[..] != *corpus.tool_sets[i % corpus.tool_sets.len()].as_bytes()
        {
            bail!("agent {i}: prompt or tools read back differ");
        }
        verified += got.len() as u64 + 2;
    }
    Ok(verified)
}

fn print_table(r: &serde_json::Value) {
    let b = |v: &serde_json::Value| human_bytes(v.as_u64().unwrap_or(0));
    println!(
        "agentmem simulate: {} agents, {} messages, mode {}",
        r["agents"],
        r["messages"],
        r["mode"].as_str().unwrap_or("?")
    );
    println!(
        "  data                  {}",
        r["data"].as_str().unwrap_or("?")
    );
    println!("  logical bytes         {}", b(&r["logical_bytes"]));
    println!(
        "  stored hot/warm/cold  {} / {} / {}",
        b(&r["stored_bytes"]["hot"]),
        b(&r["stored_bytes"]["warm"]),
        b(&r["stored_bytes"]["cold"])
    );
    println!(
        "  resident memory       {} before, {} after, growth {}",
        b(&r["rss_before_bytes"]),
        b(&r["rss_after_bytes"]),
        b(&r["rss_growth_bytes"])
    );
    println!("  accounted by store    {}", b(&r["accounted_bytes"]));
    println!(
        "  {:<16} {:>12} {:>12} {:>8}",
        "kind", "logical", "stored", "ratio"
    );
    for k in ["system_prompt", "tool_defs", "conversation"] {
        let v = &r["kinds"][k];
        println!(
            "  {:<16} {:>12} {:>12} {:>7.1}x",
            k,
            b(&v["logical"]),
            b(&v["stored"]),
            v["ratio"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "  resume                p50 {:.3} ms, p99 {:.3} ms over {} resumes",
        r["resume_ms"]["p50"].as_f64().unwrap_or(0.0),
        r["resume_ms"]["p99"].as_f64().unwrap_or(0.0),
        r["resume_ms"]["samples"]
    );
    let c = &r["cold"];
    if !c.is_null() {
        println!(
            "  cold tier             {}: {} on disk ({} live), {} written, {} records",
            c["dir"].as_str().unwrap_or("?"),
            b(&c["disk_bytes"]),
            b(&c["live_bytes"]),
            b(&c["bytes_written"]),
            c["records"]
        );
        println!(
            "  checkpoint, reopen    {:.1} ms, {:.1} ms; {} units checked again after reopening",
            c["checkpoint_ms"].as_f64().unwrap_or(0.0),
            c["recovery_ms"].as_f64().unwrap_or(0.0),
            c["verified_after_reopen"]
        );
    }
    println!("  peak resident memory  {}", b(&r["rss_peak_bytes"]));
    if let Some(t) = r.get("trace_out").filter(|t| !t.is_null()) {
        println!(
            "  trace                 {} ({} events written, {} dropped)",
            t["path"].as_str().unwrap_or("?"),
            t["written"],
            t["dropped"]
        );
    }
    println!(
        "  elapsed               {:.1} s",
        r["elapsed_s"].as_f64().unwrap_or(0.0)
    );
}
