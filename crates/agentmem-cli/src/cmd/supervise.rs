//! The supervisor subcommands: `setup`, `run`, `adopt`, `supervise`,
//! `pause`, `resume`, `kill`, `ps` and `top` (see docs/supervisor.md).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_supervisor::agent::{self, AgentOptions, StateDir};
use agentmem_supervisor::cgroup::{self, CgroupLayout};
use agentmem_supervisor::daemon::{self, Daemon, Request};
use agentmem_supervisor::setup::{self, Profile};
use agentmem_supervisor::supervisor::{Config, Prefetch, Status, Supervisor};
use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;

use crate::util::{human_bytes, parse_bytes};

/// Where the supervisor keeps its state unless told otherwise.
const DEFAULT_STATE_DIR: &str = "/run/agentmem";

/// The state directory option shared by the agent subcommands.
#[derive(Debug, Clone, ClapArgs)]
pub struct StateArgs {
    /// The supervisor's state directory (agent records, learned working sets, control socket).
    #[arg(long, env = "AGENTMEM_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

impl StateArgs {
    fn dir(&self) -> StateDir {
        StateDir::new(&self.state_dir)
    }
}

/// `agentmem setup`.
#[derive(Debug, ClapArgs)]
pub struct SetupArgs {
    /// Report the machine's state and what agentmem lacks (the default).
    #[arg(long, conflicts_with_all = ["apply", "revert"])]
    pub check: bool,
    /// Apply the agent profile (without it, only print what would change).
    #[arg(long, conflicts_with = "revert")]
    pub apply: bool,
    /// Restore exactly what `--apply` changed.
    #[arg(long)]
    pub revert: bool,
    /// zswap compressor (default: the first the kernel offers of zstd, lz4,
    /// lzo-rle, lzo, deflate: fastest first, see docs/supervisor.md).
    #[arg(long)]
    pub compressor: Option<String>,
    /// zswap pool limit in percent of RAM.
    #[arg(long, default_value_t = Profile::default().max_pool_percent)]
    pub max_pool_percent: u32,
    /// Swap file behind zswap.
    #[arg(long, default_value = "/var/lib/agentmem/swapfile")]
    pub swap_file: PathBuf,
    /// Swap file size.
    #[arg(long, default_value = "4GiB", value_parser = parse_bytes)]
    pub swap_size: u64,
    /// vm.swappiness.
    #[arg(long, default_value_t = Profile::default().swappiness)]
    pub swappiness: u32,
    /// KSM pages_to_scan.
    #[arg(long, default_value_t = Profile::default().ksm_pages_to_scan)]
    pub ksm_pages_to_scan: u32,
    /// KSM sleep_millisecs.
    #[arg(long, default_value_t = Profile::default().ksm_sleep_ms)]
    pub ksm_sleep_ms: u32,
    /// Where the record of applied changes is kept.
    #[arg(long, default_value = "/var/lib/agentmem/setup-state.json")]
    pub state_file: PathBuf,
    /// The supervisor's state directory, removed by `--revert` when no agent is left in it.
    #[arg(long, env = "AGENTMEM_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// `agentmem setup`.
pub fn setup(a: SetupArgs) -> Result<ExitCode> {
    if a.revert {
        match setup::revert(&a.state_file, |l| println!("  {l}"))? {
            Some(_) => println!("reverted everything recorded in {}", a.state_file.display()),
            None => println!(
                "nothing to revert: no profile applied (no {})",
                a.state_file.display()
            ),
        }
        // What agents left behind: empty cgroups and an unused state directory.
        if let Ok(layout) = CgroupLayout::detect() {
            for d in cgroup::remove_empty(&layout) {
                println!("  removed empty cgroup {}", d.display());
            }
        }
        let dir = StateDir::new(&a.state_dir);
        if dir.root().exists() {
            if dir.remove_if_unused() {
                println!("  removed {}", a.state_dir.display());
            } else {
                println!(
                    "  kept {}: agents are still recorded there or a supervisor runs",
                    a.state_dir.display()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let profile = Profile {
        compressor: a.compressor.clone(),
        max_pool_percent: a.max_pool_percent,
        swap_file: a.swap_file.clone(),
        swap_size: a.swap_size,
        swappiness: a.swappiness,
        ksm_pages_to_scan: a.ksm_pages_to_scan,
        ksm_sleep_ms: a.ksm_sleep_ms,
        ..Profile::default()
    };
    let items = setup::check();
    let missing = items.iter().filter(|i| !i.ok).count();
    if !a.apply {
        for i in &items {
            println!(
                "{:<10} {} {}",
                i.what,
                if i.ok { "ok     " } else { "MISSING" },
                i.state
            );
            if let Some(h) = &i.hint {
                println!("{:<18} how: {h}", "");
            }
        }
        if let Some(st) = setup::load_state(&a.state_file)? {
            println!(
                "profile applied: {} settings changed (state in {})",
                st.changes.len(),
                a.state_file.display()
            );
        }
        if a.check {
            return Ok(if missing == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            });
        }
    }
    let plan = setup::plan(&profile)?;
    if !a.apply {
        println!("\ndry run: `agentmem setup --apply` would make these changes:");
        if let Some((p, size, create)) = &plan.swap {
            println!(
                "  {} swap file {} ({} MiB) and swapon",
                if *create { "create" } else { "use" },
                p.display(),
                size >> 20
            );
        }
        for c in &plan.changes {
            println!("  {}: {} -> {}", c.what, c.before, c.after);
        }
        if plan.changes.is_empty() && plan.swap.is_none() {
            println!("  nothing: the profile is in place");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "applying the agent profile (record in {}):",
        a.state_file.display()
    );
    setup::apply(&plan, &a.state_file, |l| println!("  {l}"))?;
    println!("done; `agentmem setup --revert` restores every setting");
    Ok(ExitCode::SUCCESS)
}

/// Options naming a new agent.
#[derive(Debug, ClapArgs)]
pub struct AgentArgs {
    /// Unique agent name.
    #[arg(long)]
    pub name: String,
    /// Tenant, for reporting.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Higher importance waits longer before page-out (threshold × (1 + importance/2)).
    #[arg(long, default_value_t = 0)]
    pub importance: u32,
    #[command(flatten)]
    pub state: StateArgs,
}

impl AgentArgs {
    fn options(&self) -> AgentOptions {
        AgentOptions {
            name: self.name.clone(),
            tenant: self.tenant.clone(),
            importance: self.importance,
        }
    }
}

/// `agentmem run`.
#[derive(Debug, ClapArgs)]
pub struct RunArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Do not install state hooks in the agent CLI's configuration (Claude
    /// Code, Gemini CLI, Codex); its idleness is then inferred.
    #[arg(long)]
    pub no_hooks: bool,
    /// The agent's command and arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `agentmem run`: becomes the agent (exec in place), after joining its
/// cgroup and enabling KSM merging.
pub fn run(a: RunArgs) -> Result<ExitCode> {
    let dir = a.agent.state.dir();
    let opts = a.agent.options();
    let mut cmd = Command::new(&a.command[0]);
    cmd.args(&a.command[1..]);
    let (cg, ksm) = agent::prepare_run(&dir, &opts, &mut cmd)?;
    if a.no_hooks {
        cmd.env(agentmem_supervisor::hooks::ENV_AGENT, &opts.name);
    } else {
        super::hooks::prepare_run(&dir, &opts.name, &a.command, &mut cmd);
    }
    if !ksm {
        eprintln!(
            "agentmem run: this kernel has no KSM; {} runs without merging",
            opts.name
        );
    }
    // The agent is this process after exec: register it first.
    agent::register(&dir, &opts, std::process::id() as i32, cg.clone(), ksm)?;
    let _ = daemon::request(&dir, &Request::Rescan);
    let err = cmd.exec();
    let _ = agentmem_supervisor::hooks::release(&dir, &opts.name);
    dir.forget(&opts.name);
    cg.remove();
    Err(err).with_context(|| format!("starting {:?}", a.command[0]))
}

/// `agentmem adopt`.
#[derive(Debug, ClapArgs)]
pub struct AdoptArgs {
    /// The process to supervise.
    pub pid: i32,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// `agentmem adopt`.
pub fn adopt(a: AdoptArgs) -> Result<ExitCode> {
    let dir = a.agent.state.dir();
    let r = agent::adopt(&dir, &a.agent.options(), a.pid)?;
    let _ = daemon::request(&dir, &Request::Rescan);
    println!(
        "adopted pid {} as {} ({}KSM merging{})",
        r.pid,
        r.name,
        if r.ksm { "" } else { "no " },
        if r.ksm {
            " already on"
        } else {
            ": it can only be enabled from inside the process"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `agentmem supervise`.
#[derive(Debug, ClapArgs)]
pub struct SuperviseArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Idle seconds before a new agent's first page-out (then adapted per agent).
    #[arg(long, default_value_t = 30.0)]
    pub idle_threshold: f64,
    /// Lowest adaptive threshold, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub min_threshold: f64,
    /// Seconds between ticks.
    #[arg(long, default_value_t = 1.0)]
    pub tick: f64,
    /// Replace idle inference (hooks, then terminal input and render learned
    /// per agent: docs/real-agents.md) by the old fixed rule: more than this
    /// many bytes of I/O in a tick, or 2% CPU, is activity. 0 (default): inference.
    #[arg(long, default_value_t = 0)]
    pub io_active_bytes: u64,
    /// Seconds between refault samples of reclaimed agents.
    #[arg(long, default_value_t = 5.0)]
    pub sample_every: f64,
    /// No proactive page-out above this memory PSI `some avg10` (percent).
    #[arg(long, default_value_t = 10.0)]
    pub psi_limit: f64,
    /// Page out sooner when MemAvailable is below this fraction of RAM.
    #[arg(long, default_value_t = 0.05)]
    pub mem_floor: f64,
    /// Keep cold pages in zswap too (by default all but each agent's recent
    /// working set bypass zswap and go straight to the swap file).
    #[arg(long)]
    pub cold_in_zswap: bool,
    /// On stop, leave paused agents frozen (to be re-adopted by the next
    /// `supervise`); by default they are thawed, so none stays frozen with
    /// nobody to resume it.
    #[arg(long)]
    pub keep_frozen: bool,
    /// Leave the swap cache a page-out to the swap file leaves behind (for
    /// measurements: the pages then stay in RAM until memory runs short).
    #[arg(long)]
    pub keep_swap_cache: bool,
}

fn secs(v: f64, what: &str) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{what} must be a positive number of seconds, not {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// `agentmem supervise`: the daemon, until SIGINT or SIGTERM.
pub fn supervise(a: SuperviseArgs) -> Result<ExitCode> {
    let cfg = Config {
        idle_threshold: secs(a.idle_threshold, "--idle-threshold")?,
        min_threshold: secs(a.min_threshold, "--min-threshold")?,
        sample_every: secs(a.sample_every, "--sample-every")?,
        psi_limit: a.psi_limit,
        mem_available_floor: a.mem_floor,
        cold_to_swap_file: !a.cold_in_zswap,
        io_active_bytes: a.io_active_bytes,
        learned_idle: a.io_active_bytes == 0,
        drop_swap_cache: !a.keep_swap_cache,
        ..Config::default()
    };
    let sup = Supervisor::new(cfg, a.state.dir())?;
    let names = sup.names();
    let daemon = Daemon::start(sup, secs(a.tick, "--tick")?)?;
    eprintln!(
        "agentmem supervise: state in {}, {} agents re-adopted{}",
        a.state.state_dir.display(),
        names.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .with_context(|| format!("installing a handler for signal {sig}"))?;
    }
    let sup = daemon.supervisor();
    daemon.wait(&stop);
    if a.keep_frozen {
        eprintln!("agentmem supervise: stopping; paused agents stay frozen (--keep-frozen) and are re-adopted on restart");
    } else {
        let thawed = sup.lock().unwrap_or_else(|p| p.into_inner()).thaw_all();
        eprintln!(
            "agentmem supervise: stopping; {} paused agents thawed{}; agents keep running and are re-adopted on restart",
            thawed.len(),
            if thawed.is_empty() {
                String::new()
            } else {
                format!(" ({})", thawed.join(", "))
            }
        );
    }
    drop(sup);
    if a.state.dir().remove_if_unused() {
        eprintln!(
            "agentmem supervise: no agent left: removed {}",
            a.state.state_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentmem pause`.
#[derive(Debug, ClapArgs)]
pub struct PauseArgs {
    /// The agent.
    pub name: String,
    /// Only freeze it; keep its memory resident (for short waits).
    #[arg(long, conflicts_with = "deep")]
    pub no_page_out: bool,
    /// Page out its recent working set too (for long waits, e.g. for a person);
    /// by default a small working set stays resident so the resume is instant.
    #[arg(long)]
    pub deep: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `agentmem pause`: freeze and page out.
pub fn pause(a: PauseArgs) -> Result<ExitCode> {
    let r = daemon::request(
        &a.state.dir(),
        &Request::Pause {
            name: a.name.clone(),
            page_out: !a.no_page_out,
            deep: a.deep,
        },
    )?;
    println!(
        "{}: paused, {} left RAM",
        a.name,
        human_bytes(r.paged_out_bytes.unwrap_or(0))
    );
    Ok(ExitCode::SUCCESS)
}

/// `agentmem resume`.
#[derive(Debug, ClapArgs)]
pub struct ResumeArgs {
    /// The agent.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Resume every paused agent.
    #[arg(long)]
    pub all: bool,
    /// What to prefetch before returning: `working-set` (its learned recent
    /// working set; the rest follows in the background), `all`, or `none`.
    #[arg(long, default_value = "working-set", value_parser = parse_prefetch)]
    pub prefetch: Prefetch,
    #[command(flatten)]
    pub state: StateArgs,
}

fn parse_prefetch(s: &str) -> Result<Prefetch, String> {
    match s {
        "working-set" => Ok(Prefetch::WorkingSet),
        "all" => Ok(Prefetch::All),
        "none" => Ok(Prefetch::None),
        _ => Err(format!("{s:?}: expected working-set, all or none")),
    }
}

/// `agentmem resume`: thaw and prefetch; returns when the prefetch is done.
pub fn resume(a: ResumeArgs) -> Result<ExitCode> {
    let dir = a.state.dir();
    let names = match &a.name {
        Some(n) => vec![n.clone()],
        None => status(&dir)?
            .agents
            .into_iter()
            .filter(|x| x.state == "paused")
            .map(|x| x.name)
            .collect(),
    };
    if a.all && names.is_empty() {
        println!("no paused agent");
    }
    let mut failed = 0;
    for name in names {
        let req = Request::Resume {
            name: name.clone(),
            prefetch: a.prefetch,
        };
        match daemon::request(&dir, &req) {
            Ok(r) => println!("{name}: resumed in {:.1} ms", r.resume_ms.unwrap_or(0.0)),
            // One agent that cannot be resumed does not stop the others.
            Err(e) if a.all => {
                eprintln!("{name}: {e}");
                failed += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed > 0 {
        bail!("{failed} agents could not be resumed");
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentmem kill`.
#[derive(Debug, ClapArgs)]
pub struct KillArgs {
    /// The agent.
    pub name: String,
    /// The signal sent first: TERM, HUP, INT, QUIT or KILL.
    #[arg(long, short = 's', default_value = "TERM")]
    pub signal: String,
    /// Seconds to wait for the agent to exit before SIGKILL.
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `agentmem kill`: signal every process of the agent's cgroup (detached
/// daemons included), thawing it if paused; SIGKILL after the grace period.
/// Returns once they have all exited.
pub fn kill(a: KillArgs) -> Result<ExitCode> {
    daemon::parse_signal(&a.signal)?;
    let grace = secs(a.grace, "--grace")?;
    let r = daemon::request(
        &a.state.dir(),
        &Request::Kill {
            name: a.name.clone(),
            signal: a.signal.clone(),
            grace_ms: grace.as_millis() as u64,
        },
    )?;
    println!(
        "{}: ended ({} processes signalled{})",
        a.name,
        r.signalled.unwrap_or(0),
        if r.sigkill == Some(true) {
            ", SIGKILL after the grace period"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `agentmem ps`.
#[derive(Debug, ClapArgs)]
pub struct PsArgs {
    /// Print JSON: `{agents: [{name, pid, state, rss_bytes, pss_bytes, swap_bytes, ksm_merged_pages, ram_bytes, swap_cache_bytes, zswap_bytes, disk_bytes, figures_age_s, pss_age_s, idle_s, last_resume_ms}], totals}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

fn status(dir: &StateDir) -> Result<Status> {
    daemon::request(dir, &Request::Status)?
        .status
        .context("the supervisor sent no status")
}

fn sorted_by_memory(mut st: Status) -> Status {
    st.agents
        .sort_by(|a, b| b.ram_bytes.cmp(&a.ram_bytes).then(a.name.cmp(&b.name)));
    st
}

fn table(st: &Status) -> Vec<[String; 12]> {
    st.agents
        .iter()
        .map(|a| {
            [
                a.name.clone(),
                a.pid.to_string(),
                a.state.clone(),
                human_bytes(a.ram_bytes),
                human_bytes(a.swap_cache_bytes),
                human_bytes(a.rss_bytes),
                human_bytes(a.pss_bytes),
                human_bytes(a.swap_bytes),
                human_bytes(a.disk_bytes),
                a.ksm_merged_pages.to_string(),
                format!("{:.0}", a.idle_s),
                a.last_resume_ms
                    .map(|m| format!("{m:.1}"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

const HEADER: [&str; 12] = [
    "NAME",
    "PID",
    "STATE",
    "RAM",
    "SWAPCACHE",
    "RSS",
    "PSS",
    "SWAP",
    "DISK",
    "KSM",
    "IDLE_S",
    "RESUME_MS",
];

fn totals_line(st: &Status) -> String {
    let t = &st.totals;
    format!(
        "{} agents: RAM held {} (swap cache {}), RSS {}, PSS {}, swap {} ({} on disk), KSM {} pages; machine: SwapCached {}, zswap pool {} holding {}; MemAvailable {}{}",
        t.agents,
        human_bytes(t.ram_bytes),
        human_bytes(t.swap_cache_bytes),
        human_bytes(t.rss_bytes),
        human_bytes(t.pss_bytes),
        human_bytes(t.swap_bytes),
        human_bytes(t.disk_bytes),
        t.ksm_merged_pages,
        human_bytes(t.swap_cached_bytes),
        human_bytes(t.zswap_pool_bytes),
        human_bytes(t.zswapped_bytes),
        human_bytes(t.mem_available_bytes),
        t.psi_some_avg10.map(|p| format!(", PSI some avg10 {p:.2}")).unwrap_or_default()
    )
}

/// `agentmem ps`.
pub fn ps(a: PsArgs) -> Result<ExitCode> {
    let st = sorted_by_memory(status(&a.state.dir())?);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = table(&st);
    let mut w: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(&HEADER.map(String::from)));
    for r in &rows {
        println!("{}", line(r));
    }
    println!("{}", totals_line(&st));
    Ok(ExitCode::SUCCESS)
}

/// `agentmem top`.
#[derive(Debug, ClapArgs)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `agentmem top`: `ps`, live, sorted by memory; `q` or Esc quits.
pub fn top(a: TopArgs) -> Result<ExitCode> {
    use crossterm::event::{self, Event, KeyCode};
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Wrap};

    let interval = secs(a.interval, "--interval")?;
    let dir = a.state.dir();
    status(&dir)?; // fail before taking over the terminal
    let mut term = ratatui::init();
    let result = (|| -> Result<()> {
        let mut next = Instant::now();
        let mut st = Status::default();
        let mut err: Option<String> = None;
        loop {
            if Instant::now() >= next {
                match status(&dir) {
                    Ok(s) => {
                        st = sorted_by_memory(s);
                        err = None;
                    }
                    Err(e) => err = Some(e.to_string()),
                }
                next = Instant::now() + interval;
            }
            term.draw(|f| {
                let [head, body] =
                    Layout::vertical([Constraint::Length(4), Constraint::Min(3)]).areas(f.area());
                let text = err.clone().unwrap_or_else(|| totals_line(&st)) + "   (q quits)";
                f.render_widget(
                    Paragraph::new(text)
                        .wrap(Wrap { trim: true })
                        .block(Block::default().borders(Borders::ALL).title("agentmem top")),
                    head,
                );
                let rows = table(&st).into_iter().map(Row::new);
                let widths = [12, 8, 10, 10, 10, 10, 10, 10, 10, 8, 8, 10].map(Constraint::Length);
                f.render_widget(
                    Table::new(rows, widths)
                        .header(
                            Row::new(HEADER).style(Style::default().add_modifier(Modifier::BOLD)),
                        )
                        .block(
                            Block::default()
                                .borders(Borders::ALL)
                                .title("agents by RAM held (PSS + swap cache + zswap share)"),
                        ),
                    body,
                );
            })?;
            if event::poll(Duration::from_millis(200))? {
                if let Event::Key(k) = event::read()? {
                    if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result.map(|_| ExitCode::SUCCESS)
}
