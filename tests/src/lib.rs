//! Test harness: one moto server per test process (started on loopback unless `AWS_ENDPOINT_URL` is set),
//! fresh AWS resources and a fresh ServiceNow simulator per test, and the real receiver, writer and poller.

pub mod callbacks;
pub mod data_action;
pub mod dynamodb_conflicts;
pub mod ingest;
pub mod webhook_sink;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use serde_json::{json, Value};

use local::aws_setup::{self, ResourceNames, Resources};
use local::poller::Poller;
use local::servicenow_sim::ServiceNowSim;
use servicenow_writer::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};
use servicenow_writer::{Outcome, Writer, WriterConfig};
use shared::keys::KeyConfig;
use shared::oauth::{ClientAuth, ClientCredentials, Grant};
use shared::retry::RetryPolicy;
use shared::signature::SignatureScheme;
use shared::tokens::{TokenSource, TokenStore};
use webhook_receiver::{Receiver, Verification};

pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789abcdef";
pub const SN_USER: &str = "integration.user";
pub const SN_PASSWORD: &str = "s3cret-password";
pub const SN_CLIENT_ID: &str = "sn-oauth-client";
pub const SN_CLIENT_SECRET: &str = "sn-oauth-client-secret";
pub const GENESYS_CLIENT_ID: &str = "genesys-client";
pub const GENESYS_CLIENT_SECRET: &str = "genesys-client-secret";
pub const DATA_ACTION_USER: &str = "architect";
pub const DATA_ACTION_PASSWORD: &str = "data-action-test-password";
pub const CALLBACK_ACCESS_KEY: &str = "callback-access-test-key";

/// What the harness writes into the secrets.
pub fn secret_values() -> aws_setup::SecretValues {
    aws_setup::SecretValues {
        webhook: WEBHOOK_SECRET.into(),
        servicenow_basic: json!({"username": SN_USER, "password": SN_PASSWORD}),
        servicenow_oauth: json!({"client_id": SN_CLIENT_ID, "client_secret": SN_CLIENT_SECRET,
                                 "username": SN_USER, "password": SN_PASSWORD}),
        genesys_client: json!({"client_id": GENESYS_CLIENT_ID, "client_secret": GENESYS_CLIENT_SECRET}),
        data_action: json!({"username": DATA_ACTION_USER, "password": DATA_ACTION_PASSWORD}),
        callback_access: CALLBACK_ACCESS_KEY.into(),
    }
}

/// A count from the environment variable `name` (a bound of a load run or benchmark), else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn moto_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
            return url;
        }
        // moto with DynamoDB writes applied one at a time, as on AWS (see the script).
        let python = std::env::var("MOTO_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join(".venv/bin/python"));
        let server = workspace_root().join("scripts/moto-server.py");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        // The shell stops moto when this process exits and its stdin closes.
        let script =
            r#""$0" "$1" -H 127.0.0.1 -p "$2" >/dev/null 2>&1 & pid=$!; read _ignored; kill $pid"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&python)
            .arg(&server)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `make venv`)", server.display()));
        // Keep stdin open for the life of the process.
        std::mem::forget(child);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let until = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < until,
                "moto server did not start at {addr} ({})",
                server.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://{addr}")
    })
}

