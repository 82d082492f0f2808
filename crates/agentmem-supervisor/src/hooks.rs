//! Agents that say their state: hooks installed in the agent CLI's own
//! configuration, reversibly.
//!
//! Claude Code and Gemini CLI run a command on events of their loop
//! (prompt submitted, tool about to run, turn finished, waiting for the
//! person); Codex runs its `notify` command when a turn completes. `agentmem
//! run` installs, for the CLI it starts, a hook per event that runs
//! `agentmem state STATE --from-hook`, which tells the supervisor through its
//! control socket. STATE is the store's [`AgentState`] vocabulary:
//! `waiting_for_human` when a turn ends, `active` when a prompt is
//! submitted, `running_tool` around tools.
//!
//! The installed command names no agent: `agentmem run` puts the agent's
//! name in its environment ([`ENV_AGENT`]), which the CLI passes on to its
//! hooks. So one configuration file shared by several agents (the same
//! `$HOME`) needs the hooks once, and a CLI started without `agentmem run`
//! runs them as no-ops.
//!
//! Reversible: before the first change to a file its exact bytes are kept
//! (`STATE/hooks/NAME.json`). When the last agent using the file goes
//! ([`release`], called by the supervisor when an agent exits and by
//! `agentmem unhook`), the file gets its original bytes back if nobody else
//! changed it meanwhile; otherwise only the entries carrying [`MARK`] are
//! removed. Installs and releases hold a lock on `STATE/hooks/.lock`.

use std::fs;
use std::path::{Path, PathBuf};

use agentmem_core::AgentState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::StateDir;
use crate::error::{Error, Result};

/// Environment variable naming the agent to its hooks (set by `agentmem run`).
pub const ENV_AGENT: &str = "AGENTMEM_AGENT";

/// The argument that marks a command as an agentmem hook (and asks
/// `agentmem state` to stay silent and never fail the agent).
pub const MARK: &str = "--from-hook";

/// An agent CLI whose hooks agentmem knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentCli {
    /// Claude Code (`claude`): `hooks` in `~/.claude/settings.json`.
    ClaudeCode,
    /// Gemini CLI (`gemini`): `hooks` in `~/.gemini/settings.json`.
    GeminiCli,
    /// Codex (`codex`): `notify` in `~/.codex/config.toml`.
    Codex,
}

impl AgentCli {
    /// The CLI a command line starts, seen through `env [-i] [VAR=value]...`
    /// and `node SCRIPT` wrappers, by the program's file name.
    pub fn detect(command: &[String]) -> Option<AgentCli> {
        let mut args = command.iter().map(String::as_str).peekable();
        let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        let mut prog = base(args.next()?);
        if prog == "env" {
            prog = base(args.find(|a| !a.starts_with('-') && !a.contains('='))?);
        }
        if prog == "node" || prog == "nodejs" {
            prog = base(args.find(|a| !a.starts_with('-'))?);
        }
        match prog.trim_end_matches(".js") {
            "claude" => Some(AgentCli::ClaudeCode),
            "gemini" => Some(AgentCli::GeminiCli),
            "codex" => Some(AgentCli::Codex),
            _ => None,
        }
    }

    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentCli::ClaudeCode => "Claude Code",
            AgentCli::GeminiCli => "Gemini CLI",
            AgentCli::Codex => "Codex",
        }
    }

    /// The user configuration file the CLI reads its hooks from, for an
    /// environment read through `var` (HOME, CLAUDE_CONFIG_DIR, CODEX_HOME).
    pub fn config_file(self, var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let home = var("HOME").map(PathBuf::from);
        Some(match self {
            AgentCli::ClaudeCode => var("CLAUDE_CONFIG_DIR")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".claude")))?
                .join("settings.json"),
            AgentCli::GeminiCli => home?.join(".gemini").join("settings.json"),
            AgentCli::Codex => var("CODEX_HOME")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".codex")))?
                .join("config.toml"),
        })
    }

    /// The events hooked and the state each one means.
    pub fn events(self) -> &'static [(&'static str, AgentState)] {
        match self {
            // Notification: a permission prompt, or 60 s idle at the prompt.
            // StopFailure: the turn ended on an API error; the person acts next.
            AgentCli::ClaudeCode => &[
                ("SessionStart", AgentState::WaitingForHuman),
                ("UserPromptSubmit", AgentState::Active),
                ("PreToolUse", AgentState::RunningTool),
                ("PostToolUse", AgentState::Active),
                ("Stop", AgentState::WaitingForHuman),
                ("StopFailure", AgentState::WaitingForHuman),
                ("Notification", AgentState::WaitingForHuman),
            ],
            AgentCli::GeminiCli => &[
                ("SessionStart", AgentState::WaitingForHuman),
                ("BeforeAgent", AgentState::Active),
                ("BeforeTool", AgentState::RunningTool),
                ("AfterTool", AgentState::Active),
                ("AfterAgent", AgentState::WaitingForHuman),
                ("Notification", AgentState::WaitingForHuman),
            ],
            // `notify` runs on "agent-turn-complete" only.
            AgentCli::Codex => &[("notify", AgentState::WaitingForHuman)],
        }
    }
}

