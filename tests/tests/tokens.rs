//! token-refresher and the token source: stored tokens for both providers, refresh policy, 401 fallback,
//! refresher outages, permanent client errors, single-flight fetching.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use integration_tests::*;
use local::genesys_sim::GenesysSim;
use servicenow_writer::Outcome;
use shared::failure::FailureClass;
use shared::tokens::{StoredToken, TokenStore};
use token_refresher::{summarise, Refreshed};

async fn genesys() -> (GenesysSim, String) {
    let sim = GenesysSim::new(GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET);
    let addr = sim.spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    (sim, format!("http://{addr}"))
}

fn deadline() -> shared::retry::Deadline {
    shared::retry::Deadline::after(Duration::from_secs(10))
}

#[tokio::test]
async fn the_refresher_stores_working_tokens_for_both_providers_and_keeps_fresh_ones() {
    let h = Harness::start().await;
    let (gsim, gurl) = genesys().await;
    let refresher = refresher(&h, &gurl, GENESYS_CLIENT_SECRET);
    let results = refresher.run(deadline()).await;
    assert!(all_ended(&results, Refreshed::Renewed), "{results:?}");
    assert!(summarise(&results).is_ok());

    let sn = stored_token(&h, &h.resources.servicenow_token_secret_id)
        .await
        .expect("stored");
    let gc = stored_token(&h, &h.resources.genesys_token_secret_id)
        .await
        .expect("stored");
    for t in [&sn, &gc] {
        let expires = t.expires().expect("RFC 3339 expires_at");
        assert!(expires > SystemTime::now() + Duration::from_secs(1500));
        assert!(t.obtained().is_some());
        assert!(!t.token_type.is_empty());
    }
    // The stored ServiceNow token works against the Table API.
    let status = reqwest::Client::new()
        .get(format!("{}/api/now/table/incident", h.sim_url))
        .bearer_auth(&sn.access_token)
        .send()
        .await
        .unwrap()
        .status();
    assert_ne!(status.as_u16(), 401);

    // A second run a moment later keeps both: no new token requests.
    let results = refresher.run(deadline()).await;
    assert!(all_ended(&results, Refreshed::StillFresh), "{results:?}");
    assert_eq!((gsim.tokens_issued(), h.sim.tokens_issued()), (1, 1));
}

#[tokio::test]
async fn a_token_near_expiry_is_renewed() {
    let h = Harness::start().await;
    let (gsim, gurl) = genesys().await;
    let refresher = refresher(&h, &gurl, GENESYS_CLIENT_SECRET);
    // A stored Genesys token with 20 % of its 24 h left, a ServiceNow one with 5 minutes left.
    let now = SystemTime::now();
    let store = |id: &str| TokenStore::new(aws_sdk_secretsmanager::Client::new(&h.aws), id);
    let token = |obtained_ago: u64, lifetime: u64| {
        StoredToken::new(
            &shared::oauth::AccessToken {
                value: "old".into(),
                token_type: "bearer".into(),
                expires_at: now - Duration::from_secs(obtained_ago) + Duration::from_secs(lifetime),
                scope: None,
            },
            now - Duration::from_secs(obtained_ago),
        )
    };
    store(&h.resources.genesys_token_secret_id)
        .write(&token(69_120, 86_400))
        .await
        .unwrap();
    store(&h.resources.servicenow_token_secret_id)
        .write(&token(1_500, 1_800))
        .await
        .unwrap();
    let results = refresher.run(deadline()).await;
    assert!(all_ended(&results, Refreshed::Renewed), "{results:?}");
    let renewed = stored_token(&h, &h.resources.genesys_token_secret_id)
        .await
        .unwrap();
    assert_ne!(renewed.access_token, "old");
    let renewed = stored_token(&h, &h.resources.servicenow_token_secret_id)
        .await
        .unwrap();
    assert_ne!(renewed.access_token, "old");
    assert_eq!((gsim.tokens_issued(), h.sim.tokens_issued()), (1, 1));
}

#[tokio::test]
async fn a_revoked_token_falls_back_to_a_direct_fetch_and_the_incident_is_created_once() {
    let h = Harness::with(Options {
        servicenow_oauth: true,
        ..Options::default()
    })
    .await;
    let (_gsim, gurl) = genesys().await;
    refresher(&h, &gurl, GENESYS_CLIENT_SECRET)
        .run(deadline())
        .await;
    let tokens = h.sn_tokens.clone().expect("OAuth mode");
    h.post_new_event().await;
    assert_eq!(tally(&h.drain().await), Tally::created(1));
    assert_eq!(tokens.fallback_count(), 0, "the stored token was used");
    assert_eq!(h.sim.tokens_issued(), 1);

    h.sim.revoke_tokens();
    let revoked = stored_token(&h, &h.resources.servicenow_token_secret_id)
        .await
        .unwrap();
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::created(1), "{outcomes:?}");
    assert_eq!(h.sim.incidents().len(), 2);
    assert_eq!(
        tokens.fallback_count(),
        1,
        "401 → re-read (same token) → one direct fetch"
    );
    assert_eq!(h.sim.tokens_issued(), 2);
    let stored = stored_token(&h, &h.resources.servicenow_token_secret_id)
        .await
        .unwrap();
    assert_ne!(
        stored.access_token, revoked.access_token,
        "the fetched token was stored for the others"
    );
    assert_eq!(
        h.sim.requests().iter().filter(|r| r.status == 401).count(),
        1
    );
}

