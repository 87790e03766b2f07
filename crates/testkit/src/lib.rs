//! Test support for Flotilla: throwaway PostgreSQL clusters ([`pg`]) and child processes of the
//! `flotilla` binary ([`process`]).
//!
//! Everything here is blocking on purpose: it is called from test setup (also from inside a tokio
//! runtime, where blocking for the ~1.5 s PostgreSQL startup is acceptable) and must not depend on
//! the code under test (no HTTP client crate, no database driver).

pub mod nats;
pub use nats::Nats;
pub mod pg;
pub mod process;
pub mod redis;
pub use redis::{Redis, redis_or_skip};

pub use pg::{PgUnavailable, Postgres, pg_or_skip};
pub use process::{ServiceProcess, free_port, http_get};
