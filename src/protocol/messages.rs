//! Builders for the messages tenantgate itself writes, appended to a `BytesMut`.
//! Messages that pass through the proxy unchanged are never re-encoded.

use bytes::{BufMut, BytesMut};

use crate::error::ProxyError;

/// Backend message tags (server → client).
pub mod tag {
    /// Authentication request.
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// ParseComplete.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// BindComplete.
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// DataRow.
    pub const DATA_ROW: u8 = b'D';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY: u8 = b'I';
    /// PortalSuspended.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// CopyInResponse.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// CopyOutResponse.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// CopyBothResponse.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// ParameterDescription.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
    /// NoData.
    pub const NO_DATA: u8 = b'n';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}

/// Frontend message tags (client → server).
pub mod ftag {
    /// Simple Query.
    pub const QUERY: u8 = b'Q';
    /// Parse.
    pub const PARSE: u8 = b'P';
    /// Bind.
    pub const BIND: u8 = b'B';
    /// Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Execute.
    pub const EXECUTE: u8 = b'E';
    /// Close.
    pub const CLOSE: u8 = b'C';
    /// Sync.
    pub const SYNC: u8 = b'S';
    /// Flush.
    pub const FLUSH: u8 = b'H';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';
    /// Password / SASL response.
    pub const PASSWORD: u8 = b'p';

    /// Whether `tag` is an extended-protocol message a Sync ends (Parse,
    /// Bind, Describe, Execute, Close, Flush).
    pub fn is_extended(tag: u8) -> bool {
        matches!(tag, PARSE | BIND | DESCRIBE | EXECUTE | CLOSE | FLUSH)
    }

    /// Whether a client may send `tag` once logged in. Postgres ends the
    /// session at any other type, also while it skips messages after an
    /// error.
    pub fn is_frontend(tag: u8) -> bool {
        matches!(
            tag,
            QUERY
                | PARSE
                | BIND
                | DESCRIBE
                | EXECUTE
                | CLOSE
                | SYNC
                | FLUSH
                | TERMINATE
                | COPY_DATA
                | COPY_DONE
                | COPY_FAIL
                | FUNCTION_CALL
        )
    }
}

/// Starts a message with `tag`, returning the offset of its length word.
#[inline]
fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Patches the length word written by [`begin`].
#[inline]
fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[inline]
fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    let at = begin(buf, tag::AUTHENTICATION);
    buf.put_i32(0);
    finish(buf, at);
}

/// AuthenticationCleartextPassword.
pub fn auth_cleartext(buf: &mut BytesMut) {
    let at = begin(buf, tag::AUTHENTICATION);
    buf.put_i32(3);
    finish(buf, at);
}

/// AuthenticationMD5Password with its salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    let at = begin(buf, tag::AUTHENTICATION);
    buf.put_i32(5);
    buf.put_slice(&salt);
    finish(buf, at);
}

/// AuthenticationSASL offering the given mechanisms.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, tag::AUTHENTICATION);
    buf.put_i32(10);
    for m in mechanisms {
        put_cstr(buf, m.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// AuthenticationSASLContinue.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, tag::AUTHENTICATION);
    buf.put_i32(11);
    buf.put_slice(data);
    finish(buf, at);
}

/// AuthenticationSASLFinal.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, tag::AUTHENTICATION);
    buf.put_i32(12);
    buf.put_slice(data);
    finish(buf, at);
}

/// Notes the value a ParameterStatus message (whole message bytes) reports
/// in `params`, replacing the parameter's earlier value.
pub fn record_parameter(params: &mut Vec<(String, String)>, msg: &[u8]) {
    let mut parts = msg.get(5..).unwrap_or_default().split(|&b| b == 0);
    let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
        return;
    };
    set_parameter(
        params,
        &String::from_utf8_lossy(name),
        &String::from_utf8_lossy(value),
    );
}

/// Sets `name` to `value` in `params` (reported parameters by name).
pub fn set_parameter(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    match params.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => value.clone_into(&mut slot.1),
        None => params.push((name.to_string(), value.to_string())),
    }
}

/// ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, tag::PARAMETER_STATUS);
    put_cstr(buf, name.as_bytes());
    put_cstr(buf, value.as_bytes());
    finish(buf, at);
}

