//! `GET /docs/openapi.json` (the API document) and `GET /docs` (the same document as a page,
//! rendered here: no JavaScript, nothing fetched from elsewhere, so it works offline).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::Shared;

/// The page's policy: its inline style and nothing else.
pub const DOCS_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// The document and its page, rendered once at startup.
pub(crate) struct Docs {
    json: Bytes,
    html: Bytes,
}

impl Docs {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        // Bytes straight from the document keep its order (a `Value` sorts object keys).
        let json = serde_json::to_vec(doc).expect("an OpenAPI document serializes to JSON");
        let value: Value = serde_json::from_slice(&json).expect("the document is JSON");
        Docs { json: json.into(), html: render(&value).into() }
    }
}

/// The OpenAPI 3.1 document of the public API.
#[utoipa::path(
    get,
    path = "/docs/openapi.json",
    operation_id = "openapi_document",
    tag = "gateway",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object, content_type = "application/json"))
)]
pub(crate) async fn document(State(gw): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json")), no_cache()], gw.docs.json.clone())
        .into_response()
}

/// The API document as a readable page (HTML rendered on the server, no scripts).
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs",
    tag = "gateway",
    responses((status = 200, description = "The API reference as an HTML page.", body = String, content_type = "text/html"))
)]
pub(crate) async fn viewer(State(gw): State<Shared>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP)),
            no_cache(),
        ],
        gw.docs.html.clone(),
    )
        .into_response()
}

fn no_cache() -> (header::HeaderName, HeaderValue) {
    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))
}

