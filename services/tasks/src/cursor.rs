//! Keyset pagination cursors: opaque base64url JSON of (sort, order, last sort key, last id).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::model::Task;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    Created,
    Due,
    Priority,
    Title,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(Sort::Created),
            "due" => Some(Sort::Due),
            "priority" => Some(Sort::Priority),
            "title" => Some(Sort::Title),
            _ => None,
        }
    }

    /// Newest and most important first; earliest due date and A–Z first.
    pub fn default_order(self) -> Order {
        match self {
            Sort::Created | Sort::Priority => Order::Desc,
            Sort::Due | Sort::Title => Order::Asc,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "asc" => Some(Order::Asc),
            "desc" => Some(Order::Desc),
            _ => None,
        }
    }
}

/// Tasks without a due date sort last in both directions: they take this value in the sort key.
pub fn due_sentinel(order: Order) -> i64 {
    match order {
        Order::Asc => i64::MAX,
        Order::Desc => -i64::MAX,
    }
}

/// The value of the sort column of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortKey {
    Int(i64),
    Text(String),
}

impl SortKey {
    pub fn of(task: &Task, sort: Sort, order: Order) -> Self {
        match sort {
            Sort::Created => SortKey::Int(task.created_at),
            Sort::Due => SortKey::Int(task.due_at.unwrap_or(due_sentinel(order))),
            Sort::Priority => SortKey::Int(task.priority.rank()),
            Sort::Title => SortKey::Text(task.title_key()),
        }
    }

    fn fits(&self, sort: Sort) -> bool {
        matches!(
            (self, sort),
            (SortKey::Text(_), Sort::Title) | (SortKey::Int(_), Sort::Created | Sort::Due | Sort::Priority)
        )
    }
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: Sort,
    #[serde(rename = "o")]
    pub order: Order,
    #[serde(rename = "k")]
    pub key: SortKey,
    pub id: String,
}

impl Cursor {
    /// The cursor after `task` in a listing sorted by `sort`/`order`.
    pub fn after(task: &Task, sort: Sort, order: Order) -> Self {
        Cursor { sort, order, key: SortKey::of(task, sort, order), id: task.id.clone() }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor and checks it belongs to a listing with this sort and order.
    pub fn decode(s: &str, sort: Sort, order: Order) -> Result<Self, &'static str> {
        const GARBLED: &str = "is not a cursor returned by this API";
        let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| GARBLED)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| GARBLED)?;
        if !c.key.fits(c.sort) || !flotilla_runtime::ids::is_id(&c.id) {
            return Err(GARBLED);
        }
        if c.sort != sort || c.order != order {
            return Err("was made for another sort or order; start again without a cursor");
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(sort: Sort, key: SortKey) -> Cursor {
        Cursor { sort, order: Order::Asc, key, id: "0190a0b0-0000-7000-8000-000000000000".into() }
    }

    #[test]
    fn cursors_round_trip_and_are_url_safe() {
        for c in [cursor(Sort::Due, SortKey::Int(i64::MAX)), cursor(Sort::Title, SortKey::Text("ä/+?&".into()))] {
            let s = c.encode();
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{s}");
            assert_eq!(Cursor::decode(&s, c.sort, Order::Asc), Ok(c));
        }
    }

    #[test]
    fn cursors_for_another_listing_or_garbage_are_refused() {
        let s = cursor(Sort::Due, SortKey::Int(5)).encode();
        assert!(Cursor::decode(&s, Sort::Due, Order::Desc).unwrap_err().contains("another sort"));
        assert!(Cursor::decode(&s, Sort::Created, Order::Asc).is_err());
        assert!(Cursor::decode("not a cursor", Sort::Due, Order::Asc).is_err());
        assert!(Cursor::decode("", Sort::Due, Order::Asc).is_err());
        let wrong_type = cursor(Sort::Title, SortKey::Int(5)).encode();
        assert!(Cursor::decode(&wrong_type, Sort::Title, Order::Asc).is_err());
        let mut bad_id = cursor(Sort::Due, SortKey::Int(5));
        bad_id.id = "x' OR 1=1 --".into();
        assert!(Cursor::decode(&bad_id.encode(), Sort::Due, Order::Asc).is_err());
    }

    #[test]
    fn default_orders() {
        assert_eq!(Sort::Created.default_order(), Order::Desc);
        assert_eq!(Sort::Priority.default_order(), Order::Desc);
        assert_eq!(Sort::Due.default_order(), Order::Asc);
        assert_eq!(Sort::Title.default_order(), Order::Asc);
    }
}
