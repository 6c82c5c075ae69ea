//! legacy-ingest end to end: JWT authentication, strict bodies, exactly-once publishing to the Genesys simulator.

use std::time::Duration;

use base64::Engine;
use integration_tests::ingest::*;
use jsonwebtoken::Algorithm;
use legacy_ingest::auth::{JwksTiming, KeyBinding};
use local::dev_tokens::*;
use local::genesys_sim::GenesysFaults;
use serde_json::{json, Value};

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[tokio::test]
async fn es256_and_rs256_tokens_publish_one_genesys_event_each() {
    let h = IngestHarness::start(IngestOptions::default()).await;
    for (alg, tx) in [(Algorithm::ES256, "TX-ES-1"), (Algorithm::RS256, "TX-RS-1")] {
        let token = mint(alg, &standard_claims());
        let (status, _, body) = h.post_with_token(&token, &sample_business_event(tx)).await;
        assert_eq!(status, 202, "{alg:?}: {body}");
        assert_eq!(body["status"], "accepted");
        assert_eq!(body["event_type"], "custom.billing.payment.received");
        assert_eq!(
            body["idempotency_key"],
            legacy_ingest::event::idempotency_key(DEV_ISSUER, tx).as_str()
        );
    }
    let events = h.genesys.events();
    assert_eq!(events.len(), 2);
    let e = &events[0].body;
    assert_eq!(e["eventType"], "custom.billing.payment.received");
    assert_eq!(e["eventTime"], "2026-11-23T10:00:00Z");
    assert_eq!(e["source"], json!({"system": "billing", "version": "1"}));
    assert_eq!(e["data"]["transactionId"], "TX-ES-1");
    assert_eq!(e["data"]["currency"], "EUR");
    assert_eq!(
        events[0].idempotency_key,
        legacy_ingest::event::idempotency_key(DEV_ISSUER, "TX-ES-1")
    );
    assert_eq!(h.genesys.tokens_issued(), 1, "the Genesys token is cached");
}

#[tokio::test]
async fn every_kind_of_bad_token_gets_401_and_publishes_nothing() {
    let h = IngestHarness::start(IngestOptions::default()).await;
    let now = now();
    let claims = standard_claims();
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    // Key confusion: HS256 "signed" with the public key's PEM as the HMAC secret.
    let hs_with_public = |kid: Option<&str>| {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(ES256_PUBLIC.as_bytes()),
        )
        .unwrap()
    };
    // An ES256 token presented under the RSA key's kid (algorithm/key mismatch).
    let es_under_rsa_kid = sign(Algorithm::ES256, ES256_PRIVATE, Some("dev-rs256"), &claims);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        ("basic auth", Some("Basic dXNlcjpwYXNz".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("not a JWT", Some("Bearer abc.def".into())),
        ("garbage segments", Some("Bearer a.b.c".into())),
        ("alg none", Some(format!("Bearer {none_token}"))),
        (
            "HS256 with public key, kid",
            Some(format!("Bearer {}", hs_with_public(Some("dev-es256")))),
        ),
        (
            "HS256 with public key, no kid",
            Some(format!("Bearer {}", hs_with_public(None))),
        ),
        (
            "ES256 under the RSA kid",
            Some(format!("Bearer {es_under_rsa_kid}")),
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::ES256,
                    ES256_OTHER_PRIVATE,
                    Some("dev-es256"),
                    &claims
                )
            )),
        ),
        (
            "unknown kid",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::ES256, ES256_PRIVATE, Some("nope"), &claims)
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                mint(
                    Algorithm::ES256,
                    &with(claims.clone(), "exp", json!(now - 3600))
                )
            )),
        ),
        (
            "future nbf",
            Some(format!(
                "Bearer {}",
                mint(
                    Algorithm::ES256,
                    &with(claims.clone(), "nbf", json!(now + 3600))
                )
            )),
        ),
        (
            "wrong iss",
            Some(format!(
                "Bearer {}",
                mint(
                    Algorithm::ES256,
                    &with(claims.clone(), "iss", json!("https://evil.example"))
                )
            )),
        ),
        (
            "wrong aud",
            Some(format!(
                "Bearer {}",
                mint(
                    Algorithm::RS256,
                    &with(claims.clone(), "aud", json!("someone-else"))
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                mint(Algorithm::ES256, &without(claims.clone(), "exp"))
            )),
        ),
        (
            "no aud",
            Some(format!(
                "Bearer {}",
                mint(Algorithm::ES256, &without(claims.clone(), "aud"))
            )),
        ),
    ];
    let body = sample_business_event("TX-BAD").to_string();
    for (name, authorization) in cases {
        let (status, _, reply) = h.post(authorization.as_deref(), &body).await;
        assert_eq!(status, 401, "{name}: {reply}");
        assert_eq!(reply["error"], "unauthorized", "{name}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("BEGIN PUBLIC KEY") && !message.contains(DEV_ISSUER),
            "{name} leaks: {message}"
        );
    }
    assert!(h.genesys.events().is_empty());
    assert_eq!(h.genesys.tokens_issued(), 0, "nothing reached Genesys");
    // Within the leeway (60 s) an expired-by-30-s token is still accepted.
    let grace = mint(
        Algorithm::ES256,
        &with(claims.clone(), "exp", json!(now - 30)),
    );
    assert_eq!(
        h.post_with_token(&grace, &sample_business_event("TX-GRACE"))
            .await
            .0,
        202
    );
}

