//! Store tests, written once and run on SQLite and on PostgreSQL (a throwaway cluster from
//! flotilla-testkit; skipped loudly when the PostgreSQL binaries are missing).

use flotilla_assistant::events::{AssistantHandler, turn_completed};
use flotilla_assistant::model::{Role, ToolCall};
use flotilla_assistant::store::{After, NewMessage, Store};
use flotilla_assistant::{MIGRATIONS, SERVICE};
use flotilla_events::event::{sources, types};
use flotilla_events::{Event, Handler};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use serde_json::json;

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("assistant.db").display());
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
    conversations_and_messages_round_trip,
    history_is_the_newest_window_in_order,
    another_users_conversation_is_invisible_and_untouched,
    listing_is_newest_first_with_keyset_pages,
    concurrent_appends_get_distinct_sequence_numbers,
    assistant_message_and_its_event_commit_together,
    user_deleted_removes_every_conversation_once,
);

const ALICE: &str = "0190a0b0-0000-7000-8000-00000000000a";
const BOB: &str = "0190a0b0-0000-7000-8000-00000000000b";

fn assistant_msg(text: &str, calls: Vec<ToolCall>) -> NewMessage {
    NewMessage {
        id: new_id(),
        role: Role::Assistant,
        content: text.into(),
        tool_calls: calls,
        state: Some(json!({"k": 1})),
    }
}

async fn outbox_types(store: &Store) -> Vec<String> {
    sqlx::query_scalar("SELECT type FROM outbox ORDER BY seq").fetch_all(store.db().read()).await.unwrap()
}

async fn conversations_and_messages_round_trip(store: Store) {
    let (conv, first) =
        store.create_conversation(ALICE, "Buy milk", &NewMessage::user("add buy milk"), 1000).await.unwrap();
    assert_eq!((first.seq, first.role, first.content.as_str()), (1, Role::User, "add buy milk"));
    let call = ToolCall {
        name: "add_task".into(),
        arguments: json!({"title": "buy milk"}),
        result: json!({"task_id": "t", "status": "created", "title": "buy milk"}),
    };
    let reply =
        store.append(ALICE, &conv.id, &assistant_msg("Added", vec![call.clone()]), None, 2000).await.unwrap().unwrap();
    assert_eq!(reply.seq, 2);
    let got = store.conversation(ALICE, &conv.id).await.unwrap().unwrap();
    assert_eq!((got.title.as_str(), got.created_at, got.updated_at), ("Buy milk", 1000, 2000));
    let messages = store.messages(&conv.id).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].tool_calls, vec![call]);
    assert_eq!(messages[1].state, Some(json!({"k": 1})));
    assert_eq!(messages[0].state, None);
    assert!(store.delete_conversation(ALICE, &conv.id).await.unwrap());
    assert!(!store.delete_conversation(ALICE, &conv.id).await.unwrap(), "second delete finds nothing");
    assert!(store.conversation(ALICE, &conv.id).await.unwrap().is_none());
    assert!(store.messages(&conv.id).await.unwrap().is_empty(), "messages went with it");
}

async fn history_is_the_newest_window_in_order(store: Store) {
    let (conv, _) = store.create_conversation(ALICE, "t", &NewMessage::user("m1"), 1).await.unwrap();
    for i in 2..=30 {
        let msg = if i % 2 == 0 { assistant_msg(&format!("m{i}"), vec![]) } else { NewMessage::user(format!("m{i}")) };
        store.append(ALICE, &conv.id, &msg, None, i).await.unwrap().unwrap();
    }
    // A turn whose user message is seq 30 reads the 10 messages before it: 20..=29, oldest first.
    let window = store.history(&conv.id, 30, 10).await.unwrap();
    let texts: Vec<&str> = window.iter().map(|m| m.content.as_str()).collect();
    let expected: Vec<String> = (20..=29).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(window[0].role, Role::Assistant);
    let all = store.history(&conv.id, i64::MAX, 100).await.unwrap();
    assert_eq!(all.len(), 30);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
}

async fn another_users_conversation_is_invisible_and_untouched(store: Store) {
    let (conv, _) = store.create_conversation(ALICE, "mine", &NewMessage::user("hello"), 1).await.unwrap();
    assert!(store.conversation(BOB, &conv.id).await.unwrap().is_none());
    assert!(store.append(BOB, &conv.id, &NewMessage::user("intrusion"), None, 2).await.unwrap().is_none());
    assert!(!store.delete_conversation(BOB, &conv.id).await.unwrap());
    assert!(store.conversations(BOB, 10, None).await.unwrap().is_empty());
    let messages = store.messages(&conv.id).await.unwrap();
    assert_eq!(messages.len(), 1, "nothing was appended");
    assert_eq!(store.conversation(ALICE, &conv.id).await.unwrap().unwrap().updated_at, 1);
}

