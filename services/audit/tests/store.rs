//! Store tests, written once and run on SQLite and on PostgreSQL (a throwaway cluster from
//! flotilla-testkit; skipped loudly when the PostgreSQL binaries are missing). Records are
//! appended the way production appends them: the audit handler run by a `Consumer`.

use std::collections::HashSet;

use flotilla_audit::cursor::Cursor;
use flotilla_audit::query::Filter;
use flotilla_audit::store::{RETENTION_BATCH, append};
use flotilla_audit::{CONSUMER, MIGRATIONS, SERVICE, Store, handler};
use flotilla_events::consumer::{is_processed, prune_inbox};
use flotilla_events::event::{sources, types};
use flotilla_events::{Consumer, Event, Outcome, RetryPolicy};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::time::{format_ms, now_ms, parse_rfc3339};
use serde_json::json;

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let db = Db::open_and_migrate(SERVICE, &url, MIGRATIONS, PoolSettings::default()).await.expect("sqlite opens");
    (Store::new(db), dir)
}

async fn postgres_store() -> Option<Store> {
    let pg = flotilla_testkit::pg_or_skip()?;
    let url = pg.create_database();
    let db = Db::open_and_migrate(SERVICE, &url, MIGRATIONS, PoolSettings::default()).await.expect("postgres opens");
    Some(Store::new(db))
}

/// Generates `sqlite::<case>` and `postgres::<case>` for every case.
macro_rules! store_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(store) = super::postgres_store().await {
                        super::$case(store).await;
                    }
                }
            )*
        }
    };
}

store_tests!(
    every_event_makes_one_record_with_its_fields,
    a_replayed_event_never_makes_a_second_record,
    activity_is_newest_first_and_keyset_paging_returns_each_event_once,
    admin_filters_by_type_user_and_time,
    retention_deletes_only_old_records,
);

const ALICE: &str = "0190a0b0-0000-7000-8000-00000000000a";
const BOB: &str = "0190a0b0-0000-7000-8000-00000000000b";

fn consumer(store: &Store) -> Consumer {
    let db = store.db().clone();
    Consumer::new(CONSUMER, db.clone(), handler(db), RetryPolicy::default())
}

fn event(ty: &str, user: Option<&str>, n: usize) -> Event {
    let source = if ty.starts_with("user.") { sources::ACCOUNTS } else { sources::TASKS };
    Event::new(source, ty, Some(format!("subject-{n}")), user.map(str::to_owned), json!({ "n": n }))
}

fn at(mut ev: Event, time: &str) -> Event {
    ev.time = format_ms(parse_rfc3339(time).expect("valid time"));
    ev
}

async fn process(c: &Consumer, ev: &Event) -> Outcome {
    c.process(ev).await.expect("processed")
}

fn all(limit: i64) -> Filter {
    Filter { limit, ..Filter::default() }
}

/// Every record matching `f`, following the cursors; checks that no page is over the limit.
async fn collect(store: &Store, mut f: Filter) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = store.list(&f).await.expect("list");
        assert!(page.records.len() as i64 <= f.limit);
        ids.extend(page.records.iter().map(|r| r.id.clone()));
        match page.next_cursor {
            Some(c) => f.cursor = Some(Cursor::decode(&c).expect("our own cursor")),
            None => return ids,
        }
    }
}

async fn every_event_makes_one_record_with_its_fields(store: Store) {
    let c = consumer(&store);
    let events = [
        at(event(types::TASK_CREATED, Some(ALICE), 1), "2026-03-01T10:00:00.250+01:00"),
        event(types::USER_SIGNED_UP, Some(BOB), 2),
        Event::new(sources::ACCOUNTS, types::USER_LOGIN_FAILED, None, None, json!({"reason": "bad password"})),
    ];
    for ev in &events {
        assert_eq!(process(&c, ev).await, Outcome::Processed);
    }
    let before = now_ms();
    let ids = collect(&store, all(100)).await;
    assert_eq!(ids, events.iter().rev().map(|e| e.id.clone()).collect::<Vec<_>>());

    let r = store.get(&events[0].id).await.unwrap().expect("recorded");
    assert_eq!(r.event_type, "task.created");
    assert_eq!(r.source, "/flotilla/tasks");
    assert_eq!(r.subject.as_deref(), Some("subject-1"));
    assert_eq!(r.user_id.as_deref(), Some(ALICE));
    assert_eq!(r.time_ms, parse_rfc3339("2026-03-01T09:00:00.250Z").unwrap());
    assert!(r.recorded_at <= before && r.recorded_at > before - 60_000);
    assert_eq!(r.data, json!({"n": 1}));
    assert_eq!(r.to_activity_json().time, "2026-03-01T09:00:00.250Z");

    let anonymous = store.get(&events[2].id).await.unwrap().expect("recorded");
    assert_eq!((anonymous.subject, anonymous.user_id), (None, None));
    assert_eq!(anonymous.data, json!({"reason": "bad password"}));
}

