//! Protocol edge cases at the wire level: SSL/GSS negotiation, protocol
//! versions, broken startup packets, authentication outcomes, what a login
//! reports, malformed messages after login, and pipelined extended-protocol
//! traffic compared message for message with Postgres itself.

mod raw_client;
mod support;

use std::time::Duration;

use raw_client::{
    LoginEnd, Msg, MustFail, RawClient, ReadEnd, batch, bind, close, describe, execute, flush,
    gssenc_request, message, parse, query_msg, ssl_request, startup_message, startup_packet, sync,
    tags, terminate,
};
use support::{
    ProxyHandle, STANDARD_USERS, config_for, connect, psql, psql_ok, sqlstate, start_app_cluster,
    start_proxy, try_connect,
};
use tenantgate::localpg::Cluster;

const MD5_USER: &str = "md5user";
const MD5_PASSWORD: &str = "md5-secret";
/// `server.max_message_size` of the proxy under test.
const MAX_MESSAGE: usize = 65_536;

/// A cluster with database `app`, and a proxy over it: the standard users plus
/// an md5 user, a small `max_message_size`, and the slow-query log on (so
/// every query's text is noted).
async fn setup() -> (Cluster, ProxyHandle) {
    let cluster = start_app_cluster().await;
    let rest = format!(
        "max_message_size = {MAX_MESSAGE}\nslow_query_threshold = \"1h\"\n\
         \n[tenancy]\nglobal_tables = [\"plans\"]\n{STANDARD_USERS}\n\
         [[users]]\nname = \"{MD5_USER}\"\npassword = \"{MD5_PASSWORD}\"\nauth = \"md5\"\n\n\
         [routing]\nhash_shards = [\"s0\"]\n\n\
         [[tenants]]\nid = \"t1\"\nshard = \"s0\"\n"
    );
    let config = config_for(&[("s0", &cluster, "app")], &rest);
    let proxy = start_proxy(config).await;
    (cluster, proxy)
}

async fn app_login(proxy: &ProxyHandle) -> RawClient {
    RawClient::login(proxy.port, "app", "app-secret", "app").await
}

/// Asserts a fresh client can log in and run a query: the proxy still serves.
async fn assert_proxy_serves(proxy: &ProxyHandle) {
    let mut c = app_login(proxy).await;
    assert_eq!(c.query_values("SELECT 40 + 2").await, [Some("42".into())]);
    c.terminate().await;
}

/// Reads what the proxy sends until it closes the connection and checks that
/// it refused: no AuthenticationOk / ReadyForQuery, and any ErrorResponse is a
/// FATAL with one of `codes`. Returns the ErrorResponse, if one came.
async fn expect_refused(c: &mut RawClient, codes: &[&str]) -> Option<Msg> {
    let seen = c.expect_closed().await;
    assert!(
        !seen.iter().any(|m| m.tag == b'Z' || m.tag == b'R'),
        "the proxy did not refuse: {seen:?}"
    );
    let err = seen.iter().find(|m| m.is_error()).cloned();
    if let Some(e) = &err {
        assert_eq!(e.severity().as_deref(), Some("FATAL"), "{:?}", e.fields());
        let code = e.code().unwrap_or_default();
        assert!(
            codes.contains(&code.as_str()),
            "SQLSTATE {code} not in {codes:?}: {:?}",
            e.fields()
        );
    }
    err
}

// ------------------------------------------------------------ negotiation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_request_is_declined_then_startup_works() {
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&ssl_request()).await;
    assert_eq!(c.read_byte().await, Ok(b'N'));
    c.send(&startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    c.authenticate("app", "app-secret")
        .await
        .expect("login after a declined SSLRequest");
    assert_eq!(
        c.query_values("SELECT 'after ssl'").await,
        [Some("after ssl".into())]
    );
    c.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_is_declined_then_startup_works() {
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&gssenc_request()).await;
    assert_eq!(c.read_byte().await, Ok(b'N'));
    // libpq then tries SSL, then plain text on the same connection.
    c.send(&ssl_request()).await;
    assert_eq!(c.read_byte().await, Ok(b'N'));
    c.send(&startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    c.authenticate("app", "app-secret")
        .await
        .expect("login after declined GSSENC and SSL requests");
    assert_eq!(c.query_values("SELECT 1").await, [Some("1".into())]);
}

/// A second SSLRequest (or GSSENCRequest) on one connection is refused as
/// the unknown protocol version it encodes, as Postgres refuses it: a client
/// cannot keep the handshake going by asking again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_requested_twice_is_refused() {
    let (_cluster, proxy) = setup().await;
    for (request, version) in [
        (ssl_request(), "1234.5679"),
        (gssenc_request(), "1234.5680"),
    ] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&request).await;
        assert_eq!(c.read_byte().await, Ok(b'N'));
        c.send(&request).await;
        let e = c.expect_msg().await;
        assert!(e.is_error(), "{e:?}");
        assert_eq!(e.code().as_deref(), Some("0A000"), "{e:?}");
        assert!(e.message().contains(version), "{e:?}");
        c.expect_closed().await;
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_right_after_ssl_request_is_refused() {
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    // The StartupMessage arrives before the client could have read the 'N':
    // it would be read as plaintext that was meant to be encrypted.
    let mut both = ssl_request();
    both.extend_from_slice(&startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ));
    c.send(&both).await;
    // The refusal, if any, comes before any 'N': a first byte 'N' would mean
    // the request was answered as usual.
    let first = c.read_byte().await;
    assert_ne!(first, Ok(b'N'), "the SSLRequest was answered normally");
    if first == Ok(b'E') {
        // The rest of the ErrorResponse follows the tag byte.
        let mut len = [0u8; 4];
        for b in &mut len {
            *b = c.read_byte().await.expect("error length");
        }
        let len = i32::from_be_bytes(len) as usize;
        let mut body = Vec::with_capacity(len - 4);
        for _ in 4..len {
            body.push(c.read_byte().await.expect("error body"));
        }
        let err = Msg { tag: b'E', body };
        assert_eq!(err.code().as_deref(), Some("08P01"), "{:?}", err.fields());
        assert_eq!(err.severity().as_deref(), Some("FATAL"));
        c.expect_closed().await;
    } else {
        assert_eq!(first, Err(ReadEnd::Closed), "unexpected answer");
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_minor_protocol_gets_negotiate_protocol_version() {
    let (_cluster, proxy) = setup().await;
    for minor in [2u16, 1] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(
            3,
            minor,
            &[
                ("user", "app"),
                ("database", "app"),
                ("_pq_.foo", "bar"),
                ("application_name", "edges"),
            ],
        ))
        .await;
        let msgs = c
            .authenticate("app", "app-secret")
            .await
            .unwrap_or_else(|e| panic!("3.{minor} login failed: {e:?}"));
        let v = msgs
            .iter()
            .find(|m| m.tag == b'v')
            .unwrap_or_else(|| panic!("no NegotiateProtocolVersion for 3.{minor}: {msgs:?}"));
        let b = &v.body;
        let newest_minor = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let unrecognised = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        assert_eq!(newest_minor, 0, "newest supported minor version");
        assert_eq!(unrecognised, 1, "number of unrecognised options");
        assert_eq!(&b[8..], b"_pq_.foo\0", "the unrecognised option");
        assert_eq!(c.query_values("SELECT 7").await, [Some("7".into())]);
        // The _pq_ option is a protocol option, not a setting.
        assert_eq!(
            c.query_values("SHOW application_name").await,
            [Some("edges".into())]
        );
        c.terminate().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_3_0_startup_gets_no_negotiation() {
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    let msgs = c.authenticate("app", "app-secret").await.expect("login");
    assert!(!msgs.iter().any(|m| m.tag == b'v'), "{msgs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_major_protocols_are_refused() {
    let (_cluster, proxy) = setup().await;
    for (major, minor) in [(2u16, 0u16), (4, 0), (1, 0)] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(
            major,
            minor,
            &[("user", "app"), ("database", "app")],
        ))
        .await;
        let err = expect_refused(&mut c, &["0A000"]).await;
        let err = err.unwrap_or_else(|| panic!("no ErrorResponse for protocol {major}.{minor}"));
        assert!(
            err.message().contains(&format!("{major}.{minor}")),
            "{:?}",
            err.fields()
        );
    }
    assert_proxy_serves(&proxy).await;
}

