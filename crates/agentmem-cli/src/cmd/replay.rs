//! `agentmem replay-model`: a loopback model server that answers agent CLIs
//! from recorded conversations (see `docs/replay-model.md`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use agentmem_replay::{Latency, Library, ReplayServer, Replayer};
use anyhow::{Context, Result};

/// Serve Anthropic Messages, OpenAI Responses / Chat Completions and Gemini
/// generateContent on loopback, answering from recorded trajectories.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback only unless --allow-non-loopback).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Data directory (with conversations/*.jsonl.zst) or one conversations
    /// file. Default: the bundled sample, data/sample.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Seed for choosing trajectories and sampling latencies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Median time to first token, seconds (fit to tau2_dev: 1.57).
    #[arg(long, default_value_t = Latency::default().ttft_median_s)]
    ttft_median: f64,
    /// Log-normal sigma of the time to first token.
    #[arg(long, default_value_t = Latency::default().ttft_sigma)]
    ttft_sigma: f64,
    /// Median output speed, tokens per second (fit to tau2_dev: 48).
    #[arg(long, default_value_t = Latency::default().tokens_per_s_median)]
    tokens_per_s: f64,
    /// Log-normal sigma of the output speed.
    #[arg(long, default_value_t = Latency::default().tokens_per_s_sigma)]
    tokens_per_s_sigma: f64,
    /// Multiply every model delay (0 answers at once).
    #[arg(long, default_value_t = 1.0)]
    latency_scale: f64,
    /// Accept a listen address that is not loopback (the server has no
    /// authentication; never needed for benchmarks).
    #[arg(long)]
    allow_non_loopback: bool,
    /// Write every model request body into this directory (to see what a
    /// CLI sends: tools declared, system prompt, side requests).
    #[arg(long)]
    dump_requests: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let data = match args.data {
        Some(d) => d,
        None => crate::data::bundled_sample()?,
    };
    let library = Library::load(&data)
        .with_context(|| format!("loading trajectories from {}", data.display()))?;
    let latency = Latency {
        ttft_median_s: args.ttft_median,
        ttft_sigma: args.ttft_sigma,
        tokens_per_s_median: args.tokens_per_s,
        tokens_per_s_sigma: args.tokens_per_s_sigma,
        scale: args.latency_scale,
    };
    let trajectories = library.trajectories().len();
    let replayer = Replayer::new(library, args.seed, latency);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut server = ReplayServer::bind(replayer, args.listen, args.allow_non_loopback).await?;
        if let Some(dir) = args.dump_requests {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            server = server.dump_requests(dir);
        }
        let addr = server.local_addr()?;
        tracing::info!(%addr, trajectories, data = %data.display(), "replay-model listening");
        server.serve(shutdown_signal()).await?;
        tracing::info!("replay-model stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
