//! The accounts service's events on SQLite and PostgreSQL: each state change enqueues exactly
//! one event in its transaction; refused requests enqueue nothing (except failed logins, which
//! are events themselves); no secret ever appears in an event.

mod common;

use common::Engine;
use flotilla_accounts::{Accounts, Config, Error, Store};
use flotilla_events::Event;
use flotilla_events::event::{sources, types};
use flotilla_runtime::auth::{AuthContext, TokenPolicy};
use flotilla_runtime::config::Env;
use flotilla_runtime::db::Db;

async fn outbox(db: &Db) -> Vec<Event> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM outbox ORDER BY seq").fetch_all(db.read()).await.unwrap();
    rows.iter().map(|p| Event::from_json(p.as_bytes()).unwrap()).collect()
}

async fn writes_enqueue_their_events(db: Db) {
    let cfg = Config::from_env(&Env::default()).unwrap();
    let auth = AuthContext::new(TokenPolicy { issuer: "flotilla".into(), audience: "flotilla-api".into() });
    let accounts = Accounts::new(cfg, Store::new(db.clone()), auth).await.unwrap();
    let ip = Some("192.0.2.7".parse().unwrap());
    let password = "correct horse battery";
    let signup = accounts.signup("Ada", "ada@example.com", password).await.unwrap();
    let user = signup.user.id.clone();
    // Refused: duplicate email, weak password. No event.
    assert!(matches!(accounts.signup("Ada", "ada@example.com", password).await, Err(Error::EmailTaken)));
    assert!(matches!(accounts.signup("Bo", "bo@example.com", "1").await, Err(Error::Invalid(_))));
    accounts.login("ADA@example.com", password, ip).await.unwrap();
    assert!(accounts.login("ada@example.com", "wrong password!", ip).await.is_err());
    assert!(accounts.login("nobody@example.com", password, ip).await.is_err());
    let claims = accounts.auth.verifier.verify(&signup.access_token).unwrap();
    accounts.delete_me(&claims).await.unwrap();
    assert!(accounts.delete_me(&claims).await.is_err(), "a second delete changes nothing");

    let events = outbox(&db).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            types::USER_SIGNED_UP,
            types::USER_LOGGED_IN,
            types::USER_LOGIN_FAILED,
            types::USER_LOGIN_FAILED,
            types::USER_DELETED
        ]
    );
    assert!(events.iter().all(|e| e.source == sources::ACCOUNTS));
    assert_eq!(events[0].userid.as_deref(), Some(user.as_str()));
    assert_eq!(events[0].data["email"], "ada@example.com");
    assert_eq!(events[1].data["ip"], "192.0.2.7");
    assert_eq!(events[2].userid.as_deref(), Some(user.as_str()), "the email matched a user");
    assert_eq!(events[2].data["reason"], "invalid_credentials");
    assert_eq!(events[3].userid, None, "an unknown email names no user");
    assert_eq!(events[3].data["email"], "nobody@example.com");
    assert_eq!(events[4].data, serde_json::json!({ "id": user }));
    assert_eq!(events[4].subject.as_deref(), Some(user.as_str()));
    for ev in &events {
        let text = ev.to_json();
        for secret in [password, "wrong password!", "argon2", &signup.refresh_token, &signup.access_token] {
            assert!(!text.contains(secret), "{} leaks a secret: {text}", ev.r#type);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_enqueue_their_events_sqlite() {
    let t = common::open(Engine::Sqlite).await.unwrap();
    writes_enqueue_their_events(t.db.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_enqueue_their_events_postgres() {
    let Some(t) = common::open(Engine::Postgres).await else { return };
    writes_enqueue_their_events(t.db.clone()).await;
}

#[test]
fn migrations_hold_the_published_outbox_ddl() {
    assert!(include_str!("../migrations/sqlite/0002_events.sql").contains(flotilla_events::outbox::OUTBOX_SQLITE));
    assert!(include_str!("../migrations/postgres/0002_events.sql").contains(flotilla_events::outbox::OUTBOX_POSTGRES));
}
