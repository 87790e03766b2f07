//! The list query: raw query-string pairs validated into a typed filter.

use flotilla_runtime::FieldError;
use flotilla_runtime::time::parse_rfc3339;

use crate::cursor::{Cursor, Order, Sort};
use crate::model::Priority;
use crate::validate::is_valid_tag;

pub const LIMIT_DEFAULT: i64 = 20;
pub const LIMIT_MAX: i64 = 100;
pub const Q_MAX: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Status {
    #[default]
    All,
    Pending,
    Completed,
}

/// A validated `GET /api/{user_id}/tasks` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Status,
    pub priority: Option<Priority>,
    /// Lowercased (tags are stored lowercased).
    pub tag: Option<String>,
    /// Search text as given (matched case-insensitively).
    pub q: Option<String>,
    pub due_before: Option<i64>,
    pub due_after: Option<i64>,
    pub overdue: Option<bool>,
    pub sort: Sort,
    pub order: Order,
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            status: Status::All,
            priority: None,
            tag: None,
            q: None,
            due_before: None,
            due_after: None,
            overdue: None,
            sort: Sort::Created,
            order: Sort::Created.default_order(),
            limit: LIMIT_DEFAULT,
            cursor: None,
        }
    }
}

/// The query parameters of `GET /api/{user_id}/tasks` as the API document shows them (parsing is
/// [`parse_list_query`]'s; a test keeps the names the same as [`PARAMS`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description, never built
pub struct ListParams {
    /// Completion state (default `all`).
    #[param(inline)]
    status: Option<Status>,
    #[param(inline)]
    priority: Option<Priority>,
    /// Tasks with this tag (any case): 1 to 32 letters, digits, `-` or `_`.
    #[param(min_length = 1, max_length = 32)]
    tag: Option<String>,
    /// Search in titles and descriptions (case-insensitive substring).
    #[param(min_length = 1, max_length = 200)]
    q: Option<String>,
    /// Due before this time.
    #[param(format = DateTime)]
    due_before: Option<String>,
    /// Due after this time.
    #[param(format = DateTime)]
    due_after: Option<String>,
    /// `true`: pending tasks past their due time; `false`: all others.
    overdue: Option<bool>,
    /// Sort key (default `created`); tasks without a due date come last.
    #[param(inline)]
    sort: Option<Sort>,
    /// Default: `desc` for `created` and `priority`, `asc` for `due` and `title`.
    #[param(inline)]
    order: Option<Order>,
    /// Tasks per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page (with the same `sort` and `order`).
    cursor: Option<String>,
}

const PARAMS: &[&str] =
    &["status", "priority", "tag", "q", "due_before", "due_after", "overdue", "sort", "order", "limit", "cursor"];

/// Validates query-string pairs; every bad or unknown parameter is reported (pointer `#/<name>`).
pub fn parse_list_query(pairs: &[(String, String)]) -> Result<ListQuery, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in pairs {
        if !PARAMS.contains(&k.as_str()) {
            errs.push(FieldError::new(k, format!("unknown query parameter; expected one of {}", PARAMS.join(", "))));
        } else if seen.contains(&k.as_str()) {
            errs.push(FieldError::new(k, "given more than once"));
        } else {
            seen.push(k);
        }
    }
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut bad = |name: &str, detail: &str| errs.push(FieldError::new(name, detail));
    let mut q = ListQuery::default();

    if let Some(v) = get("status") {
        match v {
            "all" => q.status = Status::All,
            "pending" => q.status = Status::Pending,
            "completed" => q.status = Status::Completed,
            _ => bad("status", "must be all, pending or completed"),
        }
    }
    if let Some(v) = get("priority") {
        match Priority::parse(v) {
            Some(p) => q.priority = Some(p),
            None => bad("priority", "must be low, medium or high"),
        }
    }
    if let Some(v) = get("tag") {
        if is_valid_tag(v) {
            q.tag = Some(v.to_lowercase());
        } else {
            bad("tag", "a tag is 1 to 32 letters, digits, '-' or '_'");
        }
    }
    if let Some(v) = get("q") {
        let n = v.chars().count();
        if (1..=Q_MAX).contains(&n) {
            q.q = Some(v.to_owned());
        } else {
            bad("q", "must be 1 to 200 characters");
        }
    }
    for (name, slot) in [("due_before", &mut q.due_before), ("due_after", &mut q.due_after)] {
        if let Some(v) = get(name) {
            match parse_rfc3339(v) {
                Some(ms) => *slot = Some(ms),
                None => bad(name, "must be an RFC 3339 timestamp such as 2026-11-23T17:00:00Z"),
            }
        }
    }
    if let Some(v) = get("overdue") {
        match v {
            "true" => q.overdue = Some(true),
            "false" => q.overdue = Some(false),
            _ => bad("overdue", "must be true or false"),
        }
    }
    let mut sort_ok = true;
    if let Some(v) = get("sort") {
        match Sort::parse(v) {
            Some(s) => q.sort = s,
            None => {
                sort_ok = false;
                bad("sort", "must be created, due, priority or title");
            }
        }
    }
    q.order = q.sort.default_order();
    if let Some(v) = get("order") {
        match Order::parse(v) {
            Some(o) => q.order = o,
            None => {
                sort_ok = false;
                bad("order", "must be asc or desc");
            }
        }
    }
    if let Some(v) = get("limit") {
        match v.parse::<i64>() {
            Ok(n) if (1..=LIMIT_MAX).contains(&n) => q.limit = n,
            _ => bad("limit", "must be a whole number from 1 to 100"),
        }
    }
    if let Some(v) = get("cursor")
        && sort_ok
    {
        match Cursor::decode(v, q.sort, q.order) {
            Ok(c) => q.cursor = Some(c),
            Err(detail) => bad("cursor", detail),
        }
    }
    if errs.is_empty() { Ok(q) } else { Err(errs) }
}

