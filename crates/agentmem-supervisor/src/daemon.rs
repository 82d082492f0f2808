//! The supervisor daemon and its control socket.
//!
//! Protocol: one JSON [`Request`] per line on the Unix socket
//! `STATE/supervisor.sock`, answered by one JSON [`Response`] line. The
//! daemon ticks the [`Supervisor`] once a second; each connection is served
//! on its own thread under the supervisor's mutex, except the page-outs
//! (`process_madvise`, writeback, swap-cache reclaim: up to seconds), which
//! are planned under it, run without it and installed under it again (see
//! [`crate::supervisor::PageOutJob`]).
//!
//! Access: the socket is mode 0666, so any local user can connect and ask
//! for `status`; the caller's uid, from the kernel (`SO_PEERCRED`), decides
//! the rest: `pause`, `resume` and `kill` of an agent are for root and the
//! uid its process runs as. At most [`MAX_CONNECTIONS`] connections are
//! served at once, a request line is at most [`MAX_LINE`] bytes, and a
//! connection idle for [`IDLE_TIMEOUT`] is closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::agent::StateDir;
use crate::error::{Error, Result};
use crate::supervisor::{Prefetch, Status, Supervisor};

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Freeze and page out an agent.
    Pause {
        /// The agent.
        name: String,
        /// Page it out after freezing it. Default: true.
        #[serde(default = "yes")]
        page_out: bool,
        /// Page out its recent working set too (a long wait). Default: false.
        #[serde(default)]
        deep: bool,
    },
    /// Thaw an agent and prefetch; answered when the prefetch is done.
    Resume {
        /// The agent.
        name: String,
        /// How much to prefetch before answering.
        prefetch: Prefetch,
    },
    /// What an agent says about itself (from its hooks: `agentmem state`).
    State {
        /// The agent.
        name: String,
        /// Its state, in the store's vocabulary.
        state: agentmem_core::AgentState,
    },
    /// End an agent: signal every process of its cgroup (detached daemons
    /// included) and thaw it; SIGKILL whatever is left after `grace_ms`.
    /// Answered once they have all exited.
    Kill {
        /// The agent.
        name: String,
        /// The first signal: `TERM`, `HUP`, `INT` or `KILL`. Default: `TERM`.
        #[serde(default = "term")]
        signal: String,
        /// How long to wait before SIGKILL. Default: 5000.
        #[serde(default = "five_s")]
        grace_ms: u64,
    },
    /// Every agent's status.
    Status,
    /// Read the agent records now (after `run` or `adopt`).
    Rescan,
}

/// The daemon's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// False when `error` says why not.
    pub ok: bool,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// For `resume`: time taken in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_ms: Option<f64>,
    /// For `pause`: bytes that left RAM (the cgroup's usage dropped by that
    /// much, swap cache included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged_out_bytes: Option<u64>,
    /// For `kill`: processes signalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signalled: Option<usize>,
    /// For `kill`: whether SIGKILL was needed after the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigkill: Option<bool>,
    /// For `pause`: bytes of address space advised (not memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advised_bytes: Option<u64>,
}

/// Connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// The longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn yes() -> bool {
    true
}

/// The agent a request acts on, if it changes one.
fn target(req: &Request) -> Option<&str> {
    match req {
        Request::Pause { name, .. }
        | Request::Resume { name, .. }
        | Request::Kill { name, .. }
        | Request::State { name, .. } => Some(name),
        Request::Status | Request::Rescan => None,
    }
}

/// Whether a caller of uid `uid` may make `req`: anyone may read the status
/// or ask for a rescan (which only reads records root wrote); acting on an
/// agent needs root or the uid the agent's process runs as.
fn allowed(sup: &Supervisor, uid: u32, req: &Request) -> Result<()> {
    let Some(name) = target(req) else {
        return Ok(());
    };
    if uid == 0 {
        return Ok(());
    }
    match sup.owner_uid(name) {
        Some(owner) if owner == uid => Ok(()),
        Some(_) => Err(Error::NotPermitted(format!(
            "acting on agent {name:?}, which runs as another user"
        ))),
        None => Err(Error::UnknownAgent(name.into())),
    }
}

fn term() -> String {
    "TERM".into()
}

fn five_s() -> u64 {
    5000
}

/// The signal named `name` (with or without `SIG`), among those `kill` accepts.
pub fn parse_signal(name: &str) -> Result<Signal> {
    let n = name.trim_start_matches("SIG");
    Ok(match n {
        "TERM" => Signal::TERM,
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "KILL" => Signal::KILL,
        _ => {
            return Err(Error::Invalid(format!(
                "signal {name:?}: expected TERM, HUP, INT, QUIT or KILL"
            )))
        }
    })
}