#[tokio::test]
async fn jwks_keys_are_selected_by_kid_and_an_unknown_kid_refreshes_at_most_once_per_interval() {
    let timing = |min_refresh| JwksTiming {
        refresh: HOUR,
        min_refresh,
        failure_backoff: HOUR,
    };
    let h = IngestHarness::start(IngestOptions {
        static_keys: false,
        jwks: true,
        jwks_timing: Some(timing(HOUR)),
        ..IngestOptions::default()
    })
    .await;
    for (alg, tx) in [(Algorithm::ES256, "TX-J1"), (Algorithm::RS256, "TX-J2")] {
        let (status, _, body) = h
            .post_with_token(&mint(alg, &standard_claims()), &sample_business_event(tx))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(
        h.jwks.hits(),
        1,
        "the cold-start fetch serves both known kids"
    );
    let unknown = sign(
        Algorithm::ES256,
        ES256_PRIVATE,
        Some("rotated-key"),
        &standard_claims(),
    );
    for _ in 0..3 {
        let (status, _, body) = h
            .post_with_token(&unknown, &sample_business_event("TX-J3"))
            .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some("unknown signing key"))
        );
    }
    assert_eq!(h.jwks.hits(), 1, "no refresh within the minimum interval");
    // Once the minimum interval has passed, an unknown kid refetches.
    let h = IngestHarness::start(IngestOptions {
        static_keys: false,
        jwks: true,
        jwks_timing: Some(timing(Duration::from_millis(100))),
        ..IngestOptions::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        h.post_with_token(&unknown, &sample_business_event("TX-J3"))
            .await
            .0,
        401
    );
    assert_eq!(h.jwks.hits(), 2);
}

