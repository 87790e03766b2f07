//! The services the gateway routes the public API to (each an [`Upstream`] of the runtime).

pub use flotilla_runtime::upstream::{HttpSettings, HttpUpstream, Upstream};

/// The services the public API is routed to.
#[derive(Clone)]
pub struct Upstreams {
    pub accounts: Upstream,
    pub tasks: Upstream,
    pub audit: Upstream,
    pub assistant: Upstream,
    /// The web UI: every path outside the API goes to it. Without it such paths are 404.
    pub web: Option<Upstream>,
}

impl Upstreams {
    /// Every service behind the gateway, by name (those `/health` reports on).
    pub fn all(&self) -> Vec<(&'static str, &Upstream)> {
        let mut all = vec![
            ("accounts", &self.accounts),
            ("tasks", &self.tasks),
            ("audit", &self.audit),
            ("assistant", &self.assistant),
        ];
        if let Some(web) = &self.web {
            all.push(("web", web));
        }
        all
    }
}