// ------------------------------------------------------ broken startup

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_startup_packet_is_refused() {
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    let mut p = 20_000i32.to_be_bytes().to_vec();
    p.extend_from_slice(&196_608i32.to_be_bytes());
    c.send(&p).await;
    let err = expect_refused(&mut c, &["08P01"]).await;
    assert!(err.is_some(), "no ErrorResponse for a 20000-byte startup");
    // A complete startup of 10001+ bytes (a huge parameter) too.
    let mut c = RawClient::connect(proxy.addr).await;
    let big = "x".repeat(10_100);
    let packet = startup_message(3, 0, &[("user", "app"), ("application_name", &big)]);
    let _ = c.try_send(&packet).await;
    expect_refused(&mut c, &["08P01"]).await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_short_startup_packets_are_refused() {
    let (_cluster, proxy) = setup().await;
    for len in [0i32, 4, 7, -1] {
        let mut c = RawClient::connect(proxy.addr).await;
        let mut p = len.to_be_bytes().to_vec();
        p.extend_from_slice(&196_608i32.to_be_bytes());
        c.send(&p).await;
        let err = expect_refused(&mut c, &["08P01"]).await;
        assert!(err.is_some(), "no ErrorResponse for startup length {len}");
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_startup_then_close_is_survived() {
    let (_cluster, proxy) = setup().await;
    let full = startup_message(3, 0, &[("user", "app"), ("database", "app")]);
    for cut in [2, 6, full.len() - 3] {
        let c = RawClient::connect(proxy.addr).await;
        let mut s = c.into_stream();
        tokio::io::AsyncWriteExt::write_all(&mut s, &full[..cut])
            .await
            .expect("write");
        drop(s);
    }
    // Half-closed: the client stops writing but still reads.
    let c = RawClient::connect(proxy.addr).await;
    let mut s = c.into_stream();
    tokio::io::AsyncWriteExt::write_all(&mut s, &full[..full.len() - 3])
        .await
        .expect("write");
    tokio::io::AsyncWriteExt::shutdown(&mut s)
        .await
        .expect("shutdown");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest),
    )
    .await;
    assert!(read.is_ok(), "proxy kept a half-closed startup open");
    assert!(
        !rest.contains(&b'R'),
        "authentication started on a truncated packet: {rest:?}"
    );
    // A malformed body (no terminator) is refused too.
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_packet(196_608, b"user\0app\0database\0app"))
        .await;
    expect_refused(&mut c, &["08P01"]).await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_without_user_is_refused_with_28000() {
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(3, 0, &[("database", "app")])).await;
    let err = expect_refused(&mut c, &["28000"]).await;
    assert!(err.is_some(), "no ErrorResponse for a startup without user");
    // An empty user name is no user name.
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(3, 0, &[("user", ""), ("database", "app")]))
        .await;
    let err = expect_refused(&mut c, &["28000"]).await;
    assert!(err.is_some(), "no ErrorResponse for an empty user name");
    assert_proxy_serves(&proxy).await;
}

/// Startup parameters read as Postgres reads them: an empty database name
/// means the user's name, a key given twice counts with its last value, and
/// `replication` is either off or refused (tenantgate is no WAL sender).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_read_as_postgres_reads_them() {
    let (_cluster, proxy) = setup().await;
    for params in [
        vec![("user", "app"), ("database", "")],
        vec![("user", "nobody"), ("user", "app"), ("database", "app")],
        vec![
            ("user", "app"),
            ("database", "app"),
            ("replication", "false"),
        ],
        vec![("user", "app"), ("database", "app"), ("replication", "OFF")],
    ] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(3, 0, &params)).await;
        c.authenticate("app", "app-secret")
            .await
            .unwrap_or_else(|e| panic!("{params:?}: {e:?}"));
        assert_eq!(
            c.query_values("SELECT current_database()").await,
            [Some("app".into())],
            "{params:?}"
        );
        c.terminate().await;
    }
    for (value, code) in [
        ("true", "0A000"),
        ("database", "0A000"),
        ("yes", "0A000"),
        ("garbage", "22023"),
    ] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(
            3,
            0,
            &[("user", "app"), ("database", "app"), ("replication", value)],
        ))
        .await;
        let err = expect_refused(&mut c, &[code]).await;
        assert!(err.is_some(), "replication={value}: no ErrorResponse");
    }
    assert_proxy_serves(&proxy).await;
}

// ------------------------------------------------------- authentication

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let (_cluster, proxy) = setup().await;
    let wrong = try_connect(proxy.port, "app", "not-the-secret", "app")
        .await
        .must_fail("wrong password accepted");
    assert_eq!(sqlstate(&wrong).as_deref(), Some("28P01"), "{wrong:?}");
    let unknown = try_connect(proxy.port, "nobody", "app-secret", "app")
        .await
        .must_fail("unknown user accepted");
    assert_eq!(sqlstate(&unknown).as_deref(), Some("28P01"), "{unknown:?}");
    let m1 = wrong.as_db_error().expect("db error").message().to_string();
    let m2 = unknown
        .as_db_error()
        .expect("db error")
        .message()
        .to_string();
    assert_eq!(
        m1.replace("\"app\"", "\"X\""),
        m2.replace("\"nobody\"", "\"X\""),
        "an unknown user must not be distinguishable from a wrong password"
    );
    // The unknown user is offered the same method (SCRAM) as a real one.
    for user in ["app", "nobody"] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(
            3,
            0,
            &[("user", user), ("database", "app")],
        ))
        .await;
        let first = c.expect_msg().await;
        assert_eq!(first.tag, b'R', "{first:?}");
        assert_eq!(&first.body[..4], &10i32.to_be_bytes(), "SASL for {user}");
    }
    // The unknown user's salt is stable across attempts but cannot be
    // computed from a secret in the source code (a fixed secret used to
    // make it SHA-256("tenantgate-unknown-user" || user)).
    let salts = [
        unknown_user_salt(&proxy).await,
        unknown_user_salt(&proxy).await,
    ];
    assert_eq!(salts[0], salts[1], "one salt per unknown user");
    use sha2::Digest;
    let guessable = sha2::Sha256::new()
        .chain_update(b"tenantgate-unknown-user")
        .chain_update(b"nobody")
        .finalize();
    assert_ne!(
        salts[0],
        guessable[..16],
        "the unknown user's salt is guessable"
    );
    // The md5 user with a wrong password.
    let md5_wrong = try_connect(proxy.port, MD5_USER, "nope", "app")
        .await
        .must_fail("wrong md5 password accepted");
    assert_eq!(sqlstate(&md5_wrong).as_deref(), Some("28P01"));
    // Raw: the error is FATAL and the connection closes.
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    let err = c.authenticate("app", "bad").await.must_fail("accepted");
    let LoginEnd::Error(err) = err else {
        panic!("login ended without an error: {err:?}")
    };
    assert_eq!(err.code().as_deref(), Some("28P01"));
    assert_eq!(err.severity().as_deref(), Some("FATAL"));
    c.expect_closed().await;
    assert_proxy_serves(&proxy).await;
}

/// The salt the proxy's SCRAM server-first message offers user `nobody`.
async fn unknown_user_salt(proxy: &support::ProxyHandle) -> Vec<u8> {
    use base64::Engine;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(
        3,
        0,
        &[("user", "nobody"), ("database", "app")],
    ))
    .await;
    let sasl = c.expect_msg().await;
    assert_eq!(&sasl.body[..4], &10i32.to_be_bytes(), "{sasl:?}");
    c.send(&raw_client::sasl_initial_response(
        "SCRAM-SHA-256",
        b"n,,n=,r=abcdefghijklmnopqrstuvwx",
    ))
    .await;
    let first = c.expect_msg().await;
    assert_eq!(&first.body[..4], &11i32.to_be_bytes(), "{first:?}");
    let text = String::from_utf8_lossy(&first.body[4..]).to_string();
    let salt = text
        .split(',')
        .find_map(|f| f.strip_prefix("s="))
        .unwrap_or_else(|| panic!("no salt in {text}"));
    base64::engine::general_purpose::STANDARD
        .decode(salt)
        .expect("base64 salt")
}

/// A SASLInitialResponse without its initial response (data length -1):
/// as Postgres does, the proxy sends an empty challenge and takes the
/// client-first-message from the next message; the login then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_login_without_an_initial_response_gets_an_empty_challenge() {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    let sasl = c.expect_msg().await;
    assert_eq!(&sasl.body[..4], &10i32.to_be_bytes(), "{sasl:?}");
    c.send(&message(b'p', b"SCRAM-SHA-256\0\xff\xff\xff\xff"))
        .await;
    let empty = c.expect_msg().await;
    assert_eq!(empty.tag, b'R', "{empty:?}");
    assert_eq!(
        &empty.body[..],
        &11i32.to_be_bytes(),
        "an empty SASLContinue"
    );
    let mut scram = ScramSha256::new(b"app-secret", ChannelBinding::unsupported());
    c.send(&raw_client::sasl_response(scram.message())).await;
    let server_first = c.expect_msg().await;
    assert_eq!(
        &server_first.body[..4],
        &11i32.to_be_bytes(),
        "{server_first:?}"
    );
    scram.update(&server_first.body[4..]).expect("server-first");
    c.send(&raw_client::sasl_response(scram.message())).await;
    let server_final = c.expect_msg().await;
    assert_eq!(
        &server_final.body[..4],
        &12i32.to_be_bytes(),
        "{server_final:?}"
    );
    scram
        .finish(&server_final.body[4..])
        .expect("server signature");
    let ok = c.expect_msg().await;
    assert_eq!(&ok.body[..], &0i32.to_be_bytes(), "AuthenticationOk");
    let rest = c.until_ready().await;
    assert!(!rest.iter().any(|m| m.is_error()), "{rest:?}");
    assert_eq!(c.query_values("SELECT 'in'").await, [Some("in".into())]);
}

