//! Starting an `agentmemd` child process for a test, and stopping it.

#![allow(dead_code)] // each test file uses a different part

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentmem_client::{Client, ConnectOptions};

/// A daemon child with its own socket and log file; stopped on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// Token of tenant "alpha" in every test configuration.
pub const ALPHA: &str = "alpha-token-0123456789";
/// Token of tenant "beta".
pub const BETA: &str = "beta-token-0123456789";

impl Daemon {
    /// Start a daemon with `extra` appended to a test configuration.
    pub fn start(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agentmem.sock");
        let log = dir.path().join("agentmemd.log");
        let config = dir.path().join("agentmemd.toml");
        // A data directory of its own unless the test sets one.
        let data = if extra.contains("data_dir") {
            String::new()
        } else {
            format!("data_dir = {:?}\n", dir.path().join("data"))
        };
        std::fs::write(
            &config,
            format!(
                "socket = {:?}\nlog = \"info\"\n{data}{extra}\n\
                 [[tokens]]\ntoken = \"{ALPHA}\"\ntenant = \"alpha\"\n\
                 [[tokens]]\ntoken = \"{BETA}\"\ntenant = \"beta\"\n",
                socket
            ),
        )
        .unwrap();
        let child = spawn(&config, &log);
        let d = Daemon {
            child,
            dir,
            socket,
            log,
        };
        d.wait_ready();
        d
    }

    /// Start the daemon again with the same configuration (after
    /// [`Daemon::terminate`]).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.dir.path().join("agentmemd.toml"), &self.log);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let d = self;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "agentmemd did not start; its log:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn options(&self, agent: &str) -> ConnectOptions {
        ConnectOptions::new(agent)
            .socket(&self.socket)
            .timeout(Some(Duration::from_secs(20)))
    }

    pub fn client(&self, agent: &str) -> Client {
        self.options(agent).connect().expect("connect")
    }

    /// SIGTERM, wait up to `limit`; returns whether it exited successfully.
    pub fn terminate(&mut self, limit: Duration) -> Option<bool> {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.success());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_agentmemd"))
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .expect("spawning agentmemd")
}

/// Raise this process's open-file limit to its hard limit.
pub fn raise_fd_limit() -> u64 {
    agentmem_daemon::sys::raise_fd_limit()
}

/// The first system prompt variant of the bundled sample (25 338 bytes).
pub fn sample_prompt() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample/prompts/system_prompt_variants.json.zst");
    let raw = zstd::decode_all(std::fs::File::open(&path).expect("sample prompts")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v[0]["text"].as_str().unwrap().as_bytes().to_vec()
}
