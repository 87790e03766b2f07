//! All SQL of the tasks service: one method per operation, portable across SQLite and PostgreSQL
//! (sqlx `Any`; `$n` placeholders; BIGINT milliseconds; TEXT ids).

use flotilla_runtime::db::{Db, DbError};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, AssertSqlSafe, Encode, Row, Type};

use crate::cursor::{Cursor, Order, Sort, SortKey};
use crate::model::{Priority, Recurrence, Task};
use crate::query::{ListQuery, Status, like_pattern};

/// The columns of a task, as [`task_from_row`] reads them. `completed` is read through CASE:
/// sqlx's `Any` driver rejects columns declared BOOLEAN on SQLite ("Any driver does not support
/// the SQLite type Bool"), while an expression comes back as an integer on both engines.
macro_rules! task_columns {
    () => {
        "id, user_id, title, description, CASE WHEN completed THEN 1 ELSE 0 END AS completed, completed_at, priority, tags, due_at, remind_at, recurrence, \
         created_at, updated_at, version"
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

/// The storage API of the tasks service.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Inserts `task` (and its tags) and, with an idempotency key, records the key in the same
    /// transaction. A key seen before is resolved without inserting anything; two concurrent
    /// creates with one key make exactly one task (the key's primary key decides).
    pub async fn create(&self, task: &Task, idem: Option<&IdempotencyKey>) -> Result<CreateOutcome, DbError> {
        let inserted = self
            .db
            .timed("create_task", async {
                let mut tx = self.db.write().begin().await?;
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
                insert_task(&mut tx, task).await?;
                insert_tags(&mut tx, task).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        if inserted {
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
                let mut tx = self.db.write().begin().await?;
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
                tx.commit().await?;
                Ok(true)
            })
            .await
    }

    /// Deletes the task; with `expected_version`, only if it is still at that version. Returns
    /// whether a task was deleted.
    pub async fn delete(&self, user_id: &str, id: &str, expected_version: Option<i64>) -> Result<bool, DbError> {
        self.db
            .timed("delete_task", async {
                let mut tx = self.db.write().begin().await?;
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
                tx.commit().await?;
                Ok(true)
            })
            .await
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

async fn insert_task(tx: &mut sqlx::Transaction<'_, Any>, task: &Task) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tasks (id, user_id, title, title_key, description, description_key, completed, completed_at, \
         priority, tags, due_at, remind_at, recurrence, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_tags(tx: &mut sqlx::Transaction<'_, Any>, task: &Task) -> Result<(), sqlx::Error> {
    for tag in &task.tags {
        sqlx::query("INSERT INTO task_tags (task_id, user_id, tag) VALUES ($1, $2, $3)")
            .bind(&task.id)
            .bind(&task.user_id)
            .bind(tag)
            .execute(&mut **tx)
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
    })
}
