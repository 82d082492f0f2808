//! From a request's conversation to the recorded answer for that point.
//!
//! The server keeps no per-session state: every request carries the whole
//! conversation, so the position in the trajectory is recomputed from it —
//! the number of person turns so far and the number of model answers since
//! the last one. A CLI that retries, forks or restarts gets the same answer
//! for the same conversation, and many sessions cost nothing between turns.

use std::time::Duration;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use crate::tools::{ToolCall, ToolSet};
use crate::trajectory::{normalize, Library};

/// One item of a conversation, as every API reduces to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message the person (or the CLI on their behalf) wrote: its text parts.
    Person(Vec<String>),
    /// A model answer (text and/or tool calls).
    Model,
    /// Tool results sent back to the model.
    ToolResult,
}

/// Where a request stands in its conversation.
#[derive(Debug, Clone, Default)]
pub struct Position {
    /// Text parts of the first person message (the session key).
    pub first_person: Vec<String>,
    /// Person turns so far, the current one included.
    pub person_turns: usize,
    /// Model answers since the current person turn began.
    pub steps: usize,
}

impl Position {
    /// Consecutive person items form one turn (CLIs send context, instructions
    /// and the typed prompt as separate user messages); consecutive model
    /// items form one answer (the Responses API lists text and each function
    /// call as separate items).
    pub fn from_items(items: &[Item]) -> Position {
        let mut pos = Position::default();
        let mut prev: Option<&Item> = None;
        for item in items {
            match item {
                Item::Person(texts) => {
                    if !matches!(prev, Some(Item::Person(_))) {
                        pos.person_turns += 1;
                        pos.steps = 0;
                    }
                    if pos.person_turns == 1 {
                        pos.first_person.extend(texts.iter().cloned());
                    }
                }
                Item::Model => {
                    if !matches!(prev, Some(Item::Model)) && pos.person_turns > 0 {
                        pos.steps += 1;
                    }
                }
                Item::ToolResult => {}
            }
            prev = Some(item);
        }
        pos
    }
}

/// Model latency: time to first token and output speed, each log-normal.
///
/// Defaults come from the 804 assistant messages of `tau2_dev` that record
/// both `generation_time_seconds` and `completion_tokens` (Claude Opus 4.6
/// runs): a least-squares fit of generation time on output tokens gives an
/// intercept of 1.57 s (time to first token) and 0.0209 s per token (48
/// tokens/s); the per-message rates spread p10–p90 19–40 tokens/s, a
/// log-normal sigma of about 0.27.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median time to first token, seconds. Default: 1.57.
    pub ttft_median_s: f64,
    /// Log-normal sigma of the time to first token. Default: 0.3.
    pub ttft_sigma: f64,
    /// Median output speed, tokens per second. Default: 48.
    pub tokens_per_s_median: f64,
    /// Log-normal sigma of the output speed. Default: 0.27.
    pub tokens_per_s_sigma: f64,
    /// Multiplies every delay; 0 answers at once (tests). Default: 1.
    pub scale: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            ttft_median_s: 1.57,
            ttft_sigma: 0.3,
            tokens_per_s_median: 48.0,
            tokens_per_s_sigma: 0.27,
            scale: 1.0,
        }
    }
}

/// How to pace one streamed answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// Before the first event.
    pub first_token: Duration,
    /// Per output token after that.
    pub per_token: Duration,
}

