//! Test databases: a SQLite file in a temp dir, or a fresh database on the shared throwaway
//! PostgreSQL cluster (skipped, loudly, when PostgreSQL is not installed).

#![allow(dead_code)]

use flotilla_accounts::{MIGRATIONS, SERVICE};
use flotilla_runtime::db::{Db, PoolSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A migrated database and whatever must live as long as it (the SQLite temp dir).
pub struct TestDb {
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh migrated database, or `None` when PostgreSQL is requested but unavailable.
pub async fn open(engine: Engine) -> Option<TestDb> {
    match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("accounts.db").display());
            let db = Db::open_and_migrate(SERVICE, &url, MIGRATIONS, PoolSettings::default()).await.expect("sqlite");
            Some(TestDb { db, _dir: Some(dir) })
        }
        Engine::Postgres => {
            let url = tokio::task::spawn_blocking(|| flotilla_testkit::pg_or_skip().map(|pg| pg.create_database()))
                .await
                .expect("pg setup")?;
            let db = Db::open_and_migrate(SERVICE, &url, MIGRATIONS, PoolSettings::default()).await.expect("postgres");
            Some(TestDb { db, _dir: None })
        }
    }
}
