//! The accounts API over real HTTP: `app(...)` served on 127.0.0.1:0, called with reqwest.
//! Every status code of the contract is exercised, and after each rejected request the stored
//! state is checked to be unchanged.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Engine, TestDb};
use flotilla_accounts::{Config, Store, app};
use flotilla_runtime::auth::{AuthContext, JwkSet, PublicKeys, Revocations, Role, TokenPolicy, Verifier};
use flotilla_runtime::config::{self, Env, RuntimeConfig};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";
const ADMIN_EMAIL: &str = "root@example.com";
const ADMIN_PW: &str = "root admin secret";

struct Server {
    base: String,
    http: reqwest::Client,
    store: Store,
    _db: TestDb,
}

impl Server {
    /// Starts the service with the given `FLOTILLA_*` variables (plus a bootstrap admin).
    async fn start(engine: Engine, vars: &[(&str, &str)]) -> Option<Server> {
        let db = common::open(engine).await?;
        let mut pairs: Vec<(String, String)> = vec![
            (config::ADMIN_EMAIL.into(), ADMIN_EMAIL.into()),
            (config::ADMIN_PASSWORD.into(), ADMIN_PW.into()),
            (config::LOG.into(), "warn".into()),
        ];
        pairs.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let env = Env::from_pairs(pairs);
        let rt = RuntimeConfig::from_env(&env).expect("runtime config");
        let cfg = Config::from_env(&env).expect("accounts config");
        let auth = AuthContext::from_env(&env);
        let router = app(cfg, &rt, db.db.clone(), auth).await.expect("app starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(flotilla_runtime::server::serve(
            listener,
            router,
            Duration::from_secs(1),
            std::future::pending::<()>(),
        ));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        Some(Server { base: format!("http://{addr}"), http, store: Store::new(db.db.clone()), _db: db })
    }

    async fn sqlite(vars: &[(&str, &str)]) -> Server {
        Server::start(Engine::Sqlite, vars).await.expect("sqlite is always available")
    }

    fn req(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let b = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => b.bearer_auth(t),
            None => b,
        }
    }

    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut b = self.req(method, path, token);
        if let Some(body) = body {
            b = b.json(&body);
        }
        b.send().await.expect("request sent")
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.send(Method::POST, path, None, Some(body)).await
    }

    async fn get(&self, path: &str, token: &str) -> Response {
        self.send(Method::GET, path, Some(token), None).await
    }

    async fn signup(&self, name: &str, email: &str, password: &str) -> Value {
        let res = self.post("/api/auth/signup", json!({"name": name, "email": email, "password": password})).await;
        assert_eq!(res.status(), StatusCode::CREATED, "signup of {email}");
        res.json().await.unwrap()
    }

    async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/api/auth/login", json!({"email": email, "password": password})).await
    }

    async fn login_ok(&self, email: &str, password: &str) -> Value {
        let res = self.login(email, password).await;
        assert_eq!(res.status(), StatusCode::OK, "login of {email}");
        res.json().await.unwrap()
    }

    async fn refresh(&self, refresh_token: &str) -> Response {
        self.post("/api/auth/refresh", json!({ "refresh_token": refresh_token })).await
    }

    async fn admin_token(&self) -> String {
        tok(&self.login_ok(ADMIN_EMAIL, ADMIN_PW).await)
    }

    async fn user_count(&self) -> i64 {
        self.store.count_users().await.unwrap()
    }
}

fn tok(v: &Value) -> String {
    v["access_token"].as_str().expect("access_token").to_owned()
}

fn rtok(v: &Value) -> String {
    v["refresh_token"].as_str().expect("refresh_token").to_owned()
}

/// Asserts a problem+json answer with `status` and returns its body.
async fn problem(res: Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status for {}", res.url());
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(v["status"], status);
    assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
    v
}

