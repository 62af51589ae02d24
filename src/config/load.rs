//! Reading routing.toml: TOML syntax and type errors with line numbers, then
//! whole-file validation, with every problem reported at once.
//!
//! A valid file is parsed once. Only when something is wrong is it parsed
//! again into toml's span-preserving tree: to report every syntax error, to
//! skip unknown keys and values of the wrong type so that the problems after
//! them are found too, and to find the lines of semantic errors.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::DeTable;

use super::Config;
use super::locate::{Loc, Locator, Removed, line_of, remove_key_at};
use super::tenants_file::{self, TenantLines};
use super::validate::{Issue, validate};

/// At most this many problems are listed; the rest are counted.
const MAX_ERRORS: usize = 1000;
/// At most this many unknown keys are skipped before giving up.
const MAX_RECOVERIES: usize = 50;

/// One problem in a config file, with the line it is on when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line number, if known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// The file the line is in, when it is not the main config file (the
    /// `tenants_file`); `None` for the file named by [`ConfigErrors::origin`].
    pub file: Option<String>,
}

impl ConfigError {
    /// A problem in the main config file.
    pub fn new(line: Option<usize>, message: impl Into<String>) -> Self {
        ConfigError {
            line,
            message: message.into(),
            file: None,
        }
    }

    /// The same problem, placed in `file`.
    fn in_file(mut self, file: &str) -> Self {
        self.file = Some(file.to_string());
        self
    }
}

/// `line 3: message`, or `tenants.toml: line 3: message` for another file.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// File name or other origin shown before each error.
    pub origin: String,
    /// The problems, in file order (the main file first, then the tenants file).
    pub errors: Vec<ConfigError>,
}

/// One problem per line: `routing.toml: line 3: message`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.file.is_some() {
                write!(f, "{e}")?;
            } else {
                write!(f, "{}: {e}", self.origin)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file. A relative `routing.tenants_file` is
/// resolved against the directory holding `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        origin: origin.clone(),
        errors: vec![ConfigError::new(None, format!("cannot read file: {e}"))],
    })?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    load_str_in(&text, &origin, base_dir)
}

/// Parses and validates config text; `origin` names it in errors. A relative
/// `routing.tenants_file` is resolved against the current directory.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str_in(text, origin, Path::new(""))
}

/// Parses and validates config text; `origin` names it in errors, and a
/// relative `routing.tenants_file` is resolved against `base_dir`.
///
/// On success `config.tenants` holds the inline `[[tenants]]` followed by
/// those of the tenants file, and `config.routing.tenants_file` holds the
/// resolved path.
pub fn load_str_in(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        origin: origin.to_string(),
        errors: capped(errors),
    };
    let (mut config, mut errors) = deserialize::<Config>(text).map_err(fail)?;

    let inline_tenants = config.tenants.len();
    let mut issues = Vec::new();
    let mut tenants_complete = true;
    let mut file: Option<(String, String, TenantLines)> = None;
    if let Some(relative) = config.routing.tenants_file.take() {
        let path = base_dir.join(&relative);
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Err(e) => {
                tenants_complete = false;
                issues.push(Issue {
                    loc: Loc::Key("routing", "tenants_file"),
                    message: format!("cannot read tenants_file {name}: {e}"),
                    first: None,
                });
            }
            Ok(file_text) => match tenants_file::parse(&file_text) {
                Ok(parsed) => {
                    config.tenants.extend(parsed.tenants);
                    file = Some((name, file_text, parsed.lines));
                }
                Err(file_errors) => {
                    tenants_complete = false;
                    errors.extend(file_errors.into_iter().map(|e| e.in_file(&name)));
                }
            },
        }
        config.routing.tenants_file = Some(path);
    }

    issues.extend(validate(&config, tenants_complete));
    if issues.is_empty() && errors.is_empty() {
        return Ok(config);
    }

    let mut places = Places {
        main_text: text,
        main: None,
        inline_tenants,
        file: file
            .as_ref()
            .map(|(name, text, lines)| (name.as_str(), text.as_str(), lines)),
        file_locator: None,
    };
    for issue in issues {
        let (file, line) = places.place(issue.loc);
        let mut message = issue.message;
        if let Some(first) = issue.first
            && let (first_file, Some(first_line)) = places.place(first)
        {
            match first_file {
                Some(f) if file.as_deref() != Some(f.as_str()) => {
                    message.push_str(&format!(" (first at {f} line {first_line})"));
                }
                None if file.is_some() => {
                    message.push_str(&format!(" (first at {origin} line {first_line})"));
                }
                _ => message.push_str(&format!(" (first at line {first_line})")),
            }
        }
        errors.push(ConfigError {
            line,
            message,
            file,
        });
    }
    // Main file first, then the tenants file; by line within each.
    errors.sort_by_key(|e| (e.file.is_some(), e.line.unwrap_or(0)));
    Err(fail(errors))
}

