//! Operations on a bridge, local or deployed: [`replay`] moves dead-lettered events back to the events queue;
//! [`stream_replay`] hands the callback stream batches the notifier failed back to it; [`trace`] follows one
//! conversation through the idempotency table, ServiceNow and the dead-letter queue.

pub mod queue;
pub mod replay;
pub mod stream_replay;
pub mod trace;
