//! All SQL of the assistant: conversations and their messages, portable across SQLite and
//! PostgreSQL (sqlx `Any`; `$n` placeholders; BIGINT milliseconds; TEXT ids and JSON).
//!
//! Appending to a conversation first bumps the conversation row (`UPDATE … SET updated_at`): on
//! PostgreSQL that row lock serialises concurrent appends to one conversation, so the next `seq`
//! computed in the same transaction is never taken twice; SQLite has one writer anyway.

use flotilla_events::outbox::RelayNotifier;
use flotilla_events::{Event, enqueue};
use flotilla_runtime::db::{Db, DbError};
use flotilla_runtime::ids::new_id;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::model::{HistoryMessage, Role, ToolCall};

/// One conversation of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub state: Option<Value>,
    pub created_at: i64,
}

impl Message {
    pub fn to_history(&self) -> HistoryMessage {
        HistoryMessage {
            role: self.role,
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
            state: self.state.clone(),
        }
    }
}

/// A message to append (its id is chosen first, so an event can name it).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: String,
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub state: Option<Value>,
}

impl NewMessage {
    pub fn user(content: impl Into<String>) -> Self {
        Self { id: new_id(), role: Role::User, content: content.into(), tool_calls: Vec::new(), state: None }
    }
}

/// Where a page of conversations starts: after this `(updated_at, id)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub updated_at: i64,
    pub id: String,
}

/// The columns [`conversation_from_row`] reads (a macro so queries stay `&'static str`).
macro_rules! conversation_columns {
    () => {
        "id, user_id, title, created_at, updated_at"
    };
}

/// The storage API of the assistant. Writes that emit events enqueue them in the same
/// transaction and wake the outbox relay after the commit.
#[derive(Clone)]
pub struct Store {
    db: Db,
    notifier: RelayNotifier,
}

impl Store {
    /// A store whose relay wake-ups go nowhere (the relay still polls): tests, CLI.
    pub fn new(db: Db) -> Self {
        Self { db, notifier: RelayNotifier::default() }
    }