#[tokio::test]
async fn a_maximum_token_age_applies_to_iat() {
    let h = IngestHarness::start(IngestOptions {
        env: vec![("JWT_MAX_AGE_SECONDS", "600".into())],
        ..IngestOptions::default()
    })
    .await;
    let old = with(standard_claims(), "iat", json!(now() - 3600));
    let (status, _, body) = h
        .post_with_token(
            &mint(Algorithm::ES256, &old),
            &sample_business_event("TX-OLD"),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("token too old"))
    );
    let no_iat = without(standard_claims(), "iat");
    let (status, _, body) = h
        .post_with_token(
            &mint(Algorithm::ES256, &no_iat),
            &sample_business_event("TX-NOIAT"),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("iat claim required"))
    );
    assert_eq!(
        h.post_with_token(
            &mint(Algorithm::ES256, &standard_claims()),
            &sample_business_event("TX-NEW")
        )
        .await
        .0,
        202
    );
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_each_field() {
    let h = IngestHarness::start(IngestOptions::default()).await;
    let token = mint(Algorithm::ES256, &standard_claims());
    let cases = [
        (
            json!({"transaction_id": "T1", "event_type": "payment.received", "amount": 1, "currency": "EUR"}),
            vec!["timestamp"],
        ),
        (
            json!({"transaction_id": "T1", "event_type": "payment.received", "amount": "1", "currency": "EU",
                "timestamp": "soon", "note": "x"}),
            vec!["amount", "currency", "note", "timestamp"],
        ),
        (
            json!({"transaction_id": "", "event_type": "shipment.sent", "amount": 1, "currency": "EUR", "timestamp": 0}),
            vec!["event_type", "transaction_id"],
        ),
        (json!([1, 2]), vec!["$"]),
    ];
    for (body, expected) in cases {
        let (status, _, reply) = h.post_with_token(&token, &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        let fields: Vec<&str> = reply["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, expected, "{body}");
    }
    let huge = json!({"transaction_id": "T1", "event_type": "payment.received", "amount": 1, "currency": "EUR",
                      "timestamp": 0, "pad": "x".repeat(20_000)});
    assert_eq!(h.post_with_token(&token, &huge).await.0, 413);
    assert!(h.genesys.events().is_empty());
}

#[tokio::test]
async fn the_same_transaction_sent_three_times_and_concurrently_is_one_event() {
    let h = IngestHarness::start(IngestOptions::default()).await;
    let token = mint(Algorithm::ES256, &standard_claims());
    let event = sample_business_event("TX-DUP-1");
    let mut keys = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = h.post_with_token(&token, &event).await;
        assert_eq!(status, 202, "{body}");
        keys.push(body["idempotency_key"].clone());
    }
    let concurrent = sample_business_event("TX-DUP-2");
    let replies =
        futures::future::join_all((0..5).map(|_| h.post_with_token(&token, &concurrent))).await;
    assert!(replies.iter().all(|(s, _, _)| *s == 202), "{replies:?}");
    keys.dedup();
    assert_eq!(keys.len(), 1);
    let events = h.genesys.events();
    assert_eq!(events.len(), 2, "one event per transaction");
    // A new token (the legacy system re-authenticated) does not change the key either.
    let (status, _, _) = h
        .post_with_token(&mint(Algorithm::RS256, &standard_claims()), &event)
        .await;
    assert_eq!(status, 202);
    assert_eq!(h.genesys.events().len(), 2);
}

#[tokio::test]
async fn throttling_is_retried_honouring_retry_after_or_the_genesys_reset_header() {
    for reset_header_only in [false, true] {
        let h = IngestHarness::start(IngestOptions::default()).await;
        h.genesys.set_faults(GenesysFaults {
            throttle_next: 1,
            retry_after_secs: 1,
            reset_header_only,
            ..GenesysFaults::default()
        });
        let token = mint(Algorithm::ES256, &standard_claims());
        let (status, _, body) = h
            .post_with_token(&token, &sample_business_event("TX-429"))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(h.genesys.events().len(), 1);
        let log: Vec<_> = h
            .genesys
            .requests()
            .into_iter()
            .filter(|r| r.path != "/oauth/token")
            .collect();
        assert_eq!(
            log.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![429, 201]
        );
        assert!(
            log[1].at_ms - log[0].at_ms >= 1000,
            "waited {} ms",
            log[1].at_ms - log[0].at_ms
        );
    }
}

#[tokio::test]
async fn genesys_down_answers_503_with_retry_after_and_a_later_retry_publishes_once() {
    let h = IngestHarness::start(IngestOptions {
        deadline: Duration::from_millis(800),
        ..IngestOptions::default()
    })
    .await;
    h.genesys.set_faults(GenesysFaults {
        down: true,
        ..GenesysFaults::default()
    });
    let token = mint(Algorithm::ES256, &standard_claims());
    let event = sample_business_event("TX-DOWN");
    let (status, retry_after, body) = h.post_with_token(&token, &event).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after
        .and_then(|r| r.parse::<u64>().ok())
        .is_some_and(|s| s >= 1));
    assert!(h.genesys.events().is_empty());
    h.genesys.set_faults(GenesysFaults::default());
    let (status, _, again) = h.post_with_token(&token, &event).await;
    assert_eq!(status, 202);
    assert_eq!(again["idempotency_key"], body["idempotency_key"]);
    let (status, _, _) = h.post_with_token(&token, &event).await;
    assert_eq!(status, 202);
    assert_eq!(h.genesys.events().len(), 1);
}

