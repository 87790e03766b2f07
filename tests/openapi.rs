//! The API document served by the real binary matches what the gateway serves: the same routes
//! and methods, the same access rules, status codes that can really be produced, and a viewer.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use flotilla_gateway::{Access, ROUTES};
use flotilla_testkit::{ServiceProcess, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CREATE_TASK: &str = "/api/{user_id}/tasks";
const SOME_ID: &str = "0190a0b0-0000-7000-8000-000000000000";

fn start(data_dir: &Path, extra: &[(&str, &str)]) -> ServiceProcess {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut env = vec![
        ("FLOTILLA_LISTEN", addr.to_string()),
        ("FLOTILLA_DATA_DIR", data_dir.display().to_string()),
        ("FLOTILLA_LOG_FORMAT", "json".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let mut p = ServiceProcess::spawn(Path::new(env!("CARGO_BIN_EXE_flotilla")), &[], &env, addr).expect("spawn");
    p.wait_ready("/health", Duration::from_secs(30)).expect("flotilla becomes ready");
    p
}

async fn fetch_document(base: &str) -> Value {
    let res = reqwest::get(format!("{base}/docs/openapi.json")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.expect("the document is JSON")
}

/// (METHOD, path, operation) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    ops
}

/// A concrete URL path for a templated one (any value will do for the edge).
fn concrete(path: &str) -> String {
    path.replace("{user_id}", SOME_ID).replace("{id}", SOME_ID)
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_gateway_serves() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    let doc = fetch_document(&p.base_url()).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "Flotilla API");

    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    // axum's `{x}` path syntax is OpenAPI's; nothing to convert beyond the method's case.
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().flat_map(|r| r.methods.iter().map(move |m| (m.to_uppercase(), r.path.to_owned()))).collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(undocumented.is_empty(), "served but not documented: {undocumented:?}");
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(unserved.is_empty(), "documented but not served: {unserved:?}");
    for ops in ["/livez", "/ready", "/metrics"] {
        assert!(doc["paths"].get(ops).is_none(), "{ops} is not public API");
    }
}

#[tokio::test]
async fn documented_security_matches_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    let base = p.base_url();
    let doc = fetch_document(&base).await;
    let c = reqwest::Client::new();
    let (mut protected, mut public_gets) = (0, 0);
    for (method, path, op) in operations(&doc) {
        let bearer = op["security"].as_array().into_iter().flatten().any(|req| req.get("bearer").is_some());
        let url = format!("{base}{}", concrete(&path));
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        if bearer {
            protected += 1;
            let res = c.request(m, &url).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path} without a token");
            assert_eq!(res.headers()["content-type"], "application/problem+json", "{method} {path}");
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents its 401");
        } else if method == "GET" {
            public_gets += 1;
            let res = c.request(m, &url).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{method} {path} is public");
            let media = op["responses"]["200"]["content"].as_object().unwrap().keys().next().unwrap().clone();
            let got = res.headers()["content-type"].to_str().unwrap();
            assert!(got.starts_with(&media), "{method} {path}: documented {media}, got {got}");
        }
    }
    let bearer_routes: usize = ROUTES.iter().filter(|r| r.access == Access::Bearer).map(|r| r.methods.len()).sum();
    assert_eq!(protected, bearer_routes, "every bearer route is documented as such");
    assert_eq!(public_gets, 4, "jwks, health, docs, openapi.json");

    // Methods a route does not list answer 405 from the gateway, before any token check.
    for route in ROUTES {
        for name in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if route.methods.contains(&name) {
                continue;
            }
            let res =
                c.request(Method::from_bytes(name.as_bytes()).unwrap(), format!("{base}{}", concrete(route.path)));
            let res = res.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{name} {}", route.path);
            assert_eq!(res.headers()["content-type"], "application/problem+json", "{name} {}", route.path);
        }
    }
}

struct Caller {
    http: reqwest::Client,
    base: String,
}

impl Caller {
    async fn signup(&self, email: &str) -> (String, String) {
        let body = json!({"name": "Doc", "email": email, "password": "correct horse battery"});
        let res = self.http.post(format!("{}/api/auth/signup", self.base)).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = res.json().await.unwrap();
        (v["user"]["id"].as_str().unwrap().to_owned(), v["access_token"].as_str().unwrap().to_owned())
    }

