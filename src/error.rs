//! The proxy's error type and the one place where errors become client-visible
//! ErrorResponses. Every message a client can see from tenantgate itself is
//! constructed in this file, so `grep` finds them all.

use crate::protocol::sqlstate::SqlState;

/// Where an error came from; decides logging and whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client sent something invalid or not allowed.
    Client,
    /// A backend server failed or refused (connection level; SQL errors from
    /// Postgres are forwarded byte for byte and never become this type).
    Server,
    /// A bug or resource problem inside tenantgate.
    Internal,
    /// The client closed its connection: there is no one to answer, and
    /// nothing was refused (psql closes after the password request to ask
    /// its user for one, then connects again).
    ClientGone,
}

/// Severity sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session is terminated after this message.
    Fatal,
}

impl Severity {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// A client-visible error: SQLSTATE, message and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProxyError {
    /// SQLSTATE sent to the client.
    pub code: SqlState,
    /// Primary message (no internal detail such as hostnames or paths).
    pub message: String,
    /// Optional DETAIL field.
    pub detail: Option<Box<str>>,
    /// Optional HINT field.
    pub hint: Option<Box<str>>,
    /// ERROR or FATAL.
    pub severity: Severity,
    /// Origin of the problem.
    pub origin: Source,
    /// A SQLSTATE reported by a server, sent instead of `code` when set.
    pub server_code: Option<Box<str>>,
    /// The ROUTINE field, where a Postgres routine's name tells drivers
    /// what to do (see [`ProxyError::statement_planned_elsewhere`]).
    pub routine: Option<&'static str>,
    /// Postgres raises it before it looks at the transaction: also in a
    /// failed transaction, where anything else gets 25P02 (see
    /// [`ProxyError::before_abort_check`]).
    pub before_abort_check: bool,
}

/// Result alias used across the data path.
pub type Result<T, E = ProxyError> = std::result::Result<T, E>;

