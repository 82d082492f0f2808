//! The chunk format of conversations.
//!
//! A conversation is an append-only list of chunks. A chunk holds
//! consecutive messages: their bytes back to back, then each message's end
//! offset (u32 little-endian), then the message count (u32 little-endian).
//! It is self-describing, so the store keeps no per-message metadata: a
//! conversation costs one small record per chunk. The newest chunk is open
//! (appended to in place); once it reaches [`CHUNK_TARGET_BYTES`] or
//! [`CHUNK_MAX_MESSAGES`] it is sealed into a content-addressed unit, which
//! forks of the conversation share.

use crate::error::{Error, Result};

/// A chunk is sealed once its messages add up to this many bytes. Small
/// enough that a warm read of one message decodes little more than it
/// needs; large enough to compress like a whole conversation.
pub(crate) const CHUNK_TARGET_BYTES: usize = 16 * 1024;
/// ... or once it holds this many messages.
pub(crate) const CHUNK_MAX_MESSAGES: usize = 64;

/// Number of messages in an encoded chunk.
pub(crate) fn count(chunk: &[u8]) -> Result<usize> {
    let n = read_u32(
        chunk,
        chunk.len().checked_sub(4).ok_or_else(|| bad("too short"))?,
    )? as usize;
    if n.checked_mul(4)
        .and_then(|t| t.checked_add(4))
        .is_none_or(|t| t > chunk.len())
    {
        return Err(bad("message count larger than the chunk"));
    }
    Ok(n)
}

/// Byte range of message `i` within an encoded chunk.
pub(crate) fn message_range(chunk: &[u8], i: usize) -> Result<std::ops::Range<usize>> {
    let n = count(chunk)?;
    if i >= n {
        return Err(bad("message index past the chunk"));
    }
    let table = chunk.len() - 4 - 4 * n;
    let end = read_u32(chunk, table + 4 * i)? as usize;
    let start = if i == 0 {
        0
    } else {
        read_u32(chunk, table + 4 * (i - 1))? as usize
    };
    if start > end || end > table {
        return Err(bad("message offsets out of order"));
    }
    Ok(start..end)
}

/// The plain bytes of every message of an encoded chunk, end to end.
pub(crate) fn payload_len(chunk: &[u8]) -> Result<usize> {
    let n = count(chunk)?;
    Ok(chunk.len() - 4 - 4 * n)
}

/// A chunk with `msg` appended.
pub(crate) fn append(chunk: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let (n, payload) = if chunk.is_empty() {
        (0, 0)
    } else {
        (count(chunk)?, payload_len(chunk)?)
    };
    let new_end = u32::try_from(payload + msg.len()).map_err(|_| bad("chunk over 4 GiB"))?;
    let mut out = Vec::with_capacity(payload + msg.len() + 4 * (n + 2));
    out.extend_from_slice(&chunk[..payload]);
    out.extend_from_slice(msg);
    out.extend_from_slice(&chunk[payload..payload + 4 * n]);
    out.extend_from_slice(&new_end.to_le_bytes());
    out.extend_from_slice(&(n as u32 + 1).to_le_bytes());
    Ok(out)
}

fn read_u32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| bad("offset past the end"))
}

fn bad(detail: &str) -> Error {
    Error::Corrupt {
        what: "conversation chunk".into(),
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_read_back() {
        let mut c = Vec::new();
        let msgs: [&[u8]; 4] = [b"hello", b"", b"{\"role\":\"user\"}", b"x"];
        for m in msgs {
            c = append(&c, m).unwrap();
        }
        assert_eq!(count(&c).unwrap(), 4);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(&c[message_range(&c, i).unwrap()], *m);
        }
        assert!(message_range(&c, 4).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for g in [
            &b""[..],
            b"\x01",
            b"\xff\xff\xff\xff",
            b"ab\x05\x00\x00\x00\x01\x00\x00\x00",
        ] {
            let _ = count(g);
            let _ = message_range(g, 0);
        }
        assert!(count(b"\xff\xff\xff\x7f").is_err());
    }
}