#[tokio::test]
async fn genesys_rejections_become_502_without_the_upstream_body() {
    let h = IngestHarness::start(IngestOptions::default()).await;
    h.genesys.set_faults(GenesysFaults {
        fail_next: 1,
        fail_status: 400,
        ..GenesysFaults::default()
    });
    let (status, _, body) = h
        .post_with_token(
            &mint(Algorithm::ES256, &standard_claims()),
            &sample_business_event("TX-400"),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.to_string().contains("Injected"), "{body}");
}

#[tokio::test]
async fn a_revoked_genesys_token_is_replaced_once() {
    let h = IngestHarness::start(IngestOptions::default()).await;
    let token = mint(Algorithm::ES256, &standard_claims());
    assert_eq!(
        h.post_with_token(&token, &sample_business_event("TX-R1"))
            .await
            .0,
        202
    );
    h.genesys.revoke_all();
    assert_eq!(
        h.post_with_token(&token, &sample_business_event("TX-R2"))
            .await
            .0,
        202
    );
    assert_eq!(h.genesys.tokens_issued(), 2);
    assert_eq!(h.genesys.events().len(), 2);
}

#[tokio::test]
async fn a_jwks_document_can_come_from_secrets_manager() {
    let aws = integration_tests::aws_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&aws);
    let name = format!("jwks-{}", uuid::Uuid::new_v4().simple());
    sm.create_secret()
        .name(&name)
        .secret_string(JWKS_JSON)
        .send()
        .await
        .unwrap();
    let auth = legacy_ingest::auth::Authenticator::new(
        legacy_ingest::auth::JwtPolicy {
            issuers: vec![DEV_ISSUER.into()],
            audiences: vec![DEV_AUDIENCE.into()],
            leeway: Duration::from_secs(60),
            max_age: Some(Duration::from_secs(900)),
            max_lifetime: Duration::from_secs(3600),
            algorithms: legacy_ingest::auth::parse_algorithms(&["ES256".into(), "RS256".into()])
                .unwrap(),
        },
        Vec::new(),
        Some(legacy_ingest::auth::Jwks::new(
            legacy_ingest::auth::JwksSource::Secret {
                client: sm,
                id: name,
            },
            KeyBinding {
                issuers: vec![DEV_ISSUER.into()],
                subjects: None,
            },
            JwksTiming::default(),
        )),
    );
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let claims = auth
            .verify(&mint(alg, &standard_claims()))
            .await
            .expect("verified with the JWKS secret");
        assert_eq!(claims.sub.as_deref(), Some(DEV_SUBJECT));
    }
    let foreign = sign(
        Algorithm::ES256,
        ES256_OTHER_PRIVATE,
        Some("dev-es256"),
        &standard_claims(),
    );
    assert!(auth.verify(&foreign).await.is_err());
}

fn claims_of(iss: &str, sub: &str) -> Value {
    with(
        with(standard_claims(), "iss", json!(iss)),
        "sub",
        json!(sub),
    )
}

fn two_systems() -> IngestOptions {
    IngestOptions {
        env: vec![("JWT_ISSUERS", format!("{DEV_ISSUER},{ORDERS_ISSUER}"))],
        ..IngestOptions::default()
    }
}

fn orders_token(claims: &Value) -> String {
    sign(
        Algorithm::ES256,
        ES256_ORDERS_PRIVATE,
        Some("dev-orders-es256"),
        claims,
    )
}

