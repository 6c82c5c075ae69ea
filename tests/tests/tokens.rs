//! token-refresher and the token source: stored tokens for both providers, refresh policy, 401 fallback,
//! refresher outages, permanent client errors, single-flight fetching, credential rotation, 401 storms,
//! redirects and oversized answers from token endpoints.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::response::IntoResponse;
use integration_tests::*;
use local::genesys_sim::GenesysSim;
use local::servicenow_sim::Faults;
use serde_json::json;
use servicenow_writer::config::ServiceNowSettings;
use servicenow_writer::servicenow::{
    BasicCredentials, ServiceNowAuth, ServiceNowClient, ServiceNowConfig,
};
use servicenow_writer::{Outcome, Writer, WriterConfig};
use shared::config::Env;
use shared::failure::FailureClass;
use shared::tokens::{Provider, Rotating, StoredToken, TokenSourceSettings, TokenStore};
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

/// A writer like the harness's, over `servicenow` (built from settings, as at cold start).
fn writer_with(h: &Harness, servicenow: ServiceNowClient) -> Writer {
    Writer::new(
        WriterConfig {
            dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
            idempotency_table: h.resources.table.clone(),
            conversation_lock_wait: Duration::from_secs(3),
            retry: Options::default().retry,
            deadline_reserve: Duration::from_millis(300),
            default_caller_sys_id: Some("default-caller-sys-id".into()),
            ..WriterConfig::default()
        },
        shared::Mapping::default_mapping().expect("default mapping"),
        servicenow,
        aws_sdk_dynamodb::Client::new(&h.aws),
        h.sqs.clone(),
    )
}

async fn put_secret(h: &Harness, id: &str, value: serde_json::Value) {
    aws_sdk_secretsmanager::Client::new(&h.aws)
        .put_secret_value()
        .secret_id(id)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("secret writable");
}

