//! Running a statement with one protocol and comparing outcomes.
//!
//! Values are compared as text: the simple protocol's text renderings, and
//! for the extended protocol each value's binary form decoded losslessly
//! (numbers, timestamps, text, jsonb) or in hex. Decimal numbers that differ
//! only in trailing zeros after the point compare equal: a set operation
//! (`INTERSECT`, `UNION`) may return either input's copy of equal numeric
//! values, `0` or `0.00`, depending on the plan.

use std::fmt::Write as _;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::corpus::{Entry, Param, inline_params};

/// How a statement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Query message (`simple_query`).
    Simple,
    /// Parse/Describe/Bind/Execute with a named statement (`query_raw`:
    /// tokio-postgres prepares `s<n>`, executes it, closes it).
    Named,
    /// Unnamed statement with declared parameter types (`query_typed_raw`).
    Unnamed,
}

impl Protocol {
    /// All protocols.
    pub const ALL: [Protocol; 3] = [Protocol::Simple, Protocol::Named, Protocol::Unnamed];

    /// Short label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Named => "extended/named",
            Protocol::Unnamed => "extended/unnamed",
        }
    }
}

/// One statement's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    /// Column names (and types, extended protocol).
    pub columns: Vec<String>,
    /// Rows of rendered values (`None`: NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows affected / returned, as the command tag says.
    pub count: u64,
}

/// What running a query string produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success: one result per statement.
    Ok(Vec<ResultSet>),
    /// An error: SQLSTATE and message (with detail).
    Err {
        /// SQLSTATE, or `client` for a client-side error.
        code: String,
        /// Message and detail.
        message: String,
    },
}

impl Outcome {
    /// Whether it failed.
    pub fn is_err(&self) -> bool {
        matches!(self, Outcome::Err { .. })
    }

    /// Every value and error text, for marker searches.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Outcome::Ok(sets) => sets
                .iter()
                .flat_map(|s| s.rows.iter().flatten().flatten().map(String::as_str))
                .collect(),
            Outcome::Err { message, .. } => vec![message.as_str()],
        }
    }

    /// Same outcome up to row order (unless `ordered`) and error details.
    pub fn same_as(&self, other: &Outcome, ordered: bool) -> bool {
        match (self, other) {
            (Outcome::Err { .. }, Outcome::Err { .. }) => true,
            (Outcome::Ok(a), Outcome::Ok(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|(x, y)| {
                        let (xr, yr) = (same_scale(&x.rows), same_scale(&y.rows));
                        x.columns == y.columns
                            && x.count == y.count
                            && if ordered {
                                xr == yr
                            } else {
                                sorted(&xr) == sorted(&yr)
                            }
                    })
            }
            _ => false,
        }
    }

    /// A readable rendering (rows truncated).
    pub fn show(&self) -> String {
        match self {
            Outcome::Err { code, message } => format!("ERROR {code}: {message}"),
            Outcome::Ok(sets) => {
                let mut s = String::new();
                for (i, set) in sets.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "  result {i}: {} row(s), columns [{}]",
                        set.count,
                        set.columns.join(", ")
                    );
                    for row in set.rows.iter().take(40) {
                        let cells: Vec<String> = row
                            .iter()
                            .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                            .collect();
                        let _ = writeln!(s, "    ({})", cells.join(" | "));
                    }
                    if set.rows.len() > 40 {
                        let _ = writeln!(s, "    … {} more", set.rows.len() - 40);
                    }
                }
                s
            }
        }
    }
}

fn sorted(rows: &[Vec<Option<String>>]) -> Vec<Vec<Option<String>>> {
    let mut r = rows.to_vec();
    r.sort();
    r
}

fn err_outcome(e: &tokio_postgres::Error) -> Outcome {
    match e.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_string();
            if let Some(d) = db.detail() {
                message.push_str(" DETAIL: ");
                message.push_str(d);
            }
            Outcome::Err {
                code: db.code().code().to_string(),
                message,
            }
        }
        None => Outcome::Err {
            code: "client".into(),
            message: crate::support::error_chain(e),
        },
    }
}

