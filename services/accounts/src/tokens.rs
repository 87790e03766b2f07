//! Token rules: opaque refresh tokens (random, stored hashed), what a presented refresh token
//! means, and the claims of access tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_runtime::auth::{Claims, Role, TokenPolicy};
use flotilla_runtime::ids::new_id;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{NewRefreshToken, RefreshRecord, User};

/// A fresh refresh token: 32 random bytes, base64url without padding.
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored for a refresh token: the hex SHA-256 of its text.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A refresh token ready to hand out, and its row.
pub struct IssuedRefresh {
    pub token: String,
    pub row: NewRefreshToken,
}

/// Makes a refresh token for `user_id` in `family_id` valid for `ttl_ms` from `now_ms`.
pub fn issue_refresh(user_id: &str, family_id: &str, now_ms: i64, ttl_ms: i64) -> IssuedRefresh {
    let token = new_refresh_token();
    let row = NewRefreshToken {
        id: new_id(),
        token_hash: hash_refresh_token(&token),
        user_id: user_id.to_owned(),
        family_id: family_id.to_owned(),
        created_at: now_ms,
        expires_at: now_ms.saturating_add(ttl_ms),
    };
    IssuedRefresh { token, row }
}

/// What presenting a stored refresh token means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshState {
    /// Valid: rotate it.
    Usable,
    /// Already exchanged once: someone replays it; end the whole session (family).
    Reused,
    /// Revoked (logout, reuse, admin action) or expired: refuse, change nothing.
    Dead,
}

/// Decides what a presented refresh token means at `now_ms`. Revocation wins over reuse (the family
/// is already ended); reuse wins over expiry (a replay is a signal whatever the token's age).
pub fn classify_refresh(token: &RefreshRecord, now_ms: i64) -> RefreshState {
    if token.revoked_at.is_some() {
        RefreshState::Dead
    } else if token.used_at.is_some() {
        RefreshState::Reused
    } else if token.expires_at <= now_ms {
        RefreshState::Dead
    } else {
        RefreshState::Usable
    }
}

/// The claims of an access token for `user_id` in session `sid`, issued at `now_secs`.
pub fn access_claims(
    user_id: &str,
    role: Role,
    sid: &str,
    now_secs: i64,
    ttl_secs: i64,
    policy: &TokenPolicy,
) -> Claims {
    Claims {
        sub: user_id.to_owned(),
        role,
        iat: now_secs,
        exp: now_secs.saturating_add(ttl_secs),
        iss: policy.issuer.clone(),
        aud: policy.audience.clone(),
        jti: new_id(),
        sid: sid.to_owned(),
    }
}

/// The body of signup, login and refresh responses.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(schema_with = crate::openapi::bearer_token_type)]
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// Exchange at `/api/auth/refresh` for a new pair (once).
    pub refresh_token: String,
    pub user: User,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(used: Option<i64>, revoked: Option<i64>, expires_at: i64) -> RefreshRecord {
        RefreshRecord {
            id: "t".into(),
            user_id: "u".into(),
            family_id: "f".into(),
            created_at: 0,
            expires_at,
            used_at: used,
            revoked_at: revoked,
        }
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "32 bytes in unpadded base64url");
        let h = hash_refresh_token(&a);
        assert_eq!(h.len(), 64);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(h, hash_refresh_token(&a));
        assert_eq!(
            hash_refresh_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "SHA-256 test vector"
        );
    }

    #[test]
    fn refresh_classification() {
        assert_eq!(classify_refresh(&record(None, None, 100), 50), RefreshState::Usable);
        assert_eq!(classify_refresh(&record(None, None, 100), 100), RefreshState::Dead);
        assert_eq!(classify_refresh(&record(Some(10), None, 100), 50), RefreshState::Reused);
        assert_eq!(classify_refresh(&record(Some(10), None, 100), 500), RefreshState::Reused);
        assert_eq!(classify_refresh(&record(Some(10), Some(20), 100), 50), RefreshState::Dead);
        assert_eq!(classify_refresh(&record(None, Some(20), 100), 50), RefreshState::Dead);
    }

    #[test]
    fn access_claims_follow_the_policy() {
        let policy = TokenPolicy { issuer: "iss".into(), audience: "aud".into() };
        let c = access_claims("u1", Role::Admin, "fam", 1000, 900, &policy);
        assert_eq!((c.sub.as_str(), c.role, c.sid.as_str()), ("u1", Role::Admin, "fam"));
        assert_eq!((c.iat, c.exp), (1000, 1900));
        assert_eq!((c.iss.as_str(), c.aud.as_str()), ("iss", "aud"));
        assert!(flotilla_runtime::ids::is_id(&c.jti));
    }
}
