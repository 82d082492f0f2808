//! What the daemon does with a request: identity, access checks, the store
//! call, and the bookkeeping of agents across connections. No I/O here; see
//! `server.rs` for sockets.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_core::{
    AgentId, AgentState, ContentId, ConversationId, Error as StoreError, Importance, Kind, Store,
    TenantId,
};
use agentmem_proto::{
    AgentReport, DaemonReport, ErrorCode, ErrorReply, KindReport, Request, Response, StatsReport,
    UnitReport,
};
use parking_lot::Mutex;

use crate::config::Config;
use crate::escape::Escaped;
use crate::metrics::Metrics;
use crate::sys::SealedSegment;

/// Agent id a connection without an agent (an observer) reports.
pub const NO_AGENT: u32 = u32::MAX;

/// Who is on the other end of a connection, from SO_PEERCRED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Process id, if the kernel gave one.
    pub pid: Option<i32>,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What a connection acts as, settled by the handshake.
#[derive(Debug)]
pub struct Session {
    /// The agent, or `None` for an observer (empty agent name: may only
    /// ping and read stats).
    pub agent: Option<AgentId>,
    /// The agent's name.
    pub name: String,
    /// The tenant.
    pub tenant: String,
    /// Whether stats show every tenant's agents and the daemon-wide
    /// figures (root, the daemon's own uid, and the peer's primary group
    /// being `admin_gid`).
    pub admin: bool,
    /// The peer.
    pub peer: Peer,
}

/// What an answer carries: a response, or the bytes of a large one kept
/// as the store returned them (shared, not copied) so that the server can
/// stream them to the socket (see `agentmem_proto::encode_bulk_frame`).
#[derive(Debug)]
pub enum Body {
    /// A response encoded as it is.
    Response(Response),
    /// A unit's bytes, sent as [`Response::Data`].
    Data(bytes::Bytes),
    /// Messages, sent as [`Response::Messages`].
    Messages(Vec<bytes::Bytes>),
}

/// A response, possibly with a segment whose descriptor goes with it.
#[derive(Debug)]
pub struct Answer {
    /// The response.
    pub body: Body,
    /// The segment for a [`Response::Segment`].
    pub segment: Option<Arc<SealedSegment>>,
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Answer {
            body: Body::Response(response),
            segment: None,
        }
    }
}

impl From<Body> for Answer {
    fn from(body: Body) -> Self {
        Answer {
            body,
            segment: None,
        }
    }
}

#[derive(Debug)]
struct AgentSlot {
    id: AgentId,
    connected: bool,
    detached_at: Option<Instant>,
}

/// What one tenant holds, against its quotas.
#[derive(Debug, Default, Clone, Copy)]
struct TenantUse {
    /// Connections past their handshake.
    connections: usize,
    /// Agents registered (connected or within their grace time).
    agents: usize,
    /// Stored bytes charged to its agents, as of the last
    /// [`Service::refresh_usage`].
    stored_bytes: u64,
}

/// A refusal for a quota: which limit, its value, the key that sets it.
fn limit_reached(what: &str, tenant: &str, value: impl std::fmt::Display, key: &str) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::LimitReached,
        message: format!(
            "tenant {} is at its limit of {value} {what} ({key} in the daemon's configuration)",
            Escaped(tenant)
        ),
    }
}

/// Memfd segments by content id, oldest first out when over budget.
#[derive(Debug, Default)]
struct Segments {
    map: HashMap<ContentId, Arc<SealedSegment>>,
    order: VecDeque<ContentId>,
    bytes: u64,
}

/// The daemon's state shared by every connection.
#[derive(Debug)]
pub struct Service {
    /// The store.
    pub store: Store,
    /// The configuration.
    pub cfg: Config,
    /// Counters.
    pub metrics: Metrics,
    agents: Mutex<HashMap<(String, String), AgentSlot>>,
    tenants: Mutex<HashMap<String, TenantUse>>,
    handshaking: Mutex<HashMap<u32, usize>>,
    /// Whether the last write failed for a full filesystem (logged once
    /// per change, not per refused write).
    disk_full: std::sync::atomic::AtomicBool,
    segments: Mutex<Segments>,
    started: Instant,
    own_uid: u32,
}