/// A parameter sent in text format whatever its type.
#[derive(Debug)]
pub struct TextParam(pub Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// Any value, as its raw binary form.
struct Raw(Option<String>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(render_binary(ty, raw))))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A lossless text rendering of a binary value.
pub fn render_binary(ty: &Type, raw: &[u8]) -> String {
    let be = |n: usize| -> i64 {
        let mut v: i64 = if raw.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        };
        for b in &raw[..n] {
            v = (v << 8) | i64::from(*b);
        }
        v
    };
    match *ty {
        Type::BOOL if raw.len() == 1 => (if raw[0] != 0 { "t" } else { "f" }).into(),
        Type::INT2 if raw.len() == 2 => be(2).to_string(),
        Type::INT4 if raw.len() == 4 => be(4).to_string(),
        Type::INT8 if raw.len() == 8 => be(8).to_string(),
        Type::OID if raw.len() == 4 => {
            u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]).to_string()
        }
        Type::FLOAT8 if raw.len() == 8 => {
            f64::from_be_bytes(raw.try_into().expect("8 bytes")).to_string()
        }
        Type::FLOAT4 if raw.len() == 4 => {
            f32::from_be_bytes(raw.try_into().expect("4 bytes")).to_string()
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            String::from_utf8_lossy(raw).into_owned()
        }
        Type::JSONB if !raw.is_empty() => String::from_utf8_lossy(&raw[1..]).into_owned(),
        Type::NUMERIC => numeric(raw).unwrap_or_else(|| hex(raw)),
        Type::TIMESTAMPTZ | Type::TIMESTAMP if raw.len() == 8 => format!("ts:{}", be(8)),
        Type::DATE if raw.len() == 4 => format!("date:{}", be(4)),
        _ => hex(raw),
    }
}

fn hex(raw: &[u8]) -> String {
    let mut s = String::from("\\x");
    for b in raw {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes a binary numeric into its exact decimal text.
fn numeric(raw: &[u8]) -> Option<String> {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?])) };
    let ndigits = u16_at(0)? as usize;
    let weight = u16_at(2)? as i16 as i32;
    let sign = u16_at(4)?;
    let dscale = u16_at(6)? as usize;
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|k| u16_at(8 + 2 * k))
        .collect::<Option<_>>()?;
    let mut int_part = String::new();
    for w in 0..=weight.max(-1) {
        if w < 0 {
            break;
        }
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut k = weight + 1;
    while frac.len() < dscale {
        let d = if k >= 0 {
            digits.get(k as usize).copied().unwrap_or(0)
        } else {
            0
        };
        frac.push_str(&format!("{d:04}"));
        k += 1;
    }
    frac.truncate(dscale);
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    s.push_str(&int_part);
    if dscale > 0 {
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// Runs `sql` with the simple protocol.
pub async fn run_simple(client: &Client, sql: &str) -> Outcome {
    let msgs = match client.simple_query(sql).await {
        Ok(m) => m,
        Err(e) => return err_outcome(&e),
    };
    let mut sets = Vec::new();
    let mut current: Option<ResultSet> = None;
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                current = Some(ResultSet {
                    columns: cols.iter().map(|c| c.name().to_string()).collect(),
                    rows: Vec::new(),
                    count: 0,
                });
            }
            SimpleQueryMessage::Row(row) => {
                let set = current.get_or_insert_with(|| ResultSet {
                    columns: row.columns().iter().map(|c| c.name().to_string()).collect(),
                    rows: Vec::new(),
                    count: 0,
                });
                set.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(n) => {
                let mut set = current.take().unwrap_or(ResultSet {
                    columns: Vec::new(),
                    rows: Vec::new(),
                    count: 0,
                });
                set.count = n;
                sets.push(set);
            }
            _ => {}
        }
    }
    Outcome::Ok(sets)
}

