//! Turning an [`Action`] into a call of a tool the requesting CLI declared.
//!
//! Each CLI names its tools differently (Claude Code `Read`/`Bash`/`Glob`/
//! `Write`, Gemini CLI `read_file`/`run_shell_command`/`list_directory`/
//! `write_file`, Codex `shell`/`exec_command`); the request carries the
//! declarations, so the server picks the first matching name it finds and
//! falls back to the CLI's shell tool.

use serde_json::{json, Value};

use crate::trajectory::Action;

/// A tool call ready to be encoded for any API.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Unique per answer.
    pub id: String,
    /// A tool name from the request's declarations.
    pub name: String,
    /// Arguments matching that tool's schema.
    pub arguments: Value,
}

/// The tool names a request declared and the working directory it gave.
#[derive(Debug, Default, Clone)]
pub struct ToolSet {
    /// Declared tool names, in request order.
    pub names: Vec<String>,
    /// The CLI's working directory, when the request states it (Claude
    /// Code's `Read` and `Write` need absolute paths).
    pub cwd: Option<String>,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl ToolSet {
    fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn absolute(&self, path: &str) -> Option<String> {
        self.cwd
            .as_ref()
            .map(|cwd| format!("{}/{}", cwd.trim_end_matches('/'), path))
    }

    /// The call for `action`, or `None` when the request declared no tool
    /// that can do it (the answer then carries text only).
    pub fn render(&self, action: &Action, id: String) -> Option<ToolCall> {
        let call = |name: &str, arguments: Value| {
            Some(ToolCall {
                id: id.clone(),
                name: name.to_owned(),
                arguments,
            })
        };
        match action {
            Action::ListDir => {
                if self.has("Glob") {
                    return call("Glob", json!({"pattern": "*"}));
                }
                if self.has("list_directory") {
                    let dir = self.cwd.clone().unwrap_or_else(|| ".".to_owned());
                    return call("list_directory", json!({"dir_path": dir}));
                }
                self.shell("ls -la", id)
            }
            Action::ReadFile { path } => {
                if let (true, Some(abs)) = (self.has("Read"), self.absolute(path)) {
                    return call("Read", json!({"file_path": abs}));
                }
                if self.has("read_file") {
                    let p = self.absolute(path).unwrap_or_else(|| path.clone());
                    return call("read_file", json!({"file_path": p}));
                }
                self.shell(&format!("cat {}", shell_quote(path)), id)
            }
            Action::Shell { command } => self.shell(command, id),
            Action::WriteFile { path, content } => {
                if let (true, Some(abs)) = (self.has("Write"), self.absolute(path)) {
                    return call("Write", json!({"file_path": abs, "content": content}));
                }
                if self.has("write_file") {
                    let p = self.absolute(path).unwrap_or_else(|| path.clone());
                    return call("write_file", json!({"file_path": p, "content": content}));
                }
                let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
                let command = format!(
                    "mkdir -p {} && printf '%s' {} > {}",
                    shell_quote(dir),
                    shell_quote(content),
                    shell_quote(path)
                );
                self.shell(&command, id)
            }
        }
    }

    fn shell(&self, command: &str, id: String) -> Option<ToolCall> {
        let (name, arguments) = if self.has("Bash") {
            (
                "Bash",
                json!({"command": command, "description": "Replay a recorded tool call"}),
            )
        } else if self.has("run_shell_command") {
            (
                "run_shell_command",
                json!({"command": command, "description": "Replay a recorded tool call"}),
            )
        } else if self.has("exec_command") {
            ("exec_command", json!({"cmd": command}))
        } else if self.has("shell_command") {
            ("shell_command", json!({"command": command}))
        } else if self.has("shell") {
            ("shell", json!({"command": ["bash", "-lc", command]}))
        } else {
            return None;
        };
        Some(ToolCall {
            id,
            name: name.to_owned(),
            arguments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str], cwd: Option<&str>) -> ToolSet {
        ToolSet {
            names: names.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.map(str::to_owned),
        }
    }

    #[test]
    fn each_cli_gets_its_own_tool_names() {
        let read = Action::ReadFile {
            path: "README.md".into(),
        };
        let claude = set(&["Bash", "Glob", "Read", "Write"], Some("/w"));
        let c = claude.render(&read, "1".into()).unwrap();
        assert_eq!(
            (c.name.as_str(), c.arguments["file_path"].as_str()),
            ("Read", Some("/w/README.md"))
        );
        // Without a known cwd, Claude Code's Read (absolute paths only) is
        // not usable: fall back to the shell.
        let c = set(&["Bash", "Read"], None)
            .render(&read, "1".into())
            .unwrap();
        assert_eq!(c.name, "Bash");
        assert_eq!(c.arguments["command"], "cat 'README.md'");

        let gemini = set(&["read_file", "run_shell_command", "list_directory"], None);
        assert_eq!(
            gemini.render(&Action::ListDir, "1".into()).unwrap().name,
            "list_directory"
        );
        let codex = set(&["shell", "update_plan"], None);
        let w = Action::WriteFile {
            path: "replay/a.json".into(),
            content: "it's".into(),
        };
        let c = codex.render(&w, "1".into()).unwrap();
        assert_eq!(c.name, "shell");
        assert_eq!(
            c.arguments["command"][2],
            r"mkdir -p 'replay' && printf '%s' 'it'\''s' > 'replay/a.json'"
        );
        assert!(set(&["WebSearch"], None).render(&w, "1".into()).is_none());
    }
}
