//! The assistant's events on the in-process bus with its outbox relay running:
//! `chat.turn_completed` is published for each stored turn, and the `user.deleted` consumer
//! deletes the user's conversations exactly once, whatever the number of deliveries.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_assistant::{Config, EventWiring, MIGRATIONS, SERVICE, events};
use flotilla_events::event::{sources, types};
use flotilla_events::{BoxFuture, Bus, Event, Handler, HandlerError, MemoryBus, Outcome, Relay, RetryPolicy};
use flotilla_runtime::auth::{AuthContext, JwkSet, SigningKey, TokenPolicy};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::upstream::Upstream;
use serde_json::json;
use sqlx::AnyConnection;

/// Records every event it is given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Handler for Recorder {
    fn handle<'a>(&'a self, event: &'a Event, _tx: &'a mut AnyConnection) -> BoxFuture<'a, Result<(), HandlerError>> {
        self.0.lock().unwrap().push(event.clone());
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn turns_are_published_and_user_deletion_removes_conversations_once() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &'static str, migrations| {
        let url = format!("sqlite://{}", dir.path().join(format!("{name}.db")).display());
        async move { Db::open_and_migrate(name, &url, migrations, PoolSettings::default()).await.unwrap() }
    };
    let db = open(SERVICE, MIGRATIONS).await;
    let tasks_db = open(flotilla_tasks::SERVICE, flotilla_tasks::MIGRATIONS).await;
    let audit_db = open("audit-test", MIGRATIONS).await; // any database with an inbox table
    let auth = AuthContext::new(TokenPolicy { issuer: common::ISSUER.into(), audience: common::AUDIENCE.into() });
    let key = SigningKey::generate();
    auth.keys.replace(JwkSet { keys: vec![key.jwk()] });
    let rt = common::runtime();

    let bus = Arc::new(MemoryBus::new());
    let seen = Recorder::default();
    bus.subscribe("recorder", audit_db.clone(), Arc::new(seen.clone()), RetryPolicy::default());
    bus.subscribe_filtered(
        events::CONSUMER,
        events::SUBSCRIPTIONS,
        db.clone(),
        events::handler(),
        events::retry_policy(),
    );
    let dyn_bus: Arc<dyn Bus> = bus.clone();
    let relay = Relay::spawn(SERVICE, db.clone(), dyn_bus.clone());
    let tasks = flotilla_tasks::app(&rt, tasks_db, auth.clone());
    let app = flotilla_assistant::app_with_events(
        &Config::default(),
        &rt,
        db.clone(),
        auth,
        Upstream::InProcess(tasks),
        EventWiring { notifier: relay.notifier(), bus: dyn_bus.clone() },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(flotilla_runtime::server::serve(listener, app, Duration::from_secs(1), std::future::pending()));

    let alice = new_id();
    let token = key.sign(&common::claims(&alice, 900));
    let http = reqwest::Client::new();
    let ready: serde_json::Value = http.get(format!("{base}/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["event_bus"], "ok");
    let res = http
        .post(format!("{base}/api/{alice}/chat"))
        .bearer_auth(&token)
        .json(&json!({"message": "add renew passport"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let conv = body["conversation_id"].as_str().unwrap().to_owned();

    // The relay publishes the turn's event (woken by the commit).
    let mut turn = None;
    for _ in 0..100 {
        turn = seen.0.lock().unwrap().iter().find(|e| e.r#type == types::CHAT_TURN_COMPLETED).cloned();
        if turn.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let turn = turn.expect("chat.turn_completed published");
    assert_eq!(turn.source, sources::ASSISTANT);
    assert_eq!(turn.subject.as_deref(), Some(conv.as_str()));
    assert_eq!(turn.userid.as_deref(), Some(alice.as_str()));
    assert_eq!(turn.data["provider"], "rules");
    assert_eq!(turn.data["tool_calls"][0]["name"], "add_task");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT id FROM messages WHERE role = 'assistant'").fetch_all(db.read()).await.unwrap();
    assert_eq!(turn.data["message_id"], stored[0], "the event names the stored message");

    // user.deleted, delivered twice: the second delivery is a duplicate and changes nothing.
    let deleted = Event::new(
        sources::ACCOUNTS,
        types::USER_DELETED,
        Some(alice.clone()),
        Some(alice.clone()),
        json!({"id": alice}),
    );
    let consumer = bus.consumers().into_iter().find(|c| c.name() == events::CONSUMER).unwrap();
    assert_eq!(consumer.process(&deleted).await.unwrap(), Outcome::Processed);
    assert_eq!(consumer.process(&deleted).await.unwrap(), Outcome::Duplicate);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conversations").fetch_one(db.read()).await.unwrap();
    assert_eq!(left, 0);
    let res = http.get(format!("{base}/api/{alice}/conversations/{conv}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 404);
    relay.shutdown().await;
}

#[test]
fn event_tables_are_the_published_ddl() {
    use flotilla_events::consumer::{DEAD_LETTERS_POSTGRES, DEAD_LETTERS_SQLITE, INBOX_POSTGRES, INBOX_SQLITE};
    use flotilla_events::outbox::{OUTBOX_POSTGRES, OUTBOX_SQLITE};
    let sqlite = include_str!("../migrations/sqlite/0002_events.sql");
    let postgres = include_str!("../migrations/postgres/0002_events.sql");
    for ddl in [OUTBOX_SQLITE, INBOX_SQLITE, DEAD_LETTERS_SQLITE] {
        assert!(sqlite.contains(ddl.trim()), "{ddl}");
    }
    for ddl in [OUTBOX_POSTGRES, INBOX_POSTGRES, DEAD_LETTERS_POSTGRES] {
        assert!(postgres.contains(ddl.trim()), "{ddl}");
    }
}
