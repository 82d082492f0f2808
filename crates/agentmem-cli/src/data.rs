//! Loading a data directory of real agent data (the layout of the shared
//! data set and of `data/sample/`):
//!
//! - `conversations/*.jsonl` or `*.jsonl.zst`: one `{"conv": id,
//!   "messages": [...]}` per line;
//! - `prompts/system_prompt_variants.json[.zst]`: `[{"variant","text"}]`;
//! - `prompts/tool_declarations.json[.zst]`: `{family: [tool, ...]}`;
//!
//! (`prompts/tau2_policies.json`, present in the shared data, is not used:
//! each simulated agent gets a coding-agent system prompt variant, so that
//! the system-prompt figures measure near-duplicate storage of the variants.)
//!
//! Every error names the file and, for JSON lines, the line.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One real conversation: each message as the compact JSON an agent
/// runtime would hold and send.
#[derive(Debug)]
pub struct Conversation {
    /// Its id in the source data.
    #[allow(dead_code)]
    pub id: String,
    /// The role of each message (`user`, `assistant`, `tool`, ...).
    pub roles: Vec<String>,
    /// Each message, serialized.
    pub messages: Vec<String>,
}

/// Everything loaded from a data directory.
#[derive(Debug)]
pub struct Corpus {
    /// Where it came from.
    pub dir: PathBuf,
    pub conversations: Vec<Conversation>,
    /// System prompt variants.
    pub prompts: Vec<String>,
    /// Tool declaration sets, one serialized JSON array per model family.
    pub tool_sets: Vec<String>,
}

/// The sample bundled with the repository, located from the binary's build
/// directory or the current directory.
pub fn bundled_sample() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/sample"),
        PathBuf::from("data/sample"),
    ];
    candidates
        .iter()
        .find(|p| p.join("conversations").is_dir())
        .cloned()
        .context("the bundled sample data (data/sample in the repository) was not found; pass --data DIR")
}

fn open(path: &Path) -> Result<Box<dyn Read>> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "zst") {
        Ok(Box::new(zstd::stream::read::Decoder::new(f).with_context(
            || format!("reading zstd file {}", path.display()),
        )?))
    } else {
        Ok(Box::new(f))
    }
}

/// `dir/name` or `dir/name.zst`, whichever exists.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = dir.join(name);
    let zst = dir.join(format!("{name}.zst"));
    [plain, zst].into_iter().find(|p| p.is_file())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let mut s = String::new();
    open(path)?
        .read_to_string(&mut s)
        .with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&s)
        .with_context(|| format!("{} is not valid JSON of the expected shape", path.display()))
}

#[derive(Deserialize)]
struct Variant {
    text: String,
}

#[derive(Deserialize)]
struct RawConversation {
    conv: serde_json::Value,
    messages: Vec<serde_json::Value>,
}

/// Load a data directory.
pub fn load(dir: &Path) -> Result<Corpus> {
    if !dir.is_dir() {
        bail!("data directory {} does not exist", dir.display());
    }
    let conv_dir = dir.join("conversations");
    let mut files: Vec<PathBuf> = fs::read_dir(&conv_dir)
        .with_context(|| format!("listing {}", conv_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".jsonl") || n.ends_with(".jsonl.zst")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{} holds no *.jsonl or *.jsonl.zst file",
            conv_dir.display()
        );
    }
    let mut conversations = Vec::new();
    for path in &files {
        let reader = BufReader::new(open(path)?);
        for (i, line) in reader.lines().enumerate() {
            let line =
                line.with_context(|| format!("{}: line {}: unreadable", path.display(), i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let raw: RawConversation = serde_json::from_str(&line).with_context(|| {
                format!(
                    "{}: line {}: expected {{\"conv\": id, \"messages\": [...]}}",
                    path.display(),
                    i + 1
                )
            })?;
            if raw.messages.is_empty() {
                continue;
            }
            let roles = raw
                .messages
                .iter()
                .map(|m| {
                    m.get("role")
                        .and_then(|r| r.as_str())
                        .unwrap_or("unknown")
                        .to_string()
                })
                .collect();
            let messages = raw
                .messages
                .iter()
                .map(|m| serde_json::to_string(m).expect("a parsed value serializes"))
                .collect();
            conversations.push(Conversation {
                id: match raw.conv {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                },
                roles,
                messages,
            });
        }
    }
    let prompts_dir = dir.join("prompts");
    let variants_path = find(&prompts_dir, "system_prompt_variants.json").with_context(|| {
        format!(
            "{}/system_prompt_variants.json is missing",
            prompts_dir.display()
        )
    })?;
    let variants: Vec<Variant> = read_json(&variants_path)?;
    if variants.is_empty() {
        bail!("{} lists no variant", variants_path.display());
    }
    let tools_path = find(&prompts_dir, "tool_declarations.json").with_context(|| {
        format!(
            "{}/tool_declarations.json is missing",
            prompts_dir.display()
        )
    })?;
    let families: std::collections::BTreeMap<String, serde_json::Value> = read_json(&tools_path)?;
    if families.is_empty() {
        bail!("{} lists no tool family", tools_path.display());
    }
    Ok(Corpus {
        dir: dir.to_path_buf(),
        conversations,
        prompts: variants.into_iter().map(|v| v.text).collect(),
        tool_sets: families.values().map(|v| v.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_sample_loads() {
        let c = load(&bundled_sample().unwrap()).unwrap();
        assert!(c.conversations.len() >= 100);
        assert_eq!(c.prompts.len(), 29);
        assert_eq!(c.tool_sets.len(), 2);
    }

    #[test]
    fn malformed_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("conversations")).unwrap();
        fs::create_dir_all(dir.path().join("prompts")).unwrap();
        fs::write(
            dir.path().join("conversations/a.jsonl"),
            "{\"conv\":1,\"messages\":[{\"role\":\"user\"}]}\n{not json\n",
        )
        .unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(e.contains("a.jsonl: line 2"), "{e}");
        fs::write(
            dir.path().join("conversations/a.jsonl"),
            "{\"conv\":1,\"messages\":[{\"role\":\"user\"}]}\n",
        )
        .unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(e.contains("system_prompt_variants.json is missing"), "{e}");
        let e = format!("{:#}", load(&dir.path().join("nope")).unwrap_err());
        assert!(e.contains("does not exist"), "{e}");
    }
}
