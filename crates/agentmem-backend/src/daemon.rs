//! agentmemd over its Unix socket, through `agentmem-client`.
//!
//! The daemon binds each connection to one agent, so this backend opens one
//! [`Client`] per registered agent, plus a control connection that names no
//! agent (for stats, and to find out at open time whether the daemon runs).
//! Differences from the embedded store, all the daemon's rules:
//! - the tenant is the one the daemon assigns (the caller's uid, or the
//!   tenant of a configured token), not the `tenant` given to
//!   `register_agent`;
//! - an agent name is unique among the connected agents of a tenant;
//! - releasing an agent closes its connection: the daemon parks it and
//!   frees its units after its grace time, unless it reconnects;
//! - conversations cannot be deleted one by one (they go with their agent).

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentmem_client::{Client, ClientError, ConnectOptions, ErrorCode};
use agentmem_core::{AgentId, AgentState, ContentId, ConversationId, Kind, MemStats, Visibility};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::{Backend, Error, ErrorKind, Result};

/// How to reach the daemon.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The daemon's socket. Default: `agentmem_client::default_socket_path()`.
    pub socket: PathBuf,
    /// A token from the daemon's configuration naming the tenant.
    /// Default: none (the tenant is the caller's uid).
    pub token: Option<String>,
    /// How long a call waits for the daemon. Default: 60 s.
    pub timeout: Option<Duration>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            socket: agentmem_client::default_socket_path(),
            token: None,
            timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// What a request was about, to name a daemon's `NotFound` precisely.
#[derive(Clone, Copy, Debug)]
enum About {
    Unit,
    Conversation,
    Other,
}

fn from_client(e: ClientError, about: About) -> Error {
    // By the daemon's code alone, never by its message text.
    let kind_of_code = |code: ErrorCode| match code {
        ErrorCode::NotFound => match about {
            About::Conversation => ErrorKind::UnknownConversation,
            _ => ErrorKind::UnknownUnit,
        },
        ErrorCode::AccessDenied => ErrorKind::AccessDenied,
        ErrorCode::InvalidInput => ErrorKind::InvalidArgument,
        ErrorCode::TooLarge | ErrorCode::FrameTooLarge => ErrorKind::TooLarge,
        ErrorCode::OutOfRange => ErrorKind::OutOfRange,
        ErrorCode::Corrupt => ErrorKind::Corrupt,
        ErrorCode::NoSpace => ErrorKind::NoSpace,
        ErrorCode::LimitReached => ErrorKind::LimitReached,
        // The store failed otherwise: the cold tier's I/O.
        ErrorCode::Store => ErrorKind::Io,
        ErrorCode::Unavailable => ErrorKind::NotRunning,
        _ => ErrorKind::Protocol,
    };
    match e {
        ClientError::Connect { path, source } => Error::NotRunning {
            path: path.display().to_string(),
            source,
        },
        ClientError::Disconnected(io) => Error::Io(io),
        ClientError::Segment(io) => Error::Io(io),
        ClientError::Protocol(p) => {
            use agentmem_proto::ProtoError as P;
            let kind = if matches!(p, P::TooLarge { .. } | P::EncodeTooLarge { .. }) {
                ErrorKind::TooLarge
            } else {
                ErrorKind::Protocol
            };
            Error::Remote {
                kind,
                message: p.to_string(),
            }
        }
        e @ (ClientError::Remote { .. } | ClientError::Refused(_) | ClientError::Closed(_)) => {
            let code = e.code().expect("these variants carry a code");
            let message = e.to_string();
            Error::Remote {
                kind: kind_of_code(code),
                message,
            }
        }
        other => Error::Remote {
            kind: ErrorKind::Protocol,
            message: other.to_string(),
        },
    }
}

/// A store served by agentmemd.
#[derive(Debug)]
pub struct DaemonBackend {
    options: DaemonOptions,
    control: Mutex<Client>,
    agents: RwLock<HashMap<u32, Arc<Mutex<Client>>>>,
    /// Conversation → the agent whose connection created it.
    conversations: RwLock<HashMap<u32, u32>>,
}

impl DaemonBackend {
    /// Connect to the daemon; fails with [`ErrorKind::NotRunning`] if
    /// nothing listens on the socket.
    pub fn connect(options: DaemonOptions) -> Result<DaemonBackend> {
        let control = Self::connect_as(&options, "", 50)?;
        Ok(DaemonBackend {
            options,
            control: Mutex::new(control),
            agents: RwLock::new(HashMap::new()),
            conversations: RwLock::new(HashMap::new()),
        })
    }

