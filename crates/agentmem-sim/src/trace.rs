//! Trace formats, readers and writers, and the in-memory trace the
//! simulator replays.
//!
//! # Formats
//!
//! - **oracleGeneral** (libCacheSim's binary format, so traces move both
//!   ways): little-endian records of 24 bytes, `u32 time, u64 obj_id,
//!   u32 size, i64 next_access_vtime` (`-1` = never again). `time` is in
//!   seconds; the vtime is the index of the object's next request.
//! - **agent** (agentmem's agent-aware format): the 8-byte magic
//!   [`AGENT_MAGIC`], then little-endian records of 28 bytes, `u64 time_ns,
//!   u64 obj_id, u32 size, u32 agent (u32::MAX = none), u8 kind, u8 op,
//!   u8 agent_state, u8 reserved (0)`. `kind` is
//!   [`agentmem_core::Kind`]'s index, `agent_state` is
//!   [`agentmem_core::AgentState`]'s index, and `op` is an [`Op`] code: the
//!   store's [`agentmem_core::trace::AccessOp`] codes 0–4 plus
//!   [`Op::AgentState`] (5), a record that only tells that the agent entered
//!   `agent_state` at `time_ns` (its `obj_id` and `size` are 0).
//! - **lirs**: text, one integer key per line; blank lines and `*` markers
//!   are skipped (as the caffeine simulator does).
//! - **cache2k**: big-endian `u32` keys, nothing else.
//! - **csv**: `time,obj_id[,size]` per line, an optional header line.
//!
//! Any of them may be compressed; a `.gz`, `.xz` or `.zst` suffix picks the
//! decompressor. Keys of text and key-only formats get size 1 and their
//! position as time.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use agentmem_core::trace::AccessOp;
use agentmem_core::{AgentState, Kind};

use crate::error::{Error, Result};

/// First bytes of an agent-aware trace.
pub const AGENT_MAGIC: &[u8; 8] = b"AMTRACE1";
/// Bytes per agent-aware record.
pub const AGENT_RECORD_LEN: usize = 28;
/// Bytes per oracleGeneral record.
pub const ORACLE_RECORD_LEN: usize = 24;
/// The agent field of a record that belongs to no agent.
pub const NO_AGENT: u32 = u32::MAX;

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// A unit was stored.
    Put = 0,
    /// A unit was read.
    Get = 1,
    /// A reference was released (not a request: the simulator skips it).
    Release = 2,
    /// A message was appended to a conversation.
    Append = 3,
    /// A unit was prefetched back to hot.
    Prefetch = 4,
    /// The agent entered the record's state (not a request).
    AgentState = 5,
}

impl Op {
    /// The op with this code, if any.
    pub const fn from_u8(v: u8) -> Option<Op> {
        match v {
            0 => Some(Op::Put),
            1 => Some(Op::Get),
            2 => Some(Op::Release),
            3 => Some(Op::Append),
            4 => Some(Op::Prefetch),
            5 => Some(Op::AgentState),
            _ => None,
        }
    }

    /// Whether the simulator replays this record (reads and writes).
    pub const fn is_request(self) -> bool {
        !matches!(self, Op::Release | Op::AgentState)
    }

    /// Whether this record writes new content: the simulator places the
    /// unit in the cache (write-allocate) without counting a request or a
    /// miss, since a store never fetches what it is given.
    pub const fn is_write(self) -> bool {
        matches!(self, Op::Put | Op::Append)
    }
}

impl From<AccessOp> for Op {
    fn from(op: AccessOp) -> Op {
        match op {
            AccessOp::Put => Op::Put,
            AccessOp::Get => Op::Get,
            AccessOp::Release => Op::Release,
            AccessOp::Append => Op::Append,
            AccessOp::Prefetch => Op::Prefetch,
        }
    }
}

/// One record of a trace, in any format (fields a format lacks get defaults:
/// no agent, kind blob, op get, state active).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Time: nanoseconds for agent traces, seconds for oracleGeneral, the
    /// position for key-only formats.
    pub time: u64,
    /// The object.
    pub obj: u64,
    /// Its size in bytes.
    pub size: u32,
    /// The agent, or [`NO_AGENT`].
    pub agent: u32,
    /// The unit's kind.
    pub kind: Kind,
    /// What was done.
    pub op: Op,
    /// The agent's state.
    pub state: AgentState,
}

