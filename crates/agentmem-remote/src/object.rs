//! The layout of one unit's object in the bucket.
//!
//! ```text
//! offset size
//!      0    4  magic "AMT3"
//!      4    2  format version, u16 LE (1)
//!      6    2  header length, u16 LE (88)
//!      8    4  encoding tag, u32 LE (the store's own tag, kept as is)
//!     12   32  content id
//!     44    8  body length, u64 LE
//!     52   32  BLAKE3 of the body
//!     84    4  CRC-32C of bytes 0..84
//!     88    …  body (the unit's frame)
//! ```
//!
//! The header makes every object self-checking: a reader verifies that the
//! object is agentmem's (magic, version, header checksum), that it holds
//! the content id its key names, and that the body is whole (length and
//! BLAKE3). The content id itself cannot be checked without decoding the
//! frame (it hashes the plain bytes, keyed by the dedup domain), which the
//! store does on every decode anyway.

use bytes::{BufMut, Bytes, BytesMut};

/// First bytes of every object.
pub const MAGIC: [u8; 4] = *b"AMT3";
/// The object format this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 88;

/// Why an object's bytes are not a valid unit object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not agentmem's (reported as [`crate::RemoteError::Foreign`]).
    Foreign(String),
    /// agentmem's, but damaged (reported as [`crate::RemoteError::Corrupt`]).
    Corrupt(String),
}

/// An object's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub encoding: u32,
    pub id: [u8; 32],
    pub body_len: u64,
    pub body_hash: [u8; 32],
}

/// The object holding `body` for content id `id`.
pub(crate) fn encode(id: &[u8; 32], encoding: u32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_slice(&MAGIC);
    out.put_u16_le(FORMAT_VERSION);
    out.put_u16_le(HEADER_LEN as u16);
    out.put_u32_le(encoding);
    out.put_slice(id);
    out.put_u64_le(body.len() as u64);
    out.put_slice(blake3::hash(body).as_bytes());
    let crc = crc32c::crc32c(&out[..84]);
    out.put_u32_le(crc);
    out.put_slice(body);
    out.freeze()
}

/// Parse and check a header (the first [`HEADER_LEN`] bytes, or fewer when
/// the object is shorter), expecting content id `want`.
pub(crate) fn decode_header(b: &[u8], want: &[u8; 32]) -> Result<Header, Invalid> {
    if b.len() < MAGIC.len() || b[..4] != MAGIC {
        return Err(Invalid::Foreign(format!(
            "does not start with the magic {:?} ({} bytes long)",
            std::str::from_utf8(&MAGIC).unwrap_or("?"),
            b.len()
        )));
    }
    if b.len() < 8 {
        return Err(Invalid::Corrupt(format!(
            "truncated header: {} of {HEADER_LEN} bytes",
            b.len()
        )));
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != FORMAT_VERSION {
        return Err(Invalid::Foreign(format!(
            "object format version {version}, this build reads version {FORMAT_VERSION}"
        )));
    }
    let header_len = u16::from_le_bytes([b[6], b[7]]) as usize;
    if header_len != HEADER_LEN {
        return Err(Invalid::Corrupt(format!(
            "header length {header_len}, version {FORMAT_VERSION} has {HEADER_LEN}"
        )));
    }
    if b.len() < HEADER_LEN {
        return Err(Invalid::Corrupt(format!(
            "truncated header: {} of {HEADER_LEN} bytes",
            b.len()
        )));
    }
    let crc = u32::from_le_bytes(b[84..88].try_into().expect("4 bytes"));
    if crc32c::crc32c(&b[..84]) != crc {
        return Err(Invalid::Corrupt("header checksum mismatch".into()));
    }
    let id: [u8; 32] = b[12..44].try_into().expect("32 bytes");
    if &id != want {
        return Err(Invalid::Foreign(format!(
            "holds content id {} under the key of {}",
            hex(&id),
            hex(want)
        )));
    }
    Ok(Header {
        encoding: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
        id,
        body_len: u64::from_le_bytes(b[44..52].try_into().expect("8 bytes")),
        body_hash: b[52..84].try_into().expect("32 bytes"),
    })
}

/// Check a whole object; returns its header and body.
pub(crate) fn decode(object: Bytes, want: &[u8; 32]) -> Result<(Header, Bytes), Invalid> {
    let header = decode_header(&object, want)?;
    let body = object.slice(HEADER_LEN..);
    if body.len() as u64 != header.body_len {
        return Err(Invalid::Corrupt(format!(
            "body is {} bytes, header says {}",
            body.len(),
            header.body_len
        )));
    }
    if blake3::hash(&body).as_bytes() != &header.body_hash {
        return Err(Invalid::Corrupt("body checksum (BLAKE3) mismatch".into()));
    }
    Ok((header, body))
}

/// Lowercase hex of an id.
pub(crate) fn hex(id: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*id).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 32] = [7; 32];

    #[test]
    fn round_trip() {
        let o = encode(&ID, 42, b"frame bytes");
        assert_eq!(o.len(), HEADER_LEN + 11);
        let (h, body) = decode(o, &ID).unwrap();
        assert_eq!(h.encoding, 42);
        assert_eq!(&body[..], b"frame bytes");
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let o = encode(&ID, 3, b"0123456789abcdef");
        for byte in 0..o.len() {
            for bit in 0..8 {
                let mut bad = o.to_vec();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode(Bytes::from(bad), &ID).is_err(),
                    "flip of bit {bit} of byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_caught() {
        let o = encode(&ID, 3, b"0123456789abcdef");
        for len in 0..o.len() {
            assert!(decode(o.slice(..len), &ID).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn foreign_objects_are_told_apart_from_damaged_ones() {
        assert!(matches!(
            decode(Bytes::from_static(b"{\"hello\": 1}"), &ID),
            Err(Invalid::Foreign(_))
        ));
        let other = encode(&[8; 32], 3, b"x");
        assert!(matches!(decode(other, &ID), Err(Invalid::Foreign(_))));
        let mut v2 = encode(&ID, 3, b"x").to_vec();
        v2[4] = 2;
        assert!(matches!(
            decode(Bytes::from(v2), &ID),
            Err(Invalid::Foreign(_))
        ));
        let mut damaged = encode(&ID, 3, b"xyz").to_vec();
        damaged[HEADER_LEN] ^= 1;
        assert!(matches!(
            decode(Bytes::from(damaged), &ID),
            Err(Invalid::Corrupt(_))
        ));
    }
}
