//! HMAC-SHA256 webhook signatures, verified in constant time.
//!
//! The documented Genesys form is `X-Hub-Signature-256: sha256=<base64(HMAC-SHA256(secret, raw body))>`;
//! header name, encoding and prefix are configuration.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    Base64,
    Hex,
}

impl std::str::FromStr for SignatureEncoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "base64" => Ok(Self::Base64),
            "hex" => Ok(Self::Hex),
            other => Err(format!(
                "unknown signature encoding {other:?} (base64 or hex)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureScheme {
    /// Header carrying the signature (compared case-insensitively by HTTP libraries).
    pub header: String,
    pub encoding: SignatureEncoding,
    /// Text before the digest, e.g. `sha256=`. Optional on input when empty.
    pub prefix: String,
}

impl Default for SignatureScheme {
    fn default() -> Self {
        Self {
            header: "X-Hub-Signature-256".to_string(),
            encoding: SignatureEncoding::Base64,
            prefix: "sha256=".to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature header is missing")]
    Missing,
    #[error("signature header is malformed")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureScheme {
    /// Signs `body` the way a sender following this scheme would.
    pub fn sign(&self, secret: &[u8], body: &[u8]) -> String {
        let digest = mac(secret, body).finalize().into_bytes();
        let encoded = match self.encoding {
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
            SignatureEncoding::Hex => hex::encode(digest),
        };
        format!("{}{}", self.prefix, encoded)
    }

    /// Verifies `header_value` against the HMAC of `body`; the comparison is constant time.
    pub fn verify(
        &self,
        secret: &[u8],
        body: &[u8],
        header_value: Option<&str>,
    ) -> Result<(), SignatureError> {
        let value = header_value.map(str::trim).filter(|v| !v.is_empty());
        let value = value.ok_or(SignatureError::Missing)?;
        let encoded = if self.prefix.is_empty() {
            value
        } else {
            strip_prefix_ignore_case(value, &self.prefix).ok_or(SignatureError::Malformed)?
        };
        let provided = match self.encoding {
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| SignatureError::Malformed)?,
            SignatureEncoding::Hex => {
                hex::decode(encoded).map_err(|_| SignatureError::Malformed)?
            }
        };
        // `verify_slice` compares in constant time (subtle::ConstantTimeEq).
        mac(secret, body)
            .verify_slice(&provided)
            .map_err(|_| SignatureError::Mismatch)
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";

    #[test]
    fn matches_the_published_github_style_vector() {
        // Known HMAC-SHA256 vector (GitHub's webhook docs), hex form.
        let scheme = SignatureScheme {
            encoding: SignatureEncoding::Hex,
            ..SignatureScheme::default()
        };
        assert_eq!(
            scheme.sign(SECRET, BODY),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            scheme.verify(
                SECRET,
                BODY,
                Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
            ),
            Ok(())
        );
    }

    #[test]
    fn base64_round_trip_and_rejections() {
        let scheme = SignatureScheme::default();
        let sig = scheme.sign(SECRET, BODY);
        assert!(sig.starts_with("sha256="));
        assert_eq!(scheme.verify(SECRET, BODY, Some(&sig)), Ok(()));
        assert_eq!(
            scheme.verify(SECRET, b"Hello, World?", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            scheme.verify(b"other secret", BODY, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            scheme.verify(SECRET, BODY, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            scheme.verify(SECRET, BODY, Some("  ")),
            Err(SignatureError::Missing)
        );
        let no_prefix = sig.trim_start_matches("sha256=");
        assert_eq!(
            scheme.verify(SECRET, BODY, Some(no_prefix)),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            scheme.verify(SECRET, BODY, Some("sha256=%%%not-base64")),
            Err(SignatureError::Malformed)
        );
        // A truncated digest must not verify.
        let truncated = &sig[..sig.len() - 8];
        assert!(scheme.verify(SECRET, BODY, Some(truncated)).is_err());
    }

    #[test]
    fn prefix_is_case_insensitive_and_optional_when_configured_empty() {
        let scheme = SignatureScheme::default();
        let sig = scheme.sign(SECRET, BODY).replace("sha256=", "SHA256=");
        assert_eq!(scheme.verify(SECRET, BODY, Some(&sig)), Ok(()));

        let bare = SignatureScheme {
            prefix: String::new(),
            encoding: SignatureEncoding::Hex,
            ..SignatureScheme::default()
        };
        let sig = bare.sign(SECRET, BODY);
        assert_eq!(sig.len(), 64);
        assert_eq!(bare.verify(SECRET, BODY, Some(&sig)), Ok(()));
    }
}