/// A LIKE pattern matching `text` anywhere, lowercased, with `%`, `_` and `\` escaped by `\`.
pub fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ListQuery, Vec<FieldError>> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_list_query(&owned)
    }

    fn pointers(r: Result<ListQuery, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn documented_parameters_are_the_parsed_ones() {
        use utoipa::IntoParams;
        let params = ListParams::into_params(|| None);
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, PARAMS);
        let schema = |name: &str| {
            let p = params.iter().find(|p| p.name == name).unwrap();
            serde_json::to_value(&p.schema).unwrap()
        };
        assert_eq!(schema("limit")["maximum"], LIMIT_MAX);
        assert_eq!(schema("limit")["default"], LIMIT_DEFAULT);
        assert_eq!(schema("q")["maxLength"], Q_MAX);
        assert_eq!(schema("status")["enum"], serde_json::json!(["all", "pending", "completed"]));
        assert_eq!(schema("sort")["enum"], serde_json::json!(["created", "due", "priority", "title"]));
        assert_eq!(schema("priority")["enum"], serde_json::json!(["low", "medium", "high"]));
    }

    #[test]
    fn defaults() {
        let q = parse(&[]).unwrap();
        assert_eq!(q, ListQuery::default());
        assert_eq!((q.sort, q.order, q.limit), (Sort::Created, Order::Desc, 20));
        assert_eq!(parse(&[("sort", "title")]).unwrap().order, Order::Asc);
        assert_eq!(parse(&[("sort", "due"), ("order", "desc")]).unwrap().order, Order::Desc);
    }

    #[test]
    fn every_parameter_is_parsed() {
        let q = parse(&[
            ("status", "pending"),
            ("priority", "high"),
            ("tag", "Work"),
            ("q", "50%"),
            ("due_before", "2026-01-01T00:00:00Z"),
            ("due_after", "2025-01-01T00:00:00+02:00"),
            ("overdue", "false"),
            ("limit", "100"),
        ])
        .unwrap();
        assert_eq!(q.status, Status::Pending);
        assert_eq!(q.priority, Some(Priority::High));
        assert_eq!(q.tag.as_deref(), Some("work"));
        assert_eq!(q.q.as_deref(), Some("50%"));
        assert_eq!(q.due_before, parse_rfc3339("2026-01-01T00:00:00Z"));
        assert_eq!(q.due_after, parse_rfc3339("2024-12-31T22:00:00Z"));
        assert_eq!(q.overdue, Some(false));
        assert_eq!(q.limit, 100);
    }

    #[test]
    fn bad_unknown_and_repeated_parameters_are_named() {
        assert_eq!(
            pointers(parse(&[
                ("status", "done"),
                ("priority", "urgent"),
                ("tag", "a b"),
                ("q", ""),
                ("due_before", "soon"),
                ("overdue", "yes"),
                ("sort", "size"),
                ("order", "up"),
                ("limit", "0"),
                ("page", "2"),
            ])),
            vec![
                "#/page",
                "#/status",
                "#/priority",
                "#/tag",
                "#/q",
                "#/due_before",
                "#/overdue",
                "#/sort",
                "#/order",
                "#/limit"
            ]
        );
        assert_eq!(pointers(parse(&[("limit", "101")])), vec!["#/limit"]);
        assert_eq!(pointers(parse(&[("limit", "ten")])), vec!["#/limit"]);
        assert_eq!(pointers(parse(&[("q", &"x".repeat(201))])), vec!["#/q"]);
        assert_eq!(pointers(parse(&[("tag", "a"), ("tag", "b")])), vec!["#/tag"]);
        assert_eq!(pointers(parse(&[("cursor", "garbage")])), vec!["#/cursor"]);
    }

    #[test]
    fn cursor_must_match_sort_and_order() {
        let c = Cursor {
            sort: Sort::Due,
            order: Order::Asc,
            key: crate::cursor::SortKey::Int(1),
            id: "0190a0b0-0000-7000-8000-000000000000".into(),
        }
        .encode();
        assert!(parse(&[("sort", "due"), ("cursor", &c)]).unwrap().cursor.is_some());
        assert_eq!(pointers(parse(&[("sort", "due"), ("order", "desc"), ("cursor", &c)])), vec!["#/cursor"]);
        assert_eq!(pointers(parse(&[("cursor", &c)])), vec!["#/cursor"]);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_Off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("ÄRGER"), "%ärger%");
    }
}
