//! Recognising `SET [SESSION|LOCAL] <variable> {=|TO} value`, `RESET
//! <variable>` and `SET <variable> TO DEFAULT` for the tenant variable.

use crate::error::ProxyError;
use crate::frontend::classify::{identifier_part, skip_token};

/// A SET or RESET of the tenant variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSet {
    /// The new tenant; `None` resets it.
    pub value: Option<String>,
    /// `SET LOCAL`.
    pub local: bool,
}

/// If `stmt` sets or resets `variable` (folded, e.g. `app.current_tenant`),
/// returns what it does. Other statements give `Ok(None)`.
pub fn parse_tenant_set(stmt: &str, variable: &str) -> Result<Option<TenantSet>, ProxyError> {
    let tokens = tokens(stmt);
    let lower: Vec<String> = tokens.iter().map(|t| t.to_ascii_lowercase()).collect();
    let w = |i: usize| lower.get(i).map(String::as_str).unwrap_or("");
    match w(0) {
        "reset" => {
            if names(&tokens, 1, variable) {
                return Ok(Some(TenantSet {
                    value: None,
                    local: false,
                }));
            }
            Ok(None)
        }
        "set" => {
            let (local, at) = match w(1) {
                "local" => (true, 2),
                "session" => (false, 2),
                _ => (false, 1),
            };
            if !names(&tokens, at, variable) {
                return Ok(None);
            }
            if !matches!(w(at + 1), "=" | "to") || tokens.len() != at + 3 {
                return Err(ProxyError::unparsable(
                    "SET of the tenant variable takes exactly one value",
                ));
            }
            let raw = &tokens[at + 2];
            let value = if raw.eq_ignore_ascii_case("default") {
                None
            } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                Some(inner.replace("''", "'"))
            } else if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                Some(inner.replace("\"\"", "\""))
            } else if is_identifier(raw) {
                // Postgres folds an unquoted identifier to lower case.
                Some(raw.to_ascii_lowercase())
            } else if is_number(raw) {
                Some(raw.clone())
            } else {
                // `$$…$$`, `E'…'` and the like: Postgres would read another
                // value than the text.
                return Err(ProxyError::unparsable(
                    "the tenant variable takes a quoted string ('acme'), an identifier or a number",
                ));
            };
            Ok(Some(TenantSet { value, local }))
        }
        _ => Ok(None),
    }
}

