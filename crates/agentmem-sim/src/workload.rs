//! The agent workload generator: replays real tool-calling conversations
//! (the shared tau2-bench ones) as many concurrent agent sessions and
//! records what an agent-aware store would see, as an agent-aware trace.
//!
//! # The model of an agent
//!
//! Each of `agents` agents runs `sessions_per_agent` conversations, one
//! after another, each drawn at random from the file; agents start at
//! uniformly spread times. A session walks its conversation's messages:
//!
//! - before each **assistant** message the agent calls its model: it reads
//!   its whole context (the domain's system prompt and tool definitions,
//!   shared by every agent of that domain, then every earlier message of
//!   the conversation, in order), waits for the model
//!   ([`AgentState::WaitingForModel`]) and appends the reply;
//! - each **tool** message is a tool run ([`AgentState::RunningTool`]) whose
//!   result is stored when the tool returns;
//! - each **user** message is a person answering
//!   ([`AgentState::WaitingForHuman`]); with probability
//!   `long_pause_probability` the person walks away and the wait is a long
//!   pause instead;
//! - between sessions the agent is [`AgentState::Idle`]; the finished
//!   conversation is never read again.
//!
//! Units are sized by their message's text (content plus tool calls), so
//! byte-sized caches see the real size mix. Every state change is written
//! as an [`Op::AgentState`] record.
//!
//! # Distributions (defaults; all log-normal, given as median and σ of the log)
//!
//! | what | median | σ | why |
//! |---|---|---|---|
//! | model latency | 3.9 s | 0.6 | fitted to the 804 `generation_time_seconds` in the shared conversations (median 3.85 s, 90th percentile 8.3 s) |
//! | tool time | 0.4 s | 1.0 | API lookups, mostly sub-second with a long tail |
//! | human think time | 20 s | 0.8 | reading a reply and typing one or two sentences |
//! | long pause (15% of human turns) | 20 min | 1.0 | the person left: meetings, lunch |
//! | gap between sessions | 5 min | 1.0 | the next task arrives |
//!
//! The normal samples come from a hand-written Box–Muller transform (four
//! lines) rather than the `rand_distr` crate, to keep the dependency list
//! short.

use std::io::{BufRead, BufReader};
use std::path::Path;

use agentmem_core::{AgentState, Kind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::trace::{Op, Record};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The agent's model.
    Assistant,
    /// The person.
    User,
    /// A tool's result.
    Tool,
}

/// A conversation reduced to what the generator needs.
#[derive(Clone, Debug)]
pub struct Conversation {
    /// Its id in the file.
    pub id: String,
    /// Domain index (airline 0, retail 1, telecom 2, other 3).
    pub domain: u8,
    /// Its messages: role and size in bytes.
    pub messages: Vec<(Role, u32)>,
}

/// Read conversations from a JSON-lines file (zstd-compressed if it ends in
/// `.zst`), one `{"conv": id, "messages": [{"role", "content",
/// "tool_calls", ...}]}` per line.
pub fn load_conversations(path: &Path) -> Result<Vec<Conversation>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("opening conversations", path, e))?;
    let reader: Box<dyn std::io::Read> = if path.to_string_lossy().ends_with(".zst") {
        Box::new(
            zstd::stream::read::Decoder::new(f)
                .map_err(|e| Error::io("opening conversations", path, e))?,
        )
    } else {
        Box::new(f)
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| Error::io("reading conversations", path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| Error::Malformed {
            path: path.into(),
            location: format!("line {}", n + 1),
            reason: why,
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let id = v["conv"].as_str().unwrap_or_default().to_string();
        let msgs = v["messages"]
            .as_array()
            .ok_or_else(|| bad("no \"messages\" array".into()))?;
        let text_len = |x: &serde_json::Value| match x {
            serde_json::Value::String(s) if s != "None" => s.len(),
            serde_json::Value::Null => 0,
            serde_json::Value::String(_) => 0,
            other => other.to_string().len(),
        };
        let messages = msgs
            .iter()
            .filter_map(|m| {
                let role = match m["role"].as_str()? {
                    "assistant" => Role::Assistant,
                    "user" => Role::User,
                    "tool" => Role::Tool,
                    _ => return None,
                };
                let size = text_len(&m["content"]) + text_len(&m["tool_calls"]);
                Some((role, size.clamp(1, u32::MAX as usize) as u32))
            })
            .collect();
        let domain = ["airline", "retail", "telecom"]
            .iter()
            .position(|d| id.contains(d))
            .unwrap_or(3) as u8;
        out.push(Conversation {
            id,
            domain,
            messages,
        });
    }
    if out.is_empty() {
        return Err(Error::Malformed {
            path: path.into(),
            location: "whole file".into(),
            reason: "no conversations".into(),
        });
    }
    Ok(out)
}

/// A log-normal distribution by its median (seconds) and the σ of its log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogNormal {
    /// Median, in seconds.
    pub median_s: f64,
    /// Standard deviation of the logarithm.
    pub sigma: f64,
}

