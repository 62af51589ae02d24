//! The untagged startup phase: StartupMessage, SSLRequest, GSSENCRequest and
//! CancelRequest, each an i32 length followed by an i32 code.

use crate::error::ProxyError;
use crate::protocol::framing::read_cstr;

/// Postgres refuses startup packets longer than this; so do we.
pub const MAX_STARTUP_LEN: usize = 10_000;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// One packet of the startup phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// Client asks for TLS.
    SslRequest,
    /// Client asks for GSSAPI encryption.
    GssEncRequest,
    /// Out-of-band cancel of another session's running query.
    Cancel {
        /// BackendKeyData process id.
        pid: i32,
        /// BackendKeyData secret.
        secret: i32,
    },
    /// A CancelRequest of the wrong length. Postgres closes such a
    /// connection without an answer (a cancel connection reads none).
    MalformedCancel,
    /// A StartupMessage.
    Startup(Startup),
}

/// A parsed StartupMessage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Startup {
    /// Requested protocol major version (always 3 here).
    pub major: u16,
    /// Requested protocol minor version.
    pub minor: u16,
    /// Parameters in the order the client sent them (user, database, options, …).
    pub params: Vec<(String, String)>,
}

impl Startup {
    /// The value of one startup parameter: the last one given, as Postgres
    /// reads a key given twice.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Protocol options (`_pq_.*`) this server does not recognise.
    pub fn unknown_protocol_options(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Length of the startup packet at the start of `buf`, if its length word is
/// complete. Refuses lengths outside 8..=MAX_STARTUP_LEN.
pub fn peek_startup_len(buf: &[u8]) -> Result<Option<usize>, ProxyError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(ProxyError::protocol_violation(format!(
            "invalid startup packet length {len}"
        )));
    }
    Ok(Some(len as usize))
}

/// Parses one complete startup packet (length word included).
pub fn parse_startup(packet: &[u8]) -> Result<StartupPacket, ProxyError> {
    if packet.len() < 8 {
        return Err(ProxyError::protocol_violation("startup packet too short"));
    }
    let code = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    match code {
        SSL_REQUEST if body.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST if body.is_empty() => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST if body.len() == 8 => Ok(StartupPacket::Cancel {
            pid: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            secret: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        }),
        CANCEL_REQUEST => Ok(StartupPacket::MalformedCancel),
        SSL_REQUEST | GSSENC_REQUEST => Err(ProxyError::protocol_violation(
            "malformed startup packet: wrong length for its code",
        )),
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(ProxyError::unsupported_protocol(major, minor));
            }
            let mut params = Vec::new();
            let mut pos = 0;
            loop {
                let key = read_cstr(body, &mut pos).map_err(ProxyError::into_fatal)?;
                if key.is_empty() {
                    break;
                }
                let value = read_cstr(body, &mut pos).map_err(ProxyError::into_fatal)?;
                let key = utf8(key)?;
                let value = utf8(value)?;
                params.push((key, value));
            }
            if pos != body.len() {
                return Err(ProxyError::protocol_violation(
                    "invalid startup packet layout: expected terminator as last byte",
                ));
            }
            Ok(StartupPacket::Startup(Startup {
                major,
                minor,
                params,
            }))
        }
    }
}

fn utf8(b: &[u8]) -> Result<String, ProxyError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| ProxyError::protocol_violation("invalid UTF-8 in startup packet"))
}

/// Splits a libpq `options` value (`-c a=b -c c=d --e=f`) into name/value pairs.
/// Backslash escapes a space, as in libpq.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("--").map(str::to_string)
        };
        if let Some(s) = setting
            && let Some((k, v)) = s.split_once('=')
        {
            out.push((k.replace('-', "_"), v.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> Vec<u8> {
        let mut p = ((body.len() + 8) as i32).to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn parses_startup_params() {
        let p = packet(196_608, b"user\0app\0database\0db\0\0");
        let StartupPacket::Startup(s) = parse_startup(&p).unwrap() else {
            panic!("not a startup")
        };
        assert_eq!(s.get("user"), Some("app"));
        assert_eq!(s.get("database"), Some("db"));
        assert_eq!((s.major, s.minor), (3, 0));
    }

    #[test]
    fn special_codes() {
        assert_eq!(
            parse_startup(&packet(SSL_REQUEST, b"")).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            parse_startup(&packet(GSSENC_REQUEST, b"")).unwrap(),
            StartupPacket::GssEncRequest
        );
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse_startup(&packet(CANCEL_REQUEST, &body)).unwrap(),
            StartupPacket::Cancel { pid: 7, secret: 9 }
        );
        assert_eq!(
            parse_startup(&packet(CANCEL_REQUEST, b"x")).unwrap(),
            StartupPacket::MalformedCancel
        );
        assert!(parse_startup(&packet(SSL_REQUEST, b"x")).is_err());
    }

    #[test]
    fn refuses_bad_packets() {
        assert!(parse_startup(&packet(196_608, b"user\0app")).is_err());
        assert!(parse_startup(&packet(196_608, b"user\0app\0\0junk")).is_err());
        assert!(parse_startup(&packet(2 << 16, b"\0")).is_err());
        assert!(peek_startup_len(&[0, 0, 0, 4]).is_err());
        assert!(peek_startup_len(&[0, 1, 0, 0]).is_err());
        assert_eq!(peek_startup_len(&[0, 0]).unwrap(), None);
    }

    #[test]
    fn options_parsing() {
        let o = parse_options(
            "-c app.current_tenant=acme --search-path=x -cstatement_timeout=5 -c a=b\\ c",
        );
        assert_eq!(
            o,
            vec![
                ("app.current_tenant".into(), "acme".into()),
                ("search_path".into(), "x".into()),
                ("statement_timeout".into(), "5".into()),
                ("a".into(), "b c".into()),
            ]
        );
    }
}
