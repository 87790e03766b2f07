//! All SQL of the tasks service: one method per operation, portable across SQLite and PostgreSQL
//! (sqlx `Any`; `$n` placeholders; BIGINT milliseconds; TEXT ids).

use flotilla_events::enqueue;
use flotilla_events::event::types;
use flotilla_events::outbox::RelayNotifier;
use flotilla_runtime::db::{Db, DbError};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Arguments, AssertSqlSafe, Encode, Row, Type};

use crate::cursor::{Cursor, Order, Sort, SortKey};
use crate::events::{task_deleted, task_event};
use crate::model::{Priority, Recurrence, Series, Task};
use crate::query::{ListQuery, Status, like_pattern};

/// The columns of a task, as [`task_from_row`] reads them. `completed` is read through CASE:
/// sqlx's `Any` driver rejects columns declared BOOLEAN on SQLite ("Any driver does not support
/// the SQLite type Bool"), while an expression comes back as an integer on both engines.
macro_rules! task_columns {
    () => {
        "id, user_id, title, description, CASE WHEN completed THEN 1 ELSE 0 END AS completed, completed_at, priority, tags, due_at, remind_at, recurrence, \
         created_at, updated_at, version, series_id, occurrence"
    };
}

/// The idempotency record of a create: who, which key, which request body (sha256 hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// What [`Store::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The task was inserted.
    Created(Task),
    /// The key was used before with the same body: the task it created (nothing new was stored).
    Replayed(Task),
    /// The key was used before with a different body.
    KeyReused,
    /// The key was used before with the same body, but its task has been deleted since.
    OriginalGone,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub tasks: Vec<Task>,
    pub next_cursor: Option<String>,
}

/// The storage API of the tasks service. Every write also enqueues its event in the outbox, in
/// the same transaction (see [`crate::events`]), and wakes the relay after the commit.
#[derive(Clone)]
pub struct Store {
    db: Db,
    notifier: RelayNotifier,
}

/// The type of the event of a change from `current` to `next`.
pub fn change_type(current: &Task, next: &Task) -> &'static str {
    match (current.completed, next.completed) {
        (false, true) => types::TASK_COMPLETED,
        (true, false) => types::TASK_REOPENED,
        _ => types::TASK_UPDATED,
    }
}

impl Store {
    /// A store whose relay wake-ups go nowhere (the relay still polls): tests, CLI.
    pub fn new(db: Db) -> Self {
        Self { db, notifier: RelayNotifier::default() }
    }

