//! Reading routing.toml: TOML syntax and type errors with line numbers, then
//! whole-file validation.

use std::fmt;
use std::path::Path;

use super::Config;

/// One problem in a config file, with the line it is on when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line number, if known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.origin)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        origin: origin.clone(),
        errors: vec![ConfigError {
            line: None,
            message: format!("cannot read file: {e}"),
        }],
    })?;
    load_str(&text, &origin)
}

/// Parses and validates config text; `origin` names it in errors.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let config: Config = toml::from_str(text).map_err(|e| ConfigErrors {
        origin: origin.to_string(),
        errors: vec![ConfigError {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().to_string(),
        }],
    })?;
    let errors = super::validate::validate(&config, text);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors {
            origin: origin.to_string(),
            errors,
        })
    }
}

/// 1-based line number of byte offset `at`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
