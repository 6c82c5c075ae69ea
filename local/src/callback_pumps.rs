//! What AWS does between the callback functions, done locally: the callbacks table's stream read like the
//! Lambda DynamoDB event source mapping (records in order, batches in Lambda's event shape) and handed to
//! callback-notifier; its webhooks queue and the callback events queue fed to their functions like the SQS
//! event source mapping; and the Genesys simulator's emitted callback events put on the events queue, as the
//! EventBridge rule does.

use std::collections::BTreeMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use serde_json::{json, Map, Value};

use crate::aws_setup::BoxError;
use crate::poller::{delete_succeeded, receive_batch};

/// Reads a DynamoDB stream from its start, shard by shard.
pub struct StreamPump {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    /// Shard id → its next iterator (`None`: the shard is closed and read).
    iterators: BTreeMap<String, Option<String>>,
}

/// An attribute as Lambda's DynamoDB stream events carry it (`{"S": "…"}`, `{"M": {…}}`, binary as base64).
fn attribute(v: &AttributeValue) -> Option<Value> {
    use base64::Engine;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    Some(match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Ss(s) => json!({"SS": s}),
        AttributeValue::Ns(n) => json!({"NS": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::B(b) => json!({"B": b64(b)}),
        AttributeValue::Bs(bs) => json!({"BS": bs.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::L(l) => json!({"L": l.iter().filter_map(attribute).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": image(Some(m))?}),
        _ => return None,
    })
}

fn image(item: Option<&std::collections::HashMap<String, AttributeValue>>) -> Option<Value> {
    let item = item?;
    let map: Map<String, Value> = item
        .iter()
        .filter_map(|(k, v)| attribute(v).map(|a| (k.clone(), a)))
        .collect();
    Some(Value::Object(map))
}

/// A stream record as Lambda hands it to a function (`eventSource: aws:dynamodb`, `dynamodb.{NewImage,
/// OldImage, SequenceNumber}`); `None` for a record without its `dynamodb` part.
pub fn lambda_record(
    stream_arn: &str,
    r: &aws_sdk_dynamodbstreams::types::Record,
) -> Option<Value> {
    let d = r.dynamodb()?;
    let mut images = json!({"SequenceNumber": d.sequence_number()});
    if let Some(new) = image(d.new_image.as_ref()) {
        images["NewImage"] = new;
    }
    if let Some(old) = image(d.old_image.as_ref()) {
        images["OldImage"] = old;
    }
    Some(
        json!({"eventID": r.event_id(), "eventName": r.event_name().map(|n| n.as_str()),
               "eventSource": "aws:dynamodb", "eventSourceARN": stream_arn, "dynamodb": images}),
    )
}

impl StreamPump {
    pub fn new(aws: &aws_config::SdkConfig, stream_arn: &str) -> Self {
        Self {
            client: aws_sdk_dynamodbstreams::Client::new(aws),
            arn: stream_arn.to_string(),
            iterators: BTreeMap::new(),
        }
    }

    /// The records written since the last call, as Lambda passes them (`Records[].dynamodb.{NewImage,
    /// OldImage, SequenceNumber}`, `eventSource: aws:dynamodb`).
    pub async fn next(&mut self) -> Result<Vec<Value>, BoxError> {
        let described = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .send()
            .await?;
        for shard in described
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default()
        {
            let Some(id) = shard.shard_id() else { continue };
            if !self.iterators.contains_key(id) {
                let it = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.arn)
                    .shard_id(id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await?;
                self.iterators
                    .insert(id.to_string(), it.shard_iterator().map(str::to_string));
            }
        }
        let mut out = Vec::new();
        for iterator in self.iterators.values_mut() {
            let Some(current) = iterator.clone() else {
                continue;
            };
            let got = self
                .client
                .get_records()
                .shard_iterator(current)
                .send()
                .await?;
            *iterator = got.next_shard_iterator().map(str::to_string);
            out.extend(
                got.records()
                    .iter()
                    .filter_map(|r| lambda_record(&self.arn, r)),
            );
        }
        Ok(out)
    }

    /// Hands what the stream holds to the notifier, until a read finds nothing new; returns how many records
    /// were handed over. A batch the notifier gives back is handed over again from its failed record.
    pub async fn pump(
        &mut self,
        notifier: &callback_notifier::Notifier,
    ) -> Result<usize, BoxError> {
        let mut total = 0;
        let mut pending: Vec<Value> = Vec::new();
        for _ in 0..100 {
            let fresh = self.next().await?;
            if fresh.is_empty() && pending.is_empty() {
                break;
            }
            pending.extend(fresh);
            total += pending.len();
            match notifier.on_stream(&pending).await {
                None => pending.clear(),
                Some(failed) => {
                    let at = pending
                        .iter()
                        .position(|r| r["dynamodb"]["SequenceNumber"] == failed.as_str())
                        .unwrap_or(0);
                    pending.drain(..at);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
        Ok(total)
    }
}

/// One receive of the webhooks queue handed to the notifier; returns how many messages it held.
pub async fn pump_webhooks(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    notifier: &callback_notifier::Notifier,
) -> Result<usize, BoxError> {
    let (records, handles) =
        receive_batch(sqs, queue_url, "local-callback-webhooks", 10, 0).await?;
    if records.is_empty() {
        return Ok(0);
    }
    let n = records.len();
    let response = notifier.on_webhooks(records).await;
    delete_succeeded(sqs, queue_url, &handles, &response).await?;
    Ok(n)
}

/// One receive of the callback events queue handed to callback-events; returns how many messages it held.
pub async fn pump_callback_events(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    events: &callback_events::CallbackEvents,
) -> Result<usize, BoxError> {
    let (records, handles) = receive_batch(sqs, queue_url, "local-callback-events", 10, 0).await?;
    if records.is_empty() {
        return Ok(0);
    }
    let n = records.len();
    let response = callback_events::process_batch(events, records).await;
    delete_succeeded(sqs, queue_url, &handles, &response).await?;
    Ok(n)
}

/// Puts a Genesys event (an EventBridge envelope) on the callback events queue, as the EventBridge rule does.
pub async fn deliver_event(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    event: &Value,
) -> Result<(), BoxError> {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(event.to_string())
        .send()
        .await?;
    Ok(())
}