#[tokio::test]
async fn billings_key_cannot_sign_for_the_orders_system_nor_pre_empt_its_idempotency_keys() {
    let h = IngestHarness::start(two_systems()).await;
    let orders = claims_of(ORDERS_ISSUER, ORDERS_SUBJECT);
    let issuer = "signing key not allowed for this issuer";
    let subject = "signing key not allowed for this subject";
    let cases = [
        (
            "billing's ES256 key, orders' iss and sub",
            mint(Algorithm::ES256, &orders),
            issuer,
        ),
        (
            "billing's RS256 key, orders' iss",
            mint(Algorithm::RS256, &claims_of(ORDERS_ISSUER, DEV_SUBJECT)),
            issuer,
        ),
        (
            "billing's key without a kid, orders' iss",
            sign(Algorithm::ES256, ES256_PRIVATE, None, &orders),
            issuer,
        ),
        (
            "billing's key and iss, orders' sub",
            mint(Algorithm::ES256, &claims_of(DEV_ISSUER, ORDERS_SUBJECT)),
            subject,
        ),
        (
            "billing's key and iss, no sub",
            mint(Algorithm::ES256, &without(standard_claims(), "sub")),
            subject,
        ),
        (
            "orders' key, billing's iss",
            orders_token(&claims_of(DEV_ISSUER, DEV_SUBJECT)),
            issuer,
        ),
    ];
    // The forgeries try the transaction orders is about to send: its Idempotency-Key must stay free.
    for (name, token, reason) in &cases {
        let (status, _, body) = h
            .post_with_token(token, &sample_business_event("TX-ORD-1"))
            .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some(*reason)),
            "{name}: {body}"
        );
    }
    assert!(h.genesys.events().is_empty(), "no forged event published");
    let (status, _, body) = h
        .post_with_token(&orders_token(&orders), &sample_business_event("TX-ORD-1"))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["idempotency_key"],
        legacy_ingest::event::idempotency_key(ORDERS_ISSUER, "TX-ORD-1").as_str()
    );
    let (status, _, body) = h
        .post_with_token(
            &mint(Algorithm::RS256, &standard_claims()),
            &sample_business_event("TX-ORD-1"),
        )
        .await;
    assert_eq!(status, 202, "billing's own transaction: {body}");
    let events = h.genesys.events();
    assert_eq!(events.len(), 2, "orders' event and billing's");
    assert_eq!(events[0].body["source"]["system"], ORDERS_SUBJECT);
    assert_eq!(events[1].body["source"]["system"], DEV_SUBJECT);
}

#[tokio::test]
async fn a_key_set_without_bindings_is_refused_at_cold_start_when_several_issuers_are_configured() {
    let unbound =
        json!({"keys": [{"kid": "legacy-1", "alg": "ES256", "pem": ES256_PUBLIC}]}).to_string();
    let policy = |issuers: &[&str]| {
        let env = shared::config::Env::from_pairs([
            ("JWT_ISSUERS", issuers.join(",")),
            ("JWT_AUDIENCES", DEV_AUDIENCE.into()),
            ("JWT_KEYS_JSON", unbound.clone()),
            ("GENESYS_CLIENT_ID", "c".into()),
            ("GENESYS_CLIENT_SECRET", "s".into()),
            ("INGEST_TARGET", "custom-endpoint".into()),
        ]);
        legacy_ingest::Config::from_vars(&env).unwrap().jwt
    };
    let err =
        legacy_ingest::authenticator(policy(&[DEV_ISSUER, ORDERS_ISSUER]), Some(&unbound), None)
            .await
            .err()
            .expect("refused");
    let err = err.to_string();
    assert!(
        err.contains("legacy-1") && err.contains("\"issuers\""),
        "names the key and what to add: {err}"
    );
    // With exactly one issuer configured, an unbound key signs for that issuer only.
    let auth = legacy_ingest::authenticator(policy(&[DEV_ISSUER]), Some(&unbound), None)
        .await
        .expect("one issuer");
    let token = |claims: &Value| sign(Algorithm::ES256, ES256_PRIVATE, Some("legacy-1"), claims);
    assert!(auth.verify(&token(&standard_claims())).await.is_ok());
    assert!(auth
        .verify(&token(&claims_of(ORDERS_ISSUER, ORDERS_SUBJECT)))
        .await
        .is_err());
    // A typo in a binding field is an error, not an unbound key.
    let typo =
        json!({"keys": [{"kid": "k", "alg": "ES256", "pem": ES256_PUBLIC, "issuer": DEV_ISSUER}]})
            .to_string();
    let err = legacy_ingest::authenticator(policy(&[DEV_ISSUER]), Some(&typo), None)
        .await
        .err()
        .expect("unknown field refused");
    assert!(err.to_string().contains("issuer"), "{err}");
}

