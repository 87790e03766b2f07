//! The accounts use cases: signup, login (throttled), refresh rotation with reuse detection,
//! logout, the caller's profile, and the administrators' user management.

use std::net::IpAddr;

use flotilla_runtime::FieldError;
use flotilla_runtime::auth::{AuthContext, Claims, Role};
use flotilla_runtime::db::{DbError, is_unique_violation};
use flotilla_runtime::ids::{is_id, new_id};
use flotilla_runtime::ratelimit::Limiter;
use flotilla_runtime::telemetry::names::RATE_LIMITED_TOTAL;
use flotilla_runtime::time::{now_ms, now_secs};
use serde::Serialize;

use flotilla_events::Event;

use crate::config::{Config, LOGIN_WINDOW};
use crate::error::{Error, Result};
use crate::events;
use crate::keys::Signer;
use crate::model::{AdminChange, AdminUpdate, User, UserRecord};
use crate::password;
use crate::policy;
use crate::store::Store;
use crate::tokens::{self, RefreshState, TokenResponse};

/// Seconds beyond an access token's lifetime to remember a revoked session (covers the
/// verifier's clock leeway).
const REVOCATION_MARGIN_SECS: i64 = 60;

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

/// A change of the caller's own profile.
#[derive(Debug, Default, Clone)]
pub struct ProfileChange {
    pub name: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
}

/// One page of the admin user list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The service state shared by every request.
pub struct Accounts {
    pub store: Store,
    pub cfg: Config,
    pub auth: AuthContext,
    pub signer: Signer,
    failures_by_account: Limiter,
    failures_by_ip: Limiter,
}

impl Accounts {
    /// Loads (or creates) the signing keys and publishes them into `auth.keys`.
    pub async fn new(cfg: Config, store: Store, auth: AuthContext) -> Result<Self> {
        let signer = Signer::load(&store, auth.keys.clone()).await?;
        Ok(Self {
            failures_by_account: Limiter::new(
                cfg.login_max_failures_per_account,
                LOGIN_WINDOW,
                cfg.shared.as_ref(),
                "login_account",
            ),
            failures_by_ip: Limiter::new(cfg.login_max_failures_per_ip, LOGIN_WINDOW, cfg.shared.as_ref(), "login_ip"),
            store,
            cfg,
            auth,
            signer,
        })
    }

    /// Starts a new session (refresh family) for `user` and returns its tokens; `event` is
    /// stored in the same transaction.
    async fn start_session(&self, user: &UserRecord, event: Option<&Event>) -> Result<TokenResponse> {
        let now = now_ms();
        let family = new_id();
        let refresh = tokens::issue_refresh(&user.id, &family, now, self.cfg.refresh_ttl_secs * 1000);
        match event {
            Some(event) => self.store.insert_session(&refresh.row, event).await?,
            None => self.store.insert_refresh_token(&refresh.row).await?,
        }
        Ok(self.token_response(user, &family, refresh.token))
    }

    fn token_response(&self, user: &UserRecord, family: &str, refresh_token: String) -> TokenResponse {
        let ttl = self.cfg.access_ttl_secs;
        let claims = tokens::access_claims(&user.id, user.role, family, now_secs(), ttl, &self.auth.policy);
        TokenResponse {
            access_token: self.signer.sign(&claims),
            token_type: "bearer",
            expires_in: ttl,
            refresh_token,
            user: User::from(user),
        }
    }

    /// Voids a session's access tokens in this process (until they would have expired anyway).
    fn revoke_sessions(&self, families: &[String]) {
        let until = now_secs() + self.cfg.access_ttl_secs + REVOCATION_MARGIN_SECS;
        for family in families {
            self.auth.revocations.revoke_session(family, until);
        }
    }

    /// Ends a session: its refresh tokens in the database and its access tokens.
    async fn end_family(&self, family: &str) -> Result<()> {
        self.store.revoke_family(family, now_ms()).await?;
        self.revoke_sessions(&[family.to_owned()]);
        Ok(())
    }