async fn listing_is_newest_first_with_keyset_pages(store: Store) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let (c, _) = store.create_conversation(ALICE, &format!("c{i}"), &NewMessage::user("x"), 100 + i).await.unwrap();
        ids.push(c.id);
    }
    // Activity moves c0 to the top; two conversations share a timestamp.
    store.append(ALICE, &ids[0], &NewMessage::user("again"), None, 500).await.unwrap().unwrap();
    store.append(ALICE, &ids[3], &NewMessage::user("again"), None, 104).await.unwrap().unwrap();
    let mut seen = Vec::new();
    let mut after: Option<After> = None;
    loop {
        let page = store.conversations(ALICE, 3, after.as_ref()).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|c| After { updated_at: c.updated_at, id: c.id.clone() });
        seen.extend(page);
    }
    assert_eq!(seen.len(), 7, "every conversation exactly once");
    assert_eq!(seen[0].id, ids[0]);
    assert!(seen.windows(2).all(|w| (w[0].updated_at, &w[0].id) > (w[1].updated_at, &w[1].id)), "strictly ordered");
}

async fn concurrent_appends_get_distinct_sequence_numbers(store: Store) {
    let (conv, _) = store.create_conversation(ALICE, "t", &NewMessage::user("m"), 1).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..16 {
        let (store, id) = (store.clone(), conv.id.clone());
        handles.push(tokio::spawn(async move {
            store.append(ALICE, &id, &NewMessage::user(format!("p{i}")), None, 10 + i).await.unwrap().unwrap().seq
        }));
    }
    let mut seqs = Vec::new();
    for h in handles {
        seqs.push(h.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (2..=17).collect::<Vec<i64>>());
}

async fn assistant_message_and_its_event_commit_together(store: Store) {
    let (conv, _) = store.create_conversation(ALICE, "t", &NewMessage::user("m"), 1).await.unwrap();
    let msg = assistant_msg("Done", vec![]);
    let event = turn_completed(ALICE, &conv.id, &msg.id, "rules", "ok", &[]);
    store.append(ALICE, &conv.id, &msg, Some(&event), 2).await.unwrap().unwrap();
    assert_eq!(outbox_types(&store).await, vec![types::CHAT_TURN_COMPLETED]);
    let payload: String = sqlx::query_scalar("SELECT payload FROM outbox").fetch_one(store.db().read()).await.unwrap();
    let stored = Event::from_json(payload.as_bytes()).unwrap();
    assert_eq!(stored.subject.as_deref(), Some(conv.id.as_str()));
    assert_eq!(stored.userid.as_deref(), Some(ALICE));
    assert_eq!(stored.data["message_id"], msg.id);

    // An event that cannot be enqueued rolls the message back too.
    let mut bad = turn_completed(ALICE, &conv.id, "x", "rules", "ok", &[]);
    bad.r#type = "chat.>".into();
    assert!(store.append(ALICE, &conv.id, &assistant_msg("lost", vec![]), Some(&bad), 3).await.is_err());
    assert_eq!(store.messages(&conv.id).await.unwrap().len(), 2);
    assert_eq!(outbox_types(&store).await.len(), 1);
}

async fn user_deleted_removes_every_conversation_once(store: Store) {
    for i in 0..3 {
        let (c, _) = store.create_conversation(ALICE, "a", &NewMessage::user("x"), i).await.unwrap();
        store.append(ALICE, &c.id, &assistant_msg("y", vec![]), None, i + 1).await.unwrap().unwrap();
    }
    let (bob_conv, _) = store.create_conversation(BOB, "b", &NewMessage::user("x"), 1).await.unwrap();
    let event = Event::new(
        sources::ACCOUNTS,
        types::USER_DELETED,
        Some(ALICE.into()),
        Some(ALICE.into()),
        json!({"id": ALICE}),
    );
    let handler = AssistantHandler;
    for _ in 0..2 {
        // Run twice: the second delivery finds nothing left and still succeeds.
        let mut tx = store.db().write().begin().await.unwrap();
        handler.handle(&event, &mut tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert!(store.conversations(ALICE, 10, None).await.unwrap().is_empty());
    let orphans: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE conversation_id <> $1")
        .bind(&bob_conv.id)
        .fetch_one(store.db().read())
        .await
        .unwrap();
    assert_eq!(orphans, 0);
    assert_eq!(store.conversations(BOB, 10, None).await.unwrap().len(), 1, "other users keep theirs");
}
