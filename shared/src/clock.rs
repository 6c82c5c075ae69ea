//! Wall-clock time as the integration stores it: Unix epoch milliseconds and seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn epoch_secs() -> u64 {
    epoch_ms() / 1000
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_units_agree() {
        let (s, ms) = (super::epoch_secs(), super::epoch_ms());
        assert!(ms / 1000 >= s && ms / 1000 - s <= 1);
        assert!(s > 1_700_000_000, "a clock after 2023");
    }
}
