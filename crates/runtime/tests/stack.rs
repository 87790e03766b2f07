//! The shared HTTP stack and database layer against real servers: readiness that names what
//! failed, 503 instead of hanging when the pool is exhausted, 504 for requests over the limit.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, Migrations, PoolSettings};
use flotilla_runtime::http::{Ops, service_router};
use flotilla_runtime::{ApiJson, Problem};
use serde_json::{Value, json};
use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("./tests/migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./tests/migrations/postgres");
const MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE, postgres: &POSTGRES };

async fn insert(State(db): State<Db>, ApiJson(body): ApiJson<Value>) -> Result<&'static str, Problem> {
    let text = body["body"].as_str().unwrap_or_default().to_owned();
    db.timed(
        "insert_note",
        sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2)").bind(1_i64).bind(text).execute(db.write()),
    )
    .await?;
    Ok("stored")
}

async fn serve(db: &Db, vars: &[(&str, &str)]) -> String {
    let rt = RuntimeConfig::from_env(&Env::from_pairs(vars.iter().copied())).unwrap();
    let api =
        Router::new().route("/notes", post(insert)).route("/ping", get(|| async { "pong" })).with_state(db.clone());
    let app = service_router("stacktest", api, Ops::new().database(db), &rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(flotilla_runtime::server::serve(listener, app, Duration::from_secs(1), std::future::pending()));
    base
}

async fn ready(base: &str) -> (u16, Value) {
    let res = reqwest::get(format!("{base}/ready")).await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn readiness_names_missing_migrations_and_a_closed_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/r.db", dir.path().display());
    let db = Db::open("stacktest", &url, MIGRATIONS, PoolSettings::default()).unwrap();
    let base = serve(&db, &[]).await;
    assert_eq!(
        reqwest::get(format!("{base}/health")).await.unwrap().status(),
        200,
        "liveness never checks dependencies"
    );
    let (status, body) = ready(&base).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["database"], "migrations not applied yet");
    db.migrate().await.unwrap();
    assert_eq!(ready(&base).await, (200, json!({"status": "ready", "checks": {"database": "ok"}})));
    db.close().await;
    let (status, body) = ready(&base).await;
    assert_eq!(status, 503);
    assert!(body["checks"]["database"].as_str().unwrap().starts_with("unreachable"), "{body}");
    assert_eq!(reqwest::get(format!("{base}/health")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn readiness_follows_a_postgres_outage_and_recovery() {
    let pg = match flotilla_testkit::Postgres::start() {
        Ok(pg) => pg,
        Err(e) if std::env::var("CI").is_err() && std::env::var("FLOTILLA_REQUIRE_POSTGRES").is_err() => {
            eprintln!("SKIPPED: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let url = pg.create_database();
    let settings = PoolSettings { max_connections: 2, acquire_timeout: Duration::from_millis(500) };
    let db = Db::open_and_migrate("stacktest", &url, MIGRATIONS, settings).await.unwrap();
    let base = serve(&db, &[]).await;
    assert_eq!(ready(&base).await.0, 200);
    pg.stop();
    let (status, body) = ready(&base).await;
    assert_eq!(status, 503);
    assert!(body["checks"]["database"].as_str().unwrap().starts_with("unreachable"), "{body}");
    // A write while the database is down is a clear 503, not a hang or a 500.
    let res = reqwest::Client::new().post(format!("{base}/notes")).json(&json!({"body": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    pg.restart();
    let mut back = false;
    for _ in 0..50 {
        if ready(&base).await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "ready again after PostgreSQL restarts, without restarting the service");
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_after_the_acquire_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/p.db", dir.path().display());
    // Migrate with the default settings: on a loaded machine the 200 ms timeout under test could
    // expire while the migration waits for its connection.
    Db::open_and_migrate("stacktest", &url, MIGRATIONS, PoolSettings::default()).await.unwrap();
    let settings = PoolSettings { max_connections: 2, acquire_timeout: Duration::from_millis(200) };
    let db = Db::open("stacktest", &url, MIGRATIONS, settings).unwrap();
    let base = serve(&db, &[]).await;
    // Hold the only write connection.
    let held = db.write().begin().await.unwrap();
    let res = reqwest::Client::new().post(format!("{base}/notes")).json(&json!({"body": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], 503);
    drop(held);
    let res = reqwest::Client::new().post(format!("{base}/notes")).json(&json!({"body": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 200, "works again once the connection is free");
}

#[tokio::test]
async fn requests_over_the_time_limit_get_504_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let db = Db::open_and_migrate("stacktest", &url, MIGRATIONS, PoolSettings::default()).await.unwrap();
    let base = serve(&db, &[("FLOTILLA_REQUEST_TIMEOUT_MS", "200")]).await;
    // The body trickles in slower than the limit allows.
    let stream = futures_util::stream::unfold(0, |step| async move {
        match step {
            0 => Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"body\":")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(600)).await;
                Some((Ok(bytes::Bytes::from_static(b"\"late\"}")), 2))
            }
            _ => None,
        }
    });
    let res = reqwest::Client::new()
        .post(format!("{base}/notes"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes").fetch_one(db.read()).await.unwrap();
    assert_eq!(n, 0);
}
