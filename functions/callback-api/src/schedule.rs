//! A queue's calendar and the validation of a customer's preferred slots against it.
//!
//! Times are absolute instants (`2026-03-09T14:00:00Z`, any RFC 3339 offset) or, with the slot's IANA
//! `timezone`, local wall-clock times (`2026-03-09T10:00`). A local time the clocks skip (the spring-forward
//! hour) or repeat (the fall-back hour) is refused: it names no instant, or two. Business hours are the
//! queue's, in the queue's timezone, so "09:00" follows its daylight saving time.

use std::time::Duration;

use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::{Deserialize, Serialize};

/// What is wrong with one field (its value is never echoed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A queue's calendar.
#[derive(Debug, Clone)]
pub struct QueueCalendar {
    pub timezone: TimeZone,
    /// The zone's IANA name, for messages.
    pub timezone_name: String,
    /// Opening and closing time per weekday, Monday first; `None`: closed.
    pub hours: [Option<(Time, Time)>; 7],
    /// The length of one callback slot (callbacks are counted per slot).
    pub slot: Duration,
    /// How far ahead a slot may start.
    pub horizon: Duration,
}

/// The calendar as configured (`CALLBACK_QUEUES`): `{"timezone": "Europe/Berlin", "hours": {"mon": ["09:00",
/// "17:00"], …}, "slot_minutes": 30, "horizon_days": 14}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    pub timezone: String,
    pub hours: std::collections::BTreeMap<String, [String; 2]>,
    #[serde(default = "default_slot_minutes")]
    pub slot_minutes: u32,
    #[serde(default = "default_horizon_days")]
    pub horizon_days: u32,
}

fn default_slot_minutes() -> u32 {
    30
}

fn default_horizon_days() -> u32 {
    14
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl QueueCalendar {
    /// The calendar of a spec, or why it is unusable.
    pub fn from_spec(spec: &CalendarSpec) -> Result<Self, String> {
        let timezone = TimeZone::get(&spec.timezone)
            .map_err(|_| format!("unknown IANA timezone {:?}", spec.timezone))?;
        let mut hours = [None; 7];
        for (day, [open, close]) in &spec.hours {
            let i = DAYS
                .iter()
                .position(|d| d == day)
                .ok_or_else(|| format!("unknown day {day:?} (mon … sun)"))?;
            let parse = |t: &str| {
                t.parse::<Time>()
                    .map_err(|_| format!("{day}: {t:?} is not a time such as 09:00"))
            };
            let (open, close) = (parse(open)?, parse(close)?);
            if close <= open {
                return Err(format!("{day}: closing time must be after opening time"));
            }
            hours[i] = Some((open, close));
        }
        if !(5..=240).contains(&spec.slot_minutes) {
            return Err("slot_minutes must be between 5 and 240".into());
        }
        if !(1..=365).contains(&spec.horizon_days) {
            return Err("horizon_days must be between 1 and 365".into());
        }
        Ok(Self {
            timezone,
            timezone_name: spec.timezone.clone(),
            hours,
            slot: Duration::from_secs(u64::from(spec.slot_minutes) * 60),
            horizon: Duration::from_secs(u64::from(spec.horizon_days) * 86_400),
        })
    }

    fn hours_on(&self, day: Weekday) -> Option<(Time, Time)> {
        self.hours[day.to_monday_zero_offset() as usize]
    }

    /// The slots (their starts) of this calendar that lie wholly inside `window`, in order. A slot starts at
    /// the day's opening time plus a whole number of slot lengths.
    /// The first `limit` slots after `now`, day by day within the horizon: a callback "as soon as possible".
    pub fn next_slots(&self, now: Timestamp, limit: usize) -> Vec<Timestamp> {
        let horizon = SignedDuration::try_from(self.horizon).unwrap_or_default();
        let Ok(last) = now.checked_add(horizon) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut cursor = now;
        while cursor < last && out.len() < limit {
            let Ok(day_end) = cursor.checked_add(SignedDuration::from_hours(24)) else {
                break;
            };
            let window = Window {
                start: cursor,
                end: day_end.min(last),
            };
            out.extend(self.slots_in(&window).into_iter().filter(|s| *s > now));
            // The next local midnight.
            let zoned = cursor.to_zoned(self.timezone.clone());
            let Some(next) = zoned
                .date()
                .tomorrow()
                .ok()
                .and_then(|d| d.to_zoned(self.timezone.clone()).ok())
            else {
                break;
            };
            cursor = next.timestamp();
        }
        out.truncate(limit);
        out
    }

    pub fn slots_in(&self, window: &Window) -> Vec<Timestamp> {
        let slot = SignedDuration::try_from(self.slot).unwrap_or(SignedDuration::from_mins(30));
        let mut out = Vec::new();
        let start = window.start.to_zoned(self.timezone.clone());
        let Some((open, close)) = self.hours_on(start.weekday()) else {
            return out;
        };
        let (Ok(opening), Ok(closing)) = (
            start
                .date()
                .to_datetime(open)
                .to_zoned(self.timezone.clone()),
            start
                .date()
                .to_datetime(close)
                .to_zoned(self.timezone.clone()),
        ) else {
            return out;
        };
        let mut at = opening.timestamp();
        while at < closing.timestamp() {
            let Ok(end) = at.checked_add(slot) else { break };
            if end > closing.timestamp() || end > window.end {
                break;
            }
            if at >= window.start {
                out.push(at);
            }
            at = end;
        }
        out
    }
}

/// A preferred slot as a customer sends it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotRequest {
    pub start: String,
    pub end: String,
    /// The IANA timezone of `start` and `end` when they carry no offset.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A validated preferred window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// The instant `text` names: RFC 3339 with an offset, or a local time in `zone`.
fn instant(text: &str, zone: Option<&(String, TimeZone)>) -> Result<Timestamp, String> {
    if let Ok(ts) = text.trim().parse::<Timestamp>() {
        return Ok(ts);
    }
    let local: DateTime = text.trim().parse().map_err(|_| {
        "expected RFC 3339 (2026-03-09T14:00:00Z) or a local time (2026-03-09T10:00)".to_string()
    })?;
    let Some((name, tz)) = zone else {
        return Err("a time without an offset needs the slot's timezone".into());
    };
    let ambiguous = tz.to_ambiguous_zoned(local);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } => ambiguous
            .unambiguous()
            .map(|z| z.timestamp())
            .map_err(|_| "not a valid time".to_string()),
        AmbiguousOffset::Gap { .. } => Err(format!(
            "does not exist in {name}: the clocks skip it (daylight saving time starts)"
        )),
        AmbiguousOffset::Fold { .. } => Err(format!(
            "happens twice in {name} (daylight saving time ends): give it with an offset"
        )),
    }
}

