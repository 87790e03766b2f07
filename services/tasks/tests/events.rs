//! The tasks service's events on SQLite and PostgreSQL: what each write enqueues, the consumer
//! (recurrence exactly once, user deletion) and the reminder scheduler.

use std::time::Duration;

use flotilla_events::event::{sources, types};
use flotilla_events::{Consumer, Event, Outcome, RetryPolicy};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::time::{format_ms, now_ms, parse_rfc3339};
use flotilla_tasks::events::{CONSUMER, TasksHandler};
use flotilla_tasks::model::{Freq, Priority, Recurrence, Task, TaskContent};
use flotilla_tasks::query::{ListQuery, Status};
use flotilla_tasks::reminders::Scheduler;
use flotilla_tasks::{MIGRATIONS, SERVICE, Store, TaskError, Tasks};
use serde_json::json;
use std::sync::Arc;

async fn sqlite_db() -> (Db, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let db = Db::open_and_migrate(SERVICE, &url, MIGRATIONS, PoolSettings::default()).await.expect("sqlite opens");
    (db, Some(dir))
}

async fn postgres_db() -> Option<(Db, Option<tempfile::TempDir>)> {
    let url = tokio::task::spawn_blocking(|| flotilla_testkit::pg_or_skip().map(|pg| pg.create_database()))
        .await
        .expect("pg setup")?;
    let db = Db::open_and_migrate(SERVICE, &url, MIGRATIONS, PoolSettings::default()).await.expect("postgres opens");
    Some((db, None))
}

macro_rules! event_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (db, _dir) = super::sqlite_db().await;
                    super::$case(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some((db, _dir)) = super::postgres_db().await {
                        super::$case(db).await;
                    }
                }
            )*
        }
    };
}

event_tests!(
    each_write_enqueues_exactly_one_event_and_rejected_writes_none,
    a_completion_delivered_twice_creates_one_next_occurrence,
    racing_consumers_create_one_next_occurrence,
    monthly_recurrence_clamps_the_day,
    until_and_count_end_the_series,
    user_deleted_removes_only_that_users_tasks,
    two_schedulers_emit_each_reminder_once,
);

fn ts(s: &str) -> i64 {
    parse_rfc3339(s).unwrap()
}

fn content(title: &str) -> TaskContent {
    TaskContent {
        title: title.into(),
        description: Some("details".into()),
        priority: Priority::High,
        tags: vec!["home".into(), "weekly".into()],
        due_at: None,
        remind_at: None,
        recurrence: None,
    }
}

fn recurring(title: &str, due: &str, rule: Recurrence) -> TaskContent {
    TaskContent { due_at: Some(ts(due)), recurrence: Some(rule), ..content(title) }
}

fn rule(freq: Freq) -> Recurrence {
    Recurrence { freq, interval: 1, until: None, count: None }
}

/// Every event in the outbox, in order.
async fn outbox(db: &Db) -> Vec<Event> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM outbox ORDER BY seq").fetch_all(db.read()).await.unwrap();
    rows.iter().map(|p| Event::from_json(p.as_bytes()).unwrap()).collect()
}

fn types_of(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.r#type.as_str()).collect()
}

fn consumer(db: &Db) -> Consumer {
    let policy =
        RetryPolicy { max_attempts: 3, base_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(20) };
    Consumer::new(CONSUMER, db.clone(), Arc::new(TasksHandler::default()), policy)
}

/// The user's tasks, oldest first.
async fn all_tasks(store: &Store, user: &str) -> Vec<Task> {
    store
        .list(user, &ListQuery { limit: 100, status: Status::All, ..ListQuery::default() }, now_ms())
        .await
        .unwrap()
        .tasks
}

