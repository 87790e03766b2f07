//! Database pools for SQLite (embedded default) and PostgreSQL, chosen by the URL.
//!
//! Queries are written once in the SQL both engines understand and run through sqlx's `Any`
//! driver: `$1` placeholders, BIGINT millisecond timestamps, TEXT ids. Each service ships two
//! migration folders (`migrations/sqlite`, `migrations/postgres`) because DDL differs.
//!
//! SQLite allows one writer at a time; instead of letting concurrent writers spin on
//! `SQLITE_BUSY`, writes go through a pool of exactly one connection (an async, fair queue) and
//! reads through a pool of several. On PostgreSQL both are the same pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The migrations of one service, for both engines (built with `sqlx::migrate!`).
#[derive(Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: expected sqlite:PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("database connection failed: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

impl DbError {
    /// Pool exhaustion and lost connections are the database being unavailable (503), not a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            DbError::Connect(_)
                | DbError::Query(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
        )
    }
}

impl From<DbError> for Problem {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            Problem::unavailable("the database is unavailable; retry shortly")
        } else {
            tracing::error!(error = %e, "database error");
            Problem::internal()
        }
    }
}

/// Pool settings taken from [`crate::config::RuntimeConfig`].
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(2) }
    }
}

/// A service's database: a read pool, a write pool, and whether its migrations are applied.
#[derive(Clone)]
pub struct Db {
    pub backend: Backend,
    read: AnyPool,
    write: AnyPool,
    migrations: Migrations,
    migrated: Arc<AtomicBool>,
    service: &'static str,
}

