//! Sessions without server-side state: the session cookie carries the user's access and refresh
//! tokens, signed (HMAC-SHA256) with the session key so it cannot be forged or altered. The cookie
//! is HttpOnly, so page scripts never see a token. CSRF tokens are an HMAC of the session id.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const SESSION_COOKIE: &str = "flotilla_session";
pub const FLASH_COOKIE: &str = "flotilla_flash";
/// Set by the page script: the browser's offset from UTC in minutes (not a secret).
pub const TZ_COOKIE: &str = "flotilla_tz";
/// The form field (or `X-CSRF-Token` header) that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// How long a signed-in session cookie lives (the refresh token's default lifetime).
pub const SIGNED_IN_MAX_AGE_SECS: i64 = 30 * 24 * 3600;

/// The session: an id (for CSRF) and, when signed in, the user and their tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<SignedIn>,
}

impl Session {
    /// A fresh anonymous session (new id: a sign-in or sign-out always changes it).
    pub fn anonymous() -> Self {
        Self { sid: random_id(), user: None }
    }

    pub fn signed_in(user: SignedIn) -> Self {
        Self { sid: random_id(), user: Some(user) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignedIn {
    pub id: String,
    pub name: String,
    pub email: String,
    /// Access token (JWT) and when it expires (unix seconds).
    pub access: String,
    pub exp: i64,
    pub refresh: String,
    /// The chat conversation shown on the task page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
}

/// A message shown once on the next page (after a redirect), with an optional undo.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flash {
    /// Bound to the session that set it.
    pub sid: String,
    pub message: String,
    /// The deleted task's fields, for "Undo".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<serde_json::Value>,
    /// The last chat turn (when the conversation history cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<serde_json::Value>,
}

/// The secret that signs cookies and CSRF tokens.
#[derive(Clone)]
pub struct Keys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// `secret`: the configured key, or `None` for a random one (sessions end when the process
    /// restarts, and replicas do not share them).
    pub fn new(secret: Option<&str>) -> Self {
        let secret = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Self { secret }
    }

    fn mac(&self, domain: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        // The domain separates cookie signatures from CSRF tokens made with the same key.
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        mac
    }

    /// `base64url(json).base64url(hmac)`.
    pub fn seal<T: Serialize>(&self, domain: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(&json);
        let mut mac = self.mac(domain);
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// The value if the signature is valid (checked in constant time).
    pub fn open<T: DeserializeOwned>(&self, domain: &str, sealed: &str) -> Option<T> {
        let (body, sig) = sealed.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.mac(domain);
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }

    pub fn csrf_token(&self, sid: &str) -> String {
        let mut mac = self.mac("csrf");
        mac.update(sid.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    pub fn csrf_ok(&self, sid: &str, token: &str) -> bool {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(token.trim()) else { return false };
        let mut mac = self.mac("csrf");
        mac.update(sid.as_bytes());
        mac.verify_slice(&sig).is_ok()
    }
}

pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value. `max_age`: `None` for a browser-session cookie, `Some(0)` to delete.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_and_reject_tampering() {
        let keys = Keys::new(Some("0123456789abcdef0123456789abcdef"));
        let s = Session::anonymous();
        let sealed = keys.seal("session", &s);
        assert_eq!(keys.open::<Session>("session", &sealed), Some(s.clone()));
        // Another domain, another key, or a changed body: refused.
        assert_eq!(keys.open::<Session>("flash", &sealed), None);
        assert_eq!(Keys::new(None).open::<Session>("session", &sealed), None);
        let (body, sig) = sealed.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sid":"x","user":null}"#);
        assert_eq!(keys.open::<Session>("session", &format!("{forged}.{sig}")), None);
        assert_eq!(keys.open::<Session>("session", body), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let keys = Keys::new(None);
        let t = keys.csrf_token("a");
        assert!(keys.csrf_ok("a", &t));
        assert!(!keys.csrf_ok("b", &t));
        assert!(!keys.csrf_ok("a", ""));
        assert!(!keys.csrf_ok("a", "not base64!"));
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut h = axum::http::HeaderMap::new();
        h.append(axum::http::header::COOKIE, "a=1; flotilla_tz=120".parse().unwrap());
        h.append(axum::http::header::COOKIE, "flotilla_session=abc.def".parse().unwrap());
        assert_eq!(cookie(&h, "flotilla_session"), Some("abc.def"));
        assert_eq!(cookie(&h, TZ_COOKIE), Some("120"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(set_cookie("n", "v", Some(0), true), "n=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0");
    }
}