/// Completes `task` through the service and returns its `task.completed` event.
async fn complete(tasks: &Tasks, db: &Db, task: &Task) -> Event {
    let done = tasks
        .modify(&task.user_id, &task.id, None, |t, now| {
            let mut next = t.clone();
            next.set_completed(true, now);
            Ok(next)
        })
        .await
        .unwrap();
    assert!(done.completed);
    let last = outbox(db).await.pop().unwrap();
    assert_eq!((last.r#type.as_str(), last.subject.as_deref()), (types::TASK_COMPLETED, Some(task.id.as_str())));
    last
}

async fn each_write_enqueues_exactly_one_event_and_rejected_writes_none(db: Db) {
    let store = Store::new(db.clone());
    let tasks = Tasks::new(store.clone());
    let user = "0190a0b0-0000-7000-8000-00000000000a";
    let task = tasks.create(user, content("Buy milk"), None).await.unwrap().task;
    let edited = tasks
        .modify(user, &task.id, Some(&task.etag()), |t, _| Ok(Task { title: "Buy oat milk".into(), ..t.clone() }))
        .await
        .unwrap();
    // A no-op write stores nothing and emits nothing.
    tasks.modify(user, &task.id, None, |t, _| Ok(t.clone())).await.unwrap();
    // Rejected writes: a stale If-Match (412) and invalid fields (422).
    let stale =
        tasks.modify(user, &task.id, Some(&task.etag()), |t, _| Ok(Task { title: "x".into(), ..t.clone() })).await;
    assert!(matches!(stale, Err(TaskError::PreconditionFailed { .. })), "{stale:?}");
    let invalid = tasks
        .modify(user, &task.id, None, |_, _| Err(vec![flotilla_runtime::FieldError::new("title", "must not be empty")]))
        .await;
    assert!(matches!(invalid, Err(TaskError::Invalid(_))));
    assert!(matches!(tasks.delete(user, &task.id, Some("\"99\"")).await, Err(TaskError::PreconditionFailed { .. })));
    complete(&tasks, &db, &edited).await;
    tasks
        .modify(user, &task.id, None, |t, now| {
            let mut next = t.clone();
            next.set_completed(false, now);
            Ok(next)
        })
        .await
        .unwrap();
    // An idempotent replay creates nothing, so it emits nothing.
    let key = Tasks::idempotency_key(b"k-1", b"{}").unwrap();
    let first = tasks.create(user, content("Once"), Some(&key)).await.unwrap();
    let replay = tasks.create(user, content("Once"), Some(&key)).await.unwrap();
    assert!(replay.replayed);
    tasks.delete(user, &task.id, None).await.unwrap();

    let events = outbox(&db).await;
    assert_eq!(
        types_of(&events),
        vec![
            types::TASK_CREATED,
            types::TASK_UPDATED,
            types::TASK_COMPLETED,
            types::TASK_REOPENED,
            types::TASK_CREATED,
            types::TASK_DELETED
        ]
    );
    for ev in &events {
        assert_eq!(ev.source, sources::TASKS);
        assert_eq!(ev.userid.as_deref(), Some(user));
    }
    assert_eq!(events[0].data["title"], "Buy milk");
    assert_eq!(events[0].data["tags"], json!(["home", "weekly"]));
    assert_eq!(events[1].data["title"], "Buy oat milk");
    assert_eq!(events[1].data["version"], 2);
    assert_eq!(events[2].data["completed"], true);
    assert_eq!(events[4].subject.as_deref(), Some(first.task.id.as_str()));
    assert_eq!(events[5].data, json!({ "id": task.id }));
    assert_eq!(events[5].subject.as_deref(), Some(task.id.as_str()));
}

async fn a_completion_delivered_twice_creates_one_next_occurrence(db: Db) {
    let store = Store::new(db.clone());
    let tasks = Tasks::new(store.clone());
    let user = "0190a0b0-0000-7000-8000-00000000000b";
    let mut c = recurring("Water plants", "2030-03-10T08:00:00Z", rule(Freq::Daily));
    c.remind_at = Some(ts("2030-03-10T07:30:00Z"));
    let first = tasks.create(user, c, None).await.unwrap().task;
    let completed = complete(&tasks, &db, &first).await;
    let consumer = consumer(&db);
    assert_eq!(consumer.process(&completed).await.unwrap(), Outcome::Processed);
    assert_eq!(consumer.process(&completed).await.unwrap(), Outcome::Duplicate, "the redelivery is dropped");

    let list = all_tasks(&store, user).await;
    assert_eq!(list.len(), 2);
    let next = list.iter().find(|t| t.id != first.id).unwrap();
    assert!(!next.completed);
    assert_eq!(format_ms(next.due_at.unwrap()), "2030-03-11T08:00:00.000Z");
    assert_eq!(format_ms(next.remind_at.unwrap()), "2030-03-11T07:30:00.000Z");
    assert_eq!((next.title.as_str(), next.description.as_deref()), ("Water plants", Some("details")));
    assert_eq!((next.priority, &next.tags, next.recurrence), (first.priority, &first.tags, first.recurrence));
    let series = next.series.clone().unwrap();
    assert_eq!((series.id.as_str(), series.occurrence), (first.id.as_str(), 2));
    let created = outbox(&db).await.pop().unwrap();
    assert_eq!((created.r#type.as_str(), created.subject.as_deref()), (types::TASK_CREATED, Some(next.id.as_str())));
    assert_eq!(created.data["series"], json!({"id": first.id, "occurrence": 2}));

    // Reopened and completed again: a new event, but the same occurrence: still one next task.
    tasks
        .modify(user, &first.id, None, |t, now| {
            let mut n = t.clone();
            n.set_completed(false, now);
            Ok(n)
        })
        .await
        .unwrap();
    let again = complete(&tasks, &db, &first).await;
    assert_ne!(again.id, completed.id);
    assert_eq!(consumer.process(&again).await.unwrap(), Outcome::Processed);
    assert_eq!(all_tasks(&store, user).await.len(), 2);

    // Completing the second occurrence creates the third, in the same series.
    let done2 = complete(&tasks, &db, next).await;
    consumer.process(&done2).await.unwrap();
    let list = all_tasks(&store, user).await;
    assert_eq!(list.len(), 3);
    let third = list.iter().find(|t| t.series.as_ref().is_some_and(|s| s.occurrence == 3)).unwrap();
    assert_eq!(third.series.as_ref().unwrap().id, first.id);
    assert_eq!(format_ms(third.due_at.unwrap()), "2030-03-12T08:00:00.000Z");
}

async fn racing_consumers_create_one_next_occurrence(db: Db) {
    let store = Store::new(db.clone());
    let tasks = Tasks::new(store.clone());
    let user = "0190a0b0-0000-7000-8000-00000000000c";
    for round in 0..5 {
        let task = tasks
            .create(user, recurring(&format!("Round {round}"), "2030-01-01T09:00:00Z", rule(Freq::Weekly)), None)
            .await
            .unwrap()
            .task;
        let completed = complete(&tasks, &db, &task).await;
        // Two replicas (two consumer instances, same database) get the same event at once, and a
        // third delivery comes as a different event id (a reopen + complete elsewhere).
        let mut second = completed.clone();
        second.id = flotilla_runtime::ids::new_id();
        let (a, b, c) = (consumer(&db), consumer(&db), consumer(&db));
        let (ra, rb, rc) = tokio::join!(a.process(&completed), b.process(&completed), c.process(&second));
        let outcomes = [ra.unwrap(), rb.unwrap(), rc.unwrap()];
        assert!(outcomes.iter().all(|o| *o != Outcome::DeadLettered), "{outcomes:?}");
        let n = all_tasks(&store, user).await.iter().filter(|t| t.title == format!("Round {round}")).count();
        assert_eq!(n, 2, "round {round}: one next occurrence ({outcomes:?})");
    }
    let created = outbox(&db).await.iter().filter(|e| e.r#type == types::TASK_CREATED).count();
    assert_eq!(created, 10, "one task.created per task, none for the losers");
}

async fn monthly_recurrence_clamps_the_day(db: Db) {
    let store = Store::new(db.clone());
    let tasks = Tasks::new(store.clone());
    let user = "0190a0b0-0000-7000-8000-00000000000d";
    let task = tasks
        .create(user, recurring("Pay rent", "2031-01-31T17:00:00Z", rule(Freq::Monthly)), None)
        .await
        .unwrap()
        .task;
    let consumer = consumer(&db);
    consumer.process(&complete(&tasks, &db, &task).await).await.unwrap();
    let feb = all_tasks(&store, user).await.into_iter().find(|t| !t.completed).unwrap();
    assert_eq!(format_ms(feb.due_at.unwrap()), "2031-02-28T17:00:00.000Z");
    consumer.process(&complete(&tasks, &db, &feb).await).await.unwrap();
    let mar = all_tasks(&store, user).await.into_iter().find(|t| !t.completed).unwrap();
    assert_eq!(format_ms(mar.due_at.unwrap()), "2031-03-28T17:00:00.000Z");
    assert_eq!(mar.series.unwrap().occurrence, 3);
}

async fn until_and_count_end_the_series(db: Db) {
    let store = Store::new(db.clone());
    let tasks = Tasks::new(store.clone());
    let consumer = consumer(&db);
    let user = "0190a0b0-0000-7000-8000-00000000000e";
    // count = 2: the first task and one more.
    let counted = Recurrence { count: Some(2), ..rule(Freq::Daily) };
    let t = tasks.create(user, recurring("Counted", "2030-05-01T10:00:00Z", counted), None).await.unwrap().task;
    consumer.process(&complete(&tasks, &db, &t).await).await.unwrap();
    let second = all_tasks(&store, user).await.into_iter().find(|t| !t.completed).unwrap();
    consumer.process(&complete(&tasks, &db, &second).await).await.unwrap();
    assert!(all_tasks(&store, user).await.iter().all(|t| t.completed), "no third occurrence");
    assert_eq!(all_tasks(&store, user).await.len(), 2);

    // until: the next due date must not pass it.
    let bounded = Recurrence { until: Some(ts("2030-06-02T12:00:00Z")), ..rule(Freq::Daily) };
    let t = tasks.create(user, recurring("Bounded", "2030-06-01T10:00:00Z", bounded), None).await.unwrap().task;
    consumer.process(&complete(&tasks, &db, &t).await).await.unwrap();
    let next = all_tasks(&store, user).await.into_iter().find(|t| !t.completed).unwrap();
    assert_eq!(format_ms(next.due_at.unwrap()), "2030-06-02T10:00:00.000Z");
    consumer.process(&complete(&tasks, &db, &next).await).await.unwrap();
    assert!(all_tasks(&store, user).await.iter().all(|t| t.completed), "2030-06-03 is after until");
    assert_eq!(all_tasks(&store, user).await.len(), 4);

    // A task without recurrence: nothing.
    let plain = tasks.create(user, content("Plain"), None).await.unwrap().task;
    assert_eq!(consumer.process(&complete(&tasks, &db, &plain).await).await.unwrap(), Outcome::Processed);
    assert_eq!(all_tasks(&store, user).await.len(), 5);
}

async fn user_deleted_removes_only_that_users_tasks(db: Db) {
    let store = Store::new(db.clone());
    let tasks = Tasks::new(store.clone());
    let (gone, stays) = ("0190a0b0-0000-7000-8000-0000000000f1", "0190a0b0-0000-7000-8000-0000000000f2");
    let key = Tasks::idempotency_key(b"k", b"{}").unwrap();
    let mut gone_ids = Vec::new();
    for i in 0..3 {
        let idem = (i == 0).then_some(&key);
        gone_ids.push(tasks.create(gone, content(&format!("g{i}")), idem).await.unwrap().task.id);
    }
    tasks.create(stays, content("s"), Some(&key)).await.unwrap();
    let before = outbox(&db).await.len();
    let deleted =
        Event::new(sources::ACCOUNTS, types::USER_DELETED, Some(gone.into()), Some(gone.into()), json!({ "id": gone }));
    let consumer = consumer(&db);
    assert_eq!(consumer.process(&deleted).await.unwrap(), Outcome::Processed);
    assert_eq!(consumer.process(&deleted).await.unwrap(), Outcome::Duplicate);
    assert!(all_tasks(&store, gone).await.is_empty());
    assert_eq!(all_tasks(&store, stays).await.len(), 1);
    let count = |sql: &'static str, user: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).bind(user).fetch_one(db.read()).await.unwrap() }
    };
    assert_eq!(count("SELECT COUNT(*) FROM task_tags WHERE user_id = $1", gone).await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM task_tags WHERE user_id = $1", stays).await, 2);
    assert_eq!(count("SELECT COUNT(*) FROM idempotency_keys WHERE user_id = $1", gone).await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM idempotency_keys WHERE user_id = $1", stays).await, 1);
    let events = outbox(&db).await.split_off(before);
    assert_eq!(types_of(&events), vec![types::TASK_DELETED; 3], "one task.deleted per task");
    let mut subjects: Vec<String> = events.iter().map(|e| e.subject.clone().unwrap()).collect();
    subjects.sort();
    gone_ids.sort();
    assert_eq!(subjects, gone_ids);
    assert!(events.iter().all(|e| e.userid.as_deref() == Some(gone)));
}

async fn two_schedulers_emit_each_reminder_once(db: Db) {
    let store = Store::new(db.clone());
    let tasks = Tasks::new(store.clone());
    let user = "0190a0b0-0000-7000-8000-0000000000a1";
    let now = now_ms();
    let mut due_ids = Vec::new();
    for i in 0..6 {
        let c = TaskContent { remind_at: Some(now - 1000 - i), ..content(&format!("due {i}")) };
        due_ids.push(tasks.create(user, c, None).await.unwrap().task.id);
    }
    let later = tasks
        .create(user, TaskContent { remind_at: Some(now + 3_600_000), ..content("later") }, None)
        .await
        .unwrap()
        .task;
    let done =
        tasks.create(user, TaskContent { remind_at: Some(now - 5000), ..content("done") }, None).await.unwrap().task;
    complete(&tasks, &db, &done).await;

    let a = Scheduler::new(store.clone(), Duration::from_millis(100));
    let b = Scheduler::new(store.clone(), Duration::from_millis(100));
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.is_none() || rb.is_none(), "one lease holder at a time: {ra:?} {rb:?}");
    assert_eq!(ra.or(rb), Some(6));
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(a.tick(), b.tick());
        assert_eq!(ra.unwrap().unwrap_or(0) + rb.unwrap().unwrap_or(0), 0, "nothing is emitted twice");
    }
    let reminders: Vec<Event> =
        outbox(&db).await.into_iter().filter(|e| e.r#type == types::TASK_REMINDER_DUE).collect();
    let mut ids: Vec<String> = reminders.iter().map(|e| e.subject.clone().unwrap()).collect();
    ids.sort();
    due_ids.sort();
    assert_eq!(ids, due_ids, "each due reminder once; none for later or completed tasks");
    assert!(!ids.contains(&later.id));

    // Moving a reminder resets it: it is due again, once.
    let moved = tasks
        .modify(user, &due_ids[0], None, |t, _| Ok(Task { remind_at: Some(now - 10), ..t.clone() }))
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    assert_eq!(ra.unwrap().unwrap_or(0) + rb.unwrap().unwrap_or(0), 1);
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    assert_eq!(ra.unwrap().unwrap_or(0) + rb.unwrap().unwrap_or(0), 0);
    let last = outbox(&db).await.into_iter().rfind(|e| e.r#type == types::TASK_REMINDER_DUE).unwrap();
    assert_eq!(last.subject.as_deref(), Some(moved.id.as_str()));

    // While a lease is held, a third scheduler does nothing; once released, it takes over at once.
    let c = Scheduler::new(store.clone(), Duration::from_millis(100));
    assert_eq!(c.tick().await.unwrap(), None, "the lease is held");
    store.release_lease("reminders", a.holder()).await.unwrap();
    store.release_lease("reminders", b.holder()).await.unwrap();
    assert_eq!(c.tick().await.unwrap(), Some(0), "a released lease is free");
}

#[test]
fn migrations_hold_the_published_event_ddl() {
    use flotilla_events::consumer::{DEAD_LETTERS_POSTGRES, DEAD_LETTERS_SQLITE, INBOX_POSTGRES, INBOX_SQLITE};
    use flotilla_events::outbox::{OUTBOX_POSTGRES, OUTBOX_SQLITE};
    let sqlite = include_str!("../migrations/sqlite/0002_events.sql");
    let postgres = include_str!("../migrations/postgres/0002_events.sql");
    for ddl in [OUTBOX_SQLITE, INBOX_SQLITE, DEAD_LETTERS_SQLITE] {
        assert!(sqlite.contains(ddl), "sqlite migration lacks:\n{ddl}");
    }
    for ddl in [OUTBOX_POSTGRES, INBOX_POSTGRES, DEAD_LETTERS_POSTGRES] {
        assert!(postgres.contains(ddl), "postgres migration lacks:\n{ddl}");
    }
}