impl Db {
    /// Connects (lazily: an unreachable PostgreSQL does not stop the process; `/ready` reports it).
    pub fn open(
        service: &'static str,
        url: &str,
        migrations: Migrations,
        settings: PoolSettings,
    ) -> Result<Self, DbError> {
        install_default_drivers();
        let backend = backend_of(url)?;
        let (read, write) = match backend {
            Backend::Sqlite => {
                let url = sqlite_create_url(url);
                let opts = || {
                    AnyPoolOptions::new().acquire_timeout(settings.acquire_timeout).after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; NORMAL sync is durable
                            // across process crashes (not power loss) and much faster.
                            conn.execute(sqlx::raw_sql(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                     PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;",
                            ))
                            .await?;
                            Ok(())
                        })
                    })
                };
                let write =
                    opts().max_connections(1).min_connections(1).connect_lazy(&url).map_err(DbError::Connect)?;
                let read = opts()
                    .max_connections(settings.max_connections.max(2))
                    .connect_lazy(&url)
                    .map_err(DbError::Connect)?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_lazy(url)
                    .map_err(DbError::Connect)?;
                (pool.clone(), pool)
            }
        };
        Ok(Self { backend, read, write, migrations, migrated: Arc::new(AtomicBool::new(false)), service })
    }

    /// Opens and migrates, failing if the database cannot be reached (CLI commands, embedded mode).
    pub async fn open_and_migrate(
        service: &'static str,
        url: &str,
        migrations: Migrations,
        settings: PoolSettings,
    ) -> Result<Self, DbError> {
        let dir = sqlite_path(url).and_then(|p| std::path::Path::new(p).parent()).filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|e| DbError::Connect(sqlx::Error::Io(e)))?;
        }
        let db = Self::open(service, url, migrations, settings)?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies pending migrations (PostgreSQL: under sqlx's advisory lock, so replicas may race).
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = self.migrator();
        migrator.run(&self.write).await?;
        self.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// Retries [`Db::migrate`] with back-off until it succeeds; for services whose database may
    /// start after them. Readiness stays false meanwhile.
    pub fn migrate_in_background(&self) {
        let db = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match db.migrate().await {
                    Ok(()) => {
                        tracing::info!(service = db.service, "database migrated");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(service = db.service, error = %e, retry_in_ms = delay.as_millis() as u64, "database not ready");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => self.migrations.sqlite,
            Backend::Postgres => self.migrations.postgres,
        }
    }

    pub fn read(&self) -> &AnyPool {
        &self.read
    }

    pub fn write(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a transaction on the write pool; use it instead of `write().begin()`. It is
    /// cancel-safe, unlike sqlx 0.9's `Pool::begin` on PostgreSQL: a future dropped while `BEGIN`
    /// is in flight (a client that hangs up, the request time limit) leaves the pooled connection
    /// inside a transaction nothing rolls back, and the next borrower's statements run in it
    /// (transact-rs/sqlx#4393, fixed upstream after 0.9.0). Here `BEGIN` runs to completion on a
    /// task of its own; a transaction nobody takes is dropped there, which queues its ROLLBACK.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let pool = self.write.clone();
        match tokio::spawn(async move { pool.begin().await }).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(sqlx::Error::PoolClosed), // the runtime is shutting down
        }
    }

    /// Readiness: the database answers and every migration this binary knows is applied.
    pub async fn check_ready(&self) -> Result<(), String> {
        if !self.migrated.load(Ordering::Acquire) {
            return Err("migrations not applied yet".into());
        }
        let latest = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.read)
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        match applied {
            Some(v) if v >= latest => Ok(()),
            other => Err(format!("schema at version {other:?}, binary needs {latest}")),
        }
    }

    /// Publishes pool gauges (`db_pool_connections{service,state}` and
    /// `db_pool_max_connections{service}`); called before each scrape.
    pub fn record_pool_metrics(&self) {
        use crate::telemetry::names::{DB_POOL_CONNECTIONS, DB_POOL_MAX_CONNECTIONS};
        let max = |pool: &AnyPool| pool.options().get_max_connections();
        let (size, idle, max) = match self.backend {
            Backend::Sqlite => (
                self.read.size() + self.write.size(),
                self.read.num_idle() + self.write.num_idle(),
                max(&self.read) + max(&self.write),
            ),
            Backend::Postgres => (self.read.size(), self.read.num_idle(), max(&self.read)),
        };
        let idle = idle as u32;
        metrics::gauge!(DB_POOL_CONNECTIONS, "service" => self.service, "state" => "idle").set(idle as f64);
        metrics::gauge!(DB_POOL_CONNECTIONS, "service" => self.service, "state" => "active")
            .set(size.saturating_sub(idle) as f64);
        metrics::gauge!(DB_POOL_MAX_CONNECTIONS, "service" => self.service).set(max as f64);
    }

    /// Times a database operation into `db_query_duration_seconds{service,op}`.
    pub async fn timed<T, F>(&self, op: &'static str, fut: F) -> Result<T, DbError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let start = Instant::now();
        let out = fut.await;
        metrics::histogram!("db_query_duration_seconds", "service" => self.service, "op" => op)
            .record(start.elapsed().as_secs_f64());
        out.map_err(DbError::Query)
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

fn backend_of(url: &str) -> Result<Backend, DbError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(DbError::UnsupportedUrl(url.to_owned()))
    }
}

/// The file path of a `sqlite:` URL (without query), or None for other URLs / in-memory.
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// SQLite URLs create the file when missing unless the caller chose a mode.
fn sqlite_create_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The SQLite URL of a service's file in the data dir.
pub fn sqlite_url_in(data_dir: &std::path::Path, service: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{service}.db")).display())
}

/// True when the error is a unique-constraint violation (same meaning on both engines).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(backend_of("sqlite://data/x.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert!(matches!(backend_of("mysql://x"), Err(DbError::UnsupportedUrl(_))));
    }

    #[test]
    fn sqlite_paths_and_modes() {
        assert_eq!(sqlite_path("sqlite://data/a.db?mode=rwc"), Some("data/a.db"));
        assert_eq!(sqlite_path("sqlite:/abs/a.db"), Some("/abs/a.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_create_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(sqlite_create_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }
}
