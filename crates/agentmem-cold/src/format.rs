//! The bytes on disk.
//!
//! Segment file `seg-XXXXXXXX.log` (id in hex): a 32-byte header, then records.
//!
//! ```text
//! header:  magic "AMCOLDSG" | version u32 | segment id u32 | 16 reserved bytes
//! record:  crc32c u32 | value length u32 | kind u8 | 3 zero bytes | tag u32 | key [32] | value
//! ```
//!
//! The CRC-32C covers everything in the record after itself, so a torn
//! write, a record cut short or a flipped bit anywhere fails it. All integers
//! are little-endian.

use crate::error::{ColdError, Result};

/// Format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Segment header size.
pub const SEGMENT_HEADER: u64 = 32;
/// Record header size.
pub const RECORD_HEADER: usize = 48;
/// Largest value a record may hold (1 GiB).
pub const MAX_VALUE: u64 = 1 << 30;

const SEGMENT_MAGIC: &[u8; 8] = b"AMCOLDSG";

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Sets a key's value.
    Put = 1,
    /// Removes a key.
    Delete = 2,
}

/// The name of a segment's file.
pub fn segment_name(id: u32) -> String {
    format!("seg-{id:08x}.log")
}

/// The id of a segment from its file name.
pub fn segment_id(name: &str) -> Option<u32> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    (hex.len() == 8)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// A segment's header.
pub fn segment_header(id: u32) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// Check a segment header; returns the id it names.
pub fn check_segment_header(file: &str, h: &[u8]) -> Result<u32> {
    if h.len() < SEGMENT_HEADER as usize || &h[..8] != SEGMENT_MAGIC {
        return Err(ColdError::NotAStore {
            file: file.to_string(),
        });
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(ColdError::Incompatible {
            file: file.to_string(),
            found: version,
            expected: VERSION,
        });
    }
    Ok(u32::from_le_bytes(h[12..16].try_into().expect("4 bytes")))
}

/// Encode a record.
pub fn encode(kind: RecordKind, key: &[u8; 32], tag: u32, value: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(RECORD_HEADER + value.len());
    r.extend_from_slice(&[0; 4]);
    r.extend_from_slice(&(value.len() as u32).to_le_bytes());
    r.push(kind as u8);
    r.extend_from_slice(&[0; 3]);
    r.extend_from_slice(&tag.to_le_bytes());
    r.extend_from_slice(key);
    r.extend_from_slice(value);
    let crc = crc32c::crc32c(&r[4..]);
    r[..4].copy_from_slice(&crc.to_le_bytes());
    r
}

/// A record header, parsed but not yet checked against its checksum.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Stored checksum.
    pub crc: u32,
    /// Value length.
    pub len: u32,
    /// Kind byte.
    pub kind: u8,
    /// The tag.
    pub tag: u32,
    /// The key.
    pub key: [u8; 32],
}

impl Header {
    /// Parse the first [`RECORD_HEADER`] bytes of `b`.
    ///
    /// # Panics
    ///
    /// If `b` is shorter than [`RECORD_HEADER`]; callers check first.
    pub fn parse(b: &[u8]) -> Header {
        Header {
            crc: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            len: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            kind: b[8],
            tag: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
            key: b[16..48].try_into().expect("32 bytes"),
        }
    }

    /// Total record size.
    pub fn size(&self) -> u64 {
        RECORD_HEADER as u64 + u64::from(self.len)
    }
}

/// A whole record, checked.
#[derive(Debug)]
pub struct Record<'a> {
    /// What it does.
    pub kind: RecordKind,
    /// The key.
    pub key: [u8; 32],
    /// The tag.
    pub tag: u32,
    /// The value (empty for deletes).
    pub value: &'a [u8],
}

/// Check and parse one whole record held in `b` (exactly its bytes).
pub fn decode(b: &[u8]) -> std::result::Result<Record<'_>, String> {
    if b.len() < RECORD_HEADER {
        return Err(format!(
            "record of {} bytes is shorter than its header",
            b.len()
        ));
    }
    let h = Header::parse(b);
    if h.size() != b.len() as u64 {
        return Err(format!(
            "record says {} bytes but {} were read",
            h.size(),
            b.len()
        ));
    }
    let crc = crc32c::crc32c(&b[4..]);
    if crc != h.crc {
        return Err(format!(
            "checksum mismatch (stored {:08x}, computed {crc:08x})",
            h.crc
        ));
    }
    // Written as zeros; anything else is not a record this code wrote (and
    // would not encode back to the same bytes).
    if b[9..12] != [0; 3] {
        return Err(format!(
            "reserved header bytes are {:02x?}, not zero",
            &b[9..12]
        ));
    }
    let kind = match h.kind {
        1 => RecordKind::Put,
        2 => RecordKind::Delete,
        k => return Err(format!("unknown record kind {k}")),
    };
    Ok(Record {
        kind,
        key: h.key,
        tag: h.tag,
        value: &b[RECORD_HEADER..],
    })
}

