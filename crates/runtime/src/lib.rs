//! The shared runtime of every Flotilla service: configuration, logs and metrics, the HTTP stack,
//! problem+json errors, database pools, token verification and rate limiting.

pub mod auth;
pub mod breaker;
pub mod config;
pub mod db;
pub mod http;
pub mod ids;
pub mod jwks;
pub mod problem;
pub mod ratelimit;
pub mod server;
pub mod shared;
pub mod telemetry;
pub mod time;
pub mod upstream;

pub use problem::{ApiJson, ApiPath, ApiQuery, FieldError, Problem};
