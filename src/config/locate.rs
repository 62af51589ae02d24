//! Line numbers for semantic errors.
//!
//! Validation works on the typed [`Config`](super::Config) and names the place
//! of each problem with a [`Loc`] (`[[tenants]]` entry 3, key `shard`). Only
//! when there are problems is the source parsed a second time into toml's
//! span-preserving [`DeTable`], where a [`Locator`] looks the place up — a valid
//! config is parsed once.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where in the config a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loc {
    /// Nowhere in particular (the file as a whole).
    File,
    /// Key `.1` of table `[.0]`; the table header if the key is absent.
    Key(&'static str, &'static str),
    /// Entry `.1` (0-based) of the array of tables `[[.0]]`, at key `.2` if
    /// given and present, else at the entry's `[[…]]` header.
    Entry(&'static str, usize, Option<&'static str>),
    /// Element `.2` of the array `.1` in table `[.0]`.
    Item(&'static str, &'static str, usize),
    /// Tenant `.0` of `Config::tenants` (inline entries first, then those from
    /// `tenants_file`), at key `.1`.
    Tenant(usize, Option<&'static str>),
}

/// Looks up [`Loc`]s in one TOML source.
pub(super) struct Locator<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> Locator<'a> {
    /// Parses `text` keeping spans; syntax errors were reported already, so
    /// whatever part parses is used.
    pub(super) fn new(text: &'a str) -> Self {
        let (root, _errors) = DeTable::parse_recoverable(text);
        Locator { text, root }
    }

    /// 1-based line of `loc`, if it can be found. `Loc::Tenant` is looked up
    /// as entry `index` of `[[tenants]]` in this source.
    pub(super) fn line(&self, loc: Loc) -> Option<usize> {
        self.span(loc).map(|s| line_of(self.text, s.start))
    }

    fn span(&self, loc: Loc) -> Option<Range<usize>> {
        let root = self.root.get_ref();
        match loc {
            Loc::File => None,
            Loc::Key(table, key) => {
                let t = root.get(table)?;
                match t.get_ref().as_table().and_then(|t| t.get_key_value(key)) {
                    Some((k, _)) => Some(k.span()),
                    None => Some(t.span()),
                }
            }
            Loc::Entry(array, index, key) => entry_span(root, array, index, key),
            Loc::Tenant(index, key) => entry_span(root, "tenants", index, key),
            Loc::Item(table, key, index) => {
                let (k, v) = root.get(table)?.get_ref().as_table()?.get_key_value(key)?;
                match v.get_ref().as_array().and_then(|a| a.get(index)) {
                    Some(item) => Some(item.span()),
                    None => Some(k.span()),
                }
            }
        }
    }
}

fn entry_span(
    root: &DeTable<'_>,
    array: &str,
    index: usize,
    key: Option<&str>,
) -> Option<Range<usize>> {
    let entry = root.get(array)?.get_ref().as_array()?.get(index)?;
    let found = key.and_then(|key| entry.get_ref().as_table()?.get_key_value(key));
    Some(match found {
        Some((k, _)) => k.span(),
        None => entry.span(),
    })
}

/// 1-based line number of byte offset `at` in `text`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// What [`remove_key_at`] took out of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Removed {
    /// A key whose name is at the span (an unknown key serde rejected).
    Key,
    /// The key, named here, whose value holds the span (a value of the wrong
    /// type, or one with a wrong item inside it).
    ValueOf(String),
}

/// Removes from `table`, or from a table nested in it, the key that `span`
/// points at: the key whose name is at `span` (an unknown key), or else the
/// innermost key whose value contains `span` (a value serde rejected).
/// Returns what was removed, or `None` if `span` points at neither.
pub(super) fn remove_key_at(table: &mut DeTable<'_>, span: &Range<usize>) -> Option<Removed> {
    let mut hit = None;
    for (k, v) in table.iter_mut() {
        if k.span() == *span {
            hit = Some((k.clone(), Removed::Key));
            break;
        }
        let holds = v.span().start <= span.start && span.end <= v.span().end;
        let nested = match v.get_mut() {
            DeValue::Table(t) => remove_key_at(t, span),
            DeValue::Array(items) => items.iter_mut().find_map(|item| match item.get_mut() {
                DeValue::Table(t) => remove_key_at(t, span),
                _ => None,
            }),
            _ => None,
        };
        if nested.is_some() {
            return nested;
        }
        if holds {
            hit = Some((k.clone(), Removed::ValueOf(k.get_ref().to_string())));
            break;
        }
    }
    let (key, removed) = hit?;
    table.remove(&key).map(|_| removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
[server]
listen = \"x\"

[routing]
hash_shards = [
  \"a\",
  \"b\",
]

[[tenants]]
id = \"t0\"

[[tenants]]
id = \"t1\"
shard = \"b\"
";

    #[test]
    fn finds_keys_entries_and_items() {
        let l = Locator::new(TEXT);
        assert_eq!(l.line(Loc::Key("server", "listen")), Some(2));
        assert_eq!(l.line(Loc::Key("server", "absent")), Some(1));
        assert_eq!(l.line(Loc::Key("absent", "x")), None);
        assert_eq!(l.line(Loc::Item("routing", "hash_shards", 1)), Some(7));
        assert_eq!(l.line(Loc::Item("routing", "hash_shards", 9)), Some(5));
        assert_eq!(l.line(Loc::Entry("tenants", 0, Some("id"))), Some(11));
        assert_eq!(l.line(Loc::Entry("tenants", 0, Some("shard"))), Some(10));
        assert_eq!(l.line(Loc::Tenant(1, Some("shard"))), Some(15));
        assert_eq!(l.line(Loc::Tenant(1, None)), Some(13));
        assert_eq!(l.line(Loc::Tenant(2, None)), None);
        assert_eq!(l.line(Loc::File), None);
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
