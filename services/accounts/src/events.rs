//! The events of the accounts service (written to the outbox in the transaction of the change;
//! `subject` and `userid` = the user's id). Never a password, hash or token in `data`.
//!
//! - `user.signed_up` — a user was created (sign-up, the admin bootstrap, `flotilla admin
//!   create`); `data` = the user's public JSON.
//! - `user.logged_in` — a login succeeded (with the new session's refresh token); `data` =
//!   `{id, ip}`.
//! - `user.login_failed` — a login was refused for bad credentials or a disabled account;
//!   `userid`/`subject` only when the email belongs to a user; `data` = `{email, reason, ip}`
//!   (reason `invalid_credentials` | `account_disabled`). Throttled attempts (429) emit nothing.
//! - `user.deleted` — the account was deleted (`DELETE /api/auth/me`); `data` = `{id}`. The tasks
//!   service deletes the user's tasks when it consumes it.

use std::net::IpAddr;

use flotilla_events::Event;
use flotilla_events::event::{sources, types};
use serde_json::json;

use crate::model::{User, UserRecord};

/// Longest email kept in a `user.login_failed` event (an unknown email is whatever was typed).
const EMAIL_MAX: usize = 254;

fn user_event(event_type: &str, user_id: &str, data: serde_json::Value) -> Event {
    Event::new(sources::ACCOUNTS, event_type, Some(user_id.to_owned()), Some(user_id.to_owned()), data)
}

pub fn signed_up(user: &UserRecord) -> Event {
    user_event(types::USER_SIGNED_UP, &user.id, serde_json::to_value(User::from(user)).unwrap_or_default())
}

pub fn logged_in(user: &UserRecord, ip: Option<IpAddr>) -> Event {
    user_event(types::USER_LOGGED_IN, &user.id, json!({ "id": user.id, "ip": ip.map(|ip| ip.to_string()) }))
}

/// `user` is the user the email matched, if any.
pub fn login_failed(user: Option<&UserRecord>, email: &str, reason: &str, ip: Option<IpAddr>) -> Event {
    let email: String = email.chars().take(EMAIL_MAX).collect();
    let data = json!({ "email": email, "reason": reason, "ip": ip.map(|ip| ip.to_string()) });
    let id = user.map(|u| u.id.clone());
    Event::new(sources::ACCOUNTS, types::USER_LOGIN_FAILED, id.clone(), id, data)
}

pub fn deleted(user_id: &str) -> Event {
    user_event(types::USER_DELETED, user_id, json!({ "id": user_id }))
}
