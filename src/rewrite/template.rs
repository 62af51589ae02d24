//! A rewritten statement with holes where the tenant value goes. The text is
//! the same for every tenant; the simple protocol fills the holes with a
//! quoted literal, the extended protocol with one extra bound parameter. So
//! one cache entry and one server-side prepared statement serve all tenants.

use std::sync::OnceLock;

use crate::error::ProxyError;

/// Marks a hole in printed SQL: `\u{1}` + index + `\u{1}`. Client SQL that
/// contains `\u{1}` is refused before parsing, so the marker is unambiguous.
pub const MARK: char = '\u{1}';

/// The placeholder text for hole `i`.
pub fn hole_marker(i: usize) -> String {
    format!("{MARK}{i}{MARK}")
}

/// A condition a statement's values must meet before it may run: the
/// tenant value's, and its LIKE patterns'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCheck {
    /// A literal the client wrote into the tenant column.
    Literal(String),
    /// Bind parameter `$n` (1-based) the client put into the tenant column.
    Param(usize),
    /// Bind parameter `param` is a LIKE pattern with this escape character:
    /// its value must not end with a dangling escape (see `like_pattern`).
    /// Not a condition on the tenant, but checked at the same Bind.
    Pattern {
        /// The parameter's number (1-based).
        param: usize,
        /// The escape character (ASCII).
        escape: u8,
    },
}

/// How values of the tenant column checked against client parameters are
/// typed, which is how a value sent in binary format must be read: the
/// bytes of a text value are the text; an integer's are big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TenantType {
    /// `text`, `character varying`, `character`, `name`.
    #[default]
    Text,
    /// `smallint`, `integer`, `bigint`.
    Integer,
    /// `uuid`.
    Uuid,
    /// Anything else (or columns of several types): binary values are not
    /// read, so they never pass a check.
    Other,
}

impl TenantType {
    /// The type of a tenant column the rewriter casts tenant values to
    /// `cast` (none: a text type).
    pub fn of_cast(cast: Option<&str>) -> TenantType {
        match cast {
            None => TenantType::Text,
            Some("smallint" | "integer" | "bigint" | "int2" | "int4" | "int8") => {
                TenantType::Integer
            }
            Some("uuid") => TenantType::Uuid,
            Some(_) => TenantType::Other,
        }
    }

    /// The type of a parameter the client declared with `oid` in its Parse
    /// (`None` for 0, which leaves it to the server).
    pub fn of_oid(oid: u32) -> Option<TenantType> {
        match oid {
            0 => None,
            25 | 1043 | 1042 | 19 | 705 => Some(TenantType::Text),
            20 | 21 | 23 => Some(TenantType::Integer),
            2950 => Some(TenantType::Uuid),
            _ => Some(TenantType::Other),
        }
    }

    /// The one type of several columns' `casts` (`Other` when they differ).
    pub fn of_casts(casts: &[Option<String>]) -> TenantType {
        let mut types = casts.iter().map(|c| TenantType::of_cast(c.as_deref()));
        let first = types.next().unwrap_or_default();
        if types.all(|t| t == first) {
            first
        } else {
            TenantType::Other
        }
    }
}

/// Rewritten SQL with tenant holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Text between holes; one more than `casts`.
    segments: Vec<String>,
    /// For each hole, the SQL type to cast the tenant value to (none: text).
    casts: Vec<Option<String>>,
    /// Highest `$n` the statement uses.
    pub max_param: usize,
    /// Conditions on the tenant value.
    pub checks: Vec<TenantCheck>,
    /// The type of the tenant column the client parameters in `checks` go
    /// into.
    pub check_type: TenantType,
    /// Parameters the statement casts (`$1::int`) where it was not fenced:
    /// a Parse that declares a type for one of them needs the fenced
    /// rewrite (the cast then runs, and can fail, where it is evaluated).
    pub cast_params: Vec<usize>,
    /// The text [`Template::render_param`] made first, with its parameter
    /// number: every Parse of the statement asks for the same one.
    param_text: ParamText,
}