    /// POSTs `body` (raw bytes, with `content_type` if given) to `path`.
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        key: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        req.send().await.unwrap()
    }
}

#[tokio::test]
async fn every_documented_status_of_create_task_can_be_produced() {
    let dir = tempfile::tempdir().unwrap();
    // A small body limit (413 without a huge body) and a small per-user budget (429).
    let p = start(dir.path(), &[("FLOTILLA_BODY_LIMIT_BYTES", "4096"), ("FLOTILLA_RATE_LIMIT_PER_USER", "12")]);
    let c = Caller { http: reqwest::Client::new(), base: p.base_url() };
    let doc = fetch_document(&c.base).await;
    let responses = doc["paths"][CREATE_TASK]["post"]["responses"].as_object().expect("POST tasks is documented");
    let documented: BTreeSet<u16> = responses.keys().map(|s| s.parse().unwrap()).collect();

    let (ada, token) = c.signup("ada@example.com").await;
    let (bob, _) = c.signup("bob@example.com").await;
    let (mine, theirs) = (format!("/api/{ada}/tasks"), format!("/api/{bob}/tasks"));
    let t = Some(token.as_str());
    let json_ct = Some("application/json");
    let task = |title: &str| serde_json::to_vec(&json!({ "title": title })).unwrap();

    let mut produced = Vec::new();
    produced.push(c.post(&mine, t, json_ct, Some("first"), task("milk")).await);
    produced.push(c.post(&mine, None, json_ct, None, task("no token")).await);
    produced.push(c.post(&theirs, t, json_ct, None, task("not mine")).await);
    produced.push(c.post(&mine, t, json_ct, None, b"{\"title\":".to_vec()).await);
    produced.push(c.post(&mine, t, json_ct, None, task(&"x".repeat(5000))).await);
    produced.push(c.post(&mine, t, Some("text/plain"), None, task("plain")).await);
    produced.push(c.post(&mine, t, json_ct, None, task("")).await);
    // 409: the task made with a key is deleted, then the same request is repeated.
    let made = c.post(&mine, t, json_ct, Some("second"), task("bread")).await;
    let id = made.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let del = c.http.delete(format!("{}{mine}/{id}", c.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    produced.push(c.post(&mine, t, json_ct, Some("second"), task("bread")).await);
    // 429: spend the rest of the per-user budget.
    for _ in 0..20 {
        let res = c.post(&mine, t, json_ct, None, task("")).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            produced.push(res);
            break;
        }
    }

    let mut seen = BTreeSet::new();
    for res in produced {
        let status = res.status().as_u16();
        let documented_as = &responses[&status.to_string()];
        assert!(documented_as.is_object(), "{status} is produced but not documented");
        let media = documented_as["content"].as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(res.headers()["content-type"], media.as_str(), "{status}: documented media type");
        for header in documented_as["headers"].as_object().into_iter().flatten().map(|(h, _)| h) {
            if header != "Idempotent-Replayed" {
                assert!(res.headers().contains_key(header.as_str()), "{status} carries {header}");
            }
        }
        seen.insert(status);
    }
    assert_eq!(seen, documented, "every documented status of POST {CREATE_TASK} was produced");
    for expected in [201, 400, 401, 403, 409, 413, 415, 422, 429] {
        assert!(documented.contains(&expected), "{expected} is documented");
    }
}

#[tokio::test]
async fn the_viewer_shows_every_path_and_runs_no_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    let doc = fetch_document(&p.base_url()).await;
    let res = reqwest::get(format!("{}/docs", p.base_url())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["content-security-policy"], "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let page = res.text().await.unwrap();
    assert!(!page.to_ascii_lowercase().contains("<script"), "no scripts");
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing is fetched from elsewhere");
    for (method, path, op) in operations(&doc) {
        assert!(page.contains(&format!("<code>{method} {path}</code>")), "{method} {path} in the contents");
        let summary = op["summary"].as_str().unwrap_or_default();
        assert!(page.contains(&summary.replace('\'', "&#39;")), "{method} {path}: its summary");
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(page.contains(&format!("id=\"schema-{name}\"")), "schema {name}");
    }
}