/// Runs `sql` with the extended protocol. Statements that return no rows
/// (no RETURNING, not a query) run with `execute`, for the affected count.
pub async fn run_extended(
    client: &Client,
    sql: &str,
    params: &[Param],
    protocol: Protocol,
) -> Outcome {
    let values: Vec<TextParam> = params.iter().map(|p| TextParam(p.value.clone())).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let typed: Vec<(&(dyn ToSql + Sync), Type)> = refs
        .iter()
        .zip(params)
        .map(|(v, p)| (*v, p.ty.clone()))
        .collect();
    if !returns_rows(sql) {
        let n = match protocol {
            Protocol::Named => client.execute(sql, &refs).await,
            _ => client.execute_typed(sql, &typed).await,
        };
        return match n {
            Ok(count) => Outcome::Ok(vec![ResultSet {
                columns: Vec::new(),
                rows: Vec::new(),
                count,
            }]),
            Err(e) => err_outcome(&e),
        };
    }
    let column_names = |cols: &[tokio_postgres::Column]| -> Vec<String> {
        cols.iter()
            .map(|c| format!("{}:{}", c.name(), c.type_().name()))
            .collect()
    };
    let (rows, mut columns) = match protocol {
        Protocol::Named => match client.prepare(sql).await {
            Ok(stmt) => (
                client.query(&stmt, &refs).await,
                column_names(stmt.columns()),
            ),
            Err(e) => return err_outcome(&e),
        },
        _ => (client.query_typed(sql, &typed).await, Vec::new()),
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return err_outcome(&e),
    };
    if let Some(first) = rows.first() {
        columns = column_names(first.columns());
    }
    let mut set = ResultSet {
        columns,
        rows: Vec::new(),
        count: rows.len() as u64,
    };
    for row in &rows {
        let mut cells = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            match row.try_get::<_, Raw>(i) {
                Ok(Raw(v)) => cells.push(v),
                Err(e) => {
                    return Outcome::Err {
                        code: "client".into(),
                        message: format!("decoding column {i}: {e}"),
                    };
                }
            }
        }
        set.rows.push(cells);
    }
    Outcome::Ok(vec![set])
}

/// Whether a statement returns rows (a query, or DML with RETURNING).
fn returns_rows(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let first = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("");
    !matches!(first, "insert" | "update" | "delete" | "merge") || lower.contains("returning")
}

/// Runs an entry with `protocol` (parameters inlined for the simple one).
pub async fn run_entry(client: &Client, e: &Entry, protocol: Protocol) -> Outcome {
    match protocol {
        Protocol::Simple => match &e.params {
            Some(p) => run_simple(client, &inline_params(&e.sql, p)).await,
            None => run_simple(client, &e.sql).await,
        },
        p => run_extended(client, &e.sql, e.params.as_deref().unwrap_or(&[]), p).await,
    }
}

/// Protocols an entry runs with.
pub fn protocols_for(e: &Entry) -> Vec<Protocol> {
    if e.simple_only {
        vec![Protocol::Simple]
    } else {
        Protocol::ALL.to_vec()
    }
}

/// Markers of other tenants that appear in `outcome` but not in `sql`.
pub fn leaked_markers(outcome: &Outcome, sql: &str, foreign: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for m in foreign {
        if sql.contains(m.as_str()) {
            continue;
        }
        if outcome.texts().iter().any(|t| t.contains(m.as_str())) {
            found.push(m.clone());
        }
    }
    found
}

/// Rows with every decimal number written without trailing fractional zeros
/// (`0.00` → `0`, `10.50` → `10.5`); other values as they are.
fn same_scale(rows: &[Vec<Option<String>>]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|row| {
            row.iter()
                .map(|cell| cell.as_deref().map(without_trailing_zeros))
                .collect()
        })
        .collect()
}

fn without_trailing_zeros(v: &str) -> String {
    let digits = v.strip_prefix('-').unwrap_or(v);
    match digits.split_once('.') {
        Some((int, frac))
            if !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit()) =>
        {
            v.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_trailing_zeros;

    #[test]
    fn only_decimal_scale_is_ignored() {
        assert_eq!(without_trailing_zeros("0.00"), "0");
        assert_eq!(without_trailing_zeros("-10.50"), "-10.5");
        assert_eq!(without_trailing_zeros("100"), "100");
        assert_eq!(without_trailing_zeros("1.05"), "1.05");
        assert_eq!(without_trailing_zeros("A-1.0"), "A-1.0");
        assert_eq!(without_trailing_zeros("1.0e5"), "1.0e5");
        assert_eq!(without_trailing_zeros(".50"), ".50");
    }
}
