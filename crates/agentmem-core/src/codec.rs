//! Compression: zstd per kind, with dictionaries trained from the store's own
//! data, and deltas against a similar unit for near-duplicates.
//!
//! Contexts are kept per thread (a zstd decompression context is ~100 KiB;
//! allocating one per warm read would cost more than the read itself).
//! Dictionaries are immutable once built and shared through `Arc`; each
//! frame records the dictionary version it needs, and every version stays
//! loaded while the store lives.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use zstd_safe::{CCtx, CDict, DCtx, DDict};

use crate::error::{Error, Result};
use crate::types::Kind;

/// Level used for deltas of near-duplicates: they are rare and large, so the
/// best ratio is worth the time.
pub(crate) const DELTA_LEVEL: i32 = 19;

/// Levels from here on use a fresh context per call.
const HIGH_LEVEL: i32 = 10;

/// Level for kinds that are written once and shared by many agents (system
/// prompts, tool definitions): worth the best ratio.
pub(crate) const SHARED_KIND_LEVEL: i32 = 19;

/// The level to compress `kind` at, given the store's level for the rest.
pub(crate) fn level_for(kind: Kind, level: i32) -> i32 {
    match kind {
        Kind::SystemPrompt | Kind::ToolDefs => level.max(SHARED_KIND_LEVEL),
        _ => level,
    }
}

thread_local! {
    static CCTX: RefCell<Cached<CCtx<'static>>> = RefCell::new(Cached { ctx: CCtx::create(), reported: 0 });
    static DCTX: RefCell<Cached<DCtx<'static>>> = RefCell::new(Cached { ctx: DCtx::create(), reported: 0 });
}

/// How a warm frame's bytes are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Stored as is: compression did not make it smaller.
    Raw,
    /// zstd, with the kind's dictionary of this version (0: none).
    Zstd { dict: u32 },
    /// zstd with another unit's plain bytes as a raw-content dictionary.
    Delta,
}

impl Encoding {
    /// The tag stored with a cold record.
    pub fn tag(self) -> u32 {
        match self {
            Encoding::Raw => 0,
            Encoding::Delta => 1,
            Encoding::Zstd { dict } => dict.saturating_add(2),
        }
    }

    /// The encoding a cold record's tag names.
    pub fn from_tag(tag: u32) -> Encoding {
        match tag {
            0 => Encoding::Raw,
            1 => Encoding::Delta,
            t => Encoding::Zstd { dict: t - 2 },
        }
    }
}

/// A unit's bytes in compressed form.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub bytes: Bytes,
    pub encoding: Encoding,
}

/// A trained dictionary, loaded for compression and decompression.
pub(crate) struct Dictionary {
    pub kind: Kind,
    pub version: u32,
    pub raw: Bytes,
    cdict: CDict<'static>,
    ddict: DDict<'static>,
}

impl fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dictionary")
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("bytes", &self.raw.len())
            .finish()
    }
}

/// What a dictionary is, for stats and persistence.
#[derive(Clone, Debug, Serialize)]
pub struct DictionaryInfo {
    /// Kind it compresses.
    pub kind: Kind,
    /// Version (1 for the first trained for the kind).
    pub version: u32,
    /// Size in bytes.
    pub bytes: u64,
    /// Samples it was trained on.
    pub samples: u64,
    /// The tenant whose private units it was trained on and compresses,
    /// or `None` for the public domain's.
    pub tenant: Option<crate::types::TenantId>,
}

