//! Recorded trajectories: real conversations cut into person turns and model steps.
//!
//! The data is the project's conversation format (`{"conv", "messages"}` per
//! line, zstd-compressed JSON lines; see `data/sample/README.md`). A person
//! turn is a user message and every assistant message after it up to the next
//! user message; each assistant message is one model *step*, and its recorded
//! tool calls become [`Action`]s on a scratch repository.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// What a replayed tool call does in the agent's scratch repository.
///
/// Recorded calls come from customer-service domains (airline, retail,
/// telecom); each is mapped onto one of the four things every coding CLI
/// can do, so that the CLI really executes a tool and gets output back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// List the working directory.
    ListDir,
    /// Read a file, relative to the working directory.
    ReadFile { path: String },
    /// Run a shell command in the working directory.
    Shell { command: String },
    /// Write `content` to a new file, relative to the working directory.
    WriteFile { path: String, content: String },
}

/// One model answer: text, then zero or more tool calls.
#[derive(Debug, Clone)]
pub struct Step {
    /// The assistant's text (may be empty when it only calls tools).
    pub text: String,
    /// Tool calls, in order; the recorded call name is kept for the log.
    pub calls: Vec<(String, Action)>,
    /// Output tokens the model produced for this step (recorded, or
    /// estimated at four characters a token).
    pub output_tokens: u32,
}

/// One person message and the model steps that answered it; the last step
/// has no tool calls, so the turn ends with a text answer.
#[derive(Debug, Clone)]
pub struct PersonTurn {
    /// What the person typed.
    pub person: String,
    /// The model's answers, the last one text only.
    pub steps: Vec<Step>,
}

/// A whole recorded conversation.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// The conversation's id in the data set.
    pub id: String,
    /// Person turns, in order.
    pub turns: Vec<PersonTurn>,
}

/// Every trajectory of a data directory, with an index by first person message.
#[derive(Debug)]
pub struct Library {
    trajectories: Vec<Trajectory>,
    by_first_person: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct RawConversation {
    conv: String,
    messages: Vec<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<RawCall>>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct RawCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    completion_tokens: Option<u32>,
}

/// Collapses runs of whitespace so that text typed into a terminal (where
/// newlines become spaces) still matches the recorded message.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Library {
    /// Loads `*.jsonl.zst` and `*.jsonl` files: `path` may be one such file,
    /// a directory of them, or a data directory with a `conversations/` folder.
    pub fn load(path: &Path) -> Result<Library, Error> {
        let files = conversation_files(path)?;
        if files.is_empty() {
            return Err(Error::NoData(path.to_path_buf()));
        }
        let mut trajectories = Vec::new();
        for file in files {
            let opened = std::fs::File::open(&file).map_err(|e| Error::Io(file.clone(), e))?;
            let reader: Box<dyn BufRead> = if file.extension().is_some_and(|e| e == "zst") {
                let dec = zstd::Decoder::new(opened).map_err(|e| Error::Io(file.clone(), e))?;
                Box::new(BufReader::new(dec))
            } else {
                Box::new(BufReader::new(opened))
            };
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| Error::Io(file.clone(), e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let raw: RawConversation =
                    serde_json::from_str(&line).map_err(|e| Error::Parse {
                        file: file.clone(),
                        line: n + 1,
                        source: e,
                    })?;
                let t = Trajectory::from_raw(raw);
                if !t.turns.is_empty() {
                    trajectories.push(t);
                }
            }
        }
        Library::from_trajectories(trajectories).ok_or_else(|| Error::NoData(path.to_path_buf()))
    }

    /// Builds a library from trajectories already in memory (tests, tools);
    /// `None` when there is no trajectory with a person turn to replay.
    pub fn from_trajectories(mut trajectories: Vec<Trajectory>) -> Option<Library> {
        trajectories.retain(|t| !t.turns.is_empty());
        if trajectories.is_empty() {
            return None;
        }
        let mut by_first_person = HashMap::new();
        for (i, t) in trajectories.iter().enumerate() {
            by_first_person
                .entry(normalize(&t.turns[0].person))
                .or_insert(i);
        }
        Some(Library {
            trajectories,
            by_first_person,
        })
    }

    /// All trajectories, in file order.
    pub fn trajectories(&self) -> &[Trajectory] {
        &self.trajectories
    }

    /// The trajectory whose first person message is exactly `text`
    /// (whitespace-normalised), if any.
    pub fn find_by_first_person(&self, text: &str) -> Option<usize> {
        self.by_first_person.get(&normalize(text)).copied()
    }
}

fn conversation_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = if path.join("conversations").is_dir() {
        path.join("conversations")
    } else {
        path.to_path_buf()
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::Io(dir.clone(), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".jsonl.zst") || name.ends_with(".jsonl")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Recorded tool names that only look things up become reads; the rest
/// (book, cancel, update, ...) change state and become file writes that keep
/// the recorded result, so the CLI's conversation grows by real-sized outputs.
fn is_lookup(name: &str) -> bool {
    const READS: [&str; 8] = [
        "get_",
        "list_",
        "search_",
        "find_",
        "check_",
        "calculate",
        "think",
        "lookup",
    ];
    READS.iter().any(|p| name.starts_with(p))
}

fn shell_word(value: &serde_json::Value) -> String {
    let raw = match value {
        serde_json::Value::Object(m) => m.values().next().map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        _ => None,
    }
    .unwrap_or_default();
    let word: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(40)
        .collect();
    if word.is_empty() {
        "replay".to_owned()
    } else {
        word
    }
}

fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len() / 4).unwrap_or(u32::MAX).max(1)
}

