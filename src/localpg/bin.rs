//! Locating the Postgres server binaries (`initdb`, `pg_ctl`, `postgres`):
//! `$TENANTGATE_PG_BIN` if set, else Debian's `/usr/lib/postgresql/<highest
//! version>/bin`, else `PATH`.

use std::path::{Path, PathBuf};

use super::LocalPgError;

/// Environment variable naming the directory holding the server binaries.
pub const PG_BIN_ENV: &str = "TENANTGATE_PG_BIN";

/// Where Debian and Ubuntu install one directory per server version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Paths of the Postgres server programs used to run a throwaway cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// `initdb`.
    pub initdb: PathBuf,
    /// `pg_ctl`.
    pub pg_ctl: PathBuf,
    /// `postgres` (passed to `pg_ctl -p`).
    pub postgres: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries: `$TENANTGATE_PG_BIN` (authoritative when set), else
    /// the highest version under `/usr/lib/postgresql/*/bin`, else `PATH`.
    pub fn find() -> Result<PgBinaries, LocalPgError> {
        if let Some(dir) = std::env::var_os(PG_BIN_ENV).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            return PgBinaries::in_dir(&dir).map_err(|e| match e {
                LocalPgError::BinariesNotFound(m) => {
                    LocalPgError::BinariesNotFound(format!("{m} (from ${PG_BIN_ENV})"))
                }
                other => other,
            });
        }
        let mut searched = Vec::new();
        if let Ok(entries) = std::fs::read_dir(DEBIAN_ROOT) {
            let names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            for version in versions_highest_first(&names) {
                let dir = Path::new(DEBIAN_ROOT).join(version).join("bin");
                if let Ok(b) = PgBinaries::in_dir(&dir) {
                    return Ok(b);
                }
                searched.push(dir.display().to_string());
            }
        } else {
            searched.push(format!("{DEBIAN_ROOT}/<version>/bin"));
        }
        if let Some(b) = PgBinaries::on_path() {
            return Ok(b);
        }
        searched.push("PATH".into());
        Err(LocalPgError::BinariesNotFound(format!(
            "looked for initdb, pg_ctl and postgres in {}; install the Postgres server \
             (e.g. apt-get install postgresql) or set ${PG_BIN_ENV} to its bin directory",
            searched.join(", ")
        )))
    }

    /// The binaries in `dir`; all three must be there and executable.
    pub fn in_dir(dir: &Path) -> Result<PgBinaries, LocalPgError> {
        let get = |name: &str| {
            let p = dir.join(name);
            if is_executable(&p) {
                Ok(p)
            } else {
                Err(LocalPgError::BinariesNotFound(format!(
                    "no executable {} in {}",
                    name,
                    dir.display()
                )))
            }
        };
        Ok(PgBinaries {
            initdb: get("initdb")?,
            pg_ctl: get("pg_ctl")?,
            postgres: get("postgres")?,
        })
    }

    /// The binaries on `PATH`: the directory `initdb` really lives in (symlinks
    /// resolved) when it holds all three, else each found on `PATH` separately.
    fn on_path() -> Option<PgBinaries> {
        let initdb = which("initdb")?;
        if let Some(real_dir) = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            && let Ok(b) = PgBinaries::in_dir(&real_dir)
        {
            return Some(b);
        }
        Some(PgBinaries {
            initdb,
            pg_ctl: which("pg_ctl")?,
            postgres: which("postgres")?,
        })
    }

    /// Another program of the same installation (`psql`, `pgbench`, …): the
    /// sibling of `initdb` when it exists, else the first one on `PATH`, else
    /// the bare name.
    pub fn tool(&self, name: &str) -> PathBuf {
        let dirs = [
            self.initdb.parent().map(Path::to_path_buf),
            std::fs::canonicalize(&self.initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf)),
        ];
        for dir in dirs.into_iter().flatten() {
            let p = dir.join(name);
            if is_executable(&p) {
                return p;
            }
        }
        which(name).unwrap_or_else(|| PathBuf::from(name))
    }
}

/// Directory names that look like versions (`15`, `9.6`), highest first.
fn versions_highest_first(names: &[String]) -> Vec<&str> {
    let mut versions: Vec<(Vec<u32>, &str)> = names
        .iter()
        .filter_map(|n| parse_version(n).map(|v| (v, n.as_str())))
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, n)| n).collect()
}

/// `"9.6"` → `[9, 6]`; anything but dot-separated numbers → `None`.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse::<u32>().ok()).collect()
}

/// The first executable `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Whether `p` is a file with an execute bit.
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let names: Vec<String> = ["9.6", "15", "10", "common", "16", "16beta"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            versions_highest_first(&names),
            vec!["16", "15", "10", "9.6"]
        );
    }

    #[test]
    fn parse_version_rejects_non_numbers() {
        assert_eq!(parse_version("13"), Some(vec![13]));
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("x"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn in_dir_reports_missing_program() {
        let err = PgBinaries::in_dir(Path::new("/nonexistent-tenantgate-dir"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no executable initdb"), "{err}");
    }
}
