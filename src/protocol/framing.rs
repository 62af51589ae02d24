//! Message framing for the regular (tagged) protocol: a one-byte tag followed by
//! a big-endian i32 length that counts itself. Incomplete input is not an error;
//! the caller reads more and asks again.

use crate::error::ProxyError;

/// Size of the tag plus the length word.
pub const HEADER_LEN: usize = 5;

/// Tag and total length (tag byte included) of the message at the start of `buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type byte.
    pub tag: u8,
    /// Total bytes the message occupies in the stream (1 + length field).
    pub total_len: usize,
}

/// Looks at the start of `buf`. `Ok(None)` means more bytes are needed.
/// A length below 4 or above `max_len` is a protocol error.
#[inline]
pub fn peek_header(buf: &[u8], max_len: usize) -> Result<Option<Header>, ProxyError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize > max_len {
        return Err(header_error(tag, len, max_len));
    }
    Ok(Some(Header {
        tag,
        total_len: len as usize + 1,
    }))
}

/// Whether `buf` starts with a whole message, or with a header
/// [`peek_header`] refuses (which reading it reports). Reads the length as
/// `peek_header` does, without building its error: checked on every turn
/// of a session's loop.
#[inline]
pub fn holds_a_message(buf: &[u8], max_len: usize) -> bool {
    let Some(len) = buf.get(1..HEADER_LEN) else {
        return false;
    };
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    len < 4 || len as usize > max_len || buf.len() > len as usize
}

/// The error for a header [`peek_header`] refuses (kept out of its inlined
/// body: it is on every message's path, this almost never).
#[cold]
#[inline(never)]
fn header_error(tag: u8, len: i32, max_len: usize) -> ProxyError {
    if len < 4 {
        ProxyError::protocol_violation(format!(
            "invalid length {len} in message of type '{}'",
            tag.escape_ascii()
        ))
    } else {
        ProxyError::message_too_large(len as usize, max_len)
    }
}

/// Iterates over the complete messages at the front of a buffer, yielding each
/// message's tag and byte range. Stops at the first incomplete message.
pub struct Messages<'a> {
    buf: &'a [u8],
    pos: usize,
    max_len: usize,
}

impl<'a> Messages<'a> {
    /// Frames messages in `buf`, refusing any longer than `max_len`.
    pub fn new(buf: &'a [u8], max_len: usize) -> Self {
        Messages {
            buf,
            pos: 0,
            max_len,
        }
    }

    /// Bytes consumed by the complete messages yielded so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(u8, &'a [u8]), ProxyError>;