/// A rendering kept for reuse. Not part of the template's value: two
/// templates are equal whatever either has rendered.
#[derive(Debug, Clone, Default)]
struct ParamText(OnceLock<(usize, String)>);

impl PartialEq for ParamText {
    fn eq(&self, _: &ParamText) -> bool {
        true
    }
}

impl Eq for ParamText {}

impl Template {
    /// Splits printed SQL at hole markers. `casts[i]` is hole i's type.
    ///
    /// Every hole the rewriter made prints exactly once. Any other marker
    /// came from the client's own text, written as an escape the raw-text
    /// check cannot see (`E'\x01'`, `U&'\0001'`): it must not be taken for a
    /// hole, so the statement is refused.
    pub fn from_printed(
        sql: &str,
        casts: Vec<Option<String>>,
        max_param: usize,
        checks: Vec<TenantCheck>,
    ) -> Result<Template, ProxyError> {
        let not_ours = || ProxyError::construct_unsupported("the control character U+0001");
        let mut segments = Vec::with_capacity(casts.len() + 1);
        let mut seen = vec![false; casts.len()];
        let mut order = Vec::with_capacity(casts.len());
        let mut parts = sql.split(MARK);
        segments.push(parts.next().unwrap_or_default().to_string());
        while let Some(index) = parts.next() {
            let i: usize = index.parse().map_err(|_| not_ours())?;
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                _ => return Err(not_ours()),
            }
            order.push(i);
            segments.push(parts.next().ok_or_else(not_ours)?.to_string());
        }
        if order.len() != casts.len() {
            return Err(not_ours());
        }
        // Holes print in text order, which can differ from creation order.
        let casts = order.iter().map(|&i| casts[i].clone()).collect();
        Ok(Template {
            segments,
            casts,
            max_param,
            checks,
            check_type: TenantType::default(),
            cast_params: Vec::new(),
            param_text: ParamText::default(),
        })
    }

    /// The template with its checked parameters going into a tenant column
    /// of type `check_type`.
    pub fn with_check_type(mut self, check_type: TenantType) -> Template {
        self.check_type = check_type;
        self
    }

    /// The template with its unfenced cast parameters.
    pub fn with_cast_params(mut self, cast_params: Vec<usize>) -> Template {
        self.cast_params = cast_params;
        self
    }

    /// The text between holes, in order.
    pub(crate) fn segments(&self) -> &[String] {
        &self.segments
    }

    /// This template's holes, parameters and checks around other text:
    /// `segments` must have as many entries as this template has.
    pub(crate) fn with_segments(&self, segments: Vec<String>) -> Template {
        debug_assert_eq!(segments.len(), self.segments.len());
        Template {
            segments,
            casts: self.casts.clone(),
            max_param: self.max_param,
            checks: self.checks.clone(),
            check_type: self.check_type,
            cast_params: self.cast_params.clone(),
            param_text: ParamText::default(),
        }
    }

    /// Whether `other` has the same holes (in order, with the same casts),
    /// the same highest parameter and the same checks: the two differ at
    /// most in their text between holes.
    pub(crate) fn same_holes(&self, other: &Template) -> bool {
        self.segments.len() == other.segments.len()
            && self.casts == other.casts
            && self.max_param == other.max_param
            && self.checks == other.checks
            && self.check_type == other.check_type
            && self.cast_params == other.cast_params
    }

    /// Whether the statement touches tenant data at all.
    pub fn has_holes(&self) -> bool {
        !self.casts.is_empty()
    }

    /// SQL with the tenant as a literal (simple protocol).
    pub fn render_literal(&self, tenant: &str) -> String {
        let literal = quote_literal(tenant);
        self.render(|cast| match cast {
            Some(t) => format!("CAST({literal} AS {t})"),
            None => literal.clone(),
        })
    }

    /// SQL with the tenant as bind parameter `$k` (extended protocol).
    pub fn render_param(&self, k: usize) -> String {
        if let Some((kept, text)) = self.param_text.0.get()
            && *kept == k
        {
            return text.clone();
        }
        let text = self.render(|cast| match cast {
            Some(t) => format!("CAST(${k} AS {t})"),
            None => format!("${k}"),
        });
        // The first number asked for is kept (it is the same at every Parse
        // of the statement, unless the client declares more parameters).
        let _ = self.param_text.0.set((k, text.clone()));
        text
    }

    fn render(&self, fill: impl Fn(&Option<String>) -> String) -> String {
        let mut out = String::with_capacity(
            self.segments.iter().map(String::len).sum::<usize>() + 16 * self.casts.len(),
        );
        for (i, seg) in self.segments.iter().enumerate() {
            out.push_str(seg);
            if let Some(cast) = self.casts.get(i) {
                out.push_str(&fill(cast));
            }
        }
        out
    }

    /// Approximate bytes held, for the cache bound.
    pub fn size(&self) -> usize {
        // Twice the text: once in segments, once rendered for a Parse.
        self.segments
            .iter()
            .map(|s| 2 * s.len() + 24)
            .sum::<usize>()
            + self.casts.len() * 32
            + 96
    }
}

