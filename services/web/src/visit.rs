//! One page request: its session (read from the cookie, written back when it changed), the CSRF
//! check of every POST, API calls as the signed-in user with transparent token refresh, and the
//! rendering of errors as pages.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use flotilla_runtime::time::now_secs;
use serde_json::Value;

use crate::App;
use crate::api::{CallContext, Reply, Tokens};
use crate::session::{
    CSRF_FIELD, FLASH_COOKIE, Flash, SESSION_COOKIE, SIGNED_IN_MAX_AGE_SECS, Session, SignedIn, TZ_COOKIE, cookie,
    set_cookie,
};
use crate::views;

/// Refresh the access token when it has less than this left.
const REFRESH_MARGIN_SECS: i64 = 60;

/// A failed page request; rendered as a page (with the visitor's session) by [`layer`].
#[derive(Debug, Clone)]
pub enum WebError {
    /// Not signed in (or the session ended): go to the login page.
    SignedOut,
    NotFound,
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// The request itself is wrong (a form field the page never sends, a path id).
    BadRequest(String),
    /// The API refused or failed (status, detail, seconds to wait).
    Api(StatusCode, String, Option<u64>),
    /// The gateway could not be reached.
    Unavailable,
}

impl WebError {
    /// An unexpected API answer (the caller handles the ones it expects).
    pub fn from_reply(r: &Reply) -> Self {
        match r.status {
            StatusCode::UNAUTHORIZED => WebError::SignedOut,
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => WebError::NotFound,
            s => WebError::Api(s, r.detail(), r.retry_after()),
        }
    }
}

impl From<crate::api::Unreachable> for WebError {
    fn from(_: crate::api::Unreachable) -> Self {
        WebError::Unavailable
    }
}

impl IntoResponse for WebError {
    /// The status only; [`layer`] renders the page from the [`WebError`] in the extensions.
    fn into_response(self) -> Response {
        let status = match &self {
            WebError::SignedOut => StatusCode::SEE_OTHER,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Api(s, _, _) => *s,
            WebError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut res = status.into_response();
        res.extensions_mut().insert(self);
        res
    }
}

pub type PageResult = Result<Response, WebError>;

enum FlashOut {
    Untouched,
    Set(Flash),
    Clear,
}

struct State_ {
    session: Session,
    dirty: bool,
    flash_in: Option<Flash>,
    flash_out: FlashOut,
}

/// The visitor of one request. Cloned into handlers through the request extensions.
#[derive(Clone)]
pub struct Visit {
    app: Arc<App>,
    ctx: CallContext,
    state: Arc<Mutex<State_>>,
    /// The browser's offset from UTC in minutes (0 until the page script has told us).
    pub tz_minutes: i32,
    /// Path and query of this request (for `next` after login, and `back` after actions).
    pub uri: String,
}

impl Visit {
    fn lock(&self) -> std::sync::MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn user(&self) -> Option<SignedIn> {
        self.lock().session.user.clone()
    }

    /// The signed-in user, or [`WebError::SignedOut`].
    pub fn require_user(&self) -> Result<SignedIn, WebError> {
        self.user().ok_or(WebError::SignedOut)
    }

    pub fn csrf(&self) -> String {
        let sid = self.lock().session.sid.clone();
        self.app.keys.csrf_token(&sid)
    }

    pub fn sid(&self) -> String {
        self.lock().session.sid.clone()
    }

    /// Starts a signed-in session (a new session id: the anonymous one's CSRF tokens die).
    pub fn sign_in(&self, t: &Tokens) {
        let user = SignedIn {
            id: t.user.id.clone(),
            name: t.user.name.clone(),
            email: t.user.email.clone(),
            access: t.access_token.clone(),
            exp: now_secs() + t.expires_in,
            refresh: t.refresh_token.clone(),
            conversation: None,
        };
        let mut s = self.lock();
        s.session = Session::signed_in(user);
        s.dirty = true;
    }

    pub fn sign_out(&self) {
        let mut s = self.lock();
        s.session = Session::anonymous();
        s.dirty = true;
    }

    pub fn set_conversation(&self, id: Option<String>) {
        let mut s = self.lock();
        if let Some(u) = s.session.user.as_mut()
            && u.conversation != id
        {
            u.conversation = id;
            s.dirty = true;
        }
    }

    /// The message left by the previous request; shown once.
    pub fn take_flash(&self) -> Option<Flash> {
        let mut s = self.lock();
        let f = s.flash_in.take();
        if f.is_some() && matches!(s.flash_out, FlashOut::Untouched) {
            s.flash_out = FlashOut::Clear;
        }
        f
    }

    /// A message for the next page. `false` when it is too large for a cookie (the caller then
    /// renders the page itself).
    pub fn flash(&self, message: &str, undo: Option<Value>, chat: Option<Value>) -> bool {
        let mut s = self.lock();
        let flash = Flash { sid: s.session.sid.clone(), message: message.to_owned(), undo, chat };
        if self.app.keys.seal("flash", &flash).len() > 3800 {
            return false;
        }
        s.flash_out = FlashOut::Set(flash);
        true
    }

