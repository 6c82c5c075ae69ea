//! Where a legacy event lands in Genesys Cloud, by event type (`INGEST_TARGETS`, or `INGEST_TARGET` for all):
//! - `datatable` (the default): upserts a row of an Architect data table, keyed by the event (e.g. its
//!   `reference`); columns from JSON pointers into the event, checked against the table's schema (cached)
//!   before anything is written; a row newer than the event (its timestamp column) is left alone.
//! - `contact-note`: a note on the external contact with the event's phone or e-mail, carrying the
//!   transaction's idempotency key, looked for before writing again.
//! - `participant-data`: attributes on a live conversation's participant.
//! - `custom-endpoint`: `POST` to an ingestion service of your own ([`crate::genesys::Publisher`]).
//!
//! Each transaction is claimed in DynamoDB (one delivery at a time, a completed one never again), each data
//! table row locked while it is read and written, and every write is preceded by a read, so a write that
//! succeeded without an answer is found, not repeated.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::warn;

use shared::config::ConfigError;
use shared::event::glob_match;
use shared::failure::FailureClass;
use shared::idempotency::{claim_together, Claim, IdempotencyStore};
use shared::retry::{Deadline, Retrier, Retryable};

use crate::event::{BusinessEvent, FieldError};
use crate::genesys_api::{segment, ApiError, GenesysApi};

/// One event type glob set and where its events go.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub event_types: Vec<String>,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    DataTable(DataTable),
    ContactNote(ContactNote),
    ParticipantData(ParticipantData),
    CustomEndpoint { path: String },
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::DataTable(_) => "datatable",
            Target::ContactNote(_) => "contact-note",
            Target::ParticipantData(_) => "participant-data",
            Target::CustomEndpoint { .. } => "custom-endpoint",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataTable {
    pub datatable_id: String,
    /// Pointers tried in order for the row's key (the table's key field).
    pub key: Vec<String>,
    /// Column → pointer into the event.
    pub columns: Vec<(String, String)>,
    /// A column holding the event's time: an event older than the row's is not written.
    pub timestamp_column: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactNote {
    /// Pointers tried in order for the contact's phone (E.164) or e-mail.
    pub match_on: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantData {
    /// Attribute → pointer; the event's `attributes` are added as they are.
    pub attributes: Vec<(String, String)>,
}

fn default_columns() -> Vec<(String, String)> {
    [
        ("transaction_id", "/transaction_id"),
        ("event_type", "/event_type"),
        ("amount", "/amount"),
        ("currency", "/currency"),
        ("updated_at", "/timestamp"),
    ]
    .iter()
    .map(|(c, p)| (c.to_string(), p.to_string()))
    .collect()
}

fn default_attributes() -> Vec<(String, String)> {
    [
        ("legacyEventType", "/event_type"),
        ("legacyTransactionId", "/transaction_id"),
        ("legacyAmount", "/amount"),
        ("legacyCurrency", "/currency"),
        ("legacyEventTime", "/timestamp"),
        ("legacyReference", "/reference"),
    ]
    .iter()
    .map(|(c, p)| (c.to_string(), p.to_string()))
    .collect()
}

/// One entry of `INGEST_TARGETS` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    event_types: Vec<String>,
    target: String,
    datatable_id: Option<String>,
    key: Option<Vec<String>>,
    columns: Option<std::collections::BTreeMap<String, String>>,
    timestamp_column: Option<String>,
    match_on: Option<Vec<String>>,
    attributes: Option<std::collections::BTreeMap<String, String>>,
    path: Option<String>,
}

const TARGETS_VAR: &str = "INGEST_TARGETS";

/// `INGEST_TARGETS`: a JSON list of `{"event_types": [...], "target": "datatable" | "contact-note" |
/// "participant-data" | "custom-endpoint", ...}`; the first route whose globs match an event type takes it.
pub fn parse_routes(text: &str) -> Result<Vec<Route>, ConfigError> {
    let specs: Vec<RouteSpec> = serde_json::from_str(text).map_err(|e| {
        ConfigError::invalid(TARGETS_VAR, format!("not the expected JSON list: {e}"))
    })?;
    if specs.is_empty() {
        return Err(ConfigError::invalid(TARGETS_VAR, "lists no route"));
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| route_of(i, s))
        .collect()
}

fn pointers(i: usize, field: &str, list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() || list.iter().any(|p| !p.starts_with('/')) {
        return Err(ConfigError::invalid(
            TARGETS_VAR,
            format!("route {i}: {field} must be JSON pointers such as /reference"),
        ));
    }
    Ok(list)
}

fn names(
    i: usize,
    field: &str,
    map: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, pointer) in map {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ');
        if !ok || !pointer.starts_with('/') || name == "key" {
            return Err(ConfigError::invalid(
                TARGETS_VAR,
                format!("route {i}: {field} {name:?} must map a name (not key) to a JSON pointer"),
            ));
        }
        out.push((name, pointer));
    }
    Ok(out)
}

