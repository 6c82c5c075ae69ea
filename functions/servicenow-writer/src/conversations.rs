//! DynamoDB conversation records: which incident a conversation has, and a short lock so that events of
//! one conversation are applied one at a time, whichever invocation holds them.
//!
//! Record (same table as the event records, keyed by the conversation key, which is also the incident's
//! `correlation_id`): `{id, kind: "conversation", incident_sys_id, incident_number, impact, urgency,
//! replaces, lock_token, lock_until_ms, settle_until_ms, expiration}`. A lock is a conditional update that succeeds when no
//! live lock exists; it returns the record as it was, so the holder learns the incident and whether an
//! earlier holder got as far as creating one (a record without an incident means it may have: reconcile).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Update};
use aws_sdk_dynamodb::Client;

use crate::idempotency::{
    applied, get_n, get_s, is_condition_failure, is_transaction_conflict, n, now_ms, read_item, s,
    send_update, store_error, IdempotencyStore, StoreError,
};
use shared::failure::FailureClass;

/// The incident a conversation has, as far as this integration knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIncident {
    pub sys_id: String,
    pub number: String,
    /// The levels last sent (for `raise`), when known.
    pub impact: Option<u8>,
    pub urgency: Option<u8>,
    /// The number of a deleted incident this one replaced.
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationLock {
    pub token: String,
    pub incident: Option<KnownIncident>,
    /// A record existed: an earlier holder may have created the incident without recording it.
    pub existed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    Acquired(ConversationLock),
    /// Another invocation holds a live lock; `settle_until_ms`: it is held after a write that may still
    /// commit, and nothing may be written for the conversation before then.
    Busy {
        settle_until_ms: Option<u64>,
    },
}

/// An event's claim to complete together with its conversation's record.
#[derive(Debug, Clone, Copy)]
pub struct ClaimCompletion<'a> {
    pub key: &'a str,
    pub token: &'a str,
    pub number: &'a str,
}

#[derive(Debug, Clone)]
pub struct ConversationStore {
    client: Client,
    table: String,
    ttl: Duration,
    /// The event claims, for [`Self::record_completing`].
    claims: Option<IdempotencyStore>,
}

