//! A minimal Postgres wire-protocol client for the pooling tests, for what
//! tokio-postgres cannot express (one Sync for several statements, text COPY
//! both ways, ParameterStatus, statement-level Describe and Close).
#![allow(dead_code)]

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 5);
    v.push(tag);
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

pub fn describe_stmt(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name);
    msg(b'D', &b)
}

pub fn describe_portal(name: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    cstr(&mut b, name);
    msg(b'D', &b)
}

pub fn close_stmt(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name);
    msg(b'C', &b)
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    msg(b'Q', &b)
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'P', &b)
}

/// Bind with text parameters and text results.
pub fn bind(portal: &str, stmt: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'B', &b)
}

pub fn execute(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&0i32.to_be_bytes());
    msg(b'E', &b)
}

pub fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

pub fn copy_data(data: &[u8]) -> Vec<u8> {
    msg(b'd', data)
}

pub fn copy_done() -> Vec<u8> {
    msg(b'c', &[])
}

/// Parse + Bind + Execute of `sql` (unnamed), no Sync.
pub fn pbe(sql: &str) -> Vec<u8> {
    let mut v = parse("", sql);
    v.extend(bind("", "", &[]));
    v.extend(execute(""));
    v
}

fn fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() && body[pos] != 0 {
        let code = body[pos];
        let end = pos + 1 + body[pos + 1..].iter().position(|&b| b == 0).unwrap();
        out.push((
            code,
            String::from_utf8_lossy(&body[pos + 1..end]).into_owned(),
        ));
        pos = end + 1;
    }
    out
}

/// SQLSTATE of an ErrorResponse/NoticeResponse body.
pub fn sqlstate(body: &[u8]) -> String {
    fields(body)
        .into_iter()
        .find(|(c, _)| *c == b'C')
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// The message (`M`) of an ErrorResponse/NoticeResponse body.
pub fn error_message(body: &[u8]) -> String {
    fields(body)
        .into_iter()
        .find(|(c, _)| *c == b'M')
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Values of a DataRow body (NULL as "NULL").
pub fn data_row(body: &[u8]) -> Vec<String> {
    let mut b = body;
    let n = b.get_i16();
    (0..n)
        .map(|_| {
            let len = b.get_i32();
            if len < 0 {
                "NULL".to_string()
            } else {
                let v = String::from_utf8_lossy(&b[..len as usize]).into_owned();
                b.advance(len as usize);
                v
            }
        })
        .collect()
}

/// A comparable one-line summary of a backend message.
pub fn describe(tag: u8, body: &[u8]) -> String {
    match tag {
        b'E' => format!("Error {}", sqlstate(body)),
        b'N' => format!("Notice {}", sqlstate(body)),
        b'C' => format!(
            "Complete {}",
            String::from_utf8_lossy(&body[..body.len().saturating_sub(1)])
        ),
        b'D' => format!("Row {}", data_row(body).join("|")),
        b'Z' => format!("Ready {}", body[0] as char),
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b's' => "PortalSuspended".into(),
        b'T' => "RowDescription".into(),
        b't' => "ParameterDescription".into(),
        b'I' => "EmptyQuery".into(),
        b'G' => "CopyIn".into(),
        b'H' => "CopyOut".into(),
        b'c' => "CopyDone".into(),
        b'd' => format!("CopyData {}", String::from_utf8_lossy(body)),
        other => format!("Message {}", other as char),
    }
}

impl Raw {
    /// Connects and authenticates (trust, cleartext, md5 or SCRAM).
    pub async fn connect(port: u16, user: &str, password: &str, db: &str) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("raw connect");
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [("user", user), ("database", db)] {
            cstr(&mut body, k);
            cstr(&mut body, v);
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        raw.send(&startup).await;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = raw.recv().await;
            match tag {
                b'R' => {
                    let mut b = &body[..];
                    match b.get_i32() {
                        0 => {}
                        3 => {
                            let mut p = Vec::new();
                            cstr(&mut p, password);
                            raw.send(&msg(b'p', &p)).await;
                        }
                        5 => {
                            let salt = [b[0], b[1], b[2], b[3]];
                            let hash = postgres_protocol::authentication::md5_hash(
                                user.as_bytes(),
                                password.as_bytes(),
                                salt,
                            );
                            let mut p = Vec::new();
                            cstr(&mut p, &hash);
                            raw.send(&msg(b'p', &p)).await;
                        }
                        10 => {
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            let mut p = Vec::new();
                            cstr(&mut p, "SCRAM-SHA-256");
                            p.extend_from_slice(&(s.message().len() as i32).to_be_bytes());
                            p.extend_from_slice(s.message());
                            raw.send(&msg(b'p', &p)).await;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().expect("SASL continue before start");
                            s.update(b).expect("SCRAM server-first");
                            let m = s.message().to_vec();
                            raw.send(&msg(b'p', &m)).await;
                        }
                        12 => {
                            scram
                                .as_mut()
                                .expect("SASL final before start")
                                .finish(b)
                                .expect("SCRAM server-final");
                        }
                        other => panic!("unsupported authentication request {other}"),
                    }
                }
                b'E' => panic!("raw login failed: {}", describe(tag, &body)),
                b'Z' => return raw,
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("raw send");
    }

    /// The next backend message (30 s at most).
    pub async fn recv(&mut self) -> (u8, Bytes) {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let m = self.buf.split_to(len + 1).freeze();
                    return (m[0], m.slice(5..));
                }
            }
            let n =
                tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("no backend message within 30 s")
                    .expect("raw read");
            assert!(n > 0, "server closed the connection");
        }
    }

    /// Messages up to and including the next ReadyForQuery, summarised,
    /// leaving out ParameterStatus.
    pub async fn until_ready(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let (tag, body) = self.recv().await;
            if tag == b'S' {
                continue;
            }
            out.push(describe(tag, &body));
            if tag == b'Z' {
                return out;
            }
        }
    }

    /// ParameterStatus (name, value) pairs up to the next ReadyForQuery.
    pub async fn parameter_status_until_ready(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let (tag, body) = self.recv().await;
            match tag {
                b'S' => {
                    let parts: Vec<String> = body
                        .split(|&b| b == 0)
                        .take(2)
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    out.push((parts[0].clone(), parts[1].clone()));
                }
                b'E' => panic!("unexpected error: {}", describe(tag, &body)),
                b'Z' => return out,
                _ => {}
            }
        }
    }

    pub async fn terminate(mut self) {
        self.send(&msg(b'X', &[])).await;
    }
}
