//! Store tests, written once and run on SQLite and on PostgreSQL (a throwaway cluster from
//! flotilla-testkit; skipped loudly when the PostgreSQL binaries are missing).

use std::cmp::Ordering;
use std::collections::HashSet;

use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::parse_rfc3339;
use flotilla_tasks::cursor::{Cursor, Order, Sort, SortKey};
use flotilla_tasks::model::{Freq, Priority, Recurrence, Task, TaskContent};
use flotilla_tasks::query::{ListQuery, Status};
use flotilla_tasks::store::{CreateOutcome, IdempotencyKey};
use flotilla_tasks::{MIGRATIONS, SERVICE, Store};

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
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
    create_get_update_delete,
    stale_versions_change_nothing,
    every_filter,
    every_sort_in_both_orders_with_missing_due_dates_last,
    keyset_pagination_returns_every_task_once_in_order,
    search_treats_percent_and_underscore_literally,
    concurrent_creates_with_one_idempotency_key_make_one_task,
    idempotency_keys_are_per_user_and_per_body,
    users_are_isolated,
);

const ALICE: &str = "0190a0b0-0000-7000-8000-00000000000a";
const BOB: &str = "0190a0b0-0000-7000-8000-00000000000b";

fn ts(s: &str) -> i64 {
    parse_rfc3339(s).expect("valid timestamp")
}

fn content(title: &str) -> TaskContent {
    TaskContent {
        title: title.into(),
        description: None,
        priority: Priority::Medium,
        tags: vec![],
        due_at: None,
        remind_at: None,
        recurrence: None,
    }
}

fn new_task(user: &str, c: TaskContent, created_at: i64) -> Task {
    Task::new(new_id(), user.into(), c, created_at)
}

async fn insert(store: &Store, task: Task) -> Task {
    match store.create(&task, None).await.expect("create") {
        CreateOutcome::Created(t) => t,
        other => panic!("expected Created, got {other:?}"),
    }
}

async fn list(store: &Store, user: &str, q: ListQuery) -> Vec<Task> {
    let page = store.list(user, &ListQuery { limit: 100, ..q }, ts("2026-06-01T00:00:00Z")).await.expect("list");
    assert!(page.next_cursor.is_none(), "test listings fit one page");
    page.tasks
}

fn titles(tasks: &[Task]) -> Vec<&str> {
    let mut v: Vec<&str> = tasks.iter().map(|t| t.title.as_str()).collect();
    v.sort();
    v
}

async fn create_get_update_delete(store: Store) {
    let mut c = content("Pay rent");
    c.description = Some("before the 5th".into());
    c.priority = Priority::High;
    c.tags = vec!["home".into(), "money".into()];
    c.due_at = Some(ts("2026-02-05T09:00:00Z"));
    c.remind_at = Some(ts("2026-02-04T09:00:00Z"));
    c.recurrence = Some(Recurrence { freq: Freq::Monthly, interval: 1, until: None, count: Some(12) });
    let task = insert(&store, new_task(ALICE, c, 1_000)).await;
    let got = store.get(ALICE, &task.id).await.unwrap().expect("stored");
    assert_eq!(got, task, "every field round-trips");
    assert_eq!(got.version, 1);

    let mut next = got.clone();
    next.title = "Pay the rent".into();
    next.tags = vec!["money".into()];
    next.description = None;
    next.set_completed(true, 2_000);
    next.version = 2;
    next.updated_at = 2_000;
    assert!(store.update(&got, &next).await.unwrap());
    let got2 = store.get(ALICE, &task.id).await.unwrap().unwrap();
    assert_eq!(got2, next);
    assert_eq!((got2.version, got2.completed, got2.completed_at), (2, true, Some(2_000)));
    let tagged = |tag: &str| ListQuery { tag: Some(tag.into()), ..Default::default() };
    assert!(list(&store, ALICE, tagged("home")).await.is_empty(), "removed tags no longer match");
    assert_eq!(list(&store, ALICE, tagged("money")).await.len(), 1);

    assert!(store.delete(ALICE, &task.id, Some(2)).await.unwrap());
    assert_eq!(store.get(ALICE, &task.id).await.unwrap(), None);
    assert!(!store.delete(ALICE, &task.id, None).await.unwrap(), "deleting twice finds nothing");
    assert!(list(&store, ALICE, tagged("money")).await.is_empty(), "its tags are gone too");
}

