//! Operations on a bridge, local or deployed: [`replay`] moves dead-lettered events back to the events queue;
//! [`trace`] follows one conversation through the idempotency table, ServiceNow and the dead-letter queue.

pub mod replay;
pub mod trace;
