//! Worker routes, as in Cloudflare: `host/path` patterns where the host may start with `*.`
//! (any subdomain) or be `*` (any host), and the path may end in `*` (any suffix). The most
//! specific matching route wins: an exact host before a wildcard host, then the longer path, an
//! exact path before a prefix of the same length. Requests that match no route skip workers.

use std::cmp::Reverse;
use std::fmt;

/// One parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    host: HostPattern,
    /// The path, without its trailing `*` when `prefix` is set.
    path: String,
    prefix: bool,
}

/// Which hosts a route (or a worker's allowed outbound hosts) covers: `*`, `*.domain` (its
/// subdomains, not the domain itself) or one name; matched without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Any,
    /// `*.example.test`: stored as `.example.test`.
    Suffix(String),
    Exact(String),
}

impl HostPattern {
    /// An allowed-host entry as a deploy gives it: `*`, `*.domain` or a name.
    pub(crate) fn allowed(pattern: &str) -> Self {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('*') {
            Some("") => HostPattern::Any,
            Some(suffix) if suffix.starts_with('.') => HostPattern::Suffix(suffix.to_owned()),
            _ => HostPattern::Exact(pattern),
        }
    }

    /// Whether `host` (no port) is covered.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
            HostPattern::Exact(exact) => host.eq_ignore_ascii_case(exact),
        }
    }
}

/// A route pattern that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "route {pattern:?}: {reason} (expected e.g. \"www.outpost.test/api/*\" or \"*.outpost.test/*\")"
)]
pub struct RouteError {
    pub pattern: String,
    pub reason: &'static str,
}

