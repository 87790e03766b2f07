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

use crate::model::User;
use crate::service::{Accounts, ProfileChange, UserPage};
use crate::tokens::TokenResponse;

type St = State<Arc<Accounts>>;
type ApiResult<T = Response> = Result<T, Problem>;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A new account.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignupRequest)]
struct SignupBody {
    /// Display name.
    #[schema(min_length = 1, max_length = 100, example = "Ada")]
    name: String,
    /// Compared without regard to case.
    #[schema(format = Email, max_length = 254, example = "ada@example.com")]
    email: String,
    /// Not a common password, and not the email.
    #[schema(min_length = 8, max_length = 128, example = "analytical engine")]
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LoginRequest)]
struct LoginBody {
    #[schema(format = Email, example = "ada@example.com")]
    email: String,
    #[schema(example = "analytical engine")]
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RefreshRequest)]
struct RefreshBody {
    /// The refresh token of the latest pair (each is exchanged once).
    refresh_token: String,
}

/// Optional: also end the session of this refresh token (when it is the caller's).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LogoutRequest)]
struct LogoutBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Changes of the caller's profile; a new `password` needs the `current_password`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProfileUpdate)]
struct UpdateMeBody {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    #[serde(default)]
    #[schema(min_length = 8, max_length = 128)]
    password: Option<String>,
    #[serde(default)]
    current_password: Option<String>,
}

/// An administrator's change of a user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AdminUserUpdate)]
struct AdminUpdateBody {
    #[serde(default)]
    #[schema(schema_with = crate::openapi::role_schema)]
    role: Option<String>,
    /// `false` disables the account and ends its sessions.
    #[serde(default)]
    active: Option<bool>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Users per page.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
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

/// Create an account
///
/// Creates the user and signs them in: the answer holds an access token, a refresh token and
/// the user.
#[utoipa::path(
    post,
    path = "/api/auth/signup",
    operation_id = "signup",
    tag = "auth",
    request_body = SignupBody,
    responses(
        (status = 201, description = "Created and signed in.", body = TokenResponse),
        (status = 400, description = "The body is not valid JSON."),
        (status = 409, description = "A user with this email already exists."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields (weak password, bad email…), each listed in `errors`."),
    )
)]
async fn signup(State(a): St, ApiJson(b): ApiJson<SignupBody>) -> ApiResult {
    Ok(tokens(StatusCode::CREATED, a.signup(&b.name, &b.email, &b.password).await?))
}

/// Sign in
///
/// Unknown email and wrong password get the same 401. Repeated failures for an account or from
/// an address are refused with 429 for a while.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in.", body = TokenResponse),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Invalid email or password."),
        (status = 403, description = "The account is disabled."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "A field is missing or of the wrong type."),
    )
)]
async fn login(State(a): St, req: Request) -> ApiResult {
    let client = client_ip(&req, &a.cfg.trusted_proxies);
    let ApiJson(b) = ApiJson::<LoginBody>::from_request(req, &()).await?;
    Ok(tokens(StatusCode::OK, a.login(&b.email, &b.password, client).await?))
}

/// Exchange a refresh token for a new pair
///
/// Each refresh token works once; presenting a used one again ends the whole session.
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    operation_id = "refresh",
    tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "A new token pair.", body = TokenResponse),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "A field is missing or of the wrong type."),
    )
)]
async fn refresh(State(a): St, ApiJson(b): ApiJson<RefreshBody>) -> ApiResult {
    Ok(tokens(StatusCode::OK, a.refresh(&b.refresh_token).await?))
}