impl ConversationStore {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
            claims: None,
        }
    }

    /// With the event claims, so that a conversation's record and its event's claim are written in one call.
    pub fn with_claims(mut self, claims: IdempotencyStore) -> Self {
        self.claims = Some(claims);
        self
    }

    fn expiration(&self) -> AttributeValue {
        n(now_ms() / 1000 + self.ttl.as_secs())
    }

    /// Locks the conversation `key` until `until_ms` (epoch ms).
    pub async fn lock(&self, key: &str, until_ms: u64) -> Result<Locked, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression(
                "SET #token = :token, #until = :until, #kind = :kind, #expiration = :exp \
                 REMOVE #settle",
            )
            .condition_expression("attribute_not_exists(#until) OR #until < :now")
            .expression_attribute_names("#token", "lock_token")
            .expression_attribute_names("#until", "lock_until_ms")
            .expression_attribute_names("#settle", "settle_until_ms")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_values(":token", s(&token))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":kind", s("conversation"))
            .expression_attribute_values(":exp", self.expiration())
            .expression_attribute_values(":now", n(now_ms()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => {
                let old = out.attributes().cloned().unwrap_or_default();
                Ok(Locked::Acquired(ConversationLock {
                    token,
                    existed: !old.is_empty(),
                    incident: known_incident(&old),
                }))
            }
            // A transaction on the record: its holder is recording it, so the lock is live.
            Err(e) if is_condition_failure(&e) || is_transaction_conflict(&e) => Ok(Locked::Busy {
                settle_until_ms: self.settling_until(key).await?,
            }),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    /// The incident recorded for the conversation `key`, if any (a consistent read; the lock is not touched).
    pub async fn incident(&self, key: &str) -> Result<Option<KnownIncident>, StoreError> {
        let item = read_item(&self.client, &self.table, key).await?;
        Ok(item.as_ref().and_then(known_incident))
    }

    /// When a busy conversation is held for a write that may still commit: until when.
    async fn settling_until(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let item = read_item(&self.client, &self.table, key).await?;
        Ok(item
            .and_then(|item| get_n(&item, "settle_until_ms"))
            .filter(|u| *u > now_ms()))
    }

    /// Keeps the lock until `until_ms` after a write that may still commit: no event of the conversation is
    /// applied before then, and the next holder reconciles.
    pub async fn hold(&self, key: &str, token: &str, until_ms: u64) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression("SET #until = :until, #settle = :until")
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "lock_token")
            .expression_attribute_names("#until", "lock_until_ms")
            .expression_attribute_names("#settle", "settle_until_ms")
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":until", n(until_ms))
            .send()
            .await;
        applied("UpdateItem", res).map(|_| ())
    }

    /// Records the conversation's incident and releases the lock. `Ok(false)`: the lock had been taken over.
    pub async fn record(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
    ) -> Result<bool, StoreError> {
        let update = self
            .record_update(key, token, incident)
            .map_err(build_error)?;
        applied("UpdateItem", send_update(&self.client, update).await)
    }

    /// [`Self::record`] and the event claim's completion in one transaction: one call less (two write units
    /// more). `Ok(false)`: the lock or the claim had been taken over, and nothing was written; also without
    /// claims ([`Self::with_claims`]). The caller then records and completes each on its own.
    pub async fn record_completing(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
        claim: ClaimCompletion<'_>,
    ) -> Result<bool, StoreError> {
        let Some(claims) = &self.claims else {
            return Ok(false);
        };
        let record = self
            .record_update(key, token, incident)
            .map_err(build_error)?;
        let completion = claims
            .completion(claim.key, claim.token, claim.number)
            .map_err(build_error)?;
        claims.transact(vec![record, completion]).await
    }

    /// [`Self::record`]'s write.
    fn record_update(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
    ) -> Result<Update, BuildError> {
        let mut set = vec![
            "#sys_id = :sys_id",
            "#number = :number",
            "#expiration = :exp",
        ];
        let mut remove = vec!["#token", "#until"];
        let mut values = vec![
            (":sys_id", s(&incident.sys_id)),
            (":number", s(&incident.number)),
            (":exp", self.expiration()),
            (":token", s(token)),
        ];
        let optional = [
            (
                "#impact",
                ":impact",
                incident.impact.map(|v| n(u64::from(v))),
            ),
            (
                "#urgency",
                ":urgency",
                incident.urgency.map(|v| n(u64::from(v))),
            ),
            (
                "#replaces",
                ":replaces",
                incident.replaces.as_deref().map(s),
            ),
        ];
        let assignments: Vec<String> = optional
            .iter()
            .filter(|(_, _, v)| v.is_some())
            .map(|(name, value, _)| format!("{name} = {value}"))
            .collect();
        set.extend(assignments.iter().map(String::as_str));
        for (name, value, v) in optional {
            match v {
                Some(v) => values.push((value, v)),
                None => remove.push(name),
            }
        }
        let mut req = Update::builder()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .condition_expression("#token = :token");
        for (name, attr) in [
            ("#sys_id", "incident_sys_id"),
            ("#number", "incident_number"),
            ("#expiration", "expiration"),
            ("#token", "lock_token"),
            ("#until", "lock_until_ms"),
            ("#impact", "impact"),
            ("#urgency", "urgency"),
            ("#replaces", "replaces"),
        ] {
            req = req.expression_attribute_names(name, attr);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        req.build()
    }

    /// Releases the lock without recording anything.
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression("REMOVE #token, #until")
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "lock_token")
            .expression_attribute_names("#until", "lock_until_ms")
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        applied("UpdateItem", res).map(|_| ())
    }
}

fn build_error(e: BuildError) -> StoreError {
    StoreError {
        operation: "UpdateItem",
        reason: e.to_string(),
        class: FailureClass::Permanent,
    }
}

fn known_incident(item: &HashMap<String, AttributeValue>) -> Option<KnownIncident> {
    let level = |k: &str| get_n(item, k).and_then(|v| u8::try_from(v).ok());
    Some(KnownIncident {
        sys_id: get_s(item, "incident_sys_id")
            .filter(|v| !v.is_empty())?
            .to_string(),
        number: get_s(item, "incident_number").unwrap_or("").to_string(),
        impact: level("impact"),
        urgency: level("urgency"),
        replaces: get_s(item, "replaces").map(str::to_string),
    })
}