async fn stale_versions_change_nothing(store: Store) {
    let v1 = insert(&store, new_task(ALICE, content("a"), 1_000)).await;
    let mut v2 = v1.clone();
    v2.title = "b".into();
    v2.version = 2;
    assert!(store.update(&v1, &v2).await.unwrap());

    // A writer still holding version 1 loses: nothing is written.
    let mut stale = v1.clone();
    stale.title = "c".into();
    stale.tags = vec!["x".into()];
    stale.version = 2;
    assert!(!store.update(&v1, &stale).await.unwrap());
    assert_eq!(store.get(ALICE, &v1.id).await.unwrap().unwrap(), v2);
    assert!(list(&store, ALICE, ListQuery { tag: Some("x".into()), ..Default::default() }).await.is_empty());

    assert!(!store.delete(ALICE, &v1.id, Some(1)).await.unwrap(), "stale delete refused");
    assert_eq!(store.get(ALICE, &v1.id).await.unwrap().unwrap(), v2);
}

async fn every_filter(store: Store) {
    let now = ts("2026-06-01T00:00:00Z");
    let mk = |title: &str, p: Priority, tags: &[&str], due: Option<&str>, done: bool| {
        let mut c = content(title);
        c.priority = p;
        c.tags = tags.iter().map(|t| t.to_string()).collect();
        c.due_at = due.map(ts);
        let mut t = new_task(ALICE, c, 1_000);
        t.set_completed(done, 1_000);
        t
    };
    for t in [
        mk("past-open", Priority::High, &["work"], Some("2026-05-01T00:00:00Z"), false),
        mk("past-done", Priority::Low, &["work", "home"], Some("2026-05-02T00:00:00Z"), true),
        mk("future-open", Priority::Medium, &["home"], Some("2026-07-01T00:00:00Z"), false),
        mk("no-due-open", Priority::High, &[], None, false),
        mk("no-due-done", Priority::Medium, &["misc"], None, true),
    ] {
        insert(&store, t).await;
    }
    let q = ListQuery::default;
    assert_eq!(list(&store, ALICE, q()).await.len(), 5);
    assert_eq!(
        titles(&list(&store, ALICE, ListQuery { status: Status::Pending, ..q() }).await),
        vec!["future-open", "no-due-open", "past-open"]
    );
    assert_eq!(
        titles(&list(&store, ALICE, ListQuery { status: Status::Completed, ..q() }).await),
        vec!["no-due-done", "past-done"]
    );
    assert_eq!(
        titles(&list(&store, ALICE, ListQuery { priority: Some(Priority::High), ..q() }).await),
        vec!["no-due-open", "past-open"]
    );
    assert_eq!(
        titles(&list(&store, ALICE, ListQuery { tag: Some("home".into()), ..q() }).await),
        vec!["future-open", "past-done"]
    );
    assert_eq!(
        titles(&list(&store, ALICE, ListQuery { due_before: Some(ts("2026-05-02T00:00:00Z")), ..q() }).await),
        vec!["past-open"],
        "due_before is exclusive and skips tasks without a due date"
    );
    assert_eq!(
        titles(&list(&store, ALICE, ListQuery { due_after: Some(ts("2026-05-01T00:00:00Z")), ..q() }).await),
        vec!["future-open", "past-done"]
    );
    let page = store.list(ALICE, &ListQuery { overdue: Some(true), ..q() }, now).await.unwrap();
    assert_eq!(titles(&page.tasks), vec!["past-open"]);
    let page = store.list(ALICE, &ListQuery { overdue: Some(false), ..q() }, now).await.unwrap();
    assert_eq!(titles(&page.tasks), vec!["future-open", "no-due-done", "no-due-open", "past-done"]);
    // Filters combine.
    assert_eq!(
        titles(&list(&store, ALICE, ListQuery { status: Status::Pending, tag: Some("work".into()), ..q() }).await),
        vec!["past-open"]
    );
    assert!(
        list(&store, ALICE, ListQuery { priority: Some(Priority::Low), status: Status::Pending, ..q() })
            .await
            .is_empty()
    );
}

/// The order the API promises: by sort key, ties by id, both in the requested direction;
/// tasks without a due date last either way.
fn expected_order(tasks: &[Task], sort: Sort, order: Order) -> Vec<String> {
    let mut v: Vec<&Task> = tasks.iter().collect();
    v.sort_by(|a, b| {
        let ka = SortKey::of(a, sort, order);
        let kb = SortKey::of(b, sort, order);
        let by_key = match (&ka, &kb) {
            (SortKey::Int(x), SortKey::Int(y)) => x.cmp(y),
            (SortKey::Text(x), SortKey::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
            _ => Ordering::Equal,
        };
        let o = by_key.then_with(|| a.id.cmp(&b.id));
        if order == Order::Desc { o.reverse() } else { o }
    });
    v.into_iter().map(|t| t.id.clone()).collect()
}

const SORTS: [Sort; 4] = [Sort::Created, Sort::Due, Sort::Priority, Sort::Title];
const ORDERS: [Order; 2] = [Order::Asc, Order::Desc];

/// `n` tasks with many ties and gaps: repeated created_at, priorities and titles (case and
/// non-ASCII variants), and a third without a due date.
async fn seed(store: &Store, user: &str, n: usize) -> Vec<Task> {
    let titles = ["apple", "Apple", "banana", "Äpfel", "zebra", "apple ", "Zoo", "émile", "_under", "100"];
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = content(&format!("{} {}", titles[i % titles.len()], i % 4));
        c.priority = [Priority::Low, Priority::Medium, Priority::High][i % 3];
        c.due_at = if i % 3 == 1 { None } else { Some(ts("2026-03-01T00:00:00Z") + (i as i64 % 7) * 3_600_000) };
        out.push(insert(store, new_task(user, c, 1_000_000 + (i as i64 / 4))).await);
    }
    out
}