impl LogNormal {
    fn sample_ns(&self, rng: &mut SmallRng) -> u64 {
        // Box–Muller: one standard normal from two uniforms.
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (self.median_s * (self.sigma * z).exp() * 1e9) as u64
    }
}

/// The generator's settings; see the [module docs](self) for the model.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent agents. Default: 200.
    pub agents: u32,
    /// Conversations each agent runs, one after another. Default: 3.
    pub sessions_per_agent: u32,
    /// Agents start uniformly within this many seconds. Default: 60.
    pub start_spread_s: f64,
    /// Model latency. Default: median 3.9 s, σ 0.6.
    pub model_latency: LogNormal,
    /// Tool run time. Default: median 0.4 s, σ 1.0.
    pub tool_time: LogNormal,
    /// A person's think time. Default: median 20 s, σ 0.8.
    pub think_time: LogNormal,
    /// Probability that a person's turn is a long pause. Default: 0.15.
    pub long_pause_probability: f64,
    /// A long pause. Default: median 1200 s, σ 1.0.
    pub long_pause: LogNormal,
    /// Idle time between an agent's sessions. Default: median 300 s, σ 1.0.
    pub between_sessions: LogNormal,
    /// Random seed. Default: 1.
    pub seed: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            agents: 200,
            sessions_per_agent: 3,
            start_spread_s: 60.0,
            model_latency: LogNormal {
                median_s: 3.9,
                sigma: 0.6,
            },
            tool_time: LogNormal {
                median_s: 0.4,
                sigma: 1.0,
            },
            think_time: LogNormal {
                median_s: 20.0,
                sigma: 0.8,
            },
            long_pause_probability: 0.15,
            long_pause: LogNormal {
                median_s: 1200.0,
                sigma: 1.0,
            },
            between_sessions: LogNormal {
                median_s: 300.0,
                sigma: 1.0,
            },
            seed: 1,
        }
    }
}

/// Sizes of the shared units per domain: the system prompts are the sizes
/// of the shared tau2 policy documents (airline 7.7 KB, retail 23 KB;
/// telecom and others assumed 15 KB); tool definitions are assumed 8 KB.
const SYSTEM_PROMPT_BYTES: [u32; 4] = [7_700, 23_000, 15_000, 15_000];
const TOOL_DEFS_BYTES: u32 = 8_000;
/// Gap between consecutive reads of one model call.
const READ_GAP_NS: u64 = 1_000;

struct Session {
    conv: usize,
    next_msg: usize,
    generating: bool,
    /// (object, size, kind) of the messages so far.
    units: Vec<(u64, u32, Kind)>,
}

struct Gen<'a> {
    cfg: &'a WorkloadConfig,
    convs: &'a [Conversation],
    rng: SmallRng,
    out: Vec<Record>,
    next_obj: u64,
}

impl Gen<'_> {
    fn emit(&mut self, t: u64, agent: u32, unit: (u64, u32, Kind), op: Op, st: AgentState) {
        let (obj, size, kind) = unit;
        self.out.push(Record {
            time: t,
            obj,
            size,
            agent,
            kind,
            op,
            state: st,
        });
    }

    fn state(&mut self, t: u64, agent: u32, st: AgentState) {
        self.emit(t, agent, (0, 0, Kind::Blob), Op::AgentState, st);
    }

    fn shared_obj(domain: u8, which: u64) -> u64 {
        // High ids that per-message counters never reach.
        (1 << 62) | (u64::from(domain) << 8) | which
    }

    /// Run `agent`'s session from `t` until it must wait; returns when to
    /// continue, or `None` when the session is over.
    fn step(&mut self, agent: u32, s: &mut Session, mut t: u64) -> Option<u64> {
        let conv = &self.convs[s.conv];
        let domain = conv.domain;
        loop {
            let &(role, size) = conv.messages.get(s.next_msg)?;
            match role {
                Role::Assistant if !s.generating => {
                    self.state(t, agent, AgentState::Active);
                    let sys = Self::shared_obj(domain, 0);
                    let tools = Self::shared_obj(domain, 1);
                    let st = AgentState::Active;
                    self.emit(
                        t,
                        agent,
                        (
                            sys,
                            SYSTEM_PROMPT_BYTES[domain as usize],
                            Kind::SystemPrompt,
                        ),
                        Op::Get,
                        st,
                    );
                    t += READ_GAP_NS;
                    self.emit(
                        t,
                        agent,
                        (tools, TOOL_DEFS_BYTES, Kind::ToolDefs),
                        Op::Get,
                        st,
                    );
                    for &(o, sz, k) in &s.units {
                        t += READ_GAP_NS;
                        self.emit(t, agent, (o, sz, k), Op::Get, st);
                    }
                    t += READ_GAP_NS;
                    self.state(t, agent, AgentState::WaitingForModel);
                    s.generating = true;
                    return Some(t + self.cfg.model_latency.sample_ns(&mut self.rng));
                }
                _ => {
                    s.generating = false;
                    let kind = if role == Role::Tool {
                        Kind::ToolResult
                    } else {
                        Kind::Conversation
                    };
                    let op = if role == Role::Tool {
                        Op::Put
                    } else {
                        Op::Append
                    };
                    self.state(t, agent, AgentState::Active);
                    let o = self.next_obj;
                    self.next_obj += 1;
                    self.emit(t, agent, (o, size, kind), op, AgentState::Active);
                    s.units.push((o, size, kind));
                    s.next_msg += 1;
                    t += READ_GAP_NS;
                    match conv.messages.get(s.next_msg).map(|m| m.0) {
                        Some(Role::Tool) => {
                            self.state(t, agent, AgentState::RunningTool);
                            return Some(t + self.cfg.tool_time.sample_ns(&mut self.rng));
                        }
                        Some(Role::User) => {
                            self.state(t, agent, AgentState::WaitingForHuman);
                            let long = self
                                .rng
                                .random_bool(self.cfg.long_pause_probability.clamp(0.0, 1.0));
                            let d = if long {
                                self.cfg.long_pause.sample_ns(&mut self.rng)
                            } else {
                                self.cfg.think_time.sample_ns(&mut self.rng)
                            };
                            return Some(t + d);
                        }
                        Some(Role::Assistant) => continue,
                        None => return None,
                    }
                }
            }
        }
    }
}

