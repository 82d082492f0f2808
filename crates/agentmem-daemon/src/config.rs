//! The daemon's configuration: a TOML file whose every key is optional,
//! overridden by command-line flags. `agentmemd --print-config` prints the
//! effective configuration, defaults included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

macro_rules! bail {
    ($($t:tt)*) => {
        return Err(Error::Config(format!($($t)*)))
    };
}
use serde::{Deserialize, Serialize};

/// A size in bytes, written as a number or a string like `"64 MiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SizeRepr", into = "u64")]
pub struct Size(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Bytes(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for Size {
    type Error = String;
    fn try_from(r: SizeRepr) -> Result<Self, String> {
        match r {
            SizeRepr::Bytes(b) => Ok(Size(b)),
            SizeRepr::Text(t) => parse_size::parse_size(&t)
                .map(Size)
                .map_err(|e| format!("invalid size {t:?}: {e}")),
        }
    }
}

impl From<Size> for u64 {
    fn from(s: Size) -> u64 {
        s.0
    }
}

/// A token that names a tenant: a client presenting it in its hello acts
/// in that tenant instead of its uid's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTenant {
    /// The secret the client presents.
    pub token: String,
    /// The tenant it names.
    pub tenant: String,
}

/// When a write through the daemon is durable (the store's redo log; see
/// docs/cold-tier.md). Only matters with a data directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Group commit: every write is in the redo log when it is acknowledged
    /// (survives the daemon being killed); the log is fdatasynced every
    /// `group_commit_ms`, the most a power cut can lose.
    #[default]
    Group,
    /// Every write is fdatasynced before it is acknowledged.
    Sync,
    /// No redo log: writes are durable at the next checkpoint
    /// (`checkpoint_secs`); a crash loses the work since then.
    Checkpoint,
}

/// The store's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Hot plus warm bytes the store may hold. Default: 1 GiB.
    pub ram_budget: Size,
    /// Hot bytes the store may hold. Default: a quarter of `ram_budget`.
    pub hot_budget: Option<Size>,
    /// Largest unit accepted. Default: 1 GiB (the core's default); over the
    /// socket a put is also bounded by `max_frame`.
    pub max_unit_size: Size,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            ram_budget: Size(1 << 30),
            hot_budget: None,
            max_unit_size: Size(agentmem_core::DEFAULT_MAX_UNIT_SIZE),
        }
    }
}

