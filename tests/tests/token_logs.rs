//! The token-refresher and the token source never log tokens, client secrets or passwords.

use std::time::Duration;

use integration_tests::*;
use local::genesys_sim::GenesysSim;

#[tokio::test]
async fn no_token_or_secret_reaches_the_logs() {
    let captured = capture_logs("debug,aws=info,hyper=info,h2=info,reqwest=info,rustls=info,aws_smithy_runtime=info,aws_config=info");

    let h = Harness::with(Options {
        servicenow_oauth: true,
        ..Options::default()
    })
    .await;
    let gsim = GenesysSim::new(GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET);
    let gurl = format!(
        "http://{}",
        gsim.spawn(([127, 0, 0, 1], 0).into()).await.unwrap()
    );
    let deadline = || shared::retry::Deadline::after(Duration::from_secs(10));
    // Success, a permanent failure, a 401 fallback: every path that handles secrets.
    refresher(&h, &gurl, GENESYS_CLIENT_SECRET)
        .run(deadline())
        .await;
    clear_stored_token(&h, &h.resources.genesys_token_secret_id).await;
    refresher(&h, &gurl, "wrong-client-secret")
        .run(deadline())
        .await;
    h.sim.revoke_tokens();
    h.post_new_event().await;
    h.drain().await;

    let text = captured.text();
    assert!(text.contains("token renewed"), "logs were captured");
    assert!(text.contains("token refresh failed"));
    assert!(text.contains("fetched one directly"));
    let mut secrets = vec![
        GENESYS_CLIENT_SECRET.to_string(),
        "wrong-client-secret".into(),
        SN_CLIENT_SECRET.into(),
        SN_PASSWORD.into(),
        WEBHOOK_SECRET.into(),
    ];
    for id in [
        &h.resources.genesys_token_secret_id,
        &h.resources.servicenow_token_secret_id,
    ] {
        if let Some(t) = stored_token(&h, id).await {
            secrets.push(t.access_token);
        }
    }
    secrets.extend(["gsim-", "snsim-"].map(String::from)); // every issued token starts so
    for s in secrets {
        assert!(!text.contains(&s), "logs contain {s:?}");
    }
}
