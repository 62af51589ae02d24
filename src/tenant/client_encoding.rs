//! Client encodings an isolated session may not use. The rewriter reads a
//! statement as UTF-8; Postgres reads it in the client encoding. For most
//! encodings the two readings agree on every quote and backslash, since
//! their multi-byte characters use only bytes above 0x7F. In SJIS, BIG5,
//! GBK, UHC, GB18030 and JOHAB (the encodings Postgres allows for clients
//! only) the second byte of a character may be `\` or `'`, so text the
//! rewriter reads as one string literal can end early for Postgres and run
//! as SQL it never saw.

use crate::error::ProxyError;

/// The names (and aliases) Postgres knows those encodings by, cleaned as
/// Postgres cleans them (lower case, letters and digits only).
const UNSAFE: &[&str] = &[
    "sjis",
    "mskanji",
    "shiftjis",
    "win932",
    "windows932",
    "cp932",
    "shiftjis2004",
    "big5",
    "win950",
    "windows950",
    "cp950",
    "gbk",
    "cp936",
    "win936",
    "windows936",
    "gb18030",
    "uhc",
    "win949",
    "windows949",
    "cp949",
    "johab",
];

/// Refuses `value` as the client encoding of an isolated session if its
/// characters can hide quote or backslash bytes.
pub fn check_client_encoding(value: &str) -> Result<(), ProxyError> {
    if UNSAFE.contains(&cleaned(value).as_str()) {
        return Err(ProxyError::client_encoding_refused(value));
    }
    Ok(())
}

/// Refuses a `SET client_encoding` / `SET NAMES` whose value (`rest`:
/// everything after the setting's name, quotes, keywords and comments
/// included) could name such an encoding. Postgres keeps only the letters
/// and digits of an encoding name (`'s j i s'` is SJIS), so the check runs
/// on all of them run together and refuses any that holds such a name.
pub fn check_client_encoding_set(rest: &str) -> Result<(), ProxyError> {
    let clean = cleaned(rest);
    if UNSAFE.iter().any(|name| clean.contains(name)) {
        return Err(ProxyError::client_encoding_refused(set_value(rest)));
    }
    Ok(())
}

/// The value of a `SET client_encoding` as the client wrote it, for the
/// message: without the `=` or `TO` before it and the quotes around it.
fn set_value(rest: &str) -> &str {
    let v = rest.trim_start();
    let v = match v.strip_prefix('=') {
        Some(after) => after,
        None if v.len() > 2
            && v[..2].eq_ignore_ascii_case("to")
            && v[2..].starts_with(|c: char| c.is_ascii_whitespace() || c == '\'' || c == '"') =>
        {
            &v[2..]
        }
        None => v,
    };
    let v = v.trim().trim_end_matches(';').trim_end();
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q))
            && !inner.is_empty()
        {
            return inner;
        }
    }
    v
}

/// `s` as Postgres cleans an encoding name: letters and digits, lower case.
fn cleaned(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_with_ascii_trail_bytes_are_refused() {
        for bad in [
            "SJIS",
            "sjis",
            "Shift_JIS",
            "BIG5",
            "gbk",
            "GB18030",
            "UHC",
            "johab",
            "WIN932",
            "Windows-936",
            "SHIFT_JIS_2004",
        ] {
            let e = check_client_encoding(bad).unwrap_err();
            assert_eq!(e.code.code(), "0A000", "{bad}");
        }
        for good in [
            "UTF8",
            "utf-8",
            "UNICODE",
            "LATIN1",
            "EUC_JP",
            "EUC_CN",
            "WIN1252",
            "SQL_ASCII",
            "default",
        ] {
            check_client_encoding(good).unwrap_or_else(|e| panic!("{good}: {e:?}"));
        }
    }

    #[test]
    fn the_message_names_the_value_as_written() {
        for (rest, shown) in [
            (" = 'SJIS'", "SJIS"),
            (" TO 'Shift_JIS'", "Shift_JIS"),
            (" to\tbig5", "big5"),
            (" 'GBK'", "GBK"),
            (" = \"WIN932\" ;", "WIN932"),
            (" = /* x */ 's j i s'", "/* x */ 's j i s'"),
        ] {
            let e = check_client_encoding_set(rest).unwrap_err();
            assert!(
                e.message.contains(&format!("\"{shown}\"")),
                "{rest}: {}",
                e.message
            );
        }
    }

    #[test]
    fn a_set_value_is_read_as_postgres_reads_an_encoding_name() {
        for bad in [
            " = 's j i s'",
            " TO 'WIN 932'",
            " 'b i g 5'",
            " = /* x */ 'g-b-k'",
            " = \"Shift_JIS\"",
            " = sjis",
        ] {
            let e = check_client_encoding_set(bad).unwrap_err();
            assert_eq!(e.code.code(), "0A000", "{bad}");
        }
        for good in [
            " = 'UTF8'",
            " TO DEFAULT",
            " 'LATIN1'",
            " = 'EUC_JP'",
            " = 'win1252'",
        ] {
            check_client_encoding_set(good).unwrap_or_else(|e| panic!("{good}: {e:?}"));
        }
    }
}
