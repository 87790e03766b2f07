//! All SQL of the audit service, portable across SQLite and PostgreSQL (sqlx `Any`; `$n`
//! placeholders; BIGINT milliseconds; TEXT ids and JSON).
//!
//! `audit_log` is append-only: [`append`] inserts (once per event id) and
//! [`Store::delete_older_than`] is the retention job's; nothing here updates a record.

use flotilla_events::Event;
use flotilla_events::consumer::prune_inbox;
use flotilla_runtime::db::{Db, DbError};
use flotilla_runtime::time::format_ms;
use serde::Serialize;
use serde_json::Value;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Arguments, AssertSqlSafe, Encode, Row, Type};

use crate::cursor::Cursor;
use crate::query::Filter;

/// Rows deleted per retention statement (keeps each write transaction short: on SQLite every
/// other writer waits for it).
pub const RETENTION_BATCH: i64 = 5_000;

const COLUMNS: &str =
    "SELECT seq, id, type, source, subject, user_id, time_ms, recorded_at, data FROM audit_log WHERE 1 = 1";

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub source: String,
    pub subject: Option<String>,
    pub user_id: Option<String>,
    pub time_ms: i64,
    pub recorded_at: i64,
    pub data: Value,
}

/// A record in a user's activity feed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ActivityEvent)]
pub struct ActivityJson {
    /// The event id.
    pub id: String,
    /// The event type, e.g. `task.created`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub event_type: String,
    /// The service that emitted it, e.g. `/flotilla/tasks`.
    pub source: String,
    /// What it is about (e.g. the task id), if anything.
    #[schema(required)]
    pub subject: Option<String>,
    /// When it happened (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub time: String,
    /// The event's payload.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// A record in the admins' audit search: an activity event plus the user it concerns.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditJson {
    pub id: String,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub event_type: String,
    pub source: String,
    #[schema(required)]
    pub subject: Option<String>,
    /// The user the event concerns, if any.
    #[schema(required)]
    pub user_id: Option<String>,
    #[schema(format = DateTime)]
    pub time: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

impl Record {
    pub fn to_activity_json(&self) -> ActivityJson {
        ActivityJson {
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            source: self.source.clone(),
            subject: self.subject.clone(),
            time: format_ms(self.time_ms),
            data: self.data.clone(),
        }
    }

    pub fn to_audit_json(&self) -> AuditJson {
        AuditJson {
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            source: self.source.clone(),
            subject: self.subject.clone(),
            user_id: self.user_id.clone(),
            time: format_ms(self.time_ms),
            data: self.data.clone(),
        }
    }
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    pub next_cursor: Option<String>,
}

/// Appends `event` to the audit log on `conn` (the consumer's transaction). Returns false when
/// a record with this event id exists already (nothing is written then). An event whose `time` is
/// not RFC 3339 is recorded at `recorded_at`.
pub async fn append(conn: &mut AnyConnection, event: &Event, recorded_at: i64) -> Result<bool, sqlx::Error> {
    let time_ms = event.time_ms().unwrap_or_else(|| {
        tracing::warn!(event_id = %event.id, r#type = %event.r#type, "event time is not RFC 3339; using the time it was recorded");
        recorded_at
    });
    let data = serde_json::to_string(&event.data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let done = sqlx::query(
        "INSERT INTO audit_log (id, type, source, subject, user_id, time_ms, recorded_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.r#type)
    .bind(&event.source)
    .bind(event.subject.as_deref())
    .bind(event.userid.as_deref())
    .bind(time_ms)
    .bind(recorded_at)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The storage API of the audit service (reads and retention; appends go through [`append`]).
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

    /// One page of the records matching `f`, newest first (by `seq`), after `f.cursor`.
    pub async fn list(&self, f: &Filter) -> Result<Page, DbError> {
        let mut sql = SqlBuilder::new(COLUMNS);
        if let Some(u) = &f.user_id {
            sql.push(" AND user_id = ");
            sql.bind(u.clone());
        }
        if let Some(t) = &f.event_type {
            sql.push(" AND type = ");
            sql.bind(t.clone());
        }
        if let Some(t) = f.since {
            sql.push(" AND time_ms >= ");
            sql.bind(t);
        }
        if let Some(t) = f.until {
            sql.push(" AND time_ms < ");
            sql.bind(t);
        }
        if let Some(c) = &f.cursor {
            sql.push(" AND seq < ");
            sql.bind(c.seq());
        }
        sql.push(" ORDER BY seq DESC LIMIT ");
        sql.bind(f.limit + 1);
        let (text, args) = sql.finish();
        let rows = self
            .db
            .timed("list_audit_log", sqlx::query_with(AssertSqlSafe(text), args).fetch_all(self.db.read()))
            .await?;
        let mut records = rows.iter().map(record_from_row).collect::<Result<Vec<_>, _>>()?;
        let more = records.len() as i64 > f.limit;
        records.truncate(usize::try_from(f.limit).unwrap_or(0));
        let next_cursor = if more { records.last().map(|r| Cursor::after(r.seq).encode()) } else { None };
        Ok(Page { records, next_cursor })
    }

    /// The record of one event, if it is in the log.
    pub async fn get(&self, event_id: &str) -> Result<Option<Record>, DbError> {
        let row = self
            .db
            .timed(
                "get_audit_record",
                sqlx::query(AssertSqlSafe(format!("{COLUMNS} AND id = $1")))
                    .bind(event_id)
                    .fetch_optional(self.db.read()),
            )
            .await?;
        row.as_ref().map(record_from_row).transpose().map_err(DbError::Query)
    }

    /// Retention: deletes the records whose event time is before `cutoff_ms`, in batches of
    /// [`RETENTION_BATCH`]. Returns how many were deleted.
    pub async fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            let done = self
                .db
                .timed(
                    "audit_retention",
                    sqlx::query(
                        "DELETE FROM audit_log WHERE seq IN \
                         (SELECT seq FROM audit_log WHERE time_ms < $1 ORDER BY time_ms LIMIT $2)",
                    )
                    .bind(cutoff_ms)
                    .bind(RETENTION_BATCH)
                    .execute(self.db.write()),
                )
                .await?;
            total += done.rows_affected();
            if done.rows_affected() < RETENTION_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// The retention job: old records, and the consumer's inbox rows processed before the same
    /// cutoff (a record outlives its inbox row by no more than the delay between the event and its
    /// processing, and `ON CONFLICT (id) DO NOTHING` still holds while the record exists).
    pub async fn enforce_retention(&self, cutoff_ms: i64) -> Result<u64, DbError> {
        let deleted = self.delete_older_than(cutoff_ms).await?;
        self.db.timed("audit_inbox_retention", prune_inbox(&self.db, cutoff_ms)).await?;
        Ok(deleted)
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
        // Adding an owned i64/String to AnyArguments cannot fail.
        let _ = self.args.add(value);
        self.n += 1;
        self.sql.push('$');
        self.sql.push_str(&self.n.to_string());
    }

    fn finish(self) -> (String, AnyArguments) {
        (self.sql, self.args)
    }
}

fn record_from_row(row: &AnyRow) -> Result<Record, sqlx::Error> {
    let data: String = row.try_get("data")?;
    Ok(Record {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        event_type: row.try_get("type")?,
        source: row.try_get("source")?,
        subject: row.try_get("subject")?,
        user_id: row.try_get("user_id")?,
        time_ms: row.try_get("time_ms")?,
        recorded_at: row.try_get("recorded_at")?,
        data: serde_json::from_str(&data).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}
