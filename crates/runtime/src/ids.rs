//! Identifiers: UUIDv7 strings, so ids sort by creation time (cursor pagination relies on it).

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// True for a canonical hyphenated UUID (any version); other strings never reach the database.
pub fn is_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}