/// SDK configuration pointing at the emulator, with dummy credentials: the functions' HTTP client and
/// request pipeline, with the SDK's default timeouts.
pub async fn aws_config() -> aws_config::SdkConfig {
    shared::aws::as_the_functions_call(aws_config::defaults(BehaviorVersion::latest()))
        .endpoint_url(moto_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

pub struct Harness {
    pub aws: aws_config::SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub resources: Resources,
    pub sim: ServiceNowSim,
    pub sim_url: String,
    pub receiver_url: String,
    pub receiver: Arc<Receiver>,
    pub writer: Writer,
    pub poller: Poller,
    /// The writer's ServiceNow token source, in OAuth mode.
    pub sn_tokens: Option<Arc<TokenSource>>,
}

pub fn basic_auth() -> ServiceNowAuth {
    ServiceNowAuth::Basic {
        username: SN_USER.into(),
        password: SN_PASSWORD.into(),
    }
}

/// The simulator's OAuth client, password grant (ServiceNow's classic flow).
pub fn servicenow_oauth_client(sim_url: &str) -> ClientCredentials {
    ClientCredentials {
        token_url: format!("{sim_url}/oauth_token.do"),
        client_id: SN_CLIENT_ID.into(),
        client_secret: SN_CLIENT_SECRET.into(),
        scope: None,
        grant: Grant::Password {
            username: SN_USER.into(),
            password: SN_PASSWORD.into(),
        },
        client_auth: ClientAuth::Form,
    }
}

#[derive(Clone)]
pub struct Options {
    pub visibility_timeout_secs: u32,
    pub max_receive_count: u32,
    pub retry: RetryPolicy,
    pub invocation_timeout: Duration,
    /// The writer authenticates to ServiceNow with OAuth tokens (token secret + fallback) instead of Basic.
    pub servicenow_oauth: bool,
    /// The writer's mapping (the built-in one when `None`).
    pub mapping: Option<shared::Mapping>,
    /// The writer's settle window after a write that may have been applied without an answer.
    pub settle: Duration,
    /// The ServiceNow client's request timeout.
    pub servicenow_timeout: Duration,
    /// The writer paces to ServiceNow's announced rate limit (shared by its concurrent requests).
    pub rate_limiter: bool,
    /// How many writers (containers) share the rate limit.
    pub rate_limit_containers: u32,
    /// Create through this Import Set staging table instead of the Table API.
    pub import_set_table: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 2,
            max_receive_count: 5,
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
                max_retry_after: Duration::from_secs(5),
            },
            invocation_timeout: Duration::from_secs(8),
            servicenow_oauth: false,
            mapping: None,
            settle: Duration::from_secs(1),
            servicenow_timeout: Duration::from_secs(3),
            rate_limiter: true,
            rate_limit_containers: 1,
            import_set_table: None,
        }
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Self {
        let aws = aws_config().await;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut names = ResourceNames::with_prefix(&prefix);
        names.visibility_timeout_secs = opts.visibility_timeout_secs;
        names.max_receive_count = opts.max_receive_count;
        let resources = aws_setup::ensure(&aws, &names, &secret_values())
            .await
            .expect("create AWS resources on moto");

        let sim = ServiceNowSim::new(SN_USER, SN_PASSWORD);
        sim.add_oauth_client(SN_CLIENT_ID, SN_CLIENT_SECRET);
        let sim_addr = sim
            .spawn(([127, 0, 0, 1], 0).into())
            .await
            .expect("start simulator");
        let sim_url = format!("http://{sim_addr}");

        let sqs = aws_sdk_sqs::Client::new(&aws);
        let receiver = Arc::new(Receiver::new(
            webhook_receiver::Config {
                queue_url: resources.queue_url.clone(),
                verification: Verification::Secret {
                    secret_id: resources.webhook_secret_id.clone(),
                },
                organization_id: "6f1a0c4e-0000-4000-8000-00000000000a".into(),
                ..webhook_receiver::Config::default()
            },
            sqs.clone(),
            aws_sdk_secretsmanager::Client::new(&aws),
        ));
        receiver.warm_up().await.expect("load webhook secret");
        let receiver_addr = local::http::spawn(
            ([127, 0, 0, 1], 0).into(),
            local::http::receiver_router(receiver.clone()),
        )
        .await
        .expect("serve receiver");

        let sn_tokens = opts.servicenow_oauth.then(|| {
            Arc::new(TokenSource::new(
                "servicenow",
                token_client(),
                servicenow_oauth_client(&sim_url),
                Some(TokenStore::new(
                    aws_sdk_secretsmanager::Client::new(&aws),
                    resources.servicenow_token_secret_id.clone(),
                )),
                Duration::from_millis(500),
            ))
        });
        let writer = build_writer(&aws, &resources, &sim_url, sn_tokens.clone(), &opts);
        let poller = Poller {
            sqs: sqs.clone(),
            queue_url: resources.queue_url.clone(),
            queue_arn: resources.queue_arn.clone(),
            batch_size: 10,
            invocation_timeout: opts.invocation_timeout,
            wait_time_secs: 1,
        };
        Harness {
            sn_tokens,
            aws,
            sqs,
            resources,
            sim,
            sim_url,
            receiver_url: format!("http://{receiver_addr}/webhooks/genesys"),
            receiver,
            writer,
            poller,
        }
    }

    /// Another writer on the same queue, table and simulator: another container, with its own clients (and
    /// so its own rate limiter).
    pub fn another_writer(&self, opts: &Options) -> Writer {
        build_writer(
            &self.aws,
            &self.resources,
            &self.sim_url,
            self.sn_tokens.clone(),
            opts,
        )
    }

    /// POSTs a signed event for a new conversation and checks it was queued; returns the body.
    pub async fn post_new_event(&self) -> String {
        let body = webhook_event(&new_conversation(), json!({})).to_string();
        let (status, reply) = self.post_signed(&body).await;
        assert_eq!(status, 202, "{reply}");
        body
    }

    /// POSTs `body` to the receiver with a valid signature.
    pub async fn post_signed(&self, body: &str) -> (u16, Value) {
        let sig = SignatureScheme::default().sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
        self.post(body, Some(&sig)).await
    }

    /// POSTs a bare body with a valid signature, naming its event type in the URL (`?event=`).
    pub async fn post_signed_bare(&self, body: &str, event_type: Option<&str>) -> (u16, Value) {
        let sig = SignatureScheme::default().sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
        let url = match event_type {
            Some(t) => format!("{}?event={t}", self.receiver_url),
            None => self.receiver_url.clone(),
        };
        self.post_to(&url, body, Some(&sig)).await
    }

    pub async fn post(&self, body: &str, signature: Option<&str>) -> (u16, Value) {
        self.post_to(&self.receiver_url, body, signature).await
    }

    async fn post_to(&self, url: &str, body: &str, signature: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = signature {
            req = req.header("X-Hub-Signature-256", s);
        }
        let resp = req.send().await.expect("receiver reachable");
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(Value::Null);
        (status, json)
    }

    /// Claims the event key of `raw` as an invocation that is about to die would: its lease ends after
    /// `lease`. Returns the event, its key and the claim.
    pub async fn claim_as_dying_invocation(
        &self,
        raw: &str,
        lease: Duration,
    ) -> (
        shared::InboundEvent<'static>,
        String,
        servicenow_writer::idempotency::Claim,
    ) {
        let event = shared::InboundEvent::parse(raw.as_bytes())
            .expect("valid event")
            .into_owned();
        let key = KeyConfig::default().derive(&event).key;
        let store = servicenow_writer::idempotency::IdempotencyStore::new(
            aws_sdk_dynamodb::Client::new(&self.aws),
            self.resources.table.clone(),
            Duration::from_secs(3600),
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let claim = store
            .claim(
                &key,
                &shared::keys::payload_hash(&event),
                now_ms + lease.as_millis() as u64,
            )
            .await
            .expect("claim");
        (event, key, claim)
    }

    /// A ServiceNow client for the simulator, with the harness's Basic credentials.
    pub fn servicenow_client(&self) -> ServiceNowClient {
        ServiceNowClient::new(&ServiceNowConfig {
            instance_url: self.sim_url.clone(),
            auth: basic_auth(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
        })
        .expect("http client")
    }

    /// Sends a raw message to the events queue (as an EventBridge rule or a replay would).
    pub async fn enqueue_raw(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.resources.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send to queue");
    }

    /// Sends `body` with these string message attributes (a replay of a dead letter, say).
    pub async fn enqueue_with_attributes(
        &self,
        body: &str,
        attributes: &std::collections::HashMap<String, String>,
    ) {
        let pairs: Vec<(&str, String)> = attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        self.sqs
            .send_message()
            .queue_url(&self.resources.queue_url)
            .message_body(body)
            .set_message_attributes(Some(shared::aws::string_attributes(pairs)))
            .send()
            .await
            .expect("send to queue");
    }

    /// Deletes every claim and conversation record, as their TTL would.
    pub async fn clear_table(&self) {
        let ddb = aws_sdk_dynamodb::Client::new(&self.aws);
        let items = ddb
            .scan()
            .table_name(&self.resources.table)
            .send()
            .await
            .expect("scan the table")
            .items
            .unwrap_or_default();
        for item in items {
            ddb.delete_item()
                .table_name(&self.resources.table)
                .set_key(Some(item.into_iter().filter(|(k, _)| k == "id").collect()))
                .send()
                .await
                .expect("delete an item");
        }
    }

    /// Milliseconds between the simulator's first 429 and the next request it received.
    pub fn ms_from_first_429_to_the_next_request(&self) -> u64 {
        let log = self.sim.requests();
        let throttled = log
            .iter()
            .find(|r| r.status == 429)
            .expect("a 429 was served");
        let next = log
            .iter()
            .find(|r| r.at_ms > throttled.at_ms)
            .expect("a request after the 429");
        next.at_ms - throttled.at_ms
    }

    /// Runs the writer until the queue is empty.
    pub async fn drain(&self) -> Vec<(String, Outcome)> {
        self.poller
            .drain(&self.writer, Duration::from_secs(60))
            .await
            .expect("queue drains")
    }

    pub async fn queue_depth(&self) -> u64 {
        self.poller.queue_depth().await.expect("queue attributes")
    }

    /// Receives the DLQ's messages, checks there are `count`, each with `reason`; their attributes.
    pub async fn dead_letters_as(
        &self,
        count: usize,
        reason: &str,
    ) -> Vec<std::collections::HashMap<String, String>> {
        let dead = self.dead_letters().await;
        assert_eq!(dead.len(), count, "{dead:?}");
        dead.into_iter()
            .map(|(_, attrs)| {
                assert_eq!(attrs["failure_reason"], reason, "{attrs:?}");
                attrs
            })
            .collect()
    }

    /// Receives everything on the DLQ: (body, attributes).
    pub async fn dead_letters(&self) -> Vec<(String, std::collections::HashMap<String, String>)> {
        let mut out = Vec::new();
        for _ in 0..5 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.resources.dead_letter_queue_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .visibility_timeout(30)
                .send()
                .await
                .expect("receive from DLQ");
            let msgs = got.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.clone(), v.string_value().unwrap_or_default().to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.body.unwrap_or_default(), attrs));
            }
        }
        out
    }
}