    fn connect_as(options: &DaemonOptions, name: &str, importance: u8) -> Result<Client> {
        let mut o = ConnectOptions::new(name)
            .socket(&options.socket)
            .importance(importance)
            .timeout(options.timeout);
        if let Some(t) = &options.token {
            o = o.token(t.clone());
        }
        o.connect().map_err(|e| from_client(e, About::Other))
    }

    fn client(&self, agent: AgentId) -> Result<Arc<Mutex<Client>>> {
        self.agents
            .read()
            .get(&agent.0)
            .cloned()
            .ok_or(Error::Store(agentmem_core::Error::UnknownAgent(agent)))
    }

    fn conversation(&self, c: ConversationId) -> Result<Arc<Mutex<Client>>> {
        let unknown = || Error::Store(agentmem_core::Error::UnknownConversation(c));
        let known = self.conversations.read().get(&c.0).copied();
        if let Some(agent) = known {
            return self.client(AgentId(agent)).map_err(|_| unknown());
        }
        // Not created through this backend: a conversation of an agent that
        // reattached (after its process or the daemon restarted). The daemon
        // answers only the owner's connection, so ask each agent's once.
        let agents: Vec<(u32, Arc<Mutex<Client>>)> = self
            .agents
            .read()
            .iter()
            .map(|(a, c)| (*a, c.clone()))
            .collect();
        for (agent, client) in agents {
            if client.lock().conversation_len(c).is_ok() {
                self.conversations.write().insert(c.0, agent);
                return Ok(client);
            }
        }
        Err(unknown())
    }

    /// Refuse data that cannot fit in one frame before sending it: the
    /// client would drop its connection on the encoding error, and the
    /// reconnect can race the daemon's notice of the old one closing.
    fn check_frame(client: &Client, len: usize, what: &str) -> Result<()> {
        // Room for the request's other fields and the frame header.
        const OVERHEAD: u64 = 1024;
        let max = u64::from(client.welcome().max_frame);
        if (len as u64).saturating_add(OVERHEAD) > max {
            return Err(Error::Remote {
                kind: ErrorKind::TooLarge,
                message: format!(
                    "a {what} of {len} bytes does not fit in agentmemd's largest frame of {max} \
                     bytes (its max_frame setting): split it or store it embedded"
                ),
            });
        }
        Ok(())
    }

    /// The socket this backend talks to.
    pub fn socket(&self) -> &std::path::Path {
        &self.options.socket
    }
}