    /// A store that wakes the outbox relay after each commit.
    pub fn with_notifier(db: Db, notifier: RelayNotifier) -> Self {
        Self { db, notifier }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn notifier(&self) -> &RelayNotifier {
        &self.notifier
    }

    /// Inserts `task` (and its tags) and, with an idempotency key, records the key in the same
    /// transaction. A key seen before is resolved without inserting anything; two concurrent
    /// creates with one key make exactly one task (the key's primary key decides).
    pub async fn create(&self, task: &Task, idem: Option<&IdempotencyKey>) -> Result<CreateOutcome, DbError> {
        let inserted = self
            .db
            .timed("create_task", async {
                let mut tx = self.db.begin().await?;
                if let Some(k) = idem {
                    let claimed = sqlx::query(
                        "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, task_id, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, idem_key) DO NOTHING",
                    )
                    .bind(&task.user_id)
                    .bind(&k.key)
                    .bind(&k.request_hash)
                    .bind(&task.id)
                    .bind(task.created_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if claimed == 0 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                insert_task(&mut tx, task, false).await?;
                insert_tags(&mut tx, task).await?;
                enqueue(&mut tx, &task_event(types::TASK_CREATED, task)).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        if inserted {
            self.notifier.notify();
            return Ok(CreateOutcome::Created(task.clone()));
        }
        // The key exists (committed: the conflicting insert waited for it). Read it back.
        let Some(k) = idem else { return Ok(CreateOutcome::Created(task.clone())) };
        let row = self
            .db
            .timed(
                "get_idempotency_key",
                sqlx::query("SELECT request_hash, task_id FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2")
                    .bind(&task.user_id)
                    .bind(&k.key)
                    .fetch_optional(self.db.write()),
            )
            .await?;
        let Some(row) = row else { return Ok(CreateOutcome::OriginalGone) };
        let hash: String = row.try_get("request_hash")?;
        let task_id: String = row.try_get("task_id")?;
        if hash != k.request_hash {
            return Ok(CreateOutcome::KeyReused);
        }
        Ok(match self.get(&task.user_id, &task_id).await? {
            Some(original) => CreateOutcome::Replayed(original),
            None => CreateOutcome::OriginalGone,
        })
    }

    /// The task `id` of `user_id`, if it exists (another user's task is `None`).
    pub async fn get(&self, user_id: &str, id: &str) -> Result<Option<Task>, DbError> {
        let row = self
            .db
            .timed(
                "get_task",
                sqlx::query(concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1 AND user_id = $2"))
                    .bind(id)
                    .bind(user_id)
                    .fetch_optional(self.db.read()),
            )
            .await?;
        row.as_ref().map(task_from_row).transpose().map_err(DbError::Query)
    }

    /// Writes `next` over `current` if the stored task is still at `current.version` (compare and
    /// swap). Returns false when it is not (changed or deleted meanwhile): nothing was written.
    pub async fn update(&self, current: &Task, next: &Task) -> Result<bool, DbError> {
        self.db
            .timed("update_task", async {
                let mut tx = self.db.begin().await?;
                let n = sqlx::query(
                    "UPDATE tasks SET title = $1, title_key = $2, description = $3, description_key = $4, \
                     completed = $5, completed_at = $6, priority = $7, tags = $8, due_at = $9, remind_at = $10, \
                     recurrence = $11, updated_at = $12, version = $13 \
                     WHERE id = $14 AND user_id = $15 AND version = $16",
                )
                .bind(&next.title)
                .bind(next.title_key())
                .bind(next.description.as_deref())
                .bind(next.description_key())
                .bind(next.completed)
                .bind(next.completed_at)
                .bind(next.priority.rank())
                .bind(tags_json(&next.tags))
                .bind(next.due_at)
                .bind(next.remind_at)
                .bind(recurrence_json(next.recurrence.as_ref()))
                .bind(next.updated_at)
                .bind(next.version)
                .bind(&current.id)
                .bind(&current.user_id)
                .bind(current.version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                if next.tags != current.tags {
                    sqlx::query("DELETE FROM task_tags WHERE task_id = $1").bind(&next.id).execute(&mut *tx).await?;
                    insert_tags(&mut tx, next).await?;
                }
                if next.remind_at != current.remind_at {
                    // A new reminder time is a new reminder: the scheduler emits it again.
                    sqlx::query("UPDATE tasks SET reminded_at = NULL WHERE id = $1")
                        .bind(&next.id)
                        .execute(&mut *tx)
                        .await?;
                }
                enqueue(&mut tx, &task_event(change_type(current, next), next)).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await
            .inspect(|&written| {
                if written {
                    self.notifier.notify();
                }
            })
    }

    /// Deletes the task; with `expected_version`, only if it is still at that version. Returns
    /// whether a task was deleted.
    pub async fn delete(&self, user_id: &str, id: &str, expected_version: Option<i64>) -> Result<bool, DbError> {
        self.db
            .timed("delete_task", async {
                let mut tx = self.db.begin().await?;
                let n = match expected_version {
                    Some(v) => sqlx::query("DELETE FROM tasks WHERE id = $1 AND user_id = $2 AND version = $3")
                        .bind(id)
                        .bind(user_id)
                        .bind(v)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                    None => sqlx::query("DELETE FROM tasks WHERE id = $1 AND user_id = $2")
                        .bind(id)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                };
                if n == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // The foreign key cascades too; deleting explicitly does not depend on it.
                sqlx::query("DELETE FROM task_tags WHERE task_id = $1").bind(id).execute(&mut *tx).await?;
                enqueue(&mut tx, &task_deleted(user_id, id)).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await
            .inspect(|&deleted| {
                if deleted {
                    self.notifier.notify();
                }
            })
    }

    /// One page of the user's tasks matching `q`, in `q.sort`/`q.order` with ties broken by id,
    /// after `q.cursor`. `now` decides what is overdue.
    pub async fn list(&self, user_id: &str, q: &ListQuery, now: i64) -> Result<Page, DbError> {
        let key = sort_expr(q.sort, q.order);
        let mut sql = SqlBuilder::new(concat!("SELECT ", task_columns!(), " FROM tasks WHERE user_id = "));
        sql.bind(user_id.to_owned());
        match q.status {
            Status::All => {}
            Status::Pending => sql.push(" AND completed = FALSE"),
            Status::Completed => sql.push(" AND completed = TRUE"),
        }
        if let Some(p) = q.priority {
            sql.push(" AND priority = ");
            sql.bind(p.rank());
        }
        if let Some(tag) = &q.tag {
            sql.push(" AND EXISTS (SELECT 1 FROM task_tags tt WHERE tt.task_id = tasks.id AND tt.user_id = ");
            sql.bind(user_id.to_owned());
            sql.push(" AND tt.tag = ");
            sql.bind(tag.clone());
            sql.push(")");
        }
        if let Some(text) = &q.q {
            let pattern = like_pattern(text);
            sql.push(" AND (title_key LIKE ");
            sql.bind(pattern.clone());
            sql.push(" ESCAPE '\\' OR description_key LIKE ");
            sql.bind(pattern);
            sql.push(" ESCAPE '\\')");
        }
        if let Some(t) = q.due_before {
            sql.push(" AND due_at < ");
            sql.bind(t);
        }
        if let Some(t) = q.due_after {
            sql.push(" AND due_at > ");
            sql.bind(t);
        }
        match q.overdue {
            None => {}
            Some(true) => {
                sql.push(" AND completed = FALSE AND due_at < ");
                sql.bind(now);
            }
            Some(false) => {
                sql.push(" AND (completed = TRUE OR due_at IS NULL OR due_at >= ");
                sql.bind(now);
                sql.push(")");
            }
        }
        if let Some(c) = &q.cursor {
            let after = match q.order {
                Order::Asc => " > ",
                Order::Desc => " < ",
            };
            sql.push(" AND (");
            sql.push(key);
            sql.push(after);
            sql.bind_key(&c.key);
            sql.push(" OR (");
            sql.push(key);
            sql.push(" = ");
            sql.bind_key(&c.key);
            sql.push(" AND id");
            sql.push(after);
            sql.bind(c.id.clone());
            sql.push("))");
        }
        let dir = match q.order {
            Order::Asc => " ASC",
            Order::Desc => " DESC",
        };
        sql.push(" ORDER BY ");
        sql.push(key);
        sql.push(dir);
        sql.push(", id");
        sql.push(dir);
        sql.push(" LIMIT ");
        sql.bind(q.limit + 1);

        let (text, args) = sql.finish();
        let rows =
            self.db.timed("list_tasks", sqlx::query_with(AssertSqlSafe(text), args).fetch_all(self.db.read())).await?;
        let mut tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>, _>>()?;
        let more = tasks.len() as i64 > q.limit;
        tasks.truncate(q.limit as usize);
        let next_cursor = if more { tasks.last().map(|t| Cursor::after(t, q.sort, q.order).encode()) } else { None };
        Ok(Page { tasks, next_cursor })
    }
}

/// The SQL expression a listing sorts by (static text chosen by the enum, never user input).
/// Tasks without a due date sort last in both directions.
fn sort_expr(sort: Sort, order: Order) -> &'static str {
    match (sort, order) {
        (Sort::Created, _) => "created_at",
        (Sort::Due, Order::Asc) => "COALESCE(due_at, 9223372036854775807)",
        (Sort::Due, Order::Desc) => "COALESCE(due_at, -9223372036854775807)",
        (Sort::Priority, _) => "priority",
        (Sort::Title, _) => "title_key",
    }
}

/// A query assembled from static SQL fragments and bound values with `$n` placeholders.
/// (`sqlx::QueryBuilder<Any>` writes `?` placeholders, which PostgreSQL rejects.)
struct SqlBuilder {
    sql: String,
    args: AnyArguments,
    n: usize,
}

impl SqlBuilder {
    fn new(start: &'static str) -> Self {
        Self { sql: start.to_owned(), args: AnyArguments::default(), n: 0 }
    }

    fn push(&mut self, fragment: &'static str) {
        self.sql.push_str(fragment);
    }

    fn bind<T>(&mut self, value: T)
    where
        T: for<'q> Encode<'q, Any> + Type<Any> + 'static,
    {
        // Adding an owned i64/String/bool to AnyArguments cannot fail.
        let _ = self.args.add(value);
        self.n += 1;
        self.sql.push('$');
        self.sql.push_str(&self.n.to_string());
    }

    fn bind_key(&mut self, key: &SortKey) {
        match key {
            SortKey::Int(i) => self.bind(*i),
            SortKey::Text(s) => self.bind(s.clone()),
        }
    }

    fn finish(self) -> (String, AnyArguments) {
        (self.sql, self.args)
    }
}

/// Inserts `task`. With `unless_exists`, a task that would repeat another's (series, occurrence)
/// is not inserted (`ON CONFLICT DO NOTHING`, waiting for a concurrent insert to commit): returns
/// whether a row was inserted.
pub(crate) async fn insert_task(
    conn: &mut AnyConnection,
    task: &Task,
    unless_exists: bool,
) -> Result<bool, sqlx::Error> {
    const INSERT: &str = "INSERT INTO tasks (id, user_id, title, title_key, description, description_key, completed, \
         completed_at, priority, tags, due_at, remind_at, recurrence, created_at, updated_at, version, series_id, \
         occurrence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";
    const INSERT_UNLESS_EXISTS: &str = "INSERT INTO tasks (id, user_id, title, title_key, description, description_key, \
         completed, completed_at, priority, tags, due_at, remind_at, recurrence, created_at, updated_at, version, \
         series_id, occurrence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         ON CONFLICT DO NOTHING";
    let done = sqlx::query(if unless_exists { INSERT_UNLESS_EXISTS } else { INSERT })
        .bind(&task.id)
        .bind(&task.user_id)
        .bind(&task.title)
        .bind(task.title_key())
        .bind(task.description.as_deref())
        .bind(task.description_key())
        .bind(task.completed)
        .bind(task.completed_at)
        .bind(task.priority.rank())
        .bind(tags_json(&task.tags))
        .bind(task.due_at)
        .bind(task.remind_at)
        .bind(recurrence_json(task.recurrence.as_ref()))
        .bind(task.created_at)
        .bind(task.updated_at)
        .bind(task.version)
        .bind(task.series.as_ref().map(|s| s.id.clone()))
        .bind(task.series.as_ref().map(|s| s.occurrence))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn insert_tags(conn: &mut AnyConnection, task: &Task) -> Result<(), sqlx::Error> {
    for tag in &task.tags {
        sqlx::query("INSERT INTO task_tags (task_id, user_id, tag) VALUES ($1, $2, $3)")
            .bind(&task.id)
            .bind(&task.user_id)
            .bind(tag)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn recurrence_json(r: Option<&Recurrence>) -> Option<String> {
    r.and_then(|r| serde_json::to_string(r).ok())
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// Booleans are selected as `CASE WHEN col THEN 1 ELSE 0 END` (see [`task_columns`]).
fn get_bool(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

fn task_from_row(row: &AnyRow) -> Result<Task, sqlx::Error> {
    let tags: String = row.try_get("tags")?;
    let recurrence: Option<String> = row.try_get("recurrence")?;
    let rank: i64 = row.try_get("priority")?;
    Ok(Task {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        completed: get_bool(row, "completed")?,
        completed_at: row.try_get("completed_at")?,
        priority: Priority::from_rank(rank)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown priority rank {rank}").into()))?,
        tags: serde_json::from_str(&tags).map_err(decode_err)?,
        due_at: row.try_get("due_at")?,
        remind_at: row.try_get("remind_at")?,
        recurrence: recurrence.as_deref().map(serde_json::from_str).transpose().map_err(decode_err)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
        series: match (row.try_get::<Option<String>, _>("series_id")?, row.try_get::<Option<i64>, _>("occurrence")?) {
            (Some(id), Some(occurrence)) => Some(Series { id, occurrence }),
            _ => None,
        },
    })
}

// ---------------------------------------------------------------- events: consumer side, reminders

impl Store {
    /// Takes lease `name` for `holder` until `now + ttl_ms`, or renews it if `holder` holds it
    /// already. Another holder's lease is taken only once it has expired. True if `holder` holds
    /// the lease now (one statement: atomic on both engines).
    pub async fn take_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool, DbError> {
        let q = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now);
        let done = self.db.timed("take_lease", q.execute(self.db.write())).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives the lease up (if `holder` holds it), so another process can take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), DbError> {
        let q = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder);
        self.db.timed("release_lease", q.execute(self.db.write())).await.map(|_| ())
    }

    /// Pending tasks whose reminder is due at `now` and not emitted yet: `(id, remind_at)`,
    /// earliest first.
    pub async fn due_reminders(&self, now: i64, limit: i64) -> Result<Vec<(String, i64)>, DbError> {
        let q = sqlx::query_as(
            "SELECT id, remind_at FROM tasks \
             WHERE remind_at IS NOT NULL AND reminded_at IS NULL AND remind_at <= $1 AND completed = FALSE \
             ORDER BY remind_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit);
        self.db.timed("due_reminders", q.fetch_all(self.db.read())).await
    }

    /// Marks the reminder of task `id` (at `remind_at`) emitted and enqueues `task.reminder_due`,
    /// in one transaction, unless it was emitted (or changed, completed, deleted) meanwhile.
    /// Returns whether this call emitted it: each reminder is emitted once, even by racing
    /// schedulers.
    pub async fn emit_reminder(&self, id: &str, remind_at: i64, now: i64) -> Result<bool, DbError> {
        let emitted = self
            .db
            .timed("emit_reminder", async {
                let mut tx = self.db.begin().await?;
                let n = sqlx::query(
                    "UPDATE tasks SET reminded_at = $1 \
                     WHERE id = $2 AND remind_at = $3 AND reminded_at IS NULL AND completed = FALSE",
                )
                .bind(now)
                .bind(id)
                .bind(remind_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let row = sqlx::query(concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                let task = task_from_row(&row)?;
                enqueue(&mut tx, &task_event(types::TASK_REMINDER_DUE, &task)).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        if emitted {
            self.notifier.notify();
        }
        Ok(emitted)
    }
}

/// Deletes every task of `user_id` with its tags and idempotency keys, on the caller's
/// transaction; returns the deleted tasks' ids.
pub(crate) async fn delete_user_tasks(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tasks WHERE user_id = $1 ORDER BY id")
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM task_tags WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM tasks WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    Ok(ids)
}