/// The writer as the harness runs it: its settings from `opts`, Basic auth or the OAuth token source.
fn build_writer(
    aws: &aws_config::SdkConfig,
    resources: &Resources,
    sim_url: &str,
    sn_tokens: Option<Arc<TokenSource>>,
    opts: &Options,
) -> Writer {
    let client = ServiceNowClient::new(&ServiceNowConfig {
        instance_url: sim_url.to_string(),
        auth: match &sn_tokens {
            Some(t) => ServiceNowAuth::OAuth(t.clone()),
            None => basic_auth(),
        },
        connect_timeout: Duration::from_secs(2),
        request_timeout: opts.servicenow_timeout,
    })
    .expect("http client");
    let client = match opts.rate_limiter {
        true => client,
        false => client.without_rate_limiter(),
    };
    Writer::new(
        WriterConfig {
            dead_letter_queue_url: resources.dead_letter_queue_url.clone(),
            idempotency_table: resources.table.clone(),
            conversation_lock_wait: Duration::from_secs(3),
            retry: opts.retry,
            deadline_reserve: Duration::from_millis(300),
            default_caller_sys_id: Some("default-caller-sys-id".into()),
            settle: opts.settle,
            events_queue_url: Some(resources.queue_url.clone()),
            max_receive_count: Some(opts.max_receive_count),
            rate_limit_containers: opts.rate_limit_containers,
            import_set_table: opts.import_set_table.clone(),
            callback_requests_queue_url: Some(resources.callback_events_queue_url.clone()),
            ..WriterConfig::default()
        },
        opts.mapping
            .clone()
            .unwrap_or_else(|| shared::Mapping::default_mapping().expect("default mapping")),
        client,
        aws_sdk_dynamodb::Client::new(aws),
        aws_sdk_sqs::Client::new(aws),
    )
}

