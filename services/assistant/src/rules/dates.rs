//! Dates and times in everyday English, read in the user's time zone and turned into UTC
//! instants ("tomorrow at 5pm", "next monday", "in 3 days", "jan 5", "17:30", ISO dates).
//!
//! Time zones come from `jiff` with its bundled tz database (`tzdb-bundle-always`): it follows
//! the IANA releases, handles DST gaps and folds, and works in images without
//! /usr/share/zoneinfo, which `time` alone cannot do.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

/// A date given without a time is due at the end of that day, so it is not overdue before the
/// day is over; reminders for such a date fire at [`REMIND_HOUR`].
pub const END_OF_DAY: (i8, i8) = (23, 59);
pub const REMIND_HOUR: i8 = 9;

/// "now" as the user sees it.
#[derive(Debug, Clone)]
pub struct Clock {
    pub now: Timestamp,
    pub tz: TimeZone,
}

impl Clock {
    /// An unknown zone name falls back to UTC (the caller validates names it accepts).
    pub fn new(now: time::OffsetDateTime, tz: &str) -> Self {
        let now = Timestamp::from_nanosecond(now.unix_timestamp_nanos()).unwrap_or(Timestamp::UNIX_EPOCH);
        let tz = TimeZone::get(tz).unwrap_or(TimeZone::UTC);
        Clock { now, tz }
    }

    pub fn today(&self) -> Date {
        self.now.to_zoned_datetime(self.tz.clone()).date()
    }

    pub fn local(&self, ts: Timestamp) -> DateTime {
        ts.to_zoned_datetime(self.tz.clone()).datetime()
    }

    /// The instant of a local wall-clock time (DST gaps move forward, folds take the earlier).
    pub fn at(&self, date: Date, h: i8, m: i8) -> Option<Timestamp> {
        let t = Time::new(h, m, 0, 0).ok()?;
        date.to_datetime(t).to_zoned_datetime(self.tz.clone()).ok().map(|z| z.timestamp())
    }

    /// The first instant of `date` in the user's zone.
    pub fn start_of(&self, date: Date) -> Option<Timestamp> {
        date.to_zoned_datetime(self.tz.clone()).ok().map(|z| z.timestamp())
    }

    /// A stored RFC 3339 instant for a person: "today at 5:00 PM", "Fri Jan 16", "Mon Jan 4 2027 at 9:00 AM".
    pub fn describe(&self, rfc3339: &str) -> String {
        let Ok(ts) = rfc3339.parse::<Timestamp>() else { return rfc3339.to_owned() };
        let local = self.local(ts);
        let today = self.today();
        let date = local.date();
        let day = if date == today {
            "today".to_owned()
        } else if Some(date) == add_days(today, 1) {
            "tomorrow".to_owned()
        } else if Some(date) == add_days(today, -1) {
            "yesterday".to_owned()
        } else if date.year() == today.year() {
            date.strftime("%a %b %-d").to_string()
        } else {
            date.strftime("%a %b %-d %Y").to_string()
        };
        if (local.hour(), local.minute()) == END_OF_DAY {
            day
        } else {
            format!("{day} at {}", local.strftime("%-I:%M %p"))
        }
    }
}

pub fn add_days(d: Date, n: i64) -> Option<Date> {
    d.checked_add(Span::new().days(n)).ok()
}

/// A date or time found in a message, and which tokens said it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The day, when one was said ("tomorrow", "jan 5").
    pub date: Option<Date>,
    /// The wall-clock time, when one was said ("5pm", "noon").
    pub time: Option<(i8, i8)>,
    /// An exact instant ("in 2 hours", an ISO timestamp with a zone).
    pub exact: Option<Timestamp>,
    /// Indices of the tokens that made it (to leave them out of a title).
    pub used: Vec<usize>,
}

impl Found {
    /// The instant meant: a day without a time is its end; a time without a day is its next
    /// occurrence.
    pub fn instant(&self, clock: &Clock) -> Option<Timestamp> {
        if let Some(ts) = self.exact {
            return Some(ts);
        }
        match (self.date, self.time) {
            (Some(d), Some((h, m))) => clock.at(d, h, m),
            (Some(d), None) => clock.at(d, END_OF_DAY.0, END_OF_DAY.1),
            (None, Some((h, m))) => {
                let today = clock.today();
                let t = clock.at(today, h, m)?;
                if t > clock.now { Some(t) } else { clock.at(add_days(today, 1)?, h, m) }
            }
            (None, None) => None,
        }
    }