fn route_of(i: usize, s: RouteSpec) -> Result<Route, ConfigError> {
    if s.event_types.is_empty() || s.event_types.iter().any(|t| t.trim().is_empty()) {
        return Err(ConfigError::invalid(
            TARGETS_VAR,
            format!("route {i}: event_types is empty"),
        ));
    }
    let unused = |fields: &[(&str, bool)]| -> Result<(), ConfigError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(ConfigError::invalid(
                TARGETS_VAR,
                format!("route {i}: {name} does not apply to target {}", s.target),
            )),
            None => Ok(()),
        }
    };
    let target = match s.target.as_str() {
        "datatable" => {
            unused(&[("match_on", s.match_on.is_some()), ("attributes", s.attributes.is_some()), ("path", s.path.is_some())])?;
            let datatable_id = s
                .datatable_id
                .filter(|d| !d.trim().is_empty())
                .ok_or_else(|| ConfigError::invalid(TARGETS_VAR, format!("route {i}: datatable_id is required")))?;
            let columns = match s.columns {
                Some(c) => names(i, "column", c)?,
                None => default_columns(),
            };
            data_table(i, datatable_id, s.key, columns, s.timestamp_column)?
        }
        "contact-note" => {
            unused(&[("datatable_id", s.datatable_id.is_some()), ("columns", s.columns.is_some()), ("path", s.path.is_some())])?;
            Target::ContactNote(ContactNote {
                match_on: pointers(
                    i,
                    "match_on",
                    s.match_on.unwrap_or_else(|| {
                        vec!["/customer_phone".into(), "/customer_email".into()]
                    }),
                )?,
            })
        }
        "participant-data" => {
            unused(&[("datatable_id", s.datatable_id.is_some()), ("columns", s.columns.is_some()), ("path", s.path.is_some())])?;
            Target::ParticipantData(ParticipantData {
                attributes: match s.attributes {
                    Some(a) => names(i, "attribute", a)?,
                    None => default_attributes(),
                },
            })
        }
        "custom-endpoint" => Target::CustomEndpoint {
            path: s
                .path
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| ConfigError::invalid(TARGETS_VAR, format!("route {i}: path (starting with /) is required")))?,
        },
        other => {
            return Err(ConfigError::invalid(
                TARGETS_VAR,
                format!("route {i}: unknown target {other:?} (datatable, contact-note, participant-data, custom-endpoint)"),
            ))
        }
    };
    Ok(Route {
        event_types: s.event_types,
        target,
    })
}

/// A data table target, its timestamp column checked against its columns.
pub fn data_table(
    i: usize,
    datatable_id: String,
    key: Option<Vec<String>>,
    columns: Vec<(String, String)>,
    timestamp_column: Option<String>,
) -> Result<Target, ConfigError> {
    let key = pointers(
        i,
        "key",
        key.unwrap_or_else(|| vec!["/reference".into(), "/transaction_id".into()]),
    )?;
    let timestamp_column = match timestamp_column {
        Some(c) if c.is_empty() => None,
        Some(c) if !columns.iter().any(|(n, _)| *n == c) => {
            return Err(ConfigError::invalid(
                TARGETS_VAR,
                format!("route {i}: timestamp_column {c:?} is not one of the columns"),
            ))
        }
        Some(c) => Some(c),
        // The column the event's own time goes to.
        None => columns
            .iter()
            .find(|(_, p)| p == "/timestamp")
            .map(|(n, _)| n.clone()),
    };
    Ok(Target::DataTable(DataTable {
        datatable_id,
        key,
        columns,
        timestamp_column,
    }))
}

/// The default route for every event type, from `INGEST_TARGET` and its settings.
pub fn single_route(target: &str, env: &shared::config::Env) -> Result<Route, ConfigError> {
    let t = match target {
        "datatable" => {
            let id = env.required("GENESYS_DATATABLE_ID")?;
            let columns = match env.optional("DATATABLE_COLUMNS") {
                Some(text) => {
                    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&text)
                        .map_err(|_| ConfigError::invalid("DATATABLE_COLUMNS", "expected a JSON object of column → JSON pointer"))?;
                    names(0, "column", map).map_err(|e| ConfigError::invalid("DATATABLE_COLUMNS", e.to_string()))?
                }
                None => default_columns(),
            };
            let key = env
                .optional("DATATABLE_KEY")
                .map(|_| env.list_or("DATATABLE_KEY", &[]));
            data_table(0, id, key, columns, env.optional("DATATABLE_TIMESTAMP_COLUMN"))
                .map_err(|e| ConfigError::invalid("DATATABLE_KEY / DATATABLE_TIMESTAMP_COLUMN", e.to_string()))?
        }
        "contact-note" => Target::ContactNote(ContactNote {
            match_on: vec!["/customer_phone".into(), "/customer_email".into()],
        }),
        "participant-data" => Target::ParticipantData(ParticipantData {
            attributes: default_attributes(),
        }),
        "custom-endpoint" => Target::CustomEndpoint {
            path: env
                .optional("GENESYS_INGEST_PATH")
                .unwrap_or_else(|| crate::DEFAULT_INGEST_PATH.into()),
        },
        other => {
            return Err(ConfigError::invalid(
                "INGEST_TARGET",
                format!("unknown target {other:?} (datatable, contact-note, participant-data, custom-endpoint)"),
            ))
        }
    };
    Ok(Route {
        event_types: vec!["*".into()],
        target: t,
    })
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    RowCreated,
    RowUpdated,
    /// The row already held exactly this.
    RowUnchanged,
    /// The row holds a newer event: left alone.
    RowNewer,
    Noted,
    /// The contact already has this transaction's note.
    AlreadyNoted,
    AttributesSet,
    /// The transaction was delivered before.
    Duplicate,
}

