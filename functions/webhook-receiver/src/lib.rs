//! webhook-receiver: `POST /webhooks/genesys`.
//!
//! Verifies the HMAC signature over the raw body (constant time), validates the envelope, puts the raw body on
//! SQS and answers `202 {messageId}` only once SQS accepted it. A message SQS can never take (over the queue's
//! `MaximumMessageSize` with its attributes, or with characters SQS refuses) gets 413 / 400; every other SQS
//! failure answers 503 so Genesys retries.
//! A bare JSON body (no envelope, e.g. an Architect HTTP action's flat IVR body) is accepted when the request
//! names its event type (`?event=ivr:escalation`); it is queued wrapped in the webhook envelope.

pub mod queue;
pub mod secret;

use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderMap;
use serde_json::json;
use tracing::{error, info, warn};

use shared::aws::string_attributes;
use shared::config::{renamed, ConfigError, Env};
use shared::event::glob_match;
use shared::json::Json;
use shared::signature::{SignatureError, SignatureScheme};
use shared::InboundEvent;

pub use queue::SendFailure;
pub use secret::{hmac_key_from_secret, KeyError, Keys, ShapeError, MIN_KEY_BYTES};
use secret::{Refreshed, SigningKey};

/// What to do with a well-formed event whose type is not in the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTypePolicy {
    /// 400: the sender learns its configuration is wrong (default).
    Reject,
    /// 202 without queueing: for senders that cannot filter what they post.
    Drop,
}

#[derive(Debug, Clone)]
pub enum Verification {
    /// Secrets Manager secret holding the HMAC key (plain string, or exactly JSON `{"secret": "..."}`; at least
    /// [`MIN_KEY_BYTES`]). Its `AWSPREVIOUS` version is accepted too, so rotation has no gap.
    Secret { secret_id: String },
    /// Explicitly turned off with `WEBHOOK_SIGNATURE_VERIFICATION=disabled`.
    Disabled,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub queue_url: String,
    pub verification: Verification,
    pub scheme: SignatureScheme,
    pub max_body_bytes: usize,
    /// Globs of accepted event types; `None`: every type a profile of the mapping handles (resolved when
    /// the receiver is built).
    pub allowed_event_types: Option<Vec<String>>,
    /// The mapping file (`MAPPING_FILE`) whose event types are the default allow-list.
    pub mapping_file: Option<String>,
    pub unknown_type_policy: UnknownTypePolicy,
    /// `metadata.organizationId` of the envelope a bare body is wrapped in.
    pub organization_id: String,
    /// Globs of the event types a bare body may name with `?event=`. The query string is not signed, so
    /// only types meant for bare bodies are accepted there.
    pub bare_event_types: Vec<String>,
    /// Minimum time between secret re-reads after a signature mismatch.
    pub secret_refresh_interval: Duration,
    /// Keys older than this are re-read on the next request, so a retired version stops working.
    pub secret_max_age: Duration,
}

/// Event types a bare body may name by default: the IVR escalation body of an Architect HTTP action.
pub const DEFAULT_BARE_EVENT_TYPES: &[&str] = &["ivr:escalation"];

/// The event types of the built-in mapping's profiles.
pub fn default_allowed_event_types() -> Vec<String> {
    shared::Mapping::default_mapping()
        .map(|m| m.event_types())
        .unwrap_or_default()
}

