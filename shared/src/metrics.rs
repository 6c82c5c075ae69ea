//! CloudWatch metrics as Embedded Metric Format lines on stdout: no API call, no extra permission.

use serde_json::json;

pub const NAMESPACE: &str = "GenesysServiceNowIntegration";

/// Emits `name` = `value` (Count) with one `Provider`-style dimension.
pub fn count(name: &str, dimension: (&str, &str), value: u64) {
    println!("{}", emf_line(name, dimension, value, now_ms()));
}

use crate::clock::epoch_ms as now_ms;

pub fn emf_line(name: &str, dimension: (&str, &str), value: u64, timestamp_ms: u64) -> String {
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[dimension.0]],
                "Metrics": [{"Name": name, "Unit": "Count"}]
            }]
        }
    });
    line[dimension.0] = json!(dimension.1);
    line[name] = json!(value);
    line.to_string()
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
    }
}
