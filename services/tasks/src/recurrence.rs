//! The next occurrence of a recurring task (pure calendar arithmetic, in UTC).
//!
//! The next due time is the previous due time (or, for a task without one, its completion time)
//! advanced by `interval` × `freq`. Months and years are calendar steps that clamp the day to
//! the end of a shorter month (Jan 31 + 1 month = Feb 28 or 29; Feb 29 + 1 year = Feb 28); the
//! time of day is kept. A reminder keeps its distance to the due time. The series ends when the
//! next due time would be after `until`, or when `count` occurrences exist.

use time::{Date, Month, OffsetDateTime};

use crate::model::{Freq, Recurrence};

const DAY_MS: i64 = 86_400_000;

/// Where and when the next occurrence of a series falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub due_at: i64,
    pub remind_at: Option<i64>,
    /// 1-based number of the new occurrence in its series.
    pub occurrence: i64,
}

/// The occurrence after the one numbered `occurrence` (1 for the first task of a series), or
/// `None` when the series is over (or the arithmetic leaves the supported range).
pub fn next_occurrence(
    rule: &Recurrence,
    occurrence: i64,
    due_at: Option<i64>,
    remind_at: Option<i64>,
    completed_at: i64,
) -> Option<Next> {
    let next_number = occurrence.checked_add(1)?;
    if rule.count.is_some_and(|count| next_number > count) {
        return None;
    }
    let base = due_at.unwrap_or(completed_at);
    let next_due = advance(base, rule.freq, rule.interval.max(1))?;
    if rule.until.is_some_and(|until| next_due > until) {
        return None;
    }
    let delta = next_due - base;
    Some(Next { due_at: next_due, remind_at: remind_at.and_then(|r| r.checked_add(delta)), occurrence: next_number })
}

/// `ms` advanced by `n` steps of `freq`.
pub fn advance(ms: i64, freq: Freq, n: i64) -> Option<i64> {
    match freq {
        Freq::Daily => ms.checked_add(n.checked_mul(DAY_MS)?),
        Freq::Weekly => ms.checked_add(n.checked_mul(7 * DAY_MS)?),
        Freq::Monthly => add_months(ms, n),
        Freq::Yearly => add_months(ms, n.checked_mul(12)?),
    }
}

/// Adds calendar months, clamping the day to the length of the target month.
pub fn add_months(ms: i64, months: i64) -> Option<i64> {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    let index = i64::from(dt.year()) * 12 + i64::from(u8::from(dt.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = dt.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let moved = dt.replace_date(date);
    i64::try_from(moved.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_runtime::time::{format_ms, parse_rfc3339};

    fn ts(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    fn rule(freq: Freq, interval: i64) -> Recurrence {
        Recurrence { freq, interval, until: None, count: None }
    }

    #[test]
    fn months_clamp_the_day_and_keep_the_time() {
        let jan31 = ts("2025-01-31T09:30:00Z");
        assert_eq!(format_ms(add_months(jan31, 1).unwrap()), "2025-02-28T09:30:00.000Z");
        assert_eq!(format_ms(add_months(ts("2024-01-31T09:30:00Z"), 1).unwrap()), "2024-02-29T09:30:00.000Z");
        assert_eq!(format_ms(add_months(jan31, 3).unwrap()), "2025-04-30T09:30:00.000Z");
        assert_eq!(format_ms(add_months(ts("2025-11-30T00:00:00Z"), 2).unwrap()), "2026-01-30T00:00:00.000Z");
        assert_eq!(
            format_ms(advance(ts("2024-02-29T12:00:00Z"), Freq::Yearly, 1).unwrap()),
            "2025-02-28T12:00:00.000Z"
        );
        assert_eq!(
            format_ms(advance(ts("2025-03-01T08:00:00Z"), Freq::Weekly, 2).unwrap()),
            "2025-03-15T08:00:00.000Z"
        );
        assert_eq!(format_ms(advance(ts("2025-12-31T23:00:00Z"), Freq::Daily, 1).unwrap()), "2026-01-01T23:00:00.000Z");
    }

    #[test]
    fn reminders_keep_their_distance_and_series_end() {
        let due = ts("2025-01-31T10:00:00Z");
        let remind = ts("2025-01-31T09:00:00Z");
        let next = next_occurrence(&rule(Freq::Monthly, 1), 1, Some(due), Some(remind), 0).unwrap();
        assert_eq!(format_ms(next.due_at), "2025-02-28T10:00:00.000Z");
        assert_eq!(format_ms(next.remind_at.unwrap()), "2025-02-28T09:00:00.000Z");
        assert_eq!(next.occurrence, 2);

        // Without a due date: from the completion time.
        let done = ts("2025-05-05T18:00:00Z");
        let next = next_occurrence(&rule(Freq::Daily, 2), 1, None, None, done).unwrap();
        assert_eq!(format_ms(next.due_at), "2025-05-07T18:00:00.000Z");

        let counted = Recurrence { count: Some(3), ..rule(Freq::Daily, 1) };
        assert!(next_occurrence(&counted, 2, Some(due), None, 0).is_some());
        assert!(next_occurrence(&counted, 3, Some(due), None, 0).is_none(), "three occurrences exist");

        let until = Recurrence { until: Some(ts("2025-02-01T10:00:00Z")), ..rule(Freq::Daily, 1) };
        assert_eq!(next_occurrence(&until, 1, Some(due), None, 0).unwrap().due_at, ts("2025-02-01T10:00:00Z"));
        assert!(next_occurrence(&until, 2, Some(ts("2025-02-01T10:00:00Z")), None, 0).is_none());
    }
}