/// Garbage in place of the password response: refused, never authenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_auth_responses_are_refused() {
    let (_cluster, proxy) = setup().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a Query instead of a password", query_msg("SELECT 1")),
        (
            "a 100 KB SASL response",
            raw_client::sasl_initial_response("SCRAM-SHA-256", &vec![b'n'; 100 * 1024]),
        ),
        (
            "an unknown SASL mechanism",
            raw_client::sasl_initial_response("SCRAM-SHA-1", b"n,,n=,r=abc"),
        ),
        (
            "a SASL response with a lying length",
            message(b'p', b"SCRAM-SHA-256\0\0\0\x10\0n,,"),
        ),
        ("a length below four", b"p\0\0\0\x01".to_vec()),
    ];
    for (what, bytes) in cases {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(
            3,
            0,
            &[("user", "app"), ("database", "app")],
        ))
        .await;
        let first = c.expect_msg().await;
        assert_eq!(first.tag, b'R', "{what}");
        let _ = c.try_send(&bytes).await;
        // Each a protocol violation in Postgres too (a SASL message over
        // the limit included: "invalid message length").
        let err = expect_refused(&mut c, &["08P01"]).await;
        assert!(err.is_some(), "{what}: closed without an ErrorResponse");
    }
    // md5: an empty password message and a wrong-format one.
    for bytes in [
        raw_client::password_message(b""),
        raw_client::password_message(b"md5zzzz"),
    ] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(
            3,
            0,
            &[("user", MD5_USER), ("database", "app")],
        ))
        .await;
        assert_eq!(c.expect_msg().await.tag, b'R');
        c.send(&bytes).await;
        let err = expect_refused(&mut c, &["28P01", "08P01"]).await;
        assert!(err.is_some());
    }
    // md5: the right hash, but not as the one C string that fills the
    // message (no terminator; junk after it). Postgres refuses both as
    // "invalid password packet size" before it looks at the hash.
    for (what, tail) in [("no terminator", &b""[..]), ("junk after it", b"\0junk\0")] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(
            3,
            0,
            &[("user", MD5_USER), ("database", "app")],
        ))
        .await;
        let first = c.expect_msg().await;
        assert_eq!(&first.body[..4], &5i32.to_be_bytes(), "md5 requested");
        let salt = [first.body[4], first.body[5], first.body[6], first.body[7]];
        let mut body = postgres_protocol::authentication::md5_hash(
            MD5_USER.as_bytes(),
            MD5_PASSWORD.as_bytes(),
            salt,
        )
        .into_bytes();
        body.extend_from_slice(tail);
        c.send(&message(b'p', &body)).await;
        let err = expect_refused(&mut c, &["08P01"]).await;
        assert!(err.is_some(), "{what}: closed without an ErrorResponse");
    }
    assert_proxy_serves(&proxy).await;
}

/// A CancelRequest of the wrong length is closed without an answer, as
/// Postgres closes it: a cancel connection never reads one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cancel_request_is_closed_silently() {
    let (_cluster, proxy) = setup().await;
    for body in [&b""[..], b"\0\0\0\x07", b"\0\0\0\x07\0\0\0\x09\0"] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&raw_client::startup_packet(80_877_102, body)).await;
        let seen = c.expect_closed().await;
        assert!(seen.is_empty(), "{body:?}: answered {seen:?}");
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_3d000() {
    let (_cluster, proxy) = setup().await;
    let e = try_connect(proxy.port, "app", "app-secret", "no_such_db")
        .await
        .must_fail("unknown database accepted");
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e:?}");
    assert!(
        e.as_db_error()
            .expect("db error")
            .message()
            .contains("no_such_db"),
        "{e:?}"
    );
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_user_works_with_psql_and_raw() {
    let (_cluster, proxy) = setup().await;
    let out = psql(proxy.port, MD5_USER, MD5_PASSWORD, "app", "SELECT 'md5 ok'").await;
    assert_eq!(psql_ok(&out), "md5 ok");
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(
        3,
        0,
        &[("user", MD5_USER), ("database", "app")],
    ))
    .await;
    let first = c.expect_msg().await;
    assert_eq!(first.tag, b'R');
    assert_eq!(&first.body[..4], &5i32.to_be_bytes(), "md5 requested");
    let salt = [first.body[4], first.body[5], first.body[6], first.body[7]];
    let hash = postgres_protocol::authentication::md5_hash(
        MD5_USER.as_bytes(),
        MD5_PASSWORD.as_bytes(),
        salt,
    );
    c.send(&raw_client::password_message(hash.as_bytes())).await;
    c.authenticate(MD5_USER, MD5_PASSWORD)
        .await
        .expect("md5 login");
    assert_eq!(c.query_values("SELECT 5").await, [Some("5".into())]);
    // psql with a wrong password fails.
    let bad = psql(proxy.port, MD5_USER, "wrong", "app", "SELECT 1").await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_works_with_tokio_postgres_and_psql() {
    let (_cluster, proxy) = setup().await;
    let client = connect(proxy.port, "app", "app-secret", "app").await;
    let row = client.query_one("SELECT $1::int * 2", &[&21i32]).await;
    let v: i32 = row.expect("query").get(0);
    assert_eq!(v, 42);
    let out = psql(proxy.port, "app", "app-secret", "app", "SELECT 'scram ok'").await;
    assert_eq!(psql_ok(&out), "scram ok");
}

// ------------------------------------------------------- what login says

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_reports_parameters_key_and_idle_status() {
    let (_cluster, proxy) = setup().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    let msgs = c.authenticate("app", "app-secret").await.expect("login");
    for name in [
        "server_version",
        "client_encoding",
        "DateStyle",
        "TimeZone",
        "integer_datetimes",
        "standard_conforming_strings",
    ] {
        let value = c.params.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        assert!(
            value.is_some_and(|v| !v.is_empty()),
            "ParameterStatus {name} missing: {:?}",
            c.params
        );
    }
    assert!(
        c.params
            .contains(&("integer_datetimes".into(), "on".into()))
    );
    let keys = msgs.iter().filter(|m| m.tag == b'K').count();
    assert_eq!(keys, 1, "exactly one BackendKeyData: {msgs:?}");
    let key = msgs.iter().find(|m| m.tag == b'K').expect("key");
    assert_eq!(key.body.len(), 8, "BackendKeyData of protocol 3.0");
    let last = msgs.last().expect("messages");
    assert_eq!(last.ready_status(), Some(b'I'), "{msgs:?}");
    // Everything between AuthenticationOk and ReadyForQuery is S or K.
    assert!(
        msgs[..msgs.len() - 1]
            .iter()
            .all(|m| m.tag == b'S' || m.tag == b'K'),
        "{}",
        tags(&msgs)
    );
    // The reported server_version is the server's.
    let shown = c.query_values("SHOW server_version").await;
    let reported = c
        .params
        .iter()
        .find(|(n, _)| n == "server_version")
        .map(|(_, v)| v.clone());
    assert_eq!(shown, [reported]);
    // Two sessions get different keys.
    let mut other = app_login(&proxy).await;
    assert_ne!(other.key, c.key);
    other.query_values("SELECT 1").await;
}

// ------------------------------------------- malformed messages after login

