//! Runs the pipeline locally against an AWS emulator: `serve`, `send-sample`, … (`make replay` is `bridge-ops`).
//! See `make run` and the README.

use std::sync::Arc;
use std::time::Duration;

use local::aws_setup::{self, BoxError, ResourceNames};
use local::poller::Poller;
use servicenow_writer::Outcome;
use shared::config::Env;
use shared::signature::SignatureScheme;
use webhook_receiver::Verification;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    shared::logging::init_json_logging();
    match std::env::args().nth(1).as_deref() {
        Some("serve") => serve().await,
        Some("send-sample") => send_sample().await,
        Some("send-flow-sample") => {
            post_signed(SEED_000_FLOW_WEBHOOK.to_string(), "/webhooks/genesys").await
        }
        Some("send-ivr-sample") => {
            let path = "/webhooks/genesys?event=ivr:escalation";
            post_signed(SEED_001_IVR_BODY.to_string(), path).await
        }
        Some("mint-token") => {
            println!("{}", mint_token(std::env::args().nth(2).as_deref()));
            Ok(())
        }
        Some("send-ingest-sample") => send_ingest_sample().await,
        Some("data-action-sample") => data_action_sample().await,
        _ => {
            eprintln!("usage: local-runner serve | send-sample | send-flow-sample | send-ivr-sample | mint-token [ES256|RS256] | send-ingest-sample | data-action-sample");
            std::process::exit(2);
        }
    }
}

fn webhook_secret() -> String {
    Env::process()
        .optional("LOCAL_WEBHOOK_SECRET")
        .unwrap_or_else(|| local::LOCAL_WEBHOOK_SECRET.into())
}

fn receiver_addr() -> String {
    Env::process()
        .optional("RECEIVER_ADDR")
        .unwrap_or_else(|| "127.0.0.1:3000".into())
}

