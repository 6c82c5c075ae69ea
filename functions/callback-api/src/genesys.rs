//! The Genesys side of a reservation: `POST /api/v2/conversations/callbacks` creates the callback (its `data`
//! carries the reservation id and incident number, so the agent sees them), `PATCH` reschedules it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use reqwest::Method;
use serde_json::json;

use shared::genesys::{ApiError, GenesysApi};

/// What Genesys is asked to call back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    pub queue_id: String,
    pub name: String,
    /// E.164.
    pub number: String,
    pub scheduled: Timestamp,
    /// Shown to the agent: `reservationId`, `incidentNumber`, `reason`.
    pub data: BTreeMap<String, String>,
}

/// Why Genesys did not take it: retryable (with `Retry-After`), or refused (with the status only: Genesys'
/// message echoes the request).
pub type CallbackError = ApiError;

/// Creates the callback; returns its conversation id.
pub async fn create(api: &GenesysApi, request: &CallbackRequest) -> Result<String, CallbackError> {
    let body = json!({
        "queueId": request.queue_id,
        "callbackUserName": request.name,
        "callbackNumbers": [request.number],
        "callbackScheduledTime": request.scheduled.to_string(),
        "data": request.data,
    });
    let answer = api
        .request(
            Method::POST,
            "/api/v2/conversations/callbacks",
            &[],
            Some(&body),
            "callback",
        )
        .await?;
    match answer.body["conversation"]["id"].as_str() {
        Some(id) if answer.found() => Ok(id.to_string()),
        // Accepted, but the answer names no callback: it may exist, so it is looked for, never re-created.
        _ if answer.found() => Err(ApiError::Retry {
            reason: "Genesys accepted the callback without naming it".into(),
            hint: None,
            ambiguous: true,
        }),
        _ => Err(ApiError::Refused {
            status: answer.status,
            what: "callback",
        }),
    }
}

/// A change Genesys answered: done (2xx), or refused with its status.
fn accepted(answer: &shared::genesys::Answer) -> Result<(), CallbackError> {
    match answer.found() {
        true => Ok(()),
        false => Err(ApiError::Refused {
            status: answer.status,
            what: "callback",
        }),
    }
}

/// Moves the callback `conversation_id` to `at`.
pub async fn reschedule(
    api: &GenesysApi,
    conversation_id: &str,
    at: Timestamp,
) -> Result<(), CallbackError> {
    let body = json!({"conversationId": conversation_id, "callbackScheduledTime": at.to_string()});
    let answer = api
        .request(
            Method::PATCH,
            "/api/v2/conversations/callbacks",
            &[],
            Some(&body),
            "callback",
        )
        .await?;
    accepted(&answer)
}

/// The callback an earlier, unanswered create made for `reservation_id` in `queue_id`, if Genesys has it:
/// an analytics conversation query for the queue's callbacks created around `at` (when the create was sent),
/// every page, matched on the `reservationId` participant attribute. (Analytics can lag; the reservation is
/// held for a settle window before this.)
pub async fn find_by_reservation(
    api: &GenesysApi,
    queue_id: &str,
    reservation_id: &str,
    at: Timestamp,
    deadline: shared::retry::Deadline,
) -> Result<Option<String>, CallbackError> {
    let from = at
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .unwrap_or(at);
    let to = at
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap_or(at);
    const PAGE: usize = 100;
    // Every page (analytics caps a query at 100 000 hits: 1 000 pages of 100).
    for page in 1..=1000 {
        // Within the caller's deadline: an unfinished lookup is "not known yet", never "absent".
        if deadline.remaining() < std::time::Duration::from_millis(800) {
            return Err(ApiError::Retry {
                reason: format!("the lookup ran out of time at page {page}"),
                hint: None,
                ambiguous: true,
            });
        }
        let body = json!({
            "interval": format!("{from}/{to}"),
            "segmentFilters": [{"type": "and", "predicates": [
                {"dimension": "mediaType", "value": "callback"},
                {"dimension": "queueId", "value": queue_id},
            ]}],
            "paging": {"pageSize": PAGE, "pageNumber": page},
        });
        let answer = api
            .request(
                Method::POST,
                "/api/v2/analytics/conversations/details/query",
                &[],
                Some(&body),
                "conversation query",
            )
            .await?;
        let conversations = answer.body["conversations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let found = conversations
            .iter()
            .find(|c| {
                c["participants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["attributes"]["reservationId"].as_str() == Some(reservation_id))
            })
            .and_then(|c| c["conversationId"].as_str())
            .map(str::to_string);
        if found.is_some() || conversations.len() < PAGE {
            return Ok(found);
        }
    }
    Ok(None)
}

/// `GET /api/v2/conversations/callbacks/{id}`: the callback conversation (a 404 is an answer, not an error).
async fn read(
    api: &GenesysApi,
    conversation_id: &str,
) -> Result<shared::genesys::Answer, CallbackError> {
    api.request(
        Method::GET,
        &format!(
            "/api/v2/conversations/callbacks/{}",
            shared::genesys::segment(conversation_id)
        ),
        &[],
        None,
        "callback",
    )
    .await
}

/// Whether Genesys still holds the callback to call: `Some(false)` once it is disconnected, `None` when
/// Genesys does not know it.
pub async fn is_pending(
    api: &GenesysApi,
    conversation_id: &str,
) -> Result<Option<bool>, CallbackError> {
    let answer = read(api, conversation_id).await?;
    if answer.status == 404 {
        return Ok(None);
    }
    if !answer.found() {
        return Err(ApiError::Refused {
            status: answer.status,
            what: "callback",
        });
    }
    let disconnected = answer.body["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["purpose"] == "customer")
        .any(|p| {
            p["state"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("disconnected"))
        });
    Ok(Some(!disconnected))
}

/// Cancels the callback: the conversation is disconnected (`PATCH …/callbacks/{id}` `{"state":
/// "disconnected"}`). `read_first` (an earlier attempt may have sent it: its answer was lost): read first, so
/// it is not sent again. Otherwise sent at once (one call less), and a refusal is read back: a callback
/// Genesys no longer holds (disconnected already, or unknown) is cancelled; one still pending is the refusal.
pub async fn cancel(
    api: &GenesysApi,
    conversation_id: &str,
    read_first: bool,
) -> Result<(), CallbackError> {
    if read_first && is_pending(api, conversation_id).await? != Some(true) {
        return Ok(());
    }
    let refusal = match api
        .request(
            Method::PATCH,
            &format!(
                "/api/v2/conversations/callbacks/{}",
                shared::genesys::segment(conversation_id)
            ),
            &[],
            Some(&json!({"state": "disconnected"})),
            "callback",
        )
        .await
    {
        Ok(answer) => match accepted(&answer) {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        },
        Err(refusal @ ApiError::Refused { .. }) => refusal,
        Err(e) => return Err(e),
    };
    match is_pending(api, conversation_id).await? {
        Some(true) => Err(refusal),
        Some(false) | None => Ok(()),
    }
}

/// The reservation a Genesys callback conversation was made for (its `reservationId` attribute), if any.
pub async fn reservation_of(
    api: &GenesysApi,
    conversation_id: &str,
) -> Result<Option<String>, CallbackError> {
    let answer = read(api, conversation_id).await?;
    if !answer.found() {
        return Ok(None);
    }
    Ok(answer.body["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|p| p["attributes"]["reservationId"].as_str())
        .map(str::to_string))
}
