//! Tenant ids are checked against the tenant column's SQL type before use,
//! so they can be spliced into SQL as literals safely.

use crate::error::ProxyError;

/// Checks `id` against every tenant column type of the shard.
pub fn validate_tenant_id<'a>(
    id: &str,
    types: impl IntoIterator<Item = &'a str>,
) -> Result<(), ProxyError> {
    if id.is_empty() {
        return Err(ProxyError::invalid_tenant_id(id, "it is empty"));
    }
    if id.len() > 256 {
        return Err(ProxyError::invalid_tenant_id(
            id,
            "it is longer than 256 bytes",
        ));
    }
    if id.chars().any(|c| c.is_control() || c == '\\') {
        return Err(ProxyError::invalid_tenant_id(
            id,
            "it contains a control character or a backslash",
        ));
    }
    for ty in types {
        let ok = match ty {
            "smallint" => id.parse::<i16>().is_ok(),
            "integer" => id.parse::<i32>().is_ok(),
            "bigint" => id.parse::<i64>().is_ok(),
            "uuid" => is_uuid(id),
            _ => true,
        };
        if !ok {
            return Err(ProxyError::invalid_tenant_id(
                id,
                &format!("it is not a valid {ty}"),
            ));
        }
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    let dashes_ok = s.len() == 32
        || (s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'));
    hex.len() == 32 && dashes_ok && hex.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        assert!(validate_tenant_id("acme", ["text"]).is_ok());
        assert!(validate_tenant_id("o'brien", ["text"]).is_ok());
        assert!(validate_tenant_id("a\\b", ["text"]).is_err());
        assert!(validate_tenant_id("", ["text"]).is_err());
        assert!(validate_tenant_id("a\0", ["text"]).is_err());
        assert!(validate_tenant_id("42", ["bigint", "integer"]).is_ok());
        assert!(validate_tenant_id("4x", ["bigint"]).is_err());
        assert!(validate_tenant_id("99999999999", ["integer"]).is_err());
        assert!(validate_tenant_id("123e4567-e89b-12d3-a456-426614174000", ["uuid"]).is_ok());
        assert!(validate_tenant_id("123e4567e89b12d3a456426614174000", ["uuid"]).is_ok());
        assert!(validate_tenant_id("123e4567-e89b-12d3-a456", ["uuid"]).is_err());
        assert!(validate_tenant_id("'; drop table x; --", ["uuid"]).is_err());
    }
}