impl Backend for DaemonBackend {
    fn name(&self) -> &'static str {
        "daemon"
    }

    fn register_agent(&self, name: &str, _tenant: &str, importance: u8) -> Result<AgentId> {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "an agent needs a name: agentmemd names agents by it".into(),
            ));
        }
        let client = Self::connect_as(&self.options, name, importance)?;
        let id = client.agent();
        self.agents
            .write()
            .insert(id.0, Arc::new(Mutex::new(client)));
        Ok(id)
    }

    fn release_agent(&self, agent: AgentId) -> Result<()> {
        let client = self
            .agents
            .write()
            .remove(&agent.0)
            .ok_or(Error::Store(agentmem_core::Error::UnknownAgent(agent)))?;
        self.conversations.write().retain(|_, a| *a != agent.0);
        // Closing the connection parks the agent; the daemon frees its
        // units after the grace time.
        drop(client);
        Ok(())
    }

    fn set_state(&self, agent: AgentId, state: AgentState) -> Result<()> {
        let c = self.client(agent)?;
        let mut c = c.lock();
        if state == AgentState::Active {
            // Waking prefetches the agent's units, as the embedded backend does.
            c.resume().map(|_| ())
        } else {
            c.set_state(state)
        }
        .map_err(|e| from_client(e, About::Other))
    }

    fn put(&self, agent: AgentId, kind: Kind, data: &[u8], vis: Visibility) -> Result<ContentId> {
        let c = self.client(agent)?;
        let mut c = c.lock();
        Self::check_frame(&c, data.len(), "unit")?;
        c.put(kind, data, vis)
            .map_err(|e| from_client(e, About::Unit))
    }

    fn get(&self, agent: AgentId, id: &ContentId) -> Result<Bytes> {
        let unit = self
            .client(agent)?
            .lock()
            .get(id)
            .map_err(|e| from_client(e, About::Unit))?;
        Ok(match unit {
            agentmem_client::Unit::Inline(v) => Bytes::from(v),
            // Keeps the read-only mapping alive as long as the bytes are.
            shared => Bytes::from_owner(shared),
        })
    }

    fn share(&self, from: AgentId, id: &ContentId, to: AgentId) -> Result<()> {
        self.client(to)?;
        self.client(from)?
            .lock()
            .share(id, to)
            .map_err(|e| from_client(e, About::Unit))
    }

    fn release(&self, agent: AgentId, id: &ContentId) -> Result<()> {
        self.client(agent)?
            .lock()
            .release(id)
            .map_err(|e| from_client(e, About::Unit))
    }

    fn mark_hot(&self, agent: AgentId, id: &ContentId) -> Result<()> {
        self.client(agent)?
            .lock()
            .mark_hot(id)
            .map_err(|e| from_client(e, About::Unit))
    }

    fn create_conversation(&self, agent: AgentId) -> Result<ConversationId> {
        let c = self
            .client(agent)?
            .lock()
            .create_conversation()
            .map_err(|e| from_client(e, About::Conversation))?;
        self.conversations.write().insert(c.0, agent.0);
        Ok(c)
    }

    fn append(&self, conversation: ConversationId, message: &[u8]) -> Result<u64> {
        let c = self.conversation(conversation)?;
        let mut c = c.lock();
        Self::check_frame(&c, message.len(), "message")?;
        c.append(conversation, message)
            .map_err(|e| from_client(e, About::Conversation))
    }

    fn conversation_len(&self, conversation: ConversationId) -> Result<u64> {
        self.conversation(conversation)?
            .lock()
            .conversation_len(conversation)
            .map_err(|e| from_client(e, About::Conversation))
    }

    fn read_messages(&self, conversation: ConversationId, range: Range<u64>) -> Result<Vec<Bytes>> {
        let c = self.conversation(conversation)?;
        let mut c = c.lock();
        let len = c
            .conversation_len(conversation)
            .map_err(|e| from_client(e, About::Conversation))?;
        let range = range.start.min(len)..range.end.min(len);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let msgs = c
            .read_messages(conversation, range)
            .map_err(|e| from_client(e, About::Conversation))?;
        Ok(msgs.into_iter().map(Bytes::from).collect())
    }

    fn delete_conversation(&self, conversation: ConversationId) -> Result<()> {
        self.conversation(conversation)?;
        Err(Error::Remote {
            kind: ErrorKind::InvalidArgument,
            message: "agentmemd does not delete single conversations: they are released with \
                      their agent (release the agent instead)"
                .into(),
        })
    }

    fn mem_stats(&self) -> Result<MemStats> {
        let s = self
            .control
            .lock()
            .stats()
            .map_err(|e| from_client(e, About::Other))?;
        Ok(MemStats {
            total_allocated: s.total_allocated,
            total_deduplicated: s.total_deduplicated,
            compression_ratio: s.compression_ratio,
            hot_bytes: s.hot_bytes,
            warm_bytes: s.warm_bytes,
            cold_bytes: s.cold_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_keep_their_kind_by_code_not_text() {
        let remote = |code, message: &str| {
            from_client(
                ClientError::Remote {
                    code,
                    message: message.into(),
                },
                About::Unit,
            )
            .kind()
        };
        assert_eq!(remote(ErrorCode::TooLarge, "x"), ErrorKind::TooLarge);
        assert_eq!(remote(ErrorCode::OutOfRange, "x"), ErrorKind::OutOfRange);
        assert_eq!(remote(ErrorCode::Corrupt, "x"), ErrorKind::Corrupt);
        assert_eq!(remote(ErrorCode::NoSpace, "x"), ErrorKind::NoSpace);
        assert_eq!(
            remote(ErrorCode::LimitReached, "x"),
            ErrorKind::LimitReached
        );
        // A store failure is not reported as damage any more.
        assert_eq!(
            remote(ErrorCode::Store, "the cold tier failed"),
            ErrorKind::Io
        );
        // Text that once steered the kind no longer does.
        assert_eq!(
            remote(ErrorCode::InvalidInput, "the maximum unit size is 1 bytes"),
            ErrorKind::InvalidArgument
        );
    }
}