async fn a_replayed_event_never_makes_a_second_record(store: Store) {
    let c = consumer(&store);
    let ev = event(types::TASK_COMPLETED, Some(ALICE), 1);
    assert_eq!(process(&c, &ev).await, Outcome::Processed);
    assert_eq!(process(&c, &ev).await, Outcome::Duplicate, "the inbox drops a redelivery");
    assert_eq!(collect(&store, all(100)).await, vec![ev.id.clone()]);

    // Even with the inbox row gone (pruned), the log keeps one record per event id.
    prune_inbox(store.db(), now_ms() + 1).await.unwrap();
    assert!(!is_processed(store.db(), CONSUMER, &ev.id).await.unwrap());
    assert_eq!(process(&c, &ev).await, Outcome::Processed);
    assert_eq!(collect(&store, all(100)).await, vec![ev.id.clone()]);

    // And the statement itself says so.
    let mut conn = store.db().write().acquire().await.unwrap();
    assert!(!append(&mut conn, &ev, now_ms()).await.unwrap());
    drop(conn);

    // Two replicas racing on the same event: still one record.
    let other = event(types::TASK_UPDATED, Some(ALICE), 2);
    let replica = consumer(&store);
    let (a, b) = tokio::join!(c.process(&other), replica.process(&other));
    let outcomes = [a.unwrap(), b.unwrap()];
    assert!(outcomes.contains(&Outcome::Processed), "{outcomes:?}");
    assert_eq!(collect(&store, all(100)).await, [other.id.clone(), ev.id.clone()]);
}

async fn activity_is_newest_first_and_keyset_paging_returns_each_event_once(store: Store) {
    let c = consumer(&store);
    let mut alice = Vec::new();
    for n in 0..45 {
        let ev = event(types::TASK_CREATED, Some(ALICE), n);
        process(&c, &ev).await;
        alice.push(ev.id.clone());
        if n % 3 == 0 {
            process(&c, &event(types::TASK_UPDATED, Some(BOB), n)).await;
        }
    }
    alice.reverse();
    for limit in [1, 7, 10, 20, 45, 100] {
        let f = Filter { user_id: Some(ALICE.into()), limit, ..Filter::default() };
        let ids = collect(&store, f).await;
        assert_eq!(ids, alice, "limit {limit}: every event once, newest first");
    }
    let first = store.list(&Filter { user_id: Some(ALICE.into()), limit: 10, ..Filter::default() }).await.unwrap();
    assert_eq!(first.records.len(), 10);
    assert!(first.next_cursor.is_some());
    assert!(first.records.windows(2).all(|w| w[0].seq > w[1].seq));
    let exact = store.list(&Filter { user_id: Some(ALICE.into()), limit: 45, ..Filter::default() }).await.unwrap();
    assert_eq!((exact.records.len(), exact.next_cursor), (45, None), "no cursor to an empty page");

    // Events recorded while paging appear on the first page of a new listing, not in between.
    let mut f = Filter { user_id: Some(ALICE.into()), limit: 20, ..Filter::default() };
    let page1 = store.list(&f).await.unwrap();
    let late = event(types::TASK_DELETED, Some(ALICE), 99);
    process(&c, &late).await;
    f.cursor = Some(Cursor::decode(page1.next_cursor.as_deref().unwrap()).unwrap());
    let rest = collect(&store, f).await;
    let seen: Vec<String> = page1.records.iter().map(|r| r.id.clone()).chain(rest).collect();
    assert_eq!(seen, alice);
    assert_eq!(
        store.list(&Filter { user_id: Some(ALICE.into()), limit: 1, ..Filter::default() }).await.unwrap().records[0].id,
        late.id
    );
    assert!(collect(&store, Filter { user_id: Some("nobody".into()), ..Filter::default() }).await.is_empty());
}