#[tokio::test]
async fn rotating_the_basic_password_while_the_pipeline_runs_dead_letters_nothing() {
    let h = Harness::start().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&h.aws);
    let settings = ServiceNowSettings::from_vars(&Env::from_pairs([
        ("SERVICENOW_INSTANCE_URL", h.sim_url.as_str()),
        (
            "SERVICENOW_CREDENTIALS_SECRET_ID",
            h.resources.servicenow_secret_id.as_str(),
        ),
    ]))
    .unwrap();
    let writer = writer_with(&h, settings.build(&secrets).await.unwrap());
    for _ in 0..6 {
        h.post_new_event().await;
    }
    // While the writer drains: the new password into the secret first, then into ServiceNow.
    let rotate = async {
        while h.sim.incidents().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        put_secret(
            &h,
            &h.resources.servicenow_secret_id,
            json!({"username": SN_USER, "password": "rotated-password"}),
        )
        .await;
        h.sim.set_user_credentials(SN_USER, "rotated-password");
    };
    let (outcomes, ()) = tokio::join!(h.poller.drain(&writer, Duration::from_secs(60)), rotate);
    let mut outcomes = outcomes.unwrap();
    // And one surely after the rotation.
    h.post_new_event().await;
    outcomes.extend(
        h.poller
            .drain(&writer, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    assert_eq!(tally(&outcomes), Tally::created(7), "{outcomes:?}");
    assert!(h.dead_letters().await.is_empty());
    assert!(
        h.sim.requests().iter().any(|r| r.status == 401),
        "the old password was refused, then the secret re-read"
    );
}

#[tokio::test]
async fn rotating_both_oauth_clients_dead_letters_nothing_and_the_refresher_keeps_working() {
    let h = Harness::start().await;
    let (gsim, gurl) = genesys().await;
    let r = &h.resources;
    let env = Env::from_pairs([
        ("SERVICENOW_INSTANCE_URL", h.sim_url.as_str()),
        ("SERVICENOW_AUTH", "oauth"),
        (
            "SERVICENOW_TOKEN_SECRET_ID",
            r.servicenow_token_secret_id.as_str(),
        ),
        (
            "SERVICENOW_OAUTH_CREDENTIALS_SECRET_ID",
            r.servicenow_oauth_secret_id.as_str(),
        ),
        ("GENESYS_LOGIN_URL", gurl.as_str()),
        (
            "GENESYS_CREDENTIALS_SECRET_ID",
            r.genesys_client_secret_id.as_str(),
        ),
        (
            "GENESYS_TOKEN_SECRET_ID",
            r.genesys_token_secret_id.as_str(),
        ),
    ]);
    // Both built as at cold start: credentials read once from their secrets.
    let refresher =
        token_refresher::build(token_refresher::Config::from_vars(&env).unwrap(), &h.aws)
            .await
            .unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&h.aws);
    let writer = writer_with(
        &h,
        ServiceNowSettings::from_vars(&env)
            .unwrap()
            .build(&secrets)
            .await
            .unwrap(),
    );
    assert!(all_ended(
        &refresher.run(deadline()).await,
        Refreshed::Renewed
    ));
    h.post_new_event().await;
    let mut outcomes = h
        .poller
        .drain(&writer, Duration::from_secs(60))
        .await
        .unwrap();

    // Rotation: the new client secrets into their secrets, then into the providers; ServiceNow also
    // revokes the tokens issued so far, so the writer must fetch one with the new client.
    put_secret(
        &h,
        &r.servicenow_oauth_secret_id,
        json!({"client_id": SN_CLIENT_ID, "client_secret": "rotated-sn-secret",
               "username": SN_USER, "password": SN_PASSWORD}),
    )
    .await;
    put_secret(
        &h,
        &r.genesys_client_secret_id,
        json!({"client_id": GENESYS_CLIENT_ID, "client_secret": "rotated-genesys-secret"}),
    )
    .await;
    h.sim.add_oauth_client(SN_CLIENT_ID, "rotated-sn-secret");
    gsim.set_client_secret(GENESYS_CLIENT_ID, "rotated-genesys-secret");
    h.sim.revoke_tokens();

    for _ in 0..3 {
        h.post_new_event().await;
    }
    outcomes.extend(
        h.poller
            .drain(&writer, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    assert_eq!(tally(&outcomes), Tally::created(4), "{outcomes:?}");
    assert!(h.dead_letters().await.is_empty());
    let token_answers = |path: &str| -> Vec<u16> {
        h.sim
            .requests()
            .iter()
            .filter(|q| q.path == path)
            .map(|q| q.status)
            .collect()
    };
    assert_eq!(
        token_answers("/oauth_token.do"),
        [200, 401, 200],
        "refresher, then the writer: old client refused, secret re-read, new client accepted"
    );

    // The refresher, its tokens due, renews both with the rotated clients.
    clear_stored_token(&h, &r.genesys_token_secret_id).await;
    clear_stored_token(&h, &r.servicenow_token_secret_id).await;
    let results = refresher.run(deadline()).await;
    assert!(all_ended(&results, Refreshed::Renewed), "{results:?}");
    let genesys_answers: Vec<u16> = gsim
        .requests()
        .iter()
        .filter(|q| q.path == "/oauth/token")
        .map(|q| q.status)
        .collect();
    assert_eq!(genesys_answers, [200, 401, 200]);
}

#[tokio::test]
async fn a_401_not_about_the_token_forces_one_refresh_per_interval_and_dead_letters_with_its_reason(
) {
    let h = Harness::with(Options {
        servicenow_oauth: true,
        ..Options::default()
    })
    .await;
    let (_gsim, gurl) = genesys().await;
    refresher(&h, &gurl, GENESYS_CLIENT_SECRET)
        .run(deadline())
        .await;
    let tokens = h.sn_tokens.clone().unwrap();
    let issued = h.sim.tokens_issued();
    // The integration user lost its role: every API request answers 401, whatever the token.
    h.sim.set_faults(Faults {
        unauthorized: true,
        ..Faults::default()
    });
    for _ in 0..6 {
        h.post_new_event().await;
    }
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::dead_lettered(6), "{outcomes:?}");
    assert_eq!(
        h.sim.tokens_issued() - issued,
        1,
        "one forced refresh in the interval, not one per event"
    );
    assert_eq!(
        tokens.fallback_count(),
        1,
        "one token fetched and written to the secret"
    );
    for attrs in h.dead_letters_as(6, "servicenow_unauthorized").await {
        assert_eq!(attrs["http_status"], "401");
    }
    assert_eq!(h.queue_depth().await, 0, "nothing left to retry forever");
}

#[tokio::test]
async fn a_refused_basic_user_rereads_its_secret_once_per_interval_and_is_dead_lettered_with_its_reason(
) {
    let h = Harness::start().await;
    let creds = Arc::new(Rotating::from_secret(
        BasicCredentials {
            username: SN_USER.into(),
            password: SN_PASSWORD.into(),
        },
        aws_sdk_secretsmanager::Client::new(&h.aws),
        h.resources.servicenow_secret_id.clone(),
        Arc::new(|raw: &str| {
            let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
            Ok(BasicCredentials {
                username: v["username"].as_str().unwrap_or_default().into(),
                password: v["password"].as_str().unwrap_or_default().into(),
            })
        }),
        Duration::from_secs(60),
    ));
    let client = ServiceNowClient::new(&ServiceNowConfig {
        instance_url: h.sim_url.clone(),
        auth: ServiceNowAuth::RotatingBasic(creds.clone()),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
    })
    .unwrap();
    let writer = writer_with(&h, client);
    h.sim.set_faults(Faults {
        unauthorized: true,
        ..Faults::default()
    });
    for _ in 0..5 {
        h.post_new_event().await;
    }
    let outcomes = h
        .poller
        .drain(&writer, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(tally(&outcomes), Tally::dead_lettered(5), "{outcomes:?}");
    assert_eq!(
        creds.reloads(),
        1,
        "one re-read of the secret, not one per event"
    );
    h.dead_letters_as(5, "servicenow_unauthorized").await;
}

/// A loopback token endpoint for both providers (`/oauth_token.do`, `/oauth/token`) answering `answer`,
/// counting its requests.
async fn token_endpoint(answer: fn() -> axum::response::Response) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let handler = move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            answer()
        }
    };
    let router = axum::Router::new()
        .route("/oauth_token.do", axum::routing::post(handler.clone()))
        .route("/oauth/token", axum::routing::post(handler));
    let addr = local::http::spawn(([127, 0, 0, 1], 0).into(), router)
        .await
        .unwrap();
    (format!("http://{addr}"), hits)
}