/// A SQL string literal; tenant ids never contain backslashes or NUL
/// (validated when chosen), so doubling quotes is enough.
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_ways() {
        let printed = format!(
            "SELECT * FROM (SELECT * FROM t WHERE tenant_id = {}) AS t WHERE b = {}",
            hole_marker(0),
            hole_marker(1)
        );
        let t =
            Template::from_printed(&printed, vec![None, Some("bigint".into())], 0, vec![]).unwrap();
        assert_eq!(
            t.render_literal("o'k"),
            "SELECT * FROM (SELECT * FROM t WHERE tenant_id = 'o''k') AS t WHERE b = CAST('o''k' AS bigint)"
        );
        assert_eq!(
            t.render_param(3),
            "SELECT * FROM (SELECT * FROM t WHERE tenant_id = $3) AS t WHERE b = CAST($3 AS bigint)"
        );
        assert!(t.has_holes());
    }

    #[test]
    fn param_rendering_is_kept_per_number() {
        let printed = format!("SELECT * FROM t WHERE tenant_id = {}", hole_marker(0));
        let t = Template::from_printed(&printed, vec![None], 1, vec![]).unwrap();
        let first = t.render_param(2);
        assert_eq!(first, "SELECT * FROM t WHERE tenant_id = $2");
        assert_eq!(t.render_param(2), first);
        // Another number is rendered anew, not taken from the kept one.
        assert_eq!(t.render_param(5), "SELECT * FROM t WHERE tenant_id = $5");
        assert_eq!(t.render_param(2), first);
        // What was rendered is no part of the template's value.
        let fresh = Template::from_printed(&printed, vec![None], 1, vec![]).unwrap();
        assert_eq!(t, fresh);
    }

    #[test]
    fn markers_that_are_not_the_rewriters_holes_are_refused() {
        let hole = hole_marker(0);
        let refused = |printed: &str, holes: usize| {
            Template::from_printed(printed, vec![None; holes], 0, vec![])
                .map_err(|e| e.code.code().to_string())
        };
        assert!(refused(&format!("a = {hole}"), 1).is_ok());
        // Hole 0 twice (the client wrote the marker in a string).
        assert_eq!(
            refused(&format!("{hole} AND '{hole}'"), 1).err().as_deref(),
            Some("0A000")
        );
        // A hole the rewriter made that does not print, or one it did not make.
        assert_eq!(refused("a = 1", 1).err().as_deref(), Some("0A000"));
        assert_eq!(refused(&hole_marker(3), 1).err().as_deref(), Some("0A000"));
        // Not a marker pair at all.
        assert_eq!(refused("x \u{1}y\u{1}", 0).err().as_deref(), Some("0A000"));
        assert_eq!(refused("x \u{1}0", 1).err().as_deref(), Some("0A000"));
    }

    #[test]
    fn no_holes() {
        let t = Template::from_printed("SELECT 1", vec![], 0, vec![]).unwrap();
        assert!(!t.has_holes());
        assert_eq!(t.render_literal("x"), "SELECT 1");
    }
}
