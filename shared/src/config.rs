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

impl ConfigError {
    /// `name` is set, but not to something usable, because of `reason`.
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name,
            reason: reason.into(),
        }
    }
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

/// Where a function's settings come from: the process environment (Lambda), or given pairs (tests and the
/// local runner, which build configurations as values instead of changing the process environment).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// Read the process environment for what `given` does not hold.
    process: bool,
    given: std::collections::HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            process: true,
            given: Default::default(),
        }
    }

    /// Exactly these variables, nothing from the process environment.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self::default().with(pairs)
    }

    /// These variables over this environment (the local runner's resources over the user's settings).
    pub fn with<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.given
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The variable's raw value, even when empty.
    pub fn raw(&self, name: &str) -> Option<String> {
        self.given
            .get(name)
            .cloned()
            .or_else(|| self.process.then(|| std::env::var(name).ok()).flatten())
    }

    fn non_empty(&self, name: &str) -> Option<String> {
        self.raw(name).filter(|v| !v.trim().is_empty())
    }

    /// The variable's value, if set and not empty; else its legacy name's value (with a warning).
    pub fn optional(&self, setting: impl Into<Setting>) -> Option<String> {
        let setting = setting.into();
        self.non_empty(setting.name).or_else(|| {
            let legacy = setting.legacy?;
            let value = self.non_empty(legacy)?;
            warn_legacy(legacy, setting.name);
            Some(value)
        })
    }

    pub fn required(&self, setting: impl Into<Setting>) -> Result<String, ConfigError> {
        let setting = setting.into();
        self.optional(setting)
            .ok_or(ConfigError::Missing(setting.name))
    }

    /// Parses the variable, or returns `default` when unset.
    pub fn parse_or<T: FromStr>(
        &self,
        setting: impl Into<Setting>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let setting = setting.into();
        self.parse(setting).map(|v| v.unwrap_or(default))
    }

    /// Parses the variable when set.
    pub fn parse<T: FromStr>(&self, setting: impl Into<Setting>) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let setting = setting.into();
        let name = setting.name;
        self.optional(setting)
            .map(|v| {
                v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    pub fn bool_or(&self, setting: impl Into<Setting>, default: bool) -> Result<bool, ConfigError> {
        let setting = setting.into();
        let name = setting.name;
        match self
            .optional(setting)
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                name,
                reason: format!("expected true or false, got {v:?}"),
            }),
        }
    }

    /// A duration in milliseconds, at most [`MAX_DURATION`].
    pub fn millis_or(
        &self,
        setting: impl Into<Setting>,
        default_ms: u64,
    ) -> Result<Duration, ConfigError> {
        self.duration_or(setting, default_ms, 1, "milliseconds")
    }

    /// A duration in seconds, at most [`MAX_DURATION`].
    pub fn secs_or(
        &self,
        setting: impl Into<Setting>,
        default_s: u64,
    ) -> Result<Duration, ConfigError> {
        self.duration_or(setting, default_s, 1000, "seconds")
    }

    /// A duration in hours, at most [`MAX_DURATION`].
    pub fn hours_or(
        &self,
        setting: impl Into<Setting>,
        default_h: u64,
    ) -> Result<Duration, ConfigError> {
        self.duration_or(setting, default_h, 3_600_000, "hours")
    }

    /// A count of `unit_ms`-millisecond units, at most [`MAX_DURATION`] (too many to count is too long).
    fn duration_or(
        &self,
        setting: impl Into<Setting>,
        default: u64,
        unit_ms: u64,
        unit: &str,
    ) -> Result<Duration, ConfigError> {
        let setting = setting.into();
        let count: u64 = self.parse_or(setting, default)?;
        match count.checked_mul(unit_ms).map(Duration::from_millis) {
            Some(d) if d <= MAX_DURATION => Ok(d),
            _ => Err(ConfigError::Invalid {
                name: setting.name,
                reason: format!(
                    "at most {} {unit} (a year)",
                    MAX_DURATION.as_millis() / u128::from(unit_ms)
                ),
            }),
        }
    }

    /// Comma-separated list; empty entries are skipped.
    pub fn list_or(&self, setting: impl Into<Setting>, default: &[&str]) -> Vec<String> {
        match self.optional(setting) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// One of `choices` (case-insensitive), or the first when unset.
    pub fn choice(
        &self,
        setting: impl Into<Setting>,
        choices: &[&'static str],
    ) -> Result<&'static str, ConfigError> {
        let setting = setting.into();
        let Some(value) = self.optional(setting) else {
            return Ok(choices[0]);
        };
        let value = value.trim().to_ascii_lowercase();
        choices
            .iter()
            .find(|c| **c == value)
            .copied()
            .ok_or_else(|| ConfigError::Invalid {
                name: setting.name,
                reason: format!("expected {}, got {value:?}", choices.join(" or ")),
            })
    }
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

/// The longest duration a setting may give: every wait, timeout and lifetime the functions read is far
/// shorter, and a larger one (`18446744073709551615`) would overflow the clocks it is added to.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_settings_prefer_the_new_name_and_fall_back_to_the_old_one() {
        let setting = renamed("NEW_NAME", "OLD_NAME");
        assert_eq!(Env::from_pairs([("OTHER", "x")]).optional(setting), None);
        let old = Env::from_pairs([("OLD_NAME", "old")]);
        assert_eq!(old.optional(setting).as_deref(), Some("old"));
        let both = Env::from_pairs([("OLD_NAME", "old"), ("NEW_NAME", "new")]);
        assert_eq!(both.optional(setting).as_deref(), Some("new"));
        let bad = Env::from_pairs([("NEW_NAME", "x")]);
        let err = bad.parse_or::<u32>(setting, 1).unwrap_err();
        assert!(err.to_string().contains("NEW_NAME"), "{err}");
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let env = Env::from_pairs([
            ("A_BOOL", "maybe"),
            ("A_NUMBER", "ten"),
            ("A_CHOICE", "Sometimes"),
            ("EMPTY", "  "),
        ]);
        let named = |e: ConfigError, name: &str| assert!(e.to_string().contains(name), "{e}");
        named(env.bool_or("A_BOOL", true).unwrap_err(), "A_BOOL");
        named(env.millis_or("A_NUMBER", 1).unwrap_err(), "A_NUMBER");
        let huge = Env::from_pairs([
            ("WAIT_S", "18446744073709551615"),
            ("WAIT_MS", "31536000001"),
        ]);
        let err = huge.secs_or("WAIT_S", 1).unwrap_err().to_string();
        assert!(
            err.contains("WAIT_S") && err.contains("at most 31536000 seconds"),
            "{err}"
        );
        let err = huge.millis_or("WAIT_MS", 1).unwrap_err().to_string();
        assert!(err.contains("at most 31536000000 milliseconds"), "{err}");
        let hours = Env::from_pairs([("TTL_H", "18446744073709551615"), ("OK_H", "8760")]);
        let err = hours.hours_or("TTL_H", 1).unwrap_err().to_string();
        assert!(
            err.contains("TTL_H") && err.contains("at most 8760 hours"),
            "{err}"
        );
        assert_eq!(hours.hours_or("OK_H", 1).ok(), Some(MAX_DURATION));
        assert_eq!(
            hours.hours_or("UNSET_H", 2).ok(),
            Some(Duration::from_secs(7200))
        );
        let year = Env::from_pairs([("WAIT_S", "31536000")]);
        assert_eq!(year.secs_or("WAIT_S", 1).ok(), Some(MAX_DURATION));
        named(
            env.choice("A_CHOICE", &["always", "never"]).unwrap_err(),
            "always or never",
        );
        named(env.required("EMPTY").unwrap_err(), "EMPTY");
        let over = env.clone().with([("A_BOOL", "yes")]);
        assert_eq!(over.bool_or("A_BOOL", false).ok(), Some(true));
        assert_eq!(
            env.choice("UNSET", &["always", "never"]).ok(),
            Some("always")
        );
        assert_eq!(env.raw("EMPTY").as_deref(), Some("  "));
        assert_eq!(env.list_or("UNSET", &["a", "b"]), ["a", "b"]);
    }
}
