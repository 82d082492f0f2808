//! Agent archives: one self-contained, versioned, checksummed file holding
//! everything an agent needs to live in another store.
//!
//! ## File layout (format version 1)
//!
//! ```text
//! file header, 20 bytes
//!      0   8  magic "AMARCHIV"
//!      8   4  format version, u32 LE (1)
//!     12   4  section count, u32 LE (4)
//!     16   4  CRC-32C of bytes 0..16
//! then each section
//!      0   4  section kind, u32 LE (1 meta, 2 dictionaries, 3 units, 4 conversations)
//!      4   8  payload length, u64 LE
//!     12  32  BLAKE3 of the payload
//!     44   4  CRC-32C of the 44 bytes before
//!     48   …  payload: postcard of the section's data
//! file trailer, 16 bytes
//!      0   8  magic "AMARCEND"
//!      8   8  length of the whole file, u64 LE
//! ```
//!
//! Sections come in the order above, each once. A reader checks the magic,
//! the version, every header's CRC, every payload's BLAKE3 and the trailer,
//! then that the parts agree with each other ([`AgentArchive::validate`]),
//! and names what is wrong in an [`ArchiveError`]. Writing goes to a
//! temporary file in the target's directory, fsynced, renamed over the
//! target, then the directory fsynced: nothing half-written is ever read
//! under the archive's name.
//!
//! ## How the store will fill and read these types (plan)
//!
//! The types are plain data so that the store can produce and consume them
//! without this crate knowing its internals. Once the store's
//! restructuring lands, `Store::export_agent(name) -> AgentArchive` will,
//! under the store lock only long enough to copy the agent's unit list and
//! conversation shapes, gather: the agent's metadata; for every unit it
//! references, the frame as stored (warm or cold bytes, hot units
//! compressed first) with its encoding tag, its delta base (added to the
//! archive too) and the dictionaries those frames need; for every
//! conversation, its sealed chunk ids in order and its open chunk's bytes.
//! Forked conversations keep sharing chunks because chunks are referred to
//! by id.
//!
//! `Store::import_agent(&AgentArchive)` must guarantee:
//! - only what is missing is stored: a unit whose content the store holds
//!   already gets a reference, not a copy (public ids are the same in every
//!   store; private ids are salted per store, so import re-derives them
//!   from the plain bytes under the target tenant and maps archive ids to
//!   store ids);
//! - frames whose dictionary the target store has under another version
//!   (or not at all) are re-encoded, never decoded with the wrong
//!   dictionary; every unit is checked against `plain_check` after
//!   decoding;
//! - nothing changes in the store when the import fails: the archive is
//!   read and validated whole, every frame decoded and checked, and the
//!   agent name checked free before the first change, and the changes are
//!   installed in one step (and one redo record).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// First bytes of every archive.
pub const MAGIC: [u8; 8] = *b"AMARCHIV";
/// Last bytes' magic.
pub const TRAILER_MAGIC: [u8; 8] = *b"AMARCEND";
/// The archive format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const FILE_HEADER_LEN: usize = 20;
const SECTION_HEADER_LEN: usize = 48;
const TRAILER_LEN: usize = 16;

/// An agent, whole: what an export produces and an import consumes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentArchive {
    /// Who the agent is.
    pub meta: AgentMeta,
    /// The dictionaries the units' frames need.
    pub dictionaries: Vec<ArchivedDictionary>,
    /// Every unit the agent references, and the delta bases they need.
    pub units: Vec<ArchivedUnit>,
    /// The agent's conversations.
    pub conversations: Vec<ArchivedConversation>,
}

/// The agent's metadata and state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMeta {
    /// The agent's name in its store.
    pub name: String,
    /// Its tenant's name.
    pub tenant: String,
    /// Its state, by `agentmem_core::AgentState::name` (`paused`, ...).
    pub state: String,
    /// Its importance (`agentmem_core::Importance`).
    pub importance: u8,
    /// When the export was made, milliseconds since the Unix epoch.
    pub exported_at_ms: u64,
    /// Free text naming the source (host, store directory), for people.
    pub source: String,
}

/// Who may see a unit (mirrors `agentmem_core::Visibility`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchivedVisibility {
    /// Public content: one dedup domain for everybody.
    Public,
    /// Private to the agent's tenant.
    #[default]
    Private,
}

