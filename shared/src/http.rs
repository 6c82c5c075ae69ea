//! One HTTP reply for every API Gateway function, and its single mapping to a Lambda response: status,
//! JSON body (`{"error", "message", …}` for errors, naming fields where there are some), `Retry-After`,
//! the authentication challenge and the correlation id.

use std::time::Duration;

use serde_json::{json, Value};

/// The HTTP answer, independent of the Lambda or local server types.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// `Retry-After` (whole seconds, at least 1) for 429 and 503 answers.
    pub retry_after: Option<Duration>,
    /// `WWW-Authenticate` scheme for 401 answers (e.g. `Bearer`).
    pub challenge: Option<&'static str>,
}

impl Reply {
    pub fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after: None,
            challenge: None,
        }
    }

    /// `{"error": code, "message": message}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::new(status, json!({"error": code, "message": message.into()}))
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn with_challenge(mut self, scheme: &'static str) -> Self {
        self.challenge = Some(scheme);
        self
    }

    /// Adds `name: value` to the JSON body.
    pub fn with(mut self, name: &str, value: Value) -> Self {
        if let Some(body) = self.body.as_object_mut() {
            body.insert(name.to_string(), value);
        }
        self
    }

    /// The API Gateway (Lambda) response; `correlation_id` is echoed as `X-Correlation-Id` when given.
    pub fn to_lambda(
        &self,
        correlation_id: Option<&str>,
    ) -> lambda_http::Response<lambda_http::Body> {
        let mut builder = lambda_http::Response::builder()
            .status(self.status)
            .header("content-type", "application/json");
        if let Some(id) = correlation_id {
            builder = builder.header("x-correlation-id", id);
        }
        if let Some(after) = self.retry_after {
            builder = builder.header("retry-after", after.as_secs().max(1).to_string());
        }
        if let (401, Some(scheme)) = (self.status, self.challenge) {
            builder = builder.header("www-authenticate", scheme);
        }
        builder
            .body(lambda_http::Body::Text(self.body.to_string()))
            .unwrap_or_else(|_| lambda_http::Response::new(lambda_http::Body::Empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_to_the_gateway_response() {
        let r = Reply::error(503, "unavailable", "retry later")
            .with_retry_after(Duration::from_millis(200))
            .with("field", json!("data"))
            .to_lambda(Some("c-1"));
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["x-correlation-id"], "c-1");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = serde_json::from_slice(r.body().as_ref()).unwrap();
        assert_eq!(
            body,
            json!({"error": "unavailable", "message": "retry later", "field": "data"})
        );
        let r = Reply::error(401, "unauthorized", "no")
            .with_challenge("Bearer")
            .to_lambda(None);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(r.headers().get("x-correlation-id").is_none());
        let r = Reply::new(202, json!({}))
            .with_challenge("Bearer")
            .to_lambda(None);
        assert!(r.headers().get("www-authenticate").is_none());
    }
}