pub const CONVERSATION: &str = "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b";

/// A webhook-envelope `customer.end` event for `conversation_id` (the `make send-sample` event), with `extra`
/// fields merged into its data.
pub fn webhook_event(conversation_id: &str, extra: Value) -> Value {
    let mut event = local::sample_event(conversation_id);
    if let (Some(d), Some(e)) = (event["data"].as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    event
}

/// A webhook-envelope `acw` (after-call work) event of `conversation_id` with its wrap-up code and notes.
pub fn acw_event(conversation_id: &str, wrapup_code: &str, wrapup_notes: &str) -> Value {
    json!({
        "event": format!("v2.detail.events.conversation.{conversation_id}.acw"),
        "data": {
            "conversationId": conversation_id,
            "participantId": "9b1c2d3e-0000-4000-8000-000000000002",
            "mediaType": "voice",
            "direction": "inbound",
            "userId": "a1b2c3d4-0000-4000-8000-0000000000aa",
            "queueId": "5e6f7a8b-0000-4000-8000-0000000000bb",
            "wrapupCode": wrapup_code,
            "wrapupNotes": wrapup_notes,
            "wrapupDurationSeconds": 95,
            "eventTime": 1_795_428_120_000i64
        },
        "metadata": {"organizationId": "6f1a0c4e-0000-4000-8000-00000000000a", "timestamp": "2026-11-23T10:02:00.000Z"}
    })
}

/// A seed fixture (`shared/tests/fixtures/`): the seeds' example bodies.
pub fn fixture(name: &str) -> Value {
    let path = workspace_root().join("shared/tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same conversation event as Genesys' Amazon EventBridge integration delivers it.
pub fn eventbridge_event(conversation_id: &str, event_id: &str) -> Value {
    let body = webhook_event(conversation_id, json!({}))["data"].clone();
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": "v2.detail.events.conversation.{id}.customer.end",
        "source": "aws.partner/genesys.com/cloud/6f1a0c4e-0000-4000-8000-00000000000a/servicenow",
        "account": "123456789012",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{conversation_id}.customer.end"),
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": "4c7e1f00-0000-4000-8000-0000000000cc"},
            "timestamp": "2026-11-23T10:00:00.500Z"
        }
    })
}