fn err(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error(ErrorReply {
        code,
        message: message.into(),
    })
}

/// The one answer for a unit an agent may not read, whatever the reason,
/// so that another tenant cannot tell "exists" from "does not".
fn no_unit(agent: AgentId, id: &ContentId) -> Response {
    err(
        ErrorCode::NotFound,
        format!(
            "no unit {id} is readable by {agent}: it does not exist, was released, \
             or is private to another agent and was not shared with this one"
        ),
    )
}

fn no_conversation(agent: AgentId, c: ConversationId) -> Response {
    err(
        ErrorCode::NotFound,
        format!(
            "{c} is not a conversation of {agent}: it does not exist or belongs to another agent"
        ),
    )
}

/// Map a store error to an answer; unit-existence errors become the
/// uniform [`no_unit`].
fn store_err(agent: AgentId, id: Option<&ContentId>, e: StoreError) -> Response {
    // Matched by type, never by message text.
    match e {
        StoreError::UnknownUnit { .. }
        | StoreError::AccessDenied { .. }
        | StoreError::NotOwner { .. } => match id {
            Some(id) => no_unit(agent, id),
            None => err(ErrorCode::NotFound, e.to_string()),
        },
        StoreError::UnknownConversation(_) | StoreError::UnknownAgent(_) => {
            err(ErrorCode::NotFound, e.to_string())
        }
        StoreError::EmptyUnit { .. } | StoreError::Config(_) => {
            err(ErrorCode::InvalidInput, e.to_string())
        }
        StoreError::UnitTooLarge { .. } => err(ErrorCode::TooLarge, e.to_string()),
        StoreError::OutOfRange { .. } => err(ErrorCode::OutOfRange, e.to_string()),
        StoreError::Corrupt { .. } | StoreError::CorruptDictionary { .. } => {
            err(ErrorCode::Corrupt, e.to_string())
        }
        ref other if other.is_no_space() => err(
            ErrorCode::NoSpace,
            format!(
                "the filesystem of the daemon's data directory is full ({}): writes are \
                 refused until space returns, reads and releases keep working",
                agentmem_core::error_report(other)
            ),
        ),
        other => err(ErrorCode::Store, agentmem_core::error_report(&other)),
    }
}

impl Service {
    /// A service over `store`.
    pub fn new(store: Store, cfg: Config) -> Service {
        Service {
            store,
            cfg,
            metrics: Metrics::default(),
            agents: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            handshaking: Mutex::new(HashMap::new()),
            disk_full: std::sync::atomic::AtomicBool::new(false),
            segments: Mutex::new(Segments::default()),
            started: Instant::now(),
            own_uid: rustix::process::getuid().as_raw(),
        }
    }

    /// Settle a handshake: pick the tenant (token or uid), then attach the
    /// agent of that name (re-attaching a disconnected one) or register it.
    pub fn attach(
        &self,
        peer: Peer,
        hello: &agentmem_proto::Hello,
    ) -> Result<(Session, bool), ErrorReply> {
        let tenant = match &hello.token {
            Some(t) => self
                .cfg
                .tokens
                .iter()
                .find(|x| x.token == *t)
                .map(|x| x.tenant.clone())
                .ok_or_else(|| ErrorReply {
                    code: ErrorCode::AccessDenied,
                    message: "unknown token: it is not listed under [[tokens]] in the daemon's configuration".into(),
                })?,
            None => format!("uid:{}", peer.uid),
        };
        // A token holder acts as its tenant, whoever it is.
        let admin = hello.token.is_none()
            && (peer.uid == 0
                || peer.uid == self.own_uid
                || self.cfg.admin_gid.is_some_and(|g| peer.gid == g));
        let mut session = Session {
            agent: None,
            name: hello.agent.clone(),
            tenant,
            admin,
            peer,
        };
        // The tenant's connection slot, given back by `detach` (or below
        // if the agent is refused).
        {
            let mut t = self.tenants.lock();
            let u = t.entry(session.tenant.clone()).or_default();
            if u.connections >= self.cfg.max_connections_per_tenant {
                return Err(limit_reached(
                    "connections",
                    &session.tenant,
                    self.cfg.max_connections_per_tenant,
                    "max_connections_per_tenant",
                ));
            }
            u.connections += 1;
        }
        if hello.agent.is_empty() {
            return Ok((session, false));
        }
        let r = self.attach_agent(&mut session, hello);
        match r {
            Ok(reattached) => Ok((session, reattached)),
            Err(e) => {
                self.leave(&session.tenant);
                Err(e)
            }
        }
    }