/// Generate an agent-aware trace, in time order.
pub fn generate(convs: &[Conversation], cfg: &WorkloadConfig) -> Vec<Record> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut g = Gen {
        cfg,
        convs,
        rng: SmallRng::seed_from_u64(cfg.seed),
        out: Vec::new(),
        next_obj: 1,
    };
    if convs.is_empty() {
        return Vec::new();
    }
    let mut sessions: Vec<Option<Session>> = (0..cfg.agents).map(|_| None).collect();
    let mut done: Vec<u32> = vec![0; cfg.agents as usize];
    let mut heap = BinaryHeap::new();
    for a in 0..cfg.agents {
        let t = (g.rng.random_range(0.0..1.0) * cfg.start_spread_s.max(0.0) * 1e9) as u64;
        heap.push(Reverse((t, a)));
    }
    while let Some(Reverse((t, a))) = heap.pop() {
        let ai = a as usize;
        let mut s = match sessions[ai].take() {
            Some(s) => s,
            None => {
                if done[ai] >= cfg.sessions_per_agent {
                    continue;
                }
                Session {
                    conv: g.rng.random_range(0..convs.len()),
                    next_msg: 0,
                    generating: false,
                    units: Vec::new(),
                }
            }
        };
        match g.step(a, &mut s, t) {
            Some(next) => {
                sessions[ai] = Some(s);
                heap.push(Reverse((next, a)));
            }
            None => {
                done[ai] += 1;
                let end = t + READ_GAP_NS;
                g.state(end, a, AgentState::Idle);
                if done[ai] < cfg.sessions_per_agent {
                    heap.push(Reverse((
                        end + cfg.between_sessions.sample_ns(&mut g.rng),
                        a,
                    )));
                }
            }
        }
    }
    // Each step writes a few microseconds of records at once; interleave
    // the agents' records by time (stable, so each agent keeps its order).
    g.out.sort_by_key(|r| r.time);
    g.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(roles: &[Role]) -> Conversation {
        Conversation {
            id: "x_airline".into(),
            domain: 0,
            messages: roles.iter().map(|&r| (r, 100)).collect(),
        }
    }

    #[test]
    fn a_session_reads_its_whole_context_before_each_model_call() {
        use Role::*;
        let convs = vec![conv(&[Assistant, User, Assistant, Tool, Assistant])];
        let cfg = WorkloadConfig {
            agents: 1,
            sessions_per_agent: 1,
            ..Default::default()
        };
        let recs = generate(&convs, &cfg);
        let reqs: Vec<&Record> = recs.iter().filter(|r| r.op.is_request()).collect();
        // 3 model calls read 2, 4 (sys, tools, a0, u1) and 6 units;
        // 5 messages are written.
        let gets = reqs.iter().filter(|r| r.op == Op::Get).count();
        assert_eq!(gets, 2 + 4 + 6);
        assert_eq!(reqs.len(), gets + 5);
        assert!(recs.windows(2).all(|w| w[0].time <= w[1].time));
        let states: Vec<AgentState> = recs
            .iter()
            .filter(|r| r.op == Op::AgentState)
            .map(|r| r.state)
            .collect();
        assert!(states.contains(&AgentState::WaitingForHuman));
        assert!(states.contains(&AgentState::RunningTool));
        assert_eq!(states.last(), Some(&AgentState::Idle));
    }

    #[test]
    fn log_normal_median_is_close() {
        let mut rng = SmallRng::seed_from_u64(1);
        let d = LogNormal {
            median_s: 2.0,
            sigma: 0.7,
        };
        let mut v: Vec<u64> = (0..20_001).map(|_| d.sample_ns(&mut rng)).collect();
        v.sort_unstable();
        let median = v[10_000] as f64 / 1e9;
        assert!((median - 2.0).abs() < 0.1, "{median}");
    }
}