/// A fresh random conversation id.
pub fn new_conversation() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Outcomes counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub created: usize,
    pub updated: usize,
    pub reconciled: usize,
    pub duplicates: usize,
    pub dead_lettered: usize,
    pub retried: usize,
}

impl Tally {
    pub fn created(n: usize) -> Self {
        Tally {
            created: n,
            ..Tally::default()
        }
    }
    pub fn duplicates(n: usize) -> Self {
        Tally {
            duplicates: n,
            ..Tally::default()
        }
    }
    pub fn reconciled(n: usize) -> Self {
        Tally {
            reconciled: n,
            ..Tally::default()
        }
    }
    pub fn dead_lettered(n: usize) -> Self {
        Tally {
            dead_lettered: n,
            ..Tally::default()
        }
    }
}

pub fn tally(outcomes: &[(String, Outcome)]) -> Tally {
    let mut t = Tally::default();
    for (_, o) in outcomes {
        match o {
            Outcome::Created { .. } => t.created += 1,
            Outcome::Updated { .. } => t.updated += 1,
            Outcome::Reconciled { .. } => t.reconciled += 1,
            Outcome::Duplicate { .. } => t.duplicates += 1,
            Outcome::DeadLettered { .. } => t.dead_lettered += 1,
            Outcome::Retry { .. } => t.retried += 1,
        }
    }
    t
}

/// A token-refresher for this harness's ServiceNow simulator and a Genesys simulator at `genesys_url`,
/// authenticating to Genesys with `genesys_secret`.
pub fn refresher(
    h: &Harness,
    genesys_url: &str,
    genesys_secret: &str,
) -> token_refresher::Refresher {
    let sm = aws_sdk_secretsmanager::Client::new(&h.aws);
    token_refresher::Refresher {
        http: token_client(),
        jobs: vec![
            token_refresher::ProviderJob {
                provider: shared::tokens::Provider::Genesys,
                creds: ClientCredentials::basic(
                    format!("{genesys_url}/oauth/token"),
                    GENESYS_CLIENT_ID,
                    genesys_secret,
                )
                .into(),
                store: TokenStore::new(sm.clone(), h.resources.genesys_token_secret_id.clone()),
            },
            token_refresher::ProviderJob {
                provider: shared::tokens::Provider::ServiceNow,
                creds: servicenow_oauth_client(&h.sim_url).into(),
                store: TokenStore::new(sm, h.resources.servicenow_token_secret_id.clone()),
            },
        ],
        policy: shared::tokens::RefreshPolicy::default(),
        retry: shared::retry::Retrier {
            policy: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
                max_retry_after: Duration::from_secs(1),
            },
            ..token_refresher::retrier()
        },
    }
}