/// Sends `bytes` on a fresh session and expects a FATAL with one of `codes`
/// and the connection closed, while a witness session keeps working.
async fn assert_malformed_is_fatal(proxy: &ProxyHandle, what: &str, bytes: &[u8], codes: &[&str]) {
    let mut witness = app_login(proxy).await;
    assert_eq!(witness.query_values("SELECT 1").await, [Some("1".into())]);
    let mut victim = app_login(proxy).await;
    assert_eq!(victim.query_values("SELECT 2").await, [Some("2".into())]);
    // A peer that closes early may reset a large write; that is fine.
    let _ = victim.try_send(bytes).await;
    let mut seen = Vec::new();
    let end = loop {
        match victim.read_msg().await {
            Ok(m) => seen.push(m),
            Err(end) => break end,
        }
    };
    assert_eq!(
        end,
        ReadEnd::Closed,
        "{what}: connection not closed: {seen:?}"
    );
    let err = seen
        .iter()
        .find(|m| m.is_error())
        .unwrap_or_else(|| panic!("{what}: no ErrorResponse before the close: {seen:?}"));
    assert_eq!(
        err.severity().as_deref(),
        Some("FATAL"),
        "{what}: {:?}",
        err.fields()
    );
    let code = err.code().unwrap_or_default();
    assert!(
        codes.contains(&code.as_str()),
        "{what}: SQLSTATE {code}, expected one of {codes:?}: {:?}",
        err.fields()
    );
    assert!(
        !seen.iter().any(|m| m.tag == b'Z'),
        "{what}: a ReadyForQuery came with the error: {seen:?}"
    );
    assert_eq!(
        witness.query_values("SELECT 3").await,
        [Some("3".into())],
        "{what}: the witness session broke"
    );
    witness.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_type_is_fatal_08p01() {
    let (_cluster, proxy) = setup().await;
    assert_malformed_is_fatal(
        &proxy,
        "unknown type '@'",
        &message(b'@', b"xyz"),
        &["08P01"],
    )
    .await;
    // A backend-only tag sent by a client.
    assert_malformed_is_fatal(&proxy, "type 'Z'", &message(b'Z', b"I"), &["08P01"]).await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_below_four_is_fatal_08p01() {
    let (_cluster, proxy) = setup().await;
    assert_malformed_is_fatal(&proxy, "Query length 3", b"Q\0\0\0\x03", &["08P01"]).await;
    assert_malformed_is_fatal(&proxy, "Sync length 0", b"S\0\0\0\0", &["08P01"]).await;
    assert_malformed_is_fatal(
        &proxy,
        "negative length",
        b"Q\xff\xff\xff\xf0",
        &["08P01", "54000"],
    )
    .await;
    assert_proxy_serves(&proxy).await;
}

/// A Bind whose parameter length claims more bytes than the message holds:
/// Postgres reports 08P01 as an ERROR and the session goes on after Sync.
/// Through the proxy the result must be the same as direct (or, at worst, a
/// FATAL 08P01 — never a hang or a broken pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_with_overlong_parameter_matches_postgres() {
    let (cluster, proxy) = setup().await;
    let mut bad_bind = Vec::new();
    bad_bind.extend_from_slice(b"\0\0"); // portal, statement
    bad_bind.extend_from_slice(&0i16.to_be_bytes()); // format codes
    bad_bind.extend_from_slice(&1i16.to_be_bytes()); // one parameter
    bad_bind.extend_from_slice(&1000i32.to_be_bytes()); // of 1000 bytes…
    bad_bind.extend_from_slice(b"abc"); // …of which 3 are there
    let script = batch(&[
        parse("", "SELECT $1::text"),
        message(b'B', &bad_bind),
        execute(""),
        sync(),
    ]);
    let mut direct = direct_login(&cluster).await;
    direct.send(&script).await;
    let direct_msgs = direct.until_ready().await;
    assert_eq!(tags(&direct_msgs), "1EZ");
    assert_eq!(
        direct_msgs[1].code().as_deref(),
        Some("08P01"),
        "{:?}",
        direct_msgs[1].fields()
    );

    let mut witness = app_login(&proxy).await;
    let mut c = app_login(&proxy).await;
    c.send(&script).await;
    let mut seen = Vec::new();
    let end = loop {
        match c.read_msg().await {
            Ok(m) => {
                let done = m.tag == b'Z';
                seen.push(m);
                if done {
                    break None;
                }
            }
            Err(e) => break Some(e),
        }
    };
    let err = seen
        .iter()
        .find(|m| m.is_error())
        .unwrap_or_else(|| panic!("no error: {seen:?}"));
    assert_eq!(err.code().as_deref(), Some("08P01"), "{:?}", err.fields());
    match end {
        None => {
            assert_eq!(tags(&seen), tags(&direct_msgs));
            assert_eq!(
                c.query_values("SELECT 'still ok'").await,
                [Some("still ok".into())]
            );
        }
        Some(end) => assert_eq!(end, ReadEnd::Closed, "{seen:?}"),
    }
    assert_eq!(witness.query_values("SELECT 1").await, [Some("1".into())]);
    assert_proxy_serves(&proxy).await;
}

/// Creates the tenant table `items` and logs in as the tenant user.
async fn tenant_items_login(cluster: &Cluster, proxy: &ProxyHandle) -> RawClient {
    support::exec(
        cluster,
        "app",
        "CREATE TABLE items (tenant_id text NOT NULL, id bigint NOT NULL)",
    )
    .await;
    RawClient::login(proxy.port, "t1user", "t1-secret", "app").await
}

/// Sends `script`, reads to ReadyForQuery and returns the SQLSTATE of the
/// error it must have caused (`what` names the case in failures).
async fn error_code_of(c: &mut RawClient, script: &[u8], what: &str) -> String {
    c.send(script).await;
    let msgs = c.until_ready().await;
    let err = msgs
        .iter()
        .find(|m| m.is_error())
        .unwrap_or_else(|| panic!("{what}: no error: {}", tags(&msgs)));
    err.code()
        .unwrap_or_else(|| panic!("{what}: no SQLSTATE: {:?}", err.fields()))
}

/// Nothing reached `items`, the session still works, and so does the proxy.
async fn assert_nothing_written(c: &mut RawClient, proxy: &ProxyHandle) {
    assert_eq!(
        c.query_values("SELECT count(*) FROM items").await,
        [Some("0".into())]
    );
    assert_proxy_serves(proxy).await;
}

/// A tenant column given `$0` (a parameter that cannot exist) in the
/// extended protocol: the Parse fails on the server, the Bind's tenant check
/// finds no such value; the client gets an error, its session goes on, and
/// the proxy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_column_bound_to_parameter_zero_is_refused() {
    let (cluster, proxy) = setup().await;
    let mut c = tenant_items_login(&cluster, &proxy).await;
    let script = batch(&[
        parse("", "INSERT INTO items (tenant_id, id) VALUES ($0, 1)"),
        bind("", "", &[]),
        execute(""),
        sync(),
    ]);
    let code = error_code_of(&mut c, &script, "$0").await;
    assert!(["42501", "42P02"].contains(&code.as_str()), "{code}");
    assert_nothing_written(&mut c, &proxy).await;
}

/// A refusal raised through the server (inside a transaction, where it
/// must abort it as Postgres would) reaches the client as the proxy's: no
/// CONTEXT, file, line or routine of the DO block that raised it. A
/// client's own error in the same place keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_raised_through_the_server_show_no_do_block() {
    let (cluster, proxy) = setup().await;
    let mut c = tenant_items_login(&cluster, &proxy).await;
    c.query("BEGIN").await;
    c.send(&query_msg("SELECT * FROM pg_stats")).await;
    let msgs = c.until_ready().await;
    let err = msgs.iter().find(|m| m.is_error()).expect("refused");
    assert_eq!(err.code().as_deref(), Some("42501"), "{:?}", err.fields());
    for field in [b'W', b'F', b'L', b'R'] {
        assert!(
            err.field(field).is_none(),
            "field {}: {:?}",
            field as char,
            err.fields()
        );
    }
    assert_eq!(msgs.last().and_then(|m| m.ready_status()), Some(b'E'));
    c.query("ROLLBACK").await;
    // The server's own errors are passed on whole.
    c.send(&query_msg("SELECT 1/0")).await;
    let msgs = c.until_ready().await;
    let err = msgs
        .iter()
        .find(|m| m.is_error())
        .expect("division by zero");
    assert_eq!(err.code().as_deref(), Some("22012"));
    assert!(err.field(b'F').is_some(), "{:?}", err.fields());
}

/// A tenant value bound in binary format (tokio-postgres and asyncpg send
/// every parameter so) is read as the tenant column's type: a text tenant's
/// bytes are its text. The proxy read two, four or eight bytes as an
/// integer, so tenant `t1` could not insert its own rows with `$1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_tenant_value_is_read_as_the_column_type() {
    let (cluster, proxy) = setup().await;
    drop(tenant_items_login(&cluster, &proxy).await);
    let c = connect(proxy.port, "t1user", "t1-secret", "app").await;
    let insert = "INSERT INTO items (tenant_id, id) VALUES ($1, $2)";
    c.execute(insert, &[&"t1", &7i64])
        .await
        .expect("the session's own tenant, in binary");
    let e = c
        .execute(insert, &[&"t2", &8i64])
        .await
        .expect_err("another tenant");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    let rows = c
        .query("SELECT tenant_id, id FROM items", &[])
        .await
        .unwrap();
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [("t1".to_string(), 7)]);
}