    pub async fn signup(&self, name: &str, email: &str, password: &str) -> Result<TokenResponse> {
        let mut errors = Vec::new();
        let name = policy::normalize_name(name).map_err(|e| errors.push(e)).ok();
        let email_key = policy::normalize_email_key(email);
        let email = policy::normalize_email(email).map_err(|e| errors.push(e)).ok();
        if let Err(e) = policy::check_password(password, &email_key) {
            errors.push(e);
        }
        let (Some(name), Some(email), true) = (name, email, errors.is_empty()) else {
            return Err(Error::Invalid(errors));
        };
        let password_hash = password::hash(password.to_owned()).await?;
        let now = now_ms();
        let user = UserRecord {
            id: new_id(),
            name,
            email,
            password_hash,
            role: Role::User,
            active: true,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_user(&user).await {
            Ok(()) => {}
            Err(DbError::Query(e)) if is_unique_violation(&e) => return Err(Error::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        // `insert_user` enqueued user.signed_up with the user.
        self.start_session(&user, None).await
    }

    pub async fn login(&self, email: &str, password: &str, client: Option<IpAddr>) -> Result<TokenResponse> {
        let account_key = policy::normalize_email_key(email);
        let ip_key = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let by_account = self.failures_by_account.peek(&account_key).await;
        let by_ip = self.failures_by_ip.peek(&ip_key).await;
        if !by_account.allowed || !by_ip.allowed {
            let scope = if by_account.allowed { "login_ip" } else { "login_account" };
            metrics::counter!(RATE_LIMITED_TOTAL, "scope" => scope).increment(1);
            let retry_after = [by_account, by_ip].iter().filter(|d| !d.allowed).map(|d| d.reset_secs).max();
            return Err(Error::TooManyAttempts { retry_after: retry_after.unwrap_or(1) });
        }
        let user = self.store.find_user_by_email(&account_key).await?;
        // Unknown emails verify against a dummy hash: same work, same answer as a wrong password.
        let verified = password::verify(password.to_owned(), user.as_ref().map(|u| u.password_hash.clone())).await?;
        let user = match user {
            Some(u) if verified => u,
            _ => {
                self.failures_by_account.hit(&account_key).await;
                self.failures_by_ip.hit(&ip_key).await;
                let event = events::login_failed(user.as_ref(), &account_key, "invalid_credentials", client);
                self.store.record_event(&event).await?;
                return Err(Error::InvalidCredentials);
            }
        };
        if !user.active {
            let event = events::login_failed(Some(&user), &account_key, "account_disabled", client);
            self.store.record_event(&event).await?;
            return Err(Error::AccountDisabled);
        }
        self.failures_by_account.reset(&account_key).await;
        self.start_session(&user, Some(&events::logged_in(&user, client))).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse> {
        let hash = tokens::hash_refresh_token(refresh_token);
        let Some(presented) = self.store.find_refresh_token(&hash).await? else {
            return Err(Error::InvalidRefreshToken);
        };
        let now = now_ms();
        match tokens::classify_refresh(&presented, now) {
            RefreshState::Dead => return Err(Error::InvalidRefreshToken),
            RefreshState::Reused => {
                tracing::warn!(user_id = %presented.user_id, family = %presented.family_id,
                    "refresh token reused; ending the session");
                self.end_family(&presented.family_id).await?;
                return Err(Error::InvalidRefreshToken);
            }
            RefreshState::Usable => {}
        }
        let user = match self.store.find_user(&presented.user_id).await? {
            Some(u) if u.active => u,
            _ => {
                self.end_family(&presented.family_id).await?;
                return Err(Error::InvalidRefreshToken);
            }
        };
        let next = tokens::issue_refresh(&user.id, &presented.family_id, now, self.cfg.refresh_ttl_secs * 1000);
        if !self.store.rotate_refresh_token(&presented.id, &next.row, now).await? {
            // Another request exchanged (or revoked) it first: a concurrent reuse.
            tracing::warn!(user_id = %presented.user_id, family = %presented.family_id,
                "refresh token used concurrently; ending the session");
            self.end_family(&presented.family_id).await?;
            return Err(Error::InvalidRefreshToken);
        }
        Ok(self.token_response(&user, &presented.family_id, next.token))
    }

    /// Ends the caller's session, and the session of `refresh_token` when it is the caller's.
    pub async fn logout(&self, caller: &Claims, refresh_token: Option<&str>) -> Result<()> {
        self.end_family(&caller.sid).await?;
        if let Some(token) = refresh_token {
            let found = self.store.find_refresh_token(&tokens::hash_refresh_token(token)).await?;
            if let Some(t) = found.filter(|t| t.user_id == caller.sub && t.family_id != caller.sid) {
                self.end_family(&t.family_id).await?;
            }
        }
        Ok(())
    }

    /// The caller's user record (401 when it was deleted, 403 when disabled).
    async fn caller(&self, caller: &Claims) -> Result<UserRecord> {
        match self.store.find_user(&caller.sub).await? {
            None => Err(Error::UserGone),
            Some(u) if !u.active => Err(Error::AccountDisabled),
            Some(u) => Ok(u),
        }
    }

    pub async fn me(&self, caller: &Claims) -> Result<User> {
        self.caller(caller).await.map(|u| User::from(&u))
    }

    /// Changes the caller's name and/or password. A new password needs the current one, follows
    /// the password policy, and ends every other session of the user.
    pub async fn update_me(&self, caller: &Claims, change: ProfileChange) -> Result<User> {
        let user = self.caller(caller).await?;
        let mut errors = Vec::new();
        let name = change.name.as_deref().map(policy::normalize_name).transpose().map_err(|e| errors.push(e)).ok();
        if let Some(p) = &change.password {
            if let Err(e) = policy::check_password(p, &user.email) {
                errors.push(e);
            }
            if change.current_password.is_none() {
                errors.push(FieldError::new("current_password", "is required to change the password"));
            }
        }
        let (Some(name), true) = (name, errors.is_empty()) else {
            return Err(Error::Invalid(errors));
        };
        let new_hash = match (change.password, change.current_password) {
            (Some(new), Some(current)) => {
                // Guessing the current password with a stolen access token counts as failed logins.
                let decision = self.failures_by_account.peek(&user.email).await;
                if !decision.allowed {
                    return Err(Error::TooManyAttempts { retry_after: decision.reset_secs });
                }
                if !password::verify(current, Some(user.password_hash.clone())).await? {
                    self.failures_by_account.hit(&user.email).await;
                    return Err(Error::WrongCurrentPassword);
                }
                Some(password::hash(new).await?)
            }
            _ => None,
        };
        if name.is_none() && new_hash.is_none() {
            return Ok(User::from(&user));
        }
        let updated = self
            .store
            .update_profile(&user.id, name.as_deref(), new_hash.as_deref(), now_ms())
            .await?
            .ok_or(Error::UserGone)?;
        if new_hash.is_some() {
            let ended = self.store.revoke_user_families(&user.id, &caller.sid, now_ms()).await?;
            self.revoke_sessions(&ended);
        }
        Ok(User::from(&updated))
    }

    /// Deletes the caller, their refresh tokens, and voids their access tokens.
    pub async fn delete_me(&self, caller: &Claims) -> Result<()> {
        if !self.store.delete_user(&caller.sub).await? {
            return Err(Error::UserGone);
        }
        self.auth.revocations.revoke_user(&caller.sub);
        // `delete_user` enqueued user.deleted: the tasks service deletes the user's tasks.
        Ok(())
    }

    /// Users in creation order, `limit` (1–100, default 50) per page after `cursor` (a user id).
    pub async fn list_users(&self, limit: Option<i64>, cursor: Option<&str>) -> Result<UserPage> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        let mut errors = Vec::new();
        if !(1..=MAX_PAGE).contains(&limit) {
            errors.push(FieldError::new("limit", format!("must be between 1 and {MAX_PAGE}")));
        }
        let cursor = cursor.filter(|c| !c.is_empty());
        if cursor.is_some_and(|c| !is_id(c)) {
            errors.push(FieldError::new("cursor", "is not a cursor returned by this endpoint"));
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let mut users = self.store.list_users(cursor.unwrap_or(""), limit + 1).await?;
        let next_cursor = if users.len() as i64 > limit {
            users.truncate(limit as usize);
            users.last().map(|u| u.id.clone())
        } else {
            None
        };
        Ok(UserPage { users: users.iter().map(User::from).collect(), next_cursor })
    }

    /// An administrator changes a user's role and/or active flag.
    pub async fn admin_update(&self, id: &str, role: Option<&str>, active: Option<bool>) -> Result<User> {
        if !is_id(id) {
            return Err(Error::NotFound);
        }
        let role = match role {
            None => None,
            Some(r) => Some(Role::parse(r).ok_or_else(|| Error::field("role", "must be \"user\" or \"admin\""))?),
        };
        let change = AdminChange { role, active };
        match self.store.admin_update_user(id, change, now_ms()).await? {
            AdminUpdate::NotFound => Err(Error::NotFound),
            AdminUpdate::LastAdmin => Err(Error::LastAdmin),
            AdminUpdate::Updated { user, revoked_families } => {
                self.revoke_sessions(&revoked_families);
                match active {
                    Some(false) => self.auth.revocations.revoke_user(&user.id),
                    Some(true) => self.auth.revocations.clear_user(&user.id),
                    None => {}
                }
                Ok(User::from(&user))
            }
        }
    }
}

/// What [`ensure_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// A user with that email existed; it is now an administrator.
    AlreadyExists,
}

/// Creates an administrator, or promotes the existing user with that email (CLI
/// `flotilla admin create` and the FLOTILLA_ADMIN_* bootstrap). The password policy applies.
pub async fn ensure_admin(store: &Store, email: &str, name: &str, password: &str) -> Result<Outcome> {
    let mut errors = Vec::new();
    let email_key = policy::normalize_email_key(email);
    let email = policy::normalize_email(email).map_err(|e| errors.push(e)).ok();
    let name = policy::normalize_name(name).map_err(|e| errors.push(e)).ok();
    if let Err(e) = policy::check_password(password, &email_key) {
        errors.push(e);
    }
    let (Some(email), Some(name), true) = (email, name, errors.is_empty()) else {
        return Err(Error::Invalid(errors));
    };
    if let Some(existing) = store.find_user_by_email(&email).await? {
        if existing.role != Role::Admin {
            promote(store, &email).await?;
        }
        return Ok(Outcome::AlreadyExists);
    }
    let now = now_ms();
    let user = UserRecord {
        id: new_id(),
        name,
        email,
        password_hash: password::hash(password.to_owned()).await?,
        role: Role::Admin,
        active: true,
        created_at: now,
        updated_at: now,
    };
    match store.insert_user(&user).await {
        Ok(()) => Ok(Outcome::Created),
        Err(DbError::Query(e)) if is_unique_violation(&e) => {
            promote(store, &user.email).await?;
            Ok(Outcome::AlreadyExists)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the user with this email an administrator (CLI `flotilla admin promote`). Sessions of a
/// running accounts service keep their old role until they refresh.
pub async fn promote(store: &Store, email: &str) -> Result<User> {
    let email = policy::normalize_email_key(email);
    match store.set_role_by_email(&email, Role::Admin, now_ms()).await? {
        Some(user) => Ok(User::from(&user)),
        None => Err(Error::NotFound),
    }
}
