//! `[routing] tenants_file`: a separate TOML file holding only `[[tenants]]`
//! entries, possibly a million of them.
//!
//! The general TOML parser needs about 5 µs per entry, too slow for the
//! "1,000,000 tenants load in ≤ 2 s" target, so a file written in the plain
//! layout every generator emits —
//!
//! ```toml
//! [[tenants]]
//! id = "acme"          # comments and blank lines are fine
//! shard = 's1'
//! schema = "acme"
//! ```
//!
//! — is read by a small line scanner. Anything outside that layout (escapes,
//! inline tables, quoted keys, unknown or repeated keys, a missing key, …)
//! makes the scanner give up, and the file goes through the real TOML parser,
//! which then decides what the file means or reports its errors with lines.
//! Both paths yield the same tenants in the same order.

use serde::Deserialize;

use super::TenantConfig;
use super::load::{ConfigError, deserialize};
use super::locate::{Loc, Locator};

/// The tenants read from a tenants file, and how to find their lines.
pub(super) struct TenantsFile {
    /// Entries in file order.
    pub(super) tenants: Vec<TenantConfig>,
    /// Lines of each entry's header and keys.
    pub(super) lines: TenantLines,
}

/// How to find the line of a tenants-file entry.
pub(super) enum TenantLines {
    /// Recorded by the scanner: header, `id`, `shard`, `schema` (0 = absent).
    Scanned(Vec<[u32; 4]>),
    /// Read by the TOML parser: parse the text again to find lines.
    Toml,
}

impl TenantLines {
    /// 1-based line of entry `index` at `key` (or at its header). `text` is
    /// the file's content; `locator` caches its parse for [`TenantLines::Toml`].
    pub(super) fn line<'a>(
        &self,
        text: &'a str,
        locator: &mut Option<Locator<'a>>,
        index: usize,
        key: Option<&'static str>,
    ) -> Option<usize> {
        match self {
            TenantLines::Scanned(lines) => {
                let entry = lines.get(index)?;
                let at = match key {
                    Some("id") => entry[1],
                    Some("shard") => entry[2],
                    Some("schema") => entry[3],
                    _ => 0,
                };
                Some(if at == 0 { entry[0] } else { at } as usize)
            }
            TenantLines::Toml => locator
                .get_or_insert_with(|| Locator::new(text))
                .line(Loc::Tenant(index, key)),
        }
    }
}

/// The document shape of a tenants file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsDoc {
    #[serde(default)]
    tenants: Vec<TenantConfig>,
}

/// Reads a tenants file's text. Errors carry lines in this file (the caller
/// names the file).
pub(super) fn parse(text: &str) -> Result<TenantsFile, Vec<ConfigError>> {
    if let Some((tenants, lines)) = scan(text) {
        return Ok(TenantsFile {
            tenants,
            lines: TenantLines::Scanned(lines),
        });
    }
    let (doc, errors) = deserialize::<TenantsDoc>(text)?;
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TenantsFile {
        tenants: doc.tenants,
        lines: TenantLines::Toml,
    })
}

/// One entry being read by the scanner.
#[derive(Default)]
struct Partial {
    header: u32,
    id: Option<(String, u32)>,
    shard: Option<(String, u32)>,
    schema: Option<(String, u32)>,
}

impl Partial {
    /// The finished entry, or `None` if `id` or `shard` is missing.
    fn finish(self) -> Option<(TenantConfig, [u32; 4])> {
        let (id, id_line) = self.id?;
        let (shard, shard_line) = self.shard?;
        let (schema, schema_line) = match self.schema {
            Some((s, l)) => (Some(s), l),
            None => (None, 0),
        };
        Some((
            TenantConfig { id, shard, schema },
            [self.header, id_line, shard_line, schema_line],
        ))
    }
}

/// Reads the plain layout; `None` as soon as anything else appears.
fn scan(text: &str) -> Option<(Vec<TenantConfig>, Vec<[u32; 4]>)> {
    if text.starts_with('\u{feff}') {
        return None;
    }
    // A first guess at the size saves re-allocating a million-entry Vec.
    let estimate = text.len() / 40;
    let mut tenants = Vec::with_capacity(estimate);
    let mut lines = Vec::with_capacity(estimate);
    let mut current: Option<Partial> = None;
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = u32::try_from(n + 1).ok()?;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = trim_ws(line);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            valid_comment(comment)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("[[tenants]]") {
            end_of_line(rest)?;
            if let Some(done) = current.take() {
                let (t, l) = done.finish()?;
                tenants.push(t);
                lines.push(l);
            }
            current = Some(Partial {
                header: line_no,
                ..Partial::default()
            });
            continue;
        }
        let entry = current.as_mut()?;
        let key_len = line
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))?;
        let (key, rest) = line.split_at(key_len);
        let rest = trim_ws(rest).strip_prefix('=')?;
        let (value, rest) = string_value(trim_ws(rest))?;
        end_of_line(rest)?;
        let slot = match key {
            "id" => &mut entry.id,
            "shard" => &mut entry.shard,
            "schema" => &mut entry.schema,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some((value.to_string(), line_no));
    }
    if let Some(done) = current.take() {
        let (t, l) = done.finish()?;
        tenants.push(t);
        lines.push(l);
    }
    Some((tenants, lines))
}

