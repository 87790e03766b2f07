//! Outbox, relay, consumer runner and in-process bus on real SQLite files and a throwaway
//! PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use flotilla_events::consumer::{DEAD_LETTERS_POSTGRES, DEAD_LETTERS_SQLITE, INBOX_POSTGRES, INBOX_SQLITE};
use flotilla_events::event::types;
use flotilla_events::outbox::{OUTBOX_POSTGRES, OUTBOX_SQLITE, pending_count, publish_pending};
use flotilla_events::{
    Bus, Consumer, MemoryBus, Outcome, Relay, RelayOptions, ReplayError, ReplayOutcome, RetryPolicy, list_dead_letters,
    metrics_names, replay_dead_letter,
};
use flotilla_runtime::db::Db;

const WAIT: Duration = Duration::from_secs(20);

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, base_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(20) }
}

fn fast_relay() -> RelayOptions {
    RelayOptions {
        poll_interval: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        lock_retry: Duration::from_millis(200),
        ..RelayOptions::default()
    }
}

#[test]
fn migrations_hold_the_published_ddl() {
    let sqlite = include_str!("../migrations/sqlite/0001_events.sql");
    let postgres = include_str!("../migrations/postgres/0001_events.sql");
    for ddl in [OUTBOX_SQLITE, INBOX_SQLITE, DEAD_LETTERS_SQLITE] {
        assert!(sqlite.contains(ddl), "sqlite migration lacks:\n{ddl}");
    }
    for ddl in [OUTBOX_POSTGRES, INBOX_POSTGRES, DEAD_LETTERS_POSTGRES] {
        assert!(postgres.contains(ddl), "postgres migration lacks:\n{ddl}");
    }
    assert_eq!(metrics_names::ALL.len(), 4);
}

// ---------------------------------------------------------------- outbox + relay