#[tokio::test]
async fn jwks_keys_sign_only_for_the_jwks_issuer_and_subjects() {
    let h = IngestHarness::start(IngestOptions {
        static_keys: false,
        jwks: true,
        env: vec![
            ("JWT_ISSUERS", format!("{DEV_ISSUER},{ORDERS_ISSUER}")),
            ("JWT_JWKS_ISSUER", DEV_ISSUER.into()),
            ("JWT_JWKS_SUBJECTS", DEV_SUBJECT.into()),
        ],
        ..IngestOptions::default()
    })
    .await;
    for (claims, expected) in [
        (
            claims_of(ORDERS_ISSUER, ORDERS_SUBJECT),
            "signing key not allowed for this issuer",
        ),
        (
            claims_of(DEV_ISSUER, ORDERS_SUBJECT),
            "signing key not allowed for this subject",
        ),
    ] {
        let (status, _, body) = h
            .post_with_token(
                &mint(Algorithm::ES256, &claims),
                &sample_business_event("TX-JB-1"),
            )
            .await;
        assert_eq!((status, body["message"].as_str()), (401, Some(expected)));
    }
    let (status, _, body) = h
        .post_with_token(
            &mint(Algorithm::RS256, &standard_claims()),
            &sample_business_event("TX-JB-1"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn a_token_valid_until_2100_no_longer_works_with_the_default_settings() {
    const YEAR_2100: u64 = 4_102_444_800;
    let h = IngestHarness::start(IngestOptions::default()).await;
    let forever = with(standard_claims(), "exp", json!(YEAR_2100));
    let cases = [
        (
            "no iat",
            without(forever.clone(), "iat"),
            "iat claim required",
        ),
        (
            "iat a day ago",
            with(forever.clone(), "iat", json!(now() - 86_400)),
            "token too old",
        ),
        ("iat now", forever.clone(), "token lifetime too long"),
    ];
    for (name, claims, reason) in &cases {
        let (status, _, body) = h
            .post_with_token(
                &mint(Algorithm::ES256, claims),
                &sample_business_event("TX-2100"),
            )
            .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some(*reason)),
            "{name}"
        );
    }
    // Without the iat check (JWT_MAX_AGE_SECONDS=0) the maximum lifetime still bounds exp.
    let h = IngestHarness::start(IngestOptions {
        env: vec![("JWT_MAX_AGE_SECONDS", "0".into())],
        ..IngestOptions::default()
    })
    .await;
    let (status, _, body) = h
        .post_with_token(
            &mint(Algorithm::ES256, &without(forever, "iat")),
            &sample_business_event("TX-2100"),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("token lifetime too long"))
    );
    let (status, _, _) = h
        .post_with_token(
            &mint(Algorithm::ES256, &without(standard_claims(), "iat")),
            &sample_business_event("TX-2100"),
        )
        .await;
    assert_eq!(status, 202);
}

fn jwks_without(kid: &str) -> String {
    let mut doc: Value = serde_json::from_str(JWKS_JSON).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != kid);
    doc.to_string()
}

fn jwks_only(timing: JwksTiming, reply: JwksReply) -> IngestOptions {
    IngestOptions {
        static_keys: false,
        jwks: true,
        jwks_timing: Some(timing),
        jwks_reply: reply,
        ..IngestOptions::default()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_working_after_the_refresh_interval() {
    let es_token = || mint(Algorithm::ES256, &standard_claims());
    // Within the interval the cached document is used: the removed key still works, nothing is refetched.
    let cached = IngestHarness::start(jwks_only(
        JwksTiming {
            refresh: HOUR,
            min_refresh: HOUR,
            failure_backoff: HOUR,
        },
        JwksReply::Document(JWKS_JSON.into()),
    ))
    .await;
    cached
        .jwks
        .set(JwksReply::Document(jwks_without("dev-es256")));
    let tx = sample_business_event("TX-REMOVED");
    assert_eq!(cached.post_with_token(&es_token(), &tx).await.0, 202);
    assert_eq!(cached.jwks.hits(), 1);

    let h = IngestHarness::start(jwks_only(
        JwksTiming {
            refresh: Duration::from_millis(100),
            min_refresh: HOUR,
            failure_backoff: HOUR,
        },
        JwksReply::Document(JWKS_JSON.into()),
    ))
    .await;
    assert_eq!(h.jwks.hits(), 1);
    // A token verified before the key is removed (and so remembered as verified) is refused with the rest.
    let seen = es_token();
    assert_eq!(h.post_with_token(&seen, &tx).await.0, 202);
    let fetched = h.jwks.hits();
    h.jwks.set(JwksReply::Document(jwks_without("dev-es256")));
    tokio::time::sleep(Duration::from_millis(150)).await;
    for (i, token) in [seen, es_token()].into_iter().enumerate() {
        let (status, _, body) = h.post_with_token(&token, &tx).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some("unknown signing key"))
        );
        if i == 0 {
            assert_eq!(
                h.jwks.hits(),
                fetched + 1,
                "refetched once the keys were stale"
            );
        }
    }
    let (status, _, _) = h
        .post_with_token(&mint(Algorithm::RS256, &standard_claims()), &tx)
        .await;
    assert_eq!(status, 202, "the key still published keeps working");
}

