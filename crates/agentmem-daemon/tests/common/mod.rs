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

/// Raw connections that speak the protocol by hand: for clients that
/// misbehave in ways `agentmem-client` never would.
pub mod raw {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use agentmem_proto::{
        decode_handshake_reply, encode_frame, ClientFrame, HandshakeReply, Hello, Request,
        DEFAULT_MAX_FRAME,
    };

    /// A frame of `v`.
    pub fn frame<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame("test", v, DEFAULT_MAX_FRAME, &mut out).unwrap();
        out
    }

    /// A request frame.
    pub fn request(id: u64, request: Request) -> Vec<u8> {
        frame(&ClientFrame { id, request })
    }

    /// Read one frame's payload, or `None` at end of stream.
    pub fn read_payload(s: &mut UnixStream) -> Option<Vec<u8>> {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).ok()?;
        let mut p = vec![0; u32::from_le_bytes(h) as usize];
        s.read_exact(&mut p).ok()?;
        Some(p)
    }

    /// Connect and say hello; the handshake's answer.
    pub fn hello(socket: &std::path::Path, hello: &Hello) -> (UnixStream, HandshakeReply) {
        let mut s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&frame(hello)).unwrap();
        let p = read_payload(&mut s).expect("a handshake reply");
        let r = decode_handshake_reply(&p).unwrap();
        (s, r)
    }
}

/// A free loopback address for a metrics endpoint.
pub fn free_loopback() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One sample of the daemon's Prometheus text at `addr`.
pub fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
