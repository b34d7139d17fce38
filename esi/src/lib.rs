//! Edge Side Includes (W3C ESI Language Specification 1.0) for Outpost edges.
//!
//! It owns the ESI markup reader ([`markup`]), the expression language ([`expr`]), the
//! variables a page may read of its request ([`vars`]), the assembly of a page from its parts
//! (`assemble`: every include fetched as soon as it is parsed, at every depth, the page
//! streamed in document order), the content codings around it (`encoding`), and
//! [`EsiFront`], the handler in front of the edge's cache that decides which responses are
//! processed and derives the page's headers from its parts (`front`).
//!
//! It does not cache, route or fetch by itself: every template and fragment comes from the
//! handler behind it (the edge's cache, so through the parent tier), and what is cached is
//! the template and each fragment, never an assembled page.

mod assemble;
pub mod config;
mod encoding;
pub mod expr;
mod front;
pub mod markup;
mod metrics;
pub mod vars;

pub use config::{EsiConfig, EsiRule};
pub use front::EsiFront;
pub use metrics::EsiMetrics;

use globset::GlobMatcher;
use http::HeaderMap;
use outpost_cache::SurrogateControl;

/// Why a part of a page could not be had. Each names the fragment (or the limit) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("include {src:?} refused: {reason}")]
    Refused { src: String, reason: &'static str },
    #[error("fragment {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("fragment {url} timed out")]
    Timeout { url: String },
    #[error("fragment {url} broke off: {reason}")]
    Body { url: String, reason: String },
    #[error("fragment {url} is nested deeper than {limit} levels")]
    TooDeep { url: String, limit: usize },
    #[error("more than {limit} includes in one page")]
    TooManyIncludes { limit: usize },
    #[error("include of {url} points back at a page that includes it")]
    Loop { url: String },
    #[error("inline fragment {url} expired and is not fetchable")]
    Unfetchable { url: String },
    #[error("the assembled page is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("ESI processing stopped")]
    Lost,
}

impl Failure {
    /// Whether an include's `alt` is tried after this: not when a limit stopped the page.
    fn may_fall_back(&self) -> bool {
        !matches!(
            self,
            Failure::TooManyIncludes { .. } | Failure::TooLarge { .. } | Failure::Loop { .. }
        )
    }

    /// The status a page gets when this happens before any of it was sent.
    fn status(&self) -> http::StatusCode {
        match self {
            Failure::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// Which responses are processed: those whose `Surrogate-Control` asks for ESI from this
/// device, and those the config's rules name.
pub(crate) struct Rules {
    enabled: bool,
    paths: Vec<(String, GlobMatcher)>,
}

impl Rules {
    fn new(config: &EsiConfig) -> Self {
        let paths = config
            .rules
            .iter()
            .filter_map(|rule| {
                let glob = globset::GlobBuilder::new(&rule.path)
                    .literal_separator(true)
                    .build()
                    .ok()?;
                Some((rule.host.to_ascii_lowercase(), glob.compile_matcher()))
            })
            .collect();
        Self {
            enabled: config.enabled,
            paths,
        }
    }

    pub(crate) fn wants_esi(&self, host: &str, path: &str, headers: &HeaderMap) -> bool {
        self.enabled
            && (SurrogateControl::of(headers).wants_esi()
                || self.paths.iter().any(|(rule_host, glob)| {
                    (rule_host.is_empty()
                        || rule_host == outpost_server::normal::without_port(host))
                        && glob.is_match(path)
                }))
    }
}
