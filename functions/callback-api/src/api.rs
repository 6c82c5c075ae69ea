//! `POST /callbacks` (book), and with the booking's `manage_token` as `Authorization: Bearer`:
//! `GET /callbacks/{id}` (read), `PATCH` (reschedule), `DELETE` (cancel), over [`Booking`]. Answers show the
//! reservation without the caller's name or number, and a fresh `live_token` for the status WebSocket.

use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::{json, Value};
use tracing::{info, warn};

use shared::http::Reply;
use shared::retry::Deadline;

use crate::access::{AccessError, AccessKeys, Scope};
use crate::booking::{answer, BookError, Booking};
use crate::reservations::Reservation;

pub struct CallbackApi {
    pub booking: Booking,
    pub access: AccessKeys,
    /// How long a `live_token` opens the WebSocket.
    pub live_token_ttl: Duration,
    pub deadline: Duration,
    pub max_body_bytes: usize,
}

const ROUTES: &str = "POST /callbacks; GET, PATCH, DELETE /callbacks/{id}";

/// What a client sees of a reservation.
pub fn view(r: &Reservation) -> Value {
    json!({
        "id": r.id,
        "status": r.status.name(),
        "queue": r.queue,
        "slot": r.slot,
        "incident_number": r.incident_number,
        "failure_reason": r.failure_reason,
        "rescheduling_to": r.pending_slot,
    })
}

impl CallbackApi {
    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let Some(rest) = path
            .find("/callbacks")
            .map(|i| &path[i + "/callbacks".len()..])
        else {
            return Reply::error(404, "not_found", "routes are under /callbacks");
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segments.as_slice()) {
            (&Method::POST, []) => self.book(headers, body).await,
            (&Method::GET | &Method::PATCH | &Method::DELETE, [id]) => {
                if let Err(e) = self.authorised(headers, id) {
                    return Reply::error(401, "unauthorized", e.to_string())
                        .with_challenge("Bearer");
                }
                if method == Method::GET {
                    return self.read(id).await;
                }
                if body.len() > self.max_body_bytes {
                    return Reply::error(413, "payload_too_large", "too large");
                }
                let deadline = Deadline::after(self.deadline);
                let result = match *method {
                    Method::PATCH => {
                        self.booking
                            .reschedule(id, body, jiff::Timestamp::now(), deadline)
                            .await
                    }
                    _ => self.booking.cancel(id, deadline).await,
                };
                match result {
                    Ok(r) => {
                        info!(reservation_id = %r.id, status = r.status.name(), slot = %r.slot, "callback changed");
                        Reply::new(200, self.with_tokens(&r, true))
                    }
                    Err(e) => refused(&e),
                }
            }
            (_, [] | [_]) => Reply::error(405, "method_not_allowed", ROUTES),
            _ => Reply::error(404, "not_found", ROUTES),
        }
    }

    fn authorised(&self, headers: &HeaderMap, id: &str) -> Result<(), AccessError> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or(AccessError::Missing)?;
        let opens = self
            .access
            .verify(token, Scope::Manage, shared::clock::epoch_secs())?;
        match opens == id {
            true => Ok(()),
            false => Err(AccessError::Invalid),
        }
    }

    /// The reservation as a client sees it, with a fresh `live_token` (and a `manage_token` when asked).
    fn with_tokens(&self, r: &Reservation, manage: bool) -> Value {
        let mut v = view(r);
        let now = shared::clock::epoch_secs();
        v["live_token"] =
            json!(self
                .access
                .issue(Scope::Live, &r.id, now + self.live_token_ttl.as_secs()));
        if manage {
            // Valid until a day after the slot (and at least a day from now).
            let slot = r
                .slot
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_second().max(0) as u64)
                .unwrap_or(now);
            v["manage_token"] =
                json!(self
                    .access
                    .issue(Scope::Manage, &r.id, slot.max(now) + 86_400));
        }
        v
    }

    async fn book(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        if body.len() > self.max_body_bytes {
            return Reply::error(
                413,
                "payload_too_large",
                format!("the limit is {} bytes", self.max_body_bytes),
            );
        }
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| (8..=128).contains(&k.len()));
        let deadline = Deadline::after(self.deadline);
        match self
            .booking
            .book(body, key, jiff::Timestamp::now(), deadline)
            .await
        {
            Ok(r) => {
                info!(reservation_id = %r.id, queue = %r.queue, slot = %r.slot, status = r.status.name(), "callback booked");
                Reply::new(201, self.with_tokens(&r, true))
            }
            Err(e @ BookError::UnknownQueue) => {
                let mut reply = refused(&e);
                let mut known: Vec<&String> = self.booking.queues.keys().collect();
                known.sort();
                reply.body["message"] = json!(
                    "the queue is not one callbacks can be booked for: name one of known_queues (CALLBACK_QUEUES)"
                );
                reply.body["known_queues"] = json!(known);
                reply
            }
            Err(e) => refused(&e),
        }
    }

    async fn read(&self, id: &str) -> Reply {
        if uuid::Uuid::parse_str(id).is_err() {
            return Reply::error(404, "not_found", "no such reservation");
        }
        match self.booking.reservations.get(id).await {
            Ok(Some(r)) => Reply::new(200, self.with_tokens(&r, false)),
            Ok(None) => Reply::error(404, "not_found", "no such reservation"),
            Err(e) => {
                warn!(error = %e, "reservation unreadable");
                Reply::error(503, "store_unavailable", "try again")
                    .with_retry_after(Duration::from_secs(2))
            }
        }
    }
}

/// A booking or change not made, as answered.
fn refused(e: &BookError) -> Reply {
    let (status, body) = answer(e);
    if let BookError::Unavailable {
        retry_after,
        reason,
    } = e
    {
        warn!(reason = %reason, "callback not booked or changed in time");
        return Reply::new(status, body).with_retry_after(*retry_after);
    }
    info!(status, error = %e, "callback request refused");
    Reply::new(status, body)
}

/// The Lambda adapter.
pub async fn handle_lambda(
    api: &CallbackApi,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let (parts, body) = request.into_parts();
    api.handle(
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        body.as_ref(),
    )
    .await
    .to_lambda(None)
}
