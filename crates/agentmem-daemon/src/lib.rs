//! # agentmem-daemon
//!
//! `agentmemd` serves one [`agentmem_core::Store`] to many agent processes
//! over a Unix socket, speaking the protocol of [`agentmem_proto`]; the
//! client is `agentmem-client`. The binary is `agentmemd`; `agentmem daemon`
//! runs the same [`run`].
//!
//! ## Architecture
//!
//! - `server`: the listener and one tokio task per connection. A task reads
//!   bytes, decodes every complete frame, serves each request in order, and
//!   writes the answers in one write; bad bytes end that connection only,
//!   with an error frame where one can be sent and one log line.
//! - `service`: identity (SO_PEERCRED uid, or a configured token, names the
//!   tenant; the hello names the agent), access checks, the store calls,
//!   agents across connections (a closed connection leaves its agent `Idle`
//!   for `grace_secs`, then releases it), and the cache of sealed memfd
//!   segments that large units are sent as.
//! - `metrics`: counters, latency histograms, the Prometheus endpoint.
//! - `sys`: memfd, `SCM_RIGHTS`, resident memory.
//!
//! ## Concurrency
//!
//! Store calls run on the connection's task. Those that may take long —
//! puts and appends (compression, the redo log's fsync under `sync`),
//! releases, conversation reads (decompressing chunks), state changes,
//! pause and resume (demoting or prefetching an agent's units) — run inside
//! `tokio::task::block_in_place`, so the worker's other connections move to
//! another thread instead of waiting behind them. Point lookups (get, unit
//! info, share) stay inline: the hand-off costs about 5 µs, as much as the
//! whole get of a hot unit (a get of a cold unit reads one record from
//! disk inline). So [`serve`] needs a multi-thread runtime, which
//! [`serve_blocking`] builds. Agents, tenants
//! and segments sit behind their own mutexes, never held across an await.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub mod config;
pub mod error;
pub mod escape;
pub mod metrics;
mod server;
pub mod service;
pub mod sys;

pub use config::Config;
use error::Context;
pub use error::{Error, Result};

/// The socket path used when none is configured:
/// `$XDG_RUNTIME_DIR/agentmem.sock`, else `/run/agentmem/agentmem.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("agentmem.sock"),
        _ => PathBuf::from("/run/agentmem/agentmem.sock"),
    }
}

/// The data directory used when none is configured: `$STATE_DIRECTORY`
/// (set by systemd's `StateDirectory=`; its first entry), else
/// `$XDG_STATE_HOME/agentmem`, else `/var/lib/agentmem` for root and
/// `$HOME/.local/state/agentmem` for other users (the XDG default). A
/// daemon is expected to keep its data across restarts; `--ram-only` (or
/// `data_dir = ""`) opts out.
pub fn default_data_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("STATE_DIRECTORY") {
        // systemd joins several StateDirectory= entries with ':'.
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        if !first.is_empty() {
            return PathBuf::from(first);
        }
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return PathBuf::from(d).join("agentmem");
    }
    match var("HOME") {
        Some(h) if !rustix::process::getuid().is_root() => {
            PathBuf::from(h).join(".local/state/agentmem")
        }
        _ => PathBuf::from("/var/lib/agentmem"),
    }
}