fn trim_ws(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// After a value or header: nothing, or a comment.
fn end_of_line(rest: &str) -> Option<()> {
    let rest = trim_ws(rest);
    match rest.strip_prefix('#') {
        Some(comment) => valid_comment(comment),
        None if rest.is_empty() => Some(()),
        None => None,
    }
}

/// Leaves any control character (tab aside) to the real parser.
fn valid_comment(comment: &str) -> Option<()> {
    no_controls(comment).then_some(())
}

fn no_controls(s: &str) -> bool {
    !s.chars().any(|c| c != '\t' && c.is_control())
}

/// A one-line basic string without escapes, or a one-line literal string,
/// and what follows it.
fn string_value(s: &str) -> Option<(&str, &str)> {
    let quote = s.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let body = &s[1..];
    if body.starts_with(quote) {
        // `""` is an empty string, `"""` starts a multi-line string: let the
        // real parser handle both.
        return None;
    }
    let end = body.find(quote)?;
    let value = &body[..end];
    if (quote == '"' && value.contains('\\')) || !no_controls(value) {
        return None;
    }
    Some((value, &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via_toml(text: &str) -> Vec<TenantConfig> {
        toml::from_str::<TenantsDoc>(text).unwrap().tenants
    }

    #[test]
    fn scanner_reads_the_plain_layout_like_toml_does() {
        let text = "# generated\r\n\n[[tenants]]\r\nid = \"acme\"   # the first\nshard='s1'\n\n\
                    [[tenants]]  # second\n  shard = \"s0\"\n\tid=\"globex\"\nschema = \"globex\"\n";
        let (tenants, lines) = scan(text).expect("plain layout");
        assert_eq!(tenants, via_toml(text));
        assert_eq!(tenants.len(), 2);
        assert_eq!(lines, vec![[3, 4, 5, 0], [7, 9, 8, 10]]);
    }

    #[test]
    fn scanner_gives_up_on_anything_else() {
        for text in [
            "id = \"x\"\n",                                            // key before any entry
            "[[tenants]]\nid = \"a\\u0041\"\nshard = \"s\"\n",         // escape
            "[[tenants]]\nid = \"a\"\nshard = \"s\"\nextra = \"x\"\n", // unknown key
            "[[tenants]]\nid = \"a\"\nid = \"b\"\nshard = \"s\"\n",    // repeated key
            "[[tenants]]\nid = \"a\"\n",                               // missing shard
            "[[tenants]]\n\"id\" = \"a\"\nshard = \"s\"\n",            // quoted key
            "[[tenants]]\nid = \"\"\nshard = \"s\"\n",                 // empty string
            "[[tenants]]\nid = \"a\" x\nshard = \"s\"\n",              // trailing junk
            "[[tenants]]\nid = 5\nshard = \"s\"\n",                    // not a string
            "[[tenants ]]\nid = \"a\"\nshard = \"s\"\n",               // spaced header
            "tenants = [{ id = \"a\", shard = \"s\" }]\n",             // inline tables
            "\u{feff}[[tenants]]\nid = \"a\"\nshard = \"s\"\n",        // BOM
        ] {
            assert!(scan(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn other_layouts_go_through_toml() {
        let text = "tenants = [\n  { id = \"a\", shard = \"s0\" },\n  { id = \"\", shard = \"s1\", schema = \"x\" },\n]\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.tenants, via_toml(text));
        assert!(matches!(parsed.lines, TenantLines::Toml));
        let text =
            "[[tenants]]\nid = \"a\"\nshard = \"s0\"\n\n[[tenants]]\nid = \"\"\nshard = \"s1\"\n";
        let parsed = parse(text).unwrap();
        let mut locator = None;
        assert_eq!(
            parsed.lines.line(text, &mut locator, 1, Some("shard")),
            Some(7)
        );
        assert_eq!(
            parsed.lines.line(text, &mut locator, 1, Some("schema")),
            Some(5)
        );
    }

    #[test]
    fn errors_have_lines_in_the_tenants_file() {
        let text =
            "[[tenants]]\nid = \"a\"\nshard = \"s0\"\n\n[[tenants]]\nid = \"b\"\nshrad = \"s1\"\n";
        let errors = parse(text).err().unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].line, Some(7));
        assert!(errors[0].message.contains("unknown field `shrad`"));
        assert_eq!(errors[1].line, Some(5));
        assert!(
            errors[1].message.contains("missing field `shard`"),
            "{errors:?}"
        );
    }

    #[test]
    fn empty_file_has_no_tenants() {
        assert!(parse("").unwrap().tenants.is_empty());
        assert!(parse("# nothing yet\n").unwrap().tenants.is_empty());
    }
}