impl Route {
    pub fn parse(pattern: &str) -> Result<Self, RouteError> {
        let bad = |reason| RouteError {
            pattern: pattern.to_owned(),
            reason,
        };
        let trimmed = pattern.trim();
        let without_scheme = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .unwrap_or(trimmed);
        let (host, path) = match without_scheme.find('/') {
            Some(slash) => without_scheme.split_at(slash),
            None => return Err(bad("a route needs a path, at least \"/*\"")),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.as_str() {
            "" => return Err(bad("a route needs a host (or \"*\" for any)")),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => {
                let rest = &h[1..];
                if rest.len() < 2 || rest[1..].contains('*') {
                    return Err(bad("a wildcard host is \"*.\" followed by a domain"));
                }
                HostPattern::Suffix(rest.to_owned())
            }
            h if h.contains('*') => return Err(bad("\"*\" may only start a host, as \"*.\"")),
            h if h.contains(':') => return Err(bad("a route matches any port: leave it out")),
            h => HostPattern::Exact(h.to_owned()),
        };
        // Only names a request can carry (in their normal form): a route that could never
        // match is a mistake to report, not to keep.
        let name = match &host {
            HostPattern::Any => "",
            HostPattern::Suffix(s) => s.as_str(),
            HostPattern::Exact(h) => h.as_str(),
        };
        if !name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        }) {
            return Err(bad("a host is letters, digits, dots and dashes"));
        }
        let host = match host {
            HostPattern::Exact(h) => {
                if h.contains("..") {
                    return Err(bad("a host is letters, digits, dots and dashes"));
                }
                let h = h.strip_suffix('.').unwrap_or(&h);
                if h.is_empty() || h.starts_with('.') {
                    return Err(bad("a host is letters, digits, dots and dashes"));
                }
                HostPattern::Exact(h.to_owned())
            }
            other => other,
        };
        let (path, prefix) = match path.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (path, false),
        };
        if path.contains('*') {
            return Err(bad("\"*\" may only end a path"));
        }
        Ok(Self {
            host,
            path: path.to_owned(),
            prefix,
        })
    }

    /// Whether the route covers a request for `host` (no port) and `path`.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.host.matches(host)
            && if self.prefix {
                path.starts_with(&self.path)
            } else {
                path == self.path
            }
    }

    /// The hosts the route covers.
    pub(crate) fn host(&self) -> &HostPattern {
        &self.host
    }

    /// Orders routes most specific first.
    fn specificity(&self) -> (u8, usize, bool, usize) {
        let (host_rank, host_len) = match &self.host {
            HostPattern::Exact(h) => (2, h.len()),
            HostPattern::Suffix(s) => (1, s.len()),
            HostPattern::Any => (0, 0),
        };
        (host_rank, host_len, !self.prefix, self.path.len())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Suffix(s) => write!(f, "*{s}")?,
            HostPattern::Exact(h) => f.write_str(h)?,
        }
        f.write_str(&self.path)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// Routes to targets (workers), most specific first.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    entries: Vec<(Route, T)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    pub fn new(entries: impl IntoIterator<Item = (Route, T)>) -> Self {
        let mut entries: Vec<(Route, T)> = entries.into_iter().collect();
        // Stable: equal routes keep their insertion order.
        entries.sort_by_key(|(route, _)| Reverse(route.specificity()));
        Self { entries }
    }

    /// The most specific target for a request; `host` may carry a port.
    pub fn find(&self, host: &str, path: &str) -> Option<&T> {
        let host = outpost_server::normal::without_port(host);
        self.entries
            .iter()
            .find(|(route, _)| route.matches(host, path))
            .map(|(_, target)| target)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[&str]) -> RouteTable<String> {
        RouteTable::new(
            patterns
                .iter()
                .map(|p| (Route::parse(p).unwrap(), (*p).to_owned())),
        )
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table(&[
            "*/*",
            "*.outpost.test/*",
            "www.outpost.test/*",
            "www.outpost.test/api/*",
            "www.outpost.test/api/login",
        ]);
        let find = |host, path| t.find(host, path).map(String::as_str);
        assert_eq!(
            find("www.outpost.test", "/api/login"),
            Some("www.outpost.test/api/login")
        );
        assert_eq!(
            find("www.outpost.test:8080", "/api/x"),
            Some("www.outpost.test/api/*")
        );
        assert_eq!(find("WWW.outpost.test", "/"), Some("www.outpost.test/*"));
        assert_eq!(find("img.outpost.test", "/a.png"), Some("*.outpost.test/*"));
        assert_eq!(find("outpost.test", "/"), Some("*/*"));
        assert_eq!(find("example.test", "/"), Some("*/*"));
    }

    #[test]
    fn unmatched_requests_skip_workers() {
        let t = table(&["www.outpost.test/api/*", "*.example.test/*"]);
        assert_eq!(t.find("www.outpost.test", "/index.html"), None);
        assert_eq!(t.find("example.test", "/"), None, "*. needs a subdomain");
        assert_eq!(t.find("evilexample.test", "/"), None);
        assert!(t.find("a.example.test", "/").is_some());
        assert_eq!(
            table(&["www.outpost.test/exact"]).find("www.outpost.test", "/exact/more"),
            None
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (pattern, reason) in [
            ("www.outpost.test", "needs a path"),
            ("/api/*", "needs a host"),
            ("w*w.outpost.test/*", "only start a host"),
            ("www.outpost.test/a*b", "only end a path"),
            ("www.outpost.test:8080/*", "any port"),
            ("*./x", "wildcard host"),
            // Found by the fuzzer: hosts no request can carry.
            (" \0 \0h/", "letters, digits"),
            ("https:// a.test/", "letters, digits"),
            ("./", "letters, digits"),
            ("a..b/", "letters, digits"),
            ("yp../]/*", "letters, digits"),
        ] {
            let error = Route::parse(pattern).unwrap_err();
            assert!(error.to_string().contains(reason), "{pattern}: {error}");
        }
        assert_eq!(
            Route::parse("https://www.outpost.test/api/*")
                .unwrap()
                .to_string(),
            "www.outpost.test/api/*"
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_pattern_host_or_path_routes_without_a_panic(
                pattern in "\\PC{0,40}",
                host in "\\PC{0,30}",
                path in "\\PC{0,30}",
            ) {
                let mut entries = Vec::new();
                if let Ok(route) = Route::parse(&pattern) {
                    // What a route prints parses back to the same route.
                    prop_assert_eq!(Route::parse(&route.to_string()).unwrap(), route.clone());
                    entries.push((route, ()));
                }
                entries.push((Route::parse("*/*").unwrap(), ()));
                let table = RouteTable::new(entries);
                // Request paths start with a slash; `*/*` covers every one of them.
                let slashed = format!("/{path}");
                prop_assert!(table.find(&host, &slashed).is_some());
                let _ = table.find(&host, &path);
            }
        }
    }
}
