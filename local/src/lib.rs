//! Local-only tooling: never part of a Lambda binary.
//!
//! - [`servicenow_sim`]: a ServiceNow Table API simulator with fault injection.
//! - [`aws_setup`]: creates the queue, DLQ (redrive), idempotency table (TTL) and secret on an emulator.
//! - [`poller`]: feeds SQS batches to the writer the way the Lambda event source mapping does.
//! - [`http`]: serves the webhook receiver, legacy-ingest and data-action over HTTP, and the shared hyper accept loop.
//! - [`genesys_sim`]: a Genesys Cloud simulator (OAuth token endpoint, event ingestion with Idempotency-Key).
//! - [`dev_tokens`]: development JWTs signed with the keys in `local/dev-keys/`.
//! - [`ws_gateway`]: an API Gateway WebSocket API stand-in (connections and the `@connections` API).
//! - [`callback_pumps`]: the callbacks table's stream, the webhooks and callback events queues, fed to their
//!   functions as Lambda's event source mappings do.

pub mod aws_setup;
pub mod callback_pumps;
pub mod callback_stack;
pub mod dev_tokens;
pub mod genesys_sim;
pub mod http;
pub mod lambda_bench;
pub mod poller;
pub mod servicenow_sim;
pub mod sim_common;
pub mod ws_gateway;

/// Credentials and secrets for local runs only (the simulator and the emulator); never used in AWS.
pub const LOCAL_WEBHOOK_SECRET: &str = "local-webhook-secret-0123456789abcdef";
pub const LOCAL_SN_USER: &str = "integration.user";
pub const LOCAL_SN_PASSWORD: &str = "local-password";
pub const LOCAL_SN_CLIENT_ID: &str = "local-servicenow-client";
pub const LOCAL_SN_CLIENT_SECRET: &str = "local-servicenow-client-secret";
pub const LOCAL_GENESYS_CLIENT_ID: &str = "local-genesys-client";
pub const LOCAL_GENESYS_CLIENT_SECRET: &str = "local-genesys-secret";
/// The Genesys queue `make run`'s callback queue `support` books into (the simulator knows it).
pub const LOCAL_CALLBACK_QUEUE_ID: &str = "local-support-queue";

/// `make run`'s callback queues: `support`, weekdays 08:00–20:00 in Europe/Berlin, 5 callbacks per 30 minutes.
pub const LOCAL_CALLBACK_QUEUES: &str = r#"{"support": {"genesys_queue_id": "local-support-queue", "capacity": 5,
  "timezone": "Europe/Berlin", "hours": {"mon": ["08:00", "20:00"], "tue": ["08:00", "20:00"], "wed": ["08:00", "20:00"],
  "thu": ["08:00", "20:00"], "fri": ["08:00", "20:00"]}}}"#;

/// The data table legacy-ingest writes to under `make run` (the Genesys simulator creates it).
pub const LOCAL_DATATABLE_ID: &str = "legacy-events";
/// What `make run`'s data-action endpoint accepts (Basic), as Genesys's "Basic Auth" credentials would hold.
pub const LOCAL_DATA_ACTION_USER: &str = "architect";
pub const LOCAL_DATA_ACTION_PASSWORD: &str = "local-data-action-password";

/// A Genesys `customer.end` conversation event in the webhook envelope, as `make send-sample` posts it.
pub fn sample_event(conversation_id: &str) -> serde_json::Value {
    serde_json::json!({
        "event": format!("v2.detail.events.conversation.{conversation_id}.customer.end"),
        "data": {
            "conversationId": conversation_id,
            "participantId": "9b1c2d3e-0000-4000-8000-000000000001",
            "ani": "tel:+14155550123",
            "dnis": "tel:+18005550100",
            "queueName": "Billing Support",
            "mediaType": "voice",
            "direction": "inbound",
            "disconnectType": "TRANSPORT_FAILURE",
            "escalationReason": "Customer reports billing portal outage; card 4111 1111 1111 1111 was charged twice",
            "eventTime": 1_795_428_000_000i64,
            "attributes": {"vip": "true", "queueWaitMs": 420000}
        },
        "metadata": {"organizationId": "6f1a0c4e-0000-4000-8000-00000000000a", "timestamp": "2026-11-23T10:00:00.000Z"}
    })
}
