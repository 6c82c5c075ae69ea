//! The one way every function builds its outbound HTTP client: rustls (reqwest's only TLS stack here),
//! connect and request timeouts, a pool that drops idle connections after a minute, and a user agent
//! naming the project and the function.
//!
//! Plain `http` is allowed only to loopback hosts (local runs and tests): configured URLs are checked with
//! [`check_url`], and an API client follows a redirect only to an allowed URL. Token clients
//! ([`token_client`]) never follow redirects (a 307 would resend the client secret elsewhere) and read at
//! most [`TOKEN_RESPONSE_MAX_BYTES`] ([`read_limited`]). Errors are described with [`describe`], never with
//! reqwest's `Display` (it names the URL, and a query can hold a caller's phone number).

use std::time::Duration;

use crate::config::ConfigError;

/// Connect and whole-request timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Timeouts {
    pub const fn new(connect: Duration, request: Duration) -> Self {
        Self { connect, request }
    }
}

/// Token endpoints (Genesys and ServiceNow OAuth).
pub const TOKEN_ENDPOINT: Timeouts = Timeouts::new(Duration::from_secs(3), Duration::from_secs(10));

/// The most a token response may hold.
pub const TOKEN_RESPONSE_MAX_BYTES: usize = 64 * 1024;

const MAX_REDIRECTS: usize = 3;

fn builder(function: &str, timeouts: Timeouts) -> reqwest::ClientBuilder {
    let roots = crate::tls::native_roots();
    let tls = reqwest::Client::builder();
    // The process's one reading of the platform roots; with none, reqwest's own loading reports it.
    let tls = if roots.is_empty() {
        tls
    } else {
        tls.tls_certs_only(
            roots
                .iter()
                .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
        )
    };
    tls.connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(format!(
            "genesys-servicenow-bridge/{} ({function})",
            env!("CARGO_PKG_VERSION")
        ))
}

/// A client for `function` (e.g. `servicenow-writer`): at most 3 redirects, each to an allowed URL
/// (https, or http to loopback); reqwest drops credentials on a redirect to another host.
pub fn client(function: &str, timeouts: Timeouts) -> Result<reqwest::Client, reqwest::Error> {
    builder(function, timeouts)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if allowed_url(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("redirect to plain http refused")
            }
        }))
        .build()
}

/// A client for OAuth token endpoints: no redirects at all (a 3xx is answered as an error status).
pub fn token_client(function: &str) -> Result<reqwest::Client, reqwest::Error> {
    no_redirects_client(function, TOKEN_ENDPOINT)
}

/// A client that follows no redirects (e.g. for a JWKS: a key set is fetched from where it was configured).
pub fn no_redirects_client(
    function: &str,
    timeouts: Timeouts,
) -> Result<reqwest::Client, reqwest::Error> {
    builder(function, timeouts)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

fn loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// https anywhere, plain http only to a loopback host.
pub fn allowed_url(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => loopback(url),
        _ => false,
    }
}

/// Checks the URL setting `name`: a valid https URL, or http to a loopback host (local runs, tests).
pub fn check_url(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        reason: reason.into(),
    };
    let url = reqwest::Url::parse(value).map_err(|_| invalid("not a URL"))?;
    if allowed_url(&url) {
        Ok(())
    } else {
        Err(invalid(
            "must be https (plain http only to localhost / 127.0.0.1)",
        ))
    }
}

/// What went wrong with a request, without its URL (which can hold a caller's phone number in
/// `sysparm_query`): the kind of failure and its causes, any URL or long digit run in them masked.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_decode() {
        "the answer could not be decoded"
    } else if e.is_body() {
        "the answer was cut off or unreadable"
    } else if e.is_builder() {
        "the request could not be built"
    } else if e.is_request() {
        "the request failed"
    } else {
        "HTTP error"
    };
    let mut out = kind.to_string();
    if e.is_decode() {
        // A decoder's message can quote the body.
        return out;
    }
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = source {
        if depth >= 4 {
            break;
        }
        out.push_str(": ");
        out.push_str(&scrub(&s.to_string()));
        source = s.source();
        depth += 1;
    }
    out
}

/// Masks every word holding a URL or six digits or more.
fn scrub(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains("://") || w.contains("sysparm") {
                "<url>"
            } else if w.chars().filter(char::is_ascii_digit).count() >= 6 {
                "<digits>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Read(String),
}

/// The body, at most `max` bytes: refused early by `Content-Length`, else cut off while reading.
pub async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Read(describe(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://example.service-now.com",
            "http://127.0.0.1:8080/x",
            "http://localhost:3000",
            "http://[::1]:9/",
        ] {
            assert!(check_url("U", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.service-now.com",
            "http://10.0.0.1",
            "ftp://x",
            "not a url",
        ] {
            let err = check_url("SERVICENOW_INSTANCE_URL", bad).unwrap_err();
            assert!(
                err.to_string().contains("SERVICENOW_INSTANCE_URL"),
                "{bad}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn errors_are_described_without_their_url() {
        // Nothing listens on port 9 of loopback: a connect error whose Display names the full URL.
        let url = "http://127.0.0.1:9/api/now/table/sys_user?sysparm_query=phone=+14155550123";
        let e = reqwest::Client::new().get(url).send().await.unwrap_err();
        assert!(
            e.to_string().contains("4155550123"),
            "reqwest's own text names the URL"
        );
        let shown = describe(&e);
        assert!(shown.starts_with("connection failed"), "{shown}");
        for leak in ["4155550123", "sysparm", "http://", "/api/now"] {
            assert!(!shown.contains(leak), "{shown}");
        }
        assert_eq!(
            scrub("see http://x/y?q=1 and +1 415 5550123 or 4155550123"),
            "see <url> and +1 415 <digits> or <digits>"
        );
    }
}