impl Record {
    /// A plain request for `obj` of `size` bytes at `time`.
    pub const fn plain(time: u64, obj: u64, size: u32) -> Record {
        Record {
            time,
            obj,
            size,
            agent: NO_AGENT,
            kind: Kind::Blob,
            op: Op::Get,
            state: AgentState::Active,
        }
    }
}

/// The trace file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// libCacheSim oracleGeneral.
    OracleGeneral,
    /// agentmem's agent-aware binary format.
    Agent,
    /// One integer key per line.
    Lirs,
    /// Big-endian u32 keys.
    Cache2k,
    /// `time,obj_id[,size]`.
    Csv,
}

impl FromStr for TraceFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "oracle-general" | "oraclegeneral" | "og" => TraceFormat::OracleGeneral,
            "agent" => TraceFormat::Agent,
            "lirs" | "text" => TraceFormat::Lirs,
            "cache2k" | "be32" => TraceFormat::Cache2k,
            "csv" => TraceFormat::Csv,
            _ => {
                return Err(Error::arg(
                    "trace format",
                    s,
                    "expected one of oracle-general, agent, lirs, cache2k, csv",
                ))
            }
        })
    }
}

impl TraceFormat {
    /// The format a file's name suggests: `*.oracleGeneral*`, `*.og*`,
    /// `*.amt*`, `*.csv*`, `lirs_*`/`*.txt*`, `cache2k_*`.
    pub fn detect(path: &Path) -> Result<TraceFormat> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let has = |s: &str| name.contains(s);
        let fmt = if has("oracleGeneral") || has(".og") {
            TraceFormat::OracleGeneral
        } else if has(".amt") {
            TraceFormat::Agent
        } else if has(".csv") {
            TraceFormat::Csv
        } else if name.starts_with("lirs_") || has(".txt") {
            TraceFormat::Lirs
        } else if name.starts_with("cache2k_") {
            TraceFormat::Cache2k
        } else {
            return Err(Error::UnknownFormat { path: path.into() });
        };
        Ok(fmt)
    }
}

/// Open `path`, decompressing by suffix.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let f = File::open(path).map_err(|e| Error::io("opening trace", path, e))?;
    let name = path.to_string_lossy();
    let f = BufReader::with_capacity(1 << 16, f);
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(f))
    } else if name.ends_with(".zst") {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(f)
                .map_err(|e| Error::io("opening zstd trace", path, e))?,
        )
    } else {
        Box::new(f)
    })
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    open(path)?
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading trace", path, e))?;
    Ok(buf)
}

fn malformed(path: &Path, location: String, reason: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.into(),
        location,
        reason: reason.into(),
    }
}

fn check_whole_records(path: &Path, len: usize, rec: usize, skip: usize) -> Result<()> {
    let body = len - skip;
    if body % rec != 0 {
        let n = body / rec;
        return Err(malformed(
            path,
            format!("record {n} (byte offset {})", skip + n * rec),
            format!(
                "truncated: {} trailing bytes, records are {rec} bytes",
                body % rec
            ),
        ));
    }
    Ok(())
}

/// Read every record of a trace file. With `format` `None` the format is
/// told from the name (and an agent trace by its magic).
pub fn read_records(path: &Path, format: Option<TraceFormat>) -> Result<Vec<Record>> {
    let format = match format {
        Some(f) => f,
        None => TraceFormat::detect(path)?,
    };
    match format {
        TraceFormat::OracleGeneral => {
            let buf = read_all(path)?;
            check_whole_records(path, buf.len(), ORACLE_RECORD_LEN, 0)?;
            Ok(buf
                .chunks_exact(ORACLE_RECORD_LEN)
                .map(|c| {
                    let t = u32::from_le_bytes(c[0..4].try_into().unwrap_or_default());
                    let o = u64::from_le_bytes(c[4..12].try_into().unwrap_or_default());
                    let s = u32::from_le_bytes(c[12..16].try_into().unwrap_or_default());
                    Record::plain(u64::from(t), o, s)
                })
                .collect())
        }
        TraceFormat::Agent => {
            let buf = read_all(path)?;
            if buf.len() < AGENT_MAGIC.len() || &buf[..8] != AGENT_MAGIC {
                return Err(malformed(
                    path,
                    "byte offset 0".into(),
                    "not an agent trace (missing AMTRACE1 magic)",
                ));
            }
            check_whole_records(path, buf.len(), AGENT_RECORD_LEN, 8)?;
            buf[8..]
                .chunks_exact(AGENT_RECORD_LEN)
                .enumerate()
                .map(|(i, c)| {
                    decode_agent(c).map_err(|reason| {
                        malformed(
                            path,
                            format!("record {i} (byte offset {})", 8 + i * AGENT_RECORD_LEN),
                            reason,
                        )
                    })
                })
                .collect()
        }
        TraceFormat::Cache2k => {
            let buf = read_all(path)?;
            check_whole_records(path, buf.len(), 4, 0)?;
            Ok(buf
                .chunks_exact(4)
                .enumerate()
                .map(|(i, c)| {
                    let k = u32::from_be_bytes(c.try_into().unwrap_or_default());
                    Record::plain(i as u64, u64::from(k), 1)
                })
                .collect())
        }
        TraceFormat::Lirs => {
            let mut out = Vec::new();
            for (n, line) in BufReader::new(open(path)?).lines().enumerate() {
                let line = line.map_err(|e| Error::io("reading trace", path, e))?;
                let line = line.trim();
                if line.is_empty() || line == "*" {
                    continue;
                }
                let k: u64 = line.parse().map_err(|_| {
                    malformed(
                        path,
                        format!("line {}", n + 1),
                        format!("not an integer key: {line:?}"),
                    )
                })?;
                out.push(Record::plain(out.len() as u64, k, 1));
            }
            Ok(out)
        }
        TraceFormat::Csv => read_csv(path),
    }
}