/// The HTTP client token sources and the refresher use (no redirects, bounded answers).
pub fn token_client() -> reqwest::Client {
    shared::http_client::token_client("tests").expect("token client")
}

/// The stored token of a token secret.
pub async fn stored_token(h: &Harness, secret_id: &str) -> Option<shared::tokens::StoredToken> {
    TokenStore::new(aws_sdk_secretsmanager::Client::new(&h.aws), secret_id)
        .read()
        .await
        .expect("token secret readable")
}

/// Log output captured in memory by [`capture_logs`].
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Installs a JSON subscriber (as in production) writing into memory; once per test process.
pub fn capture_logs(filter: &str) -> CapturedLogs {
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("first subscriber in this process");
    captured
}

/// A ServiceNow token source over the harness's token secret, as the writer builds it.
pub fn servicenow_token_source(h: &Harness) -> TokenSource {
    TokenSource::new(
        "servicenow",
        token_client(),
        servicenow_oauth_client(&h.sim_url),
        Some(TokenStore::new(
            aws_sdk_secretsmanager::Client::new(&h.aws),
            h.resources.servicenow_token_secret_id.clone(),
        )),
        Duration::from_secs(60),
    )
}

/// Empties a token secret (the placeholder the template creates).
pub async fn clear_stored_token(h: &Harness, secret_id: &str) {
    aws_sdk_secretsmanager::Client::new(&h.aws)
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string("{}")
        .send()
        .await
        .expect("token secret writable");
}

/// Whether every provider ended with `expected`.
pub fn all_ended(
    results: &[(
        &'static str,
        Result<token_refresher::Refreshed, token_refresher::RefreshError>,
    )],
    expected: token_refresher::Refreshed,
) -> bool {
    results
        .iter()
        .all(|(_, r)| r.as_ref().ok() == Some(&expected))
}

/// A Genesys simulator on loopback that knows the queue `queue-support`, and the functions' Platform API client
/// over it (OAuth client `cb-client`).
pub async fn genesys_with_api() -> (local::genesys_sim::GenesysSim, shared::genesys::GenesysApi) {
    let sim = local::genesys_sim::GenesysSim::new("cb-client", "cb-secret");
    sim.add_queue("queue-support");
    let url = format!(
        "http://{}",
        sim.spawn(([127, 0, 0, 1], 0).into())
            .await
            .expect("genesys sim")
    );
    let http = shared::http_client::client(
        "tests",
        shared::http_client::Timeouts::new(Duration::from_secs(2), Duration::from_secs(3)),
    )
    .expect("http client");
    let tokens = Arc::new(TokenSource::new(
        "genesys",
        http.clone(),
        ClientCredentials::basic(format!("{url}/oauth/token"), "cb-client", "cb-secret"),
        None,
        Duration::from_secs(60),
    ));
    (sim, shared::genesys::GenesysApi::new(http, &url, tokens))
}

/// Waits (in 20 ms steps, at most 10 s) until `ready` holds; panics naming `what` when it never does.
pub async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < give_up, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes the lease of `key` (a claim or lock record in `table`) from its holder, as a new holder would once
/// the old lease ran out: the record deleted, then claimed afresh through `store`. The new holder's token.
pub async fn take_over(
    store: &shared::idempotency::IdempotencyStore,
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    payload_hash: &str,
) -> String {
    dynamodb
        .delete_item()
        .table_name(table)
        .key("id", shared::idempotency::s(key))
        .send()
        .await
        .expect("the record deleted");
    let until = shared::clock::epoch_ms() + 60_000;
    match store
        .claim(key, payload_hash, until)
        .await
        .expect("claimed")
    {
        shared::idempotency::Claim::Acquired { token, .. } => token,
        other => panic!("{key} was not free to take over: {other:?}"),
    }
}