impl Default for Config {
    /// Verification disabled and no queue: for tests, which set what they need.
    fn default() -> Self {
        Self {
            queue_url: String::new(),
            verification: Verification::Disabled,
            scheme: SignatureScheme::default(),
            max_body_bytes: 256 * 1024,
            allowed_event_types: None,
            mapping_file: None,
            unknown_type_policy: UnknownTypePolicy::Reject,
            organization_id: "unknown".into(),
            bare_event_types: DEFAULT_BARE_EVENT_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            secret_refresh_interval: Duration::from_secs(60),
            secret_max_age: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment (see README). No I/O.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let verification =
            match env.choice("WEBHOOK_SIGNATURE_VERIFICATION", &["enabled", "disabled"])? {
                "enabled" => Verification::Secret {
                    secret_id: env.required("WEBHOOK_SECRET_ID")?,
                },
                _ => Verification::Disabled,
            };
        let defaults = SignatureScheme::default();
        let scheme = SignatureScheme {
            header: env
                .optional(renamed("WEBHOOK_SIGNATURE_HEADER", "SIGNATURE_HEADER"))
                .unwrap_or(defaults.header),
            encoding: env.parse_or(
                renamed("WEBHOOK_SIGNATURE_ENCODING", "SIGNATURE_ENCODING"),
                defaults.encoding,
            )?,
            // May be set empty on purpose, so read raw.
            prefix: env
                .raw("WEBHOOK_SIGNATURE_PREFIX")
                .or_else(|| env.raw("SIGNATURE_PREFIX"))
                .unwrap_or(defaults.prefix),
        };
        let unknown_type_policy = match env.choice(
            renamed(
                "RECEIVER_UNKNOWN_EVENT_TYPE_POLICY",
                "UNKNOWN_EVENT_TYPE_POLICY",
            ),
            &["reject", "drop"],
        )? {
            "reject" => UnknownTypePolicy::Reject,
            _ => UnknownTypePolicy::Drop,
        };
        let allowed = renamed("RECEIVER_ALLOWED_EVENT_TYPES", "ALLOWED_EVENT_TYPES");
        Ok(Self {
            queue_url: env.required("EVENTS_QUEUE_URL")?,
            verification,
            scheme,
            max_body_bytes: env.parse_or(
                renamed("RECEIVER_MAX_BODY_BYTES", "MAX_BODY_BYTES"),
                256 * 1024,
            )?,
            allowed_event_types: env.optional(allowed).map(|_| env.list_or(allowed, &[])),
            mapping_file: shared::mapping::mapping_file(env),
            unknown_type_policy,
            organization_id: env
                .optional("GENESYS_ORGANIZATION_ID")
                .unwrap_or_else(|| "unknown".into()),
            bare_event_types: env.list_or("RECEIVER_BARE_EVENT_TYPES", DEFAULT_BARE_EVENT_TYPES),
            secret_refresh_interval: env.secs_or("WEBHOOK_SECRET_REFRESH_SECONDS", 60)?,
            secret_max_age: env.secs_or("WEBHOOK_SECRET_MAX_AGE_SECONDS", 300)?,
        })
    }
}

/// Everything the receiver needs at cold start: the allow-list from the mapping file when not given, the
/// clients, the queue's `MaximumMessageSize`, and the signing key read once. A signing secret that cannot be
/// read or breaks its shape does not stop the function: it answers 503 (Genesys retries) and re-reads it, at
/// most once per `Retry-After`, until it is fixed.
pub async fn build(
    mut config: Config,
    aws: &aws_config::SdkConfig,
) -> Result<Receiver, shared::StartupError> {
    if config.allowed_event_types.is_none() {
        let mapping = shared::mapping::load_mapping(config.mapping_file.as_deref())?;
        config.allowed_event_types = Some(mapping.event_types());
    }
    let receiver = Receiver::new(
        config,
        aws_sdk_sqs::Client::new(aws),
        aws_sdk_secretsmanager::Client::new(aws),
    );
    receiver.read_queue_limit().await?;
    if let Err(e) = receiver.load_key().await {
        error!(error = %e, "starting without a usable webhook signing key: answering 503 until it is fixed");
    }
    Ok(receiver)
}

pub use shared::http::Reply;

/// How long Genesys should wait before retrying a 503.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A request that passed every check and is ready to queue.
#[derive(Debug)]
pub struct Accepted {
    pub event_type: String,
    pub organization_id: String,
    pub event_id: Option<String>,
    /// The envelope a bare body was wrapped in: what is queued instead of the raw body.
    pub wrapped: Option<String>,
}

/// Checks done before anything touches AWS, in order: size, signature, JSON, envelope, allow-list.
/// `bare_type`: the event type the request named for a body without an envelope (`?event=`).
pub fn validate(
    config: &Config,
    body: &[u8],
    bare_type: Option<&str>,
    signature_check: impl FnOnce(&[u8]) -> Result<(), SignatureError>,
) -> Result<Accepted, Reply> {
    if body.len() > config.max_body_bytes {
        return Err(Reply::error(
            413,
            "payload_too_large",
            format!(
                "body is {} bytes; the limit is {}",
                body.len(),
                config.max_body_bytes
            ),
        ));
    }
    if let Err(e) = signature_check(body) {
        return Err(Reply::error(401, "invalid_signature", e.to_string()));
    }
    let value = Json::parse(body).map_err(|e| shared::EnvelopeError::Syntax(e.to_string()));
    let (parsed, wrapped) = match value {
        Ok(Json::Object(top)) if InboundEvent::is_bare(&top) => {
            let bare_type = bare_type.map(str::trim);
            if let Some(t) = bare_type.filter(|t| {
                valid_event_type(t) && !config.bare_event_types.iter().any(|g| glob_match(g, t))
            }) {
                return Err(Reply::error(
                    400,
                    "bare_event_type_not_allowed",
                    format!(
                        "event type {t:?} may not be posted as a bare body (RECEIVER_BARE_EVENT_TYPES: {}); \
                         send it in the {{event, data, metadata}} envelope",
                        config.bare_event_types.join(",")
                    ),
                ));
            }
            let Some(event_type) = bare_type.filter(|t| valid_event_type(t)) else {
                return Err(Reply::error(
                    400,
                    "missing_event_type",
                    "the body has no envelope ({event, data, metadata} or an EventBridge event); post a bare \
                     body with its event type in the URL, e.g. /webhooks/genesys?event=ivr:escalation for the \
                     IVR escalation body (event types: letters, digits and . : _ - { })",
                ));
            };
            let envelope = InboundEvent::bare_envelope(
                event_type,
                top.to_map(),
                &config.organization_id,
                &shared::now_rfc3339(),
            );
            let text = envelope.to_string();
            // What is queued is the wrapped body: it must fit the limit too, or SQS would refuse it forever.
            if text.len() > config.max_body_bytes {
                return Err(Reply::error(
                    413,
                    "payload_too_large",
                    format!(
                        "body is {} bytes once wrapped in its envelope; the limit is {}",
                        text.len(),
                        config.max_body_bytes
                    ),
                ));
            }
            // Read back as the writer will read it: a body nested to serde_json's limit is one level
            // deeper once wrapped, and would be accepted here only to be dead-lettered there.
            let event =
                match InboundEvent::parse(text.as_bytes()) {
                    // The body itself parsed: the envelope's one more level is what fails.
                    Err(shared::EnvelopeError::Syntax(_)) => return Err(Reply::error(
                        400,
                        "body_too_deep",
                        "the body nests too deeply once wrapped in its envelope (JSON's nesting \
                         limit is 128 levels, the envelope takes one): nest it less, or send it in \
                         the webhook envelope",
                    )),
                    other => other.map(InboundEvent::into_owned),
                };
            (event, Some(text))
        }
        Ok(v) => (InboundEvent::from_json(v), None),
        Err(e) => (Err(e), None),
    };
    let event = parsed.map_err(|e| {
        let mut r = Reply::error(400, "invalid_payload", e.to_string());
        if let Some(path) = e.path() {
            r.body["field"] = json!(path);
        }
        r
    })?;
    let kind = event.event_kind();
    if !config
        .allowed_event_types
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|p| glob_match(p, &kind) || glob_match(p, &event.event_type))
    {
        return Err(match config.unknown_type_policy {
            UnknownTypePolicy::Reject => Reply::error(
                400,
                "event_type_not_allowed",
                format!("event type {kind:?} is not in the allow-list"),
            ),
            UnknownTypePolicy::Drop => Reply::new(
                202,
                json!({"status": "ignored", "reason": "event type not in the allow-list"}),
            ),
        });
    }
    Ok(Accepted {
        event_type: event.event_type,
        organization_id: event.organization_id.unwrap_or_default(),
        event_id: event.event_id,
        wrapped,
    })
}

fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 200
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:_-{}".contains(c))
}

pub struct Receiver {
    config: Config,
    sqs: aws_sdk_sqs::Client,
    secrets: aws_sdk_secretsmanager::Client,
    key: Option<SigningKey>,
    /// The queue's `MaximumMessageSize`, read at cold start ([`queue::SQS_MAX_MESSAGE_BYTES`] until then).
    queue_limit: OnceLock<usize>,
}

impl Receiver {
    /// `config.allowed_event_types` unset: the built-in mapping's event types (see [`build`] for a file's).
    pub fn new(
        mut config: Config,
        sqs: aws_sdk_sqs::Client,
        secrets: aws_sdk_secretsmanager::Client,
    ) -> Self {
        config
            .allowed_event_types
            .get_or_insert_with(default_allowed_event_types);
        let key = match &config.verification {
            Verification::Secret { secret_id } => Some(SigningKey::new(
                secret_id,
                RETRY_AFTER.min(config.secret_refresh_interval),
                config.secret_max_age,
            )),
            Verification::Disabled => None,
        };
        Self {
            config,
            sqs,
            secrets,
            key,
            queue_limit: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads the queue's limit and loads the signing key now; either failing is an error.
    pub async fn warm_up(&self) -> Result<(), shared::StartupError> {
        self.read_queue_limit().await?;
        self.load_key().await.map_err(|e| match e {
            KeyError::Read(e) => shared::StartupError::Secret(e),
            e => shared::StartupError::invalid("WEBHOOK_SECRET_ID", e),
        })
    }

    /// Reads the events queue's `MaximumMessageSize` (GetQueueAttributes) once.
    pub async fn read_queue_limit(&self) -> Result<usize, shared::StartupError> {
        if let Some(limit) = self.queue_limit.get() {
            return Ok(*limit);
        }
        let limit = queue::max_message_size(&self.sqs, &self.config.queue_url).await?;
        info!(limit, "events queue MaximumMessageSize");
        Ok(*self.queue_limit.get_or_init(|| limit))
    }

    /// The limit messages are checked against.
    pub fn queue_limit(&self) -> usize {
        self.queue_limit
            .get()
            .copied()
            .unwrap_or(queue::SQS_MAX_MESSAGE_BYTES)
    }

    /// Loads the signing key now (during init, so the first request does not pay for it).
    pub async fn load_key(&self) -> Result<(), KeyError> {
        if let Some(k) = &self.key {
            k.current(&self.secrets).await?;
        }
        Ok(())
    }

    /// Handles one webhook request. `correlation_id` identifies it in logs and on the queued message.
    pub async fn handle(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        bare_type: Option<&str>,
        correlation_id: &str,
    ) -> Reply {
        let signature = headers
            .get(self.config.scheme.header.as_str())
            .and_then(|v| v.to_str().ok());
        let reply = async {
            let verified = match self.verify(body, signature).await {
                Ok(v) => v,
                Err(reply) => return reply,
            };
            let accepted = match validate(&self.config, body, bare_type, |_| verified) {
                Ok(a) => a,
                Err(reply) => {
                    warn!(correlation_id, status = reply.status, reason = %reply.body["error"], "webhook rejected");
                    return reply;
                }
            };
            self.enqueue(body, &accepted, correlation_id).await
        }
        .await;
        let queued = reply.status == 202;
        shared::metrics::values(
            ("Function", "webhook-receiver"),
            &[
                ("WebhooksReceived", 1, "Count"),
                ("WebhooksQueued", u64::from(queued), "Count"),
            ],
        );
        if !queued {
            let reason = reply.body["error"].as_str().unwrap_or("unknown");
            shared::metrics::count("WebhooksRejected", ("Reason", reason), 1);
        }
        reply
    }

    /// Verifies the signature with the current key, then the previous one; on a mismatch re-reads the secret
    /// (rate-limited) so rotation works. No usable key, or a failed re-read, is 503, never 401.
    async fn verify(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Result<(), SignatureError>, Reply> {
        let Some(key) = &self.key else {
            return Ok(Ok(()));
        };
        if body.len() > self.config.max_body_bytes {
            // Size is reported by `validate`; skip hashing a body we will refuse anyway.
            return Ok(Ok(()));
        }
        let unavailable = |e: KeyError| {
            error!(error = %e, "webhook signing secret unavailable");
            Reply::error(503, "unavailable", "signature key unavailable; retry later")
                .with_retry_after(RETRY_AFTER)
        };
        let cached = key.current(&self.secrets).await.map_err(unavailable)?;
        let first = self.check(&cached, body, signature);
        if first != Err(SignatureError::Mismatch) {
            return Ok(first);
        }
        match key
            .refresh(&self.secrets, self.config.secret_refresh_interval)
            .await
        {
            Ok(Refreshed::Fresh(fresh)) if fresh != cached => {
                Ok(self.check(&fresh, body, signature))
            }
            Ok(_) => Ok(first),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// `Ok` when any key verifies; a missing or malformed header is reported as such.
    fn check(
        &self,
        keys: &Keys,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<(), SignatureError> {
        for key in keys.iter() {
            match self.config.scheme.verify(key, body, signature) {
                Err(SignatureError::Mismatch) => continue,
                other => return other,
            }
        }
        Err(SignatureError::Mismatch)
    }

    async fn enqueue(&self, body: &[u8], accepted: &Accepted, correlation_id: &str) -> Reply {
        let text = match (&accepted.wrapped, std::str::from_utf8(body)) {
            (Some(wrapped), _) => wrapped.as_str(),
            (None, Ok(text)) => text,
            (None, Err(_)) => return Reply::error(400, "invalid_payload", "body is not UTF-8"),
        };
        let received_at = shared::now_rfc3339();
        let attrs = string_attributes([
            ("event_type", accepted.event_type.clone()),
            ("organization_id", accepted.organization_id.clone()),
            ("received_at", received_at),
            ("correlation_id", correlation_id.to_string()),
        ]);
        let size = queue::message_size(text, &attrs);
        let limit = self.queue_limit();
        if let Some(reply) = unstorable(text, size, limit) {
            warn!(
                correlation_id,
                status = reply.status,
                size,
                limit,
                "webhook refused: SQS cannot store it"
            );
            return reply;
        }
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.config.queue_url)
            .message_body(text)
            .set_message_attributes(Some(attrs))
            .send()
            .await;
        match sent {
            Ok(out) => {
                let message_id = out.message_id().unwrap_or_default().to_string();
                info!(correlation_id, message_id, event_type = %accepted.event_type,
                      event_id = accepted.event_id.as_deref().unwrap_or(""), "webhook queued");
                Reply::new(
                    202,
                    json!({"status": "queued", "messageId": message_id, "correlationId": correlation_id}),
                )
            }
            Err(e) => {
                let failure = queue::classify(&e, size, limit);
                if failure.class().is_transient() {
                    error!(correlation_id, error = %failure, "SQS send failed");
                } else {
                    warn!(correlation_id, error = %failure, "SQS refused the message for good");
                }
                failure_reply(&failure)
            }
        }
    }
}

/// The answer for a message SQS could never store (checked before sending), if it is one.
pub fn unstorable(body: &str, size: usize, limit: usize) -> Option<Reply> {
    if size > limit {
        return Some(failure_reply(&SendFailure::TooLarge { size, limit }));
    }
    queue::refused_character(body).map(|(at, c)| {
        Reply::error(
            400,
            "invalid_payload",
            format!(
                "the body holds a character SQS cannot store (U+{:04X} at byte {at}); send it escaped",
                c as u32
            ),
        )
    })
}

/// 413 / 400 for what SQS can never take (Genesys must not retry), 503 + `Retry-After` for the rest.
pub fn failure_reply(failure: &SendFailure) -> Reply {
    match failure {
        SendFailure::TooLarge { size, limit } => Reply::error(
            413,
            "payload_too_large",
            format!(
                "the message is {size} bytes with its SQS attributes; the queue takes at most {limit}"
            ),
        ),
        SendFailure::Rejected { code } => Reply::error(
            400,
            "rejected_by_queue",
            format!("the queue refuses this message ({code}); retrying cannot help"),
        ),
        SendFailure::Unavailable { .. } => {
            Reply::error(503, "unavailable", "event could not be stored; retry later")
                .with_retry_after(RETRY_AFTER)
        }
    }
}

/// Correlation id: a caller-supplied `X-Correlation-Id` if it is sane, else the gateway request id, else new.
pub fn correlation_id(headers: &HeaderMap, request_id: Option<&str>) -> String {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        })
        .map(str::to_string)
        .or_else(|| request_id.filter(|r| !r.is_empty()).map(str::to_string))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Lambda adapter: the same handler the local runner calls.
pub async fn handle_lambda(
    receiver: &Receiver,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    use lambda_http::RequestExt;
    let request_id = request.lambda_context_ref().map(|c| c.request_id.clone());
    let headers = request.headers().clone();
    let correlation = correlation_id(&headers, request_id.as_deref());
    let bare_type = request
        .query_string_parameters_ref()
        .and_then(|q| q.first("event").map(str::to_string))
        .or_else(|| query_param(request.uri().query(), "event"));
    let reply = receiver
        .handle(
            &headers,
            request.body().as_ref(),
            bare_type.as_deref(),
            &correlation,
        )
        .await;
    reply.to_lambda(Some(&correlation))
}

/// `name`'s value in a raw query string (`a=1&event=ivr%3Aescalation`), percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| shared::percent::decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            queue_url: "q".into(),
            max_body_bytes: 1024,
            allowed_event_types: Some(default_allowed_event_types()),
            organization_id: "org".into(),
            bare_event_types: vec!["ivr:*".into()],
            ..Config::default()
        }
    }

    #[test]
    fn config_from_variables() {
        let env = Env::from_pairs([
            ("EVENTS_QUEUE_URL", "https://sqs/q"),
            ("WEBHOOK_SECRET_ID", "webhook"),
            ("WEBHOOK_SIGNATURE_PREFIX", ""),
            ("ALLOWED_EVENT_TYPES", "a.*, b"),
        ]);
        let c = Config::from_vars(&env).unwrap();
        assert!(
            matches!(c.verification, Verification::Secret { ref secret_id } if secret_id == "webhook")
        );
        assert_eq!(c.scheme.prefix, "", "an empty prefix is kept");
        assert_eq!(
            c.allowed_event_types,
            Some(vec!["a.*".to_string(), "b".to_string()])
        );
        assert_eq!(c.bare_event_types, DEFAULT_BARE_EVENT_TYPES);
        let no_list = Env::from_pairs([
            ("EVENTS_QUEUE_URL", "q"),
            ("WEBHOOK_SIGNATURE_VERIFICATION", "disabled"),
        ]);
        let c = Config::from_vars(&no_list).unwrap();
        assert_eq!(
            c.allowed_event_types, None,
            "resolved from the mapping when built"
        );
        for (name, value) in [
            ("WEBHOOK_SIGNATURE_VERIFICATION", "sometimes"),
            ("RECEIVER_UNKNOWN_EVENT_TYPE_POLICY", "ignore"),
            ("RECEIVER_MAX_BODY_BYTES", "1MB"),
            ("WEBHOOK_SIGNATURE_ENCODING", "base32"),
            ("WEBHOOK_SECRET_REFRESH_SECONDS", "soon"),
            ("WEBHOOK_SECRET_MAX_AGE_SECONDS", "-1"),
        ] {
            let err = Config::from_vars(&env.clone().with([(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let err = Config::from_vars(&Env::from_pairs([("EVENTS_QUEUE_URL", "q")])).unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_SECRET_ID"), "{err}");
    }

    fn body(event: &str) -> Vec<u8> {
        json!({"event": event, "data": {"conversationId": "c"}, "metadata": {"organizationId": "o", "timestamp": "t"}})
            .to_string()
            .into_bytes()
    }

    const END: &str =
        "v2.detail.events.conversation.3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b.customer.end";

    #[test]
    fn accepts_an_allowed_event() {
        let a = validate(&cfg(), &body(END), None, |_| Ok(())).unwrap();
        assert_eq!(a.event_type, END);
        assert_eq!(a.organization_id, "o");
    }

    #[test]
    fn checks_run_in_order() {
        let big = vec![b' '; 2000];
        assert_eq!(
            validate(&cfg(), &big, None, |_| Ok(())).unwrap_err().status,
            413
        );
        let r = validate(&cfg(), &body(END), None, |_| Err(SignatureError::Mismatch)).unwrap_err();
        assert_eq!(r.status, 401);
        let r = validate(&cfg(), b"{oops", None, |_| Ok(())).unwrap_err();
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("invalid_payload"))
        );
        let r = validate(&cfg(), br#"{"event":"x","data":{}}"#, None, |_| Ok(())).unwrap_err();
        assert_eq!(r.status, 400);
        assert!(
            r.body["message"].as_str().unwrap().contains("metadata"),
            "{}",
            r.body
        );
    }

    #[test]
    fn allow_list_policy() {
        let r = validate(&cfg(), &body("v2.users.presence"), None, |_| Ok(())).unwrap_err();
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("event_type_not_allowed"))
        );
        let drop = Config {
            unknown_type_policy: UnknownTypePolicy::Drop,
            ..cfg()
        };
        let r = validate(&drop, &body("v2.users.presence"), None, |_| Ok(())).unwrap_err();
        assert_eq!(r.status, 202);
        assert_eq!(r.body["status"], "ignored");
    }

    #[test]
    fn default_allow_list_is_what_the_shipped_profiles_handle() {
        for t in [
            "flow:webhook:outbound",
            "ivr:escalation",
            END,
            "v2.detail.events.conversation.acw",
        ] {
            assert!(validate(&cfg(), &body(t), None, |_| Ok(())).is_ok(), "{t}");
        }
    }

    #[test]
    fn bare_bodies_need_their_event_type_and_are_queued_wrapped() {
        let ivr = br#"{"callId":"c-1","customerPhone":"+15550199888","escalationReason":"IVR_TIMEOUT_EXCEEDED"}"#;
        let r = validate(&cfg(), ivr, None, |_| Ok(())).unwrap_err();
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("missing_event_type"))
        );
        assert!(r.body["message"]
            .as_str()
            .unwrap()
            .contains("?event=ivr:escalation"));
        let a = validate(&cfg(), ivr, Some("ivr:escalation"), |_| Ok(())).unwrap();
        assert_eq!(a.event_type, "ivr:escalation");
        let wrapped = a.wrapped.unwrap();
        let queued = InboundEvent::parse(wrapped.as_bytes()).unwrap();
        assert_eq!(
            queued
                .body
                .get("callId")
                .and_then(shared::json::Json::as_str),
            Some("c-1")
        );
        assert_eq!(queued.organization_id.as_deref(), Some("org"));
        // The named type still has to be allowed.
        let r = validate(&cfg(), ivr, Some("ivr:other"), |_| Ok(())).unwrap_err();
        assert_eq!(r.body["error"], "event_type_not_allowed");
        // Only types meant for bare bodies may be named in the (unsigned) query string.
        let r = validate(&cfg(), ivr, Some("flow:webhook:outbound"), |_| Ok(())).unwrap_err();
        assert_eq!(r.body["error"], "bare_event_type_not_allowed");
        let r = validate(&cfg(), ivr, Some("bad type<>"), |_| Ok(())).unwrap_err();
        assert_eq!(r.body["error"], "missing_event_type");
        // The wrapped body must fit the limit as well.
        let near_limit = format!(r#"{{"callId":"c-1","pad":"{}"}}"#, "x".repeat(990));
        assert!(near_limit.len() <= 1024);
        let r = validate(
            &cfg(),
            near_limit.as_bytes(),
            Some("ivr:escalation"),
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (413, Some("payload_too_large"))
        );
        // Nested to the parser's limit of 128, the body is one level too deep once wrapped: refused here,
        // not accepted and then dead-lettered by the writer.
        let deep = format!(
            r#"{{"callId":"c-1","x":{}1{}}}"#,
            "[".repeat(126),
            "]".repeat(126)
        );
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_ok());
        let r = validate(&cfg(), deep.as_bytes(), Some("ivr:escalation"), |_| Ok(())).unwrap_err();
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("body_too_deep")),
            "{}",
            r.body
        );
        assert!(r.body["message"]
            .as_str()
            .unwrap()
            .contains("nests too deeply once wrapped"));
        let shallower = format!(
            r#"{{"callId":"c-1","x":{}1{}}}"#,
            "[".repeat(125),
            "]".repeat(125)
        );
        let a = validate(&cfg(), shallower.as_bytes(), Some("ivr:escalation"), |_| {
            Ok(())
        })
        .unwrap();
        assert!(InboundEvent::parse(a.wrapped.unwrap().as_bytes()).is_ok());
        // An envelope ignores the parameter.
        assert!(
            validate(&cfg(), &body(END), Some("ivr:escalation"), |_| Ok(()))
                .unwrap()
                .wrapped
                .is_none()
        );
        assert_eq!(
            query_param(Some("x=1&event=ivr%3Aescalation"), "event").as_deref(),
            Some("ivr:escalation")
        );
        assert_eq!(query_param(Some("x=1"), "event"), None);
    }

    #[test]
    fn what_sqs_can_never_store_is_refused_up_front_and_its_refusals_are_not_503() {
        assert_eq!(unstorable("{}", 1024, 1024), None, "exactly the limit fits");
        let r = unstorable("{}", 1025, 1024).unwrap();
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (413, Some("payload_too_large"))
        );
        assert!(r.retry_after.is_none());
        let r = unstorable("a\u{FFFF}", 3, 1024).unwrap();
        assert_eq!(r.status, 400);
        let r = failure_reply(&SendFailure::Rejected {
            code: "InvalidMessageContents".into(),
        });
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("rejected_by_queue"))
        );
        let r = failure_reply(&SendFailure::Unavailable {
            reason: "throttled".into(),
        });
        assert_eq!((r.status, r.retry_after), (503, Some(RETRY_AFTER)));
        let attrs = string_attributes([("event_type", "e".to_string())]);
        assert_eq!(
            queue::message_size("x".repeat(1000).as_str(), &attrs),
            1000 + "event_type".len() + "String".len() + 1
        );
    }

    #[test]
    fn correlation_ids() {
        let mut h = HeaderMap::new();
        assert_eq!(correlation_id(&h, Some("req-1")), "req-1");
        h.insert("x-correlation-id", "abc-123".parse().unwrap());
        assert_eq!(correlation_id(&h, Some("req-1")), "abc-123");
        h.insert("x-correlation-id", "bad value<script>".parse().unwrap());
        assert_eq!(correlation_id(&h, Some("req-1")), "req-1");
        assert_eq!(correlation_id(&HeaderMap::new(), None).len(), 36);
    }
}
