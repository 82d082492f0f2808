//! Agents that say their state: `agentmem state` (what their hooks run),
//! `agentmem unhook`, and the hook installation `agentmem run` does
//! (docs/real-agents.md).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use agentmem_core::AgentState;
use agentmem_supervisor::agent::StateDir;
use agentmem_supervisor::daemon::{self, Request};
use agentmem_supervisor::hooks::{self, AgentCli, ENV_AGENT};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;

use super::supervise::StateArgs;

fn parse_state(s: &str) -> Result<AgentState, String> {
    let n = s.replace('-', "_");
    AgentState::ALL
        .into_iter()
        .find(|x| x.name() == n)
        .ok_or_else(|| {
            let all: Vec<&str> = AgentState::ALL.iter().map(|x| x.name()).collect();
            format!("{s:?}: expected one of {}", all.join(", "))
        })
}

/// `agentmem state`.
#[derive(Debug, ClapArgs)]
pub struct StateCmdArgs {
    /// The agent's state: waiting_for_human, active, running_tool, waiting_for_model, idle.
    #[arg(value_parser = parse_state)]
    pub state: AgentState,
    /// The agent (default: $AGENTMEM_AGENT, which `agentmem run` sets).
    #[arg(long, env = ENV_AGENT)]
    pub agent: Option<String>,
    /// Run as a hook: print nothing, never fail (the agent must not notice),
    /// do nothing outside `agentmem run`.
    #[arg(long)]
    pub from_hook: bool,
    /// Ignored (Codex appends its event as JSON to the `notify` command).
    #[arg(hide = true)]
    pub extra: Vec<String>,
    #[command(flatten)]
    pub state_dir: StateArgs,
}

/// `agentmem state`: tells the supervisor what an agent is doing.
pub fn state(a: StateCmdArgs) -> Result<ExitCode> {
    let Some(name) = a.agent.clone() else {
        if a.from_hook {
            return Ok(ExitCode::SUCCESS);
        }
        bail!("which agent? give --agent NAME (or run the agent under `agentmem run`)");
    };
    let r = daemon::request(
        &StateDir::new(&a.state_dir.state_dir),
        &Request::State {
            name,
            state: a.state,
        },
    );
    match r {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(_) if a.from_hook => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// `agentmem unhook`.
#[derive(Debug, ClapArgs)]
pub struct UnhookArgs {
    /// Agents whose hooks to remove.
    pub names: Vec<String>,
    /// Every agent's.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `agentmem unhook`: removes the hooks `agentmem run` installed (the
/// supervisor does it when an agent exits; this is for agents that ended
/// while no supervisor ran).
pub fn unhook(a: UnhookArgs) -> Result<ExitCode> {
    let dir = StateDir::new(&a.state.state_dir);
    let names = if a.all { hooks::hooked(&dir) } else { a.names };
    if names.is_empty() {
        println!("no hooks recorded in {}", dir.root().display());
    }
    for n in names {
        match hooks::release(&dir, &n)? {
            Some(f) => println!("{n}: hooks removed from {}", f.display()),
            None => println!("{n}: released (its configuration file stays hooked for other agents, or it had none)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For `agentmem run`: names the agent and its state directory in the
/// agent's environment (its hooks read them), and installs the hooks of a
/// known CLI in its configuration. A failure to hook is reported and the
/// agent runs anyway (idleness is then inferred).
pub fn prepare_run(dir: &StateDir, name: &str, command: &[String], cmd: &mut Command) {
    // Lost through `run -- env -i ...` (its hooks then do nothing): set the
    // agent's environment outside `agentmem run` instead.
    cmd.env(ENV_AGENT, name);
    cmd.env("AGENTMEM_STATE_DIR", dir.root());
    let Some(cli) = AgentCli::detect(command) else {
        return;
    };
    // `env [-i] VAR=value... PROGRAM`: the agent's environment is that one.
    let (mut cleared, mut set) = (false, Vec::new());
    if command
        .first()
        .is_some_and(|c| c.rsplit('/').next() == Some("env"))
    {
        for arg in &command[1..] {
            if arg == "-i" || arg == "--ignore-environment" {
                cleared = true;
            } else if let Some((k, v)) = arg.split_once('=').filter(|_| !arg.starts_with('-')) {
                set.push((k.to_string(), v.to_string()));
            } else if !arg.starts_with('-') {
                break;
            }
        }
    }
    let var = |k: &str| {
        set.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| (!cleared).then(|| std::env::var(k).ok()).flatten())
    };
    let Some(file) = cli.config_file(var) else {
        eprintln!("agentmem run: no HOME: {} runs without hooks", cli.as_str());
        return;
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("agentmem"));
    match hooks::install(dir, name, cli, &file, &exe) {
        Ok(true) => eprintln!(
            "agentmem run: {} reports its state through hooks added to {} (removed when it exits, or `agentmem unhook {name}`)",
            cli.as_str(),
            file.display()
        ),
        Ok(false) => {}
        Err(e) => eprintln!(
            "agentmem run: {} runs without hooks ({e}); its idleness is inferred",
            cli.as_str()
        ),
    }
}