async fn every_sort_in_both_orders_with_missing_due_dates_last(store: Store) {
    let tasks = seed(&store, ALICE, 24).await;
    for sort in SORTS {
        for order in ORDERS {
            let got: Vec<String> = list(&store, ALICE, ListQuery { sort, order, ..Default::default() })
                .await
                .into_iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(got, expected_order(&tasks, sort, order), "sort {sort:?} {order:?}");
        }
    }
    for order in ORDERS {
        let got = list(&store, ALICE, ListQuery { sort: Sort::Due, order, ..Default::default() }).await;
        let first_missing = got.iter().position(|t| t.due_at.is_none()).expect("some tasks have no due date");
        assert!(got[first_missing..].iter().all(|t| t.due_at.is_none()), "{order:?}: missing due dates come last");
    }
    let newest_first = list(&store, ALICE, ListQuery::default()).await;
    assert!(newest_first.windows(2).all(|w| w[0].created_at >= w[1].created_at), "default: newest first");
}

async fn keyset_pagination_returns_every_task_once_in_order(store: Store) {
    let tasks = seed(&store, ALICE, 45).await;
    seed(&store, BOB, 5).await;
    for sort in SORTS {
        for order in ORDERS {
            let mut seen = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let q = ListQuery { sort, order, limit: 20, cursor, ..Default::default() };
                let page = store.list(ALICE, &q, 0).await.unwrap();
                pages += 1;
                assert!(page.tasks.len() <= 20);
                seen.extend(page.tasks.into_iter().map(|t| t.id));
                match page.next_cursor {
                    Some(c) => cursor = Some(Cursor::decode(&c, sort, order).expect("our cursor decodes")),
                    None => break,
                }
                assert!(pages < 10, "pagination does not end");
            }
            assert_eq!(pages, 3, "{sort:?} {order:?}: 20 + 20 + 5");
            assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 45, "{sort:?} {order:?}: no task twice");
            assert_eq!(seen, expected_order(&tasks, sort, order), "{sort:?} {order:?}");
        }
    }
    // Exactly a page worth: no empty trailing page.
    let page = store.list(BOB, &ListQuery { limit: 5, ..Default::default() }, 0).await.unwrap();
    assert_eq!((page.tasks.len(), page.next_cursor), (5, None));
}

async fn search_treats_percent_and_underscore_literally(store: Store) {
    let mut with_desc = content("Groceries");
    with_desc.description = Some("Milk at 100% OFF, back\\slash".into());
    for c in
        [content("50% off"), content("500 off"), content("a_b"), content("axb"), content("ÄRGER im Büro"), with_desc]
    {
        insert(&store, new_task(ALICE, c, 1_000)).await;
    }
    let search = |text: &str| ListQuery { q: Some(text.into()), ..Default::default() };
    assert_eq!(titles(&list(&store, ALICE, search("50%")).await), vec!["50% off"]);
    assert_eq!(titles(&list(&store, ALICE, search("a_b")).await), vec!["a_b"]);
    assert_eq!(titles(&list(&store, ALICE, search("OFF")).await), vec!["50% off", "500 off", "Groceries"]);
    assert_eq!(titles(&list(&store, ALICE, search("100%")).await), vec!["Groceries"], "descriptions are searched");
    assert_eq!(titles(&list(&store, ALICE, search("k\\s")).await), vec!["Groceries"], "backslashes are literal");
    assert_eq!(titles(&list(&store, ALICE, search("ärger")).await), vec!["ÄRGER im Büro"], "non-ASCII case folds");
    assert_eq!(titles(&list(&store, ALICE, search("BÜRO")).await), vec!["ÄRGER im Büro"]);
    assert_eq!(titles(&list(&store, ALICE, search("%")).await), vec!["50% off", "Groceries"], "a lone % is literal");
    assert_eq!(titles(&list(&store, ALICE, search("_")).await), vec!["a_b"]);
}