/// Escaped text in which `code` spans (paired backticks, as in the document's descriptions)
/// become `<code>` elements.
fn prose(s: &str) -> String {
    let escaped = escape_html(s);
    if !escaped.matches('`').count().is_multiple_of(2) {
        return escaped;
    }
    escaped
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("<code>{part}</code>") } else { part.to_owned() })
        .collect()
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#fff}
header,main,nav{max-width:64rem;margin:0 auto;padding:0 1.25rem}
header{padding-top:1.5rem}h1{margin:.2rem 0}h1 small{font-size:.55em;color:#667}
nav{border-bottom:1px solid #dde}nav ul{padding-left:1.2rem;margin:.2rem 0}nav>ul{columns:2}
h2{margin-top:2.2rem;border-bottom:2px solid #1d2330;text-transform:capitalize}
article{border:1px solid #dde;border-radius:6px;padding:.4rem 1rem .8rem;margin:1rem 0}
h3{margin:.4rem 0;font-size:1.05rem}code{font:13px ui-monospace,Menlo,Consolas,monospace}
table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{text-align:left;vertical-align:top;
padding:.25rem .5rem;border-bottom:1px solid #eef}th{font-weight:600;background:#f6f7fb}
.m{display:inline-block;min-width:4.2rem;text-align:center;border-radius:4px;color:#fff;
font:600 12px ui-monospace,monospace;padding:2px 6px;margin-right:.4rem}
.get{background:#2f7d4f}.post{background:#285ea8}.put{background:#8a5a00}.patch{background:#6b4aa5}
.delete{background:#a33}.lock{color:#8a5a00;font-size:.85em}.muted{color:#667}
";

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

fn anchor(kind: &str, name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    format!("{kind}-{clean}")
}

/// The name of a `#/components/schemas/…` reference.
fn ref_name(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

/// A schema as a short type description, with links to named schemas (already escaped).
fn type_html(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = ref_name(r);
        return format!("<a href=\"#{}\">{}</a>", escape_html(&anchor("schema", name)), escape_html(name));
    }
    for (key, sep) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " &amp; ")] {
        if let Some(items) = s.get(key).and_then(Value::as_array) {
            return items.iter().map(type_html).collect::<Vec<_>>().join(sep);
        }
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let mut parts = Vec::new();
    for t in &types {
        parts.push(match *t {
            "array" => format!("array of {}", s.get("items").map_or_else(|| "any".to_owned(), type_html)),
            "object" if s.get("additionalProperties").is_some_and(Value::is_object) => {
                format!("map of {}", type_html(&s["additionalProperties"]))
            }
            other => escape_html(other),
        });
    }
    let mut out = if parts.is_empty() { "any".to_owned() } else { parts.join(" | ") };
    if let Some(f) = s.get("format").and_then(Value::as_str) {
        let _ = write!(out, " <span class=\"muted\">({})</span>", escape_html(f));
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = values.iter().map(|v| escape_html(&plain(v))).collect();
        let _ = write!(out, ": <code>{}</code>", list.join(" | "));
    }
    let limits: Vec<String> = [
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "min"),
        ("maximum", "max"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("pattern", "pattern"),
        ("default", "default"),
    ]
    .iter()
    .filter_map(|(k, label)| s.get(*k).map(|v| format!("{label} {}", escape_html(&plain(v)))))
    .collect();
    if !limits.is_empty() {
        let _ = write!(out, " <span class=\"muted\">({})</span>", limits.join(", "));
    }
    out
}

/// A JSON value as text (strings without quotes).
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// (method, path, operation)
type Op<'a> = (String, String, &'a Value);

/// Operations grouped by tag, in the order of the document's `tags`, then of first appearance.
fn by_tag(doc: &Value) -> Vec<(String, Vec<Op<'_>>)> {
    let mut groups: Vec<(String, Vec<Op<'_>>)> = doc["tags"]
        .as_array()
        .map(|tags| tags.iter().map(|t| (text(t, "name").to_owned(), Vec::new())).collect())
        .unwrap_or_default();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            let tag = op["tags"].get(0).and_then(Value::as_str).unwrap_or("other").to_owned();
            let at = match groups.iter().position(|(t, _)| *t == tag) {
                Some(i) => i,
                None => {
                    groups.push((tag, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[at].1.push(((*method).to_owned(), path.clone(), op));
        }
    }
    groups.retain(|(_, ops)| !ops.is_empty());
    groups
}

fn op_anchor(method: &str, path: &str, op: &Value) -> String {
    match op.get("operationId").and_then(Value::as_str) {
        Some(id) => anchor("op", id),
        None => anchor("op", &format!("{method}{path}")),
    }
}

/// The whole page.
pub fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let (title, version) = (escape_html(text(info, "title")), escape_html(text(info, "version")));
    let groups = by_tag(doc);
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} {version}</title><style>{STYLE}</style></head><body>\n\
         <header><h1>{title} <small>{version}</small></h1>\
         <p class=\"muted\">OpenAPI {} · machine-readable: <a href=\"/docs/openapi.json\">/docs/openapi.json</a></p>",
        escape_html(text(doc, "openapi"))
    );
    for para in text(info, "description").split("\n\n").filter(|p| !p.trim().is_empty()) {
        let _ = write!(h, "<p>{}</p>", prose(para));
    }
    h.push_str("</header>\n<nav><h2>Contents</h2><ul>");
    for (tag, ops) in &groups {
        let _ = write!(h, "<li><a href=\"#{}\">{}</a><ul>", escape_html(&anchor("tag", tag)), escape_html(tag));
        for (method, path, op) in ops {
            let _ = write!(
                h,
                "<li><a href=\"#{}\"><code>{} {}</code></a></li>",
                escape_html(&op_anchor(method, path, op)),
                escape_html(&method.to_uppercase()),
                escape_html(path)
            );
        }
        h.push_str("</ul></li>");
    }
    h.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul></nav>\n<main>");

    let tag_info: Vec<&Value> = doc["tags"].as_array().map(|t| t.iter().collect()).unwrap_or_default();
    for (tag, ops) in &groups {
        let _ = write!(h, "<section id=\"{}\"><h2>{}</h2>", escape_html(&anchor("tag", tag)), escape_html(tag));
        if let Some(t) = tag_info.iter().find(|t| text(t, "name") == tag) {
            let _ = write!(h, "<p>{}</p>", prose(text(t, "description")));
        }
        for (method, path, op) in ops {
            operation(&mut h, doc, method, path, op);
        }
        h.push_str("</section>\n");
    }

    h.push_str("<section id=\"schemas\"><h2>Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        schema_html(&mut h, name, schema);
    }
    h.push_str("</section></main></body></html>\n");
    h
}

fn operation(h: &mut String, doc: &Value, method: &str, path: &str, op: &Value) {
    let _ = write!(
        h,
        "<article id=\"{}\"><h3><span class=\"m {m}\">{}</span><code>{}</code></h3>",
        escape_html(&op_anchor(method, path, op)),
        escape_html(&method.to_uppercase()),
        escape_html(path),
        m = escape_html(method),
    );
    let secured = op.get("security").or_else(|| doc.get("security")).and_then(Value::as_array);
    let schemes: Vec<String> =
        secured.into_iter().flatten().filter_map(obj).flat_map(|req| req.keys().cloned()).collect();
    if schemes.is_empty() {
        h.push_str("<p class=\"lock\">public: no token needed</p>");
    } else {
        let _ = write!(h, "<p class=\"lock\">requires: {}</p>", escape_html(&schemes.join(", ")));
    }
    for key in ["summary", "description"] {
        let t = text(op, key);
        let repeated = key == "description" && t == text(op, "summary");
        if !t.is_empty() && !repeated {
            for para in t.split("\n\n") {
                let _ = match key {
                    "summary" => write!(h, "<p><b>{}</b></p>", prose(para)),
                    _ => write!(h, "<p>{}</p>", prose(para)),
                };
            }
        }
    }
    if let Some(params) = op.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) {
        h.push_str(
            "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>type</th>\
             <th>description</th></tr>",
        );
        for p in params {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(text(p, "name")),
                escape_html(text(p, "in")),
                if p["required"] == Value::Bool(true) { "yes" } else { "no" },
                p.get("schema").map_or_else(|| "any".to_owned(), type_html),
                prose(text(p, "description")),
            );
        }
        h.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let required = if body["required"] == Value::Bool(true) { "required" } else { "optional" };
        let _ = write!(h, "<h4>Request body <span class=\"muted\">({required})</span></h4><ul>");
        for (media, content) in body["content"].as_object().into_iter().flatten() {
            let _ = write!(
                h,
                "<li><code>{}</code>: {}</li>",
                escape_html(media),
                content.get("schema").map_or_else(|| "any".to_owned(), type_html)
            );
        }
        h.push_str("</ul>");
        let d = text(body, "description");
        if !d.is_empty() {
            let _ = write!(h, "<p>{}</p>", prose(d));
        }
    }
    h.push_str(
        "<h4>Responses</h4><table><tr><th>status</th><th>description</th><th>media type</th><th>body</th>\
         <th>headers</th></tr>",
    );
    for (status, r) in op["responses"].as_object().into_iter().flatten() {
        let content: Vec<(&String, &Value)> = r["content"].as_object().into_iter().flatten().collect();
        let media: Vec<String> = content.iter().map(|(m, _)| format!("<code>{}</code>", escape_html(m))).collect();
        let bodies: Vec<String> =
            content.iter().map(|(_, c)| c.get("schema").map_or_else(|| "any".to_owned(), type_html)).collect();
        let headers: Vec<String> = r["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, hd)| {
                let d = text(hd, "description");
                if d.is_empty() {
                    format!("<code>{}</code>", escape_html(name))
                } else {
                    format!("<code>{}</code>: {}", escape_html(name), prose(d))
                }
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(status),
            prose(text(r, "description")),
            media.join("<br>"),
            bodies.join("<br>"),
            headers.join("<br>"),
        );
    }
    h.push_str("</table></article>\n");
}

fn schema_html(h: &mut String, name: &str, schema: &Value) {
    let _ = write!(h, "<article id=\"{}\"><h3>{}</h3>", escape_html(&anchor("schema", name)), escape_html(name));
    let d = text(schema, "description");
    if !d.is_empty() {
        let _ = write!(h, "<p>{}</p>", prose(d));
    }
    match schema.get("properties").and_then(Value::as_object) {
        Some(props) => {
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            h.push_str("<table><tr><th>property</th><th>type</th><th>required</th><th>description</th></tr>");
            for (prop, s) in props {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape_html(prop),
                    type_html(s),
                    if required.contains(&prop.as_str()) { "yes" } else { "no" },
                    prose(text(s, "description")),
                );
            }
            h.push_str("</table>");
        }
        None => {
            let _ = write!(h, "<p>{}</p>", type_html(schema));
        }
    }
    h.push_str("</article>\n");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn escape_html_escapes_markup_and_quotes() {
        assert_eq!(escape_html("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape_html("a & \"b\""), "a &amp; &quot;b&quot;");
        assert_eq!(escape_html("plain {id} – ü"), "plain {id} – ü");
        assert_eq!(escape_html("&amp;"), "&amp;amp;", "escaping is not idempotent: escape once");
    }

    #[test]
    fn backticks_become_code_after_escaping() {
        assert_eq!(prose("send `<b>` or `x`"), "send <code>&lt;b&gt;</code> or <code>x</code>");
        assert_eq!(prose("a lone ` stays"), "a lone ` stays");
    }

    #[test]
    fn page_shows_operations_parameters_responses_and_schemas_escaped() {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "T<i>", "version": "1"},
            "tags": [{"name": "things", "description": "About <things>"}],
            "paths": {"/things/{id}": {"get": {
                "tags": ["things"], "operationId": "get_thing", "summary": "Reads a <thing>",
                "security": [{"bearer": []}],
                "parameters": [{"name": "id", "in": "path", "required": true,
                    "schema": {"type": "string", "enum": ["a", "b<"]}}],
                "responses": {"200": {"description": "ok", "content": {"application/json":
                    {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
            }}},
            "components": {"schemas": {"Thing": {"type": "object", "required": ["n"],
                "properties": {"n": {"type": ["integer", "null"], "format": "int64", "description": "x\"y"}}}}}
        });
        let page = render(&doc);
        assert!(!page.contains("<script") && !page.contains("<i>") && !page.contains("<thing>"));
        for needle in [
            "T&lt;i&gt;",
            "About &lt;things&gt;",
            "<code>GET /things/{id}</code>",
            "<b>Reads a &lt;thing&gt;</b>",
            "requires: bearer",
            "<code>id</code></td><td>path</td><td>yes</td><td>string: <code>a | b&lt;</code>",
            "<a href=\"#schema-Thing\">Thing</a>",
            "integer | null <span class=\"muted\">(int64)</span>",
            "x&quot;y",
            "id=\"op-get_thing\"",
        ] {
            assert!(page.contains(needle), "missing {needle} in\n{page}");
        }
    }
}
