//! legacy-ingest logs issuer, subject, transaction id and outcome as JSON, and never the token.

use integration_tests::capture_logs;
use integration_tests::ingest::*;
use jsonwebtoken::Algorithm;
use local::dev_tokens::*;
use serde_json::Value;

#[tokio::test]
async fn ingest_logs_carry_who_and_what_but_never_the_token() {
    let captured = capture_logs("info");
    let h = IngestHarness::start(IngestOptions::default()).await;
    let token = mint(Algorithm::RS256, &standard_claims());
    assert_eq!(
        h.post_with_token(&token, &sample_business_event("TX-LOG-1"))
            .await
            .0,
        202
    );
    let forged = sign(
        Algorithm::ES256,
        ES256_OTHER_PRIVATE,
        Some("dev-es256"),
        &standard_claims(),
    );
    assert_eq!(
        h.post_with_token(&forged, &sample_business_event("TX-LOG-2"))
            .await
            .0,
        401
    );

    let text = captured.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let published = lines
        .iter()
        .find(|l| l["fields"]["message"] == "event published")
        .expect("a published line");
    assert_eq!(published["fields"]["issuer"], DEV_ISSUER);
    assert_eq!(published["fields"]["subject"], DEV_SUBJECT);
    assert_eq!(published["fields"]["transaction_id"], "TX-LOG-1");
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "ingest request not authenticated"));
    for secret in [
        token.as_str(),
        forged.as_str(),
        GENESYS_CLIENT_SECRET,
        "gsim-",
    ] {
        assert!(!text.contains(secret), "logs contain {secret:?}");
    }
    // Not even the signature part of a token.
    for part in token.split('.').chain(forged.split('.')).skip(2).step_by(3) {
        assert!(!text.contains(part));
    }
}