/// Keeps the first [`MAX_ERRORS`] problems and counts the rest.
fn capped(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        errors.truncate(MAX_ERRORS);
        errors.push(ConfigError::new(
            None,
            format!("… and {more} more problems not shown"),
        ));
    }
    errors
}

/// Finds file and line of [`Loc`]s, parsing sources for spans on first use.
struct Places<'a> {
    main_text: &'a str,
    main: Option<Locator<'a>>,
    inline_tenants: usize,
    file: Option<(&'a str, &'a str, &'a TenantLines)>,
    file_locator: Option<Locator<'a>>,
}

impl<'a> Places<'a> {
    /// The file (`None`: the main file) and line of `loc`.
    fn place(&mut self, loc: Loc) -> (Option<String>, Option<usize>) {
        if let Loc::Tenant(index, key) = loc
            && index >= self.inline_tenants
        {
            return match self.file {
                Some((name, text, lines)) => (
                    Some(name.to_string()),
                    lines.line(
                        text,
                        &mut self.file_locator,
                        index - self.inline_tenants,
                        key,
                    ),
                ),
                None => (None, None),
            };
        }
        if loc == Loc::File {
            return (None, None);
        }
        let text = self.main_text;
        let line = self
            .main
            .get_or_insert_with(|| Locator::new(text))
            .line(loc);
        (None, line)
    }
}

/// Deserializes `text` as `T`.
///
/// On success also returns the problems that were skipped to get there
/// (unknown keys, and keys whose values have the wrong type, taken out of the
/// tree one by one); each is an error, but skipping them lets the caller find
/// the problems after them as well. Otherwise returns every syntax error, or
/// the errors up to the first one that cannot be skipped (a required key
/// with a bad value stops the search there).
pub(super) fn deserialize<T: DeserializeOwned>(
    text: &str,
) -> Result<(T, Vec<ConfigError>), Vec<ConfigError>> {
    let mut error = match toml::from_str::<T>(text) {
        Ok(value) => return Ok((value, Vec::new())),
        Err(e) => e,
    };
    let (mut root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let mut errors: Vec<ConfigError> = syntax.iter().map(|e| toml_error(text, e)).collect();
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        errors.dedup();
        return Err(errors);
    }
    let mut errors = Vec::new();
    // Keys taken out for a bad value: if one was required, the "missing
    // field" that follows is a consequence, not a second problem.
    let mut bad_values: Vec<String> = Vec::new();
    loop {
        let message = error.message().trim_end();
        if bad_values
            .iter()
            .any(|key| message == format!("missing field `{key}`"))
        {
            return Err(errors);
        }
        errors.push(toml_error(text, &error));
        if errors.len() > MAX_RECOVERIES {
            return Err(errors);
        }
        match error
            .span()
            .and_then(|span| remove_key_at(root.get_mut(), &span))
        {
            Some(Removed::Key) => {}
            Some(Removed::ValueOf(key)) => bad_values.push(key),
            None => return Err(errors),
        }
        match T::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(value) => return Ok((value, errors)),
            Err(e) => error = e,
        }
    }
}

/// A toml error as a [`ConfigError`] with its line.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::new(
        e.span().map(|s| line_of(text, s.start)),
        e.message().trim_end(),
    )
}
