//! The one way every function builds its outbound HTTP client: rustls (reqwest's only TLS stack here),
//! connect and request timeouts, a pool that drops idle connections after a minute, and a user agent
//! naming the project and the function.

use std::time::Duration;

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

/// A client for `function` (e.g. `servicenow-writer`).
pub fn client(function: &str, timeouts: Timeouts) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(format!(
            "genesys-servicenow-bridge/{} ({function})",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}
