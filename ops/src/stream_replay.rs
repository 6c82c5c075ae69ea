//! Replaying stream batches callback-notifier failed for good. After its retries, Lambda puts an on-failure
//! record on `CallbackStreamFailureQueue`: the shard and the sequence range of the batch, not its records.
//! Each is read back from the callbacks table's stream (which keeps records 24 h) and handed to the notifier
//! again, in-process, with the notifier's own configuration; a message is deleted only once its whole range
//! was handed over and accepted. A dry run lists each failure and whether its records can still be read.
//! A replay delivers nothing twice: notices are queued under their id and recorded once delivered.

use std::time::Duration;

use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use serde_json::Value;

use crate::queue::QueueReader;

/// How long a received failure is held while it is read and replayed.
const HOLD: Duration = Duration::from_secs(120);
/// Reads of an open shard that find nothing before the range counts as gone.
const EMPTY_READS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum StreamReplayError {
    #[error("{operation} failed: {reason}")]
    Aws {
        operation: &'static str,
        reason: String,
    },
}

fn aws_error<E, R>(
    operation: &'static str,
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> StreamReplayError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StreamReplayError::Aws {
        operation,
        reason: DisplayErrorContext(&e).to_string(),
    }
}

/// One on-failure record of a DynamoDB stream event source mapping (`DDBStreamBatchInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub stream_arn: String,
    pub shard_id: String,
    pub start: String,
    pub end: String,
    pub batch_size: u64,
    /// `requestContext.condition`, e.g. `RetryAttemptsExhausted`.
    pub condition: String,
}

/// Parses Lambda's on-failure record; `Err` names what is missing.
pub fn batch_info(body: &str) -> Result<BatchInfo, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let info = &v["DDBStreamBatchInfo"];
    let field = |k: &str| {
        info[k]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("no DDBStreamBatchInfo.{k}"))
    };
    Ok(BatchInfo {
        stream_arn: field("streamArn")?,
        shard_id: field("shardId")?,
        start: field("startSequenceNumber")?,
        end: field("endSequenceNumber")?,
        batch_size: info["batchSize"].as_u64().unwrap_or(0),
        condition: v["requestContext"]["condition"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
    })
}

/// Whether sequence number `a` comes at or before `b` (decimal strings of any length).
pub fn at_or_before(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) <= (b.len(), b)
}

/// A Lambda-shaped stream record's sequence number.
fn sequence(record: Option<&Value>) -> Option<&str> {
    record?["dynamodb"]["SequenceNumber"].as_str()
}

/// What became of one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Dry run: its records can be read (how many).
    Readable(usize),
    /// Handed to the notifier, accepted, and deleted from the queue.
    Replayed(usize),
    /// Left on the queue, with why.
    Kept(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message_id: String,
    pub info: Option<BatchInfo>,
    pub age: Duration,
    pub fate: Fate,
}

pub struct StreamReplay {
    pub sqs: aws_sdk_sqs::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// `CallbackStreamFailureQueue`'s URL.
    pub failures_queue_url: String,
}

impl StreamReplay {
    /// The records of `info`'s range, in Lambda's event shape; `Err` when the stream no longer has all of them.
    pub async fn read(&self, info: &BatchInfo) -> Result<Vec<Value>, String> {
        let iterator = self
            .streams
            .get_shard_iterator()
            .stream_arn(&info.stream_arn)
            .shard_id(&info.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(&info.start)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(GetShardIteratorError::TrimmedDataAccessException(_)) => {
                    "expired: the stream no longer keeps these records (24 h)".to_string()
                }
                Some(GetShardIteratorError::ResourceNotFoundException(_)) => {
                    "the stream or its shard is gone".to_string()
                }
                _ => format!("GetShardIterator failed: {}", DisplayErrorContext(&e)),
            })?;
        let mut next = iterator.shard_iterator().map(str::to_string);
        let mut records = Vec::new();
        let mut empty = 0;
        while let Some(current) = next.take() {
            let got = self
                .streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .map_err(|e| format!("GetRecords failed: {}", DisplayErrorContext(&e)))?;
            let mut past_end = false;
            for r in got.records() {
                let seq = r
                    .dynamodb()
                    .and_then(|d| d.sequence_number())
                    .unwrap_or_default();
                if !at_or_before(seq, &info.end) {
                    past_end = true;
                    break;
                }
                records.extend(local::callback_pumps::lambda_record(&info.stream_arn, r));
            }
            // The whole range or nothing: its first and last records are the batch's own.
            if sequence(records.last()) == Some(info.end.as_str()) {
                if sequence(records.first()) != Some(info.start.as_str()) {
                    return Err(format!(
                        "the stream does not hold the range's first record {}",
                        info.start
                    ));
                }
                return Ok(records);
            }
            if past_end {
                return Err(format!(
                    "the stream does not hold the range's last record {}",
                    info.end
                ));
            }
            empty = if got.records().is_empty() {
                empty + 1
            } else {
                0
            };
            if empty >= EMPTY_READS {
                break;
            }
            if empty > 0 {
                // Reaching an open shard's records may take a few reads.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            next = got.next_shard_iterator().map(str::to_string);
        }
        Err(format!(
            "the stream holds {} record(s) of the range, not up to {}",
            records.len(),
            info.end
        ))
    }

