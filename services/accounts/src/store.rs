//! All SQL of the accounts service: one method per storage operation.
//!
//! Portable SQL through sqlx's `Any` driver: `$n` placeholders, BIGINT millisecond timestamps,
//! TEXT UUIDv7 ids. `users.active` is a BOOLEAN on PostgreSQL and a 0/1 INTEGER on SQLite, so it
//! is decoded by [`row_bool`]. Multi-statement operations run in one transaction on the write pool.

use flotilla_events::outbox::RelayNotifier;
use flotilla_events::{Event, enqueue};
use flotilla_runtime::auth::Role;
use flotilla_runtime::db::{Backend, Db, DbError};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::model::{AdminChange, AdminUpdate, NewRefreshToken, RefreshRecord, StoredKey, UserRecord};
use crate::policy::leaves_no_admin;

type DbResult<T> = Result<T, DbError>;

/// The accounts database. Writes that change a user enqueue their event (see [`crate::events`])
/// in the same transaction and wake the outbox relay after the commit.
#[derive(Clone)]
pub struct Store {
    db: Db,
    notifier: RelayNotifier,
}

fn row_bool(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<bool, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => row.try_get::<i64, _>(col).map(|n| n != 0),
    }
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "role".into(),
        source: format!("unknown role {role:?}").into(),
    })?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role,
        active: row_bool(row, "active")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn refresh_from_row(row: &AnyRow) -> Result<RefreshRecord, sqlx::Error> {
    Ok(RefreshRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        family_id: row.try_get("family_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<StoredKey, sqlx::Error> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        private_key: row.try_get("private_key")?,
        created_at: row.try_get("created_at")?,
        retired_at: row.try_get("retired_at")?,
    })
}

// The column list is spelled out in each statement because `sqlx::query` takes `&'static str`.
macro_rules! select_user {
    ($where:literal) => {
        concat!("SELECT id, name, email, password_hash, role, active, created_at, updated_at FROM users ", $where)
    };
}

impl Store {
    /// A store whose relay wake-ups go nowhere (the relay, if any, still polls): CLI, tests.
    pub fn new(db: Db) -> Store {
        Store { db, notifier: RelayNotifier::default() }
    }

    /// A store that wakes the outbox relay after each commit that enqueued an event.
    pub fn with_notifier(db: Db, notifier: RelayNotifier) -> Store {
        Store { db, notifier }
    }

