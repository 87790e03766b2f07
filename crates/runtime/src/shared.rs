//! State shared by every replica through Redis (`FLOTILLA_REDIS_URL`): rate-limit counters and
//! token revocations. Without Redis each process keeps both in memory, which is right for one
//! process (embedded mode) and wrong for several: a per-user limit would multiply by the replica
//! count, and a logged-out token would stay valid on the replicas that did not see the logout.
//!
//! Revocations are read on every request, so they stay in each process's memory
//! ([`Revocations`]) and Redis only distributes them: a revocation is written as a key that
//! expires with the tokens it voids and announced on a channel; every process subscribes to the
//! channel and, after each (re)connection, loads every key. Counters are `INCR`ed in Redis per
//! request; when Redis fails, the local counter decides (limits degrade to per-replica, requests
//! are not refused because a cache is down).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::auth::{Revocation, Revocations};
use crate::http::Ops;

/// The channel revocations are announced on.
pub const REVOCATIONS_CHANNEL: &str = "flotilla:revocations";
/// Prefix of the revocation keys (`…s:<sid>` for a session, `…u:<sub>` for a user).
pub const REVOKED_PREFIX: &str = "flotilla:revoked:";
/// Prefix of the rate-limit counters.
pub const RATE_PREFIX: &str = "flotilla:rl:";

/// How long a user-wide revocation is kept: longer than any access token lives.
const USER_REVOCATION_TTL_SECS: i64 = 86_400;

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct SharedError(#[from] redis::RedisError);

/// A connection to the Redis shared by the replicas. Connects lazily and reconnects by itself;
/// `/ready` reports whether it answers ([`SharedStore::readiness`]).
#[derive(Clone)]
pub struct SharedStore {
    client: redis::Client,
    conn: ConnectionManager,
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: never print it.
        f.write_str("SharedStore(redis)")
    }
}

impl SharedStore {
    /// `FLOTILLA_REDIS_URL`, when set (`redis://[user:password@]host:port[/db]`).
    pub fn from_env(env: &crate::config::Env) -> Result<Option<Self>, crate::config::ConfigError> {
        let Some(url) = env.get(crate::config::REDIS_URL).map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        // The value may hold a password: the error names the variable, not the value.
        let invalid = |why: String| crate::config::ConfigError::new(crate::config::REDIS_URL, "(hidden)", why);
        if !url.starts_with("redis://") {
            return Err(invalid("expected redis://HOST:PORT".into()));
        }
        Self::open(url).map(Some).map_err(|e| invalid(e.to_string()))
    }

    /// Parses the URL; the connection is made on first use.
    pub fn open(url: &str) -> Result<Self, SharedError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = client.get_connection_manager_lazy(config)?;
        Ok(Self { client, conn })
    }

    pub async fn ping(&self) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Adds a `redis` readiness check.
    pub fn readiness(&self, ops: Ops) -> Ops {
        let store = self.clone();
        ops.check(
            "redis",
            Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
            }),
        )
    }

    /// Counts one hit of `key` in window `index` (of `window_secs`); returns the count so far.
    pub(crate) async fn incr_window(
        &self,
        scope: &str,
        key: &str,
        index: i64,
        window_secs: u64,
    ) -> Result<u64, SharedError> {
        let name = format!("{RATE_PREFIX}{scope}:{index}:{key}");
        let mut conn = self.conn.clone();
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .incr(&name, 1u64)
            .expire(&name, window_secs as i64 + 1)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }

    pub(crate) async fn get_window(&self, scope: &str, key: &str, index: i64) -> Result<u64, SharedError> {
        let mut conn = self.conn.clone();
        let n: Option<u64> = conn.get(format!("{RATE_PREFIX}{scope}:{index}:{key}")).await?;
        Ok(n.unwrap_or(0))
    }

    pub(crate) async fn del_window(&self, scope: &str, key: &str, index: i64) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(format!("{RATE_PREFIX}{scope}:{index}:{key}")).await?;
        Ok(())
    }

    /// Stores a revocation (expiring with the tokens it voids) and announces it.
    async fn publish(&self, r: &Revocation) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        let msg = r.encode();
        let mut pipe = redis::pipe();
        pipe.atomic();
        match r {
            Revocation::Session { sid, until } => {
                pipe.cmd("SET").arg(format!("{REVOKED_PREFIX}s:{sid}")).arg(&msg).arg("EXAT").arg(*until).ignore();
            }
            Revocation::User { sub, .. } => {
                pipe.set_ex(format!("{REVOKED_PREFIX}u:{sub}"), &msg, USER_REVOCATION_TTL_SECS as u64).ignore();
            }
            Revocation::Cleared { sub } => {
                pipe.del(format!("{REVOKED_PREFIX}u:{sub}")).ignore();
            }
        }
        pipe.publish(REVOCATIONS_CHANNEL, &msg).ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Every stored revocation.
    async fn load(&self, into: &Revocations) -> Result<usize, SharedError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<String> = conn.scan_match(format!("{REVOKED_PREFIX}*")).await?;
            let mut keys = Vec::new();
            while let Some(k) = iter.next_item().await {
                keys.push(k?);
            }
            keys
        };
        let mut n = 0;
        for chunk in keys.chunks(500) {
            let values: Vec<Option<String>> = conn.mget(chunk).await?;
            for r in values.iter().flatten().filter_map(|v| Revocation::decode(v)) {
                into.apply(&r);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Makes `revocations` shared: what this process revokes is published, what any process
    /// revokes is applied here. Runs until the process ends (reconnecting with back-off).
    pub fn share_revocations(&self, revocations: &Arc<Revocations>) -> tokio::task::JoinHandle<()> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Revocation>(10_000);
        revocations.set_sink(Arc::new(move |r: &Revocation| {
            if tx.try_send(r.clone()).is_err() {
                tracing::error!("revocation queue full: a revocation was applied here only");
            }
        }));
        let publisher = self.clone();
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                // A revocation must reach the others: retry until Redis takes it.
                let mut delay = Duration::from_millis(100);
                while let Err(e) = publisher.publish(&r).await {
                    tracing::warn!(error = %e, "cannot publish a revocation; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        });
        let store = self.clone();
        let revocations = revocations.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match store.follow(&revocations).await {
                    Ok(()) => tracing::warn!("revocation channel closed; resubscribing"),
                    Err(e) => tracing::warn!(error = %e, "revocation channel unavailable; retrying"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        })
    }

    /// Subscribes, then loads what is stored (so nothing published in between is missed), then
    /// applies announcements until the connection drops.
    async fn follow(&self, revocations: &Revocations) -> Result<(), SharedError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(REVOCATIONS_CHANNEL).await?;
        let n = self.load(revocations).await?;
        tracing::info!(loaded = n, "following shared revocations");
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let payload: String = msg.get_payload()?;
            match Revocation::decode(&payload) {
                Some(r) => revocations.apply(&r),
                None => tracing::warn!("ignoring a malformed revocation message"),
            }
        }
        Ok(())
    }
}
