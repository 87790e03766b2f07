//! The reminder scheduler: emits `task.reminder_due` when a pending task's `remind_at` has come,
//! exactly once per reminder, with one scheduler at a time per database.
//!
//! Every tick (`FLOTILLA_REMINDER_INTERVAL_MS`) the scheduler takes or renews the `reminders`
//! lease (a row in `leases` with an expiry; another replica takes it only after it expired, so a
//! crashed holder is replaced within [`lease_ttl`]). The holder selects the due reminders and,
//! per task, in one transaction sets `reminded_at` (only if it is still unset for that
//! `remind_at`) and enqueues the event. The conditional update is what makes a reminder
//! exactly-once even if two schedulers ever overlap; the lease only keeps them from doing the
//! work twice. Changing `remind_at` resets `reminded_at` (see `Store::update`).

use std::time::Duration;

use flotilla_runtime::db::DbError;
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::now_ms;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::Store;

/// The lease row of the scheduler.
pub const LEASE: &str = "reminders";
/// Reminders handled per tick (the rest wait for the next tick, which follows at once).
const BATCH: i64 = 200;

/// How long a lease lasts without renewal: three ticks, at least two seconds.
pub fn lease_ttl(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(2))
}

/// One scheduler (one per process).
pub struct Scheduler {
    store: Store,
    holder: String,
    interval: Duration,
}

/// Controls a running scheduler.
pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SchedulerHandle {
    /// Stops after the current tick and gives the lease up.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Scheduler {
    pub fn new(store: Store, interval: Duration) -> Self {
        Self { store, holder: new_id(), interval }
    }

    /// This scheduler's lease holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// One tick: takes or renews the lease and, when holding it, emits every due reminder.
    /// Returns how many reminders this tick emitted (`None`: another scheduler holds the lease).
    pub async fn tick(&self) -> Result<Option<usize>, DbError> {
        let ttl = i64::try_from(lease_ttl(self.interval).as_millis()).unwrap_or(i64::MAX);
        if !self.store.take_lease(LEASE, &self.holder, now_ms(), ttl).await? {
            return Ok(None);
        }
        let mut emitted = 0;
        loop {
            let now = now_ms();
            let due = self.store.due_reminders(now, BATCH).await?;
            for (id, remind_at) in &due {
                if self.store.emit_reminder(id, *remind_at, now).await? {
                    emitted += 1;
                }
            }
            if (due.len() as i64) < BATCH {
                return Ok(Some(emitted));
            }
            // A long backlog: renew the lease before the next batch.
            if !self.store.take_lease(LEASE, &self.holder, now_ms(), ttl).await? {
                return Ok(Some(emitted));
            }
        }
    }

    /// Runs a tick every interval until [`SchedulerHandle::shutdown`].
    pub fn spawn(self) -> SchedulerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            tracing::info!(holder = %self.holder, interval_ms = self.interval.as_millis() as u64, "reminder scheduler started");
            let mut failures: u32 = 0;
            loop {
                match self.tick().await {
                    Ok(Some(n)) => {
                        failures = 0;
                        if n > 0 {
                            tracing::info!(reminders = n, "reminders emitted");
                        }
                    }
                    Ok(None) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 || failures.is_multiple_of(30) {
                            tracing::warn!(error = %e, failures, "reminder scheduler: database error; retrying");
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    _ = stopped.changed() => break,
                }
            }
            if let Err(e) = self.store.release_lease(LEASE, &self.holder).await {
                tracing::debug!(error = %e, "reminder scheduler: could not release the lease");
            }
            tracing::info!("reminder scheduler stopped");
        });
        SchedulerHandle { stop, task }
    }
}
