//! Access tokens kept in Secrets Manager by the token-refresher, read by every function.
//!
//! A token secret holds `{"access_token", "token_type", "expires_at", "scope", "obtained_at"}` (times RFC 3339).
//! [`TokenSource`] reads it once and caches the token until `expires_at` minus a margin; concurrent callers
//! share one read or fetch. When no fresh token is stored (refresher late or broken), or the API answers 401
//! with the stored one, it fetches a token directly with the client credentials, stores it for the others, and
//! counts the fallback (`TokenFallbackFetch` metric), so an outage of the refresher means slower calls, not
//! failures. A 401 forces at most one refresh per interval ([`DEFAULT_FORCED_REFRESH_INTERVAL`]); client
//! credentials refused by the token endpoint are re-read from their secret ([`Rotating`]).

mod env;
mod rotating;
mod source;
mod stored;

pub use env::{OAuthClientSettings, Provider, TokenSourceSettings, FORCED_REFRESH_INTERVAL_VAR};
pub use rotating::{ParseSecret, Rotating};
pub use source::{TokenError, TokenSource, DEFAULT_FORCED_REFRESH_INTERVAL};
pub use stored::{RefreshPolicy, StoredToken, TokenStore};