    /// Enqueues one event on its own (an event that goes with no other write, e.g. a failed
    /// login).
    pub async fn record_event(&self, event: &Event) -> DbResult<()> {
        let fut = async move {
            let mut tx = self.db.begin().await?;
            enqueue(&mut tx, event).await?;
            tx.commit().await
        };
        self.db.timed("record_event", fut).await?;
        self.notifier.notify();
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    // ---- users ----

    /// Inserts a user and enqueues `user.signed_up`. A duplicate email fails with a unique
    /// violation (`flotilla_runtime::db::is_unique_violation`).
    pub async fn insert_user(&self, u: &UserRecord) -> DbResult<()> {
        let event = crate::events::signed_up(u);
        let q = sqlx::query(
            "INSERT INTO users (id, name, email, password_hash, role, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.role.as_str())
        .bind(u.active)
        .bind(u.created_at)
        .bind(u.updated_at);
        let fut = async move {
            let mut tx = self.db.begin().await?;
            q.execute(&mut *tx).await?;
            enqueue(&mut tx, &event).await?;
            tx.commit().await
        };
        self.db.timed("insert_user", fut).await?;
        self.notifier.notify();
        Ok(())
    }

    pub async fn find_user_by_email(&self, email: &str) -> DbResult<Option<UserRecord>> {
        let q = sqlx::query(select_user!("WHERE email = $1")).bind(email);
        let row = self.db.timed("find_user_by_email", q.fetch_optional(self.db.read())).await?;
        row.as_ref().map(user_from_row).transpose().map_err(DbError::Query)
    }

    pub async fn find_user(&self, id: &str) -> DbResult<Option<UserRecord>> {
        let q = sqlx::query(select_user!("WHERE id = $1")).bind(id);
        let row = self.db.timed("find_user", q.fetch_optional(self.db.read())).await?;
        row.as_ref().map(user_from_row).transpose().map_err(DbError::Query)
    }

    /// Users ordered by id (creation order), those after `after` (`""`: from the start).
    pub async fn list_users(&self, after: &str, limit: i64) -> DbResult<Vec<UserRecord>> {
        let q = sqlx::query(select_user!("WHERE id > $1 ORDER BY id LIMIT $2")).bind(after).bind(limit);
        let rows = self.db.timed("list_users", q.fetch_all(self.db.read())).await?;
        rows.iter().map(user_from_row).collect::<Result<_, _>>().map_err(DbError::Query)
    }

    /// Changes the name and/or password hash; `None` keeps the value. Returns the updated user.
    pub async fn update_profile(
        &self,
        id: &str,
        name: Option<&str>,
        password_hash: Option<&str>,
        now: i64,
    ) -> DbResult<Option<UserRecord>> {
        let q = sqlx::query(
            "UPDATE users SET name = COALESCE($1, name), password_hash = COALESCE($2, password_hash), \
             updated_at = $3 WHERE id = $4",
        )
        .bind(name.map(str::to_owned))
        .bind(password_hash.map(str::to_owned))
        .bind(now)
        .bind(id);
        let done = self.db.timed("update_profile", q.execute(self.db.write())).await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.find_user(id).await
    }

    /// Sets the role of the user with this email; returns the updated user.
    pub async fn set_role_by_email(&self, email: &str, role: Role, now: i64) -> DbResult<Option<UserRecord>> {
        let q = sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE email = $3")
            .bind(role.as_str())
            .bind(now)
            .bind(email);
        let done = self.db.timed("set_role_by_email", q.execute(self.db.write())).await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.find_user_by_email(email).await
    }

    /// An administrator's change of role/active, atomically refused when it would leave no
    /// active administrator. A role change or a deactivation also revokes every refresh family of
    /// the user (returned, so the caller can revoke those sessions' access tokens too).
    pub async fn admin_update_user(&self, id: &str, change: AdminChange, now: i64) -> DbResult<AdminUpdate> {
        let backend = self.db.backend;
        let fut = async move {
            let mut tx = self.db.begin().await?;
            if backend == Backend::Postgres {
                // Serialises concurrent changes to administrators (SQLite has a single writer).
                sqlx::query("SELECT id FROM users WHERE role = 'admin' AND active = TRUE ORDER BY id FOR UPDATE")
                    .fetch_all(&mut *tx)
                    .await?;
            }
            let row = sqlx::query(select_user!("WHERE id = $1")).bind(id).fetch_optional(&mut *tx).await?;
            let Some(user) = row.as_ref().map(user_from_row).transpose()? else {
                return Ok(AdminUpdate::NotFound);
            };
            let others: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = TRUE AND id <> $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            if leaves_no_admin(&user, change, others) {
                return Ok(AdminUpdate::LastAdmin);
            }
            let role = change.role.unwrap_or(user.role);
            let active = change.active.unwrap_or(user.active);
            sqlx::query("UPDATE users SET role = $1, active = $2, updated_at = $3 WHERE id = $4")
                .bind(role.as_str())
                .bind(active)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let ends_sessions = role != user.role || (user.active && !active);
            let revoked_families =
                if ends_sessions { revoke_families_in(&mut tx, id, "", now).await? } else { Vec::new() };
            tx.commit().await?;
            Ok(AdminUpdate::Updated { user: UserRecord { role, active, updated_at: now, ..user }, revoked_families })
        };
        self.db.timed("admin_update_user", fut).await
    }

    /// Deletes the user and its refresh tokens and enqueues `user.deleted`; false (and nothing
    /// written) when there was no such user.
    pub async fn delete_user(&self, id: &str) -> DbResult<bool> {
        let fut = async move {
            let mut tx = self.db.begin().await?;
            sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
            let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            enqueue(&mut tx, &crate::events::deleted(id)).await?;
            tx.commit().await?;
            Ok(true)
        };
        let deleted = self.db.timed("delete_user", fut).await?;
        if deleted {
            self.notifier.notify();
        }
        Ok(deleted)
    }

    pub async fn count_users(&self) -> DbResult<i64> {
        let q = sqlx::query_scalar("SELECT COUNT(*) FROM users");
        self.db.timed("count_users", q.fetch_one(self.db.read())).await
    }

    // ---- refresh tokens ----

    pub async fn insert_refresh_token(&self, t: &NewRefreshToken) -> DbResult<()> {
        let q = insert_refresh_query(t);
        self.db.timed("insert_refresh_token", q.execute(self.db.write())).await.map(|_| ())
    }

    /// Stores a new session's first refresh token together with its event (`user.logged_in`).
    pub async fn insert_session(&self, t: &NewRefreshToken, event: &Event) -> DbResult<()> {
        let fut = async move {
            let mut tx = self.db.begin().await?;
            insert_refresh_query(t).execute(&mut *tx).await?;
            enqueue(&mut tx, event).await?;
            tx.commit().await
        };
        self.db.timed("insert_session", fut).await?;
        self.notifier.notify();
        Ok(())
    }

    pub async fn find_refresh_token(&self, token_hash: &str) -> DbResult<Option<RefreshRecord>> {
        let q = sqlx::query(
            "SELECT id, user_id, family_id, created_at, expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash);
        let row = self.db.timed("find_refresh_token", q.fetch_optional(self.db.read())).await?;
        row.as_ref().map(refresh_from_row).transpose().map_err(DbError::Query)
    }

    /// Exchanges token `old_id` for `new` in one transaction: marks the old one used only if it
    /// is still unused and unrevoked, and stores the new one only then. False when another request
    /// already used (or revoked) it: exactly one of concurrent exchanges wins.
    pub async fn rotate_refresh_token(&self, old_id: &str, new: &NewRefreshToken, now: i64) -> DbResult<bool> {
        let fut = async move {
            let mut tx = self.db.begin().await?;
            let done = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(old_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            insert_refresh_query(new).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        };
        self.db.timed("rotate_refresh_token", fut).await
    }

    /// Revokes every token of a family; returns how many were still unrevoked.
    pub async fn revoke_family(&self, family_id: &str, now: i64) -> DbResult<u64> {
        let q = sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(family_id);
        self.db.timed("revoke_family", q.execute(self.db.write())).await.map(|r| r.rows_affected())
    }

    /// Revokes every refresh family of the user except `keep_family` (`""`: none kept); returns
    /// the families that had unrevoked tokens.
    pub async fn revoke_user_families(&self, user_id: &str, keep_family: &str, now: i64) -> DbResult<Vec<String>> {
        let fut = async move {
            let mut tx = self.db.begin().await?;
            let families = revoke_families_in(&mut tx, user_id, keep_family, now).await?;
            tx.commit().await?;
            Ok(families)
        };
        self.db.timed("revoke_user_families", fut).await
    }

    // ---- signing keys ----

    /// Non-retired signing keys, oldest first (the last one signs).
    pub async fn signing_keys(&self) -> DbResult<Vec<StoredKey>> {
        let q = sqlx::query(
            "SELECT kid, private_key, created_at, retired_at FROM signing_keys \
             WHERE retired_at IS NULL ORDER BY created_at, kid",
        );
        let rows = self.db.timed("signing_keys", q.fetch_all(self.db.read())).await?;
        rows.iter().map(key_from_row).collect::<Result<_, _>>().map_err(DbError::Query)
    }

    pub async fn insert_signing_key(&self, k: &StoredKey) -> DbResult<()> {
        let q =
            sqlx::query("INSERT INTO signing_keys (kid, private_key, created_at, retired_at) VALUES ($1, $2, $3, $4)")
                .bind(&k.kid)
                .bind(&k.private_key)
                .bind(k.created_at)
                .bind(k.retired_at);
        self.db.timed("insert_signing_key", q.execute(self.db.write())).await.map(|_| ())
    }

    /// Retires every non-retired key except `keep_a` and `keep_b`; returns how many.
    pub async fn retire_signing_keys_except(&self, keep_a: &str, keep_b: &str, now: i64) -> DbResult<u64> {
        let q =
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND kid <> $2 AND kid <> $3")
                .bind(now)
                .bind(keep_a)
                .bind(keep_b);
        self.db.timed("retire_signing_keys", q.execute(self.db.write())).await.map(|r| r.rows_affected())
    }
}

fn insert_refresh_query(t: &NewRefreshToken) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&t.id)
    .bind(&t.token_hash)
    .bind(&t.user_id)
    .bind(&t.family_id)
    .bind(t.created_at)
    .bind(t.expires_at)
}

async fn revoke_families_in(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    keep_family: &str,
    now: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let families: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT family_id FROM refresh_tokens \
         WHERE user_id = $1 AND family_id <> $2 AND revoked_at IS NULL ORDER BY family_id",
    )
    .bind(user_id)
    .bind(keep_family)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND family_id <> $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(keep_family)
    .execute(&mut **tx)
    .await?;
    Ok(families)
}
