//! Replaying the dead-letter queue: each message listed with its failure reason and age; the ones a filter
//! keeps are sent back to the events queue with their attributes (so the writer knows they are replays and looks
//! for earlier writes first), at most `rate` a second, and only then deleted from the dead-letter queue.
//!
//! Without a filter, SQS's own `StartMessageMoveTask` does the move; where the endpoint lacks it (an emulator),
//! or with a filter, the messages are received, sent and deleted here. Messages not replayed stay in the
//! dead-letter queue, untouched: they are held while the queue is read, then released.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;

use crate::queue::QueueReader;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("SQS {operation} failed: {reason}")]
    Sqs {
        operation: &'static str,
        reason: String,
    },
}

fn sqs_error<E, R>(operation: &'static str, e: aws_sdk_sqs::error::SdkError<E, R>) -> ReplayError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ReplayError::Sqs {
        operation,
        reason: DisplayErrorContext(&e).to_string(),
    }
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The `failure_reason` attribute, exactly (e.g. `mapping_failed`).
    pub reason: Option<String>,
    /// Dead-lettered at least this long ago.
    pub older_than: Option<Duration>,
    /// Dead-lettered at most this long ago.
    pub newer_than: Option<Duration>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self == &Filter::default()
    }

    fn keeps(&self, letter: &Letter) -> bool {
        self.reason.as_deref().is_none_or(|r| r == letter.reason)
            && self.older_than.is_none_or(|d| letter.age >= d)
            && self.newer_than.is_none_or(|d| letter.age <= d)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub filter: Filter,
    /// List only.
    pub dry_run: bool,
    /// Messages a second, at most.
    pub rate: u32,
    /// Replay at most this many.
    pub limit: Option<usize>,
}

/// One dead letter as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub message_id: String,
    /// `failure_reason` (or `unknown`: moved by SQS's redrive, without one).
    pub reason: String,
    pub detail: String,
    /// Since it was sent to the dead-letter queue.
    pub age: Duration,
    pub replayed: bool,
    /// The conversation the event belongs to, when its body names one.
    pub conversation_id: Option<String>,
}

/// The conversation id an event body names (webhook, EventBridge or bare body; the shipped profiles' fields).
pub fn conversation_of(body: &str) -> Option<String> {
    let event = shared::InboundEvent::parse(body.as_bytes()).ok()?;
    ["conversationId", "interactionId", "callId"]
        .iter()
        .find_map(|k| event.body.get(k).and_then(|v| v.as_str()))
        .map(str::to_string)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub letters: Vec<Letter>,
    pub moved: usize,
    /// Moved by `StartMessageMoveTask` (its count is SQS's to report).
    pub move_task: Option<String>,
}

impl Report {
    /// How many letters per reason, and how many of them were replayed.
    pub fn by_reason(&self) -> BTreeMap<&str, (usize, usize)> {
        let mut out: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for l in &self.letters {
            let e = out.entry(l.reason.as_str()).or_default();
            e.0 += 1;
            e.1 += usize::from(l.replayed);
        }
        out
    }
}

pub struct Replay {
    pub sqs: Client,
    pub dead_letter_queue_url: String,
    pub queue_url: String,
}

/// How long the listed letters are held while the queue is read (then released).
const HOLD: Duration = Duration::from_secs(300);

