//! `POST /callbacks` (book) and `GET /callbacks/{id}` (read), over [`Booking`]. The answer shows the
//! reservation without the caller's name or number.

use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::{json, Value};
use tracing::{info, warn};

use shared::http::Reply;
use shared::retry::Deadline;

use crate::booking::{answer, BookError, Booking};
use crate::reservations::Reservation;

pub struct CallbackApi {
    pub booking: Booking,
    pub deadline: Duration,
    pub max_body_bytes: usize,
}

/// What a client sees of a reservation.
pub fn view(r: &Reservation) -> Value {
    json!({
        "id": r.id,
        "status": r.status.name(),
        "queue": r.queue,
        "slot": r.slot,
        "incident_number": r.incident_number,
        "failure_reason": r.failure_reason,
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
            (&Method::GET, [id]) => self.read(id).await,
            (_, [] | [_]) => Reply::error(
                405,
                "method_not_allowed",
                "POST /callbacks, GET /callbacks/{id}",
            ),
            _ => Reply::error(404, "not_found", "POST /callbacks, GET /callbacks/{id}"),
        }
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
                Reply::new(201, view(&r))
            }
            Err(e) => {
                let (status, body) = answer(&e);
                if let BookError::Unavailable {
                    retry_after,
                    reason,
                } = &e
                {
                    warn!(reason = %reason, "callback not booked in time");
                    return Reply::new(status, body).with_retry_after(*retry_after);
                }
                info!(status, error = %e, "callback booking refused");
                Reply::new(status, body)
            }
        }
    }

    async fn read(&self, id: &str) -> Reply {
        if uuid::Uuid::parse_str(id).is_err() {
            return Reply::error(404, "not_found", "no such reservation");
        }
        match self.booking.reservations.get(id).await {
            Ok(Some(r)) => Reply::new(200, view(&r)),
            Ok(None) => Reply::error(404, "not_found", "no such reservation"),
            Err(e) => {
                warn!(error = %e, "reservation unreadable");
                Reply::error(503, "store_unavailable", "try again")
                    .with_retry_after(Duration::from_secs(2))
            }
        }
    }
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
