//! The query strings of the listings: raw pairs validated into a [`Filter`]. Every bad, unknown or
//! repeated parameter is reported (pointer `#/<name>`).

use flotilla_runtime::FieldError;
use flotilla_runtime::time::parse_rfc3339;

use crate::cursor::Cursor;

pub const LIMIT_DEFAULT: i64 = 20;
pub const LIMIT_MAX: i64 = 100;
pub const DEAD_LETTERS_LIMIT_DEFAULT: i64 = 100;
pub const DEAD_LETTERS_LIMIT_MAX: i64 = 1000;
/// Longest accepted `type` and `user_id` filter values.
pub const VALUE_MAX: usize = 128;

/// What a listing selects: every given condition must hold. Newest first, after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub user_id: Option<String>,
    pub event_type: Option<String>,
    /// Event time at or after this (unix ms).
    pub since: Option<i64>,
    /// Event time before this (unix ms).
    pub until: Option<i64>,
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

impl Default for Filter {
    fn default() -> Self {
        Self { user_id: None, event_type: None, since: None, until: None, limit: LIMIT_DEFAULT, cursor: None }
    }
}

/// The query parameters of `GET /api/{user_id}/activity` as the API document shows them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description, never built
pub struct ActivityParams {
    /// Events per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The query parameters of `GET /api/admin/audit` as the API document shows them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description, never built
pub struct AuditParams {
    /// Only events of this type, e.g. `task.created`.
    #[param(min_length = 1, max_length = 128)]
    r#type: Option<String>,
    /// Only events concerning this user.
    #[param(min_length = 1, max_length = 128)]
    user_id: Option<String>,
    /// Only events that happened at or after this time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only events that happened before this time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Events per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page (with the same filters).
    cursor: Option<String>,
}

/// The query parameters of `GET /api/admin/dead-letters/audit` as the API document shows them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description, never built
pub struct DeadLetterParams {
    /// How many dead letters, newest first.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

pub const ACTIVITY_PARAMS: &[&str] = &["limit", "cursor"];
pub const AUDIT_PARAMS: &[&str] = &["type", "user_id", "since", "until", "limit", "cursor"];
pub const DEAD_LETTER_PARAMS: &[&str] = &["limit"];

/// Reports unknown and repeated names; returns a lookup of the first value of each known one.
fn check_names<'a>(
    pairs: &'a [(String, String)],
    known: &[&str],
    errs: &mut Vec<FieldError>,
) -> Vec<(&'a str, &'a str)> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            errs.push(FieldError::new(k, format!("unknown query parameter; expected one of {}", known.join(", "))));
        } else if seen.iter().any(|(s, _)| s == k) {
            errs.push(FieldError::new(k, "given more than once"));
        } else {
            seen.push((k, v));
        }
    }
    seen
}

fn get<'a>(seen: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    seen.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

fn parse_limit(v: Option<&str>, default: i64, max: i64, errs: &mut Vec<FieldError>) -> i64 {
    match v {
        None => default,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errs.push(FieldError::new("limit", format!("must be a whole number from 1 to {max}")));
                default
            }
        },
    }
}

fn parse_cursor(v: Option<&str>, errs: &mut Vec<FieldError>) -> Option<Cursor> {
    match Cursor::decode(v?) {
        Ok(c) => Some(c),
        Err(detail) => {
            errs.push(FieldError::new("cursor", detail));
            None
        }
    }
}

/// A filter value: 1 to [`VALUE_MAX`] characters without control characters.
fn parse_value(name: &str, v: Option<&str>, errs: &mut Vec<FieldError>) -> Option<String> {
    let v = v?;
    let n = v.chars().count();
    if (1..=VALUE_MAX).contains(&n) && !v.chars().any(char::is_control) {
        Some(v.to_owned())
    } else {
        errs.push(FieldError::new(name, format!("must be 1 to {VALUE_MAX} characters without control characters")));
        None
    }
}

/// The event type filter: dot-separated tokens of lowercase letters, digits and `_`.
fn parse_type(v: Option<&str>, errs: &mut Vec<FieldError>) -> Option<String> {
    let v = v?;
    let token_ok =
        |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if v.len() <= VALUE_MAX && v.split('.').all(token_ok) {
        Some(v.to_owned())
    } else {
        errs.push(FieldError::new("type", "must be an event type such as task.created"));
        None
    }
}

/// `GET /api/{user_id}/activity`: `limit`, `cursor`. The user comes from the path.
pub fn parse_activity_query(user_id: &str, pairs: &[(String, String)]) -> Result<Filter, Vec<FieldError>> {
    let mut errs = Vec::new();
    let seen = check_names(pairs, ACTIVITY_PARAMS, &mut errs);
    let filter = Filter {
        user_id: Some(user_id.to_owned()),
        limit: parse_limit(get(&seen, "limit"), LIMIT_DEFAULT, LIMIT_MAX, &mut errs),
        cursor: parse_cursor(get(&seen, "cursor"), &mut errs),
        ..Filter::default()
    };
    if errs.is_empty() { Ok(filter) } else { Err(errs) }
}