impl Dictionary {
    /// Load a dictionary. Fails with [`Error::CorruptDictionary`] when zstd
    /// rejects it; a dictionary that is not in zstd's format is refused too,
    /// since the store only writes formatted ones.
    pub fn load(kind: Kind, version: u32, raw: Bytes, level: i32) -> Result<Dictionary> {
        let corrupt = |detail: &str| Error::CorruptDictionary {
            kind,
            version,
            detail: detail.to_string(),
        };
        if zstd_safe::get_dict_id(&raw).is_none() {
            return Err(corrupt(
                "not a zstd dictionary (no magic number or dictionary id)",
            ));
        }
        let cdict = CDict::try_create(&raw, level)
            .ok_or_else(|| corrupt("zstd could not load it for compression"))?;
        let ddict = DDict::try_create(&raw)
            .ok_or_else(|| corrupt("zstd could not load it for decompression"))?;
        // A formatted dictionary whose entropy tables are damaged loads
        // lazily: prove it on a probe now rather than on user data later.
        let probe = b"agentmem dictionary probe: {\"role\":\"user\",\"content\":\"hello\"}";
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(probe.len()));
        CCtx::create()
            .compress_using_cdict(&mut out, probe, &cdict)
            .map_err(|code| corrupt(zstd_safe::get_error_name(code)))?;
        let mut back = Vec::with_capacity(probe.len());
        DCtx::create()
            .decompress_using_ddict(&mut back, &out, &ddict)
            .map_err(|code| corrupt(zstd_safe::get_error_name(code)))?;
        if back != probe {
            return Err(corrupt(
                "round trip through the dictionary changed the bytes",
            ));
        }
        Ok(Dictionary {
            kind,
            version,
            raw,
            cdict,
            ddict,
        })
    }
}

impl Dictionary {
    /// Bytes zstd holds for this dictionary: its prepared compression and
    /// decompression forms (each keeps its own copy of the content).
    pub fn memory(&self) -> usize {
        self.cdict.sizeof() + self.ddict.sizeof()
    }
}

/// Whether dictionaries help a kind. System prompts and tool definitions
/// are few, large and shared: they get the highest level and deltas instead.
pub(crate) fn trains(kind: Kind) -> bool {
    !matches!(kind, Kind::SystemPrompt | Kind::ToolDefs)
}

/// Bytes held by this thread's cached compression and decompression
/// contexts, summed over threads.
static CONTEXT_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes the cached zstd contexts of all threads hold.
pub(crate) fn context_memory() -> usize {
    CONTEXT_BYTES.load(Ordering::Relaxed)
}

/// A cached context that keeps [`CONTEXT_BYTES`] current.
struct Cached<C> {
    ctx: C,
    reported: usize,
}

impl<C> Cached<C> {
    fn report(&mut self, now: usize) {
        if now >= self.reported {
            CONTEXT_BYTES.fetch_add(now - self.reported, Ordering::Relaxed);
        } else {
            CONTEXT_BYTES.fetch_sub(self.reported - now, Ordering::Relaxed);
        }
        self.reported = now;
    }
}

impl<C> Drop for Cached<C> {
    fn drop(&mut self) {
        CONTEXT_BYTES.fetch_sub(self.reported, Ordering::Relaxed);
    }
}

fn with_cctx<R>(f: impl FnOnce(&mut CCtx<'static>) -> R) -> R {
    CCTX.with(|c| {
        let mut c = c.borrow_mut();
        let r = f(&mut c.ctx);
        let size = c.ctx.sizeof();
        c.report(size);
        r
    })
}

fn with_dctx<R>(f: impl FnOnce(&mut DCtx<'static>) -> R) -> R {
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        let r = f(&mut d.ctx);
        let size = d.ctx.sizeof();
        d.report(size);
        r
    })
}

/// Train a dictionary of at most `max_size` bytes from `samples`.
pub(crate) fn train(samples: &[u8], sizes: &[usize], max_size: usize) -> Option<Vec<u8>> {
    zstd::dict::from_continuous(samples, sizes, max_size).ok()
}

