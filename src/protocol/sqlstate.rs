//! Typed SQLSTATE codes: every client-visible error carries one of these.

use std::fmt;

/// A five-character SQLSTATE error code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState(&'static str);

impl SqlState {
    /// The code as sent on the wire.
    pub const fn code(self) -> &'static str {
        self.0
    }

    /// The two-character class (e.g. `08` for connection exceptions).
    pub fn class(self) -> &'static str {
        &self.0[..2]
    }

    /// 08P01 protocol_violation.
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    /// 08006 connection_failure.
    pub const CONNECTION_FAILURE: SqlState = SqlState("08006");
    /// 08001 sqlclient_unable_to_establish_sqlconnection.
    pub const CANNOT_CONNECT: SqlState = SqlState("08001");
    /// 08004 sqlserver_rejected_establishment_of_sqlconnection.
    pub const CONNECTION_REJECTED: SqlState = SqlState("08004");
    /// 0A000 feature_not_supported.
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    /// 42939 reserved_name.
    pub const RESERVED_NAME: SqlState = SqlState("42939");
    /// 22023 invalid_parameter_value.
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    /// 25001 active_sql_transaction.
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25001");
    /// 26000 invalid_sql_statement_name.
    pub const INVALID_SQL_STATEMENT_NAME: SqlState = SqlState("26000");
    /// 34000 invalid_cursor_name.
    pub const INVALID_CURSOR_NAME: SqlState = SqlState("34000");
    /// 28000 invalid_authorization_specification.
    pub const INVALID_AUTHORIZATION: SqlState = SqlState("28000");
    /// 28P01 invalid_password.
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    /// 3D000 invalid_catalog_name (unknown database).
    pub const INVALID_CATALOG_NAME: SqlState = SqlState("3D000");
    /// 42501 insufficient_privilege.
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
    /// 42601 syntax_error.
    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    /// 25P03 idle_in_transaction_session_timeout.
    pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: SqlState = SqlState("25P03");
    /// 01000 warning.
    pub const WARNING: SqlState = SqlState("01000");
    /// 22025 invalid_escape_sequence.
    pub const INVALID_ESCAPE_SEQUENCE: SqlState = SqlState("22025");
    /// 22021 character_not_in_repertoire.
    pub const CHARACTER_NOT_IN_REPERTOIRE: SqlState = SqlState("22021");
    /// 42P01 undefined_table.
    pub const UNDEFINED_TABLE: SqlState = SqlState("42P01");
    /// 54001 statement_too_complex.
    pub const STATEMENT_TOO_COMPLEX: SqlState = SqlState("54001");
    /// 42P05 duplicate_prepared_statement.
    pub const DUPLICATE_PREPARED_STATEMENT: SqlState = SqlState("42P05");
    /// 53300 too_many_connections.
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    /// 54000 program_limit_exceeded.
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
    /// 57014 query_canceled (also used for timeouts).
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    /// 57P01 admin_shutdown.
    pub const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");
    /// 57P03 cannot_connect_now.
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState("57P03");
    /// 58000 system_error.
    pub const SYSTEM_ERROR: SqlState = SqlState("58000");
    /// XX000 internal_error.
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.0)
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_is_first_two_chars() {
        assert_eq!(SqlState::PROTOCOL_VIOLATION.class(), "08");
        assert_eq!(SqlState::INVALID_PASSWORD.code(), "28P01");
    }
}
