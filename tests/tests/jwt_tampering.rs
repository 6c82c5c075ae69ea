//! Property: any token whose header, payload or signature bytes are altered is rejected.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use legacy_ingest::auth::{self, Authenticator, JwtPolicy};
use local::dev_tokens::*;
use proptest::prelude::*;

fn authenticator() -> Authenticator {
    Authenticator::new(
        JwtPolicy {
            issuers: vec![DEV_ISSUER.into()],
            audiences: vec![DEV_AUDIENCE.into()],
            leeway: Duration::from_secs(60),
            max_age: Some(Duration::from_secs(900)),
            max_lifetime: Duration::from_secs(3600),
            algorithms: auth::parse_algorithms(&["ES256".into(), "RS256".into()]).unwrap(),
        },
        auth::keys_from_pem_set(KEY_SET_JSON, &[DEV_ISSUER.into()]).unwrap(),
        None,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn altered_tokens_are_rejected(rsa in any::<bool>(), part in 0usize..3, index in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let auth = authenticator();
        let alg = if rsa { Algorithm::RS256 } else { Algorithm::ES256 };
        let token = mint(alg, &standard_claims());
        prop_assert!(runtime.block_on(auth.verify(&token)).is_ok());

        let mut parts: Vec<Vec<u8>> = token.split('.').map(|p| p.as_bytes().to_vec()).collect();
        let segment = &mut parts[part];
        let i = index.index(segment.len());
        prop_assume!(segment[i] != replacement);
        segment[i] = replacement;
        let altered = String::from_utf8_lossy(&parts.join(&b'.')).into_owned();
        // Base64url has spare bits in a final character: skip alterations that decode to the same bytes.
        use base64::Engine;
        let decode = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok();
        let original: Vec<&str> = token.split('.').collect();
        prop_assume!(decode(&parts[part]).is_none() || decode(&parts[part]) != decode(original[part].as_bytes()));
        prop_assert!(runtime.block_on(auth.verify(&altered)).is_err(), "accepted: {}", altered);
    }
}
