//! What tenant sessions may not touch: relations and functions that reveal
//! other tenants' data or escape the rewriter (statistics and activity views,
//! functions that run SQL text or reach files and other sessions).

/// System relations refused to tenant sessions (all in `pg_catalog`).
/// Prefix entries end with `*`.
const DENIED_RELATIONS: &[&str] = &[
    "pg_stat*",
    "pg_statio*",
    "pg_statistic*",
    "pg_stats*",
    "pg_locks",
    "pg_prepared_xacts",
    "pg_prepared_statements",
    "pg_cursors",
    "pg_authid",
    "pg_shadow",
    "pg_user_mapping*",
    "pg_largeobject*",
    "pg_replication*",
    "pg_subscription*",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_file_settings",
    "pg_settings",
    "pg_db_role_setting",
    "pg_backend_memory_contexts",
    "pg_shmem_allocations",
    // Every sequence's last value (shared sequences: other tenants' ids
    // and volumes; a schema tenant's own: its newest id).
    "pg_sequences",
];

/// Relations the prefixes above would refuse that hold only definitions:
/// `pg_statistic_ext` names extended statistics objects and their columns
/// (psql's `\d` lists them); their values are in `pg_statistic_ext_data`.
const ALLOWED_RELATIONS: &[&str] = &["pg_statistic_ext"];

/// Functions refused to tenant sessions (unqualified, folded names).
const DENIED_FUNCTIONS: &[&str] = &[
    // Run SQL text: the text would escape the rewriter.
    "query_to_xml*",
    "query_to_xmlschema",
    "table_to_xml*",
    "table_to_xmlschema",
    "cursor_to_xml*",
    "schema_to_xml*",
    "database_to_xml*",
    "ts_stat",
    "ts_rewrite",
    "crosstab*",
    "dblink*",
    // Files, large objects, other sessions, server control.
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_*",
    "pg_stat_file",
    "lo_*",
    "loread",
    "lowrite",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_logical_emit_message",
    "pg_notify",
    "set_config",
    "pg_stat_*",
    "pg_blocking_pids",
    "pg_prepared_statement",
    "pg_prepared_xact",
    "pg_get_replication_slots",
    "pg_get_shmem_allocations",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_config",
    "pg_cursor",
    "pg_lock_status",
    "pg_show_all_settings",
    "pg_show_all_file_settings",
    "pg_get_backend_memory_contexts",
    "pg_current_logfile",
    "pg_logical_*",
    "pg_replication_*",
    "pg_create_*_replication_slot",
    "pg_drop_replication_slot",
    "pg_file_write",
    "pg_safe_snapshot_blocking_pids",
    "pg_backend_pid",
    "pg_export_snapshot",
    "pg_import_system_collations",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_*",
    "pg_log_backend_memory_contexts",
    // LIKE as functions: the planner estimates them as the operators, by
    // running the pattern against the column's statistics (all tenants'
    // values), and the pattern checks read the operators only.
    "like",
    "notlike",
    "ilike",
    "notilike",
    "textlike",
    "textnlike",
    "texticlike",
    "texticnlike",
    "bpcharlike",
    "bpcharnlike",
    "bpchariclike",
    "bpcharicnlike",
    "namelike",
    "namenlike",
    "nameiclike",
    "nameicnlike",
    "bytealike",
    "byteanlike",
    // Sequences are shared by every tenant of a shard: setting one moves
    // every tenant's next id (a collision for their inserts).
    "setval",
    // The random generator is the server connection's, which the next
    // client gets: a seed set by one tenant makes another's random() known.
    "setseed",
    // Sizes of shared relations reveal other tenants' volumes.
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_tablespace_size",
    // The last value drawn from a shared sequence (by any tenant).
    "pg_sequence_last_value",
    // Other sessions' transactions: whether one committed, and which run.
    "txid_status",
    "pg_xact_status",
    "pg_xact_commit_timestamp",
    "pg_xact_commit_timestamp_origin",
    "pg_last_committed_xact",
    "txid_current_snapshot",
    "pg_current_snapshot",
    "txid_snapshot_xip",
    "pg_snapshot_xip",
    // The shard's transaction counter and WAL position: one tenant can count
    // and time another's writes by reading them before and after.
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_current_wal_*",
    "pg_last_wal_*",
    "pg_control_*",
    "mxid_age",
];

/// Settings a tenant session may change through `set_config(…)` as well as
/// with SET: they shape only its own statements (time limits, memory,
/// planning, output format), and the session reads their values back
/// before its server connection goes to anyone else.
const SET_CONFIG_ALLOWED: &[&str] = &[
    "jit",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "work_mem",
    "application_name",
    "extra_float_digits",
    "bytea_output",
    "timezone",
    "datestyle",
    "intervalstyle",
];

/// Whether a tenant session may call `set_config` on `name` (lower case).
pub fn set_config_allowed(name: &str) -> bool {
    SET_CONFIG_ALLOWED.contains(&name)
}

fn matches(list: &[&str], name: &str) -> bool {
    list.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => *p == name,
    })
}

/// Whether a `pg_catalog` relation is refused.
pub fn relation_denied(name: &str) -> bool {
    matches(DENIED_RELATIONS, name) && !ALLOWED_RELATIONS.contains(&name)
}

/// Whether a function is refused whatever the config says.
pub fn function_denied(name: &str) -> bool {
    matches(DENIED_FUNCTIONS, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert!(relation_denied("pg_stats"));
        assert!(relation_denied("pg_stat_activity"));
        assert!(relation_denied("pg_statistic"));
        assert!(relation_denied("pg_statistic_ext_data"));
        assert!(relation_denied("pg_stats_ext"));
        assert!(!relation_denied("pg_statistic_ext"));
        assert!(!relation_denied("pg_policy"));
        assert!(!relation_denied("pg_class"));
        assert!(!relation_denied("pg_type"));
        assert!(function_denied("query_to_xml"));
        assert!(function_denied("query_to_xml_and_xmlschema"));
        assert!(function_denied("dblink_exec"));
        assert!(function_denied("lo_import"));
        assert!(function_denied("setseed"));
        assert!(function_denied("txid_status"));
        assert!(function_denied("pg_tablespace_size"));
        assert!(function_denied("txid_current"));
        assert!(function_denied("pg_current_xact_id"));
        assert!(function_denied("pg_current_wal_lsn"));
        assert!(function_denied("pg_control_checkpoint"));
        assert!(function_denied("textlike"));
        assert!(!function_denied("like_escape"));
        assert!(!function_denied("lower"));
        assert!(!function_denied("now"));
    }
}