async fn concurrent_creates_with_one_idempotency_key_make_one_task(store: Store) {
    let key = IdempotencyKey { key: "retry-1".into(), request_hash: "h1".into() };
    let a = new_task(ALICE, content("once"), 1_000);
    let b = new_task(ALICE, content("once"), 1_000);
    let (ra, rb) = tokio::join!(store.create(&a, Some(&key)), store.create(&b, Some(&key)));
    let outcomes = [ra.unwrap(), rb.unwrap()];
    let created: Vec<&Task> =
        outcomes.iter().filter_map(|o| if let CreateOutcome::Created(t) = o { Some(t) } else { None }).collect();
    let replayed: Vec<&Task> =
        outcomes.iter().filter_map(|o| if let CreateOutcome::Replayed(t) = o { Some(t) } else { None }).collect();
    assert_eq!((created.len(), replayed.len()), (1, 1), "{outcomes:?}");
    assert_eq!(created[0].id, replayed[0].id);
    assert_eq!(list(&store, ALICE, ListQuery::default()).await.len(), 1, "exactly one task");

    // Many at once, on a fresh key.
    let key2 = IdempotencyKey { key: "retry-2".into(), request_hash: "h2".into() };
    let tasks: Vec<Task> = (0..8).map(|_| new_task(ALICE, content("burst"), 1_000)).collect();
    let results = futures_join_all(&store, &tasks, &key2).await;
    let ids: HashSet<String> = results
        .iter()
        .map(|o| match o {
            CreateOutcome::Created(t) | CreateOutcome::Replayed(t) => t.id.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 1, "every request got the same task");
    assert_eq!(list(&store, ALICE, ListQuery::default()).await.len(), 2);
}

async fn futures_join_all(store: &Store, tasks: &[Task], key: &IdempotencyKey) -> Vec<CreateOutcome> {
    let handles: Vec<_> = tasks
        .iter()
        .cloned()
        .map(|t| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.create(&t, Some(&key)).await })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task ran").expect("create"));
    }
    out
}

async fn idempotency_keys_are_per_user_and_per_body(store: Store) {
    let key = IdempotencyKey { key: "k".into(), request_hash: "body-1".into() };
    let first = new_task(ALICE, content("first"), 1_000);
    assert!(matches!(store.create(&first, Some(&key)).await.unwrap(), CreateOutcome::Created(_)));
    let other_body = IdempotencyKey { key: "k".into(), request_hash: "body-2".into() };
    assert_eq!(
        store.create(&new_task(ALICE, content("second"), 1_000), Some(&other_body)).await.unwrap(),
        CreateOutcome::KeyReused
    );
    // Bob may use the same key for his own task.
    assert!(matches!(
        store.create(&new_task(BOB, content("bob's"), 1_000), Some(&key)).await.unwrap(),
        CreateOutcome::Created(_)
    ));
    assert_eq!(list(&store, ALICE, ListQuery::default()).await.len(), 1);
    assert_eq!(list(&store, BOB, ListQuery::default()).await.len(), 1);
    // The task is deleted: a replay does not silently create another one.
    assert!(store.delete(ALICE, &first.id, None).await.unwrap());
    assert_eq!(
        store.create(&new_task(ALICE, content("first"), 1_000), Some(&key)).await.unwrap(),
        CreateOutcome::OriginalGone
    );
    assert!(list(&store, ALICE, ListQuery::default()).await.is_empty());
}

async fn users_are_isolated(store: Store) {
    let mut c = content("alice's secret");
    c.tags = vec!["shared".into()];
    let a = insert(&store, new_task(ALICE, c.clone(), 1_000)).await;
    insert(&store, new_task(BOB, c, 1_000)).await;

    assert_eq!(store.get(BOB, &a.id).await.unwrap(), None);
    let mut hijack = a.clone();
    hijack.user_id = BOB.into();
    hijack.title = "mine now".into();
    hijack.version = 2;
    let mut as_bob = a.clone();
    as_bob.user_id = BOB.into();
    assert!(!store.update(&as_bob, &hijack).await.unwrap());
    assert!(!store.delete(BOB, &a.id, None).await.unwrap());
    assert_eq!(store.get(ALICE, &a.id).await.unwrap().unwrap(), a, "unchanged");

    for q in [
        ListQuery::default(),
        ListQuery { tag: Some("shared".into()), ..Default::default() },
        ListQuery { q: Some("secret".into()), ..Default::default() },
    ] {
        let bobs = list(&store, BOB, q).await;
        assert_eq!(bobs.len(), 1);
        assert!(bobs.iter().all(|t| t.user_id == BOB));
    }
}