fn pointers(p: &Value) -> Vec<String> {
    let mut v: Vec<String> = p["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn is_rfc3339_ms(s: &Value) -> bool {
    s.as_str().is_some_and(|s| s.len() == 24 && s.ends_with('Z') && flotilla_runtime::time::parse_rfc3339(s).is_some())
}

async fn verifier_from_jwks(s: &Server) -> Verifier {
    let res = s.http.get(format!("{}/.well-known/jwks.json", s.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    let set: JwkSet = res.json().await.unwrap();
    assert!(!set.keys.is_empty());
    assert!(set.keys.iter().all(|k| k.alg == "EdDSA" && k.kty == "OKP" && k.crv == "Ed25519"));
    let keys = Arc::new(PublicKeys::default());
    keys.replace(set);
    let policy = TokenPolicy { issuer: "flotilla".into(), audience: "flotilla-api".into() };
    Verifier::new(keys, Arc::new(Revocations::default()), &policy)
}

// ---------------------------------------------------------------------------------------------

async fn journey(engine: Engine) {
    let Some(s) = Server::start(engine, &[]).await else { return };

    // Signup: 201, the token response shape, tokens not cacheable.
    let res = s
        .post("/api/auth/signup", json!({"name": "  Ada Lovelace ", "email": " Ada@Example.COM", "password": PW}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let signup: Value = res.json().await.unwrap();
    assert_eq!(signup["token_type"], "bearer");
    assert_eq!(signup["expires_in"], 900);
    let user = &signup["user"];
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["role"], "user");
    assert_eq!(user["active"], true);
    assert!(is_rfc3339_ms(&user["created_at"]) && is_rfc3339_ms(&user["updated_at"]), "{user}");
    assert_eq!(user.as_object().unwrap().len(), 7, "no password hash or extra fields: {user}");
    let user_id = user["id"].as_str().unwrap().to_owned();
    assert!(flotilla_runtime::ids::is_id(&user_id));

    // The access token verifies with the published JWKS and carries the documented claims.
    let verifier = verifier_from_jwks(&s).await;
    let claims = verifier.verify(&tok(&signup)).expect("token verifies with the JWKS");
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.role, Role::User);
    assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("flotilla", "flotilla-api"));
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(flotilla_runtime::ids::is_id(&claims.sid) && flotilla_runtime::ids::is_id(&claims.jti));

    // Me.
    let res = s.get("/api/auth/me", &tok(&signup)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.unwrap();
    assert_eq!(&me, user);

    // Refresh: a new pair in the same session.
    let res = s.refresh(&rtok(&signup)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let refreshed: Value = res.json().await.unwrap();
    assert_ne!(rtok(&refreshed), rtok(&signup));
    let c2 = verifier.verify(&tok(&refreshed)).unwrap();
    assert_eq!(c2.sid, claims.sid, "refresh stays in the same session");
    assert_ne!(c2.jti, claims.jti);
    assert_eq!(s.get("/api/auth/me", &tok(&refreshed)).await.status(), StatusCode::OK);

    // Reusing the old refresh token ends the whole session.
    let p = problem(s.refresh(&rtok(&signup)).await, 401).await;
    assert_eq!(p["detail"], "invalid refresh token");
    problem(s.refresh(&rtok(&refreshed)).await, 401).await;
    problem(s.get("/api/auth/me", &tok(&refreshed)).await, 401).await;
    problem(s.get("/api/auth/me", &tok(&signup)).await, 401).await;

    // Login starts a new session; logout ends it.
    let login = s.login_ok("ADA@example.com ", PW).await;
    assert_eq!(login["user"]["id"], user_id.as_str());
    assert_eq!(s.get("/api/auth/me", &tok(&login)).await.status(), StatusCode::OK);
    let res = s.send(Method::POST, "/api/auth/logout", Some(&tok(&login)), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(s.get("/api/auth/me", &tok(&login)).await, 401).await;
    problem(s.refresh(&rtok(&login)).await, 401).await;

    // The account itself still works.
    let again = s.login_ok("ada@example.com", PW).await;
    assert_eq!(s.get("/api/auth/me", &tok(&again)).await.status(), StatusCode::OK);

    // Readiness of the service (database migrated and reachable).
    let res = s.http.get(format!("{}/ready", s.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journey_sqlite() {
    journey(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journey_postgres() {
    journey(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signup_rejections_change_nothing() {
    let s = Server::sqlite(&[]).await;
    let before = s.user_count().await;

    // Every failing field is listed.
    let p = problem(
        s.post("/api/auth/signup", json!({"name": " ", "email": "not-an-email", "password": "short"})).await,
        422,
    )
    .await;
    assert_eq!(pointers(&p), vec!["#/email", "#/name", "#/password"]);

    for (body, pointer) in [
        (json!({"name": "A", "email": "a@example.com", "password": "Password123"}), "#/password"),
        (json!({"name": "A", "email": "a@example.com", "password": "qwertyuiop"}), "#/password"),
        (json!({"name": "A", "email": "jean.valjean@example.com", "password": "Jean.Valjean"}), "#/password"),
        (json!({"name": "A", "email": "a@example.com", "password": "x".repeat(129)}), "#/password"),
        (json!({"name": "x".repeat(101), "email": "a@example.com", "password": PW}), "#/name"),
        (json!({"name": "A", "email": "a@@example.com", "password": PW}), "#/email"),
        (json!({"name": "A", "email": "a@example", "password": PW}), "#/email"),
        (json!({"name": "A", "email": "a b@example.com", "password": PW}), "#/email"),
        (json!({"name": "A", "email": "a@example.com", "password": PW, "role": "admin"}), "#/role"),
        (json!({"name": "A", "email": "a@example.com"}), "#/password"),
    ] {
        let p = problem(s.post("/api/auth/signup", body.clone()).await, 422).await;
        assert_eq!(pointers(&p), vec![pointer.to_owned()], "{body}");
    }
    assert_eq!(s.user_count().await, before, "no user was created");
    problem(s.login("a@example.com", PW).await, 401).await;
    problem(s.login("a@example.com", "Password123").await, 401).await;

    // Duplicate email (case-insensitive): 409, and the first account is untouched.
    let first = s.signup("Grace", "grace@example.com", PW).await;
    let p = problem(
        s.post(
            "/api/auth/signup",
            json!({"name": "Impostor", "email": "GRACE@example.com", "password": "another long one"}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(p["detail"], "a user with this email already exists");
    problem(s.login("grace@example.com", "another long one").await, 401).await;
    let login = s.login_ok("grace@example.com", PW).await;
    assert_eq!(login["user"]["name"], "Grace");
    assert_eq!(login["user"]["id"], first["user"]["id"]);
    assert_eq!(s.user_count().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signups_with_one_email_create_one_user() {
    let s = Server::sqlite(&[]).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let http = s.http.clone();
        let url = format!("{}/api/auth/signup", s.base);
        tasks.push(tokio::spawn(async move {
            let body = json!({"name": format!("N{i}"), "email": "same@example.com", "password": PW});
            http.post(url).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, vec![201, 409, 409, 409]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_400_413_415_and_change_nothing() {
    let s = Server::sqlite(&[(config::BODY_LIMIT_BYTES, "1024")]).await;
    let before = s.user_count().await;
    let url = format!("{}/api/auth/signup", s.base);

    let res =
        s.http.post(&url).header("content-type", "application/json").body("{\"name\": \"A\",").send().await.unwrap();
    problem(res, 400).await;

    let body = json!({"name": "A", "email": "b@example.com", "password": PW}).to_string();
    let res = s.http.post(&url).header("content-type", "text/plain").body(body.clone()).send().await.unwrap();
    let p = problem(res, 415).await;
    assert!(p["detail"].as_str().unwrap().contains("application/json"));
    let res = s.http.post(&url).body(body).send().await.unwrap();
    problem(res, 415).await;

    let big = json!({"name": "A".repeat(2000), "email": "b@example.com", "password": PW});
    problem(s.post("/api/auth/signup", big).await, 413).await;

    // Wrong JSON types are a 422 naming the shape problem.
    problem(s.post("/api/auth/signup", json!({"name": 5, "email": "b@example.com", "password": PW})).await, 422).await;
    problem(s.post("/api/auth/login", json!("b@example.com")).await, 422).await;

    assert_eq!(s.user_count().await, before);
    problem(s.login("b@example.com", PW).await, 401).await;

    // Unknown routes and methods are problems too.
    problem(s.send(Method::GET, "/api/auth/nothing", None, None).await, 404).await;
    problem(s.send(Method::GET, "/api/auth/signup", None, None).await, 405).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_failures_look_the_same_and_disabled_accounts_get_403() {
    let s = Server::sqlite(&[]).await;
    let victim = s.signup("Victim", "victim@example.com", PW).await;

    let unknown = problem(s.login("nobody@example.com", PW).await, 401).await;
    let wrong = problem(s.login("victim@example.com", "not the password").await, 401).await;
    assert_eq!(unknown, wrong, "unknown email and wrong password are indistinguishable");
    assert_eq!(unknown["detail"], "invalid email or password");
    problem(s.post("/api/auth/login", json!({"email": "victim@example.com"})).await, 422).await;

    // An admin disables the account: the correct password now gets 403, a wrong one still 401.
    let admin = s.admin_token().await;
    let id = victim["user"]["id"].as_str().unwrap();
    let res =
        s.send(Method::PATCH, &format!("/api/admin/users/{id}"), Some(&admin), Some(json!({"active": false}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let p = problem(s.login("victim@example.com", PW).await, 403).await;
    assert_eq!(p["detail"], "account is disabled");
    problem(s.login("victim@example.com", "not the password").await, 401).await;
    // Its existing tokens died with the deactivation.
    problem(s.get("/api/auth/me", &tok(&victim)).await, 401).await;
    problem(s.refresh(&rtok(&victim)).await, 401).await;

    // Re-activated, it can log in again; the old tokens stay dead.
    let res =
        s.send(Method::PATCH, &format!("/api/admin/users/{id}"), Some(&admin), Some(json!({"active": true}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let back = s.login_ok("victim@example.com", PW).await;
    assert_eq!(s.get("/api/auth/me", &tok(&back)).await.status(), StatusCode::OK);
    problem(s.get("/api/auth/me", &tok(&victim)).await, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_is_throttled_per_account_with_retry_after() {
    let s = Server::sqlite(&[(config::LOGIN_MAX_FAILURES_PER_ACCOUNT, "3")]).await;
    s.signup("T", "t@example.com", PW).await;
    s.signup("Other", "other@example.com", PW).await;

    // A success clears the account's failures.
    for _ in 0..2 {
        problem(s.login("t@example.com", "wrong password!").await, 401).await;
    }
    s.login_ok("t@example.com", PW).await;
    for _ in 0..3 {
        problem(s.login("T@example.com ", "wrong password!").await, 401).await;
    }
    // Now even the right password is refused, without being checked.
    let res = s.login("t@example.com", PW).await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let p = problem(res, 429).await;
    assert!(p["detail"].as_str().unwrap().contains("too many"));
    problem(s.login("t@example.com", "wrong password!").await, 429).await;
    // Other accounts from the same client are not affected.
    s.login_ok("other@example.com", PW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_is_throttled_per_client_ip_behind_trusted_proxies() {
    let s = Server::sqlite(&[(config::LOGIN_MAX_FAILURES_PER_IP, "2"), (config::TRUSTED_PROXIES, "127.0.0.1")]).await;
    s.signup("Ip", "ip@example.com", PW).await;
    let login_from = |ip: &'static str, email: &'static str, pw: &'static str| {
        s.http
            .post(format!("{}/api/auth/login", s.base))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": pw}))
            .send()
    };
    problem(login_from("198.51.100.1", "a@example.com", "wrong password!").await.unwrap(), 401).await;
    problem(login_from("198.51.100.1", "b@example.com", "wrong password!").await.unwrap(), 401).await;
    let res = login_from("198.51.100.1", "ip@example.com", PW).await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    problem(res, 429).await;
    // Another client (as reported by the trusted proxy) is not throttled.
    let res = login_from("198.51.100.2", "ip@example.com", PW).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_rejects_unknown_tokens_and_concurrent_reuse_ends_the_session() {
    let s = Server::sqlite(&[]).await;
    problem(s.refresh("no-such-token").await, 401).await;
    problem(s.post("/api/auth/refresh", json!({})).await, 422).await;
    problem(s.post("/api/auth/refresh", json!({"refresh_token": "x", "extra": 1})).await, 422).await;

    let signup = s.signup("C", "c@example.com", PW).await;
    let token = rtok(&signup);
    let (a, b) = tokio::join!(s.refresh(&token), s.refresh(&token));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "exactly one concurrent use wins");
    let winner: Value = if a.status() == StatusCode::OK { a.json().await.unwrap() } else { b.json().await.unwrap() };
    // The second use was a reuse: the whole session is gone, including the winner's tokens.
    problem(s.refresh(&rtok(&winner)).await, 401).await;
    problem(s.get("/api/auth/me", &tok(&winner)).await, 401).await;
    s.login_ok("c@example.com", PW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_requests_get_401() {
    let s = Server::sqlite(&[]).await;
    let res = s.send(Method::GET, "/api/auth/me", None, None).await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    problem(res, 401).await;
    problem(s.get("/api/auth/me", "not.a.token").await, 401).await;
    problem(s.send(Method::POST, "/api/auth/logout", None, None).await, 401).await;
    problem(s.send(Method::DELETE, "/api/auth/me", None, None).await, 401).await;
    problem(s.send(Method::GET, "/api/admin/users", None, None).await, 401).await;
    // A token signed by a key this service never published.
    let stranger = flotilla_runtime::auth::SigningKey::generate();
    let now = flotilla_runtime::time::now_secs();
    let forged = stranger.sign(&flotilla_runtime::auth::Claims {
        sub: "x".into(),
        role: Role::Admin,
        iat: now,
        exp: now + 900,
        iss: "flotilla".into(),
        aud: "flotilla-api".into(),
        jti: "j".into(),
        sid: "s".into(),
    });
    problem(s.get("/api/admin/users", &forged).await, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_ends_the_callers_sessions_only() {
    let s = Server::sqlite(&[]).await;
    let one = s.signup("L", "l@example.com", PW).await;
    let two = s.login_ok("l@example.com", PW).await;
    let three = s.login_ok("l@example.com", PW).await;
    let other = s.signup("M", "m@example.com", PW).await;

    // Malformed optional body: 400, and nothing was revoked.
    let res = s
        .req(Method::POST, "/api/auth/logout", Some(&tok(&one)))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    assert_eq!(s.get("/api/auth/me", &tok(&one)).await.status(), StatusCode::OK);

    // Logging out session one with session two's refresh token ends both; a refresh token of
    // another user is ignored.
    let body = json!({"refresh_token": rtok(&two)});
    assert_eq!(
        s.send(Method::POST, "/api/auth/logout", Some(&tok(&one)), Some(body)).await.status(),
        StatusCode::NO_CONTENT
    );
    let body = json!({"refresh_token": rtok(&other)});
    assert_eq!(
        s.send(Method::POST, "/api/auth/logout", Some(&tok(&three)), Some(body)).await.status(),
        StatusCode::NO_CONTENT
    );
    for session in [&one, &two, &three] {
        problem(s.get("/api/auth/me", &tok(session)).await, 401).await;
        problem(s.refresh(&rtok(session)).await, 401).await;
    }
    assert_eq!(s.get("/api/auth/me", &tok(&other)).await.status(), StatusCode::OK);
    assert_eq!(s.refresh(&rtok(&other)).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn profile_changes() {
    let s = Server::sqlite(&[]).await;
    let main = s.signup("P", "p@example.com", PW).await;
    let other = s.login_ok("p@example.com", PW).await;
    let t = tok(&main);
    let patch = |body: Value| s.send(Method::PATCH, "/api/auth/me", Some(&t), Some(body));

    let res = patch(json!({"name": "  Pat  "})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let u: Value = res.json().await.unwrap();
    assert_eq!(u["name"], "Pat");
    assert_ne!(u["updated_at"], main["user"]["updated_at"]);

    // Rejected changes leave the password and the name as they were.
    let p = problem(patch(json!({"password": "brand new secret"})).await, 422).await;
    assert_eq!(pointers(&p), vec!["#/current_password"]);
    let p = problem(patch(json!({"password": "password1", "current_password": PW, "name": ""})).await, 422).await;
    assert_eq!(pointers(&p), vec!["#/name", "#/password"]);
    problem(patch(json!({"nickname": "x"})).await, 422).await;
    let p = problem(patch(json!({"password": "brand new secret", "current_password": "wrong one!"})).await, 403).await;
    assert_eq!(p["detail"], "current password is incorrect");
    problem(s.login("p@example.com", "brand new secret").await, 401).await;
    let still = s.login_ok("p@example.com", PW).await;
    assert_eq!(still["user"]["name"], "Pat");

    // A valid change: other sessions end, the caller's goes on.
    let res = patch(json!({"password": "brand new secret", "current_password": PW})).await;
    assert_eq!(res.status(), StatusCode::OK);
    problem(s.get("/api/auth/me", &tok(&other)).await, 401).await;
    problem(s.refresh(&rtok(&other)).await, 401).await;
    problem(s.get("/api/auth/me", &tok(&still)).await, 401).await;
    assert_eq!(s.get("/api/auth/me", &t).await.status(), StatusCode::OK);
    assert_eq!(s.refresh(&rtok(&main)).await.status(), StatusCode::OK);
    problem(s.login("p@example.com", PW).await, 401).await;
    s.login_ok("p@example.com", "brand new secret").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_the_account() {
    let s = Server::sqlite(&[]).await;
    let d = s.signup("D", "d@example.com", PW).await;
    let before = s.user_count().await;
    let res = s.send(Method::DELETE, "/api/auth/me", Some(&tok(&d)), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.user_count().await, before - 1);
    problem(s.get("/api/auth/me", &tok(&d)).await, 401).await;
    problem(s.send(Method::DELETE, "/api/auth/me", Some(&tok(&d)), None).await, 401).await;
    problem(s.refresh(&rtok(&d)).await, 401).await;
    problem(s.login("d@example.com", PW).await, 401).await;
    // The email is free again.
    let again = s.signup("D2", "d@example.com", PW).await;
    assert_ne!(again["user"]["id"], d["user"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_user_management() {
    let s = Server::sqlite(&[]).await;
    let admin = s.admin_token().await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(s.signup(&format!("U{i}"), &format!("u{i}@example.com"), PW).await);
    }
    let u0 = tok(&users[0]);
    let id0 = users[0]["user"]["id"].as_str().unwrap().to_owned();

    // Non-admins are refused.
    let p = problem(s.get("/api/admin/users", &u0).await, 403).await;
    assert_eq!(p["detail"], "administrator role required");
    problem(
        s.send(Method::PATCH, &format!("/api/admin/users/{id0}"), Some(&u0), Some(json!({"role": "admin"}))).await,
        403,
    )
    .await;
    assert_eq!(s.get("/api/auth/me", &u0).await.json::<Value>().await.unwrap()["role"], "user");

    // Pagination in creation order: the admin first, then the four users.
    let mut seen = Vec::new();
    let mut path = "/api/admin/users?limit=2".to_owned();
    loop {
        let res = s.get(&path, &admin).await;
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = res.json().await.unwrap();
        let batch = page["users"].as_array().unwrap();
        assert!(batch.len() <= 2);
        seen.extend(batch.iter().map(|u| u["email"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/admin/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![ADMIN_EMAIL, "u0@example.com", "u1@example.com", "u2@example.com", "u3@example.com"]);
    let all: Value = s.get("/api/admin/users", &admin).await.json().await.unwrap();
    assert_eq!(all["users"].as_array().unwrap().len(), 5);
    assert!(all["next_cursor"].is_null());

    for (q, pointer) in
        [("limit=0", "#/limit"), ("limit=101", "#/limit"), ("cursor=abc", "#/cursor"), ("limit=ten", "#/query")]
    {
        let p = problem(s.get(&format!("/api/admin/users?{q}"), &admin).await, 422).await;
        assert_eq!(pointers(&p), vec![pointer.to_owned()], "{q}");
    }

    // Unknown or malformed ids: 404; bad role: 422; nothing changes.
    let unknown = flotilla_runtime::ids::new_id();
    let patch = |id: String, body: Value| {
        let admin = admin.clone();
        let s = &s;
        async move { s.send(Method::PATCH, &format!("/api/admin/users/{id}"), Some(&admin), Some(body)).await }
    };
    problem(patch(unknown, json!({"active": false})).await, 404).await;
    problem(patch("not-a-uuid".into(), json!({"active": false})).await, 404).await;
    let p = problem(patch(id0.clone(), json!({"role": "superuser"})).await, 422).await;
    assert_eq!(pointers(&p), vec!["#/role"]);
    problem(patch(id0.clone(), json!({"active": "no"})).await, 422).await;
    let me: Value = s.get("/api/auth/me", &u0).await.json().await.unwrap();
    assert_eq!((me["role"].as_str(), me["active"].as_bool()), (Some("user"), Some(true)));

    // The last active admin cannot step down.
    let admin_id =
        s.get("/api/auth/me", &admin).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let p = problem(patch(admin_id.clone(), json!({"role": "user"})).await, 409).await;
    assert_eq!(p["detail"], "the change would leave no active administrator");
    problem(patch(admin_id.clone(), json!({"active": false})).await, 409).await;
    assert_eq!(s.get("/api/admin/users?limit=1", &admin).await.status(), StatusCode::OK, "still an admin");

    // Promoting u0 ends its sessions (their tokens say "user"); its next login says "admin".
    let res = patch(id0.clone(), json!({"role": "admin"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let promoted: Value = res.json().await.unwrap();
    assert_eq!((promoted["role"].as_str(), promoted["active"].as_bool()), (Some("admin"), Some(true)));
    problem(s.get("/api/auth/me", &u0).await, 401).await;
    problem(s.refresh(&rtok(&users[0])).await, 401).await;
    let u0_admin = s.login_ok("u0@example.com", PW).await;
    assert_eq!(u0_admin["user"]["role"], "admin");
    assert_eq!(s.get("/api/admin/users", &tok(&u0_admin)).await.status(), StatusCode::OK);

    // Now the first admin may step down.
    let res = patch(admin_id.clone(), json!({"role": "user"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    problem(s.get("/api/admin/users", &admin).await, 401).await;
    let demoted = s.login_ok(ADMIN_EMAIL, ADMIN_PW).await;
    problem(s.get("/api/admin/users", &tok(&demoted)).await, 403).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_admin_and_keys_survive_a_restart() {
    let db = common::open(Engine::Sqlite).await.unwrap();
    let env = Env::from_pairs([
        (config::ADMIN_EMAIL, ADMIN_EMAIL),
        (config::ADMIN_PASSWORD, ADMIN_PW),
        (config::LOG, "warn"),
    ]);
    let rt = RuntimeConfig::from_env(&env).unwrap();
    let first = AuthContext::from_env(&env);
    let _first_router = app(Config::from_env(&env).unwrap(), &rt, db.db.clone(), first.clone()).await.unwrap();
    let second = AuthContext::from_env(&env);
    let _second_router = app(Config::from_env(&env).unwrap(), &rt, db.db.clone(), second.clone()).await.unwrap();
    let kids = |a: &AuthContext| a.keys.jwks().keys.into_iter().map(|k| k.kid).collect::<Vec<_>>();
    assert_eq!(kids(&first).len(), 1);
    assert_eq!(kids(&first), kids(&second), "a restart reuses the stored signing key");
    let store = Store::new(db.db.clone());
    assert_eq!(store.count_users().await.unwrap(), 1, "the bootstrap admin is created once");
    let admin = store.find_user_by_email(ADMIN_EMAIL).await.unwrap().unwrap();
    assert_eq!((admin.role, admin.active), (Role::Admin, true));

    // The CLI helpers: an existing user is promoted, not duplicated; promote needs a known email.
    use flotilla_accounts::{Outcome, ensure_admin, promote};
    assert_eq!(ensure_admin(&store, "ROOT@example.com", "Root", ADMIN_PW).await.unwrap(), Outcome::AlreadyExists);
    assert_eq!(ensure_admin(&store, "ops@example.com", "Ops", "ops team secret").await.unwrap(), Outcome::Created);
    let weak = ensure_admin(&store, "weak@example.com", "Weak", "pass").await.unwrap_err();
    assert!(matches!(weak, flotilla_accounts::Error::Invalid(_)));
    assert!(weak.to_string().contains("password must be at least 8 characters"), "{weak}");
    let user = store.find_user_by_email("ops@example.com").await.unwrap().unwrap();
    assert_eq!(
        ensure_admin(&store, "ops@example.com", "Ops", "ops team secret").await.unwrap(),
        Outcome::AlreadyExists
    );
    assert_eq!(store.find_user_by_email("ops@example.com").await.unwrap().unwrap(), user, "a re-run changes nothing");
    s_promote_check(&store).await;
    assert!(matches!(promote(&store, "nobody@example.com").await, Err(flotilla_accounts::Error::NotFound)));
    assert_eq!(store.count_users().await.unwrap(), 2);
}

/// `promote` makes an existing user an administrator.
async fn s_promote_check(store: &Store) {
    let now = flotilla_runtime::time::now_ms();
    let user = flotilla_accounts::model::UserRecord {
        id: flotilla_runtime::ids::new_id(),
        name: "Pro".into(),
        email: "pro@example.com".into(),
        password_hash: "x".into(),
        role: Role::User,
        active: true,
        created_at: now,
        updated_at: now,
    };
    store.insert_user(&user).await.unwrap();
    let promoted = flotilla_accounts::promote(store, " PRO@example.com").await.unwrap();
    assert_eq!(promoted.role, Role::Admin);
    assert!(store.delete_user(&user.id).await.unwrap());
}
