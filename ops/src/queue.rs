//! Reading a whole queue without consuming it: each message received once and held while it is worked on;
//! what is not deleted is released, as it was, at the end. Receives long-poll briefly, so a small queue is
//! read in full (a short poll may answer empty while messages wait). A run longer than the hold sees its
//! kept messages again: they are not worked on twice, and their newest receipt is the one released.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use aws_sdk_sqs::Client;

pub struct QueueReader<'a> {
    sqs: &'a Client,
    queue_url: &'a str,
    hold: Duration,
    seen: HashSet<String>,
    /// Message id → its newest receipt handle.
    held: HashMap<String, String>,
}

/// How long a receive waits for a message before it counts as the queue's end.
const WAIT_SECONDS: i32 = 1;

impl<'a> QueueReader<'a> {
    pub fn new(sqs: &'a Client, queue_url: &'a str, hold: Duration) -> Self {
        Self {
            sqs,
            queue_url,
            hold,
            seen: HashSet::new(),
            held: HashMap::new(),
        }
    }

    /// The next messages not seen before (with their attributes and `SentTimestamp`); empty once the queue
    /// has none left.
    pub async fn next(&mut self) -> Result<Vec<Message>, SdkError<ReceiveMessageError>> {
        let got = self
            .sqs
            .receive_message()
            .queue_url(self.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(self.hold.as_secs() as i32)
            .wait_time_seconds(WAIT_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await?;
        let mut fresh = Vec::new();
        for m in got.messages.unwrap_or_default() {
            let id = m.message_id().unwrap_or_default().to_string();
            if self.seen.insert(id.clone()) {
                fresh.push(m);
            } else if let (Some(receipt), Some(held)) = (m.receipt_handle(), self.held.get_mut(&id))
            {
                *held = receipt.to_string();
            }
        }
        Ok(fresh)
    }

    /// Leaves `message` on the queue: released by [`Self::release`].
    pub fn keep(&mut self, message: &Message) {
        self.held.insert(
            message.message_id().unwrap_or_default().to_string(),
            message.receipt_handle().unwrap_or_default().to_string(),
        );
    }

    /// Makes every kept message visible again at once.
    pub async fn release(self) {
        for receipt in self.held.into_values() {
            let _ = self
                .sqs
                .change_message_visibility()
                .queue_url(self.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }
}

/// How long ago `message` was sent (now, when SQS did not say).
pub fn age(message: &Message) -> Duration {
    let sent_ms: u64 = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(shared::clock::epoch_ms);
    Duration::from_millis(shared::clock::epoch_ms().saturating_sub(sent_ms))
}
