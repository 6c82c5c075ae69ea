//! JSON logs for CloudWatch. The level comes from `RUST_LOG` when set (a full filter, e.g.
//! `info,servicenow_writer=debug`), else from Lambda's `AWS_LAMBDA_LOG_LEVEL` (the function's
//! `ApplicationLogLevel`, the template's `LogLevel`), else `info`.

use tracing_subscriber::EnvFilter;

/// The crates of this project: `AWS_LAMBDA_LOG_LEVEL` applies to them.
const OWN_CRATES: &[&str] = &[
    "shared",
    "webhook_receiver",
    "servicenow_writer",
    "legacy_ingest",
    "token_refresher",
    "data_action",
    "callback_api",
    "callback_events",
    "callback_notifier",
    "callback_websocket",
];

/// The filter for the given settings. Dependencies stay at `info` or quieter when the level is `debug` or
/// `trace`: their debug output can hold request URLs, whose query strings may carry caller data.
pub fn directive(rust_log: Option<&str>, lambda_level: Option<&str>) -> String {
    if let Some(explicit) = rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        return explicit.to_string();
    }
    let level = match lambda_level
        .map(|l| l.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("trace") => "trace",
        Some("debug") => "debug",
        Some("warn") => "warn",
        Some("error") | Some("fatal") => "error",
        _ => "info",
    };
    let dependencies = if matches!(level, "trace" | "debug") {
        "info"
    } else {
        level
    };
    std::iter::once(dependencies.to_string())
        .chain(OWN_CRATES.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Installs the JSON subscriber once; later calls are no-ops. An invalid `RUST_LOG` logs a warning and
/// falls back to `info`.
pub fn init_json_logging() {
    let wanted = directive(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
    );
    let (filter, invalid) = match EnvFilter::try_new(&wanted) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(directive(None, None)), Some(e.to_string())),
    };
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .try_init()
        .is_ok();
    if let (true, Some(error)) = (installed, invalid) {
        tracing::warn!(setting = "RUST_LOG", %error, "invalid log filter; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lambda_log_level_applies_to_this_projects_crates() {
        let d = directive(None, Some("DEBUG"));
        assert!(d.starts_with("info,"), "{d}");
        for c in OWN_CRATES {
            assert!(d.contains(&format!("{c}=debug")), "{d}");
        }
        assert!(directive(None, Some("WARN")).starts_with("warn,shared=warn"));
        assert!(directive(None, Some("FATAL")).starts_with("error,"));
        assert_eq!(directive(None, None), directive(None, Some("INFO")));
        assert_eq!(directive(None, Some("LOUD")), directive(None, None));
        for level in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] {
            assert!(EnvFilter::try_new(directive(None, Some(level))).is_ok());
        }
    }

    #[test]
    fn every_function_crate_is_one_of_this_projects_crates() {
        let functions = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
        let names: Vec<String> = std::fs::read_dir(functions)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().replace('-', "_"))
            .collect();
        assert!(
            names.iter().any(|n| n == "servicenow_writer"),
            "functions/ was not listed: {names:?}"
        );
        for name in &names {
            assert!(
                OWN_CRATES.contains(&name.as_str()),
                "{name} is not in OWN_CRATES"
            );
        }
    }

    #[test]
    fn rust_log_overrides_everything() {
        assert_eq!(
            directive(Some("warn,shared=debug"), Some("DEBUG")),
            "warn,shared=debug"
        );
        assert_eq!(
            directive(Some("  "), Some("ERROR")),
            directive(None, Some("ERROR"))
        );
    }
}
