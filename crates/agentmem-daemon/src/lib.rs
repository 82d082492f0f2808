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
//! Store calls run on the connection's task: they take the store's mutex
//! only for bookkeeping and return in microseconds (hot reads) to a few
//! milliseconds (a put that compresses), so a blocking-pool hop would cost
//! more than it saves. Agents and segments sit behind their own mutexes,
//! never held across an await.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

pub mod config;
pub mod metrics;
mod server;
pub mod service;
pub mod sys;

pub use config::Config;

/// The socket path used when none is configured:
/// `$XDG_RUNTIME_DIR/agentmem.sock`, else `/run/agentmem/agentmem.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("agentmem.sock"),
        _ => PathBuf::from("/run/agentmem/agentmem.sock"),
    }
}

/// `agentmemd`'s command line. Flags override the configuration file.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TOML configuration file (every key optional; see docs/daemon.md or
    /// `--print-config` for the keys and their defaults).
    #[arg(long, env = "AGENTMEMD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Unix socket to listen on [default: $XDG_RUNTIME_DIR/agentmem.sock,
    /// else /run/agentmem/agentmem.sock].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this loopback address, e.g.
    /// 127.0.0.1:9464 [default: off].
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Seconds a disconnected agent's units are kept for it to reconnect
    /// [default: 300].
    #[arg(long)]
    pub grace_secs: Option<f64>,
    /// Largest frame payload in bytes [default: 16777216].
    #[arg(long)]
    pub max_frame: Option<u32>,
    /// Connections served at once [default: 4096].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Units at least this large are sent as shared memfd segments, e.g.
    /// "16KiB" [default: 16KiB].
    #[arg(long, value_parser = parse_size)]
    pub share_threshold: Option<u64>,
    /// The store's RAM budget, e.g. "1GiB" [default: 1GiB].
    #[arg(long, value_parser = parse_size)]
    pub ram_budget: Option<u64>,
    /// The store's hot budget [default: a quarter of the RAM budget].
    #[arg(long, value_parser = parse_size)]
    pub hot_budget: Option<u64>,
    /// Worker threads [default: one per CPU].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Log filter: error, warn, info, debug [default: info].
    #[arg(long)]
    pub log: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}

impl Args {
    /// The configuration: the file's (or defaults), then the flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(v) = &self.socket {
            c.socket = v.clone();
        }
        if let Some(v) = self.metrics {
            c.metrics = Some(v);
        }
        if let Some(v) = self.grace_secs {
            c.grace_secs = v;
        }
        if let Some(v) = self.max_frame {
            c.max_frame = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.share_threshold {
            c.share_threshold = config::Size(v);
        }
        if let Some(v) = self.ram_budget {
            c.store.ram_budget = config::Size(v);
        }
        if let Some(v) = self.hot_budget {
            c.store.hot_budget = Some(config::Size(v));
        }
        if let Some(v) = self.workers {
            c.workers = v;
        }
        if let Some(v) = &self.log {
            c.log = v.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// Run the daemon from its command line until SIGTERM or SIGINT.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config()?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    init_logging(&cfg.log)?;
    serve_blocking(cfg)
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?}"))?;
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
pub fn serve_blocking(cfg: Config) -> anyhow::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if cfg.workers > 0 {
        rt.worker_threads(cfg.workers);
    }
    let rt = rt.build().context("starting the tokio runtime")?;
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

/// Serve until `shutdown` becomes true, then stop accepting, let each
/// connection finish the requests it has read, wait for them (up to
/// `shutdown_timeout_secs`), and remove the socket.
pub async fn serve(cfg: Config, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let fd_limit = sys::raise_fd_limit();
    let mut builder = agentmem_core::Store::builder().ram_budget(cfg.store.ram_budget.0);
    if let Some(h) = cfg.store.hot_budget {
        builder = builder.hot_budget(h.0);
    }
    builder = builder.max_unit_size(cfg.store.max_unit_size.0);
    let store = builder.build().context("building the store")?;
    let listener = server::bind(&cfg.socket, cfg.mode()?)?;
    let socket = cfg.socket.clone();
    let metrics_addr = cfg.metrics;
    let shutdown_timeout = Duration::from_secs_f64(cfg.shutdown_timeout_secs);
    let svc = Arc::new(service::Service::new(store, cfg));
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(server::Live::default());
    let mut tasks = Vec::new();
    if let Some(addr) = metrics_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
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
    let m = &svc.metrics;
    tracing::info!(
        "stopped: {} requests served, {} connections accepted",
        m.requests.load(std::sync::atomic::Ordering::Relaxed),
        m.accepted.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