impl Delivered {
    pub fn name(self) -> &'static str {
        match self {
            Delivered::RowCreated => "row_created",
            Delivered::RowUpdated => "row_updated",
            Delivered::RowUnchanged => "row_unchanged",
            Delivered::RowNewer => "row_newer",
            Delivered::Noted => "noted",
            Delivered::AlreadyNoted => "already_noted",
            Delivered::AttributesSet => "attributes_set",
            Delivered::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliverError {
    /// 400: the event cannot be delivered as it is (each field or column named).
    #[error("invalid event")]
    Invalid(Vec<FieldError>),
    /// 409: the transaction id was delivered with another payload.
    #[error("the transaction was delivered before with another payload")]
    Conflict,
    /// 422: Genesys has nothing to deliver it to (no such contact, conversation or table).
    #[error("{code}: {message}")]
    Unprocessable { code: &'static str, message: String },
    /// 502: Genesys refused it.
    #[error("{0}")]
    Refused(String),
    /// 503: not delivered within the deadline; the same transaction may be sent again.
    #[error("{reason}")]
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
}

/// Why one step failed, for the retry engine.
#[derive(Debug, Clone, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{code}: {message}")]
    Unprocessable { code: &'static str, message: String },
    /// A write was sent and may have been applied without an answer: not retried now (Genesys may still
    /// apply it), and the transaction and row are held for [`WRITE_SETTLE`].
    #[error("{0}")]
    Unconfirmed(String),
}

impl Retryable for StepError {
    fn class(&self) -> FailureClass {
        match self {
            StepError::Api(e) => e.class(),
            StepError::Unprocessable { .. } | StepError::Unconfirmed(_) => FailureClass::Permanent,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            StepError::Api(e) => e.retry_after(),
            _ => None,
        }
    }
    fn ambiguous(&self) -> bool {
        matches!(self, StepError::Unconfirmed(_))
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        match started {
            // Cut off mid-attempt: a write may have been on its way.
            true => StepError::Unconfirmed(format!(
                "no answer from Genesys within {} ms",
                budget.as_millis()
            )),
            false => StepError::Api(ApiError::out_of_time(budget, false)),
        }
    }
}

/// The time the outcome of a delivery may take to record, after the deadline's work.
const RECORD_BUDGET: Duration = Duration::from_millis(1500);

/// The time a delivered row's one-transaction record may take before each part is recorded on its own (within
/// [`RECORD_BUDGET`] again, both at once).
const TOGETHER_BUDGET: Duration = Duration::from_millis(1000);

/// After a write that may have been applied without an answer, nothing is written for the transaction or
/// the row until this long after (`INGEST_WRITE_SETTLE_SECONDS`): the next attempt reads what Genesys then
/// has.
pub const WRITE_SETTLE: Duration = Duration::from_secs(15);

impl From<StepError> for DeliverError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::Api(ApiError::Refused { status, what }) => {
                DeliverError::Refused(format!("Genesys refused the {what} (HTTP {status})"))
            }
            StepError::Api(ApiError::Retry { reason, hint, .. }) => DeliverError::Unavailable {
                retry_after: hint.unwrap_or(Duration::from_secs(5)).max(Duration::from_secs(1)),
                reason,
            },
            StepError::Unprocessable { code, message } => DeliverError::Unprocessable { code, message },
            StepError::Unconfirmed(reason) => DeliverError::Unavailable {
                retry_after: Duration::from_secs(2),
                reason: format!("{reason}; Genesys may still apply it: retry the same transaction after Retry-After"),
            },
        }
    }
}

/// How long a data table's schema is trusted.
const SCHEMA_TTL: Duration = Duration::from_secs(300);

pub struct Targets {
    routes: Vec<Route>,
    api: GenesysApi,
    /// `None` only when every route is a custom endpoint.
    stores: Option<Stores>,
    retrier: Retrier,
    schemas: Mutex<HashMap<String, (Instant, Value)>>,
    settle: Duration,
}

/// The DynamoDB records delivery needs.
pub struct Stores {
    /// Transaction claims, kept as long as a sender may retry (the store's TTL).
    pub claims: IdempotencyStore,
    /// Row locks (short-lived records).
    pub locks: IdempotencyStore,
}

/// The row lock record's id for row `key` of data table `table`: a hash, as keys may be phone numbers.
fn row_lock_key(table: &str, key: &str) -> String {
    format!(
        "datatable-row:{}",
        hex::encode(Sha256::digest(format!("{table}\n{key}").as_bytes()))
    )
}

/// The row lock records' payload hash (a lock is never completed).
const ROW_LOCK: &str = "row-lock";

/// Time kept back from the deadline when a claim or lock is taken.
const STORE_RESERVE: Duration = Duration::from_millis(300);

/// Until when a claim or lock taken now is held: past the deadline, so a late write is still covered.
fn lease_until(deadline: Deadline) -> u64 {
    shared::clock::epoch_ms() + (deadline.remaining() + Duration::from_secs(5)).as_millis() as u64
}

/// A data table row's lock, held from before the row is read until the transaction's outcome is recorded.
struct RowLock {
    key: String,
    token: String,
    /// Held until then after a write that may still apply.
    settle_until_ms: Option<u64>,
}

/// What a route's event becomes, checked before anything is claimed or written.
enum Plan {
    Row {
        table: String,
        key: String,
        row: Map<String, Value>,
        timestamp_column: Option<String>,
    },
    /// Every phone or e-mail the event gives, tried in turn.
    Note { contacts: Vec<String>, text: String },
    Attributes {
        conversation: String,
        participant: String,
        attributes: Map<String, Value>,
    },
}