/// Messages Postgres itself answers with an error, not a crash: a Query
/// with no text at all (not even its NUL), one whose NUL is missing (the
/// proxy read it without its last byte and ran `select 1` for `select 12`)
/// or followed by more bytes; Bind, Parse and Describe with cut-off names,
/// Describe and Close with bytes after the name
/// (an ERROR, after which the session goes on at the Sync); and statements
/// whose quoted names hold multi-byte characters where the proxy's pooling
/// analysis compares prefixes; a Sync or Flush with a body; statement names
/// that are not UTF-8 (the proxy renames statements, so the server never
/// sees them). Through the proxy, each gets what Postgres
/// gives directly, in a trusted and in a tenant session, and the session
/// goes on; the admin console answers the empty one as an empty query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_query_texts_get_postgres_answers() {
    let (cluster, proxy) = setup().await;
    let scripts: Vec<Vec<u8>> = vec![
        message(b'Q', b""),
        message(b'Q', b"select 12"),
        message(b'Q', b"select 1\0junk"),
        message(b'Q', b"select 1\0\0"),
        batch(&[message(b'B', b"portal_without_terminator"), sync()]),
        batch(&[message(b'B', b"\0named_stmt"), sync()]),
        batch(&[message(b'P', b"s\0SELECT 1"), sync()]),
        batch(&[message(b'D', b""), sync()]),
        batch(&[message(b'D', b"Sname_without_terminator"), sync()]),
        batch(&[message(b'D', b"Sname\0left over"), sync()]),
        batch(&[message(b'C', b"Sname\0left over"), sync()]),
        query_msg("SELECT 1 AS \"s\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\"; SELECT 2"),
        batch(&[
            parse(
                "",
                "SELECT 1 AS \"s\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\" -- temp",
            ),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]),
        query_msg("SELECT 1 AS \"pg_advisory_\u{e9}\u{e9}\u{e9}\u{e9}\"; SELECT 2"),
        // A Sync or Flush with a body is an invalid message; the Sync
        // still ends the batch.
        message(b'S', b"xx"),
        batch(&[parse("", "SELECT 1"), message(b'H', b"zz"), sync()]),
        // Names are read in the client encoding (UTF8 here).
        batch(&[message(b'P', b"\xff\xfe\0SELECT 1\0\0\0"), sync()]),
        batch(&[
            parse("", "SELECT 1"),
            message(b'P', b"ok\xe2\x28\xa1\0SELECT 1\0\0\0"),
            sync(),
        ]),
        batch(&[message(b'C', b"S\xff\0"), sync()]),
    ];
    let mut direct = direct_login(&cluster).await;
    for (user, password) in [("app", "app-secret"), ("t1user", "t1-secret")] {
        let mut c = RawClient::login(proxy.port, user, password, "app").await;
        for script in &scripts {
            direct.send(script).await;
            let want = direct.until_ready().await;
            c.send(script).await;
            let got = c.until_ready().await;
            assert_eq!(tags(&got), tags(&want), "{user}: {script:?}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.code(), w.code(), "{user}: {script:?}: {:?}", g.fields());
            }
            assert_eq!(c.query_values("SELECT 'next'").await, [Some("next".into())]);
        }
    }
    let mut console = RawClient::login(proxy.port, "ops", "ops-secret", "tenantgate").await;
    console.send(&message(b'Q', b"")).await;
    let answer = console.until_ready().await;
    // The console reads it as an empty query string.
    assert_eq!(tags(&answer), "IZ");
    assert!(
        !console
            .query("SHOW VERSION")
            .await
            .iter()
            .any(|m| m.is_error())
    );
    assert_proxy_serves(&proxy).await;
}

/// Parameter numbers beyond what the protocol can carry (its counts are 16
/// bits) in a statement the proxy must add the tenant parameter to: refused
/// with 54000 before anything is built for them (`$18446744073709551615` is
/// the largest number a 64-bit count holds; the tenant's would be one more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_numbers_beyond_the_protocol_are_refused() {
    let (cluster, proxy) = setup().await;
    let mut c = tenant_items_login(&cluster, &proxy).await;
    for n in ["18446744073709551615", "100000000", "65535"] {
        let script = batch(&[
            parse("", &format!("SELECT id FROM items WHERE id = ${n}")),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]);
        assert_eq!(
            error_code_of(&mut c, &script, &format!("${n}")).await,
            "54000"
        );
    }
    // The highest number that leaves room for the tenant's parameter goes
    // to the server, whose verdict is its own: $1 … $65533 are unused, so
    // it cannot tell their types (42P18), as it would say directly.
    let script = batch(&[
        parse("", "SELECT count(*) FROM items WHERE id = $65534"),
        sync(),
    ]);
    assert_eq!(error_code_of(&mut c, &script, "$65534").await, "42P18");
    assert_nothing_written(&mut c, &proxy).await;
}

/// The server's copy of a tenant's statement takes one parameter more (the
/// tenant, appended by the proxy to each Bind). A Bind that brings that one
/// value itself is refused with 08P01, as Postgres refuses a wrong count:
/// forwarded, the client's value would have stood for the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_with_a_value_for_the_tenant_parameter_is_refused() {
    let (cluster, proxy) = setup().await;
    let mut c = tenant_items_login(&cluster, &proxy).await;
    support::exec(
        &cluster,
        "app",
        "INSERT INTO items VALUES ('t1', 1), ('t2', 2)",
    )
    .await;
    for (name, sql, values) in [
        ("", "SELECT tenant_id FROM items", vec![Some("t2")]),
        ("s1", "SELECT tenant_id FROM items", vec![Some("t2")]),
        (
            "",
            "SELECT tenant_id FROM items WHERE id > $1",
            vec![Some("0"), Some("t2")],
        ),
        ("", "DELETE FROM items", vec![Some("t2")]),
    ] {
        let script = batch(&[
            parse(name, sql),
            bind("", name, &values),
            execute(""),
            sync(),
        ]);
        c.send(&script).await;
        let msgs = c.until_ready().await;
        let what = format!("{name:?} {sql} with {values:?}");
        assert!(
            msgs.iter().all(|m| m.data_row().is_none()),
            "{what}: rows came back: {}",
            tags(&msgs)
        );
        let err = msgs
            .iter()
            .find(|m| m.is_error())
            .unwrap_or_else(|| panic!("{what}: no error: {}", tags(&msgs)));
        assert_eq!(
            err.code().as_deref(),
            Some("08P01"),
            "{what}: {:?}",
            err.fields()
        );
        assert!(err.message().contains("bind message supplies"), "{what}");
        if !name.is_empty() {
            c.send(&batch(&[close(b'S', name), sync()])).await;
            c.until_ready().await;
        }
    }
    // The right count works, and sees only t1.
    let script = batch(&[
        parse("", "SELECT tenant_id FROM items"),
        bind("", "", &[]),
        execute(""),
        sync(),
    ]);
    c.send(&script).await;
    let msgs = c.until_ready().await;
    let rows: Vec<_> = msgs.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(rows.len(), 1, "{}", tags(&msgs));
    assert_eq!(rows[0][0].as_deref(), Some("t1"));
    // Nothing of t2 was deleted.
    let direct = support::connect_direct(&cluster, "app").await;
    let n: i64 = direct
        .query_one("SELECT count(*) FROM items WHERE tenant_id = 't2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert_proxy_serves(&proxy).await;
}

/// In SJIS (and BIG5, GBK, UHC, GB18030, JOHAB) the second byte of a
/// character can be a backslash: `E'\xC3\x81\' …` is one string literal read
/// as UTF-8 (as the rewriter reads it), but in SJIS `0x81` swallows the
/// backslash and the quote ends the string, so the rest ran as SQL the
/// rewriter never saw. Tenant sessions may not use those encodings, at
/// startup or by SET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_encodings_that_hide_quotes_are_refused() {
    let (cluster, proxy) = setup().await;
    let mut c = tenant_items_login(&cluster, &proxy).await;
    support::exec(&cluster, "app", "INSERT INTO items VALUES ('t2', 2)").await;
    for set in [
        "SET client_encoding = 'SJIS'",
        "SET NAMES 'GBK'",
        "SET client_encoding TO big5",
    ] {
        assert_eq!(error_code_of(&mut c, &query_msg(set), set).await, "0A000");
    }
    // The smuggled statement, sent as it would be after such a SET: read as
    // UTF-8 it is one literal and runs as that (no other tenant's row).
    let smuggle: &[u8] =
        b"SELECT E'\xC3\x81\\' , (SELECT string_agg(tenant_id, ',') FROM items) AS x --'";
    let mut body = smuggle.to_vec();
    body.push(0);
    c.send(&message(b'Q', &body)).await;
    let msgs = c.until_ready().await;
    let rows: Vec<_> = msgs.iter().filter_map(|m| m.data_row()).collect();
    assert!(
        rows.iter().flatten().flatten().all(|v| !v.contains("t2")),
        "another tenant's value came back: {rows:?}"
    );
    // At startup, directly or through options.
    for params in [
        vec![
            ("user", "t1user"),
            ("database", "app"),
            ("client_encoding", "SJIS"),
        ],
        vec![
            ("user", "t1user"),
            ("database", "app"),
            ("options", "-c client_encoding=UHC"),
        ],
    ] {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&startup_message(3, 0, &params)).await;
        match c.authenticate("t1user", "t1-secret").await {
            Err(LoginEnd::Error(e)) => assert_eq!(e.code().as_deref(), Some("0A000"), "{params:?}"),
            other => panic!("{params:?}: {other:?}"),
        }
    }
    // UTF8 and single-byte encodings are fine.
    assert!(
        c.query("SET client_encoding = 'LATIN1'")
            .await
            .iter()
            .all(|m| !m.is_error())
    );
    assert!(
        c.query("SET client_encoding = 'UTF8'")
            .await
            .iter()
            .all(|m| !m.is_error())
    );
    assert_proxy_serves(&proxy).await;
}