/// One unit: its frame as the source store held it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedUnit {
    /// Its content id in the source store.
    pub id: [u8; 32],
    /// Its kind, by `agentmem_core::Kind::index` (0 system prompt, 1 tool
    /// definitions, 2 conversation chunk, 3 tool result, 4 blob).
    pub kind: u8,
    /// Who may see it.
    pub visibility: ArchivedVisibility,
    /// References the agent holds on it (0 for a delta base it only needs
    /// to decode another unit).
    pub refs: u32,
    /// The store's encoding tag of `frame` (0 raw, 1 delta, 2 + n zstd
    /// with the kind's dictionary version n, n = 0 meaning none).
    pub encoding: u32,
    /// For a delta frame, the id of the unit it is a delta against (also
    /// in the archive).
    pub delta_base: Option<[u8; 32]>,
    /// Length of the plain bytes.
    pub logical_len: u32,
    /// The store's 64-bit BLAKE3 check of the plain bytes, verified after
    /// decoding on import.
    pub plain_check: u64,
    /// The encoded bytes.
    #[serde(with = "serde_bytes")]
    pub frame: Vec<u8>,
}

/// A compression dictionary some frames need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedDictionary {
    /// The kind it compresses (`agentmem_core::Kind::index`).
    pub kind: u8,
    /// Its version in the source store (frames name it by this).
    pub version: u32,
    /// The zstd dictionary.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A conversation: its chunk list (so forks keep sharing chunks) and its
/// open chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedConversation {
    /// A number unique within the archive, so that a fork can name the
    /// conversation it came from.
    pub local_id: u32,
    /// The conversation it was forked from, if the store knows.
    pub forked_from: Option<u32>,
    /// The sealed chunks, oldest first: unit ids of kind 2 in the archive.
    pub chunks: Vec<[u8; 32]>,
    /// The open (newest, still growing) chunk's plain bytes, in the
    /// store's chunk format; empty when there is none.
    #[serde(with = "serde_bytes")]
    pub open_chunk: Vec<u8>,
    /// Messages in the whole conversation.
    pub messages: u64,
}

/// Which part of an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Section {
    /// The file header.
    FileHeader,
    /// The agent's metadata.
    Meta,
    /// The dictionaries.
    Dictionaries,
    /// The units.
    Units,
    /// The conversations.
    Conversations,
    /// The file trailer.
    Trailer,
}

impl Section {
    const ORDER: [Section; 4] = [
        Section::Meta,
        Section::Dictionaries,
        Section::Units,
        Section::Conversations,
    ];

    fn tag(self) -> u32 {
        match self {
            Section::FileHeader => 0,
            Section::Meta => 1,
            Section::Dictionaries => 2,
            Section::Units => 3,
            Section::Conversations => 4,
            Section::Trailer => 5,
        }
    }
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Section::FileHeader => "file header",
            Section::Meta => "agent metadata section",
            Section::Dictionaries => "dictionaries section",
            Section::Units => "units section",
            Section::Conversations => "conversations section",
            Section::Trailer => "file trailer",
        })
    }
}

/// Why an archive could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The bytes do not start with the archive magic.
    #[error("not an agentmem agent archive (no \"AMARCHIV\" magic at the start)")]
    NotAnArchive,
    /// An archive of another format version.
    #[error("agent archive format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The archive's version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The archive ends early (an interrupted copy or download).
    #[error(
        "agent archive truncated: {section} needs bytes up to {needed}, the archive has {len}"
    )]
    Truncated {
        /// The part that is cut.
        section: Section,
        /// Bytes it needs from the start.
        needed: u64,
        /// Bytes there are.
        len: u64,
    },
    /// A checksum does not match: the bytes were damaged.
    #[error("agent archive damaged: {section} fails its checksum ({detail})")]
    ChecksumMismatch {
        /// The damaged part.
        section: Section,
        /// Which checksum.
        detail: &'static str,
    },
    /// A part's structure is wrong though its checksum matches.
    #[error("agent archive malformed: {section}: {detail}")]
    Malformed {
        /// The part.
        section: Section,
        /// What is wrong.
        detail: String,
    },
    /// The parts do not agree (a chunk naming a unit the archive lacks...).
    #[error("agent archive inconsistent: {0}")]
    Inconsistent(String),
}

