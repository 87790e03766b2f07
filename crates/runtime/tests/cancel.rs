//! A request cancelled while its transaction starts (the client hung up, the time limit hit)
//! must not leave the pooled PostgreSQL connection inside that transaction.

use std::time::Duration;

use flotilla_runtime::db::{Db, Migrations, PoolSettings};
use flotilla_testkit::pg::pg_or_skip;
use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("./tests/migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./tests/migrations/postgres");
const MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE, postgres: &POSTGRES };

/// Whether the pool's connection is inside an explicit transaction: only there does PostgreSQL
/// accept a SAVEPOINT ("SAVEPOINT can only be used in transaction blocks" otherwise).
async fn in_transaction(db: &Db) -> bool {
    sqlx::query("SAVEPOINT probe").execute(db.write()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_cancelled_while_it_begins_leaves_no_open_transaction_behind() {
    let Some(pg) = pg_or_skip() else { return };
    // One connection, so every use gets the one the cancelled BEGIN ran on.
    let settings = PoolSettings { max_connections: 1, acquire_timeout: Duration::from_secs(5) };
    let db = Db::open_and_migrate("canceltest", &pg.create_database(), MIGRATIONS, settings).await.unwrap();
    assert!(!in_transaction(&db).await);
    for round in 0..20 {
        // Dropped at its first await: BEGIN is queued or on the wire, its answer not read.
        let _ = tokio::time::timeout(Duration::ZERO, db.begin()).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!in_transaction(&db).await, "round {round}: the next borrower runs inside a leaked transaction");
    }
    // And a normal transaction still works: what it commits is there, what it drops is not.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO notes (id, body) VALUES (1, 'kept')").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO notes (id, body) VALUES (2, 'dropped')").execute(&mut *tx).await.unwrap();
    drop(tx);
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM notes").fetch_all(db.write()).await.unwrap();
    assert_eq!(bodies, vec!["kept".to_owned()]);
}
