//! The web UI over real HTTP, in front of a real gateway with the real accounts, tasks, audit and
//! assistant services (in process, on SQLite), driven like a browser without JavaScript: cookies,
//! forms, redirects. Checks the session and CSRF rules, the security headers, and the structure of
//! every page (unique ids, every control labelled, no inline script or style).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use flotilla_gateway::{Config as GatewayConfig, Upstream, Upstreams};
use flotilla_runtime::auth::AuthContext;
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, PoolSettings, sqlite_url_in};
use flotilla_runtime::http::Ops;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use scraper::{Html, Selector};

struct System {
    base: String,
    _dir: tempfile::TempDir,
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(flotilla_runtime::server::serve(
        listener,
        app,
        std::time::Duration::from_secs(1),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

async fn open(dir: &std::path::Path, name: &'static str, m: flotilla_runtime::db::Migrations) -> Db {
    Db::open_and_migrate(name, &sqlite_url_in(dir, name), m, PoolSettings::default()).await.unwrap()
}

/// The embedded system's shape: the web UI calls a gateway over the services, and a gateway with
/// the web UI behind every non-API path serves the browser.
async fn start(vars: &[(&str, &str)]) -> System {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::from_pairs(vars.iter().copied());
    let rt = RuntimeConfig::from_env(&env).unwrap();
    let auth = AuthContext::from_env(&env);
    let accounts_cfg = flotilla_accounts::Config::from_env(&env).unwrap();
    let accounts = flotilla_accounts::app(
        accounts_cfg,
        &rt,
        open(dir.path(), "accounts", flotilla_accounts::MIGRATIONS).await,
        auth.clone(),
    )
    .await
    .unwrap();
    let tasks = flotilla_tasks::app(&rt, open(dir.path(), "tasks", flotilla_tasks::MIGRATIONS).await, auth.clone());
    let audit = flotilla_audit::app(&rt, open(dir.path(), "audit", flotilla_audit::MIGRATIONS).await, auth.clone());
    let assistant_cfg = flotilla_assistant::Config::from_env(&env).unwrap();
    let assistant_db = open(dir.path(), "assistant", flotilla_assistant::MIGRATIONS).await;
    let assistant =
        flotilla_assistant::app(&assistant_cfg, &rt, assistant_db, auth.clone(), Upstream::InProcess(tasks.clone()));
    let mut upstreams = Upstreams {
        accounts: Upstream::InProcess(accounts),
        tasks: Upstream::InProcess(tasks),
        audit: Upstream::InProcess(audit),
        assistant: Upstream::InProcess(assistant),
        web: None,
    };
    let gw_cfg = GatewayConfig::from_env(&env).unwrap();
    let doc = flotilla_gateway::openapi();
    let api = flotilla_gateway::app(gw_cfg.clone(), &rt, auth.clone(), upstreams.clone(), Ops::new(), &doc);
    let web = flotilla_web::app(&flotilla_web::Config::from_env(&env).unwrap(), &rt, Upstream::InProcess(api));
    upstreams.web = Some(Upstream::InProcess(web));
    let base = serve(flotilla_gateway::app(gw_cfg, &rt, auth, upstreams, Ops::new(), &doc)).await;
    System { base, _dir: dir }
}

/// A browser without JavaScript: keeps cookies, follows nothing by itself.
struct Browser {
    base: String,
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
    /// Every `Set-Cookie` received, for attribute checks.
    set_cookies: Vec<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn html(&self) -> Html {
        Html::parse_document(&self.body)
    }

    /// The first value of `input[name=…]` in the form whose action is `action`.
    fn form_value(&self, action: &str, name: &str) -> String {
        let doc = self.html();
        let sel = Selector::parse(&format!(r#"form[action="{action}"] input[name="{name}"]"#)).unwrap();
        let el = doc.select(&sel).next().unwrap_or_else(|| panic!("no {name} in form {action}:\n{}", self.body));
        el.value().attr("value").unwrap_or("").to_owned()
    }
}

impl Browser {
    fn new(base: &str) -> Self {
        // The workspace builds reqwest without a default crypto provider (plain HTTP here anyway).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: base.to_owned(), http, jar: BTreeMap::new(), set_cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn take(&mut self, res: reqwest::Response) -> Page {
        for v in res.headers().get_all(SET_COOKIE) {
            let line = v.to_str().unwrap().to_owned();
            let (pair, attrs) = line.split_once(';').unwrap_or((&line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
            self.set_cookies.push(line);
        }
        let status = res.status();
        let headers = res.headers().clone();
        Page { status, headers, body: res.text().await.unwrap() }
    }

    async fn get(&mut self, path: &str) -> Page {
        let res = self.http.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().await;
        self.take(res.unwrap()).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(form).unwrap();
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        self.take(res.unwrap()).await
    }

    /// GET, checking the page's structure; follows one redirect.
    async fn visit(&mut self, path: &str) -> Page {
        let mut page = self.get(path).await;
        if page.status == StatusCode::SEE_OTHER {
            let to = page.location().to_owned();
            page = self.get(&to).await;
        }
        check_structure(path, &page.body);
        page
    }

    /// POST a form from the page at `from` (its CSRF token included); follows the redirect.
    async fn submit(&mut self, from: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(from).await;
        let csrf = page.form_value(action, "csrf");
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        let res = self.post(action, &form).await;
        if res.status == StatusCode::SEE_OTHER {
            let to = res.location().to_owned();
            let next = self.get(&to).await;
            check_structure(&to, &next.body);
            return next;
        }
        check_structure(action, &res.body);
        res
    }
}

/// Unique ids; every visible input, select and textarea labelled; no inline script, style or
/// event handler (the CSP would block them).
fn check_structure(what: &str, body: &str) {
    let doc = Html::parse_document(body);
    let all = Selector::parse("*").unwrap();
    let mut ids = HashSet::new();
    let mut labels_for = HashSet::new();
    let label_sel = Selector::parse("label[for]").unwrap();
    for l in doc.select(&label_sel) {
        labels_for.insert(l.value().attr("for").unwrap().to_owned());
    }
    for el in doc.select(&all) {
        let e = el.value();
        if let Some(id) = e.attr("id") {
            assert!(ids.insert(id.to_owned()), "{what}: duplicate id {id:?}");
        }
        assert!(e.attr("style").is_none(), "{what}: inline style on <{}>", e.name());
        for (name, _) in e.attrs() {
            assert!(!name.starts_with("on"), "{what}: inline handler {name} on <{}>", e.name());
        }
        if e.name() == "script" {
            assert!(e.attr("src").is_some(), "{what}: inline script");
        }
        let control = matches!(e.name(), "select" | "textarea")
            || (e.name() == "input" && !matches!(e.attr("type"), Some("hidden" | "submit" | "button")));
        if control {
            let labelled = e.attr("id").is_some_and(|id| labels_for.contains(id))
                || e.attr("aria-label").is_some()
                || e.attr("aria-labelledby").is_some();
            assert!(labelled, "{what}: unlabelled <{} name={:?}>", e.name(), e.attr("name"));
        }
    }
    for d in ["aria-describedby", "aria-labelledby"] {
        let sel = Selector::parse(&format!("[{d}]")).unwrap();
        for el in doc.select(&sel) {
            for id in el.value().attr(d).unwrap().split_whitespace() {
                assert!(ids.contains(id), "{what}: {d} points at missing id {id:?}");
            }
        }
    }
    for (sel, what_) in
        [("html[lang]", "a language"), ("title", "a title"), ("main", "a main region"), ("h1", "a heading")]
    {
        assert!(doc.select(&Selector::parse(sel).unwrap()).next().is_some(), "{what}: page without {what_}");
    }
}

async fn signed_up(sys: &System, email: &str) -> Browser {
    let mut b = Browser::new(&sys.base);
    let page = b.visit("/signup").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = b
        .submit("/signup", "/signup", &[("name", "Ada"), ("email", email), ("password", "correct horse battery")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Welcome, Ada"), "{}", page.body);
    b
}

fn task_ids(page: &Page) -> Vec<String> {
    let doc = page.html();
    let sel = Selector::parse("li.task").unwrap();
    doc.select(&sel).map(|e| e.value().attr("id").unwrap().trim_start_matches("task-").to_owned()).collect()
}

fn titles(page: &Page) -> Vec<String> {
    let doc = page.html();
    let sel = Selector::parse("li.task .title a").unwrap();
    doc.select(&sel).map(|e| e.text().collect::<String>()).collect()
}

#[tokio::test]
async fn a_logged_out_visit_to_a_page_goes_to_the_login_page() {
    let sys = start(&[]).await;
    let mut b = Browser::new(&sys.base);
    for (path, next) in [
        ("/tasks", "%2Ftasks"),
        ("/tasks?status=pending", "%2Ftasks%3Fstatus%3Dpending"),
        ("/activity", "%2Factivity"),
        ("/tasks/0190a0b0-0000-7000-8000-000000000000/edit", "%2Ftasks%2F0190a0b0-0000-7000-8000-000000000000%2Fedit"),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), format!("/login?next={next}"), "{path}");
    }
    let root = b.get("/").await;
    assert_eq!(root.location(), "/login");
    // The login page itself, the sign-up page and the status page are public.
    for path in ["/login", "/signup", "/status"] {
        let page = b.visit(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
    }
    // A cookie that was tampered with counts as no session at all.
    b.jar.insert("flotilla_session".into(), "eyJzaWQiOiJ4In0.AAAA".into());
    assert_eq!(b.get("/tasks").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn cookies_and_security_headers() {
    let sys = start(&[]).await;
    let mut b = Browser::new(&sys.base);
    let page = b.get("/login").await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.headers.contains_key("referrer-policy"));
    let session = b.set_cookies.iter().find(|c| c.starts_with("flotilla_session=")).expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }

    // Assets: the page's own, cached for long; an unknown one is the 404 page's business.
    let doc = page.html();
    let css = doc
        .select(&Selector::parse("link[rel=stylesheet]").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    let js =
        doc.select(&Selector::parse("script[src]").unwrap()).next().unwrap().value().attr("src").unwrap().to_owned();
    for (url, mime) in [(css, "text/css"), (js, "text/javascript")] {
        let res = b.get(&url).await;
        assert_eq!(res.status, StatusCode::OK, "{url}");
        assert!(res.headers["content-type"].to_str().unwrap().starts_with(mime));
        assert!(res.headers["cache-control"].to_str().unwrap().contains("max-age=31536000"));
    }
    assert_eq!(b.get("/favicon.ico").await.status, StatusCode::OK);

    // Plain-HTTP use: no Secure attribute.
    let sys = start(&[("FLOTILLA_COOKIE_SECURE", "false")]).await;
    let mut b = Browser::new(&sys.base);
    b.get("/login").await;
    let session = b.set_cookies.iter().find(|c| c.starts_with("flotilla_session=")).unwrap();
    assert!(!session.contains("Secure") && session.contains("HttpOnly"), "{session}");
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let sys = start(&[]).await;
    let mut b = signed_up(&sys, "csrf@example.com").await;
    let list = b.submit("/tasks", "/tasks", &[("title", "keep me")]).await;
    let id = task_ids(&list).pop().unwrap();

    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/tasks".into(), vec![("title", "forged")]),
        (format!("/tasks/{id}/delete"), vec![]),
        (format!("/tasks/{id}/complete"), vec![("completed", "true")]),
        (format!("/tasks/{id}"), vec![("title", "renamed")]),
        ("/logout".into(), vec![]),
    ];
    for (action, fields) in &attempts {
        for token in [None, Some("bm90IGEgdG9rZW4"), Some("")] {
            let mut form = fields.clone();
            if let Some(t) = token {
                form.push(("csrf", t));
            }
            let page = b.post(action, &form).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{action} with {token:?}");
            assert!(page.body.contains("Nothing was changed"), "{}", page.body);
            check_structure(action, &page.body);
        }
    }
    // A token from another session does not work either.
    let mut other = signed_up(&sys, "other@example.com").await;
    let foreign = other.get("/tasks").await.form_value("/tasks", "csrf");
    assert_eq!(b.post("/tasks", &[("csrf", &foreign), ("title", "forged")]).await.status, StatusCode::FORBIDDEN);

    let after = b.visit("/tasks").await;
    assert_eq!(titles(&after), vec!["keep me"], "still signed in, the task unchanged and alone");
    assert!(!after.body.contains("task done"));
}

#[tokio::test]
async fn task_pages_without_javascript() {
    let sys = start(&[]).await;
    let mut b = signed_up(&sys, "nojs@example.com").await;

    for (title, priority, tags) in
        [("Buy milk", "low", "shop"), ("File taxes", "high", "admin, home"), ("Call mum", "medium", "")]
    {
        let page = b
            .submit(
                "/tasks",
                "/tasks",
                &[("title", title), ("priority", priority), ("tags", tags), ("due", ""), ("repeat", "none")],
            )
            .await;
        assert!(page.body.contains(&format!("Added “{title}”")), "{}", page.body);
    }
    let list = b.visit("/tasks").await;
    assert_eq!(titles(&list), vec!["Call mum", "File taxes", "Buy milk"]);

    // Invalid input comes back with the field marked, and adds nothing.
    let bad = b.submit("/tasks", "/tasks", &[("title", "   "), ("due", "soon")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("new-due-error") && bad.body.contains(r#"aria-invalid="true""#), "{}", bad.body);
    let bad = b.submit("/tasks", "/tasks", &[("title", "   ")]).await;
    assert!(bad.body.contains("new-title-error"), "{}", bad.body);
    assert_eq!(titles(&b.get("/tasks").await).len(), 3);

    // Filters, search, sort.
    assert_eq!(titles(&b.visit("/tasks?priority=high").await), vec!["File taxes"]);
    assert_eq!(titles(&b.visit("/tasks?tag=home").await), vec!["File taxes"]);
    assert_eq!(titles(&b.visit("/tasks?q=milk").await), vec!["Buy milk"]);
    assert_eq!(titles(&b.visit("/tasks?sort=title").await), vec!["Buy milk", "Call mum", "File taxes"]);
    let invalid = b.visit("/tasks?tag=not%20a%20tag").await;
    assert!(invalid.body.contains("These filters are not valid"), "{}", invalid.body);

    // Complete one (returning to the filtered list it was done from), then reopen it.
    let list = b.get("/tasks?sort=title").await;
    let ids = task_ids(&list);
    let milk = ids[0].clone();
    let page = b
        .submit(
            "/tasks?sort=title",
            &format!("/tasks/{milk}/complete"),
            &[("completed", "true"), ("back", "/tasks?sort=title")],
        )
        .await;
    assert!(page.body.contains("Completed “Buy milk”"), "{}", page.body);
    assert_eq!(titles(&b.visit("/tasks?status=completed").await), vec!["Buy milk"]);
    assert_eq!(titles(&b.visit("/tasks?status=pending").await).len(), 2);

    // Edit: the form shows the task; a change is saved.
    let edit = b.visit(&format!("/tasks/{milk}/edit")).await;
    assert_eq!(edit.form_value(&format!("/tasks/{milk}"), "title"), "Buy milk");
    let page = b
        .submit(
            &format!("/tasks/{milk}/edit"),
            &format!("/tasks/{milk}"),
            &[
                ("title", "Buy oat milk"),
                ("priority", "high"),
                ("tags", "shop"),
                ("due", "2020-01-02T09:00"),
                ("repeat", "none"),
                ("repeat_was", "none"),
                ("version", &edit.form_value(&format!("/tasks/{milk}"), "version")),
            ],
        )
        .await;
    assert!(page.body.contains("Saved “Buy oat milk”"), "{}", page.body);
    // A stale version is refused with the latest shown.
    let stale = b
        .submit(
            &format!("/tasks/{milk}/edit"),
            &format!("/tasks/{milk}"),
            &[("title", "Lost update"), ("version", "1")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert!(stale.body.contains("changed somewhere else"));

    // Reopened and past its due date: highlighted as overdue.
    b.submit("/tasks", &format!("/tasks/{milk}/complete"), &[("completed", "false")]).await;
    let list = b.visit("/tasks").await;
    let doc = list.html();
    let overdue: Vec<_> = doc
        .select(&Selector::parse("li.task.overdue .title a").unwrap())
        .map(|e| e.text().collect::<String>())
        .collect();
    assert_eq!(overdue, vec!["Buy oat milk"]);

    // Delete, then undo: the task is back with its fields.
    let page = b.submit("/tasks", &format!("/tasks/{milk}/delete"), &[]).await;
    assert!(page.body.contains("Deleted “Buy oat milk”"), "{}", page.body);
    assert!(!titles(&page).contains(&"Buy oat milk".to_owned()));
    let saved = page.form_value("/tasks/restore", "saved");
    let csrf = page.form_value("/tasks/restore", "csrf");
    let res = b.post("/tasks/restore", &[("csrf", &csrf), ("saved", &saved), ("back", "/tasks")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let list = b.visit("/tasks?priority=high").await;
    assert!(list.body.contains("Restored “Buy oat milk”"));
    assert_eq!(titles(&list), vec!["Buy oat milk", "File taxes"]);
    // The flash is shown once.
    assert!(!b.get("/tasks").await.body.contains("Restored"));

    // Other pages.
    let activity = b.visit("/activity").await;
    assert_eq!(activity.status, StatusCode::OK);
    let status = b.visit("/status").await;
    assert!(status.body.contains("accounts") && status.body.contains("tasks"), "{}", status.body);

    // Log out (through the confirmation page too), and back in.
    b.visit("/logout").await;
    let page = b.submit("/tasks", "/logout", &[]).await;
    assert!(page.body.contains("You are logged out"), "{}", page.body);
    assert_eq!(b.get("/tasks").await.status, StatusCode::SEE_OTHER);
    let wrong = b.submit("/login", "/login", &[("email", "nojs@example.com"), ("password", "wrong password!")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("email or password is wrong"));
    let page = b
        .submit(
            "/login?next=%2Ftasks%3Fpriority%3Dhigh",
            "/login",
            &[("email", "nojs@example.com"), ("password", "correct horse battery"), ("next", "/tasks?priority=high")],
        )
        .await;
    assert_eq!(titles(&page), vec!["Buy oat milk", "File taxes"]);
    // An open redirect through `next` is not possible.
    b.submit("/tasks", "/logout", &[]).await;
    let login = b.get("/login").await;
    let res = b
        .post(
            "/login",
            &[
                ("csrf", &login.form_value("/login", "csrf")),
                ("email", "nojs@example.com"),
                ("password", "correct horse battery"),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/tasks");
}

#[tokio::test]
async fn not_found_and_error_pages_say_what_to_do() {
    let sys = start(&[]).await;
    let mut b = Browser::new(&sys.base);
    let page = b.visit("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.body.contains("Page not found") && page.body.contains("What to do"), "{}", page.body);

    let mut b = signed_up(&sys, "errors@example.com").await;
    for path in ["/tasks/not-an-id/edit", "/tasks/0190a0b0-0000-7000-8000-000000000000/edit"] {
        let page = b.visit(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.body.contains("Go to your tasks"));
    }
    // The chat form with nothing typed.
    let page = b.submit("/tasks", "/chat", &[("message", "  ")]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("Type a message first"));
}

#[tokio::test]
async fn signup_errors_are_shown_on_the_form() {
    let sys = start(&[]).await;
    signed_up(&sys, "taken@example.com").await;
    let mut b = Browser::new(&sys.base);
    let page = b
        .submit(
            "/signup",
            "/signup",
            &[("name", "Bob"), ("email", "taken@example.com"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.body.contains("already exists") && page.body.contains("signup-email-error"));
    let page =
        b.submit("/signup", "/signup", &[("name", "Bob"), ("email", "bob@example.com"), ("password", "short")]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("signup-password-error"), "{}", page.body);
    assert_eq!(page.form_value("/signup", "email"), "bob@example.com", "what was typed is kept");
}

#[tokio::test]
async fn the_session_survives_access_token_expiry_and_a_stolen_old_cookie_ends_it() {
    // One-minute access tokens: each request is within the refresh margin, so each one refreshes.
    let sys = start(&[("FLOTILLA_ACCESS_TOKEN_TTL_SECS", "60")]).await;
    let mut b = signed_up(&sys, "refresh@example.com").await;
    let before = b.jar["flotilla_session"].clone();
    b.submit("/tasks", "/tasks", &[("title", "still here")]).await;
    for _ in 0..3 {
        let page = b.get("/tasks").await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(titles(&page), vec!["still here"]);
    }
    assert_ne!(b.jar["flotilla_session"], before, "the cookie carries the new tokens");

    // Replaying the first cookie (after the few seconds in which concurrent requests share a
    // refresh) presents a used refresh token: accounts ends the whole session.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let mut thief = Browser::new(&sys.base);
    thief.jar.insert("flotilla_session".into(), before);
    let res = thief.get("/tasks").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.location().starts_with("/login"));
    let res = b.get("/tasks").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "the reuse ended the family, the owner logs in again");
}

#[test]
fn config_checks_the_session_key_and_cookie_flag() {
    let env = Env::from_pairs([("FLOTILLA_WEB_SESSION_KEY", "short")]);
    let err = flotilla_web::Config::from_env(&env).unwrap_err();
    assert_eq!(err.var, "FLOTILLA_WEB_SESSION_KEY");
    assert!(!err.to_string().contains("short"), "a secret is never echoed");
    let env = Env::from_pairs([("FLOTILLA_COOKIE_SECURE", "maybe")]);
    assert_eq!(flotilla_web::Config::from_env(&env).unwrap_err().var, "FLOTILLA_COOKIE_SECURE");
    let cfg = flotilla_web::Config::from_env(&Env::default()).unwrap();
    assert!(cfg.cookie_secure && cfg.session_key.is_none());
}

#[tokio::test]
async fn the_chat_shows_the_tool_calls_and_refreshes_the_list() {
    let sys = start(&[]).await;
    let mut b = signed_up(&sys, "chat@example.com").await;
    let page = b.submit("/tasks", "/chat", &[("message", "add water the plants tomorrow")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let list = titles(&page);
    assert!(list.iter().any(|t| t.to_lowercase().contains("water the plants")), "{list:?}");
    let doc = page.html();
    let tools: Vec<String> =
        doc.select(&Selector::parse("#transcript .tools code").unwrap()).map(|e| e.text().collect()).collect();
    assert_eq!(tools, vec!["add_task"]);
    // The conversation goes on: the next page shows it from the assistant's history.
    let again = b.visit("/tasks").await;
    let doc = again.html();
    let messages = doc.select(&Selector::parse("#transcript li.msg").unwrap()).count();
    assert_eq!(messages, 2, "{}", again.body);
    // A new conversation starts empty.
    let fresh = b.submit("/tasks", "/chat/new", &[]).await;
    assert_eq!(fresh.html().select(&Selector::parse("#transcript li.msg").unwrap()).count(), 0);
}