fn day_name(d: Weekday) -> &'static str {
    DAYS[d.to_monday_zero_offset() as usize]
}

/// Checks every preferred slot (at most `max_slots`) against `calendar` at `now`; each problem names its
/// field (`slots[1].end`). Returns the windows in the order given.
pub fn validate(
    calendar: &QueueCalendar,
    requests: &[SlotRequest],
    max_slots: usize,
    now: Timestamp,
) -> Result<Vec<Window>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if requests.is_empty() {
        return Err(vec![problem(
            "slots",
            "at least one preferred slot is required",
        )]);
    }
    if requests.len() > max_slots {
        return Err(vec![problem(
            "slots",
            format!("at most {max_slots} preferred slots"),
        )]);
    }
    let horizon = SignedDuration::try_from(calendar.horizon).unwrap_or(SignedDuration::ZERO);
    let latest = now.checked_add(horizon).unwrap_or(now);
    let mut windows = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let field = |f: &str| format!("slots[{i}].{f}");
        let zone = match &r.timezone {
            None => None,
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => Some((name.clone(), tz)),
                Err(_) => {
                    errors.push(problem(
                        field("timezone"),
                        "not an IANA timezone such as Europe/Berlin",
                    ));
                    continue;
                }
            },
        };
        let start = instant(&r.start, zone.as_ref()).map_err(|p| problem(field("start"), p));
        let end = instant(&r.end, zone.as_ref()).map_err(|p| problem(field("end"), p));
        let (start, end) = match (start, end) {
            (Ok(s), Ok(e)) => (s, e),
            (s, e) => {
                errors.extend(s.err());
                errors.extend(e.err());
                continue;
            }
        };
        if end <= start {
            errors.push(problem(field("end"), "must be after start"));
            continue;
        }
        if start <= now {
            errors.push(problem(field("start"), "must be in the future"));
            continue;
        }
        if start > latest {
            errors.push(problem(
                field("start"),
                format!(
                    "must be within {} days",
                    calendar.horizon.as_secs() / 86_400
                ),
            ));
            continue;
        }
        let (s, e): (Zoned, Zoned) = (
            start.to_zoned(calendar.timezone.clone()),
            end.to_zoned(calendar.timezone.clone()),
        );
        let within = calendar.hours_on(s.weekday()).is_some_and(|(open, close)| {
            s.date() == e.date() && s.time() >= open && e.time() <= close
        }) || calendar.hours_on(s.weekday()).is_some_and(|(open, close)| {
            // Ending exactly at a midnight close.
            close == Time::MAX
                && s.time() >= open
                && e.time() == Time::midnight()
                && e.date() > s.date()
        });
        if !within {
            let hours = match calendar.hours_on(s.weekday()) {
                Some((open, close)) => format!(
                    "{} {}–{}",
                    day_name(s.weekday()),
                    open.strftime("%H:%M"),
                    close.strftime("%H:%M")
                ),
                None => format!("closed on {}", day_name(s.weekday())),
            };
            errors.push(problem(
                field("start"),
                format!(
                    "outside the queue's business hours ({hours}, {})",
                    calendar.timezone_name
                ),
            ));
            continue;
        }
        let window = Window { start, end };
        if calendar.slots_in(&window).is_empty() {
            errors.push(problem(
                field("end"),
                format!(
                    "the window holds no whole {}-minute slot of the queue",
                    calendar.slot.as_secs() / 60
                ),
            ));
            continue;
        }
        windows.push(window);
    }
    match errors.is_empty() {
        true => Ok(windows),
        false => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_slots_skip_closed_days_and_the_past() {
        let c = QueueCalendar::from_spec(&CalendarSpec {
            timezone: "Europe/Berlin".into(),
            hours: [
                (
                    "fri".to_string(),
                    ["09:00".to_string(), "10:00".to_string()],
                ),
                (
                    "mon".to_string(),
                    ["09:00".to_string(), "10:00".to_string()],
                ),
            ]
            .into_iter()
            .collect(),
            slot_minutes: 30,
            horizon_days: 14,
        })
        .unwrap();
        // Friday 2026-12-04 09:40 Berlin: the 09:30 slot has begun; next are Monday's.
        let now: Timestamp = "2026-12-04T08:40:00Z".parse().unwrap();
        let next: Vec<String> = c.next_slots(now, 3).iter().map(|t| t.to_string()).collect();
        assert_eq!(
            next,
            [
                "2026-12-07T08:00:00Z",
                "2026-12-07T08:30:00Z",
                "2026-12-11T08:00:00Z"
            ]
        );
    }
    use proptest::prelude::*;

    fn calendar(tz: &str) -> QueueCalendar {
        let hours: std::collections::BTreeMap<String, [String; 2]> =
            ["mon", "tue", "wed", "thu", "fri"]
                .iter()
                .map(|d| (d.to_string(), ["09:00".to_string(), "17:00".to_string()]))
                .collect();
        QueueCalendar::from_spec(&CalendarSpec {
            timezone: tz.into(),
            hours,
            slot_minutes: 30,
            horizon_days: 60,
        })
        .unwrap()
    }

    fn slot(start: &str, end: &str, tz: Option<&str>) -> SlotRequest {
        SlotRequest {
            start: start.into(),
            end: end.into(),
            timezone: tz.map(str::to_string),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn business_hours_follow_the_queues_daylight_saving_time() {
        let c = calendar("America/New_York");
        let now = at("2026-03-01T00:00:00Z");
        // 09:00 in New York is 14:00Z before the change (EST) and 13:00Z after it (EDT).
        for (start, end) in [
            ("2026-03-06T14:00:00Z", "2026-03-06T15:00:00Z"),
            ("2026-03-09T13:00:00Z", "2026-03-09T14:00:00Z"),
        ] {
            assert!(
                validate(&c, &[slot(start, end, None)], 3, now).is_ok(),
                "{start}"
            );
        }
        for (start, end) in [
            ("2026-03-06T13:00:00Z", "2026-03-06T14:00:00Z"),
            ("2026-03-09T12:00:00Z", "2026-03-09T13:00:00Z"),
        ] {
            let err = validate(&c, &[slot(start, end, None)], 3, now).unwrap_err();
            assert!(
                err[0].problem.contains("business hours"),
                "{start}: {err:?}"
            );
        }
    }

    #[test]
    fn every_bad_slot_is_named() {
        let c = calendar("Europe/Berlin");
        let now = at("2026-03-02T08:00:00Z");
        let err = validate(
            &c,
            &[
                slot(
                    "2026-03-03T10:00",
                    "2026-03-03T11:00",
                    Some("Europe/Berlin"),
                ),
                slot(
                    "2026-03-03T11:00",
                    "2026-03-03T10:00",
                    Some("Europe/Berlin"),
                ),
                slot("2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z", None),
                slot("2026-03-03T10:00", "2026-03-03T11:00", None),
                slot("2026-03-03T10:00", "2026-03-03T11:00", Some("Mars/Olympus")),
                slot(
                    "2026-03-07T10:00",
                    "2026-03-07T11:00",
                    Some("Europe/Berlin"),
                ),
                slot(
                    "2026-06-03T10:00",
                    "2026-06-03T11:00",
                    Some("Europe/Berlin"),
                ),
                slot(
                    "2026-03-03T10:00",
                    "2026-03-03T10:10",
                    Some("Europe/Berlin"),
                ),
            ],
            10,
            now,
        )
        .unwrap_err();
        let named: Vec<&str> = err.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            named,
            [
                "slots[1].end",
                "slots[2].start",
                "slots[3].start",
                "slots[3].end",
                "slots[4].timezone",
                "slots[5].start",
                "slots[6].start",
                "slots[7].end"
            ]
        );
        assert!(err[5].problem.contains("closed on sat"), "{err:?}");
        let too_many = validate(&c, &vec![slot("a", "b", None); 4], 3, now).unwrap_err();
        assert_eq!(too_many[0].field, "slots");
    }

    #[test]
    fn a_local_time_the_clocks_skip_or_repeat_is_refused() {
        let c = calendar("Europe/Berlin");
        let now = at("2026-03-01T00:00:00Z");
        let err = validate(
            &c,
            &[slot(
                "2026-03-29T02:30",
                "2026-03-29T03:30",
                Some("Europe/Berlin"),
            )],
            3,
            now,
        )
        .unwrap_err();
        assert!(err[0].problem.contains("does not exist"), "{err:?}");
        let err = validate(
            &c,
            &[slot(
                "2026-10-25T02:30",
                "2026-10-25T03:30",
                Some("Europe/Berlin"),
            )],
            3,
            now,
        )
        .unwrap_err();
        assert!(err[0].problem.contains("happens twice"), "{err:?}");
    }

    #[test]
    fn slots_start_at_opening_plus_whole_slots() {
        let c = calendar("Asia/Kolkata");
        let w = Window {
            start: at("2026-03-03T04:00:00Z"), // 09:30 IST
            end: at("2026-03-03T05:45:00Z"),   // 11:15 IST
        };
        let slots: Vec<String> = c.slots_in(&w).iter().map(|t| t.to_string()).collect();
        assert_eq!(
            slots,
            [
                "2026-03-03T04:00:00Z",
                "2026-03-03T04:30:00Z",
                "2026-03-03T05:00:00Z"
            ]
        );
    }

    proptest! {
        /// Any minute of the spring-forward gap, in any year, is refused as a local time.
        #[test]
        fn the_spring_forward_hour_never_names_a_slot(year in 2026i16..2036, minute in 0i8..60) {
            let tz = TimeZone::get("America/New_York").unwrap();
            // The second Sunday of March.
            let march = jiff::civil::date(year, 3, 1);
            let first_sunday = (0..7).map(|d| march.checked_add(jiff::Span::new().days(d)).unwrap())
                .find(|d| d.weekday() == Weekday::Sunday).unwrap();
            let day = first_sunday.checked_add(jiff::Span::new().days(7)).unwrap();
            let local = format!("{day}T02:{minute:02}");
            prop_assert!(instant(&local, Some(&("America/New_York".into(), tz))).unwrap_err().contains("does not exist"));
        }

        /// A weekday 10:00–11:00 local slot is inside business hours whatever the date and the zone's
        /// daylight saving time, given as a local time or as the same instant in UTC; Saturday never is.
        #[test]
        fn ten_to_eleven_local_is_always_open_on_weekdays(
            zone in prop::sample::select(vec!["America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata"]),
            days in 1i64..55,
        ) {
            let c = calendar(zone);
            let now = at("2026-03-01T00:00:00Z");
            let date = jiff::civil::date(2026, 3, 1).checked_add(jiff::Span::new().days(days)).unwrap();
            let local = slot(&format!("{date}T10:00"), &format!("{date}T11:00"), Some(zone));
            let result = validate(&c, std::slice::from_ref(&local), 3, now);
            let weekday = !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday);
            prop_assert_eq!(result.is_ok(), weekday, "{} {}: {:?}", zone, date, result);
            if let Ok(windows) = result {
                let utc = slot(&windows[0].start.to_string(), &windows[0].end.to_string(), None);
                prop_assert_eq!(validate(&c, &[utc], 3, now).unwrap(), windows.clone());
                // Two whole 30-minute slots, both inside the window.
                let slots = c.slots_in(&windows[0]);
                prop_assert_eq!(slots.len(), 2);
                prop_assert!(slots.iter().all(|s| *s >= windows[0].start && *s < windows[0].end));
            }
        }
    }
}