async fn admin_filters_by_type_user_and_time(store: Store) {
    let c = consumer(&store);
    let e = [
        at(event(types::TASK_CREATED, Some(ALICE), 0), "2026-01-01T00:00:00Z"),
        at(event(types::TASK_CREATED, Some(BOB), 1), "2026-01-02T00:00:00Z"),
        at(event(types::TASK_COMPLETED, Some(ALICE), 2), "2026-01-03T00:00:00Z"),
        at(event(types::USER_LOGGED_IN, Some(BOB), 3), "2026-01-04T00:00:00Z"),
        at(event(types::USER_LOGIN_FAILED, None, 4), "2026-01-05T00:00:00Z"),
    ];
    for ev in &e {
        process(&c, ev).await;
    }
    let ids = |idx: &[usize]| idx.iter().map(|&i| e[i].id.clone()).collect::<Vec<_>>();
    let t = |s: &str| parse_rfc3339(s).unwrap();
    let cases: Vec<(Filter, Vec<String>)> = vec![
        (all(20), ids(&[4, 3, 2, 1, 0])),
        (Filter { event_type: Some("task.created".into()), ..all(20) }, ids(&[1, 0])),
        (Filter { user_id: Some(ALICE.into()), ..all(20) }, ids(&[2, 0])),
        (Filter { user_id: Some(BOB.into()), event_type: Some("user.logged_in".into()), ..all(20) }, ids(&[3])),
        (Filter { since: Some(t("2026-01-02T00:00:00Z")), ..all(20) }, ids(&[4, 3, 2, 1])),
        (Filter { until: Some(t("2026-01-02T00:00:00Z")), ..all(20) }, ids(&[0])),
        (
            Filter { since: Some(t("2026-01-02T00:00:00Z")), until: Some(t("2026-01-04T00:00:00Z")), ..all(20) },
            ids(&[2, 1]),
        ),
        (Filter { since: Some(t("2026-01-01T12:00:00Z")), user_id: Some(ALICE.into()), ..all(1) }, ids(&[2])),
        (Filter { event_type: Some("chat.turn_completed".into()), ..all(20) }, vec![]),
    ];
    for (f, want) in cases {
        assert_eq!(collect(&store, f.clone()).await, want, "{f:?}");
    }
    // Paging with a filter keeps the filter.
    let paged = collect(&store, Filter { user_id: Some(BOB.into()), ..all(1) }).await;
    assert_eq!(paged, ids(&[3, 1]));
}

async fn retention_deletes_only_old_records(store: Store) {
    let c = consumer(&store);
    let day = 86_400_000;
    let now = now_ms();
    let old = at(event(types::TASK_CREATED, Some(ALICE), 0), &format_ms(now - 400 * day));
    let edge = at(event(types::TASK_CREATED, Some(ALICE), 1), &format_ms(now - 365 * day + 60_000));
    let fresh = event(types::TASK_CREATED, Some(ALICE), 2);
    for ev in [&old, &edge, &fresh] {
        process(&c, ev).await;
    }
    let cutoff = now - 365 * day;
    assert_eq!(store.enforce_retention(cutoff).await.unwrap(), 1);
    assert_eq!(collect(&store, all(100)).await, [fresh.id.clone(), edge.id.clone()]);
    assert_eq!(store.enforce_retention(cutoff).await.unwrap(), 0, "nothing more to delete");
    // A redelivery of the retained events still changes nothing.
    assert_eq!(process(&c, &edge).await, Outcome::Duplicate);

    // More old records than one batch: all go, the recent ones stay.
    let mut conn = store.db().write().begin().await.unwrap();
    let many = RETENTION_BATCH as usize + 7;
    for n in 0..many {
        let ev = at(event(types::TASK_UPDATED, Some(BOB), n), &format_ms(now - 500 * day + n as i64));
        assert!(append(&mut conn, &ev, now).await.unwrap());
    }
    conn.commit().await.unwrap();
    assert_eq!(store.enforce_retention(cutoff).await.unwrap(), many as u64);
    let left: HashSet<String> = collect(&store, all(100)).await.into_iter().collect();
    assert_eq!(left, HashSet::from([fresh.id.clone(), edge.id.clone()]));
}

/// The periodic job runs once at start (then hourly) and applies the configured retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_job_runs_at_start() {
    let (store, _dir) = sqlite_store().await;
    let c = consumer(&store);
    let day = 86_400_000;
    let old = at(event(types::TASK_CREATED, Some(ALICE), 0), &format_ms(now_ms() - 31 * day));
    let recent = at(event(types::TASK_CREATED, Some(ALICE), 1), &format_ms(now_ms() - 29 * day));
    process(&c, &old).await;
    process(&c, &recent).await;
    let cfg = flotilla_audit::Config { retention: std::time::Duration::from_secs(30 * 86_400) };
    let job = flotilla_audit::spawn_retention(store.db().clone(), &cfg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while collect(&store, all(100)).await.len() > 1 {
        assert!(std::time::Instant::now() < deadline, "the retention job did not run");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(collect(&store, all(100)).await, vec![recent.id.clone()]);
    assert!(!job.is_finished(), "it keeps running for the next hour");
    job.abort();
}
