//! The public API, called through the gateway as the signed-in user.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use flotilla_runtime::http::ClientIp;
use flotilla_runtime::upstream::Upstream;
use serde::Deserialize;
use serde_json::Value;
use sha2::Digest;

/// Largest API answer read (a page of 100 tasks with long descriptions fits easily).
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// How long the result of a refresh is reused for the same refresh token: concurrent requests of
/// one browser near expiry must not present the same token twice (reuse ends the session). Short,
/// so that an old cookie replayed later still trips the reuse detection of accounts.
const REFRESH_REUSE: Duration = Duration::from_secs(5);

/// What the page request carries over to its API calls: the request id (one id in every log line)
/// and the client address the edge established (for the gateway's per-IP limits and login
/// throttling).
#[derive(Clone, Default)]
pub struct CallContext {
    request_id: Option<HeaderValue>,
    client_ip: Option<ClientIp>,
    connect_info: Option<ConnectInfo<SocketAddr>>,
}

impl CallContext {
    pub fn of(req: &Request) -> Self {
        Self {
            request_id: req.headers().get("x-request-id").cloned(),
            client_ip: req.extensions().get::<ClientIp>().copied(),
            connect_info: req.extensions().get::<ConnectInfo<SocketAddr>>().copied(),
        }
    }
}

/// An API answer: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The problem's `detail`, or the status phrase.
    pub fn detail(&self) -> String {
        self.body
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("error").to_owned())
    }

    /// The problem's invalid fields: (field name, message). `#/tags/2` → `tags`.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        let Some(errors) = self.body.get("errors").and_then(Value::as_array) else { return Vec::new() };
        errors
            .iter()
            .filter_map(|e| {
                let pointer = e.get("pointer").or_else(|| e.get("field")).and_then(Value::as_str)?;
                let detail = e.get("detail").or_else(|| e.get("message")).and_then(Value::as_str)?;
                let field = pointer.trim_start_matches("#/").split('/').next().unwrap_or_default();
                Some((field.to_owned(), detail.to_owned()))
            })
            .collect()
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get(header::RETRY_AFTER)?.to_str().ok()?.parse().ok()
    }
}

/// The answer of signup, login and refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub user: TokenUser,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenUser {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// `Err`: the gateway gave no answer about the token.
type RefreshSlot = Arc<tokio::sync::OnceCell<Result<Option<Tokens>, ()>>>;

/// The gateway and the refreshes in flight.
pub struct Api {
    gateway: Upstream,
    refreshes: Mutex<HashMap<[u8; 32], (Instant, RefreshSlot)>>,
}

/// The gateway could not be reached or answered something unreadable.
#[derive(Debug)]
pub struct Unreachable;

impl Api {
    pub fn new(gateway: Upstream) -> Self {
        Self { gateway, refreshes: Mutex::new(HashMap::new()) }
    }

    /// One request to the public API.
    pub async fn send(
        &self,
        ctx: &CallContext,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
        extra: &[(&'static str, String)],
    ) -> Result<Reply, Unreachable> {
        let mut req = Request::new(match body {
            Some(b) => Body::from(serde_json::to_vec(b).map_err(|_| Unreachable)?),
            None => Body::empty(),
        });
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().map_err(|_| Unreachable)?;
        let h = req.headers_mut();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if body.is_some() {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(token) = bearer {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Unreachable)?,
            );
        }
        if let Some(id) = &ctx.request_id {
            h.insert("x-request-id", id.clone());
        }
        for (name, value) in extra {
            h.insert(*name, HeaderValue::from_str(value).map_err(|_| Unreachable)?);
        }
        if let Some(ip) = ctx.client_ip {
            req.extensions_mut().insert(ip);
        }
        if let Some(ci) = ctx.connect_info {
            req.extensions_mut().insert(ci);
        }
        let res = self.gateway.call(req).await;
        let status = res.status();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_ANSWER).await.map_err(|_| Unreachable)?;
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok(Reply { status, headers: parts.headers, body })
    }

    /// Signup or login: the tokens, or the API's answer explaining why not.
    pub async fn sign_in(
        &self,
        ctx: &CallContext,
        path: &str,
        body: &Value,
    ) -> Result<Result<Tokens, Reply>, Unreachable> {
        let reply = self.send(ctx, Method::POST, path, None, Some(body), &[]).await?;
        if reply.ok() {
            serde_json::from_value(reply.body.clone()).map(Ok).map_err(|_| Unreachable)
        } else {
            Ok(Err(reply))
        }
    }

    /// Exchanges a refresh token once, however many requests ask at the same time; `None` when
    /// the session has ended.
    pub async fn refresh(&self, ctx: &CallContext, refresh_token: &str) -> Result<Option<Tokens>, Unreachable> {
        let key: [u8; 32] = sha2::Sha256::digest(refresh_token.as_bytes()).into();
        let slot = {
            let mut map = self.refreshes.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, (at, _)| at.elapsed() < REFRESH_REUSE);
            map.entry(key).or_insert_with(|| (Instant::now(), RefreshSlot::default())).1.clone()
        };
        let out = slot
            .get_or_init(|| async {
                let body = serde_json::json!({ "refresh_token": refresh_token });
                match self.send(ctx, Method::POST, "/api/auth/refresh", None, Some(&body), &[]).await {
                    Ok(r) if r.ok() => Ok(serde_json::from_value(r.body).ok()),
                    Ok(r) if r.status == StatusCode::UNAUTHORIZED => Ok(None),
                    _ => Err(()),
                }
            })
            .await
            .clone();
        let Ok(out) = out else {
            // Not an answer about the token: let the next request try again.
            self.refreshes.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            return Err(Unreachable);
        };
        Ok(out)
    }
}
