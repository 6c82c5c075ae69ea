//! Callers by phone number, cached per container with a TTL: `lookupCaller` runs while the caller waits, and
//! the same caller is asked about again and again during one call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use servicenow_writer::servicenow::CallerProfile;

/// How many numbers a container remembers (beyond, it starts over).
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone)]
struct Entry {
    profile: Option<CallerProfile>,
    open_incidents: Option<u64>,
    at: Instant,
}

pub struct CallerCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

/// What the cache knows about a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// `None`: no `sys_user` has the number.
    pub profile: Option<CallerProfile>,
    /// Active incidents the caller has, when counted.
    pub open_incidents: Option<u64>,
}

impl CallerCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known about `e164`, unless older than the TTL.
    pub fn get(&self, e164: &str) -> Option<Known> {
        let entries = self.entries();
        let e = entries.get(e164)?;
        (e.at.elapsed() < self.ttl).then(|| Known {
            profile: e.profile.clone(),
            open_incidents: e.open_incidents,
        })
    }

    pub fn put(&self, e164: &str, known: Known) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(e164) {
            entries.clear();
        }
        entries.insert(
            e164.to_string(),
            Entry {
                profile: known.profile,
                open_incidents: known.open_incidents,
                at: Instant::now(),
            },
        );
    }

    /// Adds the count to what is known, keeping the entry's age: the profile is not fresher for it.
    pub fn put_count(&self, e164: &str, open_incidents: u64) {
        if let Some(e) = self.entries().get_mut(e164) {
            e.open_incidents = Some(open_incidents);
        }
    }

    /// The caller has a new incident: its count is stale.
    pub fn forget_count(&self, e164: &str) {
        if let Some(e) = self.entries().get_mut(e164) {
            e.open_incidents = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone() -> Option<CallerProfile> {
        Some(CallerProfile {
            sys_id: "u1".into(),
            name: "Ada".into(),
            vip: true,
        })
    }

    #[test]
    fn entries_live_for_the_ttl_and_counts_can_be_forgotten() {
        let cache = CallerCache::new(Duration::from_millis(40));
        let known = Known {
            profile: someone(),
            open_incidents: Some(2),
        };
        cache.put("+15550100", known.clone());
        assert_eq!(cache.get("+15550100"), Some(known));
        cache.forget_count("+15550100");
        assert_eq!(cache.get("+15550100").unwrap().open_incidents, None);
        cache.put_count("+15550100", 3);
        assert_eq!(cache.get("+15550100").unwrap().open_incidents, Some(3));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("+15550100"), None);
        let off = CallerCache::new(Duration::ZERO);
        off.put(
            "+1",
            Known {
                profile: None,
                open_incidents: None,
            },
        );
        assert_eq!(off.get("+1"), None);
    }
}