/// Everything `agentmemd` can be told. Each field's doc ends with its
/// default; `docs/daemon.md` lists them too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Unix socket to listen on. Default: `$XDG_RUNTIME_DIR/agentmem.sock`
    /// if set, else `/run/agentmem/agentmem.sock`.
    pub socket: PathBuf,
    /// Permission bits of the socket, in octal. Anyone who can connect is
    /// identified by uid (SO_PEERCRED) and isolated by tenant. Default: "0666".
    pub socket_mode: String,
    /// Largest frame payload either side may send, bytes. Default: 16 MiB.
    pub max_frame: u32,
    /// Connections served at once; more are refused. Default: 4096.
    pub max_connections: usize,
    /// Bytes of answers one connection may have encoded and not yet
    /// written before the daemon stops reading its requests (a client
    /// that pipelines and never reads holds no more of the daemon's
    /// memory than this). Default: 32 MiB (two maximum frames).
    pub max_unsent_per_connection: Size,
    /// Bytes of answers all connections together may have unsent; past
    /// it, every connection with unsent answers writes them before it
    /// reads more requests. Default: 1 GiB.
    pub max_unsent_total: Size,
    /// Connections one tenant may hold past their handshake; more are
    /// refused with `LimitReached`, so one tenant cannot take every
    /// connection. Default: 1024 (a quarter of `max_connections`).
    pub max_connections_per_tenant: usize,
    /// Connections from one uid that have not finished their handshake
    /// yet (the tenant is not known before the hello); more are refused
    /// at once. Default: 256.
    pub max_handshaking_per_uid: usize,
    /// Agents one tenant may have registered (connected or in their grace
    /// time). Default: 4096.
    pub max_agents_per_tenant: usize,
    /// Stored bytes (after dedup and compression, shared units charged
    /// proportionally) one tenant may hold; puts and appends past it are
    /// refused with `LimitReached`. Checked against a figure refreshed
    /// every second. 0 = no limit. Default: 0.
    pub max_stored_bytes_per_tenant: Size,
    /// Seconds a connection past its handshake may send nothing before it
    /// is closed (its agent then has its grace time to reconnect). 0 =
    /// never. Default: 3600.
    pub idle_timeout_secs: f64,
    /// Seconds writing an answer may make no progress (the client reads
    /// nothing) before the connection is closed. Default: 60.
    pub write_timeout_secs: f64,
    /// A group id whose members (by the connecting process's primary
    /// group, from SO_PEERCRED) see every tenant in `stats`, as root and
    /// the daemon's own user do. Token holders never do. Default: none.
    pub admin_gid: Option<u32>,
    /// Seconds a disconnected agent's units are kept so the agent can
    /// reconnect and resume; then they are released. Default: 300.
    pub grace_secs: f64,
    /// Units of at least this many bytes (except conversation chunks) are
    /// sent as sealed memfd segments mapped by clients. Default: 16 KiB.
    pub share_threshold: Size,
    /// Bytes of memfd segments kept for reuse; least recently created go
    /// first. Default: 256 MiB.
    pub segment_cache: Size,
    /// Seconds a new connection has to send its hello. Default: 5.
    pub handshake_timeout_secs: f64,
    /// Seconds to wait for connections to finish on shutdown. Default: 10.
    pub shutdown_timeout_secs: f64,
    /// Address of the Prometheus text endpoint (`GET /metrics`); must be a
    /// loopback address. Default: none (off).
    pub metrics: Option<SocketAddr>,
    /// Worker threads. Default: 0, meaning one per CPU.
    pub workers: usize,
    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing filter).
    /// Default: "info".
    pub log: String,
    /// Directory of the persistent store (cold tier and checkpoints). The
    /// daemon opens the store from it at start and checkpoints it on
    /// shutdown, so a restart brings back units, agents, their states and
    /// conversations; one daemon per directory (it is locked). An empty
    /// string keeps everything in RAM only (lost on exit). Default: see
    /// [`crate::default_data_dir`] (`$STATE_DIRECTORY`, else
    /// `$XDG_STATE_HOME/agentmem`, else `/var/lib/agentmem` for root and
    /// `~/.local/state/agentmem` for other users).
    pub data_dir: PathBuf,
    /// Seconds between background checkpoints of the persistent store
    /// (they bound the redo log and the time to reopen; with `durability =
    /// "checkpoint"` a crash loses at most this much work); 0 = only at
    /// shutdown. Default: 30.
    pub checkpoint_secs: f64,
    /// When an acknowledged write is durable: "group" (default), "sync" or
    /// "checkpoint" (see [`DurabilityMode`]).
    pub durability: DurabilityMode,
    /// Milliseconds between fdatasyncs of the redo log under group commit.
    /// Default: 10.
    pub group_commit_ms: f64,
    /// The store.
    pub store: StoreConfig,
    /// Tokens that name tenants. Default: none.
    pub tokens: Vec<TokenTenant>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: crate::default_socket_path(),
            socket_mode: "0666".into(),
            max_frame: agentmem_proto::DEFAULT_MAX_FRAME,
            max_connections: 4096,
            max_unsent_per_connection: Size(2 * agentmem_proto::DEFAULT_MAX_FRAME as u64),
            max_unsent_total: Size(1 << 30),
            max_connections_per_tenant: 1024,
            max_handshaking_per_uid: 256,
            max_agents_per_tenant: 4096,
            max_stored_bytes_per_tenant: Size(0),
            idle_timeout_secs: 3600.0,
            write_timeout_secs: 60.0,
            admin_gid: None,
            grace_secs: 300.0,
            share_threshold: Size(16 * 1024),
            segment_cache: Size(256 << 20),
            handshake_timeout_secs: 5.0,
            shutdown_timeout_secs: 10.0,
            metrics: None,
            workers: 0,
            log: "info".into(),
            data_dir: crate::default_data_dir(),
            checkpoint_secs: 30.0,
            durability: DurabilityMode::Group,
            group_commit_ms: 10.0,
            store: StoreConfig::default(),
            tokens: Vec::new(),
        }
    }
}

