//! Properties: any token whose header, payload or signature bytes are altered is rejected; a token is
//! accepted only when its signing key is bound to both its `iss` and its `sub`.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use legacy_ingest::auth::{self, Authenticator, JwtPolicy};
use local::dev_tokens::*;
use proptest::prelude::*;

fn authenticator() -> Authenticator {
    authenticator_for(&[DEV_ISSUER])
}

fn authenticator_for(issuers: &[&str]) -> Authenticator {
    with_policy(issuers, |_| {})
}

/// The dev key set for `issuers` under the standard policy as `change` leaves it.
fn with_policy(issuers: &[&str], change: impl FnOnce(&mut JwtPolicy)) -> Authenticator {
    let issuers: Vec<String> = issuers.iter().map(|s| s.to_string()).collect();
    let mut policy = JwtPolicy {
        issuers: issuers.clone(),
        audiences: vec![DEV_AUDIENCE.into()],
        leeway: Duration::from_secs(60),
        max_age: Some(Duration::from_secs(900)),
        max_lifetime: Duration::from_secs(3600),
        algorithms: auth::parse_algorithms(&["ES256".into(), "RS256".into()]).unwrap(),
    };
    change(&mut policy);
    Authenticator::new(
        policy,
        auth::keys_from_pem_set(KEY_SET_JSON, &issuers).unwrap(),
        None,
    )
}

#[tokio::test]
async fn a_token_seen_before_has_its_signature_checked_once_and_its_times_every_time() {
    let auth = with_policy(&[DEV_ISSUER], |p| {
        p.leeway = Duration::ZERO;
        p.max_age = Some(Duration::from_secs(2));
    });
    let now = jsonwebtoken::get_current_timestamp();
    let claims = |exp: u64| serde_json::json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": DEV_SUBJECT, "iat": now, "exp": exp});
    let expiring = mint(Algorithm::ES256, &claims(now + 1));
    let aging = mint(Algorithm::RS256, &claims(now + 60));
    for token in [&expiring, &aging, &expiring, &aging] {
        let verified = auth.verify(token).await.unwrap();
        assert_eq!(verified.sub.as_deref(), Some(DEV_SUBJECT));
    }
    assert_eq!(auth.signature_checks(), 2, "once per token");
    let mut altered = aging.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert!(auth.verify(&altered).await.is_err());
    assert_eq!(auth.signature_checks(), 3, "other bytes are checked");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        auth.verify(&expiring).await.unwrap_err(),
        auth::AuthError::Expired
    );
    assert_eq!(
        auth.verify(&aging).await.unwrap_err(),
        auth::AuthError::TooOld
    );
    assert_eq!(auth.signature_checks(), 3, "refused on what was verified");
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_key_signs_only_for_its_own_issuer_and_subject(
        signer in 0usize..3,
        iss in 0usize..2,
        sub in 0usize..4,
        with_kid in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let auth = authenticator_for(&[DEV_ISSUER, ORDERS_ISSUER]);
        // (private key, alg, kid, the system it belongs to: 0 billing, 1 orders)
        let keys = [
            (ES256_PRIVATE, Algorithm::ES256, "dev-es256", 0),
            (RS256_PRIVATE, Algorithm::RS256, "dev-rs256", 0),
            (ES256_ORDERS_PRIVATE, Algorithm::ES256, "dev-orders-es256", 1),
        ];
        let (pem, alg, kid, owner) = keys[signer];
        let issuers = [DEV_ISSUER, ORDERS_ISSUER];
        let subjects = [Some(DEV_SUBJECT), Some(ORDERS_SUBJECT), Some("someone-else"), None];
        let mut claims = standard_claims();
        claims["iss"] = issuers[iss].into();
        match subjects[sub] {
            Some(s) => claims["sub"] = s.into(),
            None => { claims.as_object_mut().unwrap().remove("sub"); }
        }
        let token = sign(alg, pem, with_kid.then_some(kid), &claims);
        let accepted = runtime.block_on(auth.verify(&token)).is_ok();
        prop_assert_eq!(accepted, iss == owner && sub == owner, "{:?}", claims);
    }
}
