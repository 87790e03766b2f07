//! The operations of the tasks API, independent of HTTP: ids, If-Match, compare-and-swap writes.

use flotilla_runtime::FieldError;
use flotilla_runtime::ids::{is_id, new_id};
use flotilla_runtime::time::now_ms;
use sha2::{Digest, Sha256};

use crate::error::TaskError;
use crate::model::{Task, TaskContent, bump, if_match_allows};
use crate::query::ListQuery;
use crate::store::{CreateOutcome, IdempotencyKey, Page, Store};
use crate::validate::is_valid_idempotency_key;

/// Attempts of a write without `If-Match` that keeps losing races before giving up (409).
const MAX_ATTEMPTS: u32 = 16;

/// After a lost race, waits a random 0..=2·attempt ms: writers that collided on a row spread out
/// instead of colliding again in lock step (at 100 concurrent toggles of a few rows, retrying at
/// once exhausted the attempts and answered 409).
async fn back_off(attempt: u32) {
    use rand::Rng;
    let micros = rand::thread_rng().gen_range(0..=2_000 * u64::from(attempt));
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

#[derive(Clone)]
pub struct Tasks {
    store: Store,
}

/// A created task and whether it is an idempotent replay of an earlier create.
#[derive(Debug, Clone)]
pub struct Created {
    pub task: Task,
    pub replayed: bool,
}

impl Tasks {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks an `Idempotency-Key` header value and ties it to the request body.
    pub fn idempotency_key(raw: &[u8], body: &[u8]) -> Result<IdempotencyKey, TaskError> {
        if !is_valid_idempotency_key(raw) {
            return Err(TaskError::BadIdempotencyKey);
        }
        let hash: String = Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
        Ok(IdempotencyKey { key: String::from_utf8_lossy(raw).into_owned(), request_hash: hash })
    }

    pub async fn create(
        &self,
        user_id: &str,
        content: TaskContent,
        idem: Option<&IdempotencyKey>,
    ) -> Result<Created, TaskError> {
        let task = Task::new(new_id(), user_id.to_owned(), content, now_ms());
        match self.store.create(&task, idem).await? {
            CreateOutcome::Created(task) => Ok(Created { task, replayed: false }),
            CreateOutcome::Replayed(task) => Ok(Created { task, replayed: true }),
            CreateOutcome::KeyReused => Err(TaskError::IdempotencyKeyReused),
            CreateOutcome::OriginalGone => Err(TaskError::IdempotentTaskGone),
        }
    }

    pub async fn get(&self, user_id: &str, id: &str) -> Result<Task, TaskError> {
        if !is_id(id) {
            return Err(TaskError::NotFound);
        }
        self.store.get(user_id, id).await?.ok_or(TaskError::NotFound)
    }

    pub async fn list(&self, user_id: &str, q: &ListQuery) -> Result<Page, TaskError> {
        Ok(self.store.list(user_id, q, now_ms()).await?)
    }

    /// Reads the task, checks `If-Match`, computes the next state with `change` and stores it if
    /// nobody changed the task meanwhile. A write that changes nothing keeps the version. Without
    /// `If-Match` a lost race is retried on the latest version; with it, it becomes a 412.
    pub async fn modify(
        &self,
        user_id: &str,
        id: &str,
        if_match: Option<&str>,
        change: impl Fn(&Task, i64) -> Result<Task, Vec<FieldError>>,
    ) -> Result<Task, TaskError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let current = self.get(user_id, id).await?;
            check_if_match(if_match, &current)?;
            let now = now_ms();
            let next = change(&current, now).map_err(TaskError::Invalid)?;
            let Some(next) = bump(&current, next, now) else { return Ok(current) };
            if self.store.update(&current, &next).await? {
                return Ok(next);
            }
        }
        Err(TaskError::Contended)
    }

    pub async fn delete(&self, user_id: &str, id: &str, if_match: Option<&str>) -> Result<(), TaskError> {
        if !is_id(id) {
            return Err(TaskError::NotFound);
        }
        let Some(if_match) = if_match else {
            return if self.store.delete(user_id, id, None).await? { Ok(()) } else { Err(TaskError::NotFound) };
        };
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let current = self.get(user_id, id).await?;
            check_if_match(Some(if_match), &current)?;
            if self.store.delete(user_id, id, Some(current.version)).await? {
                return Ok(());
            }
        }
        Err(TaskError::Contended)
    }
}

fn check_if_match(if_match: Option<&str>, current: &Task) -> Result<(), TaskError> {
    match if_match {
        Some(h) if !if_match_allows(h, current.version) => {
            Err(TaskError::PreconditionFailed { current: current.version })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_hash_the_body() {
        let a = Tasks::idempotency_key(b"k1", b"{\"title\":\"a\"}").unwrap();
        let b = Tasks::idempotency_key(b"k1", b"{\"title\":\"b\"}").unwrap();
        assert_eq!(a.key, "k1");
        assert_eq!(a.request_hash.len(), 64);
        assert_ne!(a.request_hash, b.request_hash);
        assert!(matches!(Tasks::idempotency_key(b"", b""), Err(TaskError::BadIdempotencyKey)));
    }
}