/// CSV parsing is written by hand: the format is three integer columns, and
/// a CSV crate would add a dependency for quoting rules these files never use.
fn read_csv(path: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (n, line) in BufReader::new(open(path)?).lines().enumerate() {
        let line = line.map_err(|e| Error::io("reading trace", path, e))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |what: &str| malformed(path, format!("line {}", n + 1), what.to_string());
        if n == 0 && cols.first().is_some_and(|c| c.parse::<u64>().is_err()) {
            continue; // header
        }
        if cols.len() < 2 || cols.len() > 3 {
            return Err(bad("expected time,obj_id[,size]"));
        }
        let time = cols[0].parse().map_err(|_| bad("time is not an integer"))?;
        let obj = cols[1]
            .parse()
            .map_err(|_| bad("obj_id is not an integer"))?;
        let size = match cols.get(2) {
            Some(s) => s.parse().map_err(|_| bad("size is not a u32"))?,
            None => 1,
        };
        out.push(Record::plain(time, obj, size));
    }
    Ok(out)
}

fn decode_agent(c: &[u8]) -> std::result::Result<Record, String> {
    let time = u64::from_le_bytes(c[0..8].try_into().unwrap_or_default());
    let obj = u64::from_le_bytes(c[8..16].try_into().unwrap_or_default());
    let size = u32::from_le_bytes(c[16..20].try_into().unwrap_or_default());
    let agent = u32::from_le_bytes(c[20..24].try_into().unwrap_or_default());
    let kind = Kind::from_index(c[24]).ok_or_else(|| format!("unknown kind {}", c[24]))?;
    let op = Op::from_u8(c[25]).ok_or_else(|| format!("unknown op {}", c[25]))?;
    let state =
        AgentState::from_index(c[26]).ok_or_else(|| format!("unknown agent state {}", c[26]))?;
    Ok(Record {
        time,
        obj,
        size,
        agent,
        kind,
        op,
        state,
    })
}

/// Encode one agent-aware record.
pub fn encode_agent(r: &Record) -> [u8; AGENT_RECORD_LEN] {
    let mut b = [0u8; AGENT_RECORD_LEN];
    b[0..8].copy_from_slice(&r.time.to_le_bytes());
    b[8..16].copy_from_slice(&r.obj.to_le_bytes());
    b[16..20].copy_from_slice(&r.size.to_le_bytes());
    b[20..24].copy_from_slice(&r.agent.to_le_bytes());
    b[24] = r.kind as u8;
    b[25] = r.op as u8;
    b[26] = r.state as u8;
    b
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).map_err(|e| Error::io("creating trace", path, e))?;
    Ok(BufWriter::with_capacity(1 << 16, f))
}

