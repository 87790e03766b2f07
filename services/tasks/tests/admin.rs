//! The admin dead-letter endpoints of the tasks service (served by the service itself).

use std::sync::Arc;
use std::time::Duration;

use flotilla_events::event::{sources, types};
use flotilla_events::{Consumer, Event, Outcome, RetryPolicy};
use flotilla_runtime::auth::{AuthContext, Claims, JwkSet, Role, SigningKey, TokenPolicy};
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::{now_ms, now_secs};
use flotilla_tasks::events::{CONSUMER, TasksHandler};
use flotilla_tasks::model::{Priority, TaskContent};
use flotilla_tasks::{Store, Tasks};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn token(key: &SigningKey, sub: &str, role: Role) -> String {
    let now = now_secs();
    key.sign(&Claims {
        sub: sub.into(),
        role,
        iat: now,
        exp: now + 900,
        iss: "flotilla".into(),
        aud: "flotilla-api".into(),
        jti: new_id(),
        sid: new_id(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_list_and_replay_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let db = Db::open_and_migrate(flotilla_tasks::SERVICE, &url, flotilla_tasks::MIGRATIONS, PoolSettings::default())
        .await
        .unwrap();
    let auth = AuthContext::new(TokenPolicy { issuer: "flotilla".into(), audience: "flotilla-api".into() });
    let key = SigningKey::generate();
    auth.keys.replace(JwkSet { keys: vec![key.jwk()] });
    let rt = RuntimeConfig::from_env(&Env::from_pairs([("FLOTILLA_LOG_FORMAT", "human")])).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flotilla_runtime::server::serve(
        listener,
        flotilla_tasks::app(&rt, db.clone(), auth),
        Duration::from_secs(1),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let admin = token(&key, &new_id(), Role::Admin);
    let user = new_id();
    let user_token = token(&key, &user, Role::User);

    // A malformed completion event is dead-lettered at once (permanent failure).
    let policy =
        RetryPolicy { max_attempts: 2, base_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(5) };
    let consumer = Consumer::new(CONSUMER, db.clone(), Arc::new(TasksHandler::default()), policy);
    let poison = Event::new(sources::TASKS, types::TASK_COMPLETED, None, None, json!({"not": "a task"}));
    assert_eq!(consumer.process(&poison).await.unwrap(), Outcome::DeadLettered);
    // A user.deleted whose processing failed earlier (its fault is fixed now).
    let tasks = Tasks::new(Store::new(db.clone()));
    let content = TaskContent {
        title: "t".into(),
        description: None,
        priority: Priority::Low,
        tags: vec![],
        due_at: None,
        remind_at: None,
        recurrence: None,
    };
    tasks.create(&user, content, None).await.unwrap();
    let deleted =
        Event::new(sources::ACCOUNTS, types::USER_DELETED, Some(user.clone()), Some(user.clone()), json!({"id": user}));
    sqlx::query(
        "INSERT INTO dead_letters (id, consumer, event_id, type, payload, error, attempts, created_at, replayed_at) \
         VALUES ($1, $2, $3, $4, $5, 'database was locked', 5, $6, NULL)",
    )
    .bind(new_id())
    .bind(CONSUMER)
    .bind(&deleted.id)
    .bind(&deleted.r#type)
    .bind(deleted.to_json())
    .bind(now_ms() + 1)
    .execute(db.write())
    .await
    .unwrap();

    let list_url = format!("{base}/api/admin/dead-letters/tasks");
    let res = http.get(&list_url).bearer_auth(&user_token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(http.get(&list_url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let res = http.get(&list_url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let letters = body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{body}");
    assert_eq!(letters[0]["type"], "user.deleted", "newest first");
    assert_eq!(letters[0]["event"]["userid"], user.as_str());
    assert_eq!(letters[1]["event_id"], poison.id.as_str());
    assert!(letters[1]["error"].as_str().unwrap().contains("not a task"), "{body}");
    let (fixed, broken) = (letters[0]["id"].as_str().unwrap(), letters[1]["id"].as_str().unwrap());

    let replay = |id: &str, token: &str| {
        http.post(format!("{base}/api/admin/dead-letters/tasks/{id}/replay")).bearer_auth(token.to_owned()).send()
    };
    assert_eq!(replay(fixed, &user_token).await.unwrap().status(), StatusCode::FORBIDDEN);
    let res = replay(fixed, &admin).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "processed");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE user_id = $1")
        .bind(&user)
        .fetch_one(db.read())
        .await
        .unwrap();
    assert_eq!(left, 0, "the replay deleted the user's tasks");
    let res = replay(fixed, &admin).await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "already_processed");
    let res = replay(broken, &admin).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT, "still failing");
    assert_eq!(replay("nope", &admin).await.unwrap().status(), StatusCode::NOT_FOUND);
    let body: Value = http.get(&list_url).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert!(body["dead_letters"][0]["replayed_at"].is_string(), "{body}");
    assert!(body["dead_letters"][1]["replayed_at"].is_null());
}
