//! What SQS can take, and what its refusals mean.
//!
//! SQS counts the body and every message attribute (name, data type and value bytes) against the queue's
//! `MaximumMessageSize`, and refuses characters outside XML's set. Such a message can never be stored:
//! answering 503 would make Genesys retry it forever, so it is refused up front (413 / 400). Everything
//! else SQS or the network says is a reason to retry later (503).

use std::collections::HashMap;

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use shared::FailureClass;

/// SQS's largest `MaximumMessageSize`, used when the queue's own was not read.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Bytes SQS counts for a message: the UTF-8 body plus each attribute's name, data type and value.
pub fn message_size(body: &str, attributes: &HashMap<String, MessageAttributeValue>) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(name, a)| {
                name.len()
                    + a.data_type().len()
                    + a.string_value().map_or(0, str::len)
                    + a.binary_value().map_or(0, |b| b.as_ref().len())
            })
            .sum::<usize>()
}

/// The first character SQS refuses in a body (allowed: #x9 #xA #xD #x20–#xD7FF #xE000–#xFFFD
/// #x10000–#x10FFFF), with its byte offset.
pub fn refused_character(body: &str) -> Option<(usize, char)> {
    let allowed = |c: char| matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    body.char_indices().find(|&(_, c)| !allowed(c))
}

/// Why a message was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// Body + attributes exceed the queue's limit: permanent (413).
    #[error("the message is {size} bytes with its attributes; the queue takes at most {limit}")]
    TooLarge { size: usize, limit: usize },
    /// SQS refuses the message itself (its contents or a parameter): permanent (400).
    #[error("the queue refuses this message ({code})")]
    Rejected { code: String },
    /// Throttling, a 5xx, a timeout, a connection failure, or a queue or permission problem an operator
    /// can fix: transient (503 with `Retry-After`).
    #[error("the queue is unavailable: {reason}")]
    Unavailable { reason: String },
}

impl SendFailure {
    pub fn class(&self) -> FailureClass {
        match self {
            SendFailure::TooLarge { .. } | SendFailure::Rejected { .. } => FailureClass::Permanent,
            SendFailure::Unavailable { .. } => FailureClass::Transient,
        }
    }
}

/// Error codes with which SQS refuses the message itself, whatever the queue's state.
const MESSAGE_CODES: &[&str] = &[
    "InvalidMessageContents",
    "InvalidParameterValue",
    "InvalidAttributeValue",
    "InvalidAttributeName",
    "MessageTooLong",
    "UnsupportedOperation",
];

/// Classifies a `SendMessage` error. `size` / `limit`: what the message measured and the limit known.
/// A missing queue, access or KMS errors are transient on purpose: an operator can fix them, and Genesys
/// keeps the event until then.
pub fn classify<R: std::fmt::Debug>(
    err: &SdkError<SendMessageError, R>,
    size: usize,
    limit: usize,
) -> SendFailure {
    let unavailable = || SendFailure::Unavailable {
        reason: DisplayErrorContext(err).to_string(),
    };
    let Some(service) = err.as_service_error() else {
        // Timeouts, dispatch (connection) failures, unreadable responses.
        return unavailable();
    };
    if service.is_invalid_message_contents() {
        return SendFailure::Rejected {
            code: "InvalidMessageContents".into(),
        };
    }
    let code = service.code().unwrap_or_default();
    if !MESSAGE_CODES.contains(&code) {
        return unavailable();
    }
    let message = service.message().unwrap_or_default().to_ascii_lowercase();
    if code == "MessageTooLong"
        || ["shorter than", "too long", "size"]
            .iter()
            .any(|m| message.contains(m))
    {
        return SendFailure::TooLarge { size, limit };
    }
    SendFailure::Rejected { code: code.into() }
}

/// The queue's `MaximumMessageSize` (GetQueueAttributes).
pub async fn max_message_size(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<usize, shared::StartupError> {
    let invalid = |reason: String| {
        shared::StartupError::invalid(
            "EVENTS_QUEUE_URL",
            format!("the queue's MaximumMessageSize could not be read: {reason}"),
        )
    };
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send()
        .await
        .map_err(|e| invalid(DisplayErrorContext(&e).to_string()))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("missing from the answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::error::ErrorMetadata;
    use aws_sdk_sqs::types::error::{InvalidMessageContents, RequestThrottled};
    use shared::aws::string_attributes;

    #[test]
    fn size_counts_the_body_and_each_attributes_name_type_and_value() {
        let attrs = string_attributes([
            ("event_type", "ivr:escalation".to_string()),
            ("correlation_id", "c-1".to_string()),
        ]);
        // 10 + 6 + 14, 14 + 6 + 3.
        assert_eq!(message_size("{}", &attrs), 2 + 30 + 23);
        let binary = HashMap::from([(
            "b".to_string(),
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![0u8; 5]))
                .build()
                .unwrap(),
        )]);
        assert_eq!(message_size("", &binary), 1 + 6 + 5);
        // Bytes, not characters.
        assert_eq!(message_size("é", &HashMap::new()), 2);
    }

    #[test]
    fn characters_sqs_refuses_are_found() {
        assert_eq!(refused_character("{\"a\": \"ok é 😀\t\n\"}"), None);
        assert_eq!(refused_character("ab\u{FFFE}"), Some((2, '\u{FFFE}')));
        assert_eq!(refused_character("\u{1}"), Some((0, '\u{1}')));
    }

    fn service(e: SendMessageError) -> SdkError<SendMessageError, ()> {
        SdkError::service_error(e, ())
    }

    fn generic(code: &str, message: &str) -> SendMessageError {
        SendMessageError::generic(ErrorMetadata::builder().code(code).message(message).build())
    }

    #[test]
    fn refusals_of_the_message_itself_are_permanent() {
        let too_big = service(generic(
            "InvalidParameterValue",
            "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
        ));
        assert_eq!(
            classify(&too_big, 300_000, 262_144),
            SendFailure::TooLarge {
                size: 300_000,
                limit: 262_144
            }
        );
        let contents = service(SendMessageError::InvalidMessageContents(
            InvalidMessageContents::builder().build(),
        ));
        let f = classify(&contents, 10, 100);
        assert_eq!(
            f,
            SendFailure::Rejected {
                code: "InvalidMessageContents".into()
            }
        );
        assert_eq!(f.class(), FailureClass::Permanent);
        let attr = service(generic("InvalidAttributeValue", "bad attribute"));
        assert_eq!(
            classify(&attr, 1, 2),
            SendFailure::Rejected {
                code: "InvalidAttributeValue".into()
            }
        );
    }

    #[test]
    fn throttling_server_errors_timeouts_and_fixable_queue_problems_are_transient() {
        let cases: Vec<SdkError<SendMessageError, ()>> = vec![
            service(SendMessageError::RequestThrottled(
                RequestThrottled::builder().build(),
            )),
            service(generic("InternalError", "internal")),
            service(generic("ServiceUnavailable", "try again")),
            service(generic("AWS.SimpleQueueService.NonExistentQueue", "gone")),
            service(generic("AccessDenied", "no")),
            service(generic("KmsThrottled", "slow down")),
            SdkError::timeout_error("operation timed out"),
            SdkError::dispatch_failure(aws_sdk_sqs::error::ConnectorError::io(
                "connection refused".into(),
            )),
            SdkError::response_error("truncated", ()),
        ];
        for e in &cases {
            let f = classify(e, 10, 100);
            assert!(
                matches!(f, SendFailure::Unavailable { .. }),
                "{e:?} gave {f:?}"
            );
            assert_eq!(f.class(), FailureClass::Transient);
        }
    }
}
