//! callback-api: `POST /callbacks` books a web callback, `GET /callbacks/{id}` reads it (issue 13; the
//! lifecycle events, live status and notifications are still to come).
//!
//! - [`schedule`]: a queue's calendar (IANA timezone, business hours per weekday, slot length, horizon) and
//!   the validation of preferred slots against it, DST-correct.
//! - [`capacity`]: the number of callbacks per queue slot, taken and given back atomically in DynamoDB.
//! - [`genesys`]: creating and rescheduling the Genesys callback (`/api/v2/conversations/callbacks`).
//! - [`reservations`] and [`booking`]: a booking made exactly once (one reservation, one callback).

pub mod access;
pub mod api;
pub mod booking;
pub mod capacity;
pub mod config;
pub mod genesys;
pub mod lifecycle;
pub mod live;
pub mod manage;
pub mod reservations;
pub mod schedule;