#[tokio::test]
async fn a_failed_cold_start_jwks_fetch_is_retried_after_its_backoff_not_minutes_later() {
    let token = mint(Algorithm::ES256, &standard_claims());
    let tx = sample_business_event("TX-COLD");
    // Failures back off on their own schedule: no fetch per request while the endpoint is down.
    let down = IngestHarness::start(jwks_only(
        JwksTiming {
            refresh: HOUR,
            min_refresh: HOUR,
            failure_backoff: HOUR,
        },
        JwksReply::Status(503),
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(down.post_with_token(&token, &tx).await.0, 401);
    }
    assert_eq!(down.jwks.hits(), 1, "only the cold-start fetch");

    // The failed attempt is not recorded as a fetch: once its backoff is over (here at once) the next
    // token retries, although the refresh intervals are an hour.
    let h = IngestHarness::start(jwks_only(
        JwksTiming {
            refresh: HOUR,
            min_refresh: HOUR,
            failure_backoff: Duration::ZERO,
        },
        JwksReply::Status(503),
    ))
    .await;
    assert_eq!(h.jwks.hits(), 1);
    h.jwks.set(JwksReply::Document(JWKS_JSON.into()));
    let (status, _, body) = h.post_with_token(&token, &tx).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(h.jwks.hits(), 2);
    assert_eq!(h.post_with_token(&token, &tx).await.0, 202);
    assert_eq!(h.jwks.hits(), 2, "then the document is cached");
}

#[tokio::test]
async fn an_oversized_or_redirected_jwks_is_refused() {
    let mut big: Value = serde_json::from_str(JWKS_JSON).unwrap();
    big["padding"] = json!("x".repeat(legacy_ingest::auth::JWKS_MAX_BYTES));
    let big = big.to_string();
    let timing = JwksTiming {
        refresh: HOUR,
        min_refresh: HOUR,
        failure_backoff: HOUR,
    };
    for reply in [
        JwksReply::Document(big.clone()),
        JwksReply::Chunked(big.clone()),
        JwksReply::Redirect,
    ] {
        let endpoint = JwksEndpoint::start(reply.clone()).await;
        let jwks = legacy_ingest::auth::Jwks::new(
            legacy_ingest::auth::JwksSource::Url {
                http: legacy_ingest::jwks_http_client().unwrap(),
                url: endpoint.url.clone(),
            },
            KeyBinding {
                issuers: vec![DEV_ISSUER.into()],
                subjects: None,
            },
            timing,
        );
        let err = jwks.refresh().await.expect_err("refused");
        match reply {
            JwksReply::Redirect => assert!(
                matches!(err, legacy_ingest::auth::JwksError::Status(302)),
                "{err}"
            ),
            _ => assert!(
                matches!(err, legacy_ingest::auth::JwksError::TooLarge),
                "{reply:?}: {err}"
            ),
        }
        let h = IngestHarness::start(jwks_only(timing, reply)).await;
        let (status, _, body) = h
            .post_with_token(
                &mint(Algorithm::ES256, &standard_claims()),
                &sample_business_event("TX-BIG"),
            )
            .await;
        assert_eq!(status, 401, "{body}");
    }
    // A document just under the limit, chunked, is read whole.
    let mut fits: Value = serde_json::from_str(JWKS_JSON).unwrap();
    fits["padding"] = json!("x".repeat(legacy_ingest::auth::JWKS_MAX_BYTES - JWKS_JSON.len()));
    let h = IngestHarness::start(jwks_only(timing, JwksReply::Chunked(fits.to_string()))).await;
    assert_eq!(
        h.post_with_token(
            &mint(Algorithm::ES256, &standard_claims()),
            &sample_business_event("TX-FITS")
        )
        .await
        .0,
        202
    );
}