async fn serve() -> Result<(), BoxError> {
    let aws = shared::aws::sdk_config().await;
    let sn_url = Env::process()
        .optional("SERVICENOW_INSTANCE_URL")
        .unwrap_or_else(|| "http://127.0.0.1:8091".into());
    let env_or = |name: &'static str, default: &str| {
        Env::process()
            .optional(name)
            .unwrap_or_else(|| default.to_string())
    };
    let (sn_user, sn_password) = (
        env_or("SERVICENOW_USERNAME", local::LOCAL_SN_USER),
        env_or("SERVICENOW_PASSWORD", local::LOCAL_SN_PASSWORD),
    );
    let names = ResourceNames::local();
    let callback_access_key = uuid::Uuid::new_v4().simple().to_string();
    let res = aws_setup::ensure(
        &aws,
        &names,
        &aws_setup::SecretValues {
            webhook: webhook_secret(),
            servicenow_basic: serde_json::json!({"username": sn_user, "password": sn_password}),
            servicenow_oauth: serde_json::json!({
                "client_id": env_or("SERVICENOW_CLIENT_ID", local::LOCAL_SN_CLIENT_ID),
                "client_secret": env_or("SERVICENOW_CLIENT_SECRET", local::LOCAL_SN_CLIENT_SECRET),
                "username": sn_user, "password": sn_password}),
            genesys_client: serde_json::json!({
                "client_id": env_or("GENESYS_CLIENT_ID", local::LOCAL_GENESYS_CLIENT_ID),
                "client_secret": env_or("GENESYS_CLIENT_SECRET", local::LOCAL_GENESYS_CLIENT_SECRET)}),
            data_action: serde_json::json!({
                "username": env_or("DATA_ACTION_USERNAME", local::LOCAL_DATA_ACTION_USER),
                "password": env_or("DATA_ACTION_PASSWORD", local::LOCAL_DATA_ACTION_PASSWORD)}),
            callback_access: callback_access_key.clone(),
        },
    )
    .await?;
    // The functions' settings: the user's environment, with the resources just created (as template.yaml
    // passes them to the Lambdas).
    let mut env = Env::process().with([
        ("SERVICENOW_INSTANCE_URL", sn_url.as_str()),
        (
            "SERVICENOW_CREDENTIALS_SECRET_ID",
            &res.servicenow_secret_id,
        ),
        (
            "SERVICENOW_OAUTH_CREDENTIALS_SECRET_ID",
            &res.servicenow_oauth_secret_id,
        ),
        (
            "GENESYS_CREDENTIALS_SECRET_ID",
            &res.genesys_client_secret_id,
        ),
        ("GENESYS_TOKEN_SECRET_ID", &res.genesys_token_secret_id),
        ("EVENTS_QUEUE_URL", &res.queue_url),
        ("WEBHOOK_SECRET_ID", &res.webhook_secret_id),
        ("DEAD_LETTER_QUEUE_URL", &res.dead_letter_queue_url),
        ("IDEMPOTENCY_TABLE", &res.table),
        ("CALLBACKS_TABLE", &res.callbacks_table),
        (
            "CALLBACK_REQUESTS_QUEUE_URL",
            &res.callback_events_queue_url,
        ),
        ("CALLBACK_ACCESS_SECRET_ID", &res.callback_access_secret_id),
        (
            "DATA_ACTION_CREDENTIALS_SECRET_ID",
            &res.data_action_secret_id,
        ),
        (
            "WRITER_MAX_RECEIVE_COUNT",
            &names.max_receive_count.to_string(),
        ),
    ]);
    // ServiceNow tokens are kept only when the writer uses OAuth (always with the simulator).
    if env.optional("SERVICENOW_AUTH").as_deref() == Some("oauth") {
        env = env.with([(
            "SERVICENOW_TOKEN_SECRET_ID",
            &res.servicenow_token_secret_id,
        )]);
    }
    let sqs = aws_sdk_sqs::Client::new(&aws);

    // The token-refresher on a short local schedule; its first run stores tokens before anything calls out.
    let every = Duration::from_secs(env.parse_or("LOCAL_REFRESH_SECONDS", 30u64)?);
    let refresher_env = env
        .clone()
        .with([("REFRESH_SCHEDULE_SECONDS", every.as_secs().to_string())]);
    let refresher =
        token_refresher::build(token_refresher::Config::from_vars(&refresher_env)?, &aws).await?;
    tokio::spawn(async move {
        loop {
            let results = refresher
                .run(shared::retry::Deadline::after(Duration::from_secs(20)))
                .await;
            for (provider, result) in results {
                match result {
                    Ok(token_refresher::Refreshed::Renewed) => {
                        println!("  token-refresher: {provider} token renewed")
                    }
                    Ok(token_refresher::Refreshed::StillFresh) => {}
                    Err(e) => println!("  token-refresher: {e}"),
                }
            }
            tokio::time::sleep(every).await;
        }
    });

    let receiver_config = webhook_receiver::Config::from_vars(&env)?;
    if matches!(receiver_config.verification, Verification::Disabled) {
        println!("WARNING: webhook signature verification is disabled");
    }
    let receiver = Arc::new(webhook_receiver::build(receiver_config, &aws).await?);
    let ingest =
        Arc::new(legacy_ingest::build(legacy_ingest::Config::from_vars(&env)?, &aws).await?);
    let actions = Arc::new(data_action::build(data_action::Config::from_vars(&env)?, &aws).await?);
    let callback_env = match env.optional("CALLBACK_QUEUES") {
        Some(_) => env.clone(),
        None => env
            .clone()
            .with([("CALLBACK_QUEUES", local::LOCAL_CALLBACK_QUEUES)]),
    };
    let callbacks = Arc::new(
        callback_api::config::build(
            callback_api::config::Config::from_vars(&callback_env)?,
            &aws,
        )
        .await?,
    );
    let ws_addr: std::net::SocketAddr = env_or("CALLBACK_WS_ADDR", "127.0.0.1:3001").parse()?;
    let genesys_url = env_or("GENESYS_API_URL", "http://127.0.0.1:8092");
    let live = local::callback_stack::start(
        &aws,
        &res,
        &callback_access_key,
        ws_addr,
        format!("http://{}/local/subscriber", receiver_addr()),
        local::callback_stack::EventSource::Http {
            url: genesys_url.clone(),
            client: reqwest::Client::new(),
        },
        // callback-events books the callbacks a mapping profile asks the writer for.
        Some(
            callback_api::config::build_booking(
                callback_api::config::Config::from_vars(&callback_env)?,
                &aws,
            )
            .await?,
        ),
    )
    .await?;
    let router = local::http::receiver_router(receiver)
        .merge(local::http::ingest_router(ingest))
        .merge(local::http::data_action_router(actions))
        .merge(local::http::callback_router(callbacks))
        .merge(local::callback_stack::page_router(
            &live.websocket_url,
            local::callback_stack::LocalSubscriber::default(),
        ));
    let addr = local::http::spawn(receiver_addr().parse()?, router).await?;

    let mut writer_config = servicenow_writer::Config::from_vars(&env)?;
    writer_config
        .writer
        .default_caller_sys_id
        .get_or_insert_with(|| "local-default-caller".into());
    let writer = servicenow_writer::build(writer_config, &aws).await?;
    let poller = Poller {
        sqs,
        queue_url: res.queue_url.clone(),
        queue_arn: res.queue_arn.clone(),
        batch_size: env.parse_or("BATCH_SIZE", 10)?,
        invocation_timeout: Duration::from_secs(25),
        wait_time_secs: 2,
    };
    println!(
        "\n  Webhook receiver: http://{addr}/webhooks/genesys\n  Legacy ingest:    http://{addr}/ingest\n  Data actions:     http://{addr}/data-actions/{{createIncident,lookupIncident,lookupCaller}}  (Basic {}:{})\n  Web callbacks:    http://{addr}/callbacks  (queue support; book one in a browser: http://{addr}/book)\n  Callback status:  {}  (WebSocket; ?token=<live_token>)\n  Move a callback:  curl -X POST {}/sim/callbacks/<conversationId>/user.start   (then acw, or customer.end)\n  ServiceNow:       {sn_url}\n  Queue:            {}\n  DLQ:              {}\n\n  Send a signed sample:   make send-sample\n  Send a legacy event:    make send-ingest-sample   (token: make mint-token)\n  Genesys data table:     make genesys-rows   (custom endpoint: make genesys-events)\n  See the incidents:      curl -s {sn_url}/sim/incidents\n  Replay the DLQ:         make replay ARGS=--dry-run   (then ARGS=\"--reason mapping_failed\")\n  Call a data action:     make data-action-sample\n",
        env_or("DATA_ACTION_USERNAME", local::LOCAL_DATA_ACTION_USER),
        env_or("DATA_ACTION_PASSWORD", local::LOCAL_DATA_ACTION_PASSWORD),
        live.websocket_url,
        genesys_url,
        res.queue_url,
        res.dead_letter_queue_url
    );
    loop {
        match poller.poll_once(&writer).await {
            Ok(outcomes) => {
                for (message_id, outcome) in outcomes {
                    match outcome {
                        Outcome::Created { number } => println!("  {message_id}: created {number}"),
                        Outcome::Updated { number } => {
                            println!("  {message_id}: work note added to {number}")
                        }
                        Outcome::Reconciled { number } => {
                            println!("  {message_id}: already existed as {number}")
                        }
                        Outcome::Duplicate { number } => {
                            println!(
                                "  {message_id}: duplicate of {}",
                                number.unwrap_or_default()
                            )
                        }
                        Outcome::DeadLettered { reason } => {
                            println!("  {message_id}: dead-lettered ({reason})")
                        }
                        Outcome::Retry { reason, .. } => {
                            println!("  {message_id}: will retry ({reason})")
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("poll failed: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Seed 000's `flow:webhook:outbound` example and seed 001's flat IVR escalation body.
const SEED_000_FLOW_WEBHOOK: &str =
    include_str!("../../../shared/tests/fixtures/seed-000-flow-webhook.json");
const SEED_001_IVR_BODY: &str =
    include_str!("../../../shared/tests/fixtures/seed-001-ivr-escalation.body.json");

async fn send_sample() -> Result<(), BoxError> {
    let conversation = Env::process()
        .optional("SAMPLE_CONVERSATION_ID")
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    post_signed(
        local::sample_event(&conversation).to_string(),
        "/webhooks/genesys",
    )
    .await
}

/// POSTs `body` to the running receiver at `path`, signed with the local webhook secret.
async fn post_signed(body: String, path: &str) -> Result<(), BoxError> {
    let signature = SignatureScheme::default().sign(webhook_secret().as_bytes(), body.as_bytes());
    let url = format!("http://{}{path}", receiver_addr());
    println!("POST {url}\nX-Hub-Signature-256: {signature}\n{body}\n");
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await?;
    println!("{} {}", response.status(), response.text().await?);
    Ok(())
}

/// Moves every DLQ message back to the events queue (receive → send → delete; moto has no StartMessageMoveTask).
fn mint_token(alg: Option<&str>) -> String {
    let alg = match alg.map(str::to_ascii_uppercase).as_deref() {
        Some("RS256") => jsonwebtoken::Algorithm::RS256,
        _ => jsonwebtoken::Algorithm::ES256,
    };
    local::dev_tokens::mint(alg, &local::dev_tokens::standard_claims())
}

async fn send_ingest_sample() -> Result<(), BoxError> {
    let transaction = Env::process()
        .optional("SAMPLE_TRANSACTION_ID")
        .unwrap_or_else(|| format!("TX-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let body = local::dev_tokens::sample_business_event(&transaction).to_string();
    let url = format!("http://{}/ingest", receiver_addr());
    println!("POST {url}\nAuthorization: Bearer <dev ES256 token>\n{body}\n");
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(mint_token(None))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    println!("{} {}", response.status(), response.text().await?);
    Ok(())
}

/// Calls the running data-action endpoint as Architect would: seed 001's body to `createIncident` (a new
/// call id unless SAMPLE_CONVERSATION_ID is set), then `lookupIncident` and `lookupCaller` for it.
async fn data_action_sample() -> Result<(), BoxError> {
    let env = Env::process();
    let conversation = env
        .optional("SAMPLE_CONVERSATION_ID")
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut ivr: serde_json::Value = serde_json::from_str(SEED_001_IVR_BODY)?;
    ivr["callId"] = serde_json::json!(conversation);
    let user = env
        .optional("DATA_ACTION_USERNAME")
        .unwrap_or_else(|| local::LOCAL_DATA_ACTION_USER.into());
    let password = env
        .optional("DATA_ACTION_PASSWORD")
        .unwrap_or_else(|| local::LOCAL_DATA_ACTION_PASSWORD.into());
    let http = reqwest::Client::new();
    let calls = [
        ("createIncident", ivr.clone()),
        (
            "lookupIncident",
            serde_json::json!({"conversationId": conversation}),
        ),
        (
            "lookupCaller",
            serde_json::json!({"phoneNumber": ivr["customerPhone"]}),
        ),
    ];
    for (action, body) in calls {
        let url = format!("http://{}/data-actions/{action}", receiver_addr());
        println!("POST {url}\n{body}");
        let response = http
            .post(&url)
            .basic_auth(&user, Some(&password))
            .json(&body)
            .send()
            .await?;
        println!("{} {}\n", response.status(), response.text().await?);
    }
    Ok(())
}