impl Trajectory {
    fn from_raw(raw: RawConversation) -> Trajectory {
        let results: HashMap<String, String> = raw
            .messages
            .iter()
            .filter(|m| m.role == "tool")
            .filter_map(|m| Some((m.id.clone()?, m.content.clone().unwrap_or_default())))
            .collect();
        let mut turns: Vec<PersonTurn> = Vec::new();
        let mut last_written: Option<String> = None;
        let mut call_no = 0usize;
        for m in &raw.messages {
            match m.role.as_str() {
                "user" => turns.push(PersonTurn {
                    person: m.content.clone().unwrap_or_default(),
                    steps: Vec::new(),
                }),
                "assistant" => {
                    // The greeting before the first person message has no
                    // request to answer; it is dropped.
                    let Some(turn) = turns.last_mut() else {
                        continue;
                    };
                    let text = m.content.clone().unwrap_or_default();
                    let mut calls = Vec::new();
                    let mut call_chars = 0;
                    for c in m.tool_calls.iter().flatten() {
                        call_no += 1;
                        let result =
                            c.id.as_ref()
                                .and_then(|id| results.get(id))
                                .cloned()
                                .unwrap_or_default();
                        call_chars += c.arguments.to_string().len();
                        let action = if is_lookup(&c.name) {
                            match call_no % 3 {
                                0 => Action::ListDir,
                                1 => Action::ReadFile {
                                    path: last_written
                                        .clone()
                                        .unwrap_or_else(|| "README.md".to_owned()),
                                },
                                _ => Action::Shell {
                                    command: format!(
                                        "grep -rn -- '{}' . | head -n 20; echo {}",
                                        shell_word(&c.arguments),
                                        c.name
                                    ),
                                },
                            }
                        } else {
                            let path = format!("replay/{call_no:03}-{}.json", c.name);
                            last_written = Some(path.clone());
                            Action::WriteFile {
                                path,
                                content: format!(
                                    "{{\"call\": \"{}\", \"arguments\": {}, \"result\": {}}}\n",
                                    c.name,
                                    c.arguments,
                                    serde_json::Value::String(result)
                                ),
                            }
                        };
                        calls.push((c.name.clone(), action));
                    }
                    if text.trim().is_empty() && calls.is_empty() {
                        continue;
                    }
                    let output_tokens = m
                        .usage
                        .as_ref()
                        .and_then(|u| u.completion_tokens)
                        .filter(|t| *t > 0)
                        .unwrap_or_else(|| estimate_tokens(&text) + (call_chars / 4) as u32);
                    turn.steps.push(Step {
                        text,
                        calls,
                        output_tokens,
                    });
                }
                _ => {}
            }
        }
        for turn in &mut turns {
            if turn.steps.last().is_none_or(|s| !s.calls.is_empty()) {
                // The recording ended the turn on a tool call (or never
                // answered); close it with text so the CLI's turn ends.
                let text = "Done.".to_owned();
                turn.steps.push(Step {
                    output_tokens: estimate_tokens(&text),
                    text,
                    calls: Vec::new(),
                });
            }
        }
        turns.retain(|t| !t.person.trim().is_empty());
        Trajectory {
            id: raw.conv,
            turns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(json: &str) -> Trajectory {
        Trajectory::from_raw(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn turns_end_with_text_and_calls_map_to_actions() {
        let t = conv(
            r#"{"conv":"c1","messages":[
            {"role":"assistant","content":"Hi!"},
            {"role":"user","content":"Cancel  my\nbooking"},
            {"role":"assistant","content":"Checking.","tool_calls":[{"id":"a","name":"get_reservation","arguments":{"id":"X1"}}]},
            {"role":"tool","id":"a","content":"{\"ok\":1}"},
            {"role":"assistant","content":"","tool_calls":[{"id":"b","name":"cancel_reservation","arguments":{"id":"X1"}}]},
            {"role":"tool","id":"b","content":"cancelled"},
            {"role":"user","content":"thanks"},
            {"role":"assistant","content":"Bye","usage":{"completion_tokens":7}}]}"#,
        );
        assert_eq!(t.turns.len(), 2);
        let first = &t.turns[0];
        assert_eq!(first.steps.len(), 3, "two tool steps and a closing text");
        assert!(matches!(first.steps[0].calls[0].1, Action::ReadFile { .. }));
        match &first.steps[1].calls[0].1 {
            Action::WriteFile { path, content } => {
                assert_eq!(path, "replay/002-cancel_reservation.json");
                assert!(content.contains("cancelled"), "{content}");
            }
            other => panic!("expected a write, got {other:?}"),
        }
        assert!(first.steps[2].calls.is_empty());
        assert_eq!(t.turns[1].steps[0].output_tokens, 7);
        let lib = Library::from_trajectories(vec![t]).unwrap();
        assert_eq!(lib.find_by_first_person("Cancel my booking"), Some(0));
        assert_eq!(lib.find_by_first_person("Cancel"), None);
    }

    #[test]
    fn bundled_sample_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample");
        let lib = Library::load(&dir).unwrap();
        assert!(lib.trajectories().len() >= 100);
        let calls: usize = lib
            .trajectories()
            .iter()
            .flat_map(|t| &t.turns)
            .flat_map(|t| &t.steps)
            .map(|s| s.calls.len())
            .sum();
        assert!(calls > 500, "{calls} tool calls");
    }
}