impl ProxyError {
    fn new(code: SqlState, source: Source, severity: Severity, message: impl Into<String>) -> Self {
        ProxyError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
            severity,
            origin: source,
            server_code: None,
            routine: None,
            before_abort_check: false,
        }
    }

    /// Marks an error Postgres raises before its check for a failed
    /// transaction (the look-up of a Bind's or Describe's statement): the
    /// client gets it, not 25P02, in a failed transaction too.
    pub fn before_abort_check(mut self) -> Self {
        self.before_abort_check = true;
        self
    }

    /// Adds a HINT.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into().into_boxed_str());
        self
    }

    /// Adds a DETAIL.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into().into_boxed_str());
        self
    }

    /// Adds a ROUTINE.
    pub fn with_routine(mut self, routine: &'static str) -> Self {
        self.routine = Some(routine);
        self
    }

    /// The same error, ending the session (for failures at login).
    pub fn fatal(mut self) -> Self {
        self.severity = Severity::Fatal;
        self
    }

    /// Whether the session must end after this error is sent.
    pub fn is_fatal(&self) -> bool {
        self.severity == Severity::Fatal
    }

    // ---- protocol and startup -------------------------------------------------

    /// A malformed or out-of-place protocol message (session ends).
    pub fn protocol_violation(what: impl Into<String>) -> Self {
        Self::new(
            SqlState::PROTOCOL_VIOLATION,
            Source::Client,
            Severity::Fatal,
            what,
        )
    }

    /// A message of a type no client sends once logged in.
    pub fn invalid_message_type(tag: u8) -> Self {
        Self::protocol_violation(format!(
            "invalid frontend message type '{}'",
            tag.escape_ascii()
        ))
    }

    /// A message whose framing is sound but whose content is not (a string
    /// without its NUL, fields running past the end, bytes left over): an
    /// ERROR, as Postgres reports it, and the session goes on.
    pub fn malformed_message(what: impl Into<String>) -> Self {
        Self::new(
            SqlState::PROTOCOL_VIOLATION,
            Source::Client,
            Severity::Error,
            what,
        )
    }

    /// The same error, ending the session (during startup, where Postgres
    /// has no session to go on with).
    pub fn into_fatal(mut self) -> Self {
        self.severity = Severity::Fatal;
        self
    }

    /// The client closed its connection during `phase`.
    pub fn client_gone(phase: &str) -> Self {
        Self::new(
            SqlState::CONNECTION_FAILURE,
            Source::ClientGone,
            Severity::Fatal,
            format!("the client closed the connection during {phase}"),
        )
    }

    /// A message longer than the configured maximum (session ends).
    pub fn message_too_large(len: usize, max: usize) -> Self {
        Self::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            Source::Client,
            Severity::Fatal,
            format!("message of {len} bytes exceeds the limit of {max} bytes"),
        )
    }

    /// Startup asked for a protocol major version we do not speak.
    pub fn unsupported_protocol(major: u16, minor: u16) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Fatal,
            format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"),
        )
    }

    /// A startup packet asked for a replication connection (`replication`
    /// true or `database`), which tenantgate does not serve.
    pub fn replication_unsupported(value: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Fatal,
            format!(
                "tenantgate does not serve replication connections (replication={value}); connect to the shard directly"
            ),
        )
    }

    /// A startup parameter with a value Postgres would not take.
    pub fn invalid_startup_value(name: &str, value: &str) -> Self {
        Self::new(
            SqlState::INVALID_PARAMETER_VALUE,
            Source::Client,
            Severity::Fatal,
            format!("invalid value for parameter \"{name}\": \"{value}\""),
        )
    }

    /// Startup packet without a user name (or with an empty one).
    pub fn no_user_in_startup() -> Self {
        Self::new(
            SqlState::INVALID_AUTHORIZATION,
            Source::Client,
            Severity::Fatal,
            "no PostgreSQL user name specified in startup packet",
        )
    }

    /// The database asked for is not served here.
    pub fn unknown_database(name: &str) -> Self {
        Self::new(
            SqlState::INVALID_CATALOG_NAME,
            Source::Client,
            Severity::Fatal,
            format!("database \"{name}\" does not exist"),
        )
    }

    /// Too many client connections.
    pub fn too_many_clients() -> Self {
        Self::new(
            SqlState::TOO_MANY_CONNECTIONS,
            Source::Client,
            Severity::Fatal,
            "sorry, too many clients already",
        )
    }

    /// The proxy is shutting down and accepts no new work.
    pub fn shutting_down() -> Self {
        Self::new(
            SqlState::ADMIN_SHUTDOWN,
            Source::Internal,
            Severity::Fatal,
            "terminating connection because tenantgate is shutting down",
        )
    }

    // ---- authentication -------------------------------------------------------

    /// Wrong password or unknown user (same message for both, as Postgres does).
    pub fn auth_failed(user: &str) -> Self {
        Self::new(
            SqlState::INVALID_PASSWORD,
            Source::Client,
            Severity::Fatal,
            format!("password authentication failed for user \"{user}\""),
        )
    }

    /// A user tried to reach the admin console without `admin = true`.
    pub fn admin_not_allowed(user: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Fatal,
            format!("user \"{user}\" is not allowed to use the admin console"),
        )
    }

    /// The authentication exchange itself was malformed.
    pub fn auth_protocol(what: impl Into<String>) -> Self {
        Self::new(
            SqlState::PROTOCOL_VIOLATION,
            Source::Client,
            Severity::Fatal,
            what,
        )
    }

    // ---- routing and pooling --------------------------------------------------

    /// The session's user is bound to a tenant that has no home.
    pub fn tenant_unroutable(tenant: &str) -> Self {
        Self::new(
            SqlState::CONNECTION_REJECTED,
            Source::Client,
            Severity::Fatal,
            format!("tenant \"{tenant}\" has no shard in the routing table"),
        )
    }

    /// A tenant chosen during the session has no home.
    pub fn tenant_not_routable(tenant: &str, why: &str) -> Self {
        Self::new(
            SqlState::INVALID_PARAMETER_VALUE,
            Source::Client,
            Severity::Error,
            format!("tenant \"{tenant}\" cannot be routed: {why}"),
        )
    }

    /// No shard could be chosen for an untenanted session.
    pub fn no_shard_for_session() -> Self {
        Self::new(
            SqlState::CONNECTION_REJECTED,
            Source::Client,
            Severity::Error,
            "no shard is configured for this session",
        )
        .with_hint("bind the user to a tenant, or list shards in routing.hash_shards")
    }

    /// A backend could not be reached or refused us.
    pub fn shard_unavailable(shard: &str) -> Self {
        Self::new(
            SqlState::CANNOT_CONNECT,
            Source::Server,
            Severity::Error,
            format!("shard \"{shard}\" is unavailable"),
        )
        .with_hint("the connection to the database server failed; retry later")
    }

    /// The server connection broke while a transaction was using it.
    pub fn server_connection_lost(shard: &str) -> Self {
        Self::new(
            SqlState::CONNECTION_FAILURE,
            Source::Server,
            Severity::Fatal,
            format!("server connection to shard \"{shard}\" was lost"),
        )
    }

    /// Waited too long for a pooled server connection.
    pub fn pool_timeout(shard: &str, waited: std::time::Duration) -> Self {
        Self::new(
            SqlState::QUERY_CANCELED,
            Source::Server,
            Severity::Error,
            format!(
                "timed out after {} ms waiting for a server connection to shard \"{shard}\"",
                waited.as_millis()
            ),
        )
    }

    /// A cancel request reached a session waiting for a server connection
    /// (or for a pause to end): the statement is dropped, as Postgres drops
    /// a cancelled one.
    pub fn canceled_while_waiting() -> Self {
        Self::new(
            SqlState::QUERY_CANCELED,
            Source::Client,
            Severity::Error,
            "canceling statement due to user request",
        )
    }

    /// The shard (or the whole proxy) is paused and the wait timed out.
    pub fn paused_timeout(what: &str) -> Self {
        Self::new(
            SqlState::QUERY_CANCELED,
            Source::Server,
            Severity::Error,
            format!("{what} is paused and did not resume in time"),
        )
    }

    /// `PAUSE` gave up waiting for running transactions of `what` (the
    /// pause itself stays in force).
    pub fn pause_incomplete(what: &str, running: usize, waited: std::time::Duration) -> Self {
        Self::new(
            SqlState::QUERY_CANCELED,
            Source::Server,
            Severity::Error,
            format!(
                "{what} is paused, but {running} transaction(s) still running after {waited:?}; \
                 the pause stays in force (RESUME lifts it, PAUSE waits again)"
            ),
        )
    }

    /// A RESUME lifted the pause of `what` while its `PAUSE` still waited
    /// for running transactions.
    pub fn pause_lifted(what: &str) -> Self {
        Self::new(
            SqlState::QUERY_CANCELED,
            Source::Server,
            Severity::Error,
            format!("{what} was resumed before its PAUSE took effect; nothing is paused"),
        )
    }

    // ---- session features -----------------------------------------------------

    /// A statement that cannot work under the current pool mode.
    pub fn unsupported_in_pool_mode(what: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!("{what} is not supported in transaction pooling mode"),
        )
    }

    /// Bind/Describe/Close named a prepared statement this client never prepared.
    pub fn unknown_prepared_statement(name: &str) -> Self {
        Self::new(
            SqlState::INVALID_SQL_STATEMENT_NAME,
            Source::Client,
            Severity::Error,
            format!("prepared statement \"{name}\" does not exist"),
        )
    }

    /// A `DEALLOCATE name` of a prepared statement in a query string after
    /// a `CREATE`, whose own semicolons (rule actions, `BEGIN ATOMIC`
    /// bodies) keep the proxy from telling which reply is the DEALLOCATE's.
    pub fn deallocate_after_create() -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            "DEALLOCATE of a prepared statement after a CREATE in the same query string is not supported",
        )
        .with_hint("send the DEALLOCATE as a query string of its own")
    }

    /// An extended-protocol `DEALLOCATE name` run in a session whose server
    /// connection may hold an SQL-level statement of that name (it has sent
    /// an SQL `PREPARE`): only a simple Query reaches it.
    pub fn deallocate_sql_level_extended(name: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!(
                "DEALLOCATE of \"{name}\", which is not a protocol-level prepared statement of this session, is not supported through the extended query protocol"
            ),
        )
        .with_hint("send DEALLOCATE of a statement made with SQL PREPARE as a simple query")
    }

    /// Bind or Describe of the unnamed statement when the client has none.
    pub fn unknown_unnamed_statement() -> Self {
        Self::new(
            SqlState::INVALID_SQL_STATEMENT_NAME,
            Source::Client,
            Severity::Error,
            "unnamed prepared statement does not exist",
        )
        .before_abort_check()
    }

    /// Bind named a portal with the prefix of the proxy's own names.
    pub fn reserved_portal_name(name: &str) -> Self {
        Self::new(
            SqlState::INVALID_CURSOR_NAME,
            Source::Client,
            Severity::Error,
            format!("portal name \"{name}\" is reserved by tenantgate"),
        )
        .with_hint("Portal names starting with \"_tg_\" are reserved.")
    }

    /// `LISTEN` on the channel the proxy's stand-in for `DEALLOCATE`
    /// unlistens.
    pub fn reserved_channel(name: &str) -> Self {
        Self::new(
            SqlState::RESERVED_NAME,
            Source::Client,
            Severity::Error,
            format!("channel name \"{name}\" is reserved by tenantgate"),
        )
    }

    /// SQL `EXECUTE` of a statement the client prepared with Parse, which
    /// servers hold under the proxy's names only.
    pub fn sql_execute_of_protocol_statement(name: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!(
                "EXECUTE of prepared statement \"{name}\", which was prepared through the extended query protocol, is not supported"
            ),
        )
        .with_hint("run it with Bind and Execute, or prepare it with SQL PREPARE")
    }

    /// Parse reused a statement name that is still defined.
    pub fn duplicate_prepared_statement(name: &str) -> Self {
        Self::new(
            SqlState::DUPLICATE_PREPARED_STATEMENT,
            Source::Client,
            Severity::Error,
            format!("prepared statement \"{name}\" already exists"),
        )
    }

    /// The admin console received something it does not understand.
    pub fn admin_syntax(what: impl Into<String>) -> Self {
        Self::new(
            SqlState::SYNTAX_ERROR,
            Source::Client,
            Severity::Error,
            what,
        )
    }

    /// A startup parameter or session setting the server refused; its own
    /// SQLSTATE and message are passed on (session ends, as in Postgres).
    pub fn setting_rejected(code: &str, message: &str) -> Self {
        let mut e = Self::new(
            SqlState::INVALID_PARAMETER_VALUE,
            Source::Server,
            Severity::Fatal,
            message.to_string(),
        );
        e.server_code = Some(code.into());
        e
    }

    /// The admin console database was asked for but is not served.
    pub fn admin_console_unavailable() -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Fatal,
            "the admin console is not enabled on this listener",
        )
    }

    /// An admin console command that does not exist.
    pub fn admin_unknown_command(command: &str) -> Self {
        Self::new(
            SqlState::SYNTAX_ERROR,
            Source::Client,
            Severity::Error,
            format!("unknown admin command: {command}"),
        )
        .with_hint("SHOW HELP lists the commands")
    }

    /// One admin Query with more commands than the console runs at once.
    pub fn admin_too_many_commands(count: usize, max: usize) -> Self {
        Self::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            Source::Client,
            Severity::Error,
            format!("{count} admin commands in one query; the console runs at most {max} at once"),
        )
    }

    /// The admin console speaks only the simple query protocol.
    pub fn admin_extended_protocol() -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            "the admin console supports only the simple query protocol",
        )
    }

    /// An admin command named a client, shard or tenant that does not exist.
    pub fn admin_no_such(what: &str, name: &str) -> Self {
        Self::new(
            SqlState::INVALID_PARAMETER_VALUE,
            Source::Client,
            Severity::Error,
            format!("no {what} \"{name}\""),
        )
    }

    /// `RELOAD` applied the file, except changed `keys` that only a restart
    /// applies (sent as a WARNING notice).
    pub fn reload_kept_keys(keys: &[&str]) -> Self {
        Self::new(
            SqlState::WARNING,
            Source::Client,
            Severity::Error,
            format!(
                "RELOAD applied; changed keys that need a restart keep their running values: {}",
                keys.join(", ")
            ),
        )
    }

    /// `RELOAD` refused: the file has errors (every one in the DETAIL).
    pub fn reload_failed(errors: &[String]) -> Self {
        Self::new(
            SqlState::INVALID_PARAMETER_VALUE,
            Source::Client,
            Severity::Error,
            format!(
                "RELOAD failed with {} error(s); the running configuration is kept",
                errors.len()
            ),
        )
        .with_detail(errors.join("\n"))
    }

    /// `RELOAD` without a config file to read.
    pub fn reload_unavailable() -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            "RELOAD is not available: tenantgate was started without a config file",
        )
    }

    /// `KILL CLIENT` closed this session.
    pub fn killed_by_admin() -> Self {
        Self::new(
            SqlState::ADMIN_SHUTDOWN,
            Source::Internal,
            Severity::Fatal,
            "terminating connection due to administrator command",
        )
    }

    // ---- isolation: refusals by the rewriter ---------------------------------

    /// The statement could not be parsed, so it cannot be proven safe.
    pub fn unparsable(detail: &str) -> Self {
        Self::new(
            SqlState::SYNTAX_ERROR,
            Source::Client,
            Severity::Error,
            format!("tenantgate cannot parse this statement: {detail}"),
        )
        .with_hint("tenantgate refuses statements it cannot analyse; rewrite the statement or run it outside tenant sessions")
    }

    /// A name that is not valid UTF-8 under a UTF8 client encoding;
    /// `bad` starts at the first invalid byte, and the message shows the
    /// bytes of that character as Postgres does (`0xe2 0x28 0xa1`).
    pub fn invalid_byte_sequence(bad: &[u8]) -> Self {
        let width = match bad.first().copied().unwrap_or(0) {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        let shown: Vec<String> = bad
            .iter()
            .take(width)
            .map(|b| format!("0x{b:02x}"))
            .collect();
        Self::new(
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            Source::Client,
            Severity::Error,
            format!(
                "invalid byte sequence for encoding \"UTF8\": {}",
                shown.join(" ")
            ),
        )
    }

    /// SQL text that is not valid UTF-8.
    pub fn invalid_utf8() -> Self {
        Self::new(
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            Source::Client,
            Severity::Error,
            "invalid byte sequence for encoding \"UTF8\"",
        )
    }

    /// A construct the rewriter does not handle.
    pub fn construct_unsupported(what: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!("tenantgate does not support {what} in tenant sessions"),
        )
    }

    /// A statement kind tenant sessions may not run (DDL, GRANT, …).
    pub fn statement_refused(kind: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("{kind} is not allowed in tenant sessions"),
        )
    }

    /// `RESET ALL` or `DISCARD ALL` (`what`) from a schema tenant where the
    /// reset search_path could reach statements after it: not the last
    /// statement of a simple Query, inside a transaction block, in the
    /// extended protocol, pinned or in session pooling.
    pub fn search_path_reset_refused(what: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!(
                "{what} is not allowed here in tenant sessions: it would reset the search_path that confines a schema tenant"
            ),
        )
        .with_hint(format!(
            "send {what} as a simple query of its own (or as the last statement of one), outside a transaction block"
        ))
    }

    /// With `rls`, a query string that needs the tenant variable set again
    /// part way (statements that read rows after a `COMMIT`, `ROLLBACK` or
    /// `RESET ALL` in it) but holds a `CREATE`, whose body may hold
    /// semicolons of its own: the proxy cannot tell where its statements
    /// start.
    pub fn variable_reset_refused() -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            "statements that read rows after COMMIT, ROLLBACK or RESET ALL in a query string that holds CREATE are not supported in tenant sessions",
        )
        .with_hint("send the CREATE as a query string of its own")
    }

    /// A client encoding whose characters can hide quote or backslash bytes.
    pub fn client_encoding_refused(name: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!(
                "client encoding \"{name}\" is not supported with tenant isolation \
                 (its characters can contain quote and backslash bytes); use UTF8"
            ),
        )
    }

    /// A relation the session may not read.
    pub fn relation_refused(name: &str, why: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("access to relation \"{name}\" is refused: {why}"),
        )
    }

    /// A relation in another tenant's schema (a schema-per-tenant tenant's).
    pub fn schema_refused(schema: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("access to schema \"{schema}\" is refused: it is another tenant's schema"),
        )
    }

    /// A relation that is not in the shard's catalog as tenantgate read it.
    pub fn relation_unknown(name: &str) -> Self {
        Self::new(
            SqlState::UNDEFINED_TABLE,
            Source::Client,
            Severity::Error,
            format!("relation \"{name}\" is not known to tenantgate"),
        )
        .with_hint("tenantgate reads a shard's catalog again when a statement names a relation it does not know (at most every 2 seconds), and on RELOAD or SIGHUP")
    }

    /// A function that reveals other tenants' data or escapes the rewriter.
    pub fn function_refused(name: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("function {name}() is not allowed in tenant sessions"),
        )
    }

    /// A user-defined function not allowed by the config.
    pub fn user_function_refused(name: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("user-defined function {name}() is not allowed in tenant sessions"),
        )
        .with_hint("list it in tenancy.allowed_functions if it is safe")
    }

    /// A row lock (`FOR UPDATE`, `FOR SHARE`, …) that reaches a global or
    /// other read-only relation.
    pub fn global_row_lock(name: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("tenant sessions may not lock rows of \"{name}\" (a table every tenant reads)"),
        )
        .with_hint(
            "name the tenant tables to lock in the lock clause: FOR UPDATE OF <table or alias>",
        )
    }

    /// A write to a global or other non-tenant relation.
    pub fn write_refused(name: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("tenant sessions may not write to \"{name}\""),
        )
    }

    /// UPDATE … SET tenant_col = … (or ON CONFLICT DO UPDATE of it) with a
    /// value that cannot be checked.
    pub fn tenant_column_change() -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            "changing the tenant column is not allowed",
        )
    }

    /// A Bind with another number of values than its statement takes (the
    /// proxy's tenant parameter not counted), as Postgres words it.
    pub fn bind_parameter_count(supplied: usize, required: usize) -> Self {
        Self::new(
            SqlState::PROTOCOL_VIOLATION,
            Source::Client,
            Severity::Error,
            format!(
                "bind message supplies {supplied} parameters, but prepared statement requires {required}"
            ),
        )
    }

    /// A value an INSERT or an UPDATE's SET writes into the tenant column
    /// that is not the session's tenant.
    pub fn tenant_value_mismatch() -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            "the tenant column value is not the session's tenant",
        )
    }

    /// An INSERT gives the tenant column something other than a literal or parameter.
    pub fn tenant_value_not_checkable() -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            "the tenant column of an INSERT must be omitted or given as a literal or parameter",
        )
        .with_hint("omit the tenant column: tenantgate fills it in")
    }

    /// A LIKE pattern that ends with an escape character. Postgres raises
    /// this only when matching reaches the end of the pattern, so for the
    /// values that start with its prefix: the planner does so against a
    /// column's statistics (all tenants' values), so it is refused for
    /// every value, before anything runs.
    pub fn like_pattern_dangling() -> Self {
        Self::new(
            SqlState::INVALID_ESCAPE_SEQUENCE,
            Source::Client,
            Severity::Error,
            "LIKE pattern must not end with escape character",
        )
        .with_hint("escape the escape character itself to match it (\\\\ for a backslash)")
    }

    /// INSERT into a tenant table without a column list.
    pub fn insert_needs_columns(name: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!("INSERT into tenant table \"{name}\" needs a column list"),
        )
    }

    /// COPY … FROM into a tenant table.
    pub fn copy_into_tenant_table(name: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!("COPY into tenant table \"{name}\" is not supported"),
        )
        .with_hint("use INSERT; tenantgate fills in the tenant column")
    }

    /// A statement whose parameters leave no number for the tenant's: the
    /// protocol counts parameters in 16 bits.
    pub fn too_many_parameters(max: usize) -> Self {
        Self::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            Source::Client,
            Severity::Error,
            format!(
                "a tenant session's statement may use parameters up to ${}: the tenant is bound as one more, and the protocol allows {max}",
                max - 1
            ),
        )
    }

    /// A statement longer than the rewriter accepts.
    pub fn statement_too_large(len: usize, max: usize) -> Self {
        Self::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            Source::Client,
            Severity::Error,
            format!(
                "statement of {len} bytes exceeds the limit of {max} bytes for tenant sessions"
            ),
        )
    }

    /// A statement nested deeper than the rewriter accepts.
    pub fn statement_too_deep(max: usize) -> Self {
        Self::new(
            SqlState::STATEMENT_TOO_COMPLEX,
            Source::Client,
            Severity::Error,
            format!(
                "statement is too complex: nesting deeper than {max} levels or too many operators"
            ),
        )
    }

    // ---- tenant context -------------------------------------------------------

    /// A tenant-scoped statement before any tenant was chosen.
    pub fn no_tenant(variable: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            "no tenant is chosen for this session",
        )
        .with_hint(format!(
            "SET {variable} = '<tenant>', or connect with options='-c {variable}=<tenant>'"
        ))
    }

    /// A tenant SET combined with other statements in one message.
    pub fn tenant_set_not_alone(variable: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!("SET {variable} must be sent as a statement of its own"),
        )
    }

    /// `RESET ALL` or `DISCARD ALL` (`what`) with statements after it in one
    /// query string (other than a transaction's end) while a tenant chosen
    /// with SET is in force: it gives the session its startup tenant back
    /// (or none), and the string is planned for one tenant.
    pub fn tenant_reset_not_alone(what: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!(
                "{what} followed by other statements in one query string is not supported while a tenant chosen with SET is in force: it changes the session's tenant"
            ),
        )
        .with_hint(format!("send {what} as the last statement of a query string"))
    }

    /// A tenant change while the session holds server-side state.
    pub fn tenant_change_while_pinned() -> Self {
        Self::new(
            SqlState::ACTIVE_SQL_TRANSACTION,
            Source::Client,
            Severity::Error,
            "cannot change the tenant while the session holds cursors, prepared statements or other state on its server connection",
        )
        .with_hint("run DISCARD ALL first")
    }

    /// A tenant change while earlier messages of a pipeline (or batch of
    /// queries sent without waiting) are unanswered on the server
    /// connection routed for the old tenant.
    pub fn tenant_change_in_pipeline() -> Self {
        Self::new(
            SqlState::ACTIVE_SQL_TRANSACTION,
            Source::Client,
            Severity::Error,
            "cannot change the tenant while earlier statements of the pipeline are unanswered",
        )
        .with_hint(
            "end the pipeline with Sync, and wait for its results, before changing the tenant",
        )
    }

    /// A statement after a prepared tenant SET in the same pipeline: it
    /// would run on the server connection routed for the old tenant.
    pub fn statement_after_tenant_change() -> Self {
        Self::new(
            SqlState::ACTIVE_SQL_TRANSACTION,
            Source::Client,
            Severity::Error,
            "cannot run statements after a tenant change in the same pipeline",
        )
        .with_hint("end the pipeline with Sync after the SET")
    }

    /// A prepared statement bound where it was not planned for (the tenant
    /// is served elsewhere now).
    pub fn statement_planned_elsewhere(name: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!(
                "prepared statement \"{name}\" was prepared while the tenant was served elsewhere"
            ),
        )
        .with_hint("prepare the statement again")
        // What Postgres names when a cached plan no longer fits
        // ("cached plan must not change result type"): asyncpg and pgjdbc
        // then drop their statement caches and, outside a transaction,
        // prepare the statement again and retry it.
        .with_routine("RevalidateCachedQuery")
    }

    /// Inside a transaction block, a change to a tenant whose home is
    /// another shard, schema or database than the transaction's connection.
    pub fn tenant_change_elsewhere_in_transaction() -> Self {
        Self::new(
            SqlState::ACTIVE_SQL_TRANSACTION,
            Source::Client,
            Severity::Error,
            "cannot change to a tenant served by another shard or schema inside a transaction block",
        )
        .with_hint("end the transaction first (COMMIT or ROLLBACK), then change the tenant")
    }

    /// A statement that reads or writes rows while the session's tenant
    /// changed (a `RESET ALL`, or a change settled by the end of a
    /// transaction) and the server connection it holds is routed for the
    /// old tenant's home: a chained transaction, a pin, unsynced messages.
    pub fn tenant_home_not_held() -> Self {
        Self::new(
            SqlState::ACTIVE_SQL_TRANSACTION,
            Source::Client,
            Severity::Error,
            "the session's tenant is served by another shard or schema than the server connection it holds",
        )
        .with_hint("end the transaction (and what keeps the connection, such as advisory locks or cursors), then run the statement again")
    }

    /// In session pooling, a change to a tenant whose home is another
    /// shard, schema or database than the connection the session keeps.
    pub fn tenant_change_needs_another_server() -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            "cannot change to a tenant served by another shard or schema in session pooling",
        )
        .with_hint("connect again for that tenant, or use pool_mode = \"transaction\"")
    }

    /// A startup parameter isolated sessions may not set.
    pub fn startup_parameter_refused(name: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Fatal,
            format!("startup parameter \"{name}\" is not allowed when tenant isolation is on"),
        )
    }

    /// A tenant-bound user tried to choose another tenant.
    pub fn tenant_bound(user: &str, tenant: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("user \"{user}\" is bound to tenant \"{tenant}\" and cannot choose another"),
        )
    }

    /// The tenant was changed inside a transaction.
    pub fn tenant_change_in_transaction() -> Self {
        Self::new(
            SqlState::ACTIVE_SQL_TRANSACTION,
            Source::Client,
            Severity::Error,
            "cannot change the tenant inside a transaction",
        )
    }

    /// A client left its transaction idle longer than
    /// `server.idle_transaction_timeout` (the session ends; the server
    /// rolls the transaction back).
    pub fn idle_transaction_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            Source::Client,
            Severity::Fatal,
            format!(
                "terminating connection due to idle-in-transaction timeout ({} ms)",
                limit.as_millis()
            ),
        )
    }

    /// A statement that would pin one more server connection for a tenant
    /// that holds its share of the pool pinned already.
    pub fn pin_quota_reached(tenant: &str, shard: &str, limit: usize) -> Self {
        Self::new(
            SqlState::TOO_MANY_CONNECTIONS,
            Source::Client,
            Severity::Error,
            format!(
                "tenant {tenant:?} already holds {limit} pinned server connections of shard {shard:?} (max_pinned_per_tenant)"
            ),
        )
        .with_detail("LISTEN, session advisory locks, temporary tables, WITH HOLD cursors, SQL PREPARE and set_config keep a server connection for the whole session")
        .with_hint("end such state in the tenant's other sessions (UNLISTEN *, pg_advisory_unlock_all(), DISCARD ALL) or raise max_pinned_per_tenant")
    }

    /// ROLLBACK TO SAVEPOINT in a transaction that set the tenant with
    /// `SET LOCAL`: the proxy cannot tell whether it undoes that SET.
    pub fn tenant_savepoint_rollback(variable: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!(
                "ROLLBACK TO SAVEPOINT is not supported after a change of {variable} that followed a savepoint"
            ),
        )
        .with_hint("roll back the whole transaction, or choose the tenant before setting savepoints")
    }

    /// Statements after a COMMIT or ROLLBACK in one query string while a
    /// `SET LOCAL` of the tenant is in force: the proxy plans a query string
    /// for one tenant, and the ones after the end run as another.
    pub fn statements_after_local_end(variable: &str) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            Source::Client,
            Severity::Error,
            format!(
                "statements after the end of a transaction that set {variable} must be sent in a query of their own"
            ),
        )
    }

    /// A tenant id that does not fit the tenant column's type.
    pub fn invalid_tenant_id(id: &str, why: &str) -> Self {
        Self::new(
            SqlState::INVALID_PARAMETER_VALUE,
            Source::Client,
            Severity::Error,
            format!("invalid tenant id \"{}\": {why}", id.escape_default()),
        )
    }

    /// set_config() of the tenant variable.
    pub fn tenant_set_config(variable: &str) -> Self {
        Self::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            Source::Client,
            Severity::Error,
            format!("set_config() of {variable} is not allowed; use SET"),
        )
    }

    /// The shard's catalog could not be read, so nothing can be proven safe.
    pub fn catalog_unavailable(shard: &str) -> Self {
        Self::new(
            SqlState::CANNOT_CONNECT,
            Source::Server,
            Severity::Error,
            format!("the catalog of shard \"{shard}\" is not available"),
        )
    }

    /// Something unexpected inside tenantgate; no internal detail leaks.
    pub fn internal() -> Self {
        Self::new(
            SqlState::INTERNAL_ERROR,
            Source::Internal,
            Severity::Fatal,
            "internal error in tenantgate",
        )
    }
}
