//! `LocalPgError`: what can go wrong starting, using or stopping a throwaway
//! cluster, with the failing command and the tail of its output.

use std::fmt::Write as _;

/// An error from [`crate::localpg`].
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// `initdb`, `pg_ctl` or `postgres` could not be found.
    #[error("Postgres server binaries not found: {0}")]
    BinariesNotFound(String),
    /// A filesystem or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}){}", indent_output(.output))]
    Command {
        /// The command line, program and arguments.
        command: String,
        /// How it exited.
        status: String,
        /// The tail of its stderr and stdout (and, for server start, the log).
        output: String,
    },
    /// Connecting to the cluster or running SQL on it failed.
    #[error("{context}: {message}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The error and its causes, one after another.
        message: String,
    },
    /// Anything else (a panicked helper task, a bad option).
    #[error("{0}")]
    Other(String),
}

impl LocalPgError {
    /// An [`LocalPgError::Io`] with `context`.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LocalPgError {
        LocalPgError::Io {
            context: context.into(),
            source,
        }
    }

    /// A [`LocalPgError::Postgres`] carrying `err` and its whole cause chain.
    pub(crate) fn postgres(
        context: impl Into<String>,
        err: &tokio_postgres::Error,
    ) -> LocalPgError {
        let mut message = err.to_string();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(err);
        while let Some(c) = cause {
            let _ = write!(message, ": {c}");
            cause = c.source();
        }
        LocalPgError::Postgres {
            context: context.into(),
            message,
        }
    }
}

/// Formats captured output below the error line, or nothing when empty.
fn indent_output(output: &str) -> String {
    let trimmed = output.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let mut s = String::from(":");
    for line in trimmed.lines() {
        s.push_str("\n    ");
        s.push_str(line);
    }
    s
}

/// The last `max_lines` lines of `text`.
pub(crate) fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn command_error_shows_output_indented() {
        let e = LocalPgError::Command {
            command: "initdb -D x".into(),
            status: "exit status: 1".into(),
            output: "line one\nline two\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "`initdb -D x` failed (exit status: 1):\n    line one\n    line two"
        );
        let e = LocalPgError::Command {
            command: "x".into(),
            status: "exit status: 2".into(),
            output: String::new(),
        };
        assert_eq!(e.to_string(), "`x` failed (exit status: 2)");
    }
}