/// Compress `data` at `level`, with `dict` if given. Returns the raw bytes
/// instead when compression does not save at least 1/16 of the size.
pub(crate) fn compress(data: &[u8], level: i32, dict: Option<&Dictionary>) -> Frame {
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    let mut run = |c: &mut CCtx<'static>| match dict {
        Some(d) => c.compress_using_cdict(&mut out, data, &d.cdict),
        None => c.compress(&mut out, data, level),
    };
    // High levels get a context of their own (see compress_delta).
    let res = if level >= HIGH_LEVEL {
        run(&mut CCtx::create())
    } else {
        with_cctx(run)
    };
    match res {
        Ok(n) if n + n / 16 < data.len() => Frame {
            // Copy into an exact-size allocation: the compression buffer
            // is sized for the worst case and would keep that much alive.
            bytes: Bytes::copy_from_slice(&out),
            encoding: Encoding::Zstd {
                dict: dict.map_or(0, |d| d.version),
            },
        },
        // Did not shrink enough (or zstd failed, which with a sufficient
        // buffer it does not): keep the bytes as they are.
        _ => Frame {
            bytes: Bytes::copy_from_slice(data),
            encoding: Encoding::Raw,
        },
    }
}

/// Compress `data` as a delta against `reference`.
pub(crate) fn compress_delta(data: &[u8], reference: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    // A context of its own, dropped afterwards: high levels grow a large
    // workspace that a cached context would keep for the thread's life.
    CCtx::create()
        .compress_using_dict(&mut out, data, reference, DELTA_LEVEL)
        .ok()?;
    Some(Bytes::copy_from_slice(&out))
}

/// Decode a frame of `len` plain bytes. `dict` must be the dictionary the
/// frame names; `reference` the base's plain bytes for a delta.
pub(crate) fn decompress(
    frame: &Frame,
    len: usize,
    dict: Option<&Dictionary>,
    reference: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::Corrupt {
        what: "compressed unit".into(),
        detail,
    };
    if frame.encoding == Encoding::Raw {
        if frame.bytes.len() != len {
            return Err(corrupt(format!(
                "raw frame holds {} bytes, expected {len}",
                frame.bytes.len()
            )));
        }
        return Ok(frame.bytes.to_vec());
    }
    let mut out = Vec::with_capacity(len);
    let res = with_dctx(|d| match (frame.encoding, dict, reference) {
        (Encoding::Zstd { dict: 0 }, _, _) => d.decompress(&mut out, &frame.bytes),
        (Encoding::Zstd { .. }, Some(dict), _) => {
            d.decompress_using_ddict(&mut out, &frame.bytes, &dict.ddict)
        }
        (Encoding::Delta, _, Some(r)) => d.decompress_using_dict(&mut out, &frame.bytes, r),
        _ => Err(usize::MAX),
    });
    match res {
        Ok(n) if n == len => Ok(out),
        Ok(n) => Err(corrupt(format!("decoded {n} bytes, expected {len}"))),
        Err(usize::MAX) => Err(corrupt(
            "the dictionary or reference it needs is missing".into(),
        )),
        Err(code) => Err(corrupt(format!(
            "zstd: {}",
            zstd_safe::get_error_name(code)
        ))),
    }
}

/// Dictionary state of one kind in one dedup domain: samples collected
/// until training, then the trained (or loaded) versions.
#[derive(Debug, Default)]
pub(crate) struct KindCodec {
    pub versions: Vec<Arc<Dictionary>>,
    pub samples: Vec<u8>,
    pub sample_sizes: Vec<usize>,
    pub trained_on: u64,
    /// Set while a training runs outside the store's lock.
    pub training: bool,
    /// Bytes written to a tenant's domain since its last training attempt
    /// (a tenant's samples are its units, read when this reaches the
    /// threshold; only the public domain keeps copies in `samples`).
    pub seen: u64,
}

impl KindCodec {
    pub fn current(&self) -> Option<&Arc<Dictionary>> {
        self.versions.last()
    }