    /// When to remind: the instant itself when a time was said, else the morning of the day.
    pub fn reminder(&self, clock: &Clock) -> Option<Timestamp> {
        match (self.exact, self.date, self.time) {
            (None, Some(d), None) => {
                let morning = clock.at(d, REMIND_HOUR, 0)?;
                // A reminder already past (today, after 9) fires now.
                Some(morning.max(clock.now))
            }
            _ => self.instant(clock),
        }
    }

    pub fn rfc3339(&self, clock: &Clock) -> Option<String> {
        self.instant(clock).map(|t| t.to_string())
    }
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

fn weekday(w: &str) -> Option<Weekday> {
    let short = ["mon", "tue", "tues", "wed", "weds", "thu", "thur", "thurs", "fri", "sat", "sun"];
    WEEKDAYS.iter().find_map(|(name, day)| {
        let is = w == *name || (w.len() >= 3 && short.contains(&w) && name.starts_with(w));
        is.then_some(*day)
    })
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn month(w: &str) -> Option<i8> {
    let w = w.trim_end_matches('.');
    MONTHS.iter().position(|m| w == *m || (w.len() >= 3 && m.starts_with(w))).map(|i| i as i8 + 1)
}

/// "5", "5th", "21st" → 5, 21.
fn day_of_month(w: &str) -> Option<i8> {
    let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &w[digits.len()..];
    if !(suffix.is_empty() || ["st", "nd", "rd", "th"].contains(&suffix)) {
        return None;
    }
    digits.parse::<i8>().ok().filter(|d| (1..=31).contains(d))
}

fn number(w: &str) -> Option<i64> {
    let words = ["a", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    if w == "an" {
        return Some(1);
    }
    if let Some(i) = words.iter().position(|x| *x == w) {
        return Some(i.max(1) as i64);
    }
    w.parse::<i64>().ok().filter(|n| (0..=1000).contains(n))
}

/// "5pm", "5:30pm", "5.30 pm" (`next` is the token after), "17:30", "17h30" → (h, m, tokens used).
fn clock_time(w: &str, next: Option<&str>) -> Option<(i8, i8, usize)> {
    let (body, meridiem, used) = if let Some(b) = w.strip_suffix("am").or_else(|| w.strip_suffix("a.m")) {
        (b, Some(false), 1)
    } else if let Some(b) = w.strip_suffix("pm").or_else(|| w.strip_suffix("p.m")) {
        (b, Some(true), 1)
    } else {
        match next {
            Some("am" | "a.m" | "a.m.") => (w, Some(false), 2),
            Some("pm" | "p.m" | "p.m.") => (w, Some(true), 2),
            _ => (w, None, 1),
        }
    };
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match body.split_once([':', '.', 'h']) {
        Some((h, m)) => (h.parse::<i8>().ok()?, if m.is_empty() { 0 } else { m.parse::<i8>().ok()? }),
        None => (body.parse::<i8>().ok()?, 0),
    };
    if !(0..60).contains(&m) {
        return None;
    }
    match meridiem {
        Some(pm) => {
            if !(1..=12).contains(&h) {
                return None;
            }
            let h = match (pm, h) {
                (false, 12) => 0,
                (true, 12) => 12,
                (true, h) => h + 12,
                (false, h) => h,
            };
            Some((h, m, used))
        }
        // Without am/pm only a 24-hour time with minutes ("17:30") is a time; a bare number is not.
        None if body.contains([':', 'h']) && (0..24).contains(&h) => Some((h, m, 1)),
        None => None,
    }
}

/// A day found at a token: the date, how many tokens said it, and a time it implies ("tonight").
type DayMatch = (Date, usize, Option<(i8, i8)>);

/// Words that introduce a date and go with it ("due friday", "on friday", "by jan 5").
const DATE_LEAD: &[&str] = &["on", "by", "due", "for", "until", "till", "before", "this", "next", "coming"];

/// Finds the first day and the first time in `words` (lowercased tokens).
pub fn find(words: &[String], clock: &Clock) -> Option<Found> {
    let today = clock.today();
    let mut found = Found { date: None, time: None, exact: None, used: Vec::new() };
    let w = |i: usize| words.get(i).map(String::as_str);
    let mut evening = None;
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        let take = |found: &mut Found, from: usize, to: usize| {
            // Lead-in words right before ("due on", "by") belong to the date.
            let mut start = from;
            while start > 0 && DATE_LEAD.contains(&words[start - 1].as_str()) && !found.used.contains(&(start - 1)) {
                start -= 1;
                if matches!(words[start].as_str(), "due") {
                    break;
                }
            }
            found.used.extend(start..to);
        };
        // Day expressions.
        if found.date.is_none() && found.exact.is_none() {
            let day: Option<DayMatch> = match word {
                "today" => Some((today, 1, None)),
                "tonight" => Some((today, 1, Some((20, 0)))),
                "tomorrow" | "tmrw" | "tmr" | "tomorow" | "tommorow" | "tommorrow" => {
                    add_days(today, 1).map(|d| (d, 1, None))
                }
                "day" if w(i + 1) == Some("after") && w(i + 2).is_some_and(|x| x.starts_with("tom")) => {
                    let back = usize::from(i > 0 && w(i - 1) == Some("the"));
                    if back == 1 {
                        i -= 1;
                    }
                    add_days(today, 2).map(|d| (d, 3 + back, None))
                }
                "next" if w(i + 1) == Some("week") => {
                    let monday = 7 - i64::from(today.weekday().to_monday_zero_offset());
                    add_days(today, monday).map(|d| (d, 2, None))
                }
                "next" if w(i + 1) == Some("month") => {
                    today.first_of_month().checked_add(Span::new().months(1)).ok().map(|d| (d, 2, None))
                }
                "weekend" | "week-end" => {
                    let sat = i64::from(today.weekday().until(Weekday::Saturday));
                    add_days(today, sat).map(|d| (d, 1, None))
                }
                "in" if w(i + 1).and_then(number).is_some() => {
                    let n = w(i + 1).and_then(number).unwrap_or(0);
                    match w(i + 2).map(|u| u.trim_end_matches('s')) {
                        Some("day") => add_days(today, n).map(|d| (d, 3, None)),
                        Some("week") => add_days(today, 7 * n).map(|d| (d, 3, None)),
                        Some("month") => today.checked_add(Span::new().months(n)).ok().map(|d| (d, 3, None)),
                        Some("hour" | "hr" | "minute" | "min") => {
                            let unit = w(i + 2).unwrap_or_default();
                            let span =
                                if unit.starts_with('h') { Span::new().hours(n) } else { Span::new().minutes(n) };
                            if let Ok(ts) = clock.now.checked_add(span) {
                                found.exact = Some(ts);
                                found.used.extend(i..i + 3);
                                i += 3;
                                continue;
                            }
                            None
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            // Short day names ("sun", "sat") and bare times of day ("morning") are also plain
            // words: they count only after a word that introduces a date.
            let led = i > 0 && DATE_LEAD.contains(&words[i - 1].as_str());
            let day = day.or_else(|| {
                if let Some(wd) = weekday(word).filter(|_| led || WEEKDAYS.iter().any(|(n, _)| *n == word)) {
                    // "monday" is the next Monday after today (a week ahead when today is Monday).
                    let ahead = i64::from(today.weekday().until(wd));
                    let ahead = if ahead == 0 { 7 } else { ahead };
                    return add_days(today, ahead).map(|d| (d, 1, None));
                }
                month_day(words, i, today).or_else(|| iso_date(word).map(|d| (d, 1, None)))
            });
            if let Some((date, n, time)) = day {
                found.date = Some(date);
                // "tonight" means 20:00 unless a time is said too ("tonight at 7pm").
                if time.is_some() {
                    evening = time;
                }
                take(&mut found, i, i + n);
                // An ISO date-time "2026-01-05t17:00" carries its time.
                if let Some((_, t)) = word.split_once('t')
                    && iso_date(word).is_some()
                    && let Some((h, m, _)) = clock_time(t, None)
                {
                    found.time = Some((h, m));
                }
                i += n;
                continue;
            }
            if let Ok(ts) = word.to_uppercase().parse::<Timestamp>() {
                found.exact = Some(ts);
                take(&mut found, i, i + 1);
                i += 1;
                continue;
            }
        }
        // Time expressions.
        if found.time.is_none() && found.exact.is_none() {
            let at = usize::from(i > 0 && matches!(w(i - 1), Some("at" | "@")) && !found.used.contains(&(i - 1)));
            let named = match word {
                "noon" | "midday" => Some((12, 0)),
                "midnight" => Some(END_OF_DAY),
                "morning" | "afternoon" | "evening" | "night" if !after_day_word(words, i) => None,
                "morning" => Some((9, 0)),
                "afternoon" => Some((15, 0)),
                "evening" => Some((18, 0)),
                "night" => Some((20, 0)),
                "eod" => Some((17, 0)),
                _ => None,
            };
            if let Some(t) = named {
                found.time = Some(t);
                let mut start = i - at;
                // "in the morning", "this evening".
                if start > 0 && matches!(w(start - 1), Some("the" | "this")) {
                    start -= 1;
                    if start > 0 && w(start - 1) == Some("in") {
                        start -= 1;
                    }
                }
                found.used.extend(start..=i);
                i += 1;
                continue;
            }
            if let Some((h, m, n)) = clock_time(word, w(i + 1)) {
                found.time = Some((h, m));
                found.used.extend(i - at..i + n);
                i += n;
                continue;
            }
            // "at 5": 1–7 is afternoon, 8–12 morning/noon, 13–23 as said.
            if at == 1
                && let Ok(h) = word.parse::<i8>()
                && (1..=23).contains(&h)
            {
                let h = if (1..=7).contains(&h) { h + 12 } else { h };
                found.time = Some((h, 0));
                found.used.extend(i - 1..=i);
                i += 1;
                continue;
            }
        }
        i += 1;
    }
    if found.time.is_none() && found.exact.is_none() {
        found.time = evening;
    }
    found.used.sort_unstable();
    found.used.dedup();
    (found.date.is_some() || found.time.is_some() || found.exact.is_some()).then_some(found)
}

/// "tomorrow morning", "in the evening", "friday night", "at night".
fn after_day_word(words: &[String], i: usize) -> bool {
    i > 0 && {
        let prev = words[i - 1].as_str();
        matches!(prev, "the" | "this" | "at" | "tomorrow" | "today" | "tmrw") || weekday(prev).is_some()
    }
}

/// "jan 5", "january 5th", "jan 5 2027", "5 jan", "5th of january" at `i` → (date, tokens).
fn month_day(words: &[String], i: usize, today: Date) -> Option<DayMatch> {
    let w = |k: usize| words.get(k).map(String::as_str);
    let (m, d, mut n) = if let (Some(m), Some(d)) = (month(&words[i]), w(i + 1).and_then(day_of_month)) {
        (m, d, 2)
    } else if let Some(d) = day_of_month(&words[i]) {
        if let Some(m) = w(i + 1).and_then(month) {
            (m, d, 2)
        } else if w(i + 1) == Some("of")
            && let Some(m) = w(i + 2).and_then(month)
        {
            (m, d, 3)
        } else {
            return None;
        }
    } else {
        return None;
    };
    let year = w(i + n).and_then(|y| y.parse::<i16>().ok()).filter(|y| (2000..=2200).contains(y));
    if year.is_some() {
        n += 1;
    }
    let date = match year {
        Some(y) => Date::new(y, m, d).ok()?,
        None => {
            // Without a year: the next such day (today counts).
            let this = Date::new(today.year(), m, d).ok();
            match this {
                Some(date) if date >= today => date,
                _ => Date::new(today.year() + 1, m, d).ok()?,
            }
        }
    };
    Some((date, n, None))
}

/// "2026-01-05" (also the date part of "2026-01-05t17:00").
fn iso_date(w: &str) -> Option<Date> {
    let head = w.get(..10)?;
    if w.len() > 10 && !w[10..].starts_with('t') {
        return None;
    }
    let mut parts = head.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tuesday 2026-03-10 12:00 UTC.
    fn clock(tz: &str) -> Clock {
        Clock::new(time::macros::datetime!(2026-03-10 12:00 UTC), tz)
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(|w| w.trim_matches([',', '.', '!', '?']).to_lowercase()).collect()
    }

    fn due(s: &str, tz: &str) -> Option<String> {
        let c = clock(tz);
        find(&words(s), &c).and_then(|f| f.rfc3339(&c))
    }

    #[test]
    fn days() {
        assert_eq!(due("today", "UTC").as_deref(), Some("2026-03-10T23:59:00Z"));
        assert_eq!(due("tomorrow", "UTC").as_deref(), Some("2026-03-11T23:59:00Z"));
        assert_eq!(due("the day after tomorrow", "UTC").as_deref(), Some("2026-03-12T23:59:00Z"));
        assert_eq!(due("on friday", "UTC").as_deref(), Some("2026-03-13T23:59:00Z"));
        assert_eq!(due("next monday", "UTC").as_deref(), Some("2026-03-16T23:59:00Z"));
        assert_eq!(due("tuesday", "UTC").as_deref(), Some("2026-03-17T23:59:00Z"), "a week ahead, not today");
        assert_eq!(due("in 3 days", "UTC").as_deref(), Some("2026-03-13T23:59:00Z"));
        assert_eq!(due("in a week", "UTC").as_deref(), Some("2026-03-17T23:59:00Z"));
        assert_eq!(due("next week", "UTC").as_deref(), Some("2026-03-16T23:59:00Z"));
        assert_eq!(due("jan 5", "UTC").as_deref(), Some("2027-01-05T23:59:00Z"), "past this year: next year");
        assert_eq!(due("april 1st", "UTC").as_deref(), Some("2026-04-01T23:59:00Z"));
        assert_eq!(due("5th of may", "UTC").as_deref(), Some("2026-05-05T23:59:00Z"));
        assert_eq!(due("2026-07-04", "UTC").as_deref(), Some("2026-07-04T23:59:00Z"));
        assert_eq!(due("feb 30", "UTC"), None);
    }

    #[test]
    fn times() {
        assert_eq!(due("tomorrow at 5pm", "UTC").as_deref(), Some("2026-03-11T17:00:00Z"));
        assert_eq!(due("tomorrow 5:30 pm", "UTC").as_deref(), Some("2026-03-11T17:30:00Z"));
        assert_eq!(due("at 17:30", "UTC").as_deref(), Some("2026-03-10T17:30:00Z"));
        assert_eq!(due("at 9am", "UTC").as_deref(), Some("2026-03-11T09:00:00Z"), "past today: tomorrow");
        assert_eq!(due("noon tomorrow", "UTC").as_deref(), Some("2026-03-11T12:00:00Z"));
        assert_eq!(due("friday at 5", "UTC").as_deref(), Some("2026-03-13T17:00:00Z"));
        assert_eq!(due("tonight", "UTC").as_deref(), Some("2026-03-10T20:00:00Z"));
        assert_eq!(due("tonight at 7pm", "UTC").as_deref(), Some("2026-03-10T19:00:00Z"));
        assert_eq!(due("tomorrow morning", "UTC").as_deref(), Some("2026-03-11T09:00:00Z"));
        assert_eq!(due("in 2 hours", "UTC").as_deref(), Some("2026-03-10T14:00:00Z"));
        assert_eq!(due("2026-07-04t08:15", "UTC").as_deref(), Some("2026-07-04T08:15:00Z"));
        assert_eq!(due("12am tomorrow", "UTC").as_deref(), Some("2026-03-11T00:00:00Z"));
        assert_eq!(due("buy 5 apples", "UTC"), None, "a bare number is not a time");
    }

    #[test]
    fn time_zones() {
        // New York is UTC-4 after the DST change of 2026-03-08.
        assert_eq!(due("tomorrow at 5pm", "America/New_York").as_deref(), Some("2026-03-11T21:00:00Z"));
        // Tokyo: it is already 21:00 on Tuesday there, so "tomorrow" is Wednesday local.
        assert_eq!(due("tomorrow 9am", "Asia/Tokyo").as_deref(), Some("2026-03-11T00:00:00Z"));
        // Europe/Paris switches on 2026-03-29: before, UTC+1; after, UTC+2.
        assert_eq!(due("mar 28 at 10:00", "Europe/Paris").as_deref(), Some("2026-03-28T09:00:00Z"));
        assert_eq!(due("mar 30 at 10:00", "Europe/Paris").as_deref(), Some("2026-03-30T08:00:00Z"));
        assert_eq!(due("today", "Nowhere/Invalid").as_deref(), Some("2026-03-10T23:59:00Z"), "unknown zone: UTC");
    }

    #[test]
    fn used_tokens_cover_lead_words() {
        let c = clock("UTC");
        let f = find(&words("buy milk due on friday at 5pm"), &c).unwrap();
        assert_eq!(f.used, vec![2, 3, 4, 5, 6]);
        let f = find(&words("call mom in the evening"), &c).unwrap();
        assert_eq!(f.used, vec![2, 3, 4]);
    }

    #[test]
    fn descriptions_are_local() {
        let c = clock("America/New_York");
        assert_eq!(c.describe("2026-03-11T21:00:00Z"), "tomorrow at 5:00 PM");
        assert_eq!(c.describe("2026-03-14T03:59:00Z"), "Fri Mar 13");
        assert_eq!(c.describe("2027-01-05T15:00:00Z"), "Tue Jan 5 2027 at 10:00 AM");
    }
}
