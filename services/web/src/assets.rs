//! Static assets, compiled into the binary. Their URLs carry a hash of their content, so they can
//! be cached for a year and a new build is picked up at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest;

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");
const ICON: &str = include_str!("../assets/icon.svg");

/// One hash over every asset: any change gives every URL a new version.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = sha2::Sha256::new();
    for a in [CSS, JS, ICON] {
        h.update(a.as_bytes());
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
});

pub fn css_url() -> String {
    format!("/static/{}/app.css", *VERSION)
}

pub fn js_url() -> String {
    format!("/static/{}/app.js", *VERSION)
}

pub fn icon_url() -> String {
    format!("/static/{}/icon.svg", *VERSION)
}

pub async fn serve(Path((version, file)): Path<(String, String)>) -> Response {
    let (body, mime) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    // An old page may still ask for an old version: answer with the current one, briefly cached.
    let cache = if version == *VERSION { "public, max-age=31536000, immutable" } else { "public, max-age=60" };
    let mut res = body.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

/// Browsers ask for `/favicon.ico` whatever the page says.
pub async fn favicon() -> Response {
    serve(Path((VERSION.clone(), "icon.svg".to_owned()))).await
}