impl Replay {
    async fn arn(&self, url: &str) -> Result<String, ReplayError> {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sqs_error("GetQueueAttributes", e))?;
        Ok(attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default())
    }

    pub async fn run(&self, options: &Options) -> Result<Report, ReplayError> {
        if !options.dry_run && options.filter.is_empty() && options.limit.is_none() {
            let (source, destination) = (
                self.arn(&self.dead_letter_queue_url).await?,
                self.arn(&self.queue_url).await?,
            );
            let started = self
                .sqs
                .start_message_move_task()
                .source_arn(source)
                .destination_arn(destination)
                .max_number_of_messages_per_second(options.rate.clamp(1, 500) as i32)
                .send()
                .await;
            match started {
                Ok(task) => {
                    return Ok(Report {
                        move_task: task.task_handle().map(str::to_string),
                        ..Report::default()
                    })
                }
                // Only a refusal that would stop the manual move too ends here; anything else (an emulator
                // without the action answers 500 or "invalid action") falls back to it.
                Err(e) if is_denied(&e) => return Err(sqs_error("StartMessageMoveTask", e)),
                Err(_) => {}
            }
        }
        self.by_hand(options).await
    }

    async fn by_hand(&self, options: &Options) -> Result<Report, ReplayError> {
        let mut report = Report::default();
        let mut reader = QueueReader::new(&self.sqs, &self.dead_letter_queue_url, HOLD);
        let pause = Duration::from_millis(1000 / u64::from(options.rate.max(1)));
        let result = async {
            loop {
                let messages = reader
                    .next()
                    .await
                    .map_err(|e| sqs_error("ReceiveMessage", e))?;
                if messages.is_empty() {
                    return Ok::<(), ReplayError>(());
                }
                for m in messages {
                    let attr = |k: &str| {
                        m.message_attributes()
                            .and_then(|a| a.get(k))
                            .and_then(|v| v.string_value())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let reason = match attr("failure_reason") {
                        r if r.is_empty() => "unknown".to_string(),
                        r => r,
                    };
                    let mut letter = Letter {
                        message_id: m.message_id().unwrap_or_default().to_string(),
                        reason,
                        detail: attr("failure_detail"),
                        age: crate::queue::age(&m),
                        replayed: false,
                        conversation_id: conversation_of(m.body().unwrap_or_default()),
                    };
                    let wanted = !options.dry_run
                        && options.filter.keeps(&letter)
                        && options.limit.is_none_or(|l| report.moved < l);
                    if wanted {
                        self.sqs
                            .send_message()
                            .queue_url(&self.queue_url)
                            .message_body(m.body().unwrap_or_default())
                            .set_message_attributes(m.message_attributes.clone())
                            .send()
                            .await
                            .map_err(|e| sqs_error("SendMessage", e))?;
                        // Deleted only once it is back on the events queue.
                        self.sqs
                            .delete_message()
                            .queue_url(&self.dead_letter_queue_url)
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .send()
                            .await
                            .map_err(|e| sqs_error("DeleteMessage", e))?;
                        letter.replayed = true;
                        report.moved += 1;
                        tokio::time::sleep(pause).await;
                    } else {
                        reader.keep(&m);
                    }
                    report.letters.push(letter);
                }
            }
        }
        .await;
        // What was not replayed goes back as it was, whatever happened above.
        reader.release().await;
        result.map(|_| report)
    }
}

fn is_denied<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| {
            c.contains("AccessDenied")
                || c.contains("NonExistentQueue")
                || c == "ResourceNotFoundException"
        })
}

/// `90s`, `15m`, `2h`, `3d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_filters() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("3d"), Some(Duration::from_secs(259_200)));
        assert_eq!(
            parse_duration("213503982334602d"),
            None,
            "too long to count"
        );
        for bad in ["", "h", "10", "5w", "-1h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let letter = |reason: &str, age: u64| Letter {
            message_id: "m".into(),
            reason: reason.into(),
            detail: String::new(),
            age: Duration::from_secs(age),
            replayed: false,
            conversation_id: None,
        };
        let f = Filter {
            reason: Some("mapping_failed".into()),
            older_than: Some(Duration::from_secs(60)),
            newer_than: Some(Duration::from_secs(3600)),
        };
        assert!(f.keeps(&letter("mapping_failed", 120)));
        assert!(!f.keeps(&letter("servicenow_rejected", 120)));
        assert!(!f.keeps(&letter("mapping_failed", 30)));
        assert!(!f.keeps(&letter("mapping_failed", 7200)));
        assert!(Filter::default().keeps(&letter("anything", 0)));
    }
}
