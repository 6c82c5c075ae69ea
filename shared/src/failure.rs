//! Every failure is either worth retrying or not.

/// How a failure must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again later (throttling, 5xx, timeouts, connection errors).
    Transient,
    /// Retrying cannot help: dead-letter with the reason.
    Permanent,
}

impl FailureClass {
    pub fn is_transient(self) -> bool {
        self == FailureClass::Transient
    }
}
