//! Running the Postgres programs: as user `postgres` via `runuser` when this
//! process is root (initdb, pg_ctl and postgres refuse to run as root), with
//! output captured so failures carry the command and its stderr.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::LocalPgError;
use super::error::tail;

/// The OS user the server runs as when this process is root.
pub(crate) const SERVER_USER: &str = "postgres";

/// Lines of output kept in errors.
const TAIL_LINES: usize = 30;

/// Whether this process runs with effective uid 0 (read once).
pub(crate) fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| effective_uid().is_some_and(|uid| uid == 0))
}

/// Effective uid from `/proc/self/status`, falling back to `id -u`.
fn effective_uid() -> Option<u32> {
    if let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_effective_uid(&s))
    {
        return Some(uid);
    }
    let out = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The effective uid (second field of the `Uid:` line) of a `/proc/<pid>/status` text.
fn parse_effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|f| f.parse().ok())
}

/// `runuser`, looked up on `PATH` and in the usual sbin directories.
fn runuser() -> PathBuf {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("runuser"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

/// A command running `program`, wrapped in `runuser -u postgres --` when
/// `as_server_user` is set. Stdin is closed; the working directory is `cwd`
/// (one the server user can enter).
pub(crate) fn server_command(program: &Path, as_server_user: bool, cwd: &Path) -> Command {
    let mut cmd = if as_server_user {
        let mut c = Command::new(runuser());
        c.args(["-u", SERVER_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// Gives `path` and everything below it to the server user (`chown -R`).
pub(crate) fn chown_to_server_user(path: &Path) -> Result<(), LocalPgError> {
    let mut cmd = Command::new("chown");
    cmd.arg("-R")
        .arg(SERVER_USER)
        .arg(path)
        .stdin(Stdio::null());
    run(cmd).map(|_| ())
}

/// Runs `cmd` to completion; a non-zero exit is an error with its output tail.
pub(crate) fn run(mut cmd: Command) -> Result<Output, LocalPgError> {
    let line = describe(&cmd);
    let out = cmd
        .output()
        .map_err(|e| LocalPgError::io(format!("cannot run `{line}`"), e))?;
    check(line, out)
}

/// Runs `cmd` on the tokio runtime without blocking it.
pub(crate) async fn run_async(cmd: Command) -> Result<Output, LocalPgError> {
    let line = describe(&cmd);
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(|e| LocalPgError::io(format!("cannot run `{line}`"), e))?;
    check(line, out)
}

/// Turns an unsuccessful `out` into [`LocalPgError::Command`].
fn check(line: String, out: Output) -> Result<Output, LocalPgError> {
    if out.status.success() {
        return Ok(out);
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&stdout);
    }
    Err(LocalPgError::Command {
        command: line,
        status: out.status.to_string(),
        output: tail(&text, TAIL_LINES),
    })
}

/// The command line of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_uid() {
        let status = "Name:\tcargo\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Uid:\t5\t7\t7\t7\n"), Some(7));
        assert_eq!(parse_effective_uid("Name: x\n"), None);
    }

    #[test]
    fn wraps_in_runuser_when_asked() {
        let cmd = server_command(Path::new("/bin/initdb"), true, Path::new("/"));
        let line = describe(&cmd);
        assert!(
            line.ends_with("runuser -u postgres -- /bin/initdb"),
            "{line}"
        );
        let cmd = server_command(Path::new("/bin/initdb"), false, Path::new("/"));
        assert_eq!(describe(&cmd), "/bin/initdb");
    }

    #[test]
    fn failed_command_carries_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        match run(cmd) {
            Err(LocalPgError::Command { output, status, .. }) => {
                assert_eq!(output.trim(), "oops");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