    /// A connection from `uid` starts its handshake: refused if that uid
    /// already has `max_handshaking_per_uid` connections in their
    /// handshake. Pair with [`Service::handshake_done`].
    pub fn handshake_begin(&self, uid: u32) -> Result<(), ErrorReply> {
        let mut h = self.handshaking.lock();
        let n = h.entry(uid).or_default();
        if *n >= self.cfg.max_handshaking_per_uid {
            return Err(ErrorReply {
                code: ErrorCode::LimitReached,
                message: format!(
                    "uid {uid} is at its limit of {} connections in their handshake (max_handshaking_per_uid in the daemon's configuration)",
                    self.cfg.max_handshaking_per_uid
                ),
            });
        }
        *n += 1;
        Ok(())
    }

    /// The handshake of a connection from `uid` ended, either way.
    pub fn handshake_done(&self, uid: u32) {
        let mut h = self.handshaking.lock();
        if let Some(n) = h.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                h.remove(&uid);
            }
        }
    }

    fn leave(&self, tenant: &str) {
        if let Some(u) = self.tenants.lock().get_mut(tenant) {
            u.connections = u.connections.saturating_sub(1);
        }
    }

    fn attach_agent(
        &self,
        session: &mut Session,
        hello: &agentmem_proto::Hello,
    ) -> Result<bool, ErrorReply> {
        let mut agents = self.agents.lock();
        let key = (session.tenant.clone(), hello.agent.clone());
        let mut reattached = false;
        match agents.get_mut(&key) {
            Some(slot) if slot.connected => {
                return Err(ErrorReply {
                    code: ErrorCode::AccessDenied,
                    message: format!(
                        "agent {:?} of tenant {} is already connected: one connection acts for one agent; pick another name",
                        hello.agent, Escaped(&session.tenant)
                    ),
                })
            }
            Some(slot) => {
                slot.connected = true;
                slot.detached_at = None;
                session.agent = Some(slot.id);
                reattached = true;
                let _ = self.store.set_state(slot.id, AgentState::Active);
                let _ = self.store.set_importance(slot.id, Importance(hello.importance));
            }
            None => {
                {
                    let mut t = self.tenants.lock();
                    let u = t.entry(session.tenant.clone()).or_default();
                    if u.agents >= self.cfg.max_agents_per_tenant {
                        return Err(limit_reached(
                            "agents",
                            &session.tenant,
                            self.cfg.max_agents_per_tenant,
                            "max_agents_per_tenant",
                        ));
                    }
                    u.agents += 1;
                }
                let id = self
                    .store
                    .register_agent(
                        &hello.agent,
                        &TenantId::new(session.tenant.clone()),
                        Importance(hello.importance),
                    )
                    .map_err(|e| {
                        if let Some(u) = self.tenants.lock().get_mut(&session.tenant) {
                            u.agents = u.agents.saturating_sub(1);
                        }
                        ErrorReply {
                            code: ErrorCode::Unavailable,
                            message: e.to_string(),
                        }
                    })?;
                agents.insert(
                    key,
                    AgentSlot {
                        id,
                        connected: true,
                        detached_at: None,
                    },
                );
                session.agent = Some(id);
            }
        }
        Ok(reattached)
    }

    /// After a store was opened from its data directory: every agent of the
    /// image is disconnected now, so it goes `Idle` and is released after
    /// the grace time unless a client reconnects under its name (and
    /// tenant). Returns how many agents were adopted.
    pub fn adopt_restored_agents(&self) -> usize {
        let now = Instant::now();
        let mut agents = self.agents.lock();
        let mut n = 0;
        for a in self.store.agents() {
            let key = (a.tenant.0.clone(), a.name.clone());
            if agents.contains_key(&key) {
                // Two live agents of one name: only the daemon registers,
                // and it keeps names unique, so this is a store written by
                // something else; keep the first, release the other now.
                tracing::warn!(
                    "{} duplicates agent {}/{}: released",
                    a.id,
                    Escaped(&key.0),
                    Escaped(&key.1)
                );
                let _ = self.store.release_agent(a.id);
                continue;
            }
            if a.state != AgentState::Idle {
                let _ = self.store.set_state(a.id, AgentState::Idle);
            }
            self.tenants.lock().entry(key.0.clone()).or_default().agents += 1;
            agents.insert(
                key,
                AgentSlot {
                    id: a.id,
                    connected: false,
                    detached_at: Some(now),
                },
            );
            n += 1;
        }
        n
    }

    /// The connection of `session` closed: its agent goes `Idle` and is
    /// released after the grace time unless it reconnects.
    pub fn detach(&self, session: &Session) {
        self.leave(&session.tenant);
        let Some(agent) = session.agent else { return };
        let mut agents = self.agents.lock();
        if let Some(slot) = agents.get_mut(&(session.tenant.clone(), session.name.clone())) {
            slot.connected = false;
            slot.detached_at = Some(Instant::now());
        }
        drop(agents);
        let _ = self.store.set_state(agent, AgentState::Idle);
    }

    /// Refuse a write of `len` bytes if the tenant's stored bytes (as of
    /// the last [`Service::refresh_usage`]) are at its quota.
    fn check_bytes(&self, session: &Session, len: usize) -> Result<(), ErrorReply> {
        let max = self.cfg.max_stored_bytes_per_tenant.0;
        if max == 0 {
            return Ok(());
        }
        let used = self
            .tenants
            .lock()
            .get(&session.tenant)
            .map_or(0, |u| u.stored_bytes);
        if used.saturating_add(len as u64) > max {
            return Err(limit_reached(
                "stored bytes",
                &session.tenant,
                format!("{max} (it holds {used}; this write adds {len})"),
                "max_stored_bytes_per_tenant",
            ));
        }
        Ok(())
    }

    /// Recompute every tenant's stored bytes from the store's accounting
    /// (the reaper calls this every second; quotas on stored bytes are
    /// checked against it, so a tenant may pass its quota by what it
    /// writes between two refreshes).
    pub fn refresh_usage(&self) {
        if self.cfg.max_stored_bytes_per_tenant.0 == 0 {
            return;
        }
        let st = self.store.stats();
        let mut bytes: HashMap<&str, u64> = HashMap::new();
        for a in &st.agents {
            *bytes.entry(a.tenant.as_str()).or_default() += a.charged_bytes;
        }
        let mut t = self.tenants.lock();
        for (name, u) in t.iter_mut() {
            u.stored_bytes = bytes.get(name.as_str()).copied().unwrap_or(0);
        }
        for (name, b) in bytes {
            if !t.contains_key(name) {
                t.insert(
                    name.to_string(),
                    TenantUse {
                        stored_bytes: b,
                        ..TenantUse::default()
                    },
                );
            }
        }
    }

    /// Release agents detached for longer than the grace time; returns how
    /// many.
    pub fn reap(&self, now: Instant) -> usize {
        let grace = Duration::from_secs_f64(self.cfg.grace_secs);
        let mut agents = self.agents.lock();
        let expired: Vec<(String, String)> = agents
            .iter()
            .filter(|(_, s)| !s.connected && s.detached_at.is_some_and(|t| now - t >= grace))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            let slot = agents.remove(k).expect("listed");
            if let Some(u) = self.tenants.lock().get_mut(&k.0) {
                u.agents = u.agents.saturating_sub(1);
            }
            if let Err(e) = self.store.release_agent(slot.id) {
                tracing::warn!(
                    "releasing {} ({}/{}) failed: {e}",
                    slot.id,
                    Escaped(&k.0),
                    Escaped(&k.1)
                );
            } else {
                tracing::info!(
                    "released {} ({}/{}) after {:.0?} disconnected",
                    slot.id,
                    Escaped(&k.0),
                    Escaped(&k.1),
                    grace
                );
            }
        }
        drop(agents);
        if !expired.is_empty() {
            self.drop_dead_segments();
        }
        expired.len()
    }

    /// Whether a client is connected for `agent`.
    pub fn is_connected(&self, agent: u32) -> bool {
        self.agents
            .lock()
            .values()
            .any(|s| s.id.0 == agent && s.connected)
    }

    /// Segments held and their bytes.
    pub fn segment_usage(&self) -> (u64, u64) {
        let s = self.segments.lock();
        (s.map.len() as u64, s.bytes)
    }

    fn drop_dead_segments(&self) {
        let mut segs = self.segments.lock();
        let dead: Vec<ContentId> = segs
            .map
            .keys()
            .filter(|id| self.store.unit_info(id).is_err())
            .copied()
            .collect();
        for id in dead {
            if let Some(s) = segs.map.remove(&id) {
                segs.bytes -= s.len();
            }
            segs.order.retain(|x| *x != id);
        }
    }

    /// The sealed segment for a unit, made on first use.
    fn segment(
        &self,
        id: &ContentId,
        kind: Kind,
        data: &[u8],
    ) -> std::io::Result<Arc<SealedSegment>> {
        if let Some(s) = self.segments.lock().map.get(id) {
            return Ok(s.clone());
        }
        let seg = Arc::new(SealedSegment::new(
            &format!("agentmem:{kind}:{:016x}", id.short()),
            data,
        )?);
        let mut segs = self.segments.lock();
        if let Some(s) = segs.map.get(id) {
            return Ok(s.clone());
        }
        segs.map.insert(*id, seg.clone());
        segs.order.push_back(*id);
        segs.bytes += seg.len();
        while segs.bytes > self.cfg.segment_cache.0 && segs.order.len() > 1 {
            let old = segs.order.pop_front().expect("non-empty");
            if let Some(s) = segs.map.remove(&old) {
                segs.bytes -= s.len();
            }
        }
        Ok(seg)
    }

    /// Serve one request for `session`.
    pub fn handle(&self, session: &Session, request: Request) -> Answer {
        let started = Instant::now();
        let kind = request.tag();
        let write = matches!(request, Request::Put { .. } | Request::Append { .. });
        let answer = self.dispatch(session, request);
        match &answer.body {
            Body::Response(Response::Error(e))
                if e.code == ErrorCode::NoSpace
                    && !self
                        .disk_full
                        .swap(true, std::sync::atomic::Ordering::Relaxed) =>
            {
                tracing::error!(
                    "writes refused: {}; logged once until a write succeeds again",
                    e.message
                );
            }
            Body::Response(Response::Error(_)) => {}
            _ if write
                && self
                    .disk_full
                    .swap(false, std::sync::atomic::Ordering::Relaxed) =>
            {
                tracing::info!("space returned: writes succeed again");
            }
            _ => {}
        }
        self.metrics.served(
            kind,
            started.elapsed(),
            matches!(answer.body, Body::Response(Response::Error(_))),
        );
        answer
    }

    fn dispatch(&self, session: &Session, request: Request) -> Answer {
        let agent = match (&request, session.agent) {
            (Request::Ping, _) => return Response::Pong.into(),
            (Request::Stats, _) => return Response::Stats(Box::new(self.stats_for(session))).into(),
            (_, Some(a)) => a,
            (r, None) => {
                return err(
                    ErrorCode::AccessDenied,
                    format!(
                        "{} needs an agent, and this connection has none (its hello named no agent): only ping and stats are allowed",
                        r.name()
                    ),
                )
                .into()
            }
        };
        let s = &self.store;
        let own_conv = |c: u32| -> Result<ConversationId, Response> {
            let c = ConversationId(c);
            match s.conversation_owner(c) {
                Ok(owner) if owner == agent => Ok(c),
                _ => Err(no_conversation(agent, c)),
            }
        };
        let unit = |id: &[u8; 32]| ContentId::from_bytes(*id);
        let read = |r: agentmem_core::Result<Vec<bytes::Bytes>>| -> Answer {
            match r {
                Ok(m) => Body::Messages(m).into(),
                Err(e) => store_err(agent, None, e).into(),
            }
        };
        let r = match request {
            Request::Ping | Request::Stats => unreachable!("answered above"),
            Request::Put {
                kind,
                visibility,
                data,
            } => {
                if let Err(e) = self.check_bytes(session, data.len()) {
                    return Response::Error(e).into();
                }
                s.put(agent, kind, &data, visibility)
                    .map(|id| Response::Id(*id.as_bytes()))
                    .unwrap_or_else(|e| store_err(agent, None, e))
            }
            Request::Get { id } => return self.get(agent, &unit(&id), true),
            Request::GetInline { id } => return self.get(agent, &unit(&id), false),
            Request::Share { id, to } => {
                let id = unit(&id);
                let to = AgentId(to);
                match s.agent_info(to) {
                    Ok(info) if info.tenant.0 == session.tenant => s
                        .share(agent, &id, to)
                        .map(|()| Response::Ok)
                        .unwrap_or_else(|e| store_err(agent, Some(&id), e)),
                    _ => err(
                        ErrorCode::NotFound,
                        format!(
                            "no agent {to} in tenant {}: units are shared only within a tenant",
                            session.tenant
                        ),
                    ),
                }
            }
            Request::Release { id } => {
                let id = unit(&id);
                match s.release(agent, &id) {
                    Ok(()) => {
                        if s.unit_info(&id).is_err() {
                            self.forget_segment(&id);
                        }
                        Response::Ok
                    }
                    Err(e) => store_err(agent, Some(&id), e),
                }
            }
            Request::MarkHot { id } => {
                let id = unit(&id);
                s.check_read(agent, &id)
                    .and_then(|()| s.mark_hot(agent, &id))
                    .map(|()| Response::Ok)
                    .unwrap_or_else(|e| store_err(agent, Some(&id), e))
            }
            Request::UnitInfo { id } => {
                let id = unit(&id);
                s.check_read(agent, &id)
                    .and_then(|()| s.unit_info(&id))
                    .map(|u| {
                        Response::Unit(UnitReport {
                            kind: u.kind,
                            tier: u.tier,
                            logical_bytes: u.logical_bytes,
                            stored_bytes: u.stored_bytes,
                            refs: u.refs,
                            visibility: u.visibility,
                        })
                    })
                    .unwrap_or_else(|e| store_err(agent, Some(&id), e))
            }
            Request::CreateConversation => s
                .create_conversation(agent)
                .map(|c| Response::Conversation(c.0))
                .unwrap_or_else(|e| store_err(agent, None, e)),
            Request::Append {
                conversation,
                message,
            } => match own_conv(conversation) {
                Ok(c) => match self.check_bytes(session, message.len()) {
                    Err(e) => Response::Error(e),
                    Ok(()) => s
                        .append(c, &message)
                        .map(Response::Index)
                        .unwrap_or_else(|e| store_err(agent, None, e)),
                },
                Err(r) => r,
            },
            Request::ReadMessages {
                conversation,
                start,
                end,
            } => {
                return match own_conv(conversation) {
                    Ok(c) => read(s.read_messages(c, start..end)),
                    Err(r) => r.into(),
                }
            }
            Request::ReadLast { conversation, n } => {
                return match own_conv(conversation) {
                    Ok(c) => read(s.read_last(c, n)),
                    Err(r) => r.into(),
                }
            }
            Request::ReadAll { conversation } => {
                return match own_conv(conversation) {
                    Ok(c) => read(s.read_all(c)),
                    Err(r) => r.into(),
                }
            }
            Request::ConversationLen { conversation } => match own_conv(conversation) {
                Ok(c) => s
                    .conversation_len(c)
                    .map(Response::Len)
                    .unwrap_or_else(|e| store_err(agent, None, e)),
                Err(r) => r,
            },
            Request::SetState { state } => s
                .set_state(agent, state)
                .map(|()| Response::Ok)
                .unwrap_or_else(|e| store_err(agent, None, e)),
            Request::SetImportance { importance } => s
                .set_importance(agent, Importance(importance))
                .map(|()| Response::Ok)
                .unwrap_or_else(|e| store_err(agent, None, e)),
            Request::Pause => s
                .pause(agent)
                .map(|()| Response::Ok)
                .unwrap_or_else(|e| store_err(agent, None, e)),
            Request::Resume => s
                .resume(agent)
                .map(|r| Response::Resumed {
                    units: r.units,
                    bytes: r.bytes,
                    micros: r.elapsed.as_micros() as u64,
                })
                .unwrap_or_else(|e| store_err(agent, None, e)),
            Request::AgentInfo => {
                let st = s.stats();
                match st.agents.iter().find(|a| a.agent == agent) {
                    Some(a) => Response::Agent(self.agent_report(a, &self.connected_set())),
                    None => err(ErrorCode::NotFound, format!("{agent} is not registered")),
                }
            }
        };
        r.into()
    }

    fn forget_segment(&self, id: &ContentId) {
        let mut segs = self.segments.lock();
        if let Some(s) = segs.map.remove(id) {
            segs.bytes -= s.len();
            segs.order.retain(|x| x != id);
        }
    }

    fn get(&self, agent: AgentId, id: &ContentId, allow_segment: bool) -> Answer {
        let data = match self.store.get_for(agent, id) {
            Ok(d) => d,
            Err(e) => return store_err(agent, Some(id), e).into(),
        };
        if allow_segment && data.len() as u64 >= self.cfg.share_threshold.0 {
            if let Ok(info) = self.store.unit_info(id) {
                if info.kind != Kind::Conversation {
                    match self.segment(id, info.kind, &data) {
                        Ok(seg) => {
                            self.metrics
                                .segments_sent
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            return Answer {
                                body: Body::Response(Response::Segment { len: seg.len() }),
                                segment: Some(seg),
                            };
                        }
                        Err(e) => {
                            tracing::warn!(
                                "cannot make a memfd segment for {id}, sending it inline: {e}"
                            )
                        }
                    }
                }
            }
        }
        Body::Data(data).into()
    }

    /// Agents with a connection now.
    fn connected_set(&self) -> std::collections::HashSet<u32> {
        self.agents
            .lock()
            .values()
            .filter(|s| s.connected)
            .map(|s| s.id.0)
            .collect()
    }

    fn agent_report(
        &self,
        a: &agentmem_core::AgentStats,
        connected: &std::collections::HashSet<u32>,
    ) -> AgentReport {
        AgentReport {
            id: a.agent.0,
            name: a.name.clone(),
            tenant: a.tenant.clone(),
            state: a.state,
            importance: a.importance,
            units: a.units,
            logical_bytes: a.logical_bytes,
            charged_bytes: a.charged_bytes,
            connected: connected.contains(&a.agent.0),
        }
    }

    /// The store's accounting as `session` may see it. An admin (root,
    /// the daemon's own uid, or a member of `admin_group`) sees every
    /// tenant and the daemon-wide figures; anyone else sees its own
    /// tenant's agents and totals summed over them, and none of the
    /// figures that other tenants' activity moves (per-kind totals, dedup
    /// hits, requests, segments, RAM accounting).
    pub fn stats_for(&self, session: &Session) -> StatsReport {
        use std::sync::atomic::Ordering::Relaxed;
        let st = self.store.stats();
        let connected = self.connected_set();
        let agents: Vec<AgentReport> = st
            .agents
            .iter()
            .filter(|a| session.admin || a.tenant == session.tenant)
            .map(|a| self.agent_report(a, &connected))
            .collect();
        let m = &self.metrics;
        let daemon = |connections, requests, errors, protocol_errors, (segments, segment_bytes)| {
            DaemonReport {
                connections,
                requests,
                errors,
                protocol_errors,
                segments,
                segment_bytes,
                uptime_secs: self.started.elapsed().as_secs(),
                data_dir: self.cfg.data_dir.display().to_string(),
                recovery_secs: self
                    .store
                    .open_report()
                    .map_or(0.0, |r| r.elapsed.as_secs_f64()),
            }
        };
        if !session.admin {
            let logical: u64 = agents.iter().map(|a| a.logical_bytes).sum();
            let charged: u64 = agents.iter().map(|a| a.charged_bytes).sum();
            let own_connections = self
                .tenants
                .lock()
                .get(&session.tenant)
                .map_or(0, |u| u.connections as u64);
            return StatsReport {
                kinds: Vec::new(),
                total_allocated: charged,
                total_deduplicated: 0,
                compression_ratio: if charged > 0 {
                    logical as f64 / charged as f64
                } else {
                    1.0
                },
                hot_bytes: 0,
                warm_bytes: 0,
                cold_bytes: 0,
                dedup_hits: 0,
                conversations: 0,
                accounted_ram_bytes: 0,
                ram_budget: st.ram_budget,
                hot_budget: st.hot_budget,
                agents,
                daemon: daemon(own_connections, 0, 0, 0, (0, 0)),
            };
        }
        StatsReport {
            kinds: st
                .kinds
                .iter()
                .map(|k| KindReport {
                    kind: k.kind.map_or("?", Kind::name).to_string(),
                    units: k.units,
                    logical_bytes: k.logical_bytes,
                    stored_bytes: k.stored_bytes,
                    hot_bytes: k.hot_bytes,
                    warm_bytes: k.warm_bytes,
                    cold_bytes: k.cold_bytes,
                })
                .collect(),
            total_allocated: st.mem.total_allocated,
            total_deduplicated: st.mem.total_deduplicated,
            compression_ratio: st.mem.compression_ratio,
            hot_bytes: st.mem.hot_bytes,
            warm_bytes: st.mem.warm_bytes,
            cold_bytes: st.mem.cold_bytes,
            dedup_hits: st.dedup_hits,
            conversations: st.conversations,
            accounted_ram_bytes: st.accounted_ram_bytes,
            ram_budget: st.ram_budget,
            hot_budget: st.hot_budget,
            agents,
            daemon: daemon(
                m.connections.load(Relaxed),
                m.requests.load(Relaxed),
                m.errors.load(Relaxed),
                m.protocol_errors.load(Relaxed),
                self.segment_usage(),
            ),
        }
    }

    /// The Prometheus text.
    pub fn render_metrics(&self) -> String {
        let st = self.store.stats();
        let connected = self.connected_set();
        self.metrics.render(&crate::metrics::Snapshot {
            stats: &st,
            connected: &|a| connected.contains(&a),
            segments: self.segment_usage(),
            rss: crate::sys::own_rss(),
            recovery: self.store.open_report(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Response) -> ErrorCode {
        match r {
            Response::Error(e) => e.code,
            r => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn store_errors_map_to_codes_by_type() {
        let agent = AgentId(1);
        let enospc = || std::io::Error::from_raw_os_error(28);
        // Directly, and wrapped the way a storage layer wraps it (a
        // custom io::Error whose payload is the OS error).
        for e in [
            StoreError::cold(enospc()),
            StoreError::cold(std::io::Error::other(enospc())),
            StoreError::cold(std::io::Error::from_raw_os_error(122)),
            StoreError::Cold(agentmem_core::tier::ColdError::DiskFull {
                dir: "/data".into(),
                what: "appending a record".into(),
            }),
        ] {
            let r = store_err(agent, None, e);
            let Response::Error(reply) = &r else {
                panic!("{r:?}")
            };
            assert_eq!(reply.code, ErrorCode::NoSpace, "{}", reply.message);
            assert!(reply.message.contains("data directory is full"));
        }
        // Same text, other type: not taken for a full disk.
        let text_only = StoreError::cold(std::io::Error::other(
            "No space left on device (os error 28)",
        ));
        assert_eq!(code(store_err(agent, None, text_only)), ErrorCode::Store);
        let eio = StoreError::cold(std::io::Error::from_raw_os_error(5));
        assert_eq!(code(store_err(agent, None, eio)), ErrorCode::Store);
        let big = StoreError::UnitTooLarge {
            kind: Kind::Blob,
            size: 10,
            max: 1,
        };
        assert_eq!(code(store_err(agent, None, big)), ErrorCode::TooLarge);
        let range = StoreError::OutOfRange {
            conversation: ConversationId(1),
            len: 0,
            what: "message 3".into(),
        };
        assert_eq!(code(store_err(agent, None, range)), ErrorCode::OutOfRange);
        let bad = StoreError::Corrupt {
            what: "unit".into(),
            detail: "checksum".into(),
        };
        assert_eq!(code(store_err(agent, None, bad)), ErrorCode::Corrupt);
    }
}