/// `agentmemd`'s command line. Flags override the configuration file.
///
/// Each flag that sets a configuration key has that key's name (in
/// `--kebab-case`), and is merged onto the file's configuration by name
/// (see [`Args::config`]), so adding a flag is one field here and nothing
/// else; the key's meaning and default live in [`Config`].
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Args {
    /// TOML configuration file (every key optional; see docs/daemon.md or
    /// `--print-config` for the keys and their defaults).
    #[arg(long, env = "AGENTMEMD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Unix socket to listen on [default: $XDG_RUNTIME_DIR/agentmem.sock,
    /// else /run/agentmem/agentmem.sock].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this loopback address, e.g.
    /// 127.0.0.1:9464 [default: off].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Seconds a disconnected agent's units are kept for it to reconnect
    /// [default: 300].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<f64>,
    /// Largest frame payload in bytes [default: 16777216].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame: Option<u32>,
    /// Connections served at once [default: 4096].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Connections one tenant may hold [default: 1024].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_tenant: Option<usize>,
    /// Units at least this large are sent as shared memfd segments, e.g.
    /// "16KiB" [default: 16KiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_threshold: Option<u64>,
    /// The store's budgets.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Worker threads [default: one per CPU].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Log filter: error, warn, info, debug [default: info].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Data directory of the persistent store: opened at start, checkpointed
    /// on SIGTERM/SIGINT, locked against a second daemon [default:
    /// $STATE_DIRECTORY, else $XDG_STATE_HOME/agentmem, else
    /// /var/lib/agentmem for root, ~/.local/state/agentmem for others].
    #[arg(long, value_name = "DIR", conflicts_with = "ram_only")]
    #[serde(skip)]
    pub dir: Option<PathBuf>,
    /// Keep everything in RAM only: nothing is written to disk and a restart
    /// starts empty (same as `data_dir = ""`).
    #[arg(long)]
    #[serde(skip)]
    pub ram_only: bool,
    /// Seconds between background checkpoints; 0 = only at shutdown
    /// [default: 30].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_secs: Option<f64>,
    /// When an acknowledged write is durable [default: group].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<config::DurabilityMode>,
    /// Milliseconds between redo-log fdatasyncs under group commit
    /// [default: 10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_commit_ms: Option<f64>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

/// Flags for the `[store]` table.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize)]
pub struct StoreArgs {
    /// The store's RAM budget, e.g. "1GiB" [default: 1GiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_budget: Option<u64>,
    /// The store's hot budget [default: a quarter of the RAM budget].
    #[arg(long, value_parser = parse_size)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hot_budget: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}

/// Lay `over`'s keys onto `base`, tables key by key.
fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Args {
    /// The configuration: the file's (or defaults), then every flag given,
    /// merged by key name, then `--dir` / `--ram-only`.
    pub fn config(&self) -> Result<Config> {
        let file = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let bad = |e: &dyn std::fmt::Display| Error::Config(format!("command-line flags: {e}"));
        let mut table = toml::Table::try_from(&file).map_err(|e| bad(&e))?;
        overlay(
            &mut table,
            toml::Table::try_from(self).map_err(|e| bad(&e))?,
        );
        let mut c: Config = table.try_into().map_err(|e| bad(&e))?;
        if let Some(v) = &self.dir {
            // A relative --dir is taken from the working directory.
            c.data_dir = std::path::absolute(v).ctx(|| format!("--dir {}", v.display()))?;
        }
        if self.ram_only {
            c.data_dir = PathBuf::new();
        }
        c.validate()?;
        Ok(c)
    }
}

/// Run the daemon from its command line until SIGTERM or SIGINT.
pub fn run(args: Args) -> Result<()> {
    let cfg = args.config()?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    init_logging(&cfg.log)?;
    serve_blocking(cfg)
}

fn init_logging(filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| Error::Config(format!("invalid log filter {filter:?}: {e}")))?;
    // A second call (tests, `agentmem daemon` after other setup) keeps the
    // first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    Ok(())
}

/// Build the store and a runtime, and serve until SIGTERM or SIGINT.
pub fn serve_blocking(cfg: Config) -> Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if cfg.workers > 0 {
        rt.worker_threads(cfg.workers);
    }
    let rt = rt.build().ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        let (tx, rx) = watch::channel(false);
        let signals = tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(
                "{name}: shutting down (no new connections; finishing requests in flight)"
            );
            let _ = tx.send(true);
        });
        let r = serve(cfg, rx).await;
        signals.abort();
        r
    })
}

/// Build the store: in RAM, or opened from `data_dir` (restoring its last
/// checkpoint), with the recovery logged.
fn open_store(builder: agentmem_core::StoreBuilder, cfg: &Config) -> Result<agentmem_core::Store> {
    let dir = &cfg.data_dir;
    if dir.as_os_str().is_empty() {
        tracing::info!("RAM only (no data_dir): nothing survives a restart");
        return builder.build().ctx(|| "building the store".into());
    }
    // Private units of every tenant live here: only the daemon's user may
    // read it (systemd's StateDirectoryMode=0700 does the same).
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .ctx(|| format!("creating the data directory {}", dir.display()))?;
        let mode = std::fs::metadata(dir)
            .ctx(|| format!("reading the data directory {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "data directory {} has mode {:o}: other users may read agents' private units; chmod 700 it",
                dir.display(),
                mode & 0o777
            );
        }
    }
    let every = (cfg.checkpoint_secs > 0.0).then(|| Duration::from_secs_f64(cfg.checkpoint_secs));
    let durability = match cfg.durability {
        config::DurabilityMode::Group => {
            agentmem_core::Durability::Group(Duration::from_secs_f64(cfg.group_commit_ms / 1e3))
        }
        config::DurabilityMode::Sync => agentmem_core::Durability::Sync,
        config::DurabilityMode::Checkpoint => agentmem_core::Durability::Checkpoint,
    };
    let store = builder
        .checkpoint_every(every)
        .durability(durability)
        .open(dir)
        .ctx(|| format!("opening the store in {}", dir.display()))?;
    match store.open_report() {
        Some(r) if r.restored => tracing::info!(
            "recovered {} in {:.1?} (cold tier {:.1?}): {} agents, {} units, {} conversations, {} orphan records deleted",
            dir.display(),
            r.elapsed,
            r.cold_open,
            r.agents,
            r.units,
            r.conversations,
            r.orphans_deleted
        ),
        Some(r) => tracing::info!("new store in {} (opened in {:.1?})", dir.display(), r.elapsed),
        None => {}
    }
    Ok(store)
}

