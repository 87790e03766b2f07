//! The web UI: server-rendered pages (sign up, log in, tasks, chat, activity, service status) over
//! the gateway's public API, called as the signed-in user.
//!
//! - Sessions live in a signed, HttpOnly cookie that holds the user's tokens ([`session`]); the
//!   access token is refreshed on the server before it expires ([`visit`]).
//! - Every POST carries a CSRF token bound to the session; a post without it changes nothing.
//! - Pages work without JavaScript (plain forms, post/redirect/get); the small script in
//!   `assets/app.js` submits the same forms in the background and swaps the page in place.
//!
//! Contract used by the binary (keep these signatures): [`SERVICE`], [`Config::from_env`],
//! [`app`].

mod api;
mod assets;
mod forms;
mod handlers;
pub mod session;
mod views;
mod visit;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use flotilla_runtime::config::{COOKIE_SECURE, ConfigError, Env, RuntimeConfig, WEB_SESSION_KEY};
use flotilla_runtime::http::{Ops, service_router};
use flotilla_runtime::upstream::Upstream;

pub const SERVICE: &str = "web";

#[derive(Debug, Clone)]
pub struct Config {
    /// Signs session cookies and CSRF tokens; `None`: a random key per process.
    pub session_key: Option<String>,
    /// `Secure` on cookies (browsers accept it on http://localhost too).
    pub cookie_secure: bool,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let session_key = env.get(WEB_SESSION_KEY).map(str::to_owned);
        if let Some(k) = &session_key
            && k.chars().count() < 32
        {
            // The value is a secret: never echo it.
            return Err(ConfigError::new(WEB_SESSION_KEY, "(hidden)", "must be at least 32 characters"));
        }
        let cookie_secure = match env.string(COOKIE_SECURE).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => return Err(ConfigError::new(COOKIE_SECURE, other, "expected true or false")),
        };
        Ok(Self { session_key, cookie_secure })
    }
}

/// What every page handler shares.
pub(crate) struct App {
    pub keys: session::Keys,
    pub api: api::Api,
    pub cookie_secure: bool,
    pub body_limit: usize,
}

/// The pages' Content-Security-Policy: only this origin's script and styles, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
];

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    // Pages hold personal data and CSRF tokens: never stored by caches (assets set their own).
    h.entry(axum::http::header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
}

/// The UI router (pages, static assets, `/health` `/ready` `/metrics`). `api` is the gateway
/// (its router in process in embedded mode, its URL in distributed mode): every page calls the
/// public API through it as the signed-in user.
pub fn app(cfg: &Config, rt: &RuntimeConfig, api: Upstream) -> axum::Router {
    let state = Arc::new(App {
        keys: session::Keys::new(cfg.session_key.as_deref()),
        api: api::Api::new(api),
        cookie_secure: cfg.cookie_secure,
        body_limit: rt.body_limit,
    });
    use handlers as h;
    let pages = Router::new()
        .route("/", get(h::root))
        .route("/login", get(h::login_page).post(h::login_post))
        .route("/signup", get(h::signup_page).post(h::signup_post))
        .route("/logout", get(h::logout_page).post(h::logout_post))
        .route("/tasks", get(h::tasks_page).post(h::create_task))
        .route("/tasks/restore", post(h::restore_task))
        .route("/tasks/{id}", post(h::update_task).get(h::edit_redirect))
        .route("/tasks/{id}/edit", get(h::edit_page))
        .route("/tasks/{id}/complete", post(h::complete_task))
        .route("/tasks/{id}/delete", post(h::delete_task))
        .route("/chat", post(h::chat_post))
        .route("/chat/new", post(h::chat_new))
        .route("/activity", get(h::activity_page))
        .route("/status", get(h::status_page))
        // Every other path (and method) gets the HTML 404 page, not the API's problem+json.
        .route("/{*rest}", any(h::not_found))
        .route_layer(middleware::from_fn_with_state(state.clone(), visit::layer));
    let pages = pages.route("/static/{version}/{file}", get(assets::serve)).route("/favicon.ico", get(assets::favicon));
    service_router(SERVICE, pages, Ops::new(), rt).layer(middleware::from_fn(security_headers))
}
