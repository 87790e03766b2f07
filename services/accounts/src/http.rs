//! The HTTP API: thin handlers that parse, call [`Accounts`], and answer.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use flotilla_runtime::auth::{Auth, require_auth};
use flotilla_runtime::http::client_ip;
use flotilla_runtime::{ApiJson, ApiPath, ApiQuery, Problem};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::service::{Accounts, ProfileChange};
use crate::tokens::TokenResponse;

type St = State<Arc<Accounts>>;
type ApiResult<T = Response> = Result<T, Problem>;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    name: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMeBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    current_password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminUpdateBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The accounts API routes (without the operations endpoints and the shared middleware).
pub fn router(accounts: Arc<Accounts>) -> Router {
    let protected = Router::new()
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me).patch(update_me).delete(delete_me))
        .route("/api/admin/users", get(list_users))
        .route("/api/admin/users/{id}", patch(admin_update_user))
        .route_layer(from_fn_with_state(accounts.auth.verifier.clone(), require_auth));
    Router::new()
        .route("/api/auth/signup", post(signup))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route(JWKS_PATH, get(jwks))
        .merge(protected)
        .with_state(accounts)
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn tokens(status: StatusCode, body: TokenResponse) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn signup(State(a): St, ApiJson(b): ApiJson<SignupBody>) -> ApiResult {
    Ok(tokens(StatusCode::CREATED, a.signup(&b.name, &b.email, &b.password).await?))
}

async fn login(State(a): St, req: Request) -> ApiResult {
    let client = client_ip(&req, &a.cfg.trusted_proxies);
    let ApiJson(b) = ApiJson::<LoginBody>::from_request(req, &()).await?;
    Ok(tokens(StatusCode::OK, a.login(&b.email, &b.password, client).await?))
}

async fn refresh(State(a): St, ApiJson(b): ApiJson<RefreshBody>) -> ApiResult {
    Ok(tokens(StatusCode::OK, a.refresh(&b.refresh_token).await?))
}

async fn logout(State(a): St, Auth(claims): Auth, req: Request) -> ApiResult<StatusCode> {
    let body = optional_json::<LogoutBody>(req).await?;
    a.logout(&claims, body.and_then(|b| b.refresh_token).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(a): St, Auth(claims): Auth) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(a.me(&claims).await?))
}

async fn update_me(
    State(a): St,
    Auth(claims): Auth,
    ApiJson(b): ApiJson<UpdateMeBody>,
) -> ApiResult<impl IntoResponse> {
    let change = ProfileChange { name: b.name, password: b.password, current_password: b.current_password };
    Ok(axum::Json(a.update_me(&claims, change).await?))
}

async fn delete_me(State(a): St, Auth(claims): Auth) -> ApiResult<StatusCode> {
    a.delete_me(&claims).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_users(State(a): St, auth: Auth, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult<impl IntoResponse> {
    auth.require_admin()?;
    Ok(axum::Json(a.list_users(q.limit, q.cursor.as_deref()).await?))
}

async fn admin_update_user(
    State(a): St,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<AdminUpdateBody>,
) -> ApiResult<impl IntoResponse> {
    auth.require_admin()?;
    Ok(axum::Json(a.admin_update(&id, b.role.as_deref(), b.active).await?))
}

async fn jwks(State(a): St) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(a.signer.jwks()))
}

/// A JSON body that may be absent (empty): `None`, else parsed like [`ApiJson`] (same 400, 413,
/// 415 and 422 answers).
async fn optional_json<T: DeserializeOwned>(req: Request) -> ApiResult<Option<T>> {
    let (parts, body) = req.into_parts();
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(status, "request body is too large")
        } else {
            Problem::bad_request("request body could not be read")
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let ApiJson(v) = ApiJson::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), &()).await?;
    Ok(Some(v))
}
