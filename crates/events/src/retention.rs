//! Retention of the event tables: published outbox rows and processed inbox rows are only needed
//! for a while (the outbox to show what was sent, the inbox to recognise redeliveries); without
//! pruning both grow with every write forever.

use std::time::Duration;

use flotilla_runtime::db::Db;
use flotilla_runtime::time::now_ms;

use crate::consumer::prune_inbox;
use crate::outbox::prune_published;

/// How long published outbox rows and processed inbox rows are kept: far longer than any
/// redelivery takes (JetStream redelivers an unacknowledged message within seconds; its
/// de-duplication window is two minutes), so a redelivered event always finds its inbox row.
pub const RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// How often the pruning runs (also once at start).
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Which event tables a service's database has: producers (accounts) have only the outbox, the
/// audit log only the inbox, services that do both have both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTables {
    pub outbox: bool,
    pub inbox: bool,
}

impl EventTables {
    pub const OUTBOX: Self = Self { outbox: true, inbox: false };
    pub const INBOX: Self = Self { outbox: false, inbox: true };
    pub const BOTH: Self = Self { outbox: true, inbox: true };
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub outbox: u64,
    pub inbox: u64,
}

/// Deletes outbox rows published, and inbox rows processed, more than [`RETENTION`] before
/// `now_ms`. Unpublished outbox rows are never touched, however old.
/// Only the `tables` the database has are touched.
pub async fn prune_once(db: &Db, tables: EventTables, now_ms: i64) -> Result<Pruned, sqlx::Error> {
    let before = now_ms - RETENTION.as_millis() as i64;
    let outbox = if tables.outbox { prune_published(db, before).await? } else { 0 };
    let inbox = if tables.inbox { prune_inbox(db, before).await? } else { 0 };
    Ok(Pruned { outbox, inbox })
}

/// Runs [`prune_once`] now and every [`INTERVAL`] until the task is aborted.
pub fn spawn_pruning(service: &'static str, db: Db, tables: EventTables) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tick.tick().await;
            match prune_once(&db, tables, now_ms()).await {
                Ok(p) if p != Pruned::default() => {
                    tracing::info!(service, outbox = p.outbox, inbox = p.inbox, "pruned old event rows")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(service, error = %e, "cannot prune old event rows; will retry"),
            }
        }
    })
}