/// BackendKeyData.
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    let at = begin(buf, tag::BACKEND_KEY_DATA);
    buf.put_i32(pid);
    buf.put_i32(secret);
    finish(buf, at);
}

/// ReadyForQuery with a transaction status byte (`I`, `T` or `E`).
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let at = begin(buf, tag::READY_FOR_QUERY);
    buf.put_u8(status);
    finish(buf, at);
}

/// NegotiateProtocolVersion: newest minor supported and unrecognised options.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unknown: &[&str]) {
    let at = begin(buf, tag::NEGOTIATE_PROTOCOL_VERSION);
    buf.put_i32(minor);
    buf.put_i32(unknown.len() as i32);
    for o in unknown {
        put_cstr(buf, o.as_bytes());
    }
    finish(buf, at);
}

/// ErrorResponse built from a [`ProxyError`].
pub fn error_response(buf: &mut BytesMut, err: &ProxyError) {
    notice_or_error(buf, tag::ERROR_RESPONSE, err.severity.as_str(), err);
}

/// NoticeResponse (severity WARNING) carrying the fields of `err`.
pub fn warning(buf: &mut BytesMut, err: &ProxyError) {
    notice_or_error(buf, tag::NOTICE_RESPONSE, "WARNING", err);
}

fn notice_or_error(buf: &mut BytesMut, t: u8, severity: &str, err: &ProxyError) {
    let at = begin(buf, t);
    buf.put_u8(b'S');
    put_cstr(buf, severity.as_bytes());
    buf.put_u8(b'V');
    put_cstr(buf, severity.as_bytes());
    buf.put_u8(b'C');
    put_cstr(
        buf,
        err.server_code
            .as_deref()
            .unwrap_or(err.code.code())
            .as_bytes(),
    );
    buf.put_u8(b'M');
    put_cstr(buf, sanitize(&err.message).as_bytes());
    if let Some(d) = &err.detail {
        buf.put_u8(b'D');
        put_cstr(buf, sanitize(d).as_bytes());
    }
    if let Some(h) = &err.hint {
        buf.put_u8(b'H');
        put_cstr(buf, sanitize(h).as_bytes());
    }
    if let Some(r) = err.routine {
        buf.put_u8(b'R');
        put_cstr(buf, r.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// NUL cannot appear inside a protocol string.
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// RowDescription for text columns (used by the admin console).
pub fn row_description_text(buf: &mut BytesMut, columns: &[&str]) {
    let at = begin(buf, b'T');
    buf.put_i16(columns.len() as i16);
    for c in columns {
        put_cstr(buf, c.as_bytes());
        buf.put_i32(0); // table oid
        buf.put_i16(0); // column number
        buf.put_i32(25); // text
        buf.put_i16(-1);
        buf.put_i32(-1);
        buf.put_i16(0); // text format
    }
    finish(buf, at);
}

/// DataRow of text values (`None` is NULL).
pub fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    let at = begin(buf, b'D');
    buf.put_i16(values.len() as i16);
    for v in values {
        match v {
            Some(v) => {
                buf.put_i32(v.len() as i32);
                buf.put_slice(v.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    finish(buf, at);
}

/// CommandComplete with its tag (e.g. `SELECT 3`).
pub fn command_complete(buf: &mut BytesMut, tag_text: &str) {
    let at = begin(buf, tag::COMMAND_COMPLETE);
    put_cstr(buf, tag_text.as_bytes());
    finish(buf, at);
}

/// EmptyQueryResponse.
pub fn empty_query(buf: &mut BytesMut) {
    let at = begin(buf, b'I');
    finish(buf, at);
}

/// ParseComplete.
pub fn parse_complete(buf: &mut BytesMut) {
    let at = begin(buf, tag::PARSE_COMPLETE);
    finish(buf, at);
}

/// CloseComplete.
pub fn close_complete(buf: &mut BytesMut) {
    let at = begin(buf, tag::CLOSE_COMPLETE);
    finish(buf, at);
}

// ---- frontend messages tenantgate writes to servers ---------------------------

/// A simple Query.
pub fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, ftag::QUERY);
    put_cstr(buf, sql.as_bytes());
    finish(buf, at);
}

/// Parse of a named statement with explicit parameter type OIDs (raw bytes:
/// the i16 count followed by the OIDs, exactly as the client sent them).
pub fn parse(buf: &mut BytesMut, name: impl AsRef<[u8]>, sql: &[u8], param_types: &[u8]) {
    let at = begin(buf, ftag::PARSE);
    put_cstr(buf, name.as_ref());
    put_cstr(buf, sql);
    buf.put_slice(param_types);
    finish(buf, at);
}

/// Close of a statement (`S`) or portal (`P`).
pub fn close(buf: &mut BytesMut, kind: u8, name: impl AsRef<[u8]>) {
    let at = begin(buf, ftag::CLOSE);
    buf.put_u8(kind);
    put_cstr(buf, name.as_ref());
    finish(buf, at);
}

/// Bind of the unnamed statement to the unnamed portal, no parameters.
pub fn bind_unnamed(buf: &mut BytesMut) {
    bind_text(buf, "", "", &[]);
}

/// Execute of the unnamed portal, all rows.
pub fn execute_unnamed(buf: &mut BytesMut) {
    execute(buf, "");
}

/// Bind of a named statement to a portal, with text parameters and text results.
pub fn bind_text(buf: &mut BytesMut, portal: &str, statement: &str, params: &[&[u8]]) {
    let at = begin(buf, ftag::BIND);
    put_cstr(buf, portal.as_bytes());
    put_cstr(buf, statement.as_bytes());
    buf.put_i16(0);
    buf.put_i16(params.len() as i16);
    for p in params {
        buf.put_i32(p.len() as i32);
        buf.put_slice(p);
    }
    buf.put_i16(0);
    finish(buf, at);
}

/// Execute of a portal, all rows.
pub fn execute(buf: &mut BytesMut, portal: &str) {
    let at = begin(buf, ftag::EXECUTE);
    put_cstr(buf, portal.as_bytes());
    buf.put_i32(0);
    finish(buf, at);
}

/// CopyFail with `reason`.
pub fn copy_fail(buf: &mut BytesMut, reason: &str) {
    let at = begin(buf, ftag::COPY_FAIL);
    put_cstr(buf, reason.as_bytes());
    finish(buf, at);
}

/// Sync.
pub fn sync(buf: &mut BytesMut) {
    let at = begin(buf, ftag::SYNC);
    finish(buf, at);
}

/// Terminate.
pub fn terminate(buf: &mut BytesMut) {
    let at = begin(buf, ftag::TERMINATE);
    finish(buf, at);
}

/// Extracts SQLSTATE and message from an ErrorResponse/NoticeResponse body.
pub fn parse_error_fields(msg: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    for (field, value) in error_fields(msg) {
        match field {
            b'C' => code = String::from_utf8_lossy(value).into_owned(),
            b'M' => message = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

/// The value of field `field` of ErrorResponse/NoticeResponse `msg`.
pub fn error_field(msg: &[u8], field: u8) -> Option<&[u8]> {
    error_fields(msg).find(|(f, _)| *f == field).map(|(_, v)| v)
}

/// The fields of an ErrorResponse/NoticeResponse body: (code, value) pairs.
fn error_fields(msg: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 5;
    std::iter::from_fn(move || {
        if pos >= msg.len() || msg[pos] == 0 {
            return None;
        }
        let field = msg[pos];
        let start = pos + 1;
        let end = msg[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(msg.len(), |e| start + e);
        pos = end + 1;
        Some((field, &msg[start..end]))
    })
}

/// Writes a copy of ErrorResponse/NoticeResponse `msg` in which `map`
/// writes each field (code byte and C string) as it should be: unchanged,
/// changed, or not at all.
fn map_error_fields(msg: &[u8], out: &mut BytesMut, mut map: impl FnMut(u8, &[u8], &mut BytesMut)) {
    let at = begin(out, msg.first().copied().unwrap_or(tag::ERROR_RESPONSE));
    for (field, value) in error_fields(msg) {
        map(field, value, out);
    }
    out.put_u8(0);
    finish(out, at);
}

/// Writes one error field.
fn put_field(out: &mut BytesMut, field: u8, value: &[u8]) {
    out.put_u8(field);
    put_cstr(out, value);
}

/// Writes an ErrorResponse/NoticeResponse with its position field (`P`, a
/// 1-based character index into the query string) moved back over text the
/// client did not send: `inserted` holds, in order, each such piece as
/// `(0-based character offset in the text sent, characters)`. A position
/// inside such a piece is dropped.
pub fn shift_error_position(msg: &[u8], inserted: &[(usize, usize)], out: &mut BytesMut) {
    map_error_fields(msg, out, |field, value, out| {
        if field != b'P' {
            return put_field(out, field, value);
        }
        let shifted = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .and_then(|p| {
                let mut by = 0;
                for &(at, chars) in inserted {
                    if p > at + chars {
                        by += chars;
                    } else if p > at {
                        return None;
                    }
                }
                p.checked_sub(by)
            })
            .filter(|&p| p > 0);
        if let Some(p) = shifted {
            put_field(out, b'P', p.to_string().as_bytes());
        }
    });
}

/// Writes an ErrorResponse/NoticeResponse whose position (`P`) points into
/// `query`, a statement the proxy sent in place of the client's, as
/// Postgres reports a position inside a statement it generated itself: as
/// the internal position (`p`) with that statement as the internal query
/// (`q`). The client's own text has no such position, so `P` never stays.
/// If the message already carries an internal query (the error arose in a
/// function the statement called), `P` is dropped and the rest kept.
pub fn internal_error_position(msg: &[u8], query: &str, out: &mut BytesMut) {
    let has_internal = error_fields(msg).any(|(f, _)| f == b'p' || f == b'q');
    map_error_fields(msg, out, |field, value, out| {
        if field != b'P' {
            put_field(out, field, value);
        } else if !has_internal {
            put_field(out, b'p', value);
            put_field(out, b'q', query.as_bytes());
        }
    });
}

/// A copy of ErrorResponse/NoticeResponse `msg` with its message (`M`) and
/// detail (`D`) as `map` writes them.
pub fn map_error_text(msg: &[u8], map: impl Fn(&str) -> String) -> BytesMut {
    let mut out = BytesMut::with_capacity(msg.len() + 16);
    map_error_fields(msg, &mut out, |field, value, out| {
        match (field, std::str::from_utf8(value)) {
            (b'M' | b'D', Ok(v)) => put_field(out, field, map(v).as_bytes()),
            _ => put_field(out, field, value),
        }
    });
    out
}

/// A copy of ErrorResponse/NoticeResponse `msg` without the fields `drop`
/// names, and with `routine` as its ROUTINE field when given (in place of
/// any `R` the message had, which `drop` should then name).
pub fn without_error_fields(msg: &[u8], drop: &[u8], routine: Option<&str>) -> BytesMut {
    let mut out = BytesMut::with_capacity(msg.len());
    let mut routine = routine;
    map_error_fields(msg, &mut out, |field, value, out| {
        if field == b'M'
            && let Some(r) = routine.take()
        {
            put_field(out, field, value);
            return put_field(out, b'R', r.as_bytes());
        }
        if !drop.contains(&field) {
            put_field(out, field, value);
        }
    });
    out
}

/// Writes an ErrorResponse/NoticeResponse without its position (`P`).
pub fn drop_error_position(msg: &[u8], out: &mut BytesMut) {
    map_error_fields(msg, out, |field, value, out| {
        if field != b'P' {
            put_field(out, field, value);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framing::Messages;

    /// An ErrorResponse with these fields.
    fn error_with(fields: &[(u8, &str)]) -> BytesMut {
        let mut msg = BytesMut::new();
        let at = begin(&mut msg, tag::ERROR_RESPONSE);
        for (f, v) in fields {
            msg.put_u8(*f);
            put_cstr(&mut msg, v.as_bytes());
        }
        msg.put_u8(0);
        finish(&mut msg, at);
        msg
    }

    /// The fields of a well-formed ErrorResponse (its framing checked).
    fn fields_of(m: &[u8]) -> Vec<(u8, String)> {
        let out: Vec<(u8, String)> = error_fields(m)
            .map(|(f, v)| (f, String::from_utf8_lossy(v).into_owned()))
            .collect();
        let len: usize = out.iter().map(|(_, v)| v.len() + 2).sum();
        assert_eq!(m.len(), 5 + len + 1);
        assert_eq!(
            i32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize,
            m.len() - 1
        );
        out
    }

    fn owned(fields: &[(u8, &str)]) -> Vec<(u8, String)> {
        fields.iter().map(|(f, v)| (*f, v.to_string())).collect()
    }

    #[test]
    fn a_raised_refusal_names_the_proxys_routine_in_place_of_the_servers() {
        let raised = error_with(&[
            (b'S', "ERROR"),
            (b'C', "0A000"),
            (b'M', "no"),
            (b'W', "PL/pgSQL function inline_code_block line 1 at RAISE"),
            (b'F', "pl_exec.c"),
            (b'L', "3911"),
            (b'R', "exec_stmt_raise"),
        ]);
        assert_eq!(
            fields_of(&without_error_fields(&raised, b"WFLR", None)),
            owned(&[(b'S', "ERROR"), (b'C', "0A000"), (b'M', "no")])
        );
        assert_eq!(
            fields_of(&without_error_fields(
                &raised,
                b"WFLR",
                Some("RevalidateCachedQuery")
            )),
            owned(&[
                (b'S', "ERROR"),
                (b'C', "0A000"),
                (b'M', "no"),
                (b'R', "RevalidateCachedQuery")
            ])
        );
        let mut own = BytesMut::new();
        error_response(
            &mut own,
            &crate::error::ProxyError::statement_planned_elsewhere("s1"),
        );
        assert!(
            fields_of(&own).contains(&(b'R', "RevalidateCachedQuery".to_string())),
            "{:?}",
            fields_of(&own)
        );
    }

    #[test]
    fn error_position_shifts_back() {
        let msg = error_with(&[(b'C', "42601"), (b'P', "30"), (b'M', "syntax error")]);
        let mut out = BytesMut::new();
        shift_error_position(&msg, &[(0, 10)], &mut out);
        assert_eq!(
            fields_of(&out),
            owned(&[(b'C', "42601"), (b'P', "20"), (b'M', "syntax error")])
        );
        // Two pieces before the position, one after it.
        let mut out = BytesMut::new();
        shift_error_position(&msg, &[(0, 5), (12, 7), (40, 9)], &mut out);
        assert_eq!(
            fields_of(&out),
            owned(&[(b'C', "42601"), (b'P', "18"), (b'M', "syntax error")])
        );
        for inside in [&[(0, 30)][..], &[(0, 5), (25, 7)]] {
            let mut out = BytesMut::new();
            shift_error_position(&msg, inside, &mut out);
            assert_eq!(
                fields_of(&out).len(),
                2,
                "a position inside an inserted piece is dropped: {inside:?}"
            );
        }
    }

    #[test]
    fn error_position_becomes_internal() {
        let msg = error_with(&[(b'C', "42703"), (b'P', "12"), (b'M', "no such column")]);
        let mut out = BytesMut::new();
        internal_error_position(&msg, "SELECT x, y FROM t", &mut out);
        assert_eq!(
            fields_of(&out),
            owned(&[
                (b'C', "42703"),
                (b'p', "12"),
                (b'q', "SELECT x, y FROM t"),
                (b'M', "no such column")
            ])
        );
        // Already an error inside an internal query: only P goes.
        let msg = error_with(&[(b'P', "3"), (b'p', "5"), (b'q', "SELECT f()")]);
        let mut out = BytesMut::new();
        internal_error_position(&msg, "SELECT x", &mut out);
        assert_eq!(fields_of(&out), owned(&[(b'p', "5"), (b'q', "SELECT f()")]));
        let mut out = BytesMut::new();
        drop_error_position(&msg, &mut out);
        assert_eq!(fields_of(&out), owned(&[(b'p', "5"), (b'q', "SELECT f()")]));
    }

    #[test]
    fn error_round_trip() {
        let mut b = BytesMut::new();
        error_response(&mut b, &ProxyError::unknown_database("x"));
        let mut it = Messages::new(&b, 1 << 20);
        let (t, msg) = it.next().unwrap().unwrap();
        assert_eq!(t, b'E');
        assert_eq!(msg.len(), b.len());
        let (code, m) = parse_error_fields(msg);
        assert_eq!(code, "3D000");
        assert_eq!(m, "database \"x\" does not exist");
    }

    #[test]
    fn lengths_are_patched() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, b'I');
        assert_eq!(&b[..], b"Z\0\0\0\x05I");
        parameter_status(&mut b, "a", "b");
        assert_eq!(&b[6..], b"S\0\0\0\x08a\0b\0");
    }
}