/// Write records as an agent-aware trace.
pub fn write_agent_trace(path: &Path, records: &[Record]) -> Result<()> {
    let mut w = create(path)?;
    let io = |e| Error::io("writing trace", path, e);
    w.write_all(AGENT_MAGIC).map_err(io)?;
    for r in records {
        w.write_all(&encode_agent(r)).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Write the requests among `records` as an oracleGeneral trace (time
/// truncated to u32 seconds when `time_is_ns`), computing each request's
/// next access.
pub fn write_oracle_general(path: &Path, records: &[Record], time_is_ns: bool) -> Result<()> {
    let reqs: Vec<&Record> = records.iter().filter(|r| r.op.is_request()).collect();
    let mut next = vec![-1i64; reqs.len()];
    let mut last = std::collections::HashMap::new();
    for i in (0..reqs.len()).rev() {
        if let Some(&j) = last.get(&reqs[i].obj) {
            next[i] = j as i64;
        }
        last.insert(reqs[i].obj, i);
    }
    let mut w = create(path)?;
    let io = |e| Error::io("writing trace", path, e);
    for (r, n) in reqs.iter().zip(next) {
        let t = if time_is_ns {
            r.time / 1_000_000_000
        } else {
            r.time
        };
        w.write_all(&(t.min(u64::from(u32::MAX)) as u32).to_le_bytes())
            .map_err(io)?;
        w.write_all(&r.obj.to_le_bytes()).map_err(io)?;
        w.write_all(&r.size.to_le_bytes()).map_err(io)?;
        w.write_all(&n.to_le_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// One request (or agent-state record) of a loaded trace, with its object
/// renamed to a dense id and its next request precomputed.
#[derive(Clone, Copy, Debug)]
pub struct Req {
    /// Time, as in [`Record::time`].
    pub time: u64,
    /// Dense object id, `0..Trace::objects`.
    pub id: u32,
    /// Size in bytes.
    pub size: u32,
    /// Index (in [`Trace::reqs`]) of the next request for the same object,
    /// or [`Req::NEVER`].
    pub next: u32,
    /// The agent, or [`NO_AGENT`].
    pub agent: u32,
    /// The unit's kind.
    pub kind: Kind,
    /// What was done.
    pub op: Op,
    /// The agent's state.
    pub state: AgentState,
}

impl Req {
    /// [`Req::next`] of a request whose object is never requested again.
    pub const NEVER: u32 = u32::MAX;
}

/// A trace loaded for replay.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Where it came from.
    pub name: String,
    /// Requests and agent-state records, in order.
    pub reqs: Vec<Req>,
    /// Number of distinct objects.
    pub objects: usize,
    /// Number of requests: replayed records that are not writes.
    pub requests: u64,
    /// Sum of the distinct objects' sizes (their last seen size).
    pub footprint_bytes: u64,
    /// Whether the trace carries agents.
    pub agent_aware: bool,
}

impl Trace {
    /// Load a trace file.
    pub fn load(path: &Path, format: Option<TraceFormat>) -> Result<Trace> {
        let records = read_records(path, format)?;
        Trace::from_records(path.display().to_string(), &records).map_err(|reason| {
            Error::Malformed {
                path: PathBuf::from(path),
                location: "whole file".into(),
                reason,
            }
        })
    }

    /// Build a trace from records.
    pub fn from_records(name: String, records: &[Record]) -> std::result::Result<Trace, String> {
        if records.len() >= u32::MAX as usize {
            return Err(format!(
                "{} records; at most {} are supported",
                records.len(),
                u32::MAX - 1
            ));
        }
        let mut ids = std::collections::HashMap::with_capacity(records.len() / 4);
        let mut sizes: Vec<u32> = Vec::new();
        let mut reqs = Vec::with_capacity(records.len());
        let mut requests = 0;
        let mut agent_aware = false;
        for r in records {
            agent_aware |= r.agent != NO_AGENT;
            let id = if r.op.is_request() {
                if !r.op.is_write() {
                    requests += 1;
                }
                let next_id = ids.len() as u32;
                let id = *ids.entry(r.obj).or_insert(next_id);
                if id as usize == sizes.len() {
                    sizes.push(r.size);
                } else {
                    sizes[id as usize] = r.size;
                }
                id
            } else {
                u32::MAX
            };
            reqs.push(Req {
                time: r.time,
                id,
                size: r.size,
                next: Req::NEVER,
                agent: r.agent,
                kind: r.kind,
                op: r.op,
                state: r.state,
            });
        }
        let mut last = vec![Req::NEVER; ids.len()];
        for (i, q) in reqs.iter_mut().enumerate().rev() {
            if q.op.is_request() {
                q.next = last[q.id as usize];
                last[q.id as usize] = i as u32;
            }
        }
        Ok(Trace {
            name,
            reqs,
            objects: ids.len(),
            requests,
            footprint_bytes: sizes.iter().map(|&s| u64::from(s)).sum(),
            agent_aware,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_rec(i: u64) -> Record {
        Record {
            time: i * 1000,
            obj: i % 7,
            size: 100 + i as u32,
            agent: (i % 3) as u32,
            kind: Kind::ALL[(i % 5) as usize],
            op: if i % 4 == 0 { Op::AgentState } else { Op::Get },
            state: AgentState::ALL[(i % 6) as usize],
        }
    }

    #[test]
    fn agent_format_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.amt");
        let recs: Vec<Record> = (0..50).map(agent_rec).collect();
        write_agent_trace(&p, &recs).unwrap();
        assert_eq!(read_records(&p, None).unwrap(), recs);
    }

    #[test]
    fn oracle_general_round_trips_requests_and_next_access() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.oracleGeneral");
        let recs: Vec<Record> = [5u64, 6, 5, 7, 6]
            .iter()
            .enumerate()
            .map(|(i, &k)| Record::plain(i as u64, k, 10))
            .collect();
        write_oracle_general(&p, &recs, false).unwrap();
        let raw = std::fs::read(&p).unwrap();
        let next: Vec<i64> = raw
            .chunks_exact(24)
            .map(|c| i64::from_le_bytes(c[16..24].try_into().unwrap()))
            .collect();
        assert_eq!(next, vec![2, 4, -1, -1, -1]);
        assert_eq!(read_records(&p, None).unwrap(), recs);
    }

    #[test]
    fn truncated_and_malformed_files_name_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.amt");
        let recs: Vec<Record> = (0..3).map(agent_rec).collect();
        write_agent_trace(&p, &recs).unwrap();
        let mut raw = std::fs::read(&p).unwrap();
        raw.truncate(raw.len() - 5);
        std::fs::write(&p, &raw).unwrap();
        let e = read_records(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("record 2 (byte offset 64)") && e.contains("t.amt"),
            "{e}"
        );
        raw[8 + 24] = 9; // kind of record 0
        raw.truncate(8 + 28);
        std::fs::write(&p, &raw).unwrap();
        let e = read_records(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("record 0") && e.contains("unknown kind 9"),
            "{e}"
        );

        let t = dir.path().join("x.txt");
        std::fs::write(&t, "1\n2\n*\nthree\n").unwrap();
        let e = read_records(&t, None).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("three"), "{e}");

        let c = dir.path().join("y.csv");
        std::fs::write(&c, "time,obj,size\n1,2,3\n4,5\n6,x,1\n").unwrap();
        let e = read_records(&c, None).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
        assert!(read_records(Path::new("mystery.bin"), None)
            .unwrap_err()
            .to_string()
            .contains("cannot tell the format"));
    }

    #[test]
    fn compressed_key_formats_decode() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("lirs_t.trace.gz");
        let mut e = flate2::write::GzEncoder::new(File::create(&g).unwrap(), Default::default());
        e.write_all(b"3\r\n*\n\n4\n3\n").unwrap();
        e.finish().unwrap();
        let keys: Vec<u64> = read_records(&g, None)
            .unwrap()
            .iter()
            .map(|r| r.obj)
            .collect();
        assert_eq!(keys, vec![3, 4, 3]);

        let x = dir.path().join("cache2k_t.trace.xz");
        let mut e = xz2::write::XzEncoder::new(File::create(&x).unwrap(), 1);
        e.write_all(&[0, 0, 1, 0, 0, 0, 0, 7, 0, 0, 1]).unwrap();
        e.finish().unwrap();
        let err = read_records(&x, None).unwrap_err().to_string();
        assert!(err.contains("record 2 (byte offset 8)"), "{err}");
    }

    #[test]
    fn loaded_trace_links_next_requests_and_skips_state_records() {
        let recs: Vec<Record> = (0..20).map(agent_rec).collect();
        let t = Trace::from_records("t".into(), &recs).unwrap();
        assert_eq!(t.requests, 15);
        for (i, q) in t.reqs.iter().enumerate() {
            if !q.op.is_request() {
                continue;
            }
            let expect = t.reqs[i + 1..]
                .iter()
                .position(|r| r.op.is_request() && r.id == q.id)
                .map_or(Req::NEVER, |p| (i + 1 + p) as u32);
            assert_eq!(q.next, expect);
        }
    }
}