/// A parameter checked against the tenant but declared `"char"` or `name`
/// is refused: the server would cut the value short and store another id
/// than the one the proxy checked (`"char"` keeps one byte).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_parameters_of_types_that_cut_values_are_refused() {
    let (cluster, proxy) = setup().await;
    let mut c = tenant_items_login(&cluster, &proxy).await;
    for oid in [18i32, 19] {
        let mut body = b"\0INSERT INTO items (tenant_id, id) VALUES ($1, 5)\0".to_vec();
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&oid.to_be_bytes());
        let script = batch(&[
            message(b'P', &body),
            bind("", "", &[Some("t1")]),
            execute(""),
            sync(),
        ]);
        assert_eq!(
            error_code_of(&mut c, &script, &format!("declared OID {oid}")).await,
            "0A000"
        );
    }
    assert_nothing_written(&mut c, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_max_message_size_is_fatal_54000() {
    let (_cluster, proxy) = setup().await;
    let sql = format!("SELECT '{}'", "x".repeat(100 * 1024));
    assert_malformed_is_fatal(&proxy, "100 KB Query", &query_msg(&sql), &["54000"]).await;
    // Just the header announcing a huge message is enough.
    assert_malformed_is_fatal(&proxy, "header of a 1 GB Parse", b"P\x40\0\0\0", &["54000"]).await;
    // Just under the limit is fine.
    let mut c = app_login(&proxy).await;
    let n = MAX_MESSAGE - 100;
    let sql = format!("SELECT length('{}')", "y".repeat(n));
    assert_eq!(c.query_values(&sql).await, [Some(n.to_string())]);
    assert_proxy_serves(&proxy).await;
}

// ------------------------------------------------- pipelining, extended

async fn direct_login(cluster: &Cluster) -> RawClient {
    RawClient::login(cluster.port(), "postgres", "", "app").await
}

/// Sends `script` and reads `syncs` ReadyForQuery answers.
async fn run_script(c: &mut RawClient, script: &[u8], syncs: usize) -> Vec<Msg> {
    c.send(script).await;
    let mut out = Vec::new();
    for _ in 0..syncs {
        out.extend(c.until_ready().await);
    }
    out
}

/// Tags, with the SQLSTATE of errors and the values of rows: what must match
/// between the proxy and Postgres.
fn shape(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m.tag {
            b'E' => format!("E:{}", m.code().unwrap_or_default()),
            b'D' => format!("D:{:?}", m.data_row().unwrap_or_default()),
            b'C' => format!("C:{}", m.command_tag().unwrap_or_default()),
            b'Z' => format!("Z:{}", m.ready_status().unwrap_or(b'?') as char),
            t => (t as char).to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_error_skips_to_sync_like_postgres() {
    let (cluster, proxy) = setup().await;
    let script = batch(&[
        parse("", "SELECT 1"),
        bind("", "", &[]),
        execute(""),
        parse("", "SELECT 1/0"),
        bind("", "", &[]),
        execute(""),
        parse("", "SELECT 3"),
        bind("", "", &[]),
        execute(""),
        sync(),
    ]);
    let mut direct = direct_login(&cluster).await;
    let expected = run_script(&mut direct, &script, 1).await;
    // Postgres folds 1/0 while planning, so the error comes at Bind.
    assert_eq!(tags(&expected), "12DC1EZ", "Postgres itself");
    let mut c = app_login(&proxy).await;
    let got = run_script(&mut c, &script, 1).await;
    assert_eq!(shape(&got), shape(&expected));
    assert_eq!(got[5].code().as_deref(), Some("22012"));
    // Nothing more arrives after ReadyForQuery.
    assert_eq!(
        c.read_msg_within(Duration::from_millis(300)).await,
        Err(ReadEnd::TimedOut)
    );
    // And the session goes on.
    assert_eq!(c.query_values("SELECT 4").await, [Some("4".into())]);

    // The same inside an explicit transaction: the error aborts it and
    // later Syncs report 'E' until ROLLBACK.
    let script = batch(&[
        query_msg("BEGIN"),
        parse("", "SELECT 1/0"),
        bind("", "", &[]),
        execute(""),
        sync(),
        parse("", "SELECT 1"),
        bind("", "", &[]),
        execute(""),
        sync(),
        query_msg("ROLLBACK"),
    ]);
    let expected = run_script(&mut direct, &script, 4).await;
    let got = run_script(&mut c, &script, 4).await;
    assert_eq!(shape(&got), shape(&expected));
    assert!(
        shape(&got).contains(&"Z:E".to_string()),
        "{:?}",
        shape(&got)
    );
    assert_eq!(shape(&got).last().map(String::as_str), Some("Z:I"));
}

/// A malformed Bind, which the proxy refuses through the server, followed
/// before any Sync by simple Queries: Postgres skips those Queries without
/// a reply, up to the Sync. The proxy counted on their replies: it kept the
/// server connection of the idle session, and messages that had to wait
/// for the replies (behind the skipped `DISCARD ALL`) were never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_behind_a_refused_extended_message_are_skipped_like_postgres() {
    let (cluster, proxy) = setup().await;
    let steps = [
        batch(&[parse("kept", "SELECT 'kept'"), sync()]),
        batch(&[
            message(b'B', b""),
            query_msg("DISCARD ALL"),
            query_msg("SELECT 7"),
            sync(),
            sync(),
        ]),
        batch(&[describe(b'P', ""), sync()]),
        batch(&[bind("", "kept", &[]), execute(""), sync()]),
        query_msg("SELECT 'end'"),
    ];
    let mut answers = Vec::new();
    let mut open = Vec::new();
    // Step by step, and all at once (the later messages reach the proxy
    // while the replies to the earlier ones are still to come).
    for at_once in [false, true] {
        for mut c in [direct_login(&cluster).await, app_login(&proxy).await] {
            let got = if at_once {
                run_script(&mut c, &steps.concat(), 6).await
            } else {
                let mut got = Vec::new();
                for (step, n) in steps.iter().zip([1, 2, 1, 1, 1]) {
                    got.extend(run_script(&mut c, step, n).await);
                }
                got
            };
            answers.push(shape(&got));
            open.push(c);
        }
    }
    assert_eq!(answers[1], answers[0], "through the proxy vs Postgres");
    assert_eq!(
        answers[3], answers[2],
        "at once: through the proxy vs Postgres"
    );
    assert_eq!(answers[0], answers[2]);
    assert_eq!(
        answers[0][..9],
        [
            "1",
            "Z:I",
            "E:08P01",
            "Z:I",
            "Z:I",
            "E:34000",
            "Z:I",
            "2",
            "D:[Some(\"kept\")]"
        ]
    );
    // The proxy saw every reply it waited for: the idle sessions, still
    // open, hold no server connection.
    let ops = connect(proxy.port, "ops", "ops-secret", "tenantgate").await;
    let mut busy = Vec::new();
    for _ in 0..20 {
        let pools = ops.simple_query("SHOW POOLS").await.expect("SHOW POOLS");
        busy = pools
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get("sv_active").map(str::to_string)
                }
                _ => None,
            })
            .collect();
        if busy == ["0"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        busy,
        ["0"],
        "a server connection still held by an idle session"
    );
    for c in open {
        c.terminate().await;
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_without_sync_returns_results() {
    let (cluster, proxy) = setup().await;
    let script = batch(&[
        parse("", "SELECT 'flushed'"),
        bind("", "", &[]),
        execute(""),
        flush(),
    ]);
    for (who, mut c) in [
        ("direct", direct_login(&cluster).await),
        ("proxy", app_login(&proxy).await),
    ] {
        c.send(&script).await;
        let mut got = Vec::new();
        for _ in 0..4 {
            match c.read_msg_within(Duration::from_secs(5)).await {
                Ok(m) => got.push(m),
                Err(e) => panic!("{who}: Flush did not deliver the results: {e:?} after {got:?}"),
            }
        }
        assert_eq!(tags(&got), "12DC", "{who}");
        assert_eq!(got[2].data_row(), Some(vec![Some("flushed".into())]));
        // Nothing else (no ReadyForQuery) before the Sync.
        assert_eq!(
            c.read_msg_within(Duration::from_millis(300)).await,
            Err(ReadEnd::TimedOut),
            "{who}"
        );
        c.send(&sync()).await;
        let rest = c.until_ready().await;
        assert_eq!(shape(&rest), ["Z:I"], "{who}");
        // A Flush with an error pending reports the error at once, too.
        c.send(&batch(&[parse("", "SELEC oops"), flush()])).await;
        let e = c
            .read_msg_within(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{who}: no error after Flush: {e:?}"));
        assert_eq!(e.code().as_deref(), Some("42601"), "{who}");
        c.send(&sync()).await;
        assert_eq!(shape(&c.until_ready().await), ["Z:I"], "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_live_across_syncs() {
    let (cluster, proxy) = setup().await;
    let steps: Vec<Vec<u8>> = vec![
        batch(&[parse("s_add", "SELECT $1::int + 1 AS n"), sync()]),
        batch(&[describe(b'S', "s_add"), sync()]),
        batch(&[bind("", "s_add", &[Some("41")]), execute(""), sync()]),
        batch(&[
            bind("p1", "s_add", &[Some("1")]),
            describe(b'P', "p1"),
            execute("p1"),
            sync(),
        ]),
        // A second statement, and both used in one batch.
        batch(&[
            parse("s_cat", "SELECT $1::text || $2::text"),
            bind("", "s_cat", &[Some("a"), Some("b")]),
            execute(""),
            bind("", "s_add", &[None]),
            execute(""),
            sync(),
        ]),
        query_msg("SELECT 'simple in between'"),
        batch(&[close(b'S', "s_add"), sync()]),
        // Closed: using it is 26000.
        batch(&[bind("", "s_add", &[Some("1")]), execute(""), sync()]),
        batch(&[describe(b'S', "never_prepared"), sync()]),
        batch(&[
            bind("", "s_cat", &[Some("c"), Some("d")]),
            execute(""),
            sync(),
        ]),
    ];
    let mut direct = direct_login(&cluster).await;
    let mut c = app_login(&proxy).await;
    // Another client in between, so transaction pooling may move the session
    // to another server connection between Syncs.
    let mut other = app_login(&proxy).await;
    for (i, step) in steps.iter().enumerate() {
        let expected = run_script(&mut direct, step, 1).await;
        let got = run_script(&mut c, step, 1).await;
        assert_eq!(shape(&got), shape(&expected), "step {i}");
        // Describe answers carry the same parameter and row descriptions.
        for (g, e) in got.iter().zip(&expected) {
            if g.tag == b't' {
                assert_eq!(g.body, e.body, "step {i}: ParameterDescription");
            }
            if g.tag == b'T' {
                assert_eq!(
                    g.body[..2],
                    e.body[..2],
                    "step {i}: RowDescription column count"
                );
            }
        }
        other.query_values("SELECT 1").await;
    }
    // The checks that matter, spelled out.
    let got = run_script(
        &mut c,
        &batch(&[
            bind("", "s_cat", &[Some("x"), Some("y")]),
            execute(""),
            sync(),
        ]),
        1,
    )
    .await;
    assert_eq!(shape(&got), ["2", "D:[Some(\"xy\")]", "C:SELECT 1", "Z:I"]);
}

/// Postgres refuses a Parse that reuses the name of an existing prepared
/// statement (42P05) and keeps the old statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparse_of_existing_name_is_refused_like_postgres() {
    let (cluster, proxy) = setup().await;
    let steps: Vec<Vec<u8>> = vec![
        batch(&[parse("dup", "SELECT 1 AS one"), sync()]),
        batch(&[parse("dup", "SELECT 2 AS two"), sync()]),
        batch(&[bind("", "dup", &[]), execute(""), sync()]),
        // In one batch with a valid one after: the error skips the rest.
        batch(&[parse("dup", "SELECT 3"), parse("fresh", "SELECT 4"), sync()]),
        batch(&[bind("", "fresh", &[]), execute(""), sync()]),
    ];
    assert_steps_match(&cluster, &proxy, &steps).await;
}

/// A named Parse that fails (or is skipped after an earlier error in its
/// batch) defines nothing: later use of the name is 26000, as in Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_named_parse_defines_nothing() {
    let (cluster, proxy) = setup().await;
    let steps: Vec<Vec<u8>> = vec![
        batch(&[parse("broken", "SELEC 1"), sync()]),
        batch(&[bind("", "broken", &[]), execute(""), sync()]),
        batch(&[describe(b'S', "broken"), sync()]),
        batch(&[
            parse("", "SELECT 1/0"),
            bind("", "", &[]),
            execute(""),
            parse("skipped", "SELECT 5"),
            sync(),
        ]),
        batch(&[bind("", "skipped", &[]), execute(""), sync()]),
    ];
    assert_steps_match(&cluster, &proxy, &steps).await;
}

/// Runs each step directly and through the proxy (one Sync each) and
/// asserts the answers have the same shape, listing every mismatch.
async fn assert_steps_match(cluster: &Cluster, proxy: &ProxyHandle, steps: &[Vec<u8>]) {
    let mut direct = direct_login(cluster).await;
    let mut c = app_login(proxy).await;
    let mut mismatches = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let expected = shape(&run_script(&mut direct, step, 1).await);
        let got = shape(&run_script(&mut c, step, 1).await);
        if got != expected {
            mismatches.push(format!("step {i}: proxy {got:?}, Postgres {expected:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_batches_match_postgres() {
    let (cluster, proxy) = setup().await;
    let queries = [
        "SELECT 1; SELECT 1/(random() * 0)::int; SELECT 3",
        "",
        ";",
        "SELECT 1; ; SELECT 2",
        "BEGIN; SELECT 1; COMMIT",
        "BEGIN; SELECT nope; SELECT 2",
        "SELECT 3",
        "ROLLBACK",
        "SELECT generate_series(1, 3)",
    ];
    let mut direct = direct_login(&cluster).await;
    let mut c = app_login(&proxy).await;
    for q in queries {
        let expected = direct.query(q).await;
        let got = c.query(q).await;
        assert_eq!(shape(&got), shape(&expected), "query {q:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_statement_reports_types() {
    let (_cluster, proxy) = setup().await;
    let mut c = app_login(&proxy).await;
    let got = run_script(
        &mut c,
        &batch(&[
            parse("d1", "SELECT $1::int4 AS a, $2::text AS b"),
            describe(b'S', "d1"),
            sync(),
        ]),
        1,
    )
    .await;
    assert_eq!(tags(&got), "1tTZ");
    let t = &got[1].body;
    assert_eq!(&t[..2], &2i16.to_be_bytes());
    assert_eq!(&t[2..6], &23i32.to_be_bytes(), "int4");
    assert_eq!(&t[6..10], &25i32.to_be_bytes(), "text");
    let row_desc = &got[2].body;
    assert_eq!(&row_desc[..2], &2i16.to_be_bytes());
    assert!(row_desc.windows(2).any(|w| w == b"a\0"));
    assert!(row_desc.windows(2).any(|w| w == b"b\0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_closes_cleanly() {
    let (_cluster, proxy) = setup().await;
    let mut c = app_login(&proxy).await;
    c.query_values("SELECT 1").await;
    c.send(&terminate()).await;
    let seen = c.expect_closed_within(Duration::from_secs(5)).await;
    assert!(seen.is_empty(), "messages after Terminate: {seen:?}");
    // Terminate in the middle of a transaction: closed too, and the
    // transaction does not leak into the next client.
    let mut c = app_login(&proxy).await;
    c.query("BEGIN").await;
    c.query("CREATE TEMP TABLE gone (x int)").await;
    c.send(&terminate()).await;
    let seen = c.expect_closed_within(Duration::from_secs(5)).await;
    assert!(seen.is_empty(), "messages after Terminate: {seen:?}");
    let mut next = app_login(&proxy).await;
    let status = next.query("SELECT 1").await;
    assert_eq!(shape(&status).last().map(String::as_str), Some("Z:I"));
    let msgs = next
        .query("SELECT count(*) FROM pg_class WHERE relname = 'gone'")
        .await;
    assert_eq!(shape(&msgs)[1], "D:[Some(\"0\")]");
    assert_proxy_serves(&proxy).await;
}

/// A message type no client sends ends the session as in Postgres: after
/// the batches before it are answered (a Query before it runs and commits),
/// and also while messages are being skipped after an error (there the
/// replies to the batch cut short are not delivered). A Parse whose
/// parameter types cannot be read is an error of its own and leaves the
/// unnamed statement as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_end_sessions_where_postgres_ends_them() {
    let (cluster, proxy) = setup().await;
    support::exec(&cluster, "app", "CREATE TABLE before_fatal (n int)").await;
    let mut short_types = Vec::new();
    short_types.extend_from_slice(b"\0SELECT $1::int\0");
    short_types.extend_from_slice(&2i16.to_be_bytes());
    short_types.extend_from_slice(&23u32.to_be_bytes());
    let scripts = [
        // A Query, then garbage.
        batch(&[
            query_msg("INSERT INTO before_fatal SELECT 1 FROM pg_sleep(0.2)"),
            message(b'@', b"xyz"),
        ]),
        // An error, then garbage among the skipped messages.
        batch(&[
            parse("", "SELECT 1/0"),
            bind("", "", &[]),
            execute(""),
            message(b'Z', b"I"),
            sync(),
        ]),
        // A Parse that cannot be read; the unnamed statement before it stays.
        batch(&[
            parse("", "SELECT 'still here'"),
            sync(),
            message(b'P', &short_types),
            sync(),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]),
    ];
    for (i, script) in scripts.iter().enumerate() {
        let mut answers = Vec::new();
        for mut c in [direct_login(&cluster).await, app_login(&proxy).await] {
            c.send(script).await;
            let mut seen = Vec::new();
            loop {
                match c.read_msg_within(Duration::from_secs(5)).await {
                    Ok(m) => {
                        let last = i == 2 && m.tag == b'Z' && seen.len() >= 6;
                        seen.push(m);
                        if last {
                            break;
                        }
                    }
                    Err(ReadEnd::Closed) => break,
                    Err(ReadEnd::TimedOut) => panic!("script {i}: stuck after {seen:?}"),
                }
            }
            answers.push(shape(&seen));
        }
        if i == 1 {
            // The replies of the batch cut short, which Postgres flushes as
            // it dies, the server sends only at a Sync that never comes:
            // the proxy's client gets the FATAL error alone.
            assert_eq!(answers[0], ["1", "E:22012", "E:08P01"]);
            assert_eq!(answers[1], ["E:08P01"]);
            continue;
        }
        assert_eq!(
            answers[1], answers[0],
            "script {i}: through the proxy vs Postgres"
        );
        match i {
            0 => assert_eq!(answers[0], ["C:INSERT 0 1", "Z:I", "E:08P01"]),
            _ => assert_eq!(
                answers[0],
                [
                    "1",
                    "Z:I",
                    "E:08P01",
                    "Z:I",
                    "2",
                    "D:[Some(\"still here\")]",
                    "C:SELECT 1",
                    "Z:I"
                ]
            ),
        }
    }
    let direct = support::connect_direct(&cluster, "app").await;
    let rows: i64 = direct
        .query_one("SELECT count(*) FROM before_fatal", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        rows, 2,
        "the INSERT before the garbage committed, direct and proxied"
    );
    assert_proxy_serves(&proxy).await;
}

/// Statements sent before a Terminate run to their end, as in Postgres: a
/// Query (or a batch ended by Sync) outside a transaction block commits,
/// even when the client closes its socket right after the Terminate; the
/// replies reach a client that still reads. Extended-protocol messages
/// with no Sync after them are not committed (Postgres rolls them back as
/// it exits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_before_a_terminate_run_to_their_end() {
    let (cluster, proxy) = setup().await;
    support::exec(&cluster, "app", "CREATE TABLE landed (n int)").await;
    let slow_insert =
        |n: i32| query_msg(&format!("INSERT INTO landed SELECT {n} FROM pg_sleep(0.3)"));
    for target in ["direct", "proxy"] {
        let login = || async {
            if target == "direct" {
                direct_login(&cluster).await
            } else {
                app_login(&proxy).await
            }
        };
        // The client reads what comes.
        let mut c = login().await;
        c.send(&batch(&[slow_insert(1), terminate()])).await;
        let seen = c.expect_closed_within(Duration::from_secs(5)).await;
        assert_eq!(tags(&seen), "CZ", "{target}");
        // The client closes at once.
        let mut c = login().await;
        c.send(&batch(&[
            slow_insert(2),
            parse("", "INSERT INTO landed VALUES (3)"),
            bind("", "", &[]),
            execute(""),
            sync(),
            parse("", "INSERT INTO landed VALUES (4)"),
            bind("", "", &[]),
            execute(""),
            terminate(),
        ]))
        .await;
        drop(c);
        let direct = support::connect_direct(&cluster, "app").await;
        let mut landed = Vec::new();
        for _ in 0..50 {
            landed = direct
                .query("SELECT n FROM landed ORDER BY n", &[])
                .await
                .expect("landed")
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect();
            if landed.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Nothing more lands later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again: i64 = direct
            .query_one("SELECT count(*) FROM landed", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(landed, [1, 2, 3], "{target}");
        assert_eq!(again, 3, "{target}");
        support::exec(&cluster, "app", "TRUNCATE landed").await;
    }
    assert_proxy_serves(&proxy).await;
}

/// Pipelined batches whose outcome decides what a later message means, each
/// sent in one write (the proxy reads them all before any reply is in),
/// compared with Postgres: a Bind of the unnamed statement behind an earlier
/// batch's unnamed Parse that the server skips; a new unnamed statement
/// behind an earlier batch's failing unnamed Parse; a Bind of a statement
/// that does not exist behind a batch that fails its transaction (Postgres
/// looks the statement up before it checks the transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_decide_what_later_messages_mean_as_in_postgres() {
    let (cluster, proxy) = setup().await;
    let scripts = [
        batch(&[
            bind("a", "", &[]),
            parse("", "SELECT 'skipped'"),
            sync(),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]),
        batch(&[
            parse("", "SELECT * FROM no_such_table"),
            sync(),
            parse("", "SELECT 'newer'"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]),
        batch(&[
            query_msg("BEGIN"),
            describe(b'S', "nope"),
            sync(),
            bind("", "", &[]),
            sync(),
            query_msg("ROLLBACK"),
        ]),
    ];
    let readies = [2, 2, 4];
    for (i, script) in scripts.iter().enumerate() {
        let mut answers = Vec::new();
        for mut c in [direct_login(&cluster).await, app_login(&proxy).await] {
            answers.push(shape(&run_script(&mut c, script, readies[i]).await));
        }
        assert_eq!(
            answers[1], answers[0],
            "script {i}: through the proxy vs Postgres"
        );
        let expected: &[&str] = match i {
            0 => &["E:26000", "Z:I", "E:26000", "Z:I"],
            1 => &[
                "E:42P01",
                "Z:I",
                "1",
                "2",
                "D:[Some(\"newer\")]",
                "C:SELECT 1",
                "Z:I",
            ],
            _ => &[
                "C:BEGIN",
                "Z:T",
                "E:26000",
                "Z:E",
                "E:26000",
                "Z:E",
                "C:ROLLBACK",
                "Z:I",
            ],
        };
        assert_eq!(answers[0], expected, "script {i}: Postgres itself");
    }
    assert_proxy_serves(&proxy).await;
}

/// A session that ends (Terminate, or a message no client may send) while
/// a `COPY … FROM STDIN` it started waits for data: the COPY fails and the
/// session ends, nothing waits forever; and names that are not UTF-8 get
/// 22021 before the statement is looked up, as in Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_in_copy_and_bad_names_fail_as_in_postgres() {
    let (cluster, proxy) = setup().await;
    support::exec(&cluster, "app", "CREATE TABLE copied (n int)").await;
    for end in [terminate(), message(b'@', b"x")] {
        for target in ["direct", "proxy"] {
            let mut c = if target == "direct" {
                direct_login(&cluster).await
            } else {
                app_login(&proxy).await
            };
            c.send(&batch(&[query_msg("COPY copied FROM STDIN"), end.clone()]))
                .await;
            let seen = c.expect_closed_within(Duration::from_secs(10)).await;
            assert_eq!(
                seen.first().map(|m| m.tag),
                Some(b'G'),
                "{target}: {seen:?}"
            );
        }
    }
    let mut bad_bind = Vec::new();
    bad_bind.extend_from_slice(b"\xff\xfe\0\0");
    bad_bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let script = batch(&[
        message(b'B', &bad_bind),
        sync(),
        message(b'D', b"S_tg_\xff\0"),
        sync(),
    ]);
    let mut answers = Vec::new();
    for mut c in [direct_login(&cluster).await, app_login(&proxy).await] {
        answers.push(shape(&run_script(&mut c, &script, 2).await));
    }
    assert_eq!(answers[1], answers[0], "through the proxy vs Postgres");
    assert_eq!(answers[0], ["E:22021", "Z:I", "E:22021", "Z:I"]);
    assert_proxy_serves(&proxy).await;
}