    /// Lists every failure (`notifier: None`, a dry run) or replays them through `notifier`, at most
    /// `limit`. Failures not replayed are released at once, untouched.
    pub async fn run(
        &self,
        notifier: Option<&callback_notifier::Notifier>,
        limit: Option<usize>,
    ) -> Result<Vec<Failure>, StreamReplayError> {
        let mut out: Vec<Failure> = Vec::new();
        let mut replayed = 0;
        let mut reader = QueueReader::new(&self.sqs, &self.failures_queue_url, HOLD);
        let result = async {
            loop {
                let messages = reader
                    .next()
                    .await
                    .map_err(|e| aws_error("ReceiveMessage", e))?;
                if messages.is_empty() {
                    return Ok::<(), StreamReplayError>(());
                }
                for m in messages {
                    let info = batch_info(m.body().unwrap_or_default());
                    let over_limit = notifier.is_some() && limit.is_some_and(|l| replayed >= l);
                    let fate = match &info {
                        Err(why) => Fate::Kept(format!("not an on-failure record: {why}")),
                        // Not read: the shard's reads are shared with the notifier's own mapping.
                        Ok(_) if over_limit => Fate::Kept("over --limit".into()),
                        Ok(info) => match (self.read(info).await, notifier) {
                            (Err(why), _) => Fate::Kept(why),
                            (Ok(records), None) => Fate::Readable(records.len()),
                            (Ok(records), Some(n)) => match n.on_stream(&records).await {
                                Some(at) => Fate::Kept(format!(
                                    "the notifier could not queue the change at sequence {at}"
                                )),
                                None => {
                                    self.sqs
                                        .delete_message()
                                        .queue_url(&self.failures_queue_url)
                                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                                        .send()
                                        .await
                                        .map_err(|e| aws_error("DeleteMessage", e))?;
                                    replayed += 1;
                                    Fate::Replayed(records.len())
                                }
                            },
                        },
                    };
                    if !matches!(fate, Fate::Replayed(_)) {
                        reader.keep(&m);
                    }
                    out.push(Failure {
                        message_id: m.message_id().unwrap_or_default().to_string(),
                        info: info.ok(),
                        age: crate::queue::age(&m),
                        fate,
                    });
                }
            }
        }
        .await;
        reader.release().await;
        result.map(|_| out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_failure_records_and_sequence_order() {
        let body = r#"{"requestContext": {"requestId": "r", "functionArn": "arn:aws:lambda:eu-west-1:1:function:n",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 21},
            "version": "1.0", "timestamp": "2026-12-02T10:00:00.000Z",
            "DDBStreamBatchInfo": {"shardId": "shardId-0001", "startSequenceNumber": "900000000000000000001",
            "endSequenceNumber": "900000000000000000003", "batchSize": 3,
            "streamArn": "arn:aws:dynamodb:eu-west-1:1:table/t/stream/2026-12-01T00:00:00.000"}}"#;
        let info = batch_info(body).unwrap();
        assert_eq!(info.shard_id, "shardId-0001");
        assert_eq!(info.batch_size, 3);
        assert_eq!(info.condition, "RetryAttemptsExhausted");
        assert!(
            batch_info(r#"{"DDBStreamBatchInfo": {"shardId": "s", "streamArn": "a"}}"#)
                .unwrap_err()
                .contains("startSequenceNumber")
        );
        assert!(batch_info("nope").is_err());
        assert!(at_or_before("99", "100"));
        assert!(at_or_before("100", "100"));
        assert!(!at_or_before("101", "100"));
        assert!(!at_or_before("1000", "999"));
        assert!(at_or_before("0099", "100"));
    }
}
