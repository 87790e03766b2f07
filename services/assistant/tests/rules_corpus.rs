//! The rules engine against a REAL tasks service (in process, SQLite in a temp dir, signed
//! tokens): a table of cases, each a setup, one or more utterances fed through `rules::turn` with
//! the replies fed back as history (as the server does), and then a check of the tasks as
//! STORED (read back through the tasks API, not through the assistant's tools) and of the reply.
//!
//! Every case runs as a fresh user. "now" is Tuesday 2026-03-10 12:00 UTC unless a case says
//! otherwise.

use flotilla_assistant::model::{HistoryMessage, Role};
use flotilla_assistant::rules::{self, Context};
use flotilla_assistant::tools::UserTools;
use flotilla_runtime::auth::{AuthContext, Claims, JwkSet, Role as UserRole, SigningKey, TokenPolicy};
use flotilla_runtime::config::{Env, RuntimeConfig};
use flotilla_runtime::db::{Db, PoolSettings};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::now_secs;
use flotilla_runtime::upstream::Upstream;
use serde_json::{Value, json};

const ISSUER: &str = "flotilla";
const AUDIENCE: &str = "flotilla-api";
const NOW: &str = "2026-03-10T12:00:00Z";

struct Service {
    tasks: Upstream,
    key: SigningKey,
    _dir: tempfile::TempDir,
}

async fn start() -> Service {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let db = Db::open_and_migrate(flotilla_tasks::SERVICE, &url, flotilla_tasks::MIGRATIONS, PoolSettings::default())
        .await
        .expect("database");
    let auth = AuthContext::new(TokenPolicy { issuer: ISSUER.into(), audience: AUDIENCE.into() });
    let key = SigningKey::generate();
    auth.keys.replace(JwkSet { keys: vec![key.jwk()] });
    let rt = RuntimeConfig::from_env(&Env::from_pairs([("FLOTILLA_LOG_FORMAT", "human")])).expect("defaults");
    let router = flotilla_tasks::app(&rt, db, auth);
    Service { tasks: Upstream::InProcess(router), key, _dir: dir }
}

/// A user of the service: id, token, and raw API access for setup and checks.
struct User {
    id: String,
    token: String,
    tasks: Upstream,
}

impl Service {
    fn user(&self) -> User {
        let id = new_id();
        let now = now_secs();
        let claims = Claims {
            sub: id.clone(),
            role: UserRole::User,
            iat: now,
            exp: now + 3600,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: new_id(),
            sid: new_id(),
        };
        User { token: self.key.sign(&claims), id, tasks: self.tasks.clone() }
    }
}

impl User {
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(format!("/api/{}/tasks{path}", self.id))
            .header("authorization", format!("Bearer {}", self.token));
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                axum::body::Body::from(b.to_string())
            }
            None => axum::body::Body::empty(),
        };
        let res = self.tasks.call(req.body(body).expect("request")).await;
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn seed(&self, spec: &str) {
        let t = Spec::parse(spec);
        let mut body = json!({"title": t.title, "priority": t.priority, "tags": t.tags});
        for (k, v) in [("due_at", &t.due), ("remind_at", &t.remind), ("description", &t.note)] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        let (status, created) = self.api("POST", "", Some(body)).await;
        assert_eq!(status, 201, "seed {spec}: {created}");
        if t.done {
            let id = created["id"].as_str().expect("id");
            let (status, _) = self.api("PATCH", &format!("/{id}/complete"), Some(json!({"completed": true}))).await;
            assert_eq!(status, 200, "seed {spec}");
        }
    }

    /// The tasks as stored, in canonical spec form, sorted.
    async fn stored(&self) -> Vec<String> {
        let (status, body) = self.api("GET", "?status=all&limit=100", None).await;
        assert_eq!(status, 200, "{body}");
        let mut out: Vec<String> = body["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| {
                let text = |k: &str| t[k].as_str().map(|s| s.replace(".000Z", "Z"));
                Spec {
                    title: text("title").unwrap_or_default(),
                    done: t["completed"].as_bool().unwrap_or(false),
                    priority: text("priority").unwrap_or_default(),
                    tags: t["tags"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                    due: text("due_at"),
                    remind: text("remind_at"),
                    note: text("description"),
                }
                .canon()
            })
            .collect();
        out.sort();
        out
    }
}

/// A task written as `title; done; high; #a #b; due=…; remind=…; note=…` (all but the title
/// optional; absent means not done, medium, no tags, no dates, no description).
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    title: String,
    done: bool,
    priority: String,
    tags: Vec<String>,
    due: Option<String>,
    remind: Option<String>,
    note: Option<String>,
}

impl Spec {
    fn parse(s: &str) -> Spec {
        let mut parts = s.split("; ");
        let mut t = Spec {
            title: parts.next().unwrap_or_default().to_owned(),
            done: false,
            priority: "medium".into(),
            tags: vec![],
            due: None,
            remind: None,
            note: None,
        };
        for p in parts {
            match p {
                "done" => t.done = true,
                "high" | "low" | "medium" => t.priority = p.into(),
                _ if p.starts_with('#') => {
                    t.tags = p.split_whitespace().map(|x| x.trim_start_matches('#').to_owned()).collect()
                }
                _ if p.starts_with("due=") => t.due = Some(p[4..].into()),
                _ if p.starts_with("remind=") => t.remind = Some(p[7..].into()),
                _ if p.starts_with("note=") => t.note = Some(p[5..].into()),
                _ => panic!("bad spec part {p:?} in {s:?}"),
            }
        }
        t
    }

    fn canon(&self) -> String {
        let mut parts = vec![self.title.clone()];
        if self.done {
            parts.push("done".into());
        }
        if self.priority != "medium" {
            parts.push(self.priority.clone());
        }
        if !self.tags.is_empty() {
            let mut tags = self.tags.clone();
            tags.sort();
            parts.push(tags.iter().map(|t| format!("#{t}")).collect::<Vec<_>>().join(" "));
        }
        for (k, v) in [("due", &self.due), ("remind", &self.remind), ("note", &self.note)] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join("; ")
    }
}