/// Serve until `shutdown` becomes true (on a multi-thread tokio runtime:
/// store calls use `block_in_place`), then stop accepting, let each
/// connection finish the requests it has read, wait for them (up to
/// `shutdown_timeout_secs`), and remove the socket.
pub async fn serve(cfg: Config, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let fd_limit = sys::raise_fd_limit();
    let mut builder = agentmem_core::Store::builder().ram_budget(cfg.store.ram_budget.0);
    if let Some(h) = cfg.store.hot_budget {
        builder = builder.hot_budget(h.0);
    }
    builder = builder.max_unit_size(cfg.store.max_unit_size.0);
    let store = open_store(builder, &cfg)?;
    let listener = server::bind(&cfg.socket, cfg.mode()?)?;
    let socket = cfg.socket.clone();
    let metrics_addr = cfg.metrics;
    let shutdown_timeout = Duration::from_secs_f64(cfg.shutdown_timeout_secs);
    let svc = Arc::new(service::Service::new(store, cfg));
    let restored = svc.adopt_restored_agents();
    if restored > 0 {
        tracing::info!(
            "{restored} agents from the data directory are idle until they reconnect; released after {}s otherwise",
            svc.cfg.grace_secs
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(server::Live::default());
    let mut tasks = Vec::new();
    if let Some(addr) = metrics_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .ctx(|| format!("listening for metrics on {addr}"))?;
        let s = svc.clone();
        tasks.push(tokio::spawn(metrics::serve(
            l,
            Arc::new(move || s.render_metrics()),
            stop_rx.clone(),
        )));
        tracing::info!("metrics on http://{addr}/metrics");
    }
    tasks.push(tokio::spawn(server::reaper(svc.clone(), stop_rx.clone())));
    let accept = tokio::spawn(server::accept_loop(
        svc.clone(),
        listener,
        live.clone(),
        stop_rx.clone(),
    ));
    tracing::info!(
        "agentmemd {} listening on {} (pid {}, protocol v{}, open-file limit {fd_limit})",
        env!("CARGO_PKG_VERSION"),
        socket.display(),
        std::process::id(),
        agentmem_proto::VERSION
    );
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    let _ = stop_tx.send(true);
    let _ = accept.await;
    let left = live.drain(shutdown_timeout).await;
    if left > 0 {
        tracing::warn!("{left} connections still open after {shutdown_timeout:?}; closing them");
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&socket);
    if !svc.cfg.data_dir.as_os_str().is_empty() {
        // Connections are done (or cut off): nothing changes the store now.
        match svc.store.checkpoint() {
            Ok(r) => tracing::info!(
                "checkpoint of {}: {} units ({} bytes) written, image {} bytes, {} records deleted, in {:.1?}",
                svc.cfg.data_dir.display(),
                r.units_written,
                r.bytes_written,
                r.image_bytes,
                r.deleted,
                r.elapsed
            ),
            Err(source) => {
                return Err(Error::Store {
                    what: format!(
                        "final checkpoint of {} failed: work since the last checkpoint is lost",
                        svc.cfg.data_dir.display()
                    ),
                    source,
                })
            }
        }
    }
    let m = &svc.metrics;
    tracing::info!(
        "stopped: {} requests served, {} connections accepted",
        m.requests.load(std::sync::atomic::Ordering::Relaxed),
        m.accepted.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_override_the_file_by_key_name() {
        let dir = std::env::temp_dir().join(format!("agentmemd-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "max_frame = 8192\ngrace_secs = 9\n[store]\nhot_budget = 4096\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "agentmemd",
            "--config",
            file.to_str().unwrap(),
            "--max-frame",
            "65536",
            "--ram-budget",
            "2MiB",
            "--durability",
            "sync",
            "--metrics",
            "127.0.0.1:9464",
            "--max-connections-per-tenant",
            "7",
            "--ram-only",
        ])
        .unwrap();
        let c = cli.args.config().unwrap();
        assert_eq!(c.max_frame, 65536, "a flag beats the file");
        assert_eq!(c.grace_secs, 9.0, "the file beats the default");
        assert_eq!(c.store.ram_budget, config::Size(2 << 20));
        assert_eq!(
            c.store.hot_budget,
            Some(config::Size(4096)),
            "[store] merges key by key"
        );
        assert_eq!(c.durability, config::DurabilityMode::Sync);
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.max_connections_per_tenant, 7);
        assert!(c.data_dir.as_os_str().is_empty());
        let none = Cli::try_parse_from(["agentmemd"]).unwrap();
        let d = none.args.config().unwrap();
        assert_eq!(d, Config::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
