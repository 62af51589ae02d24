//! Random client traffic after login, well formed and not: every message
//! type a client may send (and some it may not), with fields cut short,
//! bytes flipped, counts and lengths that lie, in random order and mixed
//! with statements that change session state (transactions, COPY, LISTEN,
//! advisory locks, SQL PREPARE). Whatever a session sends, the proxy must
//! not panic, must answer every error with a SQLSTATE, must end each
//! exchange (a ReadyForQuery for the client's last Sync or Query, or a
//! closed connection), must keep serving a bystander session throughout,
//! and must leave no server connection busy or lost once the sessions are
//! gone. Sessions go to three proxies over one cluster: transaction
//! pooling, the same with `rls`, and session pooling.
//!
//! The cases come from a seeded generator: `TG_FUZZ_SEED` replays a run
//! (the seed is printed), `TG_FUZZ_CASES` sets how many sessions run.

mod raw_client;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use raw_client::{Msg, RawClient, ReadEnd, message};
use support::{STANDARD_USERS, connect, start_app_cluster, start_proxy};

/// Server connections of the shard: small, so sessions share them and a
/// connection left busy or lost shows.
const POOL_SIZE: usize = 2;

/// Panics in this test binary outside the tests' own threads.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Statement texts: plain ones, ones that change session state, ones the
/// proxy refuses or answers itself, and broken ones.
const SQL: &[&str] = &[
    "SELECT 1",
    "SELECT $1::int",
    "SELECT $1::text, $2::int",
    "SELECT id, note FROM items WHERE id = $1",
    "SELECT * FROM items",
    "INSERT INTO items (id, note) VALUES (1, 'x')",
    "UPDATE items SET note = 'y' WHERE id = 1",
    "DELETE FROM items WHERE id = 2",
    "SELECT * FROM plans",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "ROLLBACK TO SAVEPOINT s",
    "SET application_name = 'fuzz'",
    "SET LOCAL statement_timeout = '5s'",
    "RESET ALL",
    "SHOW application_name",
    "LISTEN fuzz_channel",
    "UNLISTEN *",
    "NOTIFY fuzz_channel, 'x'",
    "SELECT pg_advisory_lock(42)",
    "SELECT pg_advisory_unlock_all()",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "DEALLOCATE p",
    "DEALLOCATE ALL",
    "DISCARD ALL",
    "CREATE TEMP TABLE IF NOT EXISTS scratch (a int)",
    "DECLARE cur CURSOR WITH HOLD FOR SELECT 1",
    "COPY (SELECT 1) TO STDOUT",
    "COPY items (id, note) FROM STDIN",
    "SELECT 1; SELECT 2",
    "SELECT 1/0",
    "SELECT pg_sleep(0.01)",
    "SELECT * FROM no_such_table",
    "SELECT '",
    "",
    ";",
    "SET app.current_tenant = 't1'",
    "RESET app.current_tenant",
    "SELECT set_config('search_path', 'pg_catalog', false)",
];

/// Statement and portal names; those from the sixth on are the proxy's
/// (reserved, or answered by the proxy itself) or a cursor's.
const NAMES: &[&str] = &["", "", "a", "b", "p", "_tg_1", "_tg_noop", "cur"];

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

fn name(rng: &mut Rng, reserved: bool) -> Vec<u8> {
    if reserved && rng.chance(5) {
        // Longer than Postgres keeps, or not UTF-8.
        return if rng.chance(50) {
            vec![b'n'; 64 + rng.below(40)]
        } else {
            vec![0xff, 0xfe, b'x']
        };
    }
    let names = if reserved { NAMES } else { &NAMES[..5] };
    rng.pick(names).as_bytes().to_vec()
}

/// Statements the comparison with Postgres leaves out: a Sync sent while a
/// `COPY … FROM STDIN` waits for its data is ignored by Postgres, counted
/// by the proxy (which sees the COPY begin only later); an SQL `EXECUTE` of
/// a statement prepared by Parse is refused by the proxy (0A000, see
/// docs/architecture.md).
const NOT_COMPARED: &[&str] = &["COPY items (id, note) FROM STDIN", "EXECUTE p"];

/// A statement text; `compared`: none of [`NOT_COMPARED`].
fn sql(rng: &mut Rng, compared: bool) -> Vec<u8> {
    let text = any_sql(rng);
    let left_out = |t: &[u8]| {
        NOT_COMPARED
            .iter()
            .any(|n| t.windows(n.len()).any(|w| w == n.as_bytes()))
    };
    if compared && left_out(&text) {
        return b"SELECT 1".to_vec();
    }
    text
}