fn field_error(field: &str, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// The first pointer with a non-empty scalar, as text.
fn first_text(doc: &Value, pointers: &[String]) -> Option<String> {
    pointers.iter().find_map(|p| match doc.pointer(p) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

impl Targets {
    pub fn new(
        routes: Vec<Route>,
        api: GenesysApi,
        stores: Option<Stores>,
        retrier: Retrier,
    ) -> Self {
        Self {
            routes,
            api,
            stores,
            retrier,
            schemas: Mutex::new(HashMap::new()),
            settle: WRITE_SETTLE,
        }
    }

    /// How long a transaction and its row are held after a write that may have been applied.
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn route(&self, event_type: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.event_types.iter().any(|g| glob_match(g, event_type)))
    }

    /// Checks at cold start that every data table exists and has the configured columns (a table that is
    /// missing or lacks a column refuses the start; Genesys unreachable is only logged).
    pub async fn check_tables(&self) -> Result<(), String> {
        for r in &self.routes {
            let Target::DataTable(t) = &r.target else {
                continue;
            };
            match self.schema(&t.datatable_id, true).await {
                Ok(schema) => {
                    for (column, _) in &t.columns {
                        if schema["properties"].get(column).is_none() {
                            return Err(format!(
                                "data table {} has no column {column:?}",
                                t.datatable_id
                            ));
                        }
                    }
                }
                Err(StepError::Unprocessable { message, .. }) => return Err(message),
                Err(e) => {
                    warn!(datatable = %t.datatable_id, error = %e, "data table schema not checked at start")
                }
            }
        }
        Ok(())
    }

    async fn schema(&self, table: &str, fresh: bool) -> Result<Value, StepError> {
        if !fresh {
            let cached = self
                .schemas
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(table)
                .cloned();
            if let Some((at, schema)) = cached {
                if at.elapsed() < SCHEMA_TTL {
                    return Ok(schema);
                }
            }
        }
        let path = format!("/api/v2/flows/datatables/{}", segment(table));
        let answer = self
            .api
            .request(
                Method::GET,
                &path,
                &[("expand", "schema")],
                None,
                "data table",
            )
            .await?;
        if !answer.found() {
            return Err(StepError::Unprocessable {
                code: "datatable_not_found",
                message: format!("Genesys has no data table {table} (check GENESYS_DATATABLE_ID / INGEST_TARGETS)"),
            });
        }
        let schema = answer.body["schema"].clone();
        self.schemas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(table.to_string(), (Instant::now(), schema.clone()));
        Ok(schema)
    }

    /// Delivers `event` (from `source`) under its transaction's idempotency `key`.
    pub async fn deliver(
        &self,
        route: &Route,
        event: &BusinessEvent,
        source: &str,
        key: &str,
        deadline: Deadline,
    ) -> Result<Delivered, DeliverError> {
        let doc = event.document(source);
        let plan = self.plan(&route.target, &doc, key, deadline).await?;
        let Some(stores) = &self.stores else {
            return Err(DeliverError::Refused(
                "IDEMPOTENCY_TABLE is not configured".into(),
            ));
        };
        let hash = hex::encode(Sha256::digest(doc.to_string().as_bytes()));
        let claim_key = format!("ingest:{key}");
        // A row's delivery: its claim and the row's lock in one call, when both can be claimed (a lock
        // released by the row's last delivery can).
        let mut fresh_lock = None;
        let fresh = match &plan {
            Plan::Row {
                table,
                key: row_key,
                ..
            } => {
                let lock_key = row_lock_key(table, row_key);
                let until = lease_until(deadline);
                let together = claim_together([
                    (&stores.claims, claim_key.as_str(), hash.as_str(), until),
                    (&stores.locks, lock_key.as_str(), ROW_LOCK, until),
                ]);
                match tokio::time::timeout(
                    deadline.remaining().saturating_sub(STORE_RESERVE),
                    together,
                )
                .await
                {
                    Ok(Some([claim, lock])) => {
                        fresh_lock = Some(RowLock {
                            key: lock_key,
                            token: lock,
                            settle_until_ms: None,
                        });
                        Some(claim)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let token = match fresh {
            Some(token) => token,
            None => match self.claim(stores, &claim_key, &hash, deadline).await? {
                Some(token) => token,
                None => return Ok(Delivered::Duplicate),
            },
        };
        let (result, row_lock) = match plan {
            Plan::Row {
                table,
                key: row_key,
                row,
                timestamp_column,
            } => {
                let locked = match fresh_lock.take() {
                    Some(lock) => Ok(lock),
                    None => self.lock_row(stores, &table, &row_key, deadline).await,
                };
                match locked {
                    Ok(mut lock) => {
                        let result = self
                            .write_row(
                                &table,
                                &row_key,
                                &row,
                                timestamp_column.as_deref(),
                                deadline,
                            )
                            .await;
                        if let Err(StepError::Unconfirmed(_)) = &result {
                            lock.settle_until_ms =
                                Some(shared::clock::epoch_ms() + self.settle.as_millis() as u64);
                        }
                        (result, Some(lock))
                    }
                    Err(e) => (Err(e), None),
                }
            }
            Plan::Note { contacts, text } => {
                (self.note(&contacts, &text, key, deadline).await, None)
            }
            Plan::Attributes {
                conversation,
                participant,
                attributes,
            } => (
                self.attributes(&conversation, &participant, &attributes, deadline)
                    .await,
                None,
            ),
        };
        // Bounded on its own: the answer is known, and the record must still be written.
        let settle = shared::clock::epoch_ms() + self.settle.as_millis() as u64;
        let together = match (&result, &row_lock) {
            (Ok(done), Some(lock)) => record_together(stores, lock, &claim_key, &token, done).await,
            _ => false,
        };
        if !together {
            // Each on its own (and at once), as far as it still holds: both are conditional on their tokens,
            // so repeating one the transaction may have applied changes nothing.
            let claims = &stores.claims;
            let release_lock = async {
                if let Some(lock) = &row_lock {
                    if stores
                        .locks
                        .release(&lock.key, &lock.token, None, lock.settle_until_ms)
                        .await
                        .is_err()
                    {
                        warn!("could not release the row lock; its lease expires");
                    }
                }
            };
            let record = async {
                match &result {
                    Ok(done) => claims
                        .complete(&claim_key, &token, done.name())
                        .await
                        .map(|_| ()),
                    // May still be applied: nothing for this transaction until Genesys has settled.
                    Err(StepError::Unconfirmed(_)) => {
                        claims.release(&claim_key, &token, None, Some(settle)).await
                    }
                    // Nothing was written: forgotten, so a corrected resend is not a conflict.
                    Err(_) => claims.forget(&claim_key, &token).await.map(|_| ()),
                }
            };
            match tokio::time::timeout(RECORD_BUDGET, async {
                tokio::join!(release_lock, record).1
            })
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "could not record the transaction's outcome; a retry reads before writing")
                }
                Err(_) => {
                    warn!("recording the transaction's outcome timed out; a retry reads before writing")
                }
            }
        }
        result.map_err(|e| match DeliverError::from(e) {
            DeliverError::Unavailable { reason, .. }
                if settle > 0 && reason.contains("may still apply") =>
            {
                DeliverError::Unavailable {
                    retry_after: self.settle.max(Duration::from_secs(1)),
                    reason,
                }
            }
            other => other,
        })
    }

    async fn plan(
        &self,
        target: &Target,
        doc: &Value,
        key: &str,
        deadline: Deadline,
    ) -> Result<Plan, DeliverError> {
        match target {
            Target::DataTable(t) => {
                let budget = deadline
                    .remaining()
                    .saturating_sub(Duration::from_millis(500));
                let schema = tokio::time::timeout(budget, self.schema(&t.datatable_id, false))
                    .await
                    .unwrap_or_else(|_| Err(StepError::Api(ApiError::out_of_time(budget, false))))
                    .map_err(DeliverError::from)?;
                let key_fields = || {
                    t.key
                        .iter()
                        .map(|p| field_name(p))
                        .collect::<Vec<_>>()
                        .join(" or ")
                };
                let row_key = first_text(doc, &t.key).ok_or_else(|| {
                    DeliverError::Invalid(vec![field_error(
                        &key_fields(),
                        "required: the data table row's key",
                    )])
                })?;
                // A key of dots would name another URL (`rows/..` is the table).
                if row_key.len() > 256 || !row_key.chars().any(char::is_alphanumeric) {
                    return Err(DeliverError::Invalid(vec![field_error(
                        &key_fields(),
                        "a row key needs a letter or digit, and at most 256 characters",
                    )]));
                }
                let mut row = Map::new();
                row.insert("key".into(), json!(row_key));
                let mut errors = Vec::new();
                for (column, pointer) in &t.columns {
                    let Some(value) = doc.pointer(pointer).filter(|v| !v.is_null()) else {
                        continue;
                    };
                    match column_value(&schema, column, value) {
                        Ok(v) => {
                            row.insert(column.clone(), v);
                        }
                        Err(problem) => errors.push(field_error(column, problem)),
                    }
                }
                if let Some(column) = &t.timestamp_column {
                    if !row.contains_key(column) && !errors.iter().any(|e| e.field == *column) {
                        errors.push(field_error(column, "required: rows are ordered by it"));
                    }
                }
                if !errors.is_empty() {
                    return Err(DeliverError::Invalid(errors));
                }
                Ok(Plan::Row {
                    table: t.datatable_id.clone(),
                    key: row_key,
                    row,
                    timestamp_column: t.timestamp_column.clone(),
                })
            }
            Target::ContactNote(n) => {
                let contacts: Vec<String> = n
                    .match_on
                    .iter()
                    .filter_map(|p| first_text(doc, std::slice::from_ref(p)))
                    .collect();
                if contacts.is_empty() {
                    let fields = n
                        .match_on
                        .iter()
                        .map(|p| field_name(p))
                        .collect::<Vec<_>>()
                        .join(" or ");
                    return Err(DeliverError::Invalid(vec![field_error(
                        &fields,
                        "required: how the external contact is found",
                    )]));
                }
                Ok(Plan::Note {
                    contacts,
                    text: note_text(doc, key),
                })
            }
            Target::ParticipantData(p) => {
                let text = |f: &str| doc[f].as_str().map(str::to_string);
                let (Some(conversation), Some(participant)) =
                    (text("conversation_id"), text("participant_id"))
                else {
                    return Err(DeliverError::Invalid(
                        ["conversation_id", "participant_id"]
                            .iter()
                            .filter(|f| text(f).is_none())
                            .map(|f| field_error(f, "required by the participant-data target"))
                            .collect(),
                    ));
                };
                let mut attributes = Map::new();
                for (name, pointer) in &p.attributes {
                    if let Some(v) = first_text(doc, std::slice::from_ref(pointer)) {
                        attributes.insert(name.clone(), json!(v));
                    }
                }
                if let Some(extra) = doc["attributes"].as_object() {
                    for (k, v) in extra {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        attributes.insert(k.clone(), json!(v));
                    }
                }
                Ok(Plan::Attributes {
                    conversation,
                    participant,
                    attributes,
                })
            }
            Target::CustomEndpoint { .. } => Err(DeliverError::Refused(
                "custom-endpoint is delivered by the publisher".into(),
            )),
        }
    }

    /// Claims the transaction's `claim_key` for `hash`, waiting while another delivery of it runs. `None`:
    /// it was delivered already.
    async fn claim(
        &self,
        stores: &Stores,
        claim_key: &str,
        hash: &str,
        deadline: Deadline,
    ) -> Result<Option<String>, DeliverError> {
        loop {
            let until = lease_until(deadline);
            let claim = bounded(
                deadline,
                STORE_RESERVE,
                stores.claims.claim(claim_key, hash, until),
            )
            .await?;
            match claim {
                Claim::Acquired { token, .. } => return Ok(Some(token)),
                Claim::Completed { .. } => return Ok(None),
                Claim::Conflict => return Err(DeliverError::Conflict),
                Claim::InFlight { settle_until_ms } => {
                    wait_or_give_up(
                        deadline,
                        settle_until_ms,
                        "the same transaction is being delivered",
                    )
                    .await?
                }
            }
        }
    }

    /// Takes the row's lock: one writer per row at a time.
    async fn lock_row(
        &self,
        stores: &Stores,
        table: &str,
        key: &str,
        deadline: Deadline,
    ) -> Result<RowLock, StepError> {
        // One writer per row at a time: "newer wins" needs the read and the write together. The record's id
        // is a hash: keys may be phone numbers.
        let lock_key = row_lock_key(table, key);
        loop {
            let until = lease_until(deadline);
            let claim = bounded(
                deadline,
                STORE_RESERVE,
                stores.locks.claim(&lock_key, ROW_LOCK, until),
            )
            .await
            .map_err(|e| {
                StepError::Api(ApiError::Retry {
                    reason: e.to_string(),
                    hint: None,
                    ambiguous: false,
                })
            })?;
            match claim {
                Claim::Acquired { token, .. } => {
                    return Ok(RowLock {
                        key: lock_key,
                        token,
                        settle_until_ms: None,
                    })
                }
                Claim::InFlight { settle_until_ms } => wait_or_give_up(
                    deadline,
                    settle_until_ms,
                    "another event is writing this row",
                )
                .await
                .map_err(|_| {
                    StepError::Api(ApiError::Retry {
                        reason: "another event is writing this row".into(),
                        hint: Some(Duration::from_secs(1)),
                        ambiguous: false,
                    })
                })?,
                // A lock record is never completed; anything else is retried at once.
                _ => {}
            }
        }
    }

    /// Writes the row (held under its [`RowLock`]): "newer wins" reads it, then creates or updates it.
    async fn write_row(
        &self,
        table: &str,
        key: &str,
        row: &Map<String, Value>,
        timestamp_column: Option<&str>,
        deadline: Deadline,
    ) -> Result<Delivered, StepError> {
        let rows = format!("/api/v2/flows/datatables/{}/rows", segment(table));
        let one = format!("{rows}/{}", segment(key));
        self.retrier
            .run(
                deadline,
                |_| async {
                    let current = self
                        .api
                        .request(
                            Method::GET,
                            &one,
                            &[("showbrief", "false")],
                            None,
                            "data table row",
                        )
                        .await?;
                    let existing = current.found().then_some(current.body);
                    if let Some(Value::Object(existing)) = &existing {
                        // Columns the event does not map (kept by others) stay as they are.
                        let mut merged = existing.clone();
                        merged.extend(row.clone());
                        if merged == *existing {
                            return Ok(Delivered::RowUnchanged);
                        }
                        if let Some(column) = timestamp_column {
                            if row_is_as_new(existing.get(column), row.get(column)) {
                                return Ok(Delivered::RowNewer);
                            }
                        }
                        let put = self
                            .write(Method::PUT, &one, &Value::Object(merged), "data table row")
                            .await?;
                        if put.found() {
                            return Ok(Delivered::RowUpdated);
                        }
                        // Deleted between the read and the write: created again below.
                    }
                    let post = self
                        .write(
                            Method::POST,
                            &rows,
                            &Value::Object(row.clone()),
                            "data table row",
                        )
                        .await?;
                    match post.status {
                        409 => Err(StepError::Api(ApiError::Retry {
                            reason: "the row appeared between the read and the write".into(),
                            hint: Some(Duration::ZERO),
                            ambiguous: false,
                        })),
                        404 => Err(StepError::Unprocessable {
                            code: "datatable_not_found",
                            message: format!("Genesys has no data table {table}"),
                        }),
                        _ => Ok(Delivered::RowCreated),
                    }
                },
                |e, _| warn!(error = %e, "data table write failed; retrying"),
            )
            .await
    }

    /// A write: an ambiguous failure (sent, no answer or a 5xx) ends the delivery for now as unconfirmed.
    async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        what: &'static str,
    ) -> Result<crate::genesys_api::Answer, StepError> {
        match self.api.request(method, path, &[], Some(body), what).await {
            Err(
                e @ ApiError::Retry {
                    ambiguous: true, ..
                },
            ) => Err(StepError::Unconfirmed(e.to_string())),
            other => other.map_err(StepError::Api),
        }
    }

    async fn note(
        &self,
        contacts: &[String],
        text: &str,
        key: &str,
        deadline: Deadline,
    ) -> Result<Delivered, StepError> {
        let reference = reference(key);
        self.retrier
            .run(
                deadline,
                |_| async {
                    let id = self.find_contact(contacts).await?;
                    let notes_path = format!("/api/v2/externalcontacts/contacts/{}/notes", segment(&id));
                    // Genesys lists at most the first 1,000 notes (pageNumber × pageSize ≤ 1,000).
                    let mut complete = false;
                    for page in 1..=10u64 {
                        let page_text = page.to_string();
                        let notes = self
                            .api
                            .request(Method::GET, &notes_path, &[("pageSize", "100"), ("pageNumber", &page_text)], None, "contact notes")
                            .await?;
                        let entities = notes.body["entities"].as_array().cloned().unwrap_or_default();
                        if entities.iter().any(|n| n["noteText"].as_str().is_some_and(|t| t.lines().next() == Some(reference.as_str()))) {
                            return Ok(Delivered::AlreadyNoted);
                        }
                        let pages = notes.body["pageCount"].as_u64().unwrap_or(1);
                        if entities.len() < 100 || page >= pages {
                            complete = true;
                            break;
                        }
                    }
                    if !complete {
                        // Its note could be beyond what Genesys lists: writing could duplicate it.
                        return Err(StepError::Unprocessable {
                            code: "contact_notes_uncheckable",
                            message: "the contact has more than 1,000 notes: whether this transaction's is among them cannot be checked".into(),
                        });
                    }
                    let posted = self
                        .write(Method::POST, &notes_path, &json!({"noteText": text}), "contact note")
                        .await?;
                    match posted.found() {
                        true => Ok(Delivered::Noted),
                        false => Err(contact_missing()),
                    }
                },
                |e, _| warn!(error = %e, "contact note failed; retrying"),
            )
            .await
    }

    /// The one external contact whose phone or e-mail is exactly one of `values`, tried in turn (the search
    /// itself is loose).
    async fn find_contact(&self, values: &[String]) -> Result<String, StepError> {
        for value in values {
            let found = self
                .api
                .request(
                    Method::GET,
                    "/api/v2/externalcontacts/contacts",
                    &[("q", value), ("pageSize", "100")],
                    None,
                    "contact search",
                )
                .await?;
            let wanted = value.to_ascii_lowercase();
            let mut matches: Vec<&str> = found.body["entities"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| {
                    ["cellPhone", "workPhone", "homePhone", "otherPhone"]
                        .iter()
                        .any(|p| c[p]["e164"].as_str() == Some(value.as_str()))
                        || ["workEmail", "personalEmail", "otherEmail"]
                            .iter()
                            .any(|e| {
                                c[e].as_str()
                                    .is_some_and(|m| m.to_ascii_lowercase() == wanted)
                            })
                })
                .filter_map(|c| c["id"].as_str())
                .collect();
            matches.dedup();
            match matches.as_slice() {
                [one] => return Ok(one.to_string()),
                [] => continue,
                _ => {
                    return Err(StepError::Unprocessable {
                        code: "contact_ambiguous",
                        message: "several external contacts have this phone number or e-mail"
                            .into(),
                    })
                }
            }
        }
        Err(contact_missing())
    }

    async fn attributes(
        &self,
        conversation: &str,
        participant: &str,
        attributes: &Map<String, Value>,
        deadline: Deadline,
    ) -> Result<Delivered, StepError> {
        let path = format!(
            "/api/v2/conversations/{}/participants/{}/attributes",
            segment(conversation),
            segment(participant)
        );
        let body = json!({"attributes": attributes});
        self.retrier
            .run(
                deadline,
                |_| async {
                    // Setting the same attributes twice is harmless: an ambiguous PATCH is simply repeated.
                    let answer = self
                        .api
                        .request(Method::PATCH, &path, &[], Some(&body), "participant attributes")
                        .await?;
                    match answer.found() {
                        true => Ok(Delivered::AttributesSet),
                        false => Err(StepError::Unprocessable {
                            code: "conversation_not_found",
                            message: "Genesys has no such conversation or participant (or the conversation ended)".into(),
                        }),
                    }
                },
                |e, _| warn!(error = %e, "participant attributes failed; retrying"),
            )
            .await
    }
}

/// A store call within the deadline (minus `reserve`).
/// A delivered row's lock released and its transaction completed in one call. `false`: not applied (a lease
/// taken over meanwhile) or unanswered within [`TOGETHER_BUDGET`]; the caller then records each on its own.
async fn record_together(
    stores: &Stores,
    lock: &RowLock,
    claim_key: &str,
    token: &str,
    done: &Delivered,
) -> bool {
    let updates = [
        stores
            .locks
            .release_update(&lock.key, &lock.token, None, None),
        stores.claims.completion(claim_key, token, done.name()),
    ];
    let updates = match updates.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(updates) => updates,
        Err(e) => {
            warn!(error = %e, "could not build the delivery's record; each part is written on its own");
            return false;
        }
    };
    match tokio::time::timeout(TOGETHER_BUDGET, stores.claims.transact(updates)).await {
        Ok(Ok(true)) => true,
        Ok(Ok(false)) => {
            warn!("the row lock or the transaction's claim was taken over meanwhile; each is recorded on its own");
            false
        }
        Ok(Err(e)) => {
            warn!(error = %e, "recording the delivery in one transaction failed; each part is recorded on its own");
            false
        }
        Err(_) => {
            warn!("recording the delivery in one transaction timed out; each part is recorded on its own");
            false
        }
    }
}

async fn bounded<T, E: std::fmt::Display>(
    deadline: Deadline,
    reserve: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, DeliverError> {
    match tokio::time::timeout(deadline.remaining().saturating_sub(reserve), call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_unavailable(e)),
        Err(_) => Err(store_unavailable("no answer in time")),
    }
}

fn contact_missing() -> StepError {
    StepError::Unprocessable {
        code: "contact_not_found",
        message: "no external contact has this phone number or e-mail".into(),
    }
}

fn store_unavailable(e: impl std::fmt::Display) -> DeliverError {
    DeliverError::Unavailable {
        retry_after: Duration::from_secs(2),
        reason: format!("the idempotency table: {e}"),
    }
}

async fn wait_or_give_up(
    deadline: Deadline,
    settle_until_ms: Option<u64>,
    why: &str,
) -> Result<(), DeliverError> {
    let wait = Duration::from_millis(100);
    let settling =
        settle_until_ms.map(|u| Duration::from_millis(u.saturating_sub(shared::clock::epoch_ms())));
    if settling.is_some_and(|s| !deadline.allows(s, Duration::from_millis(200)))
        || !deadline.allows(wait, Duration::from_millis(200))
    {
        return Err(DeliverError::Unavailable {
            retry_after: settling
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_secs(1)),
            reason: why.to_string(),
        });
    }
    tokio::time::sleep(shared::retry::jitter(wait)).await;
    Ok(())
}