/// The command a hook runs: `EXE state STATE --from-hook`.
pub fn hook_argv(exe: &Path, state: AgentState) -> Vec<String> {
    vec![
        exe.display().to_string(),
        "state".into(),
        state.name().into(),
        MARK.into(),
    ]
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@%,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What was installed for one agent (`STATE/hooks/NAME.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The CLI.
    pub cli: AgentCli,
    /// The configuration file.
    pub file: PathBuf,
    /// The file's bytes before the first agentmem change (`None`: it did not
    /// exist), and the bytes written then; absent when this agent found the
    /// hooks already there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
}

/// How to give a file back its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    /// The bytes before (`None`: no file).
    pub original: Option<String>,
    /// The bytes agentmem wrote.
    pub written: String,
}

fn hooks_dir(state: &StateDir) -> PathBuf {
    state.root().join("hooks")
}

/// An exclusive lock on `STATE/hooks/.lock`, held while it lives.
struct Lock(#[allow(dead_code)] fs::File);

impl Lock {
    fn take(state: &StateDir) -> Result<Lock> {
        let dir = hooks_dir(state);
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let p = dir.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io("opening", &p, e))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io("locking", &p, e.into()))?;
        Ok(Lock(f))
    }
}

fn records(state: &StateDir) -> Vec<(String, Installed)> {
    let Ok(rd) = fs::read_dir(hooks_dir(state)) else {
        return Vec::new();
    };
    let mut v: Vec<(String, Installed)> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_suffix(".json")?.to_string();
            let r = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
            Some((name, r))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn save(state: &StateDir, name: &str, r: &Installed) -> Result<()> {
    let p = hooks_dir(state).join(format!("{name}.json"));
    let tmp = hooks_dir(state).join(format!(".{name}.json.tmp"));
    fs::write(&tmp, serde_json::to_vec(r).expect("serializes"))
        .map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, &p).map_err(|e| Error::io("renaming into", &p, e))
}

fn read_opt(p: &Path) -> Result<Option<String>> {
    match fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", p, e)),
    }
}

fn write_file(p: &Path, text: &str) -> Result<()> {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
    }
    let tmp = p.with_extension("agentmem.tmp");
    fs::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, p).map_err(|e| Error::io("renaming into", p, e))
}

/// Installs the hooks of `cli` into `file` for agent `name`, running `exe`
/// (the `agentmem` binary). Returns whether the file was changed (false:
/// the hooks were there already).
pub fn install(
    state: &StateDir,
    name: &str,
    cli: AgentCli,
    file: &Path,
    exe: &Path,
) -> Result<bool> {
    let _lock = Lock::take(state)?;
    let before = read_opt(file)?;
    let after = match cli {
        AgentCli::ClaudeCode | AgentCli::GeminiCli => {
            add_json_hooks(before.as_deref(), cli, exe, file)?
        }
        AgentCli::Codex => add_codex_notify(before.as_deref(), exe, file)?,
    };
    let undo = match after {
        Some(text) => {
            write_file(file, &text)?;
            Some(Undo {
                original: before,
                written: text,
            })
        }
        None => None,
    };
    let changed = undo.is_some();
    save(
        state,
        name,
        &Installed {
            cli,
            file: file.to_path_buf(),
            undo,
        },
    )?;
    Ok(changed)
}

/// Removes agent `name`'s hooks: when it was the last agent using its
/// configuration file, the file gets its original bytes back (or, if it was
/// changed since, loses only the agentmem entries). Returns the file cleaned,
/// if any. A no-op for agents without hooks.
pub fn release(state: &StateDir, name: &str) -> Result<Option<PathBuf>> {
    let _lock = Lock::take(state)?;
    let all = records(state);
    let Some((_, mine)) = all.iter().find(|(n, _)| n == name).cloned() else {
        return Ok(None);
    };
    let p = hooks_dir(state).join(format!("{name}.json"));
    let others: Vec<&(String, Installed)> = all
        .iter()
        .filter(|(n, r)| n != name && r.file == mine.file)
        .collect();
    if let Some((heir, r)) = others.first() {
        // Still in use: hand the undo record to an agent that stays.
        if r.undo.is_none() && mine.undo.is_some() {
            let mut r = r.clone();
            r.undo = mine.undo.clone();
            save(state, heir, &r)?;
        }
        fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
        return Ok(None);
    }
    let now = read_opt(&mine.file)?;
    match (&mine.undo, now) {
        (Some(u), Some(cur)) if cur == u.written => match &u.original {
            Some(orig) => write_file(&mine.file, orig)?,
            None => {
                fs::remove_file(&mine.file).map_err(|e| Error::io("removing", &mine.file, e))?
            }
        },
        (_, Some(cur)) => {
            let cleaned = match mine.cli {
                AgentCli::ClaudeCode | AgentCli::GeminiCli => remove_json_hooks(&cur, &mine.file)?,
                AgentCli::Codex => remove_codex_notify(&cur),
            };
            if cleaned != cur {
                write_file(&mine.file, &cleaned)?;
            }
        }
        (_, None) => {}
    }
    fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
    Ok(Some(mine.file))
}

/// Removes `STATE/hooks` when no agent has hooks recorded (for a state
/// directory being removed).
pub fn remove_dir_if_unused(state: &StateDir) {
    if records(state).is_empty() {
        let dir = hooks_dir(state);
        let _ = fs::remove_file(dir.join(".lock"));
        let _ = fs::remove_dir(&dir);
    }
}

/// Names of agents with hooks recorded.
pub fn hooked(state: &StateDir) -> Vec<String> {
    records(state).into_iter().map(|(n, _)| n).collect()
}

fn is_ours(group: &Value) -> bool {
    group["hooks"].as_array().is_some_and(|hs| {
        hs.iter()
            .any(|h| h["command"].as_str().is_some_and(|c| c.contains(MARK)))
    })
}

fn parse_json(text: Option<&str>, file: &Path) -> Result<Value> {
    match text {
        None => Ok(Value::Object(Default::default())),
        Some(t) if t.trim().is_empty() => Ok(Value::Object(Default::default())),
        Some(t) => serde_json::from_str(t).map_err(|e| Error::Parse {
            path: file.to_path_buf(),
            what: e.to_string(),
        }),
    }
}

/// `text` with the hooks of `cli` added, or `None` when they are there.
fn add_json_hooks(
    text: Option<&str>,
    cli: AgentCli,
    exe: &Path,
    file: &Path,
) -> Result<Option<String>> {
    let mut v = parse_json(text, file)?;
    let Some(root) = v.as_object_mut() else {
        return Err(Error::Invalid(format!(
            "{}: not a JSON object; not adding hooks",
            file.display()
        )));
    };
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(hooks) = hooks.as_object_mut() else {
        return Err(Error::Invalid(format!(
            "{}: `hooks` is not an object; not adding hooks",
            file.display()
        )));
    };
    let mut changed = false;
    for (event, state) in cli.events() {
        let list = hooks
            .entry(*event)
            .or_insert_with(|| Value::Array(Vec::new()));
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        if list.iter().any(is_ours) {
            continue;
        }
        let cmd = hook_argv(exe, *state)
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        list.push(serde_json::json!({"hooks": [{"type": "command", "command": cmd}]}));
        changed = true;
    }
    Ok(changed.then(|| serde_json::to_string_pretty(&v).expect("serializes") + "\n"))
}

/// `text` without any agentmem hook (and without the lists and the `hooks`
/// object that only held them).
fn remove_json_hooks(text: &str, file: &Path) -> Result<String> {
    let mut v = parse_json(Some(text), file)?;
    let mut changed = false;
    if let Some(root) = v.as_object_mut() {
        if let Some(hooks) = root.get_mut("hooks").and_then(Value::as_object_mut) {
            for list in hooks.values_mut() {
                if let Some(l) = list.as_array_mut() {
                    let n = l.len();
                    l.retain(|g| !is_ours(g));
                    changed |= l.len() != n;
                }
            }
            hooks.retain(|_, l| l.as_array().is_none_or(|a| !a.is_empty()));
            if hooks.is_empty() {
                root.remove("hooks");
            }
        }
    }
    Ok(if changed {
        serde_json::to_string_pretty(&v).expect("serializes") + "\n"
    } else {
        text.to_string()
    })
}

const CODEX_LINE_END: &str = "# added by agentmem run; `agentmem unhook` removes it";

/// `text` with a top-level `notify` added, or `None` when ours is there.
/// A `notify` of the user's own is left alone (Codex runs one command only):
/// that is an error, and the agent falls back to inferred idleness.
fn add_codex_notify(text: Option<&str>, exe: &Path, file: &Path) -> Result<Option<String>> {
    let text = text.unwrap_or("");
    let parsed: toml::Table = toml::from_str(text).map_err(|e| Error::Parse {
        path: file.to_path_buf(),
        what: e.to_string(),
    })?;
    if let Some(n) = parsed.get("notify") {
        let ours = n
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(MARK)));
        if ours {
            return Ok(None);
        }
        return Err(Error::Invalid(format!(
            "{} already sets `notify` (Codex runs only one); not adding agentmem's",
            file.display()
        )));
    }
    let argv = hook_argv(exe, AgentState::WaitingForHuman);
    let line = format!(
        "notify = {} {CODEX_LINE_END}\n",
        toml::Value::Array(argv.into_iter().map(toml::Value::String).collect())
    );
    // Top-level keys must come before the first table.
    let out = format!("{line}{text}");
    let check: toml::Table = toml::from_str(&out).map_err(|e| Error::Parse {
        path: file.to_path_buf(),
        what: format!("after adding notify: {e}"),
    })?;
    debug_assert!(check.contains_key("notify"));
    Ok(Some(out))
}

fn remove_codex_notify(text: &str) -> String {
    text.lines()
        .filter(|l| !(l.trim_start().starts_with("notify") && l.contains(MARK)))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn detects_the_cli_through_env_and_node() {
        assert_eq!(
            AgentCli::detect(&args("/usr/bin/claude")),
            Some(AgentCli::ClaudeCode)
        );
        assert_eq!(
            AgentCli::detect(&args("env -i HOME=/h A=b /x/node_modules/.bin/gemini -y")),
            Some(AgentCli::GeminiCli)
        );
        assert_eq!(
            AgentCli::detect(&args("node --max-old-space-size=99 /p/codex.js")),
            Some(AgentCli::Codex)
        );
        assert_eq!(AgentCli::detect(&args("bash -c claude")), None);
        assert_eq!(AgentCli::detect(&[]), None);
    }

    #[test]
    fn config_files_follow_the_cli_variables() {
        let env = |k: &str| match k {
            "HOME" => Some("/h".to_string()),
            "CODEX_HOME" => Some("/c".to_string()),
            _ => None,
        };
        assert_eq!(
            AgentCli::ClaudeCode.config_file(env),
            Some(PathBuf::from("/h/.claude/settings.json"))
        );
        assert_eq!(
            AgentCli::Codex.config_file(env),
            Some(PathBuf::from("/c/config.toml"))
        );
        assert_eq!(AgentCli::GeminiCli.config_file(|_| None), None);
    }

    fn setup() -> (tempfile::TempDir, StateDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let st = StateDir::new(t.path().join("state"));
        let exe = PathBuf::from("/opt/agent mem/agentmem");
        (t, st, exe)
    }

    #[test]
    fn claude_hooks_are_added_beside_the_users_and_removed_exactly() {
        let (t, st, exe) = setup();
        let f = t.path().join("settings.json");
        let user = "{\n  \"env\": {\"X\": \"1\"},\n  \"hooks\": {\"Stop\": [{\"hooks\": [{\"type\": \"command\", \"command\": \"say done\"}]}]}\n}\n";
        fs::write(&f, user).unwrap();
        assert!(install(&st, "a", AgentCli::ClaudeCode, &f, &exe).unwrap());
        let v: Value = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 2, "the user's hook stays");
        assert_eq!(
            stop[1]["hooks"][0]["command"],
            "'/opt/agent mem/agentmem' state waiting_for_human --from-hook"
        );
        assert_eq!(
            v["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"],
            "'/opt/agent mem/agentmem' state active --from-hook"
        );
        assert_eq!(v["env"]["X"], "1");
        // A second agent on the same file changes nothing.
        assert!(!install(&st, "b", AgentCli::ClaudeCode, &f, &exe).unwrap());
        // The first one leaves: the file stays hooked for the second.
        assert_eq!(release(&st, "a").unwrap(), None);
        assert!(fs::read_to_string(&f).unwrap().contains(MARK));
        assert_eq!(release(&st, "b").unwrap(), Some(f.clone()));
        assert_eq!(fs::read_to_string(&f).unwrap(), user, "exact bytes back");
        assert!(hooked(&st).is_empty());
        assert_eq!(release(&st, "b").unwrap(), None, "idempotent");
    }

    #[test]
    fn a_file_changed_meanwhile_loses_only_the_agentmem_entries() {
        let (t, st, exe) = setup();
        let f = t.path().join("gemini").join("settings.json");
        assert!(install(&st, "g", AgentCli::GeminiCli, &f, &exe).unwrap());
        let mut v: Value = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        assert!(v["hooks"]["AfterAgent"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .contains("state waiting_for_human"));
        v["theme"] = "dark".into();
        fs::write(&f, v.to_string()).unwrap();
        release(&st, "g").unwrap();
        let v: Value = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"theme": "dark"}));
    }

    #[test]
    fn a_file_created_for_hooks_is_removed() {
        let (t, st, exe) = setup();
        let f = t.path().join("new").join("settings.json");
        install(&st, "c", AgentCli::ClaudeCode, &f, &exe).unwrap();
        assert!(f.exists());
        release(&st, "c").unwrap();
        assert!(!f.exists());
    }

    #[test]
    fn codex_notify_goes_first_and_a_users_notify_is_respected() {
        let (t, st, exe) = setup();
        let f = t.path().join("config.toml");
        let user = "model = \"x\"\n\n[projects.\"/w\"]\ntrust_level = \"trusted\"\n";
        fs::write(&f, user).unwrap();
        assert!(install(&st, "x", AgentCli::Codex, &f, &exe).unwrap());
        let t2: toml::Table = toml::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
        let n: Vec<&str> = t2["notify"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(
            n,
            [
                "/opt/agent mem/agentmem",
                "state",
                "waiting_for_human",
                MARK
            ]
        );
        assert_eq!(
            t2["projects"]["/w"]["trust_level"].as_str(),
            Some("trusted")
        );
        // Changed meanwhile: only our line goes.
        let changed = fs::read_to_string(&f).unwrap() + "\n[analytics]\nenabled = false\n";
        fs::write(&f, &changed).unwrap();
        release(&st, "x").unwrap();
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            format!("{user}\n[analytics]\nenabled = false\n")
        );
        // A notify of the user's own: refused, file untouched.
        let own = "notify = [\"notify-send\", \"codex\"]\n";
        fs::write(&f, own).unwrap();
        assert!(install(&st, "y", AgentCli::Codex, &f, &exe).is_err());
        assert_eq!(fs::read_to_string(&f).unwrap(), own);
    }

    #[test]
    fn forgetting_an_agent_removes_its_hooks_and_then_the_hooks_dir() {
        let (t, st, exe) = setup();
        let f = t.path().join("settings.json");
        fs::write(&f, "{}").unwrap();
        install(&st, "gone", AgentCli::ClaudeCode, &f, &exe).unwrap();
        st.forget("gone");
        assert_eq!(fs::read_to_string(&f).unwrap(), "{}");
        assert!(hooks_dir(&st).exists());
        remove_dir_if_unused(&st);
        assert!(!hooks_dir(&st).exists());
    }

    #[test]
    fn broken_json_is_refused_untouched() {
        let (t, st, exe) = setup();
        let f = t.path().join("settings.json");
        fs::write(&f, "{not json").unwrap();
        assert!(install(&st, "z", AgentCli::ClaudeCode, &f, &exe).is_err());
        assert_eq!(fs::read_to_string(&f).unwrap(), "{not json");
    }
}