/// Sector size a torn write is judged by (the smallest unit a disk writes).
pub const SECTOR: u64 = 512;

/// Where the next whole record starts in `buf` after damage at `at`: the
/// first offset past `at` holding a record whose header and checksum hold.
pub fn next_valid_record(buf: &[u8], at: usize) -> Option<usize> {
    (at + 1..buf.len().saturating_sub(RECORD_HEADER - 1)).find(|&p| {
        let h = Header::parse(&buf[p..]);
        // The cheap tests first: most offsets fail them.
        (h.kind == RecordKind::Put as u8 || h.kind == RecordKind::Delete as u8)
            && u64::from(h.len) <= MAX_VALUE
            && h.size() <= (buf.len() - p) as u64
            && decode(&buf[p..p + h.size() as usize]).is_ok()
    })
}

/// Whether damage found at byte `at` of a log file whose bytes from file
/// offset `base` on are `buf` is what a crash leaves rather than damage to
/// bytes once written whole.
///
/// A crash can leave the end of a log short or garbled, and a power cut
/// can leave pages that were never written back as zeros while later pages
/// made it (the file's size had already grown). So damage is a torn write
/// when no whole record follows it (`next` is `None`), or when the damaged
/// span up to the next whole record holds a sector-aligned run of zeros
/// (as etcd's WAL judges a torn write). Anything else — a flipped bit, a
/// garbled sector, followed by whole records — is corruption: the records
/// after it were written, and cutting them would drop acknowledged data.
///
/// The one case this misjudges: a record whose own data holds a whole zero
/// sector and is damaged *and* followed by whole records is taken as torn.
pub fn torn_write(buf: &[u8], base: u64, at: usize, next: Option<usize>) -> bool {
    let Some(next) = next else { return true };
    let first = (base + at as u64).div_ceil(SECTOR) * SECTOR;
    let mut s = first;
    while s + SECTOR <= base + next as u64 {
        let from = (s - base) as usize;
        if buf[from..from + SECTOR as usize].iter().all(|&b| b == 0) {
            return true;
        }
        s += SECTOR;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let key = [7u8; 32];
        let r = encode(RecordKind::Put, &key, 42, b"hello cold world");
        let d = decode(&r).expect("valid");
        assert_eq!(
            (d.kind, d.key, d.tag, d.value),
            (RecordKind::Put, key, 42, &b"hello cold world"[..])
        );
        for i in 0..r.len() * 8 {
            let mut bad = r.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(decode(&bad).is_err(), "flip of bit {i} not detected");
        }
        assert!(decode(&r[..r.len() - 1]).is_err());
    }

    #[test]
    fn reserved_header_bytes_must_be_zero() {
        // Found by the `record` fuzz target: a header whose reserved bytes
        // are not zero but whose checksum holds decoded, and encoded back
        // to other bytes.
        let mut r = encode(RecordKind::Delete, &[0xd6; 32], 7, b"");
        r[9..12].copy_from_slice(&[0xd6; 3]);
        let crc = crc32c::crc32c(&r[4..]);
        r[..4].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&r).expect_err("reserved bytes set");
        assert!(err.contains("reserved"), "{err}");
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_id(&segment_name(0xabc)), Some(0xabc));
        assert_eq!(segment_id("seg-xyz.log"), None);
        assert_eq!(check_segment_header("f", &segment_header(9)).unwrap(), 9);
        let mut h = segment_header(9);
        h[8] = 2;
        assert!(matches!(
            check_segment_header("f", &h),
            Err(ColdError::Incompatible { found: 2, .. })
        ));
    }

    #[test]
    fn damage_followed_by_whole_records_is_not_a_torn_write() {
        let mut buf = Vec::new();
        for i in 0..20u8 {
            buf.extend(encode(RecordKind::Put, &[i; 32], 0, &[i; 100]));
        }
        let rec = RECORD_HEADER + 100;
        // A flipped bit in record 5: record 6 is found after it.
        let at = 5 * rec;
        let mut bad = buf.clone();
        bad[at + 60] ^= 4;
        let next = next_valid_record(&bad, at);
        assert_eq!(next, Some(6 * rec));
        assert!(!torn_write(&bad, 32, at, next));
        // A damaged last record: nothing follows, torn.
        let at = 19 * rec;
        let mut bad = buf.clone();
        bad[at + 60] ^= 4;
        assert_eq!(next_valid_record(&bad, at), None);
        assert!(torn_write(&bad, 32, at, None));
        // A page a power cut never wrote, followed by one that was.
        let mut cut = buf.clone();
        let (from, to) = (1024 - 32, 2048 - 32);
        cut[from..to].fill(0);
        let at = from / rec * rec;
        let next = next_valid_record(&cut, at);
        assert!(next.is_some());
        assert!(torn_write(&cut, 32, at, next));
    }
}