/// `kill`: signal and thaw under the lock, wait for the exit without it (a
/// tick or another request may run meanwhile), SIGKILL what is left.
fn kill(sup: &Mutex<Supervisor>, name: &str, signal: &str, grace: Duration) -> Result<Response> {
    let lock = || sup.lock().unwrap_or_else(|p| p.into_inner());
    let sig = parse_signal(signal)?;
    let signalled = lock().signal(name, sig)?;
    let mut kill_at = Some(Instant::now() + grace);
    // SIGKILL cannot be ignored; a process still there 5 s later is stuck in the kernel.
    let give_up = Instant::now() + grace + Duration::from_secs(5);
    let mut killed = false;
    while !lock().reap(name) {
        let now = Instant::now();
        if kill_at.is_some_and(|t| now >= t) {
            lock().signal(name, Signal::KILL)?;
            kill_at = None;
            killed = true;
        }
        if now >= give_up {
            return Err(Error::Invalid(format!(
                "{name}: processes remain 5 s after SIGKILL (stuck in the kernel?)"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(Response {
        ok: true,
        signalled: Some(signalled),
        sigkill: Some(killed),
        ..Default::default()
    })
}

fn handle(sup: &Mutex<Supervisor>, uid: u32, req: Request) -> Response {
    if let Err(e) = allowed(&sup.lock().unwrap_or_else(|p| p.into_inner()), uid, &req) {
        return Response {
            ok: false,
            error: Some(e.to_string()),
            ..Default::default()
        };
    }
    if let Request::Kill {
        name,
        signal,
        grace_ms,
    } = &req
    {
        let r = kill(sup, name, signal, Duration::from_millis(*grace_ms));
        let mut s = sup.lock().unwrap_or_else(|p| p.into_inner());
        for l in s.drain_log() {
            eprintln!("agentmem supervise: {l}");
        }
        return r.unwrap_or_else(|e| Response {
            ok: false,
            error: Some(e.to_string()),
            ..Default::default()
        });
    }
    let mut s = sup.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let r: Result<Response> = match req {
        Request::Pause {
            name,
            page_out,
            deep,
        } => match s.pause_begin(&name, page_out, deep, now) {
            // The page-out runs without the lock: other agents' requests
            // and the ticks go on meanwhile.
            Ok(Some(job)) => {
                drop(s);
                let done = job.run();
                s = sup.lock().unwrap_or_else(|p| p.into_inner());
                s.finish(done, Instant::now())
            }
            Ok(None) => Ok(Default::default()),
            Err(e) => Err(e),
        }
        .map(|o| Response {
            ok: true,
            paged_out_bytes: Some(o.freed_bytes),
            advised_bytes: Some(o.advised_bytes),
            ..Default::default()
        }),
        Request::Resume { name, prefetch } => {
            s.rescan(now);
            match s.resume_begin(&name, prefetch, now) {
                // The prefetch runs without the lock.
                Ok(job) => {
                    drop(s);
                    let done = job.run();
                    s = sup.lock().unwrap_or_else(|p| p.into_inner());
                    s.resume_finish(done, Instant::now())
                }
                Err(e) => Err(e),
            }
            .map(|ms| Response {
                ok: true,
                resume_ms: Some(ms),
                ..Default::default()
            })
        }
        Request::State { name, state } => s.say(&name, state, now).map(|()| Response {
            ok: true,
            ..Default::default()
        }),
        Request::Status => {
            s.rescan(now);
            Ok(Response {
                ok: true,
                status: Some(s.status(now)),
                ..Default::default()
            })
        }
        Request::Kill { .. } => unreachable!("handled above"),
        Request::Rescan => {
            s.rescan(now);
            Ok(Response {
                ok: true,
                ..Default::default()
            })
        }
    };
    for l in s.drain_log() {
        eprintln!("agentmem supervise: {l}");
    }
    r.unwrap_or_else(|e| Response {
        ok: false,
        error: Some(e.to_string()),
        ..Default::default()
    })
}

fn error_response(e: String) -> Response {
    Response {
        ok: false,
        error: Some(e),
        ..Default::default()
    }
}

fn serve_conn(sup: Arc<Mutex<Supervisor>>, conn: UnixStream) {
    let Ok(mut w) = conn.try_clone() else { return };
    // The caller's uid as the kernel knows it, not as it claims.
    let uid = match rustix::net::sockopt::socket_peercred(&conn) {
        Ok(c) => c.uid.as_raw(),
        Err(e) => {
            let body =
                serde_json::to_string(&error_response(format!("cannot identify the caller: {e}")))
                    .expect("response serializes");
            let _ = writeln!(w, "{body}");
            return;
        }
    };
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut r = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        // One byte more than allowed tells an over-long line from a full one.
        let n = match (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let too_long = n > MAX_LINE || (n == MAX_LINE + 1 && line.last() != Some(&b'\n'));
        let resp = if too_long {
            error_response(format!("request longer than {MAX_LINE} bytes"))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => handle(&sup, uid, req),
                Err(e) => error_response(format!(
                    "bad request {:?}: {e}",
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                )),
            }
        };
        let body = serde_json::to_string(&resp).expect("response serializes");
        if writeln!(w, "{body}").is_err() || too_long {
            return;
        }
    }
}

/// A running daemon: its socket and tick threads. Dropping it stops them and
/// removes the socket (agents stay as they are, to be re-adopted).
#[derive(Debug)]
pub struct Daemon {
    stop: Arc<AtomicBool>,
    sup: Arc<Mutex<Supervisor>>,
    socket: std::path::PathBuf,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts serving `sup` on its state directory's socket, ticking every `tick`.
    pub fn start(sup: Supervisor, tick: Duration) -> Result<Daemon> {
        let dir = sup.state_dir().clone();
        let socket = dir.socket();
        std::fs::create_dir_all(dir.root()).map_err(|e| Error::io("creating", dir.root(), e))?;
        if UnixStream::connect(&socket).is_ok() {
            return Err(Error::Invalid(format!(
                "a supervisor is already running on {}",
                socket.display()
            )));
        }
        let _ = std::fs::remove_file(&socket);
        let listener =
            UnixListener::bind(&socket).map_err(|e| Error::io("listening on", &socket, e))?;
        // Explicit, not from the umask: anyone may connect; what each caller
        // may ask is checked per request from its peer credentials.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| Error::io("setting the mode of", &socket, e))?;
        // The directory must let others reach the socket (records in it are
        // names, pids and learned page ranges: nothing secret).
        std::fs::set_permissions(dir.root(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("setting the mode of", dir.root(), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configuring", &socket, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let sup = Arc::new(Mutex::new(sup));
        let mut threads = Vec::new();
        {
            let (stop, sup) = (Arc::clone(&stop), Arc::clone(&sup));
            let live = Arc::new(AtomicUsize::new(0));
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut c, _)) => {
                            let _ = c.set_nonblocking(false);
                            if live.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                                live.fetch_sub(1, Ordering::AcqRel);
                                let body = serde_json::to_string(&error_response(format!(
                                    "busy: {MAX_CONNECTIONS} connections are open"
                                )))
                                .expect("response serializes");
                                let _ = writeln!(c, "{body}");
                                continue;
                            }
                            let (sup, live) = (Arc::clone(&sup), Arc::clone(&live));
                            thread::spawn(move || {
                                serve_conn(sup, c);
                                live.fetch_sub(1, Ordering::AcqRel);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            }));
        }
        {
            let (stop, sup) = (Arc::clone(&stop), Arc::clone(&sup));
            threads.push(thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        let jobs = {
                            let mut s = sup.lock().unwrap_or_else(|p| p.into_inner());
                            let jobs = s.plan_tick(Instant::now());
                            for l in s.drain_log() {
                                eprintln!("agentmem supervise: {l}");
                            }
                            jobs
                        };
                        // Page-outs without the lock, one agent at a time.
                        for job in jobs {
                            let done = job.run();
                            let mut s = sup.lock().unwrap_or_else(|p| p.into_inner());
                            let _ = s.finish(done, Instant::now());
                            for l in s.drain_log() {
                                eprintln!("agentmem supervise: {l}");
                            }
                        }
                        next += tick;
                        if next < Instant::now() {
                            next = Instant::now() + tick;
                        }
                    }
                    thread::sleep(Duration::from_millis(50).min(tick));
                }
            }));
        }
        Ok(Daemon {
            stop,
            sup,
            socket,
            threads,
        })
    }

    /// The supervisor (for in-process use and tests).
    pub fn supervisor(&self) -> Arc<Mutex<Supervisor>> {
        Arc::clone(&self.sup)
    }

    /// Runs until `stop` becomes true.
    pub fn wait(self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Sends one request to the daemon of `dir` and returns its answer
/// (an error when the daemon reports one).
pub fn request(dir: &StateDir, req: &Request) -> Result<Response> {
    let path = dir.socket();
    let mut c = UnixStream::connect(&path).map_err(|_| Error::NotRunning(path.clone()))?;
    let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
    let body = serde_json::to_string(req).expect("request serializes");
    writeln!(c, "{body}").map_err(|e| Error::io("writing to", &path, e))?;
    let mut line = String::new();
    BufReader::new(&c)
        .read_line(&mut line)
        .map_err(|e| Error::io("reading from", &path, e))?;
    let resp: Response = serde_json::from_str(&line).map_err(|e| Error::Parse {
        path: path.clone(),
        what: format!("{e} in {line:?}"),
    })?;
    if !resp.ok {
        return Err(Error::Remote(
            resp.error.unwrap_or_else(|| "unknown error".into()),
        ));
    }
    Ok(resp)
}
