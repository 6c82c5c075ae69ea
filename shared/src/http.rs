//! One HTTP reply for every API Gateway function, and its single mapping to a Lambda response: status,
//! JSON body (`{"error", "message", …}` for errors, naming fields where there are some), `Retry-After`,
//! the authentication challenge and the correlation id; and [`run`], `lambda_http::run` that cannot panic on
//! a query string.

use std::borrow::Cow;
use std::task::{Context, Poll};
use std::time::Duration;

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, IntoResponse, LambdaEvent, Request, Service};

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

/// `lambda_http::run`, with API Gateway's raw query string made safe for `http::Uri` first. `lambda_http` builds
/// the request's URI from `rawQueryString` and panics ("failed to build request") on a byte the URI parser
/// refuses — a raw `"`, `<`, `>`, space or non-ASCII byte (aws-lambda-rust-runtime#515) — so such a request
/// would be answered 502 before the handler could answer it.
pub async fn run<'a, R, S, E>(handler: S) -> Result<(), lambda_http::Error>
where
    S: Service<Request, Response = R, Error = E>,
    S::Future: Send + 'a,
    R: IntoResponse,
    E: std::fmt::Debug + Into<lambda_http::lambda_runtime::Diagnostic>,
{
    lambda_http::lambda_runtime::run(SafeQuery(Adapter::from(handler))).await
}

/// Percent-encodes, in each API Gateway event, the raw query string's bytes `http::Uri` would refuse.
pub struct SafeQuery<S>(pub S);

impl<S> Service<LambdaEvent<LambdaRequest>> for SafeQuery<S>
where
    S: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut event: LambdaEvent<LambdaRequest>) -> Self::Future {
        if let LambdaRequest::ApiGatewayV2(request) = &mut event.payload {
            if let Some(query) = request.raw_query_string.as_mut() {
                if let Cow::Owned(safe) = uri_safe_query(query) {
                    *query = safe;
                }
            }
        }
        self.0.call(event)
    }
}

/// `raw` with every byte outside RFC 3986's query characters (unreserved, sub-delims, `:`, `@`, `/`, `?`) and
/// `%` percent-encoded: a little more than `http::Uri` needs (it also takes `[`, `]`, `{`, `|`, …), and a
/// decoder reads the same parameters from both, a byte it would have read as itself now being its escape.
pub fn uri_safe_query(raw: &str) -> Cow<'_, str> {
    crate::percent::encode(raw, |b| {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::{service_fn, Body};
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_safe_query_is_a_valid_uri_and_decodes_to_the_same_parameters() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        samples.extend(
            [
                "event=ivr:escalation",
                "q=\"x\" <y> {z} |w| ^`\\",
                "caf\u{e9}=\u{1f600}",
                "%zz=%&a=%22",
            ]
            .map(String::from),
        );
        // What the receiver reads from a query (`%XX` escapes, `+` as a space).
        let decode = crate::percent::decode;
        for raw in &samples {
            let safe = uri_safe_query(raw);
            assert!(
                lambda_http::http::Uri::try_from(format!("/p?{safe}")).is_ok(),
                "{raw:?} → {safe:?}"
            );
            assert_eq!(decode(&safe), decode(raw), "{raw:?}");
        }
        for kept in ["event=ivr%3Aescalation&x=1", "a=%22x%22&b=1", "%zz=%"] {
            assert!(matches!(uri_safe_query(kept), Cow::Borrowed(_)), "{kept}");
        }
    }

    fn http_api_event(raw_query: &str) -> LambdaEvent<LambdaRequest> {
        let event = json!({
            "version": "2.0",
            "routeKey": "POST /webhooks/genesys",
            "rawPath": "/webhooks/genesys",
            "rawQueryString": raw_query,
            "headers": {"content-type": "application/json"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "api.example",
                "domainPrefix": "api", "requestId": "r-1", "routeKey": "POST /webhooks/genesys",
                "stage": "$default", "time": "03/Dec/2026:10:00:00 +0000", "timeEpoch": 1796292000000_u64,
                "http": {"method": "POST", "path": "/webhooks/genesys", "protocol": "HTTP/1.1",
                         "sourceIp": "192.0.2.1", "userAgent": "test"}
            },
            "body": "{}",
            "isBase64Encoded": false
        });
        LambdaEvent::new(
            serde_json::from_value(event).expect("an HTTP API event"),
            lambda_http::Context::default(),
        )
    }

    #[tokio::test]
    async fn a_query_the_uri_parser_refuses_reaches_the_handler_encoded() {
        let raw = "event=ivr:escalation&note=\"a b\"<c>";
        let seen = Arc::new(Mutex::new(None::<String>));
        let handler = |seen: Arc<Mutex<Option<String>>>| {
            service_fn(move |req: Request| {
                let seen = seen.clone();
                async move {
                    *seen.lock().unwrap() = req.uri().query().map(str::to_string);
                    Ok::<_, std::convert::Infallible>(lambda_http::Response::new(Body::Empty))
                }
            })
        };
        // lambda_http alone panics building the request (aws-lambda-rust-runtime#515); when this assertion
        // fails after an upgrade, `run` can go back to `lambda_http::run`.
        let mut bare = Adapter::from(handler(seen.clone()));
        let event = http_api_event(raw);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(bare.call(event));
        }));
        assert!(
            unwound.is_err(),
            "lambda_http no longer panics on a raw query"
        );
        let mut safe = SafeQuery(Adapter::from(handler(seen.clone())));
        safe.call(http_api_event(raw)).await.expect("answered");
        assert_eq!(
            seen.lock().unwrap().as_deref(),
            Some("event=ivr:escalation&note=%22a%20b%22%3Cc%3E")
        );
        // A query of RFC 3986 query characters (and `%` escapes) is passed on unchanged.
        safe.call(http_api_event("event=ivr%3Aescalation"))
            .await
            .expect("answered");
        assert_eq!(
            seen.lock().unwrap().as_deref(),
            Some("event=ivr%3Aescalation")
        );
    }

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