/// Result of archive operations.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

impl AgentArchive {
    /// Check that the parts agree: unit ids unique; chunks and delta bases
    /// name units in the archive (chunks of the conversation kind); every
    /// frame compressed with a dictionary has it; forks name conversations
    /// of the archive.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(ArchiveError::Inconsistent(s));
        let mut units = std::collections::HashMap::with_capacity(self.units.len());
        for u in &self.units {
            if units.insert(u.id, u).is_some() {
                return bad(format!("unit {} appears twice", hex(&u.id)));
            }
        }
        let dicts: std::collections::HashSet<(u8, u32)> = self
            .dictionaries
            .iter()
            .map(|d| (d.kind, d.version))
            .collect();
        for u in &self.units {
            match (u.encoding, u.delta_base) {
                (1, Some(base)) if units.contains_key(&base) => {}
                (1, Some(base)) => {
                    return bad(format!(
                        "unit {} is a delta against {}, which the archive lacks",
                        hex(&u.id),
                        hex(&base)
                    ))
                }
                (1, None) => return bad(format!("delta unit {} names no base", hex(&u.id))),
                (_, Some(_)) => {
                    return bad(format!(
                        "unit {} names a delta base but is not a delta",
                        hex(&u.id)
                    ))
                }
                (0, None) => {}
                (tag, None) => {
                    let version = tag - 2;
                    if version != 0 && !dicts.contains(&(u.kind, version)) {
                        return bad(format!(
                            "unit {} needs dictionary version {version} of kind {}, which the archive lacks",
                            hex(&u.id),
                            u.kind
                        ));
                    }
                }
            }
        }
        let locals: std::collections::HashSet<u32> =
            self.conversations.iter().map(|c| c.local_id).collect();
        if locals.len() != self.conversations.len() {
            return bad("two conversations share a local id".into());
        }
        for c in &self.conversations {
            for id in &c.chunks {
                match units.get(id) {
                    Some(u) if u.kind == 2 => {}
                    Some(u) => {
                        return bad(format!(
                            "conversation {} names unit {} of kind {} as a chunk",
                            c.local_id,
                            hex(id),
                            u.kind
                        ))
                    }
                    None => {
                        return bad(format!(
                            "conversation {} names chunk {}, which the archive lacks",
                            c.local_id,
                            hex(id)
                        ))
                    }
                }
            }
            if let Some(f) = c.forked_from {
                if !locals.contains(&f) {
                    return bad(format!(
                        "conversation {} is forked from {f}, which the archive lacks",
                        c.local_id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The archive's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(Section::ORDER.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        for section in Section::ORDER {
            let payload = match section {
                Section::Meta => encode(section, &self.meta)?,
                Section::Dictionaries => encode(section, &self.dictionaries)?,
                Section::Units => encode(section, &self.units)?,
                Section::Conversations => encode(section, &self.conversations)?,
                _ => unreachable!("only data sections are in ORDER"),
            };
            let start = out.len();
            out.extend_from_slice(&section.tag().to_le_bytes());
            out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            out.extend_from_slice(blake3::hash(&payload).as_bytes());
            let crc = crc32c::crc32c(&out[start..]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&payload);
        }
        out.extend_from_slice(&TRAILER_MAGIC);
        let total = (out.len() + 8) as u64;
        out.extend_from_slice(&total.to_le_bytes());
        Ok(out)
    }

    /// Read an archive from its bytes, checking everything (see the module
    /// docs).
    pub fn from_bytes(b: &[u8]) -> Result<AgentArchive> {
        let len = b.len() as u64;
        if b.len() < MAGIC.len() || b[..8] != MAGIC {
            return Err(ArchiveError::NotAnArchive);
        }
        if b.len() < 12 {
            return Err(truncated(Section::FileHeader, FILE_HEADER_LEN, len));
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(ArchiveError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if b.len() < FILE_HEADER_LEN {
            return Err(truncated(Section::FileHeader, FILE_HEADER_LEN, len));
        }
        if crc32c::crc32c(&b[..16]) != u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")) {
            return Err(ArchiveError::ChecksumMismatch {
                section: Section::FileHeader,
                detail: "header CRC-32C",
            });
        }
        let count = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        if count as usize != Section::ORDER.len() {
            return Err(ArchiveError::Malformed {
                section: Section::FileHeader,
                detail: format!(
                    "{count} sections, version {FORMAT_VERSION} has {}",
                    Section::ORDER.len()
                ),
            });
        }
        let mut at = FILE_HEADER_LEN;
        let mut payloads: Vec<&[u8]> = Vec::with_capacity(Section::ORDER.len());
        for section in Section::ORDER {
            let h = b
                .get(at..at + SECTION_HEADER_LEN)
                .ok_or_else(|| truncated(section, at + SECTION_HEADER_LEN, len))?;
            if crc32c::crc32c(&h[..44]) != u32::from_le_bytes(h[44..48].try_into().expect("4")) {
                return Err(ArchiveError::ChecksumMismatch {
                    section,
                    detail: "section header CRC-32C",
                });
            }
            let tag = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
            if tag != section.tag() {
                return Err(ArchiveError::Malformed {
                    section,
                    detail: format!("found section kind {tag} where {} belongs", section.tag()),
                });
            }
            let plen = u64::from_le_bytes(h[4..12].try_into().expect("8 bytes"));
            let start = at + SECTION_HEADER_LEN;
            let end = usize::try_from(plen)
                .ok()
                .and_then(|p| start.checked_add(p))
                .filter(|&e| e <= b.len())
                .ok_or_else(|| ArchiveError::Truncated {
                    section,
                    needed: (start as u64).saturating_add(plen),
                    len,
                })?;
            let payload = &b[start..end];
            if blake3::hash(payload).as_bytes() != &h[12..44] {
                return Err(ArchiveError::ChecksumMismatch {
                    section,
                    detail: "payload BLAKE3",
                });
            }
            payloads.push(payload);
            at = end;
        }
        let t = b
            .get(at..at + TRAILER_LEN)
            .ok_or_else(|| truncated(Section::Trailer, at + TRAILER_LEN, len))?;
        if t[..8] != TRAILER_MAGIC {
            return Err(ArchiveError::Malformed {
                section: Section::Trailer,
                detail: "no \"AMARCEND\" trailer after the last section".into(),
            });
        }
        let total = u64::from_le_bytes(t[8..16].try_into().expect("8 bytes"));
        if total != (at + TRAILER_LEN) as u64 || b.len() != at + TRAILER_LEN {
            return Err(ArchiveError::Malformed {
                section: Section::Trailer,
                detail: format!(
                    "trailer says {total} bytes, the sections end at {}, the archive has {len}",
                    at + TRAILER_LEN
                ),
            });
        }
        let archive = AgentArchive {
            meta: decode(Section::Meta, payloads[0])?,
            dictionaries: decode(Section::Dictionaries, payloads[1])?,
            units: decode(Section::Units, payloads[2])?,
            conversations: decode(Section::Conversations, payloads[3])?,
        };
        archive.validate()?;
        Ok(archive)
    }

    /// Write the archive to `path` atomically: a temporary file in the same
    /// directory, fsynced, renamed over `path`, then the directory fsynced.
    /// Returns the archive's size in bytes.
    pub fn write_to(&self, path: &Path) -> Result<u64> {
        let bytes = self.to_bytes()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let io_err = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| ArchiveError::Io {
                op,
                path: p,
                source,
            }
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".agentmem-archive-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io_err("creating a temporary file in", dir))?;
        tmp.write_all(&bytes)
            .map_err(io_err("writing", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("fsyncing", tmp.path()))?;
        tmp.persist(path)
            .map_err(|e| io_err("renaming the temporary file to", path)(e.error))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsyncing the directory", dir))?;
        Ok(bytes.len() as u64)
    }

    /// Read and check the archive at `path`.
    pub fn read_from(path: &Path) -> Result<AgentArchive> {
        let bytes = fs::read(path).map_err(|source| ArchiveError::Io {
            op: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        AgentArchive::from_bytes(&bytes)
    }
}

fn truncated(section: Section, needed: usize, len: u64) -> ArchiveError {
    ArchiveError::Truncated {
        section,
        needed: needed as u64,
        len,
    }
}

fn encode<T: Serialize>(section: Section, v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| ArchiveError::Malformed {
        section,
        detail: format!("encoding: {e}"),
    })
}

fn decode<T: DeserializeOwned>(section: Section, b: &[u8]) -> Result<T> {
    let (v, rest) = postcard::take_from_bytes(b).map_err(|e| ArchiveError::Malformed {
        section,
        detail: format!("decoding: {e}"),
    })?;
    if !rest.is_empty() {
        return Err(ArchiveError::Malformed {
            section,
            detail: format!("{} bytes left after the data", rest.len()),
        });
    }
    Ok(v)
}

fn hex(id: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*id).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive with one of everything: a dictionary, a zstd unit, a
    /// delta against it, a raw chunk shared by a conversation and its fork.
    fn sample() -> AgentArchive {
        let unit = |n: u8, kind: u8, encoding: u32, base: Option<[u8; 32]>| ArchivedUnit {
            id: [n; 32],
            kind,
            visibility: if kind < 2 {
                ArchivedVisibility::Public
            } else {
                ArchivedVisibility::Private
            },
            refs: 1,
            encoding,
            delta_base: base,
            logical_len: 100 + u32::from(n),
            plain_check: u64::from(n) * 0x9e37_79b9,
            frame: vec![n; 40 + n as usize],
        };
        AgentArchive {
            meta: AgentMeta {
                name: "coder-1".into(),
                tenant: "alice".into(),
                state: "paused".into(),
                importance: 50,
                exported_at_ms: 1_700_000_000_000,
                source: "test".into(),
            },
            dictionaries: vec![ArchivedDictionary {
                kind: 0,
                version: 1,
                bytes: b"\x37\xa4\x30\xec dictionary".to_vec(),
            }],
            units: vec![
                unit(1, 0, 3, None),
                unit(2, 0, 1, Some([1; 32])),
                unit(3, 2, 0, None),
            ],
            conversations: vec![
                ArchivedConversation {
                    local_id: 0,
                    forked_from: None,
                    chunks: vec![[3; 32]],
                    open_chunk: b"tail".to_vec(),
                    messages: 70,
                },
                ArchivedConversation {
                    local_id: 1,
                    forked_from: Some(0),
                    chunks: vec![[3; 32]],
                    open_chunk: Vec::new(),
                    messages: 64,
                },
            ],
        }
    }

    #[test]
    fn round_trip_in_memory_and_on_disk() {
        let a = sample();
        let b = a.to_bytes().unwrap();
        assert_eq!(AgentArchive::from_bytes(&b).unwrap(), a);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coder-1.amar");
        let n = a.write_to(&path).unwrap();
        assert_eq!(n, b.len() as u64);
        assert_eq!(AgentArchive::read_from(&path).unwrap(), a);
        // Nothing but the archive is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_empty_agent_round_trips() {
        let a = AgentArchive::default();
        assert_eq!(AgentArchive::from_bytes(&a.to_bytes().unwrap()).unwrap(), a);
    }

    #[test]
    fn every_truncation_is_refused_as_truncated_or_not_an_archive() {
        let b = sample().to_bytes().unwrap();
        for len in 0..b.len() {
            match AgentArchive::from_bytes(&b[..len]) {
                Err(ArchiveError::Truncated { len: l, .. }) => assert_eq!(l, len as u64),
                Err(ArchiveError::NotAnArchive) => assert!(len < 8),
                other => panic!("truncated to {len} of {}: {other:?}", b.len()),
            }
        }
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let b = sample().to_bytes().unwrap();
        for byte in 0..b.len() {
            for bit in 0..8 {
                let mut bad = b.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    AgentArchive::from_bytes(&bad).is_err(),
                    "flip of bit {bit} of byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn a_flipped_payload_bit_names_its_section() {
        let a = sample();
        let b = a.to_bytes().unwrap();
        // The units section's payload starts after the header, the meta
        // and dictionaries sections and its own section header.
        let meta = postcard::to_stdvec(&a.meta).unwrap().len();
        let dicts = postcard::to_stdvec(&a.dictionaries).unwrap().len();
        let units_payload = FILE_HEADER_LEN + 3 * SECTION_HEADER_LEN + meta + dicts;
        let mut bad = b.clone();
        bad[units_payload + 5] ^= 0x10;
        match AgentArchive::from_bytes(&bad) {
            Err(ArchiveError::ChecksumMismatch {
                section: Section::Units,
                detail: "payload BLAKE3",
            }) => {}
            other => panic!("{other:?}"),
        }
        let msg = AgentArchive::from_bytes(&bad).unwrap_err().to_string();
        assert!(msg.contains("units section"), "{msg}");
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let mut b = sample().to_bytes().unwrap();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        match AgentArchive::from_bytes(&b) {
            Err(ArchiveError::UnsupportedVersion {
                found: 2,
                supported: 1,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_files_are_not_archives() {
        for junk in [&b""[..], b"{\"agent\": 1}", b"AMARCHI", &[0u8; 4096]] {
            assert!(matches!(
                AgentArchive::from_bytes(junk),
                Err(ArchiveError::NotAnArchive)
            ));
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut b = sample().to_bytes().unwrap();
        b.extend_from_slice(b"extra");
        assert!(matches!(
            AgentArchive::from_bytes(&b),
            Err(ArchiveError::Malformed {
                section: Section::Trailer,
                ..
            })
        ));
    }

    type Spoil = Box<dyn Fn(&mut AgentArchive)>;

    #[test]
    fn inconsistent_archives_are_refused_on_write_and_on_read() {
        let cases: Vec<(&str, Spoil)> = vec![
            (
                "chunk missing",
                Box::new(|a| a.conversations[0].chunks.push([9; 32])),
            ),
            (
                "chunk of wrong kind",
                Box::new(|a| a.conversations[0].chunks.push([1; 32])),
            ),
            (
                "delta base missing",
                Box::new(|a| a.units[1].delta_base = Some([9; 32])),
            ),
            (
                "delta without base",
                Box::new(|a| a.units[1].delta_base = None),
            ),
            ("dictionary missing", Box::new(|a| a.dictionaries.clear())),
            (
                "duplicate unit",
                Box::new(|a| a.units.push(a.units[0].clone())),
            ),
            (
                "fork of nothing",
                Box::new(|a| a.conversations[1].forked_from = Some(7)),
            ),
            (
                "duplicate conversation",
                Box::new(|a| a.conversations[1].local_id = 0),
            ),
        ];
        for (what, spoil) in cases {
            let mut a = sample();
            spoil(&mut a);
            assert!(
                matches!(a.to_bytes(), Err(ArchiveError::Inconsistent(_))),
                "{what}: written"
            );
            // A writer that skipped validation: the reader still refuses.
            let b = unchecked_bytes(&a);
            assert!(
                matches!(
                    AgentArchive::from_bytes(&b),
                    Err(ArchiveError::Inconsistent(_))
                ),
                "{what}: read"
            );
        }
    }

    /// `to_bytes` without the validation, to plant inconsistent archives.
    fn unchecked_bytes(a: &AgentArchive) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&4u32.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let payloads = [
            postcard::to_stdvec(&a.meta).unwrap(),
            postcard::to_stdvec(&a.dictionaries).unwrap(),
            postcard::to_stdvec(&a.units).unwrap(),
            postcard::to_stdvec(&a.conversations).unwrap(),
        ];
        for (i, p) in payloads.iter().enumerate() {
            let start = out.len();
            out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
            out.extend_from_slice(&(p.len() as u64).to_le_bytes());
            out.extend_from_slice(blake3::hash(p).as_bytes());
            let crc = crc32c::crc32c(&out[start..]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&TRAILER_MAGIC);
        let total = (out.len() + 8) as u64;
        out.extend_from_slice(&total.to_le_bytes());
        out
    }

    #[test]
    fn a_failed_write_leaves_the_old_archive_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.amar");
        let good = sample();
        good.write_to(&path).unwrap();
        let mut bad = sample();
        bad.conversations[0].chunks.push([9; 32]);
        assert!(bad.write_to(&path).is_err());
        assert_eq!(AgentArchive::read_from(&path).unwrap(), good);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = AgentArchive::read_from(Path::new("/nonexistent/x.amar")).unwrap_err();
        assert!(matches!(err, ArchiveError::Io { op: "reading", .. }));
        assert!(err.to_string().contains("/nonexistent/x.amar"));
    }
}
