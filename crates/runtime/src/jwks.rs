//! Keeps a process's [`PublicKeys`] in step with the accounts service's JWKS endpoint:
//! fetched at start (retrying until accounts answers), every few minutes, and at once when a
//! token names a key id not seen yet — at most once per few seconds, so forged `kid`s cannot
//! turn into a flood of fetches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::auth::{JwkSet, KeyRefresher, PublicKeys};

const PERIOD: Duration = Duration::from_secs(300);
const MIN_GAP: Duration = Duration::from_secs(5);

pub struct JwksClient {
    url: String,
    keys: Arc<PublicKeys>,
    http: reqwest::Client,
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksClient {
    /// `accounts_url` is the service's base URL; the well-known path is appended.
    pub fn new(accounts_url: &str, keys: Arc<PublicKeys>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("static client settings are valid");
        Self {
            url: format!("{}/.well-known/jwks.json", accounts_url.trim_end_matches('/')),
            keys,
            http,
            last: Default::default(),
        }
    }

    /// One fetch; replaces the key set only on a good answer with at least one key.
    pub async fn fetch(&self) -> Result<usize, String> {
        let res = self.http.get(&self.url).send().await.map_err(|e| format!("GET {}: {e}", self.url))?;
        if !res.status().is_success() {
            return Err(format!("GET {}: status {}", self.url, res.status()));
        }
        let set: JwkSet = res.json().await.map_err(|e| format!("GET {}: bad JWKS: {e}", self.url))?;
        if set.keys.is_empty() {
            return Err(format!("GET {}: no keys published", self.url));
        }
        let n = set.keys.len();
        self.keys.replace(set);
        Ok(n)
    }

    /// Fetches now (retrying with back-off until it works), then every few minutes, forever.
    pub fn spawn(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match self.fetch().await {
                    Ok(n) => {
                        tracing::info!(keys = n, url = %self.url, "token keys loaded");
                        tokio::time::sleep(PERIOD).await;
                        delay = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot load token keys");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }
}

impl KeyRefresher for JwksClient {
    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Holding the lock across the fetch coalesces concurrent refreshes into one.
            let mut last = self.last.lock().await;
            if last.is_some_and(|t| t.elapsed() < MIN_GAP) {
                return;
            }
            *last = Some(Instant::now());
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = %e, "refreshing token keys failed");
            }
        })
    }
}