fn any_sql(rng: &mut Rng) -> Vec<u8> {
    match rng.below(20) {
        0 => {
            // Text with bytes of every kind (no NUL: the NUL ends it).
            let len = 1 + rng.below(40);
            let mut b = rng.bytes(len);
            b.iter_mut().for_each(|x| *x = (*x).max(1));
            b
        }
        1 => {
            // Many statements in one string.
            let n = 2 + rng.below(4);
            let parts: Vec<&str> = (0..n).map(|_| *rng.pick(SQL)).collect();
            parts.join("; ").into_bytes()
        }
        _ => rng.pick(SQL).as_bytes().to_vec(),
    }
}

/// A parameter value, format or count that may lie.
fn bind_body(rng: &mut Rng, reserved: bool) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, &name(rng, reserved));
    cstr(&mut b, &name(rng, reserved));
    let formats = *rng.pick(&[0i16, 0, 1, 2, -1, 7]);
    b.extend_from_slice(&formats.to_be_bytes());
    for _ in 0..formats.max(0) {
        b.extend_from_slice(&(*rng.pick(&[0i16, 1, 2, -3])).to_be_bytes());
    }
    let params = *rng.pick(&[0i16, 1, 1, 2, 3, -1, 300]);
    b.extend_from_slice(&params.to_be_bytes());
    for _ in 0..params.clamp(0, 4) {
        match rng.below(6) {
            0 => b.extend_from_slice(&(-1i32).to_be_bytes()),
            1 => b.extend_from_slice(&(*rng.pick(&[-2i32, 1000, i32::MAX])).to_be_bytes()),
            _ => {
                let v = *rng.pick(&[&b"1"[..], b"42", b"t1", b"abc", b"\xff\xfe", b""]);
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    let results = *rng.pick(&[0i16, 1, 1, -2, 9]);
    b.extend_from_slice(&results.to_be_bytes());
    for _ in 0..results.clamp(0, 3) {
        b.extend_from_slice(&(*rng.pick(&[0i16, 1, 5])).to_be_bytes());
    }
    b
}

/// What one generated session sends, and what may be expected of it.
#[derive(Default)]
struct Script {
    /// Lengths may lie (off for the comparison with Postgres, where what
    /// follows a lie depends on the timing of reads).
    lies: bool,
    /// Names the proxy reserves (`_tg_…`, refused where Postgres would
    /// accept them), names that are not UTF-8, and the statements of
    /// [`NOT_COMPARED`] may come (off for the comparison with Postgres).
    reserved: bool,
    bytes: Vec<u8>,
    /// A length that lies: what follows is read as other messages, or the
    /// proxy waits for bytes that never come.
    framing_broken: bool,
    /// A Terminate was sent.
    terminated: bool,
    /// Each message as sent, for the report of a failing case.
    sent: Vec<String>,
}

impl Script {
    fn push(&mut self, rng: &mut Rng, tag: u8, mut body: Vec<u8>) {
        // Damage: a body cut short (framed as such), or bytes flipped.
        if !body.is_empty() && rng.chance(12) {
            body.truncate(rng.below(body.len()));
        }
        if !body.is_empty() && rng.chance(8) {
            let at = rng.below(body.len());
            body[at] ^= 1 << rng.below(8);
        }
        let mut m = message(tag, &body);
        if self.lies && rng.chance(3) {
            // A length that lies.
            let lie: i32 = match rng.below(4) {
                0 => rng.below(4) as i32,
                1 => (body.len() as i32 + 4) - 1 - rng.below(body.len().max(1)) as i32,
                2 => body.len() as i32 + 5 + rng.below(100) as i32,
                _ => *rng.pick(&[-1i32, i32::MAX, 1 << 30]),
            };
            m[1..5].copy_from_slice(&lie.to_be_bytes());
            self.framing_broken = true;
        }
        self.sent.push(format!(
            "{}{:?}",
            tag as char,
            String::from_utf8_lossy(&m[5.min(m.len())..])
        ));
        self.bytes.extend_from_slice(&m);
    }

    /// One random message.
    fn add_message(&mut self, rng: &mut Rng) {
        match rng.below(17) {
            0 | 1 => {
                let mut b = Vec::new();
                cstr(&mut b, &sql(rng, !self.reserved));
                self.push(rng, b'Q', b);
            }
            2 | 3 => {
                let mut b = Vec::new();
                cstr(&mut b, &name(rng, self.reserved));
                cstr(&mut b, &sql(rng, !self.reserved));
                let n = *rng.pick(&[0i16, 0, 1, 2, -1, 200]);
                b.extend_from_slice(&n.to_be_bytes());
                for _ in 0..n.clamp(0, 3) {
                    b.extend_from_slice(&(*rng.pick(&[0u32, 23, 25, 16, 99_999])).to_be_bytes());
                }
                self.push(rng, b'P', b);
            }
            4 | 5 => {
                let b = bind_body(rng, self.reserved);
                self.push(rng, b'B', b);
            }
            6 | 7 => {
                let mut b = Vec::new();
                cstr(&mut b, &name(rng, self.reserved));
                b.extend_from_slice(&(*rng.pick(&[0i32, 0, 1, -1, 2])).to_be_bytes());
                self.push(rng, b'E', b);
            }
            8 => {
                let mut b = vec![*rng.pick(b"SSPPX")];
                cstr(&mut b, &name(rng, self.reserved));
                self.push(rng, b'D', b);
            }
            9 => {
                let mut b = vec![*rng.pick(b"SSPPX")];
                cstr(&mut b, &name(rng, self.reserved));
                self.push(rng, b'C', b);
            }
            10 | 11 => self.push(rng, b'S', Vec::new()),
            12 => self.push(rng, b'H', Vec::new()),
            13 => {
                // COPY messages, in COPY or out of it.
                match rng.below(3) {
                    0 => {
                        let row = rng
                            .pick(&[&b"5\tfive\n"[..], b"x\ty\n", b"\\.\n", b"7\n"])
                            .to_vec();
                        self.push(rng, b'd', row)
                    }
                    1 => self.push(rng, b'c', Vec::new()),
                    _ => {
                        let mut b = Vec::new();
                        cstr(&mut b, b"fuzz gave up");
                        self.push(rng, b'f', b)
                    }
                }
            }
            14 => {
                // FunctionCall: an OID, formats, arguments.
                let mut b = Vec::new();
                b.extend_from_slice(&(*rng.pick(&[1598u32, 0, 99_999])).to_be_bytes());
                b.extend_from_slice(&0i16.to_be_bytes());
                b.extend_from_slice(&1i16.to_be_bytes());
                b.extend_from_slice(&1i32.to_be_bytes());
                b.push(b'1');
                b.extend_from_slice(&0i16.to_be_bytes());
                self.push(rng, b'F', b);
            }
            15 => {
                // A tag no client sends.
                let tag = *rng.pick(b"@ZTaAGKR\x00\xff");
                let len = rng.below(12);
                let body = rng.bytes(len);
                self.push(rng, tag, body);
            }
            _ => {
                if rng.chance(20) {
                    self.push(rng, b'X', Vec::new());
                    self.terminated = true;
                } else {
                    self.push(rng, b'S', Vec::new());
                }
            }
        }
    }
}

/// The query every session ends its script with; its row says the proxy
/// got through everything before it (the ROLLBACK ends a transaction the
/// script left open, failed or not).
const MARKER: &str = "ROLLBACK; SELECT 'fuzz-end'";

fn marker_bytes() -> Vec<u8> {
    let mut b = message(b'S', &[]);
    let mut q = Vec::new();
    cstr(&mut q, MARKER.as_bytes());
    b.extend(message(b'Q', &q));
    b
}

/// How one session went.
#[derive(Debug)]
enum Outcome {
    /// The marker's row and its ReadyForQuery came.
    Finished,
    /// The proxy closed the connection (after a FATAL, or a Terminate).
    Closed,
    /// Neither, within the time allowed.
    Stuck(Vec<String>),
}

/// Reads until the marker's answer, the end of the connection, or
/// `patience` without a message. Checks each ErrorResponse on the way.
async fn read_to_end(
    c: &mut RawClient,
    patience: Duration,
    case: usize,
) -> Result<Outcome, String> {
    let mut seen: Vec<String> = Vec::new();
    let mut marker_row = false;
    loop {
        let m: Msg = match c.read_msg_within(patience).await {
            Ok(m) => m,
            Err(ReadEnd::Closed) => return Ok(Outcome::Closed),
            Err(ReadEnd::TimedOut) => return Ok(Outcome::Stuck(seen)),
        };
        seen.push(format!("{}", m.tag_char()));
        match m.tag {
            b'E' => {
                let code = m.code().unwrap_or_default();
                if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(format!(
                        "case {case}: an error without a SQLSTATE: {:?}",
                        m.fields()
                    ));
                }
                if m.message().is_empty() {
                    return Err(format!("case {case}: an error without a message"));
                }
                seen.push(code);
            }
            // COPY FROM STDIN began: end it, and ask for the marker again
            // (a message sent meanwhile may have ended the COPY instead).
            b'G' => {
                let mut b = message(b'f', b"fuzz\0");
                b.extend(marker_bytes());
                let _ = c.try_send(&b).await;
            }
            b'D' if m.data_row().is_some_and(|r| r == [Some("fuzz-end".into())]) => {
                marker_row = true;
            }
            b'Z' if marker_row => return Ok(Outcome::Finished),
            _ => {}
        }
    }
}

/// The seed and the number of cases: `TG_FUZZ_SEED` and `TG_FUZZ_CASES`,
/// else the test's own (printed, to replay a run).
fn run_size(seed: u64, cases: usize) -> (u64, usize) {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let seed = env("TG_FUZZ_SEED").unwrap_or(seed);
    let cases = env("TG_FUZZ_CASES").map_or(cases, |n| n as usize);
    println!("TG_FUZZ_SEED={seed} TG_FUZZ_CASES={cases}");
    (seed, cases)
}

/// The tables the generated statements use, in database `db`.
async fn setup_schema(cluster: &tenantgate::localpg::Cluster, db: &str) {
    support::exec(
        cluster,
        db,
        "CREATE TABLE items (tenant_id text NOT NULL DEFAULT 't1', id bigint, note text);\n\
         CREATE TABLE plans (id int);\n\
         INSERT INTO items (id, note) VALUES (1, 'one'), (2, 'two');\n\
         INSERT INTO plans VALUES (1)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_traffic_never_breaks_the_proxy() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The proxy's tasks run on the runtime's worker threads; a failed
        // assertion of a test, on the test's own thread, is not counted.
        let thread = std::thread::current();
        if !thread
            .name()
            .is_some_and(|n| n.starts_with("random_traffic"))
        {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let (seed, cases) = run_size(0x7e4a_17e5_eed5_0001, 300);

    let cluster = start_app_cluster().await;
    setup_schema(&cluster, "app").await;
    // Transaction pooling, the same with `rls`, and session pooling.
    let mut proxies = Vec::new();
    for (server, tenancy) in [
        ("", ""),
        ("", "rls = true\n"),
        ("pool_mode = \"session\"\n", ""),
    ] {
        let rest = format!(
            "query_wait_timeout = \"5s\"\nmax_message_size = 65536\n{server}\n\
             [tenancy]\nglobal_tables = [\"plans\"]\n{tenancy}{STANDARD_USERS}\n\
             [routing]\nhash_shards = [\"s0\"]\n\n\
             [[tenants]]\nid = \"t1\"\nshard = \"s0\"\n"
        );
        let mut text = support::config_text_for(&[], &rest);
        text.push_str(&format!(
            "\n[[shards]]\nname = \"s0\"\nurl = {}\npool_size = {POOL_SIZE}\n",
            support::toml_str(&cluster.url("app"))
        ));
        proxies.push(start_proxy(support::load_config(&text)).await);
    }
    let proxy = &proxies[0];

    // A bystander that must be served all along.
    let bystander_errors = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let bystander = {
        let errors = bystander_errors.clone();
        let stop = stop.clone();
        let port = proxy.port;
        tokio::spawn(async move {
            let c = connect(port, "app", "app-secret", "app").await;
            let mut served = 0u64;
            while !stop.is_cancelled() {
                match c.query_one("SELECT count(*) FROM plans", &[]).await {
                    Ok(row) => {
                        assert_eq!(row.get::<_, i64>(0), 1);
                        served += 1;
                    }
                    Err(e) => {
                        eprintln!("bystander: {e}");
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            served
        })
    };

    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut finished, mut closed, mut abandoned) = (0, 0, 0);
    for case in 0..cases {
        let (user, password) = *rng.pick(&[("app", "app-secret"), ("t1user", "t1-secret")]);
        let port = rng.pick(&proxies).port;
        let mut c = RawClient::login(port, user, password, "app").await;
        let mut script = Script {
            lies: true,
            reserved: true,
            ..Script::default()
        };
        for _ in 0..1 + rng.below(8) {
            script.add_message(&mut rng);
        }
        let expect_marker = !script.framing_broken && !script.terminated;
        script.bytes.extend(marker_bytes());
        // A peer that closes early may reset the write: that is an answer.
        let _ = c.try_send(&script.bytes).await;
        let patience = if expect_marker {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(300)
        };
        match read_to_end(&mut c, patience, case).await {
            Err(problem) => panic!("{problem} (TG_FUZZ_SEED={seed})"),
            Ok(Outcome::Finished) => finished += 1,
            Ok(Outcome::Closed) => closed += 1,
            Ok(Outcome::Stuck(seen)) => {
                assert!(
                    !expect_marker,
                    "case {case} as {user}: no answer to the marker within 10 s after {seen:?}; \
                     sent {:?} (TG_FUZZ_SEED={seed})",
                    script.sent
                );
                abandoned += 1;
            }
        }
        // Gone without a goodbye, whatever state it was in.
        drop(c);
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "case {case} as {user}: the proxy panicked (TG_FUZZ_SEED={seed})"
        );
    }
    println!("{finished} sessions finished, {closed} closed by the proxy, {abandoned} abandoned");
    assert!(
        finished > cases / 4,
        "too few sessions got through to check much: {finished} of {cases}"
    );
    assert!(closed > 0, "no malformed message reached the proxy");

    stop.cancel();
    let served = bystander.await.expect("bystander task");
    assert_eq!(bystander_errors.load(Ordering::SeqCst), 0);
    assert!(served > 0, "the bystander was never served");

    // Every server connection comes back: as many clients as a pool holds
    // each keep one in an open transaction at once.
    for p in &proxies {
        let mut holders = Vec::new();
        for _ in 0..POOL_SIZE {
            let c = connect(p.port, "app", "app-secret", "app").await;
            if let Err(e) = c.batch_execute("BEGIN; SELECT 1").await {
                panic!("a server connection was not given back: {e} (TG_FUZZ_SEED={seed})");
            }
            holders.push(c);
        }
        for c in &holders {
            c.batch_execute("COMMIT").await.expect("commit");
        }
    }
    // And none is left busy on the server.
    let direct = support::connect_direct(&cluster, "app").await;
    let busy: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = 'app' AND pid <> pg_backend_pid() \
             AND state IS DISTINCT FROM 'idle'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0);
    assert_eq!(
        busy, 0,
        "server connections left busy (TG_FUZZ_SEED={seed})"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    for p in proxies {
        p.shutdown().await.expect("proxy shutdown");
    }
}

/// What a session was told, as far as it must match Postgres: message
/// types, SQLSTATEs (and severities) of errors, command tags, rows,
/// transaction states; not ParameterStatus (a pooler reports parameters
/// when it sees fit) nor message texts. Ends with how the session ended.
async fn transcript(c: &mut RawClient) -> Vec<String> {
    let mut out = Vec::new();
    let mut marker_row = false;
    loop {
        let m = match c.read_msg_within(Duration::from_secs(10)).await {
            Ok(m) => m,
            Err(ReadEnd::Closed) => {
                out.push("closed".into());
                return out;
            }
            Err(ReadEnd::TimedOut) => {
                out.push("stuck".into());
                return out;
            }
        };
        match m.tag {
            b'S' => {}
            b'E' | b'N' => out.push(format!(
                "{}:{}:{}",
                m.tag_char(),
                m.severity().unwrap_or_default(),
                m.code().unwrap_or_default()
            )),
            b'C' => out.push(format!("C:{}", m.command_tag().unwrap_or_default())),
            b'D' => {
                let row = m.data_row().unwrap_or_default();
                marker_row |= row == [Some("fuzz-end".to_string())];
                out.push(format!("D:{row:?}"));
            }
            b'Z' => {
                out.push(format!("Z:{}", m.ready_status().unwrap_or(b'?') as char));
                if marker_row {
                    return out;
                }
            }
            b'G' => {
                out.push("G".into());
                let mut b = message(b'f', b"fuzz\0");
                b.extend(marker_bytes());
                let _ = c.try_send(&b).await;
            }
            _ => out.push(m.tag_char().to_string()),
        }
    }
}

/// A transcript that ends with the connection closed (a FATAL error, or
/// the client's Terminate) without what came after its last ReadyForQuery
/// (but the FATAL error): the replies to the messages of a batch that the
/// end cut short. Postgres flushes those it had made before it exits; the
/// proxy ends the session at once (the server would send them only at a
/// Sync or Flush that never comes), and a client that terminates reads
/// nothing more.
fn settled(mut t: Vec<String>) -> Vec<String> {
    if t.last().map(String::as_str) != Some("closed") {
        return t;
    }
    let fatal = t
        .iter()
        .rev()
        .nth(1)
        .filter(|m| m.starts_with("E:FATAL:"))
        .cloned();
    let last_ready = t
        .iter()
        .rposition(|m| m.starts_with("Z:"))
        .map_or(0, |i| i + 1);
    t.truncate(last_ready);
    t.extend(fatal);
    t.push("closed".into());
    t
}

/// The one difference the comparison allows: a Parse (or SQL `PREPARE`)
/// of a name the session holds is refused by the proxy with 42P05 before
/// the server sees it, where Postgres reports first what else is wrong
/// with it (its text, its parameter types), which only the server can
/// tell. Everything else must be equal.
fn known_difference(proxy: &[String], postgres: &[String]) -> bool {
    proxy.len() == postgres.len()
        && proxy
            .iter()
            .zip(postgres)
            .all(|(a, b)| a == b || (a == "E:ERROR:42P05" && b.starts_with("E:ERROR:")))
}

/// The same random sessions, well framed, directly against Postgres and
/// through a pass-through proxy in transaction pooling (each on its own
/// copy of the data): the client must be told the same. Pooling must not
/// show: statements that change the session pin it, the client's settings
/// and prepared statements follow it from one server connection to the
/// next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_traffic_is_answered_as_postgres_answers() {
    let (seed, cases) = run_size(0x7e4a_17e5_eed5_0002, 200);
    let cluster = start_app_cluster().await;
    support::create_database(&cluster, "direct").await;
    setup_schema(&cluster, "app").await;
    setup_schema(&cluster, "direct").await;
    let rest = format!("query_wait_timeout = \"5s\"\n{STANDARD_USERS}\n");
    let mut text = support::config_text_for(&[], &rest);
    text.push_str(&format!(
        "\n[[shards]]\nname = \"s0\"\nurl = {}\npool_size = {POOL_SIZE}\n\n\
         [routing]\nhash_shards = [\"s0\"]\n",
        support::toml_str(&cluster.url("app"))
    ));
    let proxy = start_proxy(support::load_config(&text)).await;
    // Other clients keep the server connections changing hands.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut others = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let stop = stop.clone();
        let port = proxy.port;
        others.spawn(async move {
            let c = connect(port, "app", "app-secret", "app").await;
            while !stop.is_cancelled() {
                c.simple_query("SELECT 1").await.expect("other client");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }

    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // Sessions that got through to the marker (others ended closed).
    let mut finished = 0;
    for case in 0..cases {
        let mut script = Script::default();
        for _ in 0..1 + rng.below(8) {
            script.add_message(&mut rng);
        }
        script.bytes.extend(marker_bytes());
        let mut told = Vec::new();
        for via_proxy in [false, true] {
            let mut c = if via_proxy {
                RawClient::login(proxy.port, "app", "app-secret", "app").await
            } else {
                RawClient::login(cluster.port(), "postgres", "", "direct").await
            };
            let _ = c.try_send(&script.bytes).await;
            told.push(settled(transcript(&mut c).await));
        }
        if known_difference(&told[1], &told[0]) {
            told[1] = told[0].clone();
        }
        if told[1] != told[0]
            && let Some(path) = std::env::var_os("TG_FUZZ_DUMP")
        {
            std::fs::write(path, &script.bytes).expect("dump the case");
        }
        assert_eq!(
            told[1], told[0],
            "case {case}: through the proxy (left) vs Postgres (right); sent {:?} \
             (TG_FUZZ_SEED={seed})",
            script.sent
        );
        assert_ne!(
            told[0].last().map(String::as_str),
            Some("stuck"),
            "case {case}"
        );
        finished += usize::from(told[0].last().is_some_and(|m| m.starts_with("Z:")));
    }
    stop.cancel();
    while let Some(r) = others.join_next().await {
        r.expect("other client");
    }
    assert!(
        finished > cases / 4,
        "too few sessions got through to compare much: {finished} of {cases}"
    );
    proxy.shutdown().await.expect("proxy shutdown");
}