    /// An API call without a session (signup, login, health).
    pub async fn public_call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, WebError> {
        Ok(self.app.api.send(&self.ctx, method, path, None, body, &[]).await?)
    }

    pub async fn sign_in_call(&self, path: &str, body: &Value) -> Result<Result<Tokens, Reply>, WebError> {
        Ok(self.app.api.sign_in(&self.ctx, path, body).await?)
    }

    /// An API call as the signed-in user; refreshes the access token when it is about to expire
    /// or was refused, and ends the session when the refresh token is no longer valid.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, WebError> {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: &[(&'static str, String)],
    ) -> Result<Reply, WebError> {
        let mut user = self.require_user()?;
        if user.exp - now_secs() <= REFRESH_MARGIN_SECS {
            user = self.refresh(&user).await?;
        }
        let reply = self.app.api.send(&self.ctx, method.clone(), path, Some(&user.access), body, extra).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        let user = self.refresh(&user).await?;
        let reply = self.app.api.send(&self.ctx, method, path, Some(&user.access), body, extra).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            self.sign_out();
            return Err(WebError::SignedOut);
        }
        Ok(reply)
    }

    async fn refresh(&self, user: &SignedIn) -> Result<SignedIn, WebError> {
        match self.app.api.refresh(&self.ctx, &user.refresh).await? {
            Some(t) => {
                let mut s = self.lock();
                let next = SignedIn {
                    access: t.access_token,
                    exp: now_secs() + t.expires_in,
                    refresh: t.refresh_token,
                    name: t.user.name,
                    email: t.user.email,
                    ..user.clone()
                };
                s.session.user = Some(next.clone());
                s.dirty = true;
                Ok(next)
            }
            None => {
                self.sign_out();
                Err(WebError::SignedOut)
            }
        }
    }
}

/// Takes the body of a form post (already read by [`layer`]).
pub fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

/// The session middleware of every page: loads the session, checks CSRF on POST, runs the handler,
/// renders errors as pages and writes changed cookies.
pub async fn layer(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let opened = cookie(headers, SESSION_COOKIE).and_then(|c| app.keys.open::<Session>("session", c));
    let had_flash = cookie(headers, FLASH_COOKIE).is_some();
    let (session, dirty) = match opened {
        Some(s) => (s, false),
        None => (Session::anonymous(), true),
    };
    let flash_in =
        cookie(headers, FLASH_COOKIE).and_then(|c| app.keys.open::<Flash>("flash", c)).filter(|f| f.sid == session.sid);
    let tz_minutes = cookie(headers, TZ_COOKIE)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|m| (-16 * 60..=16 * 60).contains(m))
        .unwrap_or(0);
    let uri = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let visit = Visit {
        app: app.clone(),
        ctx: CallContext::of(&req),
        state: Arc::new(Mutex::new(State_ {
            session,
            dirty,
            flash_out: if had_flash && flash_in.is_none() { FlashOut::Clear } else { FlashOut::Untouched },
            flash_in,
        })),
        tz_minutes,
        uri,
    };
    let is_post = req.method() == Method::POST;

    let mut req = req;
    if is_post {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, app.body_limit).await {
            Ok(b) => b,
            Err(_) => {
                let err = WebError::Api(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.".into(), None);
                return finish(&visit, err.into_response(), false);
            }
        };
        let header_token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let token =
            header_token.or_else(|| form_pairs(&bytes).into_iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v));
        if !token.is_some_and(|t| app.keys.csrf_ok(&visit.sid(), &t)) {
            return finish(&visit, WebError::Csrf.into_response(), true);
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(visit.clone());
    let res = next.run(req).await;
    finish(&visit, res, is_post)
}

/// Renders an error left by the handler, and sets the cookies that changed.
fn finish(visit: &Visit, mut res: Response, is_post: bool) -> Response {
    if let Some(err) = res.extensions_mut().remove::<WebError>() {
        res = match err {
            WebError::SignedOut => {
                // After a post the page to return to is the list, not the action.
                let next = if is_post { "/tasks".to_owned() } else { visit.uri.clone() };
                let q = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
                Redirect::to(&format!("/login?{q}")).into_response()
            }
            other => {
                let status = res.status();
                (status, views::error_page(visit, &other)).into_response()
            }
        };
    }
    let (set_session, flash_out, session, signed_in) = {
        let mut s = visit.lock();
        let flash_out = std::mem::replace(&mut s.flash_out, FlashOut::Untouched);
        (s.dirty, flash_out, s.session.clone(), s.session.user.is_some())
    };
    let secure = visit.app.cookie_secure;
    let mut add = |value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    };
    if set_session {
        let sealed = visit.app.keys.seal("session", &session);
        add(set_cookie(SESSION_COOKIE, &sealed, signed_in.then_some(SIGNED_IN_MAX_AGE_SECS), secure));
    }
    match flash_out {
        FlashOut::Untouched => {}
        FlashOut::Set(f) => add(set_cookie(FLASH_COOKIE, &visit.app.keys.seal("flash", &f), None, secure)),
        FlashOut::Clear => add(set_cookie(FLASH_COOKIE, "", Some(0), secure)),
    }
    res
}