/// Token settings for both providers at `url`, client credentials given directly.
fn token_env(h: &Harness, url: &str) -> Env {
    Env::from_pairs([
        ("SERVICENOW_INSTANCE_URL", url),
        ("SERVICENOW_CLIENT_ID", SN_CLIENT_ID),
        ("SERVICENOW_CLIENT_SECRET", SN_CLIENT_SECRET),
        ("SERVICENOW_OAUTH_GRANT", "client_credentials"),
        (
            "SERVICENOW_TOKEN_SECRET_ID",
            h.resources.servicenow_token_secret_id.as_str(),
        ),
        ("GENESYS_LOGIN_URL", url),
        ("GENESYS_CLIENT_ID", GENESYS_CLIENT_ID),
        ("GENESYS_CLIENT_SECRET", GENESYS_CLIENT_SECRET),
        (
            "GENESYS_TOKEN_SECRET_ID",
            h.resources.genesys_token_secret_id.as_str(),
        ),
    ])
}

#[tokio::test]
async fn token_endpoints_never_follow_a_redirect_so_client_secrets_stay_home() {
    let h = Harness::start().await;
    // Where a 307 points: a server that would receive the form (ServiceNow's client secret) again.
    let (elsewhere, stolen) = token_endpoint(|| {
        axum::Json(json!({"access_token": "x", "token_type": "bearer", "expires_in": 3600}))
            .into_response()
    })
    .await;
    static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TARGET.set(elsewhere).unwrap();
    let (redirecting, asked) = token_endpoint(|| {
        let to = format!("{}/oauth_token.do", TARGET.get().unwrap());
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, to)],
        )
            .into_response()
    })
    .await;
    let env = token_env(&h, &redirecting);
    let refresher =
        token_refresher::build(token_refresher::Config::from_vars(&env).unwrap(), &h.aws)
            .await
            .unwrap();
    let results = refresher.run(deadline()).await;
    assert_eq!(results.len(), 2);
    for (provider, result) in &results {
        let e = result.as_ref().unwrap_err();
        assert_eq!(e.class(), FailureClass::Permanent, "{provider}: {e}");
        assert!(e.message.contains("307"), "{provider}: {e}");
    }
    // The writer's and legacy-ingest's token sources are built the same way.
    let secrets = aws_sdk_secretsmanager::Client::new(&h.aws);
    for provider in [Provider::ServiceNow, Provider::Genesys] {
        let source = TokenSourceSettings::from_env(&env, provider)
            .unwrap()
            .build(&secrets, "tests")
            .await
            .unwrap();
        assert!(source.token().await.is_err());
    }
    assert_eq!(asked.load(Ordering::SeqCst), 4);
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn an_oversized_token_answer_is_refused_unread() {
    let h = Harness::start().await;
    // 1 MiB: once with Content-Length, once streamed without it.
    let (sized, _) = token_endpoint(|| {
        let big = "a".repeat(1 << 20);
        axum::Json(json!({"access_token": big, "token_type": "bearer", "expires_in": 3600}))
            .into_response()
    })
    .await;
    let (streamed, _) = token_endpoint(|| {
        let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 16 * 1024]));
        axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
    })
    .await;
    let secrets = aws_sdk_secretsmanager::Client::new(&h.aws);
    for url in [sized, streamed] {
        let source = TokenSourceSettings::from_env(&token_env(&h, &url), Provider::ServiceNow)
            .unwrap()
            .build(&secrets, "tests")
            .await
            .unwrap();
        let err = source.token().await.unwrap_err().to_string();
        assert!(err.contains("larger than 65536 bytes"), "{url}: {err}");
    }
}
