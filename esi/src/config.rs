//! The `[esi]` table of the topology file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an edge processes Edge Side Includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EsiConfig {
    /// Process ESI at all (responses marked for it, and the `rules`).
    pub enabled: bool,
    /// How deep includes may nest: the template is depth 0, its fragments depth 1.
    pub max_depth: usize,
    /// Includes per page, counted over every depth.
    pub max_includes: usize,
    /// How long a fragment may take to answer, and then between two chunks of its body.
    pub fragment_timeout_ms: u64,
    /// The largest assembled page; a page that grows past it is cut off as failed.
    pub max_page_bytes: u64,
    /// How long the page's head waits for every part's headers, so it can carry the
    /// freshness and validator derived from all of them; past it the head goes out with
    /// `Cache-Control: private, no-cache` and the body streams. The default, 500 µs, is
    /// what parts that are cache hits take; fetched parts take longer. Conditional requests wait
    /// for every part (up to the fragment timeout) to answer 304 when nothing changed.
    pub head_wait_us: u64,
    /// Hosts an include may name in an absolute URL (besides the page's own host).
    pub allowed_hosts: Vec<String>,
    /// Request headers copied onto fragment requests besides Cookie and Accept-Language.
    pub forward_headers: Vec<String>,
    /// Paths processed as ESI whatever their response says.
    pub rules: Vec<EsiRule>,
}

/// Process every response for `host` (or any host when empty) whose path matches `path`
/// (a glob: `/esi/*`, `**` for any depth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsiRule {
    #[serde(default)]
    pub host: String,
    pub path: String,
}

impl Default for EsiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_depth: 5,
            max_includes: 256,
            fragment_timeout_ms: 10_000,
            max_page_bytes: 16 << 20,
            head_wait_us: 500,
            allowed_hosts: Vec::new(),
            forward_headers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

impl EsiConfig {
    pub fn fragment_timeout(&self) -> Duration {
        Duration::from_millis(self.fragment_timeout_ms)
    }

    pub fn head_wait(&self) -> Duration {
        Duration::from_micros(self.head_wait_us)
    }

    /// The first setting that cannot work, as `(key, what it must be)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_depth == 0 {
            return Err(("max_depth", "at least 1".into()));
        }
        if self.fragment_timeout_ms == 0 {
            return Err(("fragment_timeout_ms", "at least 1".into()));
        }
        for rule in &self.rules {
            if let Err(error) = globset::Glob::new(&rule.path) {
                return Err(("rules.path", format!("a glob ({error})")));
            }
        }
        for header in &self.forward_headers {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err((
                    "forward_headers",
                    format!("header names ({header:?} is not)"),
                ));
            }
        }
        Ok(())
    }
}