/// `GET /api/admin/audit`: `type`, `user_id`, `since`, `until` (RFC 3339), `limit`, `cursor`.
pub fn parse_audit_query(pairs: &[(String, String)]) -> Result<Filter, Vec<FieldError>> {
    let mut errs = Vec::new();
    let seen = check_names(pairs, AUDIT_PARAMS, &mut errs);
    let mut time = |name: &str| {
        let v = get(&seen, name)?;
        let t = parse_rfc3339(v);
        if t.is_none() {
            errs.push(FieldError::new(name, "must be an RFC 3339 timestamp such as 2026-11-23T17:00:00Z"));
        }
        t
    };
    let since = time("since");
    let until = time("until");
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        errs.push(FieldError::new("until", "must be after since"));
    }
    let filter = Filter {
        event_type: parse_type(get(&seen, "type"), &mut errs),
        user_id: parse_value("user_id", get(&seen, "user_id"), &mut errs),
        since,
        until,
        limit: parse_limit(get(&seen, "limit"), LIMIT_DEFAULT, LIMIT_MAX, &mut errs),
        cursor: parse_cursor(get(&seen, "cursor"), &mut errs),
    };
    if errs.is_empty() { Ok(filter) } else { Err(errs) }
}

/// `GET /api/admin/dead-letters/audit`: `limit`.
pub fn parse_dead_letter_query(pairs: &[(String, String)]) -> Result<i64, Vec<FieldError>> {
    let mut errs = Vec::new();
    let seen = check_names(pairs, DEAD_LETTER_PARAMS, &mut errs);
    let limit = parse_limit(get(&seen, "limit"), DEAD_LETTERS_LIMIT_DEFAULT, DEAD_LETTERS_LIMIT_MAX, &mut errs);
    if errs.is_empty() { Ok(limit) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn pointers(errs: Vec<FieldError>) -> Vec<String> {
        errs.into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn activity_defaults_and_errors() {
        let f = parse_activity_query("u1", &[]).unwrap();
        assert_eq!((f.user_id.as_deref(), f.limit, f.cursor), (Some("u1"), 20, None));
        let c = Cursor::after(7).encode();
        let f = parse_activity_query("u1", &pairs(&[("limit", "100"), ("cursor", &c)])).unwrap();
        assert_eq!((f.limit, f.cursor.map(|c| c.seq())), (100, Some(7)));
        let errs =
            parse_activity_query("u1", &pairs(&[("limit", "0"), ("cursor", "x"), ("type", "a"), ("limit", "2")]))
                .unwrap_err();
        assert_eq!(pointers(errs), ["#/type", "#/limit", "#/limit", "#/cursor"]);
    }

    #[test]
    fn audit_filters_and_errors() {
        let f = parse_audit_query(&pairs(&[
            ("type", "task.created"),
            ("user_id", "u1"),
            ("since", "2026-01-01T00:00:00Z"),
            ("until", "2026-01-02T00:00:00+01:00"),
        ]))
        .unwrap();
        assert_eq!(f.event_type.as_deref(), Some("task.created"));
        assert_eq!(f.user_id.as_deref(), Some("u1"));
        assert_eq!(f.since, parse_rfc3339("2026-01-01T00:00:00Z"));
        assert_eq!(f.until, parse_rfc3339("2026-01-01T23:00:00Z"));

        let errs = parse_audit_query(&pairs(&[
            ("type", "task.>"),
            ("user_id", ""),
            ("since", "yesterday"),
            ("limit", "101"),
            ("sort", "asc"),
        ]))
        .unwrap_err();
        assert_eq!(pointers(errs), ["#/sort", "#/since", "#/type", "#/user_id", "#/limit"]);
        let errs = parse_audit_query(&pairs(&[("since", "2026-01-02T00:00:00Z"), ("until", "2026-01-01T00:00:00Z")]))
            .unwrap_err();
        assert_eq!(pointers(errs), ["#/until"]);
    }

    #[test]
    fn dead_letter_limit() {
        assert_eq!(parse_dead_letter_query(&[]), Ok(100));
        assert_eq!(parse_dead_letter_query(&pairs(&[("limit", "1000")])), Ok(1000));
        assert!(parse_dead_letter_query(&pairs(&[("limit", "1001")])).is_err());
        assert!(parse_dead_letter_query(&pairs(&[("cursor", "x")])).is_err());
    }
}
