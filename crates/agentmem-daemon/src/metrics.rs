//! Counters, latency histograms and the Prometheus text endpoint.
//!
//! Written by hand rather than with a metrics crate: the daemon needs a
//! dozen series, lock-free counters and one text format, which is less code
//! than adapting a registry, and the endpoint is a loopback-only `GET`
//! answered by a 30-line HTTP/1.0 responder instead of an HTTP stack.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use agentmem_core::{AgentState, Kind, Stats};
use agentmem_proto::{Request, REQUEST_KINDS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS: [f64; 14] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3,
    1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Count per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// The daemon's own counters.
#[derive(Debug)]
pub struct Metrics {
    /// Per request kind, in [`Request::NAMES`] order.
    pub latency: Vec<Histogram>,
    /// Requests served.
    pub requests: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Connections open.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections refused (limit, handshake).
    pub refused: AtomicU64,
    /// Units sent as memfd segments.
    pub segments_sent: AtomicU64,
    /// Bytes of answers encoded and not yet written, all connections.
    pub unsent_bytes: AtomicU64,
    /// The most `unsent_bytes` has been since start.
    pub unsent_peak: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            latency: (0..REQUEST_KINDS).map(|_| Histogram::default()).collect(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            segments_sent: AtomicU64::new(0),
            unsent_bytes: AtomicU64::new(0),
            unsent_peak: AtomicU64::new(0),
        }
    }
}

/// What the renderer needs besides the counters.
pub struct Snapshot<'a> {
    /// The store's stats.
    pub stats: &'a Stats,
    /// Which agents have a connection now.
    pub connected: &'a dyn Fn(u32) -> bool,
    /// Memfd segments held and their bytes.
    pub segments: (u64, u64),
    /// The daemon's resident memory.
    pub rss: Option<u64>,
    /// What opening the store from its data directory took, if it was.
    pub recovery: Option<agentmem_core::OpenReport>,
}

