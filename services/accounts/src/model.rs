//! The records the store reads and writes, and their public JSON forms.

use flotilla_runtime::auth::Role;
use flotilla_runtime::time::format_ms;
use serde::Serialize;

/// A user as stored (including the password hash, which never leaves the service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    /// Normalised: trimmed and lowercased.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The public JSON of a user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct User {
    #[schema(example = "0190a0b0-0000-7000-8000-000000000000")]
    pub id: String,
    pub name: String,
    #[schema(format = Email)]
    pub email: String,
    #[schema(schema_with = crate::openapi::role_schema)]
    pub role: Role,
    /// `false`: disabled by an administrator (cannot sign in).
    pub active: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&UserRecord> for User {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            role: u.role,
            active: u.active,
            created_at: format_ms(u.created_at),
            updated_at: format_ms(u.updated_at),
        }
    }
}

/// A refresh token about to be stored (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub family_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub id: String,
    pub user_id: String,
    pub family_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A stored signing key (`private_key`: base64 of the 32-byte Ed25519 seed).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub private_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("private_key", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// What an administrator's change to a user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminUpdate {
    NotFound,
    /// Refused: no active administrator would remain.
    LastAdmin,
    /// Applied; `revoked_families` are the sessions ended by it (role change or deactivation).
    Updated {
        user: UserRecord,
        revoked_families: Vec<String>,
    },
}

/// A requested change of role and/or active flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdminChange {
    pub role: Option<Role>,
    pub active: Option<bool>,
}