struct Case {
    name: &'static str,
    tz: &'static str,
    now: &'static str,
    seed: Vec<&'static str>,
    say: Vec<&'static str>,
    /// The stored tasks afterwards; `None`: the same as seeded (nothing changed).
    expect: Option<Vec<&'static str>>,
    /// Substrings of the last reply (case-insensitive).
    reply: Vec<&'static str>,
    /// Substrings the last reply must not contain.
    absent: Vec<&'static str>,
}

fn case(name: &'static str) -> Case {
    Case { name, tz: "UTC", now: NOW, seed: vec![], say: vec![], expect: None, reply: vec![], absent: vec![] }
}

impl Case {
    fn seed(mut self, s: &[&'static str]) -> Self {
        self.seed = s.to_vec();
        self
    }
    fn say(mut self, s: &[&'static str]) -> Self {
        self.say = s.to_vec();
        self
    }
    fn expect(mut self, s: &[&'static str]) -> Self {
        self.expect = Some(s.to_vec());
        self
    }
    fn reply(mut self, s: &[&'static str]) -> Self {
        self.reply = s.to_vec();
        self
    }
    fn absent(mut self, s: &[&'static str]) -> Self {
        self.absent = s.to_vec();
        self
    }
    fn tz(mut self, tz: &'static str) -> Self {
        self.tz = tz;
        self
    }
    fn now(mut self, now: &'static str) -> Self {
        self.now = now;
        self
    }
}

/// Runs one case; `Err` says what differs.
async fn run(service: &Service, c: &Case) -> Result<(), String> {
    let user = service.user();
    for s in &c.seed {
        user.seed(s).await;
    }
    let tools = UserTools::new(service.tasks.clone(), user.id.clone(), user.token.clone());
    let now = time::OffsetDateTime::parse(c.now, &time::format_description::well_known::Rfc3339).expect("now");
    let mut history: Vec<HistoryMessage> = Vec::new();
    let mut last = String::new();
    let mut transcript = String::new();
    for message in &c.say {
        let ctx = Context { now, tz: c.tz, history: &history };
        let reply = rules::turn(&ctx, message, &tools).await;
        if reply.response.trim().is_empty() {
            return Err(format!("empty reply to {message:?}"));
        }
        // Every write the reply claims must be a call that succeeded, and vice versa.
        for call in &reply.tool_calls {
            if call.succeeded() && call.name != "list_tasks" && call.name != "search_tasks" {
                let title = call.result["title"].as_str().unwrap_or_default();
                if !reply.response.contains(title) {
                    return Err(format!("reply to {message:?} does not name {title:?}: {}", reply.response));
                }
            }
        }
        transcript.push_str(&format!("  > {message}\n  < {}\n", reply.response.replace('\n', "\n    ")));
        history.push(HistoryMessage { role: Role::User, content: (*message).into(), tool_calls: vec![], state: None });
        history.push(HistoryMessage {
            role: Role::Assistant,
            content: reply.response.clone(),
            tool_calls: reply.tool_calls,
            state: reply.state,
        });
        last = reply.response;
    }
    let mut problems = Vec::new();
    let lower = last.to_lowercase();
    for want in &c.reply {
        if !lower.contains(&want.to_lowercase()) {
            problems.push(format!("reply lacks {want:?}"));
        }
    }
    for not in &c.absent {
        if lower.contains(&not.to_lowercase()) {
            problems.push(format!("reply has {not:?}"));
        }
    }
    let expected = c.expect.as_ref().unwrap_or(&c.seed);
    let mut want: Vec<String> = expected.iter().map(|s| Spec::parse(s).canon()).collect();
    want.sort();
    let got = user.stored().await;
    if got != want {
        problems.push(format!("stored tasks differ\n    want: {want:#?}\n    got:  {got:#?}"));
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{}\n{transcript}", problems.join("\n  "))) }
}

fn cases() -> Vec<Case> {
    vec![
        // ---------- adding ----------
        case("add plain").say(&["add buy milk"]).expect(&["buy milk"]).reply(&["added", "buy milk"]),
        case("add with date, time, priority and tag")
            .say(&["add buy milk tomorrow at 5pm, high priority #groceries"])
            .expect(&["buy milk; high; #groceries; due=2026-03-11T17:00:00Z"])
            .reply(&["buy milk", "tomorrow at 5:00 PM", "high priority", "#groceries"]),
        case("remind me on friday")
            .say(&["remind me to call mom on friday"])
            .expect(&["call mom; due=2026-03-13T23:59:00Z; remind=2026-03-13T09:00:00Z"])
            .reply(&["call mom", "Fri Mar 13"]),
        case("create a task to").say(&["create a task to water the plants"]).expect(&["water the plants"]),
        case("new task colon").say(&["new task: pay rent"]).expect(&["pay rent"]),
        case("typo ad").say(&["ad buy bread"]).expect(&["buy bread"]),
        case("typo addd").say(&["addd buy bread"]).expect(&["buy bread"]),
        case("add tomorrow").say(&["add Call Bob tomorrow"]).expect(&["Call Bob; due=2026-03-11T23:59:00Z"]),
        case("add by friday 17:30")
            .say(&["add submit report by friday 17:30"])
            .expect(&["submit report; due=2026-03-13T17:30:00Z"]),
        case("add in 3 days").say(&["add gym in 3 days"]).expect(&["gym; due=2026-03-13T23:59:00Z"]),
        case("add next monday 9am")
            .say(&["add dentist next monday at 9am"])
            .expect(&["dentist; due=2026-03-16T09:00:00Z"]),
        case("add month day rolls to next year")
            .say(&["add pay taxes on jan 5"])
            .expect(&["pay taxes; due=2027-01-05T23:59:00Z"]),
        case("add iso date").say(&["add renew passport 2026-04-01"]).expect(&["renew passport; due=2026-04-01T23:59:00Z"]),
        case("add iso date-time")
            .say(&["add meeting 2026-03-20T14:30"])
            .expect(&["meeting; due=2026-03-20T14:30:00Z"]),
        case("add at noon (now is noon: tomorrow)")
            .say(&["add book flights at noon"])
            .expect(&["book flights; due=2026-03-11T12:00:00Z"]),
        case("add tonight").say(&["add stretch tonight"]).expect(&["stretch; due=2026-03-10T20:00:00Z"]),
        case("add keeps numbers and drops 'to my list'")
            .say(&["add buy 5 apples to my list"])
            .expect(&["buy 5 apples"]),
        case("add quoted title keeps its words")
            .say(&["add \"meet at 5\" tomorrow"])
            .expect(&["meet at 5; due=2026-03-11T23:59:00Z"]),
        case("add two tags low priority")
            .say(&["add clean garage #home #weekend low priority"])
            .expect(&["clean garage; low; #home #weekend"]),
        case("add urgent").say(&["add file expenses, urgent"]).expect(&["file expenses; high"]),
        case("add polite").say(&["please add call the bank"]).expect(&["call the bank"]),
        case("add can you").say(&["can you add order pizza tonight at 7pm"]).expect(&["order pizza; due=2026-03-10T19:00:00Z"]),
        case("I need to").say(&["I need to renew my passport"]).expect(&["renew my passport"]),
        case("don't forget tomorrow morning")
            .say(&["don't forget to feed the cat tomorrow morning"])
            .expect(&["feed the cat; due=2026-03-11T09:00:00Z; remind=2026-03-11T09:00:00Z"]),
        case("remind me in 2 hours")
            .say(&["remind me to stretch in 2 hours"])
            .expect(&["stretch; due=2026-03-10T14:00:00Z; remind=2026-03-10T14:00:00Z"]),
        case("add with note")
            .say(&["add Pay rent note: transfer from savings"])
            .expect(&["Pay rent; note=transfer from savings"]),
        case("add in the evening").say(&["add read book in the evening"]).expect(&["read book; due=2026-03-10T18:00:00Z"]),
        case("add with high priority")
            .say(&["add write the quarterly report with high priority"])
            .expect(&["write the quarterly report; high"]),
        case("add priority colon").say(&["add water plants priority: low"]).expect(&["water plants; low"]),
        case("short day name is a word").say(&["add buy a sun hat"]).expect(&["buy a sun hat"]),
        case("time-of-day word is a word").say(&["add morning coffee run"]).expect(&["morning coffee run"]),
        case("add without a title asks").say(&["add task"]).reply(&["what should the task say"]),
        case("add keeps case").say(&["Add BUY MILK"]).expect(&["BUY MILK"]),
        case("add keeps 'and'").say(&["add buy milk and eggs"]).expect(&["buy milk and eggs"]),
        case("add keeps command words in titles").say(&["add delete old files"]).expect(&["delete old files"]),
        case("add keeps update in titles").say(&["add update the resume"]).expect(&["update the resume"]),
        case("add keeps markup verbatim")
            .say(&["add <script>alert(1)</script>"])
            .expect(&["<script>alert(1)</script>"]),
        case("add at 6pm with tag")
            .say(&["add go to the gym at 6pm #health"])
            .expect(&["go to the gym; #health; due=2026-03-10T18:00:00Z"]),
        case("add friday at 5 means 5pm")
            .say(&["add call mom on friday at 5"])
            .expect(&["call mom; due=2026-03-13T17:00:00Z"]),
        case("add due april 15").say(&["add taxes due april 15"]).expect(&["taxes; due=2026-04-15T23:59:00Z"]),
        case("add in a week").say(&["add ship it in a week"]).expect(&["ship it; due=2026-03-17T23:59:00Z"]),
        case("add 5th of may").say(&["add party on 5th of may"]).expect(&["party; due=2026-05-05T23:59:00Z"]),
        case("add at 17:30").say(&["add stand-up at 17:30"]).expect(&["stand-up; due=2026-03-10T17:30:00Z"]),
        case("add day after tomorrow")
            .say(&["add call the plumber the day after tomorrow"])
            .expect(&["call the plumber; due=2026-03-12T23:59:00Z"]),
        case("add next week").say(&["add plan sprint next week"]).expect(&["plan sprint; due=2026-03-16T23:59:00Z"]),
        case("add invalid tag reported, nothing stored")
            .say(&["add buy milk #this-tag-is-far-too-long-to-be-accepted-by-the-api"])
            .reply(&["couldn't add"]),
        // ---------- time zones ----------
        case("tz New York: tomorrow 5pm is 21:00 UTC")
            .tz("America/New_York")
            .say(&["add team sync tomorrow 5pm"])
            .expect(&["team sync; due=2026-03-11T21:00:00Z"])
            .reply(&["tomorrow at 5:00 PM"]),
        case("tz Tokyo: tomorrow is already Wednesday local")
            .tz("Asia/Tokyo")
            .say(&["add call sensei tomorrow 9am"])
            .expect(&["call sensei; due=2026-03-11T00:00:00Z"]),
        case("tz Paris: end of today local")
            .tz("Europe/Paris")
            .say(&["add pay bills today"])
            .expect(&["pay bills; due=2026-03-10T22:59:00Z"]),
        case("tz Los Angeles evening: tomorrow is the 11th local")
            .tz("America/Los_Angeles")
            .now("2026-03-11T03:00:00Z")
            .say(&["add laundry tomorrow"])
            .expect(&["laundry; due=2026-03-12T06:59:00Z"]),
        case("tz Sydney: friday 6am")
            .tz("Australia/Sydney")
            .say(&["add swim friday at 6am"])
            .expect(&["swim; due=2026-03-12T19:00:00Z"]),
        case("tz Paris across the DST change")
            .tz("Europe/Paris")
            .say(&["add brunch on mar 29 at 11:00"])
            .expect(&["brunch; due=2026-03-29T09:00:00Z"]),
        case("tz unknown falls back to UTC")
            .tz("Mars/Olympus_Mons")
            .say(&["add rover check tomorrow 5pm"])
            .expect(&["rover check; due=2026-03-11T17:00:00Z"]),
        case("tz New York: today's list is local")
            .tz("America/New_York")
            .seed(&["late dinner; due=2026-03-11T02:00:00Z", "early run; due=2026-03-11T05:00:00Z"])
            .say(&["what's due today?"])
            .reply(&["late dinner"])
            .absent(&["early run"]),
        case("tz New York: move to tomorrow 5pm")
            .tz("America/New_York")
            .seed(&["Dentist appointment"])
            .say(&["move the dentist to tomorrow 5pm"])
            .expect(&["Dentist appointment; due=2026-03-11T21:00:00Z"]),
        // ---------- listing ----------
        case("show my tasks hides done ones")
            .seed(&["Buy milk", "Old thing; done"])
            .say(&["show my tasks"])
            .reply(&["1. Buy milk"])
            .absent(&["old thing"]),
        case("list").seed(&["Buy milk", "Walk dog"]).say(&["list"]).reply(&["Buy milk", "Walk dog"]),
        case("typo shwo").seed(&["Buy milk"]).say(&["shwo my tasks"]).reply(&["Buy milk"]),
        case("typo lsit").seed(&["Buy milk"]).say(&["lsit tasks"]).reply(&["Buy milk"]),
        case("what's left for today")
            .seed(&[
                "pay bills; due=2026-03-10T18:00:00Z",
                "old report; due=2026-03-09T10:00:00Z",
                "later; due=2026-03-12T10:00:00Z",
                "someday",
                "done today; done; due=2026-03-10T15:00:00Z",
            ])
            .say(&["what's left for today?"])
            .reply(&["pay bills", "old report"])
            .absent(&["later", "someday", "done today"]),
        case("high priority list")
            .seed(&["Urgent thing; high", "Meh thing; low", "Normal thing"])
            .say(&["show my high priority tasks"])
            .reply(&["Urgent thing"])
            .absent(&["Meh thing", "Normal thing"]),
        case("low priority list")
            .seed(&["Urgent thing; high", "Meh thing; low"])
            .say(&["show low priority tasks"])
            .reply(&["Meh thing"])
            .absent(&["Urgent thing"]),
        case("completed list")
            .seed(&["Open one", "Closed one; done"])
            .say(&["show completed tasks"])
            .reply(&["Closed one"])
            .absent(&["Open one"]),
        case("what have I done")
            .seed(&["Open one", "Closed one; done"])
            .say(&["what have I done?"])
            .reply(&["Closed one"])
            .absent(&["Open one"]),
        case("all tasks").seed(&["Open one", "Closed one; done"]).say(&["show all tasks"]).reply(&["Open one", "Closed one"]),
        case("overdue")
            .seed(&["old report; due=2026-03-09T10:00:00Z", "later; due=2026-03-12T10:00:00Z"])
            .say(&["what's overdue?"])
            .reply(&["old report"])
            .absent(&["later"]),
        case("due tomorrow")
            .seed(&["today thing; due=2026-03-10T18:00:00Z", "tomorrow thing; due=2026-03-11T10:00:00Z"])
            .say(&["what's due tomorrow"])
            .reply(&["tomorrow thing"])
            .absent(&["today thing"]),
        case("by tag hash")
            .seed(&["Buy milk; #groceries", "Call mom; #family"])
            .say(&["show #groceries"])
            .reply(&["Buy milk"])
            .absent(&["Call mom"]),
        case("by tag word")
            .seed(&["Ship release; #work", "Call mom; #family"])
            .say(&["show tasks tagged work"])
            .reply(&["Ship release"])
            .absent(&["Call mom"]),
        case("empty list").say(&["show my tasks"]).reply(&["no pending tasks"]),
        case("search")
            .seed(&["Buy milk", "Buy oat milk", "Buy bread"])
            .say(&["search milk"])
            .reply(&["Buy milk", "Buy oat milk"])
            .absent(&["bread"]),
        case("find").seed(&["Write the report", "Buy bread"]).say(&["find report"]).reply(&["Write the report"]).absent(&["bread"]),
        case("search without text asks").say(&["search for"]).reply(&["what should i search for"]),
        case("how many").seed(&["a1", "b2", "c3; done"]).say(&["how many tasks do I have?"]).reply(&["(2)"]),
        case("this week")
            .seed(&["soon; due=2026-03-14T10:00:00Z", "next week thing; due=2026-03-17T10:00:00Z"])
            .say(&["show tasks due this week"])
            .reply(&["soon"])
            .absent(&["next week thing"]),
        case("sorted by priority")
            .seed(&["Meh thing; low", "Urgent thing; high", "Normal thing"])
            .say(&["list tasks by priority"])
            .reply(&["1. Urgent thing", "2. Normal thing", "3. Meh thing"]),
        case("anything due today")
            .seed(&["pay bills; due=2026-03-10T18:00:00Z", "someday"])
            .say(&["anything due today?"])
            .reply(&["pay bills"])
            .absent(&["someday"]),
        case("my tasks").seed(&["Buy milk"]).say(&["my tasks"]).reply(&["Buy milk"]),
        case("list shows due and tags")
            .seed(&["Buy milk; high; #groceries; due=2026-03-11T17:00:00Z"])
            .say(&["show my tasks"])
            .reply(&["Buy milk — due tomorrow at 5:00 PM, high priority, #groceries"]),
        // ---------- completing and reopening ----------
        case("list then mark the second one done")
            .seed(&["Buy milk", "Walk dog", "Call mom"])
            .say(&["show my tasks", "mark the second one done"])
            .expect(&["Buy milk", "Walk dog; done", "Call mom"])
            .reply(&["marked", "walk dog"]),
        case("#1 done")
            .seed(&["Buy milk", "Walk dog"])
            .say(&["show my tasks", "#1 done"])
            .expect(&["Buy milk; done", "Walk dog"]),
        case("complete the last one")
            .seed(&["Buy milk", "Walk dog"])
            .say(&["list", "complete the last one"])
            .expect(&["Buy milk", "Walk dog; done"]),
        case("I finished the report")
            .seed(&["Write the report", "Buy milk"])
            .say(&["I finished the report"])
            .expect(&["Write the report; done", "Buy milk"])
            .reply(&["write the report"]),
        case("typo compelte").seed(&["Buy milk"]).say(&["compelte buy milk"]).expect(&["Buy milk; done"]),
        case("mark as done").seed(&["Buy milk"]).say(&["mark buy milk as done"]).expect(&["Buy milk; done"]),
        case("done with").seed(&["Buy milk"]).say(&["done with buy milk"]).expect(&["Buy milk; done"]),
        case("the report is done").seed(&["Write the report"]).say(&["the report is done"]).expect(&["Write the report; done"]),
        case("finish by fragment").seed(&["Dentist appointment"]).say(&["finish the dentist"]).expect(&["Dentist appointment; done"]),
        case("check off").seed(&["Buy milk"]).say(&["check off buy milk"]).expect(&["Buy milk; done"]),
        case("tick off").seed(&["Buy milk"]).say(&["tick off buy milk"]).expect(&["Buy milk; done"]),
        case("i've done").seed(&["Do the laundry"]).say(&["i've done the laundry"]).expect(&["Do the laundry; done"]),
        case("position without a list asks")
            .seed(&["Buy milk", "Walk dog"])
            .say(&["mark the second one done"])
            .reply(&["haven't shown you a list"]),
        case("ambiguous fragment asks and changes nothing")
            .seed(&["Buy milk", "Buy oat milk"])
            .say(&["complete milk"])
            .reply(&["which one", "buy milk", "buy oat milk"]),
        case("ambiguous then a number")
            .seed(&["Buy milk", "Buy oat milk"])
            .say(&["complete milk", "2"])
            .expect(&["Buy milk", "Buy oat milk; done"]),
        case("ambiguous then a fragment")
            .seed(&["Buy milk", "Buy oat milk"])
            .say(&["complete milk", "the oat one"])
            .expect(&["Buy milk", "Buy oat milk; done"]),
        case("ambiguous then no")
            .seed(&["Buy milk", "Buy oat milk"])
            .say(&["complete milk", "no"])
            .reply(&["never mind"]),
        case("completing prefers the open one")
            .seed(&["Buy milk; done", "Buy milk"])
            .say(&["I finished buy milk"])
            .expect(&["Buy milk; done", "Buy milk; done"]),
        case("reopen").seed(&["Buy milk; done"]).say(&["reopen buy milk"]).expect(&["Buy milk"]).reply(&["reopened"]),
        case("mark as not done").seed(&["Buy milk; done"]).say(&["mark buy milk as not done"]).expect(&["Buy milk"]),
        case("reopening prefers the done one")
            .seed(&["Buy milk; done", "Buy milk"])
            .say(&["reopen buy milk"])
            .expect(&["Buy milk", "Buy milk"]),
        case("already done is said, not redone")
            .seed(&["Buy milk; done"])
            .say(&["complete buy milk"])
            .reply(&["already done"]),
        case("not found is said").seed(&["Buy milk"]).say(&["complete taxes"]).reply(&["couldn't find", "taxes"]),
        case("two positions")
            .seed(&["a1", "b2", "c3"])
            .say(&["show my tasks", "mark 1 and 3 done"])
            .expect(&["a1; done", "b2", "c3; done"]),
        case("position past the end")
            .seed(&["a1", "b2"])
            .say(&["show my tasks", "mark #5 done"])
            .reply(&["no #5", "2 tasks"]),
        case("a task deleted since the list is reported")
            .seed(&["a1", "b2"])
            .say(&["show my tasks", "delete the first one", "mark the first one done"])
            .expect(&["b2"])
            .reply(&["no longer exists"]),
        case("mark it done after adding")
            .say(&["add buy milk", "mark it done"])
            .expect(&["buy milk; done"]),
        case("unknown id").seed(&["Buy milk"]).say(&["complete 01234567-89ab-7def-8123-456789abcdef"]).reply(&["no longer exists"]),
        case("complete by title exact beats substring")
            .seed(&["Buy milk", "Buy milk and eggs"])
            .say(&["complete buy milk"])
            .expect(&["Buy milk; done", "Buy milk and eggs"]),
        case("typo in the title").seed(&["Dentist appointment"]).say(&["complete dentst"]).expect(&["Dentist appointment; done"]),
        case("mark alone means done").seed(&["Buy milk"]).say(&["mark buy milk"]).expect(&["Buy milk; done"]),
        case("completed in a filtered list refers to that list")
            .seed(&["Normal thing", "Urgent thing; high", "Another normal"])
            .say(&["show my high priority tasks", "mark the first one done"])
            .expect(&["Normal thing", "Urgent thing; high; done", "Another normal"]),
        // ---------- deleting ----------
        case("delete by title").seed(&["Buy milk", "Walk dog"]).say(&["delete buy milk"]).expect(&["Walk dog"]).reply(&["deleted"]),
        case("typo delet").seed(&["Buy milk"]).say(&["delet buy milk"]).expect(&[]),
        case("remove the last one").seed(&["Buy milk", "Walk dog"]).say(&["list", "remove the last one"]).expect(&["Buy milk"]),
        case("delete all completed asks first")
            .seed(&["Open one", "Done one; done", "Done two; done"])
            .say(&["delete all completed tasks"])
            .reply(&["are you sure", "done one", "done two"]),
        case("delete all completed, yes")
            .seed(&["Open one", "Done one; done", "Done two; done"])
            .say(&["delete all completed tasks", "yes"])
            .expect(&["Open one"])
            .reply(&["deleted", "done one", "done two"]),
        case("delete all completed, no")
            .seed(&["Open one", "Done one; done", "Done two; done"])
            .say(&["delete all completed tasks", "no"])
            .reply(&["left everything"]),
        case("a confirmation lapses after another message")
            .seed(&["Open one", "Done one; done", "Done two; done"])
            .say(&["delete all completed tasks", "show my tasks", "yes"])
            .reply(&["nothing waiting"]),
        case("one completed is deleted without asking")
            .seed(&["Open one", "Done one; done"])
            .say(&["delete all completed tasks"])
            .expect(&["Open one"]),
        case("no completed to delete").seed(&["Open one"]).say(&["delete completed tasks"]).reply(&["no completed tasks"]),
        case("get rid of").seed(&["Dentist appointment", "Buy milk"]).say(&["get rid of the dentist"]).expect(&["Buy milk"]),
        case("delete not found").seed(&["Buy milk"]).say(&["delete taxes"]).reply(&["couldn't find"]),
        case("delete ambiguous asks").seed(&["Buy milk", "Buy oat milk"]).say(&["delete milk"]).reply(&["which one"]),
        case("clear completed, yes please")
            .seed(&["Done one; done", "Done two; done"])
            .say(&["clear completed", "yes please"])
            .expect(&[]),
        case("delete everything, yes")
            .seed(&["a1", "b2; done", "c3"])
            .say(&["delete everything", "yes"])
            .expect(&[]),
        case("delete two positions confirms")
            .seed(&["a1", "b2", "c3"])
            .say(&["show my tasks", "delete 1 and 2", "yes"])
            .expect(&["c3"]),
        case("cancel a task").seed(&["Dentist appointment"]).say(&["cancel the dentist appointment"]).expect(&[]),
        case("delete by position after search")
            .seed(&["Buy milk", "Buy oat milk", "Buy bread"])
            .say(&["search milk", "delete #2"])
            // Search shows the newest first: #2 is the older "Buy milk".
            .expect(&["Buy oat milk", "Buy bread"])
            .reply(&["deleted “Buy milk”"]),
        case("after undoing a confirmed delete, yes asks nothing")
            .seed(&["Done one; done", "Done two; done"])
            .say(&["delete all completed tasks", "yes", "undo", "yes"])
            .expect(&["Done one; done", "Done two; done"])
            .reply(&["nothing waiting"]),
        // ---------- changing ----------
        case("rename").seed(&["buy milk"]).say(&["rename buy milk to buy oat milk"]).expect(&["buy oat milk"]).reply(&["renamed"]),
        case("rename with 'to' in the title").seed(&["go to gym"]).say(&["rename go to gym to go to pool"]).expect(&["go to pool"]),
        case("change the title of")
            .seed(&["Buy milk"])
            .say(&["change the title of buy milk to buy bread"])
            .expect(&["buy bread"]),
        case("update X to Y renames").seed(&["Buy milk"]).say(&["update buy milk to Buy oat milk"]).expect(&["Buy oat milk"]),
        case("move to next monday")
            .seed(&["Dentist appointment"])
            .say(&["move the dentist to next monday"])
            .expect(&["Dentist appointment; due=2026-03-16T23:59:00Z"])
            .reply(&["Mon Mar 16"]),
        case("reschedule with time")
            .seed(&["Dentist appointment"])
            .say(&["reschedule dentist to friday at 3pm"])
            .expect(&["Dentist appointment; due=2026-03-13T15:00:00Z"]),
        case("postpone to tomorrow")
            .seed(&["Write the report; due=2026-03-10T17:00:00Z"])
            .say(&["postpone the report to tomorrow"])
            .expect(&["Write the report; due=2026-03-11T23:59:00Z"]),
        case("make high priority").seed(&["Write the report"]).say(&["make the report high priority"]).expect(&["Write the report; high"]),
        case("set the priority of").seed(&["Buy milk"]).say(&["set the priority of buy milk to low"]).expect(&["Buy milk; low"]),
        case("prioritize").seed(&["Pay taxes"]).say(&["prioritize taxes"]).expect(&["Pay taxes; high"]),
        case("tag with").seed(&["Buy milk; #shop"]).say(&["tag buy milk with #groceries"]).expect(&["Buy milk; #groceries #shop"]),
        case("clear the due date")
            .seed(&["Pay taxes; due=2026-04-15T23:59:00Z"])
            .say(&["remove the due date from taxes"])
            .expect(&["Pay taxes"]),
        case("change X to a date moves it")
            .seed(&["Buy milk"])
            .say(&["change buy milk to tomorrow"])
            .expect(&["Buy milk; due=2026-03-11T23:59:00Z"]),
        case("move it after adding")
            .say(&["add buy milk", "move it to friday"])
            .expect(&["buy milk; due=2026-03-13T23:59:00Z"]),
        case("move the second one")
            .seed(&["a1", "b2"])
            .say(&["show my tasks", "move the second one to tomorrow 9am"])
            .expect(&["a1", "b2; due=2026-03-11T09:00:00Z"]),
        case("set due").seed(&["Buy milk"]).say(&["set buy milk due tomorrow"]).expect(&["Buy milk; due=2026-03-11T23:59:00Z"]),
        case("mark high priority").seed(&["Buy milk"]).say(&["mark buy milk high priority"]).expect(&["Buy milk; high"]),
        case("move without a date asks").seed(&["Dentist appointment"]).say(&["move the dentist"]).reply(&["when should it be due"]),
        case("rename not found").seed(&["Buy milk"]).say(&["rename taxes to tax return"]).reply(&["couldn't find"]),
        case("set the description")
            .seed(&["Pay taxes"])
            .say(&["set the description of taxes to use the new form"])
            .expect(&["Pay taxes; note=use the new form"]),
        case("moving before the reminder moves the reminder")
            .seed(&["call mom; due=2026-03-13T23:59:00Z; remind=2026-03-13T09:00:00Z"])
            .say(&["move call mom to thursday"])
            .expect(&["call mom; due=2026-03-12T23:59:00Z; remind=2026-03-12T23:59:00Z"]),
        case("ambiguous rename then a number")
            .seed(&["Buy milk", "Buy oat milk"])
            .say(&["rename milk to dairy", "1"])
            .expect(&["dairy", "Buy oat milk"]),
        case("typo rennme").seed(&["Buy milk"]).say(&["renmae buy milk to buy bread"]).expect(&["buy bread"]),
        case("typo reschedul")
            .seed(&["Dentist appointment"])
            .say(&["reschedul dentist to friday"])
            .expect(&["Dentist appointment; due=2026-03-13T23:59:00Z"]),
        // ---------- undo ----------
        case("undo add").say(&["add buy milk", "undo"]).expect(&[]).reply(&["undone"]),
        case("undo complete").seed(&["Buy milk"]).say(&["complete buy milk", "undo"]).expect(&["Buy milk"]),
        case("undo reopen").seed(&["Buy milk; done"]).say(&["reopen buy milk", "undo"]).expect(&["Buy milk; done"]),
        case("undo delete restores every field")
            .seed(&["Buy milk; high; #groceries; due=2026-03-11T17:00:00Z; note=2 litres"])
            .say(&["delete buy milk", "undo"])
            .expect(&["Buy milk; high; #groceries; due=2026-03-11T17:00:00Z; note=2 litres"])
            .reply(&["restored"]),
        case("undo rename").seed(&["Buy milk"]).say(&["rename buy milk to buy bread", "undo"]).expect(&["Buy milk"]),
        case("undo move")
            .seed(&["Dentist appointment; due=2026-03-12T10:00:00Z"])
            .say(&["move the dentist to next monday", "undo"])
            .expect(&["Dentist appointment; due=2026-03-12T10:00:00Z"]),
        case("undo priority").seed(&["Buy milk; low"]).say(&["make buy milk high priority", "undo"]).expect(&["Buy milk; low"]),
        case("nothing to undo").seed(&["Buy milk"]).say(&["undo"]).reply(&["nothing to undo"]),
        case("undo a bulk delete")
            .seed(&["Open one", "Done one; done", "Done two; done"])
            .say(&["delete all completed tasks", "yes", "undo"])
            .expect(&["Open one", "Done one; done", "Done two; done"]),
        case("undo only once")
            .say(&["add buy milk", "add walk dog", "undo", "undo"])
            .expect(&["buy milk"])
            .reply(&["nothing to undo"]),
        case("undo survives a list")
            .say(&["add buy milk", "show my tasks", "undo"])
            .expect(&[]),
        case("undo a cleared due date")
            .seed(&["Pay taxes; due=2026-04-15T23:59:00Z"])
            .say(&["remove the due date from taxes", "undo"])
            .expect(&["Pay taxes; due=2026-04-15T23:59:00Z"]),
        case("undo a tag").seed(&["Buy milk"]).say(&["tag buy milk with #groceries", "undo"]).expect(&["Buy milk"]),
        case("revert that").seed(&["Buy milk"]).say(&["complete buy milk", "revert that"]).expect(&["Buy milk"]),
        // ---------- conversations ----------
        case("list, complete, then completed list")
            .seed(&["Buy milk", "Walk dog"])
            .say(&["show my tasks", "mark the second one done", "show completed tasks"])
            .expect(&["Buy milk", "Walk dog; done"])
            .reply(&["walk dog"])
            .absent(&["buy milk"]),
        case("add three, list, delete the last")
            .say(&["add a1", "add b2", "add c3", "show my tasks", "delete the last one"])
            .expect(&["a1", "b2"]),
        case("greet, add, thank")
            .say(&["hi", "add buy milk tomorrow", "thanks"])
            .expect(&["buy milk; due=2026-03-11T23:59:00Z"])
            .reply(&["welcome"]),
        case("list, move first, undo")
            .seed(&["a1", "b2"])
            .say(&["show my tasks", "move the first one to friday", "undo"])
            .expect(&["a1", "b2"]),
        case("positions follow the latest list")
            .seed(&["a1", "b2; high", "c3"])
            .say(&["show my tasks", "show my high priority tasks", "complete the first one"])
            .expect(&["a1", "b2; high; done", "c3"]),
        case("a list answered after 'which one' is the new list")
            .seed(&["Buy milk", "Buy oat milk", "Walk dog"])
            .say(&["delete milk", "show my tasks", "delete the third one"])
            .expect(&["Buy milk", "Buy oat milk"]),
        case("add then rename it via fragment")
            .say(&["add buy milk", "rename milk to buy bread"])
            .expect(&["buy bread"]),
        case("complete two then undo both")
            .seed(&["a1", "b2", "c3"])
            .say(&["list", "mark 1 and 2 done", "undo"])
            .expect(&["a1", "b2", "c3"]),
        case("long conversation keeps memory")
            .seed(&["a1", "b2"])
            .say(&["hello", "show my tasks", "help", "thanks", "mark the second one done"])
            .expect(&["a1", "b2; done"]),
        case("delete asked, then a different command drops it")
            .seed(&["Done one; done", "Done two; done"])
            .say(&["delete all completed tasks", "add buy milk"])
            .expect(&["Done one; done", "Done two; done", "buy milk"]),
        // ---------- small talk and bad input ----------
        case("hi").seed(&["Buy milk"]).say(&["hi"]).reply(&["show my tasks"]),
        case("hello there").say(&["Hello there!"]).reply(&["hi!"]),
        case("good morning").say(&["good morning"]).reply(&["hi!"]),
        case("thanks").say(&["thank you"]).reply(&["welcome"]),
        case("help").say(&["help"]).reply(&["add buy milk", "undo"]),
        case("what can you do").say(&["what can you do?"]).reply(&["mark the second one done"]),
        case("question mark").say(&["?"]).reply(&["i can manage your tasks"]),
        case("unknown command gives help").seed(&["Buy milk"]).say(&["fly me to the moon"]).reply(&["didn't understand", "add buy milk"]),
        case("gibberish").seed(&["Buy milk"]).say(&["asdfghjkl"]).reply(&["didn't understand"]),
        case("empty message").seed(&["Buy milk"]).say(&["   "]).reply(&["show my tasks"]),
        case("yes with nothing pending").seed(&["Buy milk"]).say(&["yes"]).reply(&["nothing waiting"]),
        case("no with nothing pending").seed(&["Buy milk"]).say(&["no"]).reply(&["ok"]),
        case("sql-looking input changes nothing").seed(&["Buy milk"]).say(&["DROP TABLE tasks;"]).reply(&["couldn't find"]),
        case("injection-looking input changes nothing").seed(&["Buy milk"]).say(&["Robert'); DROP TABLE tasks;--"]),
        case("delete alone asks").seed(&["Buy milk"]).say(&["delete"]).reply(&["which task"]),
        case("complete alone asks").seed(&["Buy milk"]).say(&["complete"]).reply(&["which task"]),
        case("rename alone asks").seed(&["Buy milk"]).say(&["rename"]).reply(&["rename which task"]),
        case("emoji only").seed(&["Buy milk"]).say(&["🙂"]).reply(&["didn't understand"]),
        case("user_id in text is just text")
            .say(&["add call user 42 about user_id"])
            .expect(&["call user 42 about user_id"]),
        case("very long title is refused by the API and reported")
            .say(&["add aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
            .reply(&["couldn't add", "title"]),
    ]
}

#[tokio::test]
async fn corpus() {
    let service = start().await;
    let cases = cases();
    assert!(cases.len() >= 150, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(e) = run(&service, c).await {
            failures.push(format!("[{}] {e}", c.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
    println!("{} cases passed", cases.len());
}

/// Another user's tasks are never reachable: the tools act for the token's user only.
#[tokio::test]
async fn users_are_kept_apart() {
    let service = start().await;
    let alice = service.user();
    let bob = service.user();
    alice.seed("Alice's secret").await;
    let tools = UserTools::new(service.tasks.clone(), bob.id.clone(), bob.token.clone());
    let now = time::OffsetDateTime::parse(NOW, &time::format_description::well_known::Rfc3339).expect("now");
    let ctx = Context { now, tz: "UTC", history: &[] };
    let reply = rules::turn(&ctx, "delete alice's secret", &tools).await;
    assert!(reply.response.contains("couldn't find"), "{}", reply.response);
    assert_eq!(alice.stored().await, vec!["Alice's secret".to_owned()]);
    // A user_id argument is ignored: the call still runs as Bob (and finds nothing of Alice's).
    let call = tools.call("list_tasks", json!({"user_id": alice.id})).await;
    assert_eq!(call.result["count"], 0, "{}", call.result);
}

/// The tool results are what the API answered: a missing task is a 404 error, not a success.
#[tokio::test]
async fn tool_errors_carry_the_api_status() {
    let service = start().await;
    let user = service.user();
    let tools = UserTools::new(service.tasks.clone(), user.id.clone(), user.token.clone());
    let missing = "01234567-89ab-7def-8123-456789abcdef";
    for (name, args) in [
        ("delete_task", json!({"task_id": missing})),
        ("complete_task", json!({"task_id": missing})),
        ("update_task", json!({"task_id": missing, "title": "x"})),
    ] {
        let call = tools.call(name, args).await;
        assert!(!call.succeeded(), "{name}: {}", call.result);
        assert_eq!(call.result["status"], 404, "{name}: {}", call.result);
    }
    let call = tools.call("fly", json!({})).await;
    assert!(call.result["error"].as_str().is_some_and(|e| e.contains("unknown tool")));
    let call = tools.call("add_task", json!({"title": "x", "due_at": "tomorrow"})).await;
    assert_eq!(call.result["status"], 422, "{}", call.result);
    let call = tools.call("add_task", json!({"title": "Buy milk", "tags": ["Home"]})).await;
    assert_eq!(call.result["status"], "created");
    let id = call.result["task_id"].as_str().expect("id").to_owned();
    let call = tools.call("complete_task", json!({"task_id": id})).await;
    assert_eq!(call.result["status"], "completed");
    let call = tools.call("complete_task", json!({"task_id": id, "completed": false})).await;
    assert_eq!(call.result["status"], "reopened");
    let call = tools.call("search_tasks", json!({"query": "milk"})).await;
    assert_eq!(call.result["count"], 1);
    assert_eq!(call.result["tasks"][0]["tags"], json!(["home"]));
    let call = tools.call("delete_task", json!({"task_id": id})).await;
    assert_eq!(call.result["status"], "deleted");
    assert_eq!(user.stored().await, Vec::<String>::new());
    let bad = UserTools::new(service.tasks.clone(), user.id.clone(), "not-a-token");
    let call = bad.call("list_tasks", json!({})).await;
    assert_eq!(call.result["status"], 401, "{}", call.result);
}
