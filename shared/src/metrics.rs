//! CloudWatch metrics as Embedded Metric Format lines on stdout: no API call, no extra permission. Written
//! only inside Lambda (`AWS_LAMBDA_FUNCTION_NAME`), where CloudWatch reads them, or when `EMF_METRICS=stdout`;
//! elsewhere (tests, `make run`, benchmarks) they would be noise.

use serde_json::json;

pub const NAMESPACE: &str = "GenesysServiceNowIntegration";

/// Emits `name` = `value` (Count) with one `Provider`-style dimension.
pub fn count(name: &str, dimension: (&str, &str), value: u64) {
    if enabled() {
        println!("{}", emf_line(name, dimension, value, now_ms()));
    }
}

fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("EMF_METRICS").is_ok_and(|v| v == "stdout")
    })
}

use crate::clock::epoch_ms as now_ms;

/// Emits several metrics (`(name, value, unit)`, e.g. `("Latency", 12, "Milliseconds")`) under one dimension,
/// in one line.
pub fn values(dimension: (&str, &str), metrics: &[(&str, u64, &str)]) {
    if enabled() {
        println!("{}", emf_values_line(dimension, metrics, now_ms()));
    }
}

pub fn emf_values_line(
    dimension: (&str, &str),
    metrics: &[(&str, u64, &str)],
    timestamp_ms: u64,
) -> String {
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
        .collect();
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[dimension.0]],
                "Metrics": definitions
            }]
        }
    });
    line[dimension.0] = json!(dimension.1);
    for (name, value, _) in metrics {
        line[*name] = json!(value);
    }
    line.to_string()
}

pub fn emf_line(name: &str, dimension: (&str, &str), value: u64, timestamp_ms: u64) -> String {
    emf_values_line(dimension, &[(name, value, "Count")], timestamp_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_shape() {
        let v: serde_json::Value = serde_json::from_str(&emf_line(
            "TokenFallbackFetch",
            ("Provider", "genesys"),
            1,
            5,
        ))
        .unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "TokenFallbackFetch"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Provider"
        );
        assert_eq!(v["Provider"], "genesys");
        assert_eq!(v["TokenFallbackFetch"], 1);
        assert_eq!(v["_aws"]["Timestamp"], 5);
        let v: serde_json::Value = serde_json::from_str(&emf_values_line(
            ("Action", "createIncident"),
            &[("Calls", 1, "Count"), ("Latency", 12, "Milliseconds")],
            5,
        ))
        .unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"],
            "Milliseconds"
        );
        assert_eq!(
            (v["Calls"].as_u64(), v["Latency"].as_u64()),
            (Some(1), Some(12))
        );
    }
}
