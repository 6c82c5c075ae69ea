//! Local-only tooling: never part of a Lambda binary.
//!
//! - [`servicenow_sim`]: a ServiceNow Table API simulator with fault injection.
//! - [`aws_setup`]: creates the queue, DLQ (redrive), idempotency table (TTL) and secret on an emulator.
//! - [`poller`]: feeds SQS batches to the writer the way the Lambda event source mapping does.
//! - [`http`]: serves the webhook receiver over HTTP, and the shared hyper accept loop.

pub mod aws_setup;
pub mod http;
pub mod poller;
pub mod servicenow_sim;
