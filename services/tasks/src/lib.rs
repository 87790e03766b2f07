//! The tasks service: users' tasks with filters, search, keyset pagination, idempotent creates
//! and optimistic concurrency (ETag / If-Match), on SQLite or PostgreSQL.

pub mod cursor;
pub mod error;
pub mod http;
pub mod model;
pub mod openapi;
pub mod query;
pub mod service;
pub mod store;
pub mod validate;

use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::RuntimeConfig;
use flotilla_runtime::db::{Db, Migrations};
use flotilla_runtime::http::{Ops, service_router};
use sqlx::migrate::Migrator;

pub use error::TaskError;
pub use openapi::openapi;
pub use service::Tasks;
pub use store::Store;

pub const SERVICE: &str = "tasks";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations { sqlite: &SQLITE_MIGRATIONS, postgres: &POSTGRES_MIGRATIONS };

/// The service router (API + /health /ready /metrics), already wrapped by runtime::http::service_router.
pub fn app(rt: &RuntimeConfig, db: Db, auth: AuthContext) -> axum::Router {
    let ops = Ops::new().database(&db).token_keys(&auth.keys);
    service_router(SERVICE, http::router(Store::new(db), &auth), ops, rt)
}