async fn relay_publishes_committed_events_once_in_order(db: Db, service: &'static str) {
    let bus = Arc::new(FlakyBus::default());
    let batches: Vec<Vec<_>> =
        (0..4).map(|b| (0..5).map(|i| event(types::TASK_CREATED, b * 5 + i)).collect()).collect();
    write_events(&db, &batches[0], true).await;
    write_events(&db, &batches[1], false).await; // rolled back: never published
    write_events(&db, &batches[2], true).await;
    let relay = Relay::spawn_with(service, db.clone(), bus.clone(), fast_relay());
    write_events(&db, &batches[3], true).await;
    relay.notify();

    let expected: Vec<String> =
        [&batches[0], &batches[2], &batches[3]].iter().flat_map(|b| b.iter().map(|e| e.id.clone())).collect();
    wait_until(WAIT, "all committed events published", || async { bus.ids().len() >= expected.len() }).await;
    assert_eq!(pending_count(&db).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await; // a few more passes: nothing new
    assert_eq!(bus.ids(), expected, "published once each, in commit (seq) order; rolled-back ones never");
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_publishes_committed_events_once_in_order_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    relay_publishes_committed_events_once_in_order(sqlite_db(&dir, "order_sqlite").await, "order_sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_publishes_committed_events_once_in_order_postgres() {
    let Some(db) = pg_db("order_pg").await else { return };
    relay_publishes_committed_events_once_in_order(db, "order_pg").await;
}

async fn writes_survive_a_bus_outage(db: Db, service: &'static str) {
    metrics_on();
    let bus = Arc::new(FlakyBus::default());
    bus.down.store(true, Ordering::SeqCst);
    let relay = Relay::spawn_with(service, db.clone(), bus.clone(), fast_relay());
    let events: Vec<_> = (0..12).map(|i| event(types::TASK_UPDATED, i)).collect();
    for chunk in events.chunks(3) {
        write_events(&db, chunk, true).await; // commits although the bus is down
        relay.notify();
    }
    assert_eq!(pending_count(&db).await.unwrap(), 12);
    wait_until(WAIT, "outbox_pending gauge at 12", || async {
        metric(metrics_names::OUTBOX_PENDING, &[("service", service)]) == 12.0
    })
    .await;
    assert!(bus.attempts.load(Ordering::SeqCst) > 0, "the relay kept trying");
    assert!(bus.ids().is_empty());

    // Back up, but the next three publishes still fail: order is kept throughout.
    bus.fail_next.store(3, Ordering::SeqCst);
    bus.down.store(false, Ordering::SeqCst);
    let expected: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    wait_until(WAIT, "backlog published", || async { bus.ids().len() >= expected.len() }).await;
    assert_eq!(bus.ids(), expected);
    wait_until(WAIT, "outbox_pending gauge at 0", || async {
        metric(metrics_names::OUTBOX_PENDING, &[("service", service)]) == 0.0
    })
    .await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_survive_a_bus_outage_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    writes_survive_a_bus_outage(sqlite_db(&dir, "outage_sqlite").await, "outage_sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_survive_a_bus_outage_postgres() {
    let Some(db) = pg_db("outage_pg").await else { return };
    writes_survive_a_bus_outage(db, "outage_pg").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_one_relay_publishes_per_postgres_database() {
    let Some(db) = pg_db("lock_pg").await else { return };
    let bus = Arc::new(FlakyBus::default());
    let first = Relay::spawn_with("lock_pg", db.clone(), bus.clone(), fast_relay());
    tokio::time::sleep(Duration::from_millis(300)).await; // it takes the lock
    let second = Relay::spawn_with("lock_pg", db.clone(), bus.clone(), fast_relay());
    let events: Vec<_> = (0..60).map(|i| event(types::TASK_CREATED, i)).collect();
    for chunk in events.chunks(6) {
        write_events(&db, chunk, true).await;
        first.notify();
        second.notify();
    }
    wait_until(WAIT, "60 published", || async { bus.ids().len() >= 60 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.ids(), events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), "no row published twice");

    // The lock holder goes away: the other replica takes over.
    first.shutdown().await;
    let more: Vec<_> = (60..65).map(|i| event(types::TASK_CREATED, i)).collect();
    write_events(&db, &more, true).await;
    wait_until(WAIT, "the second relay publishes", || async { bus.ids().len() >= 65 }).await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_publish_and_mark_is_processed_once() {
    let dir = tempfile::tempdir().unwrap();
    let producer = sqlite_db(&dir, "crash_producer").await;
    let consumer_db = sqlite_db(&dir, "crash_consumer").await;
    let memory = Arc::new(MemoryBus::new());
    let recorder = Recorder::new("crash-audit");
    memory.subscribe("crash-audit", consumer_db.clone(), recorder.clone(), fast_policy(3));

    let ev = event(types::TASK_COMPLETED, 1);
    write_events(&producer, std::slice::from_ref(&ev), true).await;
    // The relay published the row, then "crashed" before marking it.
    memory.publish(&ev).await.unwrap();
    assert_eq!(pending_count(&producer).await.unwrap(), 1);

    // On restart the relay publishes it again; the inbox drops the duplicate.
    let relay = Relay::spawn_with("crash_producer", producer.clone(), memory.clone(), fast_relay());
    wait_until(WAIT, "row marked", || async { pending_count(&producer).await.unwrap() == 0 }).await;
    relay.shutdown().await;
    assert_eq!(handled(&consumer_db, "crash-audit").await, vec![ev.id.clone()]);
    assert_eq!(recorder.calls(), 1, "the handler never saw the duplicate");
    assert_eq!(inbox_count(&consumer_db, "crash-audit").await, 1);
}

// ---------------------------------------------------------------- consumer runner

async fn consumer_retries_dead_letters_and_replays(db: Db, name: &'static str) {
    metrics_on();
    let recorder = Recorder::new(name);
    let consumer = Consumer::new(name, db.clone(), recorder.clone(), fast_policy(4));

    // Fails 3 times (N-1), then succeeds: processed once.
    recorder.fail_first.store(3, Ordering::SeqCst);
    let flaky = event(types::TASK_CREATED, 1);
    assert_eq!(consumer.process(&flaky).await.unwrap(), Outcome::Processed);
    assert_eq!(recorder.calls(), 4);
    assert_eq!(handled(&db, name).await, vec![flaky.id.clone()]);
    assert!(metric(metrics_names::EVENT_BUS_CONSUMED_TOTAL, &[("consumer", name), ("outcome", "retry")]) >= 3.0);
    // Delivered again: a duplicate, the handler is not called.
    assert_eq!(consumer.process(&flaky).await.unwrap(), Outcome::Duplicate);
    assert_eq!(recorder.calls(), 4);

    // Always fails: one dead letter with the error and the attempts.
    recorder.always_fail.store(true, Ordering::SeqCst);
    let poison = event(types::TASK_UPDATED, 2);
    let before = metric(metrics_names::EVENT_BUS_DEAD_LETTER_TOTAL, &[("consumer", name)]);
    assert_eq!(consumer.process(&poison).await.unwrap(), Outcome::DeadLettered);
    assert_eq!(recorder.calls(), 8);
    assert_eq!(metric(metrics_names::EVENT_BUS_DEAD_LETTER_TOTAL, &[("consumer", name)]), before + 1.0);
    let letters = list_dead_letters(&db, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.consumer.as_str(), letter.event_id.as_str(), letter.attempts), (name, poison.id.as_str(), 4));
    assert_eq!(letter.event_type, "task.updated");
    assert!(letter.error.contains("boom on call 7"), "{}", letter.error);
    assert_eq!(letter.replayed_at, None);
    assert_eq!(letter.event().unwrap(), poison);
    assert_eq!(handled(&db, name).await, vec![flaky.id.clone()], "failed attempts rolled back");

    // Replay while still broken: fails, the dead letter stays and counts the attempt.
    assert!(matches!(replay_dead_letter(&db, recorder.as_ref(), &letter.id).await, Err(ReplayError::Handler(_))));
    assert_eq!(list_dead_letters(&db, 10).await.unwrap()[0].attempts, 5);

    // Fixed: replay processes it exactly once; replaying again is a no-op.
    recorder.always_fail.store(false, Ordering::SeqCst);
    assert_eq!(consumer.replay_dead_letter(&letter.id).await.unwrap(), ReplayOutcome::Processed);
    let calls = recorder.calls();
    assert_eq!(replay_dead_letter(&db, recorder.as_ref(), &letter.id).await.unwrap(), ReplayOutcome::AlreadyProcessed);
    assert_eq!(recorder.calls(), calls);
    assert_eq!(handled(&db, name).await, vec![flaky.id.clone(), poison.id.clone()]);
    let replayed = &list_dead_letters(&db, 10).await.unwrap()[0];
    assert!(replayed.replayed_at.is_some());
    // A late redelivery of the replayed event is a duplicate too.
    assert_eq!(consumer.process(&poison).await.unwrap(), Outcome::Duplicate);
    assert!(matches!(replay_dead_letter(&db, recorder.as_ref(), "nope").await, Err(ReplayError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_retries_dead_letters_and_replays_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    consumer_retries_dead_letters_and_replays(sqlite_db(&dir, "dl_sqlite").await, "dl-sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_retries_dead_letters_and_replays_postgres() {
    let Some(db) = pg_db("dl_pg").await else { return };
    consumer_retries_dead_letters_and_replays(db, "dl-pg").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_errors_dead_letter_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir, "permanent").await;
    let recorder = Recorder::new("permanent");
    recorder.permanent.store(true, Ordering::SeqCst);
    let consumer = Consumer::new("permanent", db.clone(), recorder.clone(), fast_policy(5));
    assert_eq!(consumer.process(&event(types::USER_DELETED, 1)).await.unwrap(), Outcome::DeadLettered);
    assert_eq!(recorder.calls(), 1);
    assert_eq!(list_dead_letters(&db, 10).await.unwrap()[0].attempts, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_consumer_database_never_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir, "unavailable").await;
    let recorder = Recorder::new("unavailable");
    let memory = MemoryBus::new();
    memory.subscribe("unavailable", db.clone(), recorder.clone(), fast_policy(2));
    db.close().await;
    let ev = event(types::TASK_CREATED, 1);
    let err = memory.publish(&ev).await.unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert_eq!(recorder.calls(), 0);
}

// ---------------------------------------------------------------- in-process bus

#[tokio::test(flavor = "multi_thread")]
async fn memory_bus_delivers_to_every_consumer_once() {
    metrics_on();
    let dir = tempfile::tempdir().unwrap();
    let producer = sqlite_db(&dir, "mem_producer").await;
    let audit_db = sqlite_db(&dir, "mem_audit").await;
    let tasks_db = sqlite_db(&dir, "mem_tasks").await;
    let memory = Arc::new(MemoryBus::new());
    let audit = Recorder::new("mem-audit");
    let tasks = Recorder::new("mem-tasks");
    memory.subscribe("mem-audit", audit_db.clone(), audit.clone(), fast_policy(3));
    memory.subscribe_filtered("mem-tasks", &["flotilla.task.>"], tasks_db.clone(), tasks.clone(), fast_policy(3));
    assert_eq!(memory.consumers().len(), 2);

    let relay = Relay::spawn_with("mem_producer", producer.clone(), memory.clone(), fast_relay());
    let events = vec![event(types::TASK_CREATED, 1), event(types::USER_SIGNED_UP, 2), event(types::TASK_COMPLETED, 3)];
    write_events(&producer, &events, true).await;
    relay.notify();
    wait_until(WAIT, "delivered", || async { pending_count(&producer).await.unwrap() == 0 }).await;
    relay.shutdown().await;

    let ids = |idx: &[usize]| idx.iter().map(|&i| events[i].id.clone()).collect::<Vec<_>>();
    assert_eq!(handled(&audit_db, "mem-audit").await, ids(&[0, 1, 2]));
    assert_eq!(handled(&tasks_db, "mem-tasks").await, ids(&[0, 2]));

    // A redelivery (e.g. the relay crashed before marking) is a duplicate for both.
    let dup_before =
        metric(metrics_names::EVENT_BUS_CONSUMED_TOTAL, &[("consumer", "mem-audit"), ("outcome", "duplicate")]);
    memory.publish(&events[0]).await.unwrap();
    assert_eq!(
        metric(metrics_names::EVENT_BUS_CONSUMED_TOTAL, &[("consumer", "mem-audit"), ("outcome", "duplicate")]),
        dup_before + 1.0
    );
    assert_eq!((audit.calls(), tasks.calls()), (3, 2));
    assert_eq!(handled(&audit_db, "mem-audit").await, ids(&[0, 1, 2]));
    assert!(metric(metrics_names::EVENT_BUS_PUBLISHED_TOTAL, &[]) >= 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shot_flush_publishes_pending_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir, "flush").await;
    let bus = FlakyBus::default();
    let events: Vec<_> = (0..5).map(|i| event(types::TASK_DELETED, i)).collect();
    write_events(&db, &events, true).await;
    bus.fail_next.store(1, std::sync::atomic::Ordering::SeqCst);
    assert!(publish_pending(&db, &bus, 100).await.is_err(), "stops at the first failure");
    assert_eq!(publish_pending(&db, &bus, 3).await.unwrap(), 3);
    assert_eq!(publish_pending(&db, &bus, 100).await.unwrap(), 2);
    assert_eq!(bus.ids(), events.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    assert_eq!(pending_count(&db).await.unwrap(), 0);

    // A failure in the middle of a pass: the events that went out before it are marked (one
    // statement per pass), the rest stay pending and go out next, none twice.
    let more: Vec<_> = (5..9).map(|i| event(types::TASK_DELETED, i)).collect();
    write_events(&db, &more, true).await;
    *bus.fail_after.lock().unwrap() = Some(7); // 5 accepted so far: two more, then failures
    assert!(publish_pending(&db, &bus, 100).await.is_err());
    assert_eq!(pending_count(&db).await.unwrap(), 2, "the two published before the failure are marked");
    *bus.fail_after.lock().unwrap() = None;
    assert_eq!(publish_pending(&db, &bus, 100).await.unwrap(), 2);
    assert_eq!(bus.ids(), events.iter().chain(&more).map(|e| e.id.clone()).collect::<Vec<_>>());
    assert_eq!(pending_count(&db).await.unwrap(), 0);

    // An invalid envelope fails the write itself.
    let mut tx = db.write().begin().await.unwrap();
    let bad = flotilla_events::Event::new("/flotilla/tasks", "task.*", None, None, serde_json::Value::Null);
    assert!(flotilla_events::enqueue(&mut tx, &bad).await.is_err());
}

// ---------------------------------------------------------------- retention

/// Old published outbox rows and old inbox rows go; unpublished rows stay however old, and so do
/// recent ones.
async fn pruning_keeps_what_is_still_needed(db: Db) {
    use flotilla_events::retention::{EventTables, Pruned, RETENTION, prune_once};
    let events: Vec<flotilla_events::Event> = (0..3).map(|n| event("task.created", n)).collect();
    write_events(&db, &events, true).await;
    let now = flotilla_runtime::time::now_ms();
    let old = now - RETENTION.as_millis() as i64 - 60_000;
    // Row 0: published long ago; row 1: published just now; row 2: never published (bus down for
    // a week) but created long ago.
    for (id, published, created) in
        [(&events[0].id, Some(old), old), (&events[1].id, Some(now), old), (&events[2].id, None, old)]
    {
        sqlx::query("UPDATE outbox SET published_at = $1, created_at = $2 WHERE id = $3")
            .bind(published)
            .bind(created)
            .bind(id.as_str())
            .execute(db.write())
            .await
            .unwrap();
    }
    for (consumer, event_id, at) in [("audit", "e-old", old), ("audit", "e-new", now)] {
        sqlx::query("INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3)")
            .bind(consumer)
            .bind(event_id)
            .bind(at)
            .execute(db.write())
            .await
            .unwrap();
    }
    assert_eq!(prune_once(&db, EventTables::BOTH, now).await.unwrap(), Pruned { outbox: 1, inbox: 1 });
    let left: Vec<String> =
        sqlx::query_scalar("SELECT id FROM outbox ORDER BY seq").fetch_all(db.read()).await.unwrap();
    assert_eq!(left, vec![events[1].id.clone(), events[2].id.clone()]);
    let inbox: Vec<String> = sqlx::query_scalar("SELECT event_id FROM inbox").fetch_all(db.read()).await.unwrap();
    assert_eq!(inbox, vec!["e-new".to_owned()]);
    assert_eq!(
        prune_once(&db, EventTables::BOTH, now).await.unwrap(),
        Pruned::default(),
        "a second pass finds nothing"
    );
}

/// A producer's database (accounts) has no inbox and the audit log's no outbox: each is pruned
/// without touching the table it lacks (before, the missing table failed every pass).
#[tokio::test]
async fn pruning_touches_only_the_tables_a_database_has() {
    use flotilla_events::retention::{EventTables, Pruned, RETENTION, prune_once};
    let dir = tempfile::tempdir().unwrap();
    let now = flotilla_runtime::time::now_ms();
    let old = now - RETENTION.as_millis() as i64 - 60_000;

    let producer = sqlite_db(&dir, "producer").await;
    let events: Vec<flotilla_events::Event> = (0..2).map(|n| event("user.created", n)).collect();
    write_events(&producer, &events, true).await;
    sqlx::query("UPDATE outbox SET published_at = $1, created_at = $1")
        .bind(old)
        .execute(producer.write())
        .await
        .unwrap();
    sqlx::query("DROP TABLE inbox").execute(producer.write()).await.unwrap();
    assert_eq!(prune_once(&producer, EventTables::OUTBOX, now).await.unwrap(), Pruned { outbox: 2, inbox: 0 });
    assert!(prune_once(&producer, EventTables::BOTH, now).await.is_err(), "the inbox is missing");

    let consumer = sqlite_db(&dir, "consumer").await;
    sqlx::query("INSERT INTO inbox (consumer, event_id, processed_at) VALUES ('audit', 'e-old', $1)")
        .bind(old)
        .execute(consumer.write())
        .await
        .unwrap();
    sqlx::query("DROP TABLE outbox").execute(consumer.write()).await.unwrap();
    assert_eq!(prune_once(&consumer, EventTables::INBOX, now).await.unwrap(), Pruned { outbox: 0, inbox: 1 });
    assert!(prune_once(&consumer, EventTables::BOTH, now).await.is_err(), "the outbox is missing");
}

#[tokio::test]
async fn pruning_keeps_what_is_still_needed_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pruning_keeps_what_is_still_needed(sqlite_db(&dir, "prune").await).await;
}

#[tokio::test]
async fn pruning_keeps_what_is_still_needed_postgres() {
    let Some(db) = pg_db("prune").await else { return };
    pruning_keeps_what_is_still_needed(db).await;
}