impl std::fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("segments", &self.segments)
            .field("rss", &self.rss)
            .finish_non_exhaustive()
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Record a served request.
    pub fn served(&self, kind: usize, d: Duration, error: bool) {
        self.requests.fetch_add(1, Relaxed);
        if error {
            self.errors.fetch_add(1, Relaxed);
        }
        if let Some(h) = self.latency.get(kind) {
            h.observe(d);
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, snap: &Snapshot<'_>) -> String {
        let mut o = String::with_capacity(8192);
        let st = snap.stats;
        let _ = writeln!(o, "# HELP agentmem_stored_bytes Bytes held per kind and tier.\n# TYPE agentmem_stored_bytes gauge");
        for k in &st.kinds {
            let kind = k.kind.map_or("?", Kind::name);
            for (tier, v) in [
                ("hot", k.hot_bytes),
                ("warm", k.warm_bytes),
                ("cold", k.cold_bytes),
            ] {
                let _ = writeln!(
                    o,
                    "agentmem_stored_bytes{{kind=\"{kind}\",tier=\"{tier}\"}} {v}"
                );
            }
        }
        let _ = writeln!(o, "# HELP agentmem_logical_bytes Bytes as agents see them (every reference), per kind.\n# TYPE agentmem_logical_bytes gauge");
        for k in &st.kinds {
            let kind = k.kind.map_or("?", Kind::name);
            let _ = writeln!(
                o,
                "agentmem_logical_bytes{{kind=\"{kind}\"}} {}",
                k.logical_bytes
            );
        }
        let _ = writeln!(
            o,
            "# HELP agentmem_units Distinct units held, per kind.\n# TYPE agentmem_units gauge"
        );
        for k in &st.kinds {
            let kind = k.kind.map_or("?", Kind::name);
            let _ = writeln!(o, "agentmem_units{{kind=\"{kind}\"}} {}", k.units);
        }
        let _ = writeln!(o, "# HELP agentmem_dedup_hits_total Puts that found their content already stored.\n# TYPE agentmem_dedup_hits_total counter\nagentmem_dedup_hits_total {}", st.dedup_hits);
        let _ = writeln!(o, "# HELP agentmem_deduplicated_bytes Bytes not stored thanks to deduplication.\n# TYPE agentmem_deduplicated_bytes gauge\nagentmem_deduplicated_bytes {}", st.mem.total_deduplicated);
        let _ = writeln!(o, "# HELP agentmem_accounted_ram_bytes The store's estimate of its RAM.\n# TYPE agentmem_accounted_ram_bytes gauge\nagentmem_accounted_ram_bytes {}", st.accounted_ram_bytes);
        if let Some(rss) = snap.rss {
            let _ = writeln!(o, "# HELP agentmem_daemon_resident_bytes Resident memory of agentmemd.\n# TYPE agentmem_daemon_resident_bytes gauge\nagentmem_daemon_resident_bytes {rss}");
        }
        if let Some(r) = snap.recovery {
            let _ = writeln!(o, "# HELP agentmem_recovery_seconds Wall time of opening the store from its data directory at start.\n# TYPE agentmem_recovery_seconds gauge\nagentmem_recovery_seconds {}", r.elapsed.as_secs_f64());
            let _ = writeln!(o, "# HELP agentmem_recovered_units Units restored from the data directory at start.\n# TYPE agentmem_recovered_units gauge\nagentmem_recovered_units {}", r.units);
        }
        let _ = writeln!(
            o,
            "# HELP agentmem_agents Agents per state.\n# TYPE agentmem_agents gauge"
        );
        for s in AgentState::ALL {
            let n = st.agents.iter().filter(|a| a.state == s).count();
            let _ = writeln!(o, "agentmem_agents{{state=\"{s}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP agentmem_agent_bytes Stored bytes charged to an agent (shared units proportionally).\n# TYPE agentmem_agent_bytes gauge");
        for a in &st.agents {
            let _ = writeln!(
                o,
                "agentmem_agent_bytes{{agent=\"{}\",name=\"{}\",tenant=\"{}\",state=\"{}\",connected=\"{}\"}} {}",
                a.agent.0,
                esc(&a.name),
                esc(&a.tenant),
                a.state,
                (snap.connected)(a.agent.0),
                a.charged_bytes
            );
        }
        let _ = writeln!(o, "# HELP agentmem_agent_logical_bytes Plain bytes of everything an agent references.\n# TYPE agentmem_agent_logical_bytes gauge");
        for a in &st.agents {
            let _ = writeln!(
                o,
                "agentmem_agent_logical_bytes{{agent=\"{}\",name=\"{}\",tenant=\"{}\"}} {}",
                a.agent.0,
                esc(&a.name),
                esc(&a.tenant),
                a.logical_bytes
            );
        }
        let _ = writeln!(o, "# HELP agentmem_segments Sealed memfd segments held, and their bytes.\n# TYPE agentmem_segments gauge\nagentmem_segments {}\nagentmem_segment_bytes {}", snap.segments.0, snap.segments.1);
        for (name, help, v) in [
            (
                "agentmem_connections",
                "Connections open.",
                &self.connections,
            ),
            (
                "agentmem_connections_accepted_total",
                "Connections accepted.",
                &self.accepted,
            ),
            (
                "agentmem_connections_refused_total",
                "Connections refused (limit, handshake).",
                &self.refused,
            ),
            (
                "agentmem_requests_total",
                "Requests served.",
                &self.requests,
            ),
            (
                "agentmem_request_errors_total",
                "Requests answered with an error.",
                &self.errors,
            ),
            (
                "agentmem_protocol_errors_total",
                "Connections closed for a protocol error.",
                &self.protocol_errors,
            ),
            (
                "agentmem_unsent_answer_bytes",
                "Bytes of answers encoded and not yet written to their clients.",
                &self.unsent_bytes,
            ),
            (
                "agentmem_unsent_answer_bytes_peak",
                "The most bytes of answers that were ever unsent at once.",
                &self.unsent_peak,
            ),
            (
                "agentmem_segments_sent_total",
                "Units sent as memfd segments.",
                &self.segments_sent,
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP agentmem_request_duration_seconds Time to serve a request, by kind.\n# TYPE agentmem_request_duration_seconds histogram");
        for (i, h) in self.latency.iter().enumerate() {
            let count = h.count();
            if count == 0 {
                continue;
            }
            let name = Request::NAMES[i];
            let mut cum = 0;
            for (j, b) in BUCKETS.iter().enumerate() {
                cum += h.buckets[j].load(Relaxed);
                let _ = writeln!(o, "agentmem_request_duration_seconds_bucket{{request=\"{name}\",le=\"{b}\"}} {cum}");
            }
            cum += h.buckets[BUCKETS.len()].load(Relaxed);
            let _ = writeln!(
                o,
                "agentmem_request_duration_seconds_bucket{{request=\"{name}\",le=\"+Inf\"}} {cum}"
            );
            let _ = writeln!(
                o,
                "agentmem_request_duration_seconds_sum{{request=\"{name}\"}} {}",
                h.sum_ns.load(Relaxed) as f64 / 1e9
            );
            let _ = writeln!(
                o,
                "agentmem_request_duration_seconds_count{{request=\"{name}\"}} {count}"
            );
        }
        o
    }
}

/// Serve `GET /metrics` on `listener` until `shutdown` fires. `render`
/// produces the body.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    let n = sock.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
            let (status, ctype, body) =
                if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
                    ("200 OK", "text/plain; version=0.0.4", render())
                } else {
                    (
                        "404 Not Found",
                        "text/plain",
                        "only GET /metrics is served here\n".to_string(),
                    )
                };
            let resp = format!(
                "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_text() {
        let m = Metrics::default();
        m.served(2, Duration::from_micros(3), false);
        m.served(2, Duration::from_micros(30), false);
        m.served(2, Duration::from_secs(3), true);
        let store = agentmem_core::Store::builder().build().unwrap();
        let stats = store.stats();
        let text = m.render(&Snapshot {
            stats: &stats,
            connected: &|_| false,
            segments: (0, 0),
            rss: None,
            recovery: None,
        });
        assert!(
            text.contains(
                "agentmem_request_duration_seconds_bucket{request=\"get\",le=\"0.000005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "agentmem_request_duration_seconds_bucket{request=\"get\",le=\"0.00005\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "agentmem_request_duration_seconds_bucket{request=\"get\",le=\"+Inf\"} 3"
            ),
            "{text}"
        );
        assert!(text.contains("agentmem_request_errors_total 1"));
        assert!(!text.contains("request=\"put\""));
        assert!(!text.contains("agentmem_recovery_seconds"));
        let text = m.render(&Snapshot {
            stats: &stats,
            connected: &|_| false,
            segments: (0, 0),
            rss: None,
            recovery: Some(agentmem_core::OpenReport {
                restored: true,
                units: 7,
                elapsed: Duration::from_millis(250),
                ..Default::default()
            }),
        });
        assert!(text.contains("agentmem_recovery_seconds 0.25\n"), "{text}");
        assert!(text.contains("agentmem_recovered_units 7\n"), "{text}");
    }
}