/// The note's reference to its transaction: found again before a second note is written.
pub fn reference(key: &str) -> String {
    format!("[ref {key}]")
}

/// The note: its reference on the first line (matched exactly, so no text can imitate it), then the event.
fn note_text(doc: &Value, key: &str) -> String {
    let s = |f: &str| match &doc[f] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut text = format!(
        "{}\n{} from {}: transaction {}, {} {}, at {}",
        reference(key),
        s("event_type"),
        s("source"),
        s("transaction_id"),
        s("amount"),
        s("currency"),
        s("timestamp")
    );
    if !s("reference").is_empty() {
        text.push_str(&format!(" (reference {})", s("reference")));
    }
    if let Some(attrs) = doc["attributes"].as_object() {
        for (k, v) in attrs {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            text.push_str(&format!(
                "\n{k}: {}",
                shared::redact::redact_text(&v).replace('\n', " ")
            ));
        }
    }
    text
}

/// `value` for `column` as the table's schema types it, or why not.
fn column_value(schema: &Value, column: &str, value: &Value) -> Result<Value, String> {
    let Some(kind) = schema["properties"][column]["type"].as_str() else {
        return Err("the data table has no such column".into());
    };
    let converted = match (kind, value) {
        ("string", Value::String(_)) => Some(value.clone()),
        ("string", Value::Number(n)) => Some(json!(n.to_string())),
        ("string", Value::Bool(b)) => Some(json!(b.to_string())),
        ("number", Value::Number(_)) => Some(value.clone()),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => Some(value.clone()),
        ("boolean", Value::Bool(_)) => Some(value.clone()),
        _ => None,
    };
    converted.ok_or_else(|| format!("the column is a {kind}; the event's value is not"))
}