/// An unquoted SQL identifier (ASCII letters, digits, `_`, `$`; not
/// starting with a digit or `$`).
fn is_identifier(t: &str) -> bool {
    t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A plain number (optional sign, digits, at most one decimal point).
fn is_number(t: &str) -> bool {
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    !digits.is_empty()
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
}

/// Whether token `i` names `variable`. Setting names are matched without
/// regard to case, as Postgres matches them (quoted parts included).
fn names(tokens: &[String], i: usize, variable: &str) -> bool {
    unquote_ident(tokens, i).is_some_and(|n| n.eq_ignore_ascii_case(variable))
}

/// A dotted name with each part folded (unquoted) or unquoted (quoted):
/// `app.current_tenant`, `"app"."current_tenant"` and `"app.current_tenant"`
/// all give `app.current_tenant`.
fn unquote_ident(tokens: &[String], i: usize) -> Option<String> {
    let t = tokens.get(i)?;
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    parts.push(cur);
    Some(parts.join("."))
}

/// Splits into tokens as Postgres reads them for a SET: names (a dotted
/// name is one token, however it is spaced or commented: `app . "x"`),
/// quoted strings, numbers and `=`, dropping comments (also between the
/// words and dots of a name) and `;`.
fn tokens(s: &str) -> Vec<String> {
    // A token that can be a part of a dotted name.
    let joins = |t: &str| {
        t.starts_with(|c: char| c == '"' || c == '_' || c.is_alphabetic() || !c.is_ascii())
    };
    let b = s.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() || c == b';' {
            i += 1;
            continue;
        }
        if (c == b'-' && b.get(i + 1) == Some(&b'-')) || (c == b'/' && b.get(i + 1) == Some(&b'*'))
        {
            i = skip_token(b, i);
            continue;
        }
        i = if matches!(c, b'\'' | b'"') {
            skip_token(b, i)
        } else if c.is_ascii_digit()
            || (matches!(c, b'-' | b'+') && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i + 1
                + b[i + 1..]
                    .iter()
                    .take_while(|&&d| d.is_ascii_digit() || d == b'.')
                    .count()
        } else if identifier_part(c) {
            i + b[i..].iter().take_while(|&&d| identifier_part(d)).count()
        } else {
            i + s[i..].chars().next().map_or(1, char::len_utf8)
        };
        let token = &s[start..i];
        // `name . name` is one dotted name.
        if joins(token)
            && let [.., name, dot] = out.as_slice()
            && dot == "."
            && joins(name)
        {
            out.pop();
            if let Some(name) = out.last_mut() {
                name.push('.');
                name.push_str(token);
            }
            continue;
        }
        out.push(token.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<TenantSet> {
        parse_tenant_set(s, "app.current_tenant").unwrap()
    }

    #[test]
    fn forms() {
        let acme = Some(TenantSet {
            value: Some("acme".into()),
            local: false,
        });
        assert_eq!(p("SET app.current_tenant = 'acme'"), acme);
        assert_eq!(p("set app.current_tenant to acme;"), acme);
        assert_eq!(p("SET SESSION app.current_tenant='acme'"), acme);
        assert_eq!(p("SET \"app\".\"current_tenant\" = 'acme'"), acme);
        assert_eq!(p("SET \"app.current_tenant\" = 'acme'"), acme);
        // Postgres matches setting names without regard to case, quoted
        // or not: this is the same setting.
        assert_eq!(p("SET SESSION \"App.Current_Tenant\" = 'acme'"), acme);
        assert_eq!(p("SET \"APP\".current_tenant = 'acme'"), acme);
        assert_eq!(
            p("SET LOCAL app.current_tenant = 'acme'"),
            Some(TenantSet {
                value: Some("acme".into()),
                local: true
            })
        );
        assert_eq!(
            p("SET app.current_tenant = 'o''brien'").and_then(|t| t.value),
            Some("o'brien".into())
        );
        assert_eq!(
            p("SET app.current_tenant = 42").and_then(|t| t.value),
            Some("42".into())
        );
        assert_eq!(
            p("SET app.current_tenant TO DEFAULT"),
            Some(TenantSet {
                value: None,
                local: false
            })
        );
        assert_eq!(
            p("RESET app.current_tenant"),
            Some(TenantSet {
                value: None,
                local: false
            })
        );
        // Unquoted identifiers fold to lower case, as in Postgres; forms
        // whose value Postgres would read otherwise are refused.
        assert_eq!(
            p("SET app.current_tenant = Acme").and_then(|t| t.value),
            Some("acme".into())
        );
        assert_eq!(
            p("SET app.current_tenant = \"Acme\"").and_then(|t| t.value),
            Some("Acme".into())
        );
        for odd in [
            "SET app.current_tenant = $$globex$$",
            "SET app.current_tenant = $1",
            "SET app.current_tenant = 1e5x",
        ] {
            assert!(
                parse_tenant_set(odd, "app.current_tenant").is_err(),
                "{odd}"
            );
        }
        assert_eq!(p("SET statement_timeout = 5"), None);
        // Postgres reads a dotted name however it is spaced or commented:
        // each of these sets the tenant variable.
        for spaced in [
            "SET app . current_tenant = 'acme'",
            "SET app./**/current_tenant = 'acme'",
            "SET/**/app.current_tenant = 'acme'",
            "SET \"app\" . \"current_tenant\" TO 'acme'",
            "SET LOCAL app -- c\n . current_tenant TO acme",
            "SET app.current_tenant='acme';",
        ] {
            assert_eq!(
                p(spaced).and_then(|t| t.value),
                Some("acme".into()),
                "{spaced}"
            );
        }
        assert_eq!(
            p("RESET app . /* c */ current_tenant"),
            Some(TenantSet {
                value: None,
                local: false
            })
        );
        assert_eq!(
            p("SET app.current_tenant = -1.5").and_then(|t| t.value),
            Some("-1.5".into())
        );
        assert_eq!(p("SET app . other = 'acme'"), None);
        assert_eq!(p("SELECT 1"), None);
        assert!(
            parse_tenant_set("SET app.current_tenant = 'a', 'b'", "app.current_tenant").is_err()
        );
    }
}