    pub fn version(&self, v: u32) -> Option<&Arc<Dictionary>> {
        if v == 0 {
            return None;
        }
        self.versions.get(v as usize - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_messages(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        for i in 0..n {
            let m = format!(
                "{{\"role\":\"assistant\",\"content\":\"I can help with reservation {i:06}; please confirm the passenger name and date {}.\",\"tool_calls\":null,\"turn_idx\":{i}}}",
                i * 7 % 31
            );
            sizes.push(m.len());
            all.extend_from_slice(m.as_bytes());
        }
        (all, sizes)
    }

    #[test]
    fn trained_dictionary_round_trips_and_helps() {
        let (all, sizes) = sample_messages(2000);
        let raw = train(&all, &sizes, 16 * 1024).expect("training");
        let dict = Dictionary::load(Kind::Conversation, 1, Bytes::from(raw), 3).unwrap();
        let msg = &all[..sizes[0]];
        let with = compress(msg, 3, Some(&dict));
        let without = compress(msg, 3, None);
        assert!(with.bytes.len() < without.bytes.len());
        let back = decompress(&with, msg.len(), Some(&dict), None).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn incompressible_data_is_kept_raw() {
        let mut data = vec![0u8; 4096];
        blake3::Hasher::new().finalize_xof().fill(&mut data);
        let f = compress(&data, 3, None);
        assert_eq!(f.encoding, Encoding::Raw);
        assert_eq!(decompress(&f, data.len(), None, None).unwrap(), data);
    }

    #[test]
    fn corrupt_dictionaries_are_refused() {
        assert!(matches!(
            Dictionary::load(
                Kind::Blob,
                1,
                Bytes::from_static(b"definitely not a dictionary"),
                3
            ),
            Err(Error::CorruptDictionary { .. })
        ));
        let (all, sizes) = sample_messages(2000);
        let mut raw = train(&all, &sizes, 16 * 1024).unwrap();
        // Keep the magic and id, damage the entropy tables.
        for b in &mut raw[8..200] {
            *b = 0xff;
        }
        assert!(matches!(
            Dictionary::load(Kind::Blob, 1, Bytes::from(raw), 3),
            Err(Error::CorruptDictionary { .. })
        ));
    }

    #[test]
    fn wrong_dictionary_never_yields_bytes() {
        let (all, sizes) = sample_messages(2000);
        let d1 =
            Dictionary::load(Kind::Blob, 1, train(&all, &sizes, 8192).unwrap().into(), 3).unwrap();
        let (all2, sizes2) = sample_messages(1500);
        let d2 = Dictionary::load(
            Kind::Blob,
            2,
            train(&all2, &sizes2, 4096).unwrap().into(),
            3,
        )
        .unwrap();
        let msg = &all[..sizes[0]];
        let f = compress(msg, 3, Some(&d1));
        // The frame names dictionary 1's id; decoding with 2 must fail.
        assert!(decompress(&f, msg.len(), Some(&d2), None).is_err());
        let mut damaged = f.bytes.to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x55;
        let bad = Frame {
            bytes: Bytes::from(damaged),
            encoding: f.encoding,
        };
        if let Ok(out) = decompress(&bad, msg.len(), Some(&d1), None) {
            // zstd cannot always detect damage without a checksum; the store
            // checks content ids on top, so here we only require no panic.
            assert_eq!(out.len(), msg.len());
        }
    }

    #[test]
    fn delta_against_reference_round_trips() {
        let base: Vec<u8> = (0..400)
            .flat_map(|i| format!("line {i} of the system prompt\n").into_bytes())
            .collect();
        let mut variant = base.clone();
        variant.extend_from_slice(b"one more rule at the end\n");
        let d = compress_delta(&variant, &base).unwrap();
        assert!(d.len() < 200, "delta is {} bytes", d.len());
        let f = Frame {
            bytes: d,
            encoding: Encoding::Delta,
        };
        assert_eq!(
            decompress(&f, variant.len(), None, Some(&base)).unwrap(),
            variant
        );
        assert!(decompress(&f, variant.len(), None, None).is_err());
    }
}