/// Sign out
///
/// Ends the caller's session: its access and refresh tokens stop working. The body is optional.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    operation_id = "logout",
    tag = "auth",
    request_body(content = Option<LogoutBody>, description = "Optional."),
    responses(
        (status = 204, description = "Signed out."),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "A body that is not `application/json`."),
        (status = 422, description = "A field is of the wrong type."),
    ),
    security(("bearer" = []))
)]
async fn logout(State(a): St, Auth(claims): Auth, req: Request) -> ApiResult<StatusCode> {
    let body = optional_json::<LogoutBody>(req).await?;
    a.logout(&claims, body.and_then(|b| b.refresh_token).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user
#[utoipa::path(
    get,
    path = "/api/auth/me",
    operation_id = "get_me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller's profile.", body = User),
        (status = 401, description = "Missing, invalid, expired or revoked access token, or the user is gone."),
        (status = 403, description = "The account is disabled."),
    ),
    security(("bearer" = []))
)]
async fn me(State(a): St, Auth(claims): Auth) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(a.me(&claims).await?))
}

/// Change the caller's name or password
///
/// A new password needs `current_password`; it ends every other session of the user.
#[utoipa::path(
    patch,
    path = "/api/auth/me",
    operation_id = "update_me",
    tag = "auth",
    request_body = UpdateMeBody,
    responses(
        (status = 200, description = "The updated profile.", body = User),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token, or the user is gone."),
        (status = 403, description = "The account is disabled, or `current_password` is wrong."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields, each listed in `errors`."),
        (status = 429, description = "Too many wrong current passwords, or a rate limit; retry after `Retry-After` seconds.",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    ),
    security(("bearer" = []))
)]
async fn update_me(
    State(a): St,
    Auth(claims): Auth,
    ApiJson(b): ApiJson<UpdateMeBody>,
) -> ApiResult<impl IntoResponse> {
    let change = ProfileChange { name: b.name, password: b.password, current_password: b.current_password };
    Ok(axum::Json(a.update_me(&claims, change).await?))
}

/// Delete the caller's account
#[utoipa::path(
    delete,
    path = "/api/auth/me",
    operation_id = "delete_me",
    tag = "auth",
    responses(
        (status = 204, description = "Deleted; the user's tokens stop working."),
        (status = 401, description = "Missing, invalid, expired or revoked access token, or the user is gone."),
    ),
    security(("bearer" = []))
)]
async fn delete_me(State(a): St, Auth(claims): Auth) -> ApiResult<StatusCode> {
    a.delete_me(&claims).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List users (administrators)
///
/// In creation order, one page at a time.
#[utoipa::path(
    get,
    path = "/api/admin/users",
    operation_id = "list_users",
    tag = "admin",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of users.", body = UserPage),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The caller is not an administrator."),
        (status = 422, description = "Invalid `limit` or `cursor`."),
    ),
    security(("bearer" = []))
)]
async fn list_users(State(a): St, auth: Auth, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult<impl IntoResponse> {
    auth.require_admin()?;
    Ok(axum::Json(a.list_users(q.limit, q.cursor.as_deref()).await?))
}

/// Change a user's role or active flag (administrators)
#[utoipa::path(
    patch,
    path = "/api/admin/users/{id}",
    operation_id = "admin_update_user",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id.")),
    request_body = AdminUpdateBody,
    responses(
        (status = 200, description = "The updated user.", body = User),
        (status = 400, description = "The body is not valid JSON."),
        (status = 401, description = "Missing, invalid, expired or revoked access token."),
        (status = 403, description = "The caller is not an administrator."),
        (status = 404, description = "No such user."),
        (status = 409, description = "The change would leave no active administrator."),
        (status = 413, description = "The body is too large."),
        (status = 415, description = "The body is not `application/json`."),
        (status = 422, description = "Invalid fields, each listed in `errors`."),
    ),
    security(("bearer" = []))
)]
async fn admin_update_user(
    State(a): St,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<AdminUpdateBody>,
) -> ApiResult<impl IntoResponse> {
    auth.require_admin()?;
    Ok(axum::Json(a.admin_update(&id, b.role.as_deref(), b.active).await?))
}

/// Public keys of the access tokens (JWKS)
///
/// Ed25519 keys (RFC 8037); a rotated-out key stays listed while tokens signed with it live.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "auth",
    responses((status = 200, description = "The key set.", body = crate::openapi::JwkSetSchema)),
)]
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
