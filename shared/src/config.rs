//! Small helpers to read configuration from environment variables with typed errors.

use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A setting's environment variable, and the name it had before it was renamed (read for one more release,
/// with a warning, when the new name is not set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub legacy: Option<&'static str>,
}

impl From<&'static str> for Setting {
    fn from(name: &'static str) -> Self {
        Setting { name, legacy: None }
    }
}

/// `name`, formerly `legacy`.
pub const fn renamed(name: &'static str, legacy: &'static str) -> Setting {
    Setting {
        name,
        legacy: Some(legacy),
    }
}

fn non_empty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The variable's value, if set and not empty; else its legacy name's value (with a warning).
pub fn optional(setting: impl Into<Setting>) -> Option<String> {
    let setting = setting.into();
    non_empty(setting.name).or_else(|| {
        let legacy = setting.legacy?;
        let value = non_empty(legacy)?;
        warn_legacy(legacy, setting.name);
        Some(value)
    })
}

fn warn_legacy(legacy: &'static str, name: &'static str) {
    static WARNED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned.contains(&legacy) {
        warned.push(legacy);
        tracing::warn!(
            setting = name,
            legacy,
            "deprecated setting name: rename {legacy} to {name} (the old name stops working in the next release)"
        );
    }
}

pub fn required(setting: impl Into<Setting>) -> Result<String, ConfigError> {
    let setting = setting.into();
    optional(setting).ok_or(ConfigError::Missing(setting.name))
}

/// Parses the variable, or returns `default` when unset.
pub fn parse_or<T: FromStr>(setting: impl Into<Setting>, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let setting = setting.into();
    let name = setting.name;
    match optional(setting) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

pub fn bool_or(setting: impl Into<Setting>, default: bool) -> Result<bool, ConfigError> {
    let setting = setting.into();
    let name = setting.name;
    match optional(setting).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::Invalid {
            name,
            reason: format!("expected true or false, got {v:?}"),
        }),
    }
}

pub fn millis_or(setting: impl Into<Setting>, default_ms: u64) -> Result<Duration, ConfigError> {
    parse_or(setting, default_ms).map(Duration::from_millis)
}

/// Comma-separated list; empty entries are skipped.
pub fn list_or(setting: impl Into<Setting>, default: &[&str]) -> Vec<String> {
    match optional(setting) {
        None => default.iter().map(|s| s.to_string()).collect(),
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_settings_prefer_the_new_name_and_fall_back_to_the_old_one() {
        // Names used by this test only, so parallel tests cannot interfere.
        let setting = renamed("CFG_TEST_NEW_NAME", "CFG_TEST_OLD_NAME");
        assert_eq!(optional(setting), None);
        std::env::set_var("CFG_TEST_OLD_NAME", "old");
        assert_eq!(optional(setting).as_deref(), Some("old"));
        std::env::set_var("CFG_TEST_NEW_NAME", "new");
        assert_eq!(optional(setting).as_deref(), Some("new"));
        std::env::set_var("CFG_TEST_NEW_NAME", "x");
        let err = parse_or::<u32>(setting, 1).unwrap_err();
        assert!(err.to_string().contains("CFG_TEST_NEW_NAME"), "{err}");
    }
}