impl Config {
    /// Read a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .ctx(|| format!("reading config file {}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| Error::Config(format!("in config file {}: {e}", path.display())))
    }

    /// Parse configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        if self.max_frame < agentmem_proto::MIN_MAX_FRAME {
            bail!(
                "max_frame = {} is below the protocol minimum of {}",
                self.max_frame,
                agentmem_proto::MIN_MAX_FRAME
            );
        }
        if !(self.grace_secs >= 0.0 && self.grace_secs.is_finite()) {
            bail!(
                "grace_secs = {} must be a finite number ≥ 0",
                self.grace_secs
            );
        }
        if !(self.checkpoint_secs >= 0.0 && self.checkpoint_secs.is_finite()) {
            bail!(
                "checkpoint_secs = {} must be a finite number ≥ 0",
                self.checkpoint_secs
            );
        }
        if !(self.group_commit_ms > 0.0 && self.group_commit_ms <= 60_000.0) {
            bail!(
                "group_commit_ms = {} must be above 0 and at most 60000",
                self.group_commit_ms
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            // RAM only.
        } else if !self.data_dir.is_absolute() {
            bail!(
                "data_dir = {:?} must be an absolute path (or \"\" for RAM only)",
                self.data_dir
            );
        }
        if !(self.idle_timeout_secs >= 0.0 && self.idle_timeout_secs.is_finite()) {
            bail!(
                "idle_timeout_secs = {} must be a finite number ≥ 0",
                self.idle_timeout_secs
            );
        }
        for (what, v) in [
            (
                "max_connections_per_tenant",
                self.max_connections_per_tenant,
            ),
            ("max_handshaking_per_uid", self.max_handshaking_per_uid),
            ("max_agents_per_tenant", self.max_agents_per_tenant),
        ] {
            if v == 0 {
                bail!("{what} must be at least 1");
            }
        }
        for (what, v) in [
            ("write_timeout_secs", self.write_timeout_secs),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("shutdown_timeout_secs", self.shutdown_timeout_secs),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{what} = {v} must be a finite number > 0");
            }
        }
        if let Some(m) = self.metrics {
            if !m.ip().is_loopback() {
                bail!("metrics = {m}: the metrics endpoint must listen on a loopback address (127.0.0.1 or ::1)");
            }
        }
        self.mode()?;
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tokens {
            if t.token.len() < 16 {
                bail!(
                    "the token for tenant {:?} is {} characters; use at least 16",
                    t.tenant,
                    t.token.len()
                );
            }
            if !seen.insert(&t.token) {
                bail!("a token is listed twice (tenant {:?})", t.tenant);
            }
        }
        Ok(())
    }

    /// `socket_mode` as bits.
    pub fn mode(&self) -> Result<u32> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                Error::Config(format!(
                    "socket_mode = {:?} is not an octal permission like \"0660\"",
                    self.socket_mode
                ))
            })
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_sizes_parse() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse(
            "grace_secs = 2\nshare_threshold = \"32 KiB\"\n[store]\nram_budget = 1048576\n",
        )
        .unwrap();
        assert_eq!(c.grace_secs, 2.0);
        assert_eq!(c.share_threshold, Size(32 * 1024));
        assert_eq!(c.store.ram_budget, Size(1 << 20));
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let e = Config::parse("metrics = \"0.0.0.0:9464\"").unwrap_err();
        assert!(format!("{e:#}").contains("loopback"), "{e:#}");
        let e = Config::parse("max_frame = 10").unwrap_err();
        assert!(format!("{e:#}").contains("max_frame"), "{e:#}");
        let e = Config::parse("sokcet = \"/x\"").unwrap_err();
        assert!(format!("{e:#}").contains("sokcet"), "{e:#}");
        let e = Config::parse("socket_mode = \"rw\"").unwrap_err();
        assert!(format!("{e:#}").contains("socket_mode"), "{e:#}");
        let e = Config::parse("[[tokens]]\ntoken = \"short\"\ntenant = \"a\"").unwrap_err();
        assert!(format!("{e:#}").contains("at least 16"), "{e:#}");
        let e = Config::parse("data_dir = \"rel/dir\"").unwrap_err();
        assert!(format!("{e:#}").contains("absolute"), "{e:#}");
        let e = Config::parse("group_commit_ms = 0").unwrap_err();
        assert!(format!("{e:#}").contains("group_commit_ms"), "{e:#}");
        let e = Config::parse("durability = \"fast\"").unwrap_err();
        assert!(format!("{e:#}").contains("durability"), "{e:#}");
        let c = Config::parse("durability = \"sync\"").unwrap();
        assert_eq!(c.durability, DurabilityMode::Sync);
        let e = Config::parse("checkpoint_secs = -1").unwrap_err();
        assert!(format!("{e:#}").contains("checkpoint_secs"), "{e:#}");
        assert!(Config::parse("data_dir = \"\"")
            .unwrap()
            .data_dir
            .as_os_str()
            .is_empty());
    }

    #[test]
    fn packaged_sample_config_states_the_defaults() {
        let text = include_str!("../../../packaging/agentmemd.toml");
        let c = Config::parse(text).unwrap();
        let d = Config {
            socket: PathBuf::from("/run/agentmem/agentmem.sock"),
            data_dir: PathBuf::from("/var/lib/agentmem"),
            ..Config::default()
        };
        assert_eq!(c, d);
    }

    #[test]
    fn printed_config_parses_back() {
        let c = Config {
            metrics: Some("127.0.0.1:9464".parse().unwrap()),
            tokens: vec![TokenTenant {
                token: "0123456789abcdef".into(),
                tenant: "ci".into(),
            }],
            ..Config::default()
        };
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
    }
}