    /// A store that wakes the outbox relay after each commit with events.
    pub fn with_notifier(db: Db, notifier: RelayNotifier) -> Self {
        Self { db, notifier }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates a conversation with its first message, in one transaction.
    pub async fn create_conversation(
        &self,
        user_id: &str,
        title: &str,
        first: &NewMessage,
        now: i64,
    ) -> Result<(Conversation, Message), DbError> {
        let conv = Conversation {
            id: new_id(),
            user_id: user_id.to_owned(),
            title: title.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let msg = self
            .db
            .timed("create_conversation", async {
                let mut tx = self.db.begin().await?;
                sqlx::query(
                    "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&conv.id)
                .bind(&conv.user_id)
                .bind(&conv.title)
                .bind(conv.created_at)
                .bind(conv.updated_at)
                .execute(&mut *tx)
                .await?;
                let msg = insert_message(&mut tx, &conv.id, 1, first, now).await?;
                tx.commit().await?;
                Ok(msg)
            })
            .await?;
        Ok((conv, msg))
    }

    /// Appends `msg` to conversation `id` of `user_id` (with `event`, if any, in the same
    /// transaction). `None` when there is no such conversation of this user: nothing changed.
    pub async fn append(
        &self,
        user_id: &str,
        id: &str,
        msg: &NewMessage,
        event: Option<&Event>,
        now: i64,
    ) -> Result<Option<Message>, DbError> {
        let stored = self
            .db
            .timed("append_message", async {
                let mut tx = self.db.begin().await?;
                // Locks the conversation row (PostgreSQL) until commit: see the module docs.
                let n = sqlx::query(
                    "UPDATE conversations SET updated_at = CASE WHEN updated_at > $1 THEN updated_at ELSE $1 END \
                     WHERE id = $2 AND user_id = $3",
                )
                .bind(now)
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let seq: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS BIGINT) FROM messages WHERE conversation_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                let stored = insert_message(&mut tx, id, seq, msg, now).await?;
                if let Some(event) = event {
                    enqueue(&mut tx, event).await?;
                }
                tx.commit().await?;
                Ok(Some(stored))
            })
            .await?;
        if stored.is_some() && event.is_some() {
            self.notifier.notify();
        }
        Ok(stored)
    }

    /// Conversation `id` of `user_id` (another user's is `None`).
    pub async fn conversation(&self, user_id: &str, id: &str) -> Result<Option<Conversation>, DbError> {
        let row = self
            .db
            .timed(
                "get_conversation",
                sqlx::query(concat!(
                    "SELECT ",
                    conversation_columns!(),
                    " FROM conversations WHERE id = $1 AND user_id = $2"
                ))
                .bind(id)
                .bind(user_id)
                .fetch_optional(self.db.read()),
            )
            .await?;
        row.as_ref().map(conversation_from_row).transpose().map_err(DbError::Query)
    }

    /// Up to `limit` conversations of `user_id`, most recently active first, after `after`.
    pub async fn conversations(
        &self,
        user_id: &str,
        limit: i64,
        after: Option<&After>,
    ) -> Result<Vec<Conversation>, DbError> {
        let rows = match after {
            None => {
                self.db
                    .timed(
                        "list_conversations",
                        sqlx::query(concat!(
                            "SELECT ",
                            conversation_columns!(),
                            " FROM conversations WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
                        ))
                        .bind(user_id)
                        .bind(limit)
                        .fetch_all(self.db.read()),
                    )
                    .await?
            }
            Some(a) => {
                self.db
                    .timed(
                        "list_conversations",
                        sqlx::query(concat!(
                            "SELECT ",
                            conversation_columns!(),
                            " FROM conversations WHERE user_id = $1 \
                             AND (updated_at < $2 OR (updated_at = $2 AND id < $3)) \
                             ORDER BY updated_at DESC, id DESC LIMIT $4"
                        ))
                        .bind(user_id)
                        .bind(a.updated_at)
                        .bind(&a.id)
                        .bind(limit)
                        .fetch_all(self.db.read()),
                    )
                    .await?
            }
        };
        rows.iter().map(conversation_from_row).collect::<Result<_, _>>().map_err(DbError::Query)
    }

    /// Every message of conversation `id`, in order.
    pub async fn messages(&self, id: &str) -> Result<Vec<Message>, DbError> {
        let rows = self
            .db
            .timed(
                "list_messages",
                sqlx::query(
                    "SELECT id, conversation_id, seq, role, content, tool_calls, state, created_at FROM messages \
                     WHERE conversation_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(self.db.read()),
            )
            .await?;
        rows.iter().map(message_from_row).collect::<Result<_, _>>().map_err(DbError::Query)
    }

    /// The newest `limit` messages of conversation `id` before `before_seq`, oldest first.
    pub async fn history(&self, id: &str, before_seq: i64, limit: usize) -> Result<Vec<Message>, DbError> {
        let rows = self
            .db
            .timed(
                "history",
                sqlx::query(
                    "SELECT id, conversation_id, seq, role, content, tool_calls, state, created_at FROM messages \
                     WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                )
                .bind(id)
                .bind(before_seq)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(self.db.read()),
            )
            .await?;
        let mut messages: Vec<Message> =
            rows.iter().map(message_from_row).collect::<Result<_, _>>().map_err(DbError::Query)?;
        messages.reverse();
        Ok(messages)
    }

    /// Deletes conversation `id` of `user_id` and its messages; false when there is none.
    pub async fn delete_conversation(&self, user_id: &str, id: &str) -> Result<bool, DbError> {
        self.db
            .timed("delete_conversation", async {
                let mut tx = self.db.begin().await?;
                let n = sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // The foreign key cascades too; deleting explicitly does not depend on it.
                sqlx::query("DELETE FROM messages WHERE conversation_id = $1").bind(id).execute(&mut *tx).await?;
                if n == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            })
            .await
    }
}

/// Deletes every conversation of `user_id` (and their messages) on `conn`, normally a consumer's
/// transaction; returns how many conversations went.
pub async fn delete_user_conversations(conn: &mut AnyConnection, user_id: &str) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE user_id = $1)")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let n = sqlx::query("DELETE FROM conversations WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    Ok(n.rows_affected())
}

async fn insert_message(
    conn: &mut AnyConnection,
    conversation_id: &str,
    seq: i64,
    msg: &NewMessage,
    now: i64,
) -> Result<Message, sqlx::Error> {
    let stored = Message {
        id: msg.id.clone(),
        conversation_id: conversation_id.to_owned(),
        seq,
        role: msg.role,
        content: msg.content.clone(),
        tool_calls: msg.tool_calls.clone(),
        state: msg.state.clone(),
        created_at: now,
    };
    let tool_calls = serde_json::to_string(&stored.tool_calls).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let state = stored.state.as_ref().map(Value::to_string);
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, seq, role, content, tool_calls, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&stored.id)
    .bind(conversation_id)
    .bind(seq)
    .bind(role_text(stored.role))
    .bind(&stored.content)
    .bind(tool_calls)
    .bind(state)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(stored)
}

pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

fn decode_err(column: &str, e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: e.to_string().into() }
}

fn conversation_from_row(row: &AnyRow) -> Result<Conversation, sqlx::Error> {
    Ok(Conversation {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<Message, sqlx::Error> {
    let role = match row.try_get::<String, _>("role")?.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => return Err(decode_err("role", format!("unknown role {other:?}"))),
    };
    let tool_calls: String = row.try_get("tool_calls")?;
    let state: Option<String> = row.try_get("state")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        seq: row.try_get("seq")?,
        role,
        content: row.try_get("content")?,
        tool_calls: serde_json::from_str(&tool_calls).map_err(|e| decode_err("tool_calls", e))?,
        state: state.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| decode_err("state", e))?,
        created_at: row.try_get("created_at")?,
    })
}
