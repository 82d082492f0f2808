//! The supervisor daemon and its control socket.
//!
//! Protocol: one JSON [`Request`] per line on the Unix socket
//! `STATE/supervisor.sock`, answered by one JSON [`Response`] line. The
//! daemon ticks the [`Supervisor`] once a second; each connection is served
//! on its own thread under the supervisor's mutex.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
    /// For `pause`: bytes paged out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged_out_bytes: Option<u64>,
}

fn yes() -> bool {
    true
}

fn handle(sup: &Mutex<Supervisor>, req: Request) -> Response {
    let mut s = sup.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let r: Result<Response> = match req {
        Request::Pause {
            name,
            page_out,
            deep,
        } => s.pause(&name, page_out, deep, now).map(|b| Response {
            ok: true,
            paged_out_bytes: Some(b),
            ..Default::default()
        }),
        Request::Resume { name, prefetch } => {
            s.rescan(now);
            s.resume(&name, prefetch, now).map(|ms| Response {
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

fn serve_conn(sup: Arc<Mutex<Supervisor>>, conn: UnixStream) {
    let Ok(mut w) = conn.try_clone() else { return };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => handle(&sup, req),
            Err(e) => Response {
                ok: false,
                error: Some(format!("bad request {line:?}: {e}")),
                ..Default::default()
            },
        };
        let body = serde_json::to_string(&resp).expect("response serializes");
        if writeln!(w, "{body}").is_err() {
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
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configuring", &socket, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let sup = Arc::new(Mutex::new(sup));
        let mut threads = Vec::new();
        {
            let (stop, sup) = (Arc::clone(&stop), Arc::clone(&sup));
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((c, _)) => {
                            let _ = c.set_nonblocking(false);
                            let sup = Arc::clone(&sup);
                            thread::spawn(move || serve_conn(sup, c));
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
                        let mut s = sup.lock().unwrap_or_else(|p| p.into_inner());
                        s.tick(Instant::now());
                        for l in s.drain_log() {
                            eprintln!("agentmem supervise: {l}");
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
