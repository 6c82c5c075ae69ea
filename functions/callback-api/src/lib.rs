//! callback-api (in progress, issue 13): the core of web callback reservations.
//!
//! - [`schedule`]: a queue's calendar (IANA timezone, business hours per weekday, slot length, horizon) and
//!   the validation of preferred slots against it, DST-correct.
//! - [`capacity`]: the number of callbacks per queue slot, taken and given back atomically in DynamoDB.

pub mod capacity;
pub mod schedule;