#[tokio::test]
async fn the_pipeline_keeps_working_when_the_refresher_is_down_past_a_token_lifetime() {
    let h = Harness::with(Options {
        servicenow_oauth: true,
        ..Options::default()
    })
    .await;
    h.sim.set_token_lifetime(Duration::from_secs(2));
    let (_gsim, gurl) = genesys().await;
    refresher(&h, &gurl, GENESYS_CLIENT_SECRET)
        .run(deadline())
        .await;
    // The refresher now stops; the stored token expires.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let tokens = h.sn_tokens.clone().unwrap();
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert!(
        matches!(outcomes[..], [(_, Outcome::Created { .. })]),
        "{outcomes:?}"
    );
    assert!(tokens.fallback_count() >= 1);
    assert_eq!(
        h.sim.requests().iter().filter(|r| r.status == 401).count(),
        0,
        "expired tokens are not even tried"
    );
}

#[tokio::test]
async fn invalid_client_fails_the_invocation_clearly_and_the_other_provider_is_still_refreshed() {
    let h = Harness::start().await;
    let (gsim, gurl) = genesys().await;
    let results = refresher(&h, &gurl, "wrong-secret").run(deadline()).await;
    let genesys = results.iter().find(|(p, _)| *p == "genesys").unwrap();
    let servicenow = results.iter().find(|(p, _)| *p == "servicenow").unwrap();
    let err = genesys.1.as_ref().unwrap_err();
    assert_eq!(err.class(), FailureClass::Permanent);
    assert!(err.message.contains("invalid_client"), "{err}");
    assert_eq!(servicenow.1.as_ref().ok(), Some(&Refreshed::Renewed));
    let summary = summarise(&results).unwrap_err();
    assert!(
        summary.contains("genesys") && summary.contains("invalid_client"),
        "{summary}"
    );
    assert!(!summary.contains("wrong-secret"));
    // Not retried: a permanent error makes exactly one token request.
    assert_eq!(
        gsim.requests()
            .iter()
            .filter(|r| r.path == "/oauth/token")
            .count(),
        1
    );
    assert!(stored_token(&h, &h.resources.genesys_token_secret_id)
        .await
        .is_none());
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let h = Harness::start().await;
    let source = Arc::new(servicenow_token_source(&h));
    let tokens = futures::future::join_all((0..20).map(|_| {
        let s = source.clone();
        async move { s.token().await.unwrap().value }
    }))
    .await;
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(h.sim.tokens_issued(), 1);
    assert_eq!(source.fallback_count(), 1);
    assert_eq!(source.store_reads(), 1, "one secret read, then the cache");
    // A second source (another container) finds the stored token: no fetch.
    let other = servicenow_token_source(&h);
    assert_eq!(other.token().await.unwrap().value, tokens[0]);
    assert_eq!(other.fallback_count(), 0);
    assert_eq!(h.sim.tokens_issued(), 1);
}

#[tokio::test]
async fn transient_token_endpoint_failures_are_retried_within_the_invocation() {
    let h = Harness::start().await;
    let (gsim, gurl) = genesys().await;
    gsim.set_faults(local::genesys_sim::GenesysFaults {
        token_fail_next: 2,
        ..Default::default()
    });
    let results = refresher(&h, &gurl, GENESYS_CLIENT_SECRET)
        .run(deadline())
        .await;
    assert!(all_ended(&results, Refreshed::Renewed), "{results:?}");
    let statuses: Vec<u16> = gsim
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth/token")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
    // More failures than attempts (3): a transient error, and the invocation fails.
    clear_stored_token(&h, &h.resources.genesys_token_secret_id).await;
    gsim.set_faults(local::genesys_sim::GenesysFaults {
        token_fail_next: 10,
        ..Default::default()
    });
    let results = refresher(&h, &gurl, GENESYS_CLIENT_SECRET)
        .run(deadline())
        .await;
    let err = results
        .iter()
        .find(|(p, _)| *p == "genesys")
        .unwrap()
        .1
        .as_ref()
        .unwrap_err();
    assert_eq!(err.class(), FailureClass::Transient);
    assert!(summarise(&results).is_err());
}
