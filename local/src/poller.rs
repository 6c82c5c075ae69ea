//! Feeds SQS batches to the writer like the Lambda SQS event source mapping: long-poll receive, one
//! invocation per batch with a deadline, delete only what succeeded, leave failures to reappear after the
//! visibility timeout (and SQS redrive them to the DLQ after `maxReceiveCount`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use servicenow_writer::{Outcome, Writer};
use shared::retry::Deadline;
use tracing::info;

use crate::aws_setup::BoxError;

pub struct Poller {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    /// The simulated function timeout.
    pub invocation_timeout: Duration,
    pub wait_time_secs: i32,
}

impl Poller {
    /// One receive + invocation. Returns the outcomes (empty when nothing was received).
    pub async fn poll_once(&self, writer: &Writer) -> Result<Vec<(String, Outcome)>, BoxError> {
        let (records, handles) = receive_batch(
            &self.sqs,
            &self.queue_url,
            &self.queue_arn,
            self.batch_size,
            self.wait_time_secs,
        )
        .await?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let report = writer
            .process_batch(records, Deadline::after(self.invocation_timeout))
            .await;
        let failed =
            delete_succeeded(&self.sqs, &self.queue_url, &handles, &report.response).await?;
        info!(
            records = report.outcomes.len(),
            failures = failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch processed"
        );
        Ok(report.outcomes)
    }

    /// Polls until the queue holds no message (visible or in flight) or `limit` passes.
    pub async fn drain(
        &self,
        writer: &Writer,
        limit: Duration,
    ) -> Result<Vec<(String, Outcome)>, BoxError> {
        let until = Instant::now() + limit;
        let mut all = Vec::new();
        while Instant::now() < until {
            let outcomes = self.poll_once(writer).await?;
            if outcomes.is_empty() && self.queue_depth().await? == 0 {
                return Ok(all);
            }
            all.extend(outcomes);
        }
        Err(format!("queue not drained within {limit:?}").into())
    }

    /// Visible + in-flight messages.
    pub async fn queue_depth(&self) -> Result<u64, BoxError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let attrs = out.attributes().cloned().unwrap_or_default();
        let get = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(get(QueueAttributeName::ApproximateNumberOfMessages)
            + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }
}

/// One receive, as the Lambda event source mapping builds its records; with each message's receipt handle.
pub async fn receive_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    queue_arn: &str,
    batch_size: i32,
    wait_time_secs: i32,
) -> Result<(Vec<SqsMessage>, HashMap<String, String>), BoxError> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch_size.clamp(1, 10))
        .wait_time_seconds(wait_time_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await?;
    let mut handles = HashMap::new();
    let records = received
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            r.md5_of_body = m.md5_of_body.clone();
            r.event_source = Some("aws:sqs".into());
            r.event_source_arn = Some(queue_arn.to_string());
            r.attributes = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            r.message_attributes = m
                .message_attributes()
                .map(|attrs| {
                    attrs
                        .iter()
                        .map(|(k, v)| {
                            let mut a = SqsMessageAttribute::default();
                            a.string_value = v.string_value().map(str::to_string);
                            a.data_type = Some(v.data_type().to_string());
                            (k.clone(), a)
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let (Some(id), Some(h)) = (m.message_id, m.receipt_handle) {
                handles.insert(id, h);
            }
            r
        })
        .collect();
    Ok((records, handles))
}

/// Deletes the messages the batch response does not report as failed; returns how many failed.
pub async fn delete_succeeded(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    handles: &HashMap<String, String>,
    response: &aws_lambda_events::event::sqs::SqsBatchResponse,
) -> Result<usize, BoxError> {
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let entries: Vec<DeleteMessageBatchRequestEntry> = handles
        .iter()
        .filter(|(id, _)| !failed.contains(&id.as_str()))
        .enumerate()
        .filter_map(|(i, (_, h))| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .receipt_handle(h)
                .build()
                .ok()
        })
        .collect();
    if !entries.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(failed.len())
}