impl Latency {
    /// Samples the pacing of one answer; `rng` is seeded by the answer's
    /// position so a replay is reproducible.
    pub fn sample(&self, rng: &mut SmallRng) -> Pacing {
        if self.scale <= 0.0 {
            return Pacing {
                first_token: Duration::ZERO,
                per_token: Duration::ZERO,
            };
        }
        let ttft = LogNormal::new(self.ttft_median_s.max(1e-6).ln(), self.ttft_sigma.max(0.0))
            .map(|d| d.sample(rng))
            .unwrap_or(self.ttft_median_s);
        let tps = LogNormal::new(
            self.tokens_per_s_median.max(1e-6).ln(),
            self.tokens_per_s_sigma.max(0.0),
        )
        .map(|d| d.sample(rng))
        .unwrap_or(self.tokens_per_s_median);
        Pacing {
            first_token: Duration::from_secs_f64((ttft * self.scale).min(600.0)),
            per_token: Duration::from_secs_f64((self.scale / tps.max(0.1)).min(10.0)),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Index of the trajectory in the library.
    pub trajectory: usize,
    /// Person turn (0-based) and model step within it.
    pub turn: usize,
    pub step: usize,
    /// Text to stream (may be empty when there are tool calls).
    pub text: String,
    /// Tool calls to make; empty ends the model's turn.
    pub calls: Vec<ToolCall>,
    /// Output tokens to charge for pacing and usage.
    pub output_tokens: u32,
    /// The recorded conversation had nothing more for this point.
    pub exhausted: bool,
    /// How to pace it.
    pub pacing: Pacing,
}

/// Answers requests from a library of trajectories.
#[derive(Debug)]
pub struct Replayer {
    library: Library,
    seed: u64,
    latency: Latency,
}

impl Replayer {
    /// `seed` picks trajectories for sessions whose first message is not a
    /// recorded one. Default latency: [`Latency::default`].
    pub fn new(library: Library, seed: u64, latency: Latency) -> Replayer {
        Replayer {
            library,
            seed,
            latency,
        }
    }

    /// The library answers come from.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Which trajectory a session replays: the recorded conversation whose
    /// first person message the person typed, else one chosen by hashing the
    /// first message (or `session_key`, when the client sent one) with the seed.
    pub fn pick(&self, pos: &Position, session_key: Option<&str>) -> usize {
        if let Some(i) = pos
            .first_person
            .iter()
            .find_map(|t| self.library.find_by_first_person(t))
        {
            return i;
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.seed.to_le_bytes());
        match session_key {
            Some(k) => {
                h.update(k.as_bytes());
            }
            None => {
                for t in &pos.first_person {
                    h.update(normalize(t).as_bytes());
                    h.update(&[0]);
                }
            }
        }
        let n = self.library.trajectories().len() as u64;
        let v = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
        (v % n) as usize
    }

    /// The recorded answer for `pos`, its tool calls rendered onto `tools`.
    pub fn answer(&self, pos: &Position, tools: &ToolSet, session_key: Option<&str>) -> Answer {
        let trajectory = self.pick(pos, session_key);
        let t = &self.library.trajectories()[trajectory];
        let turn = pos.person_turns.saturating_sub(1);
        let step = pos.steps;
        let mut rng = SmallRng::seed_from_u64(
            self.seed ^ ((trajectory as u64) << 32) ^ ((turn as u64) << 16) ^ step as u64,
        );
        let pacing = self.latency.sample(&mut rng);
        let recorded = t.turns.get(turn).and_then(|pt| pt.steps.get(step));
        let Some(recorded) = recorded else {
            let text = if turn >= t.turns.len() {
                "This recorded conversation has ended; there is nothing more to replay."
            } else {
                "Done."
            };
            return Answer {
                trajectory,
                turn,
                step,
                text: text.to_owned(),
                calls: Vec::new(),
                output_tokens: (text.len() / 4) as u32,
                exhausted: true,
                pacing,
            };
        };
        let calls: Vec<ToolCall> = recorded
            .calls
            .iter()
            .enumerate()
            .filter_map(|(i, (_, action))| {
                let id = format!("{trajectory}_{turn}_{step}_{i}_{:04x}", rng.random::<u16>());
                tools.render(action, id)
            })
            .collect();
        let mut text = recorded.text.clone();
        if text.trim().is_empty() && calls.is_empty() {
            // Tools were recorded but the CLI declared none that fit (a side
            // request such as title generation): say what would have run.
            text = recorded
                .calls
                .iter()
                .map(|(name, _)| format!("(recorded call: {name})"))
                .collect::<Vec<_>>()
                .join(" ");
        }
        Answer {
            trajectory,
            turn,
            step,
            text,
            calls,
            output_tokens: recorded.output_tokens,
            exhausted: false,
            pacing,
        }
    }
}

/// Splits text into stream chunks of a few words each, at most `max`.
pub fn chunks(text: &str, max: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let per = words.len().div_ceil(max.max(1)).max(4);
    words.chunks(per).map(|c| c.concat()).collect()
}

/// Finds the working directory a CLI states in its prompt.
pub fn find_cwd(text: &str) -> Option<String> {
    const MARKERS: [&str; 5] = [
        "Primary working directory: ",
        "Working directory: ",
        "<cwd>",
        "I'm currently working in the directory: ",
        "Current working directory: ",
    ];
    for m in MARKERS {
        if let Some(i) = text.find(m) {
            let rest = &text[i + m.len()..];
            let end = rest.find(['<', '\n', '\r', '`']).unwrap_or(rest.len());
            let path = rest[..end].trim();
            if path.starts_with('/') {
                return Some(path.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_turns_and_answers() {
        use Item::*;
        let p = |s: &str| Person(vec![s.to_owned()]);
        let pos = Position::from_items(&[
            p("ctx"),
            p("hello"),
            Model,
            ToolResult,
            Model,
            Model,
            ToolResult,
        ]);
        assert_eq!((pos.person_turns, pos.steps), (1, 2));
        assert_eq!(pos.first_person, vec!["ctx", "hello"]);
        let pos = Position::from_items(&[p("a"), Model, p("b")]);
        assert_eq!((pos.person_turns, pos.steps), (2, 0));
    }

    #[test]
    fn chunks_keep_all_text() {
        let t = "one two three four five six seven eight nine ten";
        let c = chunks(t, 2);
        assert_eq!(c.concat(), t);
        assert!(c.len() <= 3);
        assert!(chunks("", 4).is_empty());
    }

    #[test]
    fn cwd_from_each_cli_prompt() {
        assert_eq!(
            find_cwd("<env>\nWorking directory: /tmp/a b\nIs").as_deref(),
            Some("/tmp/a b")
        );
        assert_eq!(find_cwd("<cwd>/w/x</cwd>").as_deref(), Some("/w/x"));
        assert_eq!(
            find_cwd(" - Primary working directory: /tmp/w\n - Is a git").as_deref(),
            Some("/tmp/w")
        );
        assert_eq!(find_cwd("no cwd here"), None);
    }

    #[test]
    fn pacing_is_zero_when_scaled_off_and_positive_otherwise() {
        let mut rng = SmallRng::seed_from_u64(1);
        let off = Latency {
            scale: 0.0,
            ..Latency::default()
        };
        assert_eq!(off.sample(&mut rng).first_token, Duration::ZERO);
        let on = Latency::default().sample(&mut rng);
        assert!(on.first_token > Duration::from_millis(100));
        assert!(on.per_token > Duration::ZERO);
    }
}