/// Whether the row's time (`existing`) is at or after the event's (`ours`): an event no newer than the row
/// is not written (the first of two at the same instant stays). An unreadable row time is older.
fn row_is_as_new(existing: Option<&Value>, ours: Option<&Value>) -> bool {
    let parse = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    };
    match (parse(existing), parse(ours)) {
        (Some(e), Some(o)) => e >= o,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_checked_and_name_the_setting() {
        let routes = parse_routes(
            r#"[{"event_types": ["order.*"], "target": "datatable", "datatable_id": "t1", "key": ["/reference"]},
                {"event_types": ["*"], "target": "contact-note"}]"#,
        )
        .unwrap();
        assert_eq!(routes.len(), 2);
        let Target::DataTable(t) = &routes[0].target else {
            panic!()
        };
        assert_eq!(t.timestamp_column.as_deref(), Some("updated_at"));
        for bad in [
            r#"[]"#,
            r#"[{"event_types": ["*"], "target": "fax"}]"#,
            r#"[{"event_types": ["*"], "target": "datatable"}]"#,
            r#"[{"event_types": ["*"], "target": "datatable", "datatable_id": "t", "key": ["reference"]}]"#,
            r#"[{"event_types": ["*"], "target": "datatable", "datatable_id": "t", "timestamp_column": "nope"}]"#,
            r#"[{"event_types": ["*"], "target": "contact-note", "datatable_id": "t"}]"#,
            r#"[{"event_types": [], "target": "contact-note"}]"#,
            r#"[{"event_types": ["*"], "target": "contact-note", "surprise": 1}]"#,
        ] {
            let err = parse_routes(bad).unwrap_err();
            assert!(err.to_string().contains("INGEST_TARGETS"), "{bad}: {err}");
        }
    }

    #[test]
    fn columns_follow_the_schema_and_newer_rows_win() {
        let schema = json!({"properties": {"key": {"type": "string"}, "amount": {"type": "number"},
                                           "count": {"type": "integer"}, "note": {"type": "string"}}});
        assert_eq!(column_value(&schema, "amount", &json!(1.5)), Ok(json!(1.5)));
        assert_eq!(column_value(&schema, "note", &json!(2)), Ok(json!("2")));
        assert!(column_value(&schema, "count", &json!(1.5)).is_err());
        assert!(column_value(&schema, "missing", &json!("x")).is_err());
        let t = |s: &str| json!(s);
        assert!(row_is_as_new(
            Some(&t("2026-12-01T10:00:00Z")),
            Some(&t("2026-12-01T09:00:00Z"))
        ));
        assert!(row_is_as_new(
            Some(&t("2026-12-01T09:00:00Z")),
            Some(&t("2026-12-01T09:00:00Z"))
        ));
        assert!(!row_is_as_new(
            Some(&t("2026-12-01T08:00:00Z")),
            Some(&t("2026-12-01T09:00:00Z"))
        ));
        assert!(!row_is_as_new(
            Some(&t("garbage")),
            Some(&t("2026-12-01T09:00:00Z"))
        ));
    }
}