    fn next(&mut self) -> Option<Self::Item> {
        match peek_header(&self.buf[self.pos..], self.max_len) {
            Ok(Some(h)) if self.buf.len() - self.pos >= h.total_len => {
                let msg = &self.buf[self.pos..self.pos + h.total_len];
                self.pos += h.total_len;
                Some(Ok((h.tag, msg)))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// The text of a message whose body is one string (Query, CommandComplete):
/// the body without its closing NUL; empty when there is no body, so a
/// malformed message is passed on for its receiver to judge, never a panic.
pub fn text_body(msg: &[u8]) -> &[u8] {
    msg.get(5..msg.len().saturating_sub(1)).unwrap_or_default()
}

/// The SQL text of a Query message, checked as Postgres checks it: one
/// string, its NUL the message's last byte.
pub fn query_text(msg: &[u8]) -> Result<&[u8], ProxyError> {
    let body = msg.get(5..).unwrap_or_default();
    match memchr::memchr(0, body) {
        Some(end) if end + 1 == body.len() => Ok(&body[..end]),
        Some(_) => Err(ProxyError::malformed_message("invalid message format")),
        None => Err(ProxyError::malformed_message("invalid string in message")),
    }
}

/// Reads a NUL-terminated string starting at `*pos`, advancing past the NUL.
/// Errors are Postgres's own for such a message (08P01, ERROR).
pub fn read_cstr<'a>(body: &'a [u8], pos: &mut usize) -> Result<&'a [u8], ProxyError> {
    let rest = body
        .get(*pos..)
        .ok_or_else(|| ProxyError::malformed_message("invalid string in message"))?;
    // Most names are empty (the unnamed statement and portal): no search.
    if rest.first() == Some(&0) {
        *pos += 1;
        return Ok(&[]);
    }
    let end = memchr::memchr(0, rest)
        .ok_or_else(|| ProxyError::malformed_message("invalid string in message"))?;
    *pos += end + 1;
    Ok(&rest[..end])
}

/// Reads a big-endian i16 at `*pos`.
pub fn read_i16(body: &[u8], pos: &mut usize) -> Result<i16, ProxyError> {
    let b = body
        .get(*pos..*pos + 2)
        .ok_or_else(|| ProxyError::malformed_message("insufficient data left in message"))?;
    *pos += 2;
    Ok(i16::from_be_bytes([b[0], b[1]]))
}

/// Reads a big-endian i32 at `*pos`.
pub fn read_i32(body: &[u8], pos: &mut usize) -> Result<i32, ProxyError> {
    let b = body
        .get(*pos..*pos + 4)
        .ok_or_else(|| ProxyError::malformed_message("insufficient data left in message"))?;
    *pos += 4;
    Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_message_agrees_with_peek_header() {
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![b'Q'], vec![b'Q', 0, 0, 0]];
        for len in [-1i32, 0, 3, 4, 5, 9, 100, 101, i32::MAX] {
            for extra in [0usize, 1, 4, 5, 96, 97] {
                let mut m = vec![b'Q'];
                m.extend_from_slice(&len.to_be_bytes());
                m.resize(5 + extra, 0);
                cases.push(m);
            }
        }
        for buf in cases {
            let want = match peek_header(&buf, 100) {
                Ok(Some(h)) => buf.len() >= h.total_len,
                Ok(None) => false,
                Err(_) => true,
            };
            assert_eq!(holds_a_message(&buf, 100), want, "{buf:?}");
        }
    }

    #[test]
    fn incomplete_is_none() {
        assert_eq!(peek_header(b"Q\0\0", 100).unwrap(), None);
        let mut it = Messages::new(b"Q\0\0\0\x09SELE", 100);
        assert!(it.next().is_none());
        assert_eq!(it.consumed(), 0);
    }

    #[test]
    fn frames_several() {
        let buf = b"S\0\0\0\x04H\0\0\0\x04Q\0\0";
        let mut it = Messages::new(buf, 100);
        assert_eq!(it.next().unwrap().unwrap().0, b'S');
        assert_eq!(it.next().unwrap().unwrap().0, b'H');
        assert!(it.next().is_none());
        assert_eq!(it.consumed(), 10);
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(peek_header(b"Q\0\0\0\x03", 100).is_err());
        assert!(peek_header(b"Q\xff\xff\xff\xff", 100).is_err());
        assert!(peek_header(b"Q\0\0\x10\0", 100).is_err());
    }

    #[test]
    fn query_text_is_one_string() {
        let q = |body: &[u8]| {
            let mut m = vec![b'Q'];
            m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
            m.extend_from_slice(body);
            m
        };
        assert_eq!(query_text(&q(b"select 1\0")).unwrap(), b"select 1");
        assert_eq!(query_text(&q(b"\0")).unwrap(), b"");
        for bad in [&b"select 12"[..], b"select 1\0junk", b"select 1\0\0", b""] {
            let e = query_text(&q(bad)).expect_err("malformed");
            assert_eq!(
                e.code,
                crate::protocol::sqlstate::SqlState::PROTOCOL_VIOLATION
            );
            assert!(!e.is_fatal(), "{e:?}");
        }
    }

    #[test]
    fn cstr_reading() {
        let body = b"abc\0de\0";
        let mut pos = 0;
        assert_eq!(read_cstr(body, &mut pos).unwrap(), b"abc");
        assert_eq!(read_cstr(body, &mut pos).unwrap(), b"de");
        assert!(read_cstr(body, &mut pos).is_err());
        let mut pos = 0;
        assert!(read_cstr(b"abc", &mut pos).is_err());
        // Empty strings (the unnamed statement and portal) advance by one.
        let body = b"\0\0x\0";
        let mut pos = 0;
        assert_eq!(read_cstr(body, &mut pos).unwrap(), b"");
        assert_eq!(pos, 1);
        assert_eq!(read_cstr(body, &mut pos).unwrap(), b"");
        assert_eq!(read_cstr(body, &mut pos).unwrap(), b"x");
        assert_eq!(pos, 4);
        assert!(read_cstr(body, &mut pos).is_err());
        let mut pos = 9;
        assert!(read_cstr(body, &mut pos).is_err());
    }
}
