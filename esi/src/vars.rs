//! ESI variables (ESI 1.0 section 5): what a page may read of the client's request, and
//! `$(NAME{key}|default)` references in text and attributes.
//!
//! | variable | without a key | with `{key}` |
//! |---|---|---|
//! | `HTTP_COOKIE` | the whole Cookie header | the cookie's value |
//! | `QUERY_STRING` | the whole query | the parameter's value (as written) |
//! | `HTTP_HOST`, `HTTP_REFERER` | the header | — |
//! | `HTTP_ACCEPT_LANGUAGE` | the header | `true` when the language is in the list |
//! | `HTTP_USER_AGENT` | the header | `browser` (`MSIE`, `MOZILLA`, `OTHER`), `version`, `os` (`WIN`, `MAC`, `UNIX`, `OTHER`) |
//!
//! An unknown variable, or a key that is not there, is empty, and then the default applies.
//! Plain logic with no I/O.

use http::HeaderMap;
use http::header;

/// The request data a page's ESI reads, taken once per page.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    cookie: Option<String>,
    query: Option<String>,
    host: Option<String>,
    referer: Option<String>,
    accept_language: Option<String>,
    user_agent: Option<String>,
}

impl Variables {
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Self {
        let text = |name: header::HeaderName| {
            let values: Vec<&str> = headers
                .get_all(&name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if values.is_empty() {
                None
            } else {
                Some(values.join(if name == header::COOKIE { "; " } else { ", " }))
            }
        };
        Self {
            cookie: text(header::COOKIE),
            query: query.map(str::to_owned),
            host: text(header::HOST),
            referer: text(header::REFERER),
            accept_language: text(header::ACCEPT_LANGUAGE),
            user_agent: text(header::USER_AGENT),
        }
    }

    /// The value of `name` (with `key`), or `None` when it is empty or missing.
    pub fn get(&self, name: &str, key: Option<&str>) -> Option<String> {
        let value = match (name, key) {
            ("HTTP_COOKIE", Some(key)) => self
                .cookie
                .as_deref()?
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.trim_matches('"').to_owned()),
            ("QUERY_STRING", Some(key)) => self
                .query
                .as_deref()?
                .split('&')
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.to_owned()),
            ("HTTP_ACCEPT_LANGUAGE", Some(key)) => Some(self.accepts_language(key).to_string()),
            ("HTTP_USER_AGENT", Some(key)) => self.user_agent_part(key),
            ("HTTP_COOKIE", None) => self.cookie.clone(),
            ("QUERY_STRING", None) => self.query.clone(),
            ("HTTP_HOST", None) => self.host.clone(),
            ("HTTP_REFERER", None) => self.referer.clone(),
            ("HTTP_ACCEPT_LANGUAGE", None) => self.accept_language.clone(),
            ("HTTP_USER_AGENT", None) => self.user_agent.clone(),
            _ => None,
        };
        value.filter(|v| !v.is_empty())
    }

    fn accepts_language(&self, language: &str) -> bool {
        let Some(list) = &self.accept_language else {
            return false;
        };
        list.split(',').any(|item| {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            !refused
                && (tag.eq_ignore_ascii_case(language)
                    || tag.len() > language.len()
                        && tag.as_bytes()[language.len()] == b'-'
                        && tag[..language.len()].eq_ignore_ascii_case(language))
        })
    }

    fn user_agent_part(&self, key: &str) -> Option<String> {
        let agent = self.user_agent.as_deref().unwrap_or("");
        match key {
            "browser" => Some(
                if agent.contains("MSIE") || agent.contains("Trident/") {
                    "MSIE"
                } else if agent.starts_with("Mozilla") {
                    "MOZILLA"
                } else {
                    "OTHER"
                }
                .to_owned(),
            ),
            "os" => Some(
                if agent.contains("Windows") {
                    "WIN"
                } else if agent.contains("Mac OS") || agent.contains("Macintosh") {
                    "MAC"
                } else if agent.contains("Linux") || agent.contains("X11") || agent.contains("BSD")
                {
                    "UNIX"
                } else {
                    "OTHER"
                }
                .to_owned(),
            ),
            "version" => {
                let version = if let Some(at) = agent.find("MSIE ") {
                    &agent[at + 5..]
                } else if let Some(at) = agent.find("rv:").filter(|_| agent.contains("Trident/")) {
                    &agent[at + 3..]
                } else {
                    agent.split_once('/').map_or("", |(_, v)| v)
                };
                let end = version
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(version.len());
                Some(version[..end].to_owned())
            }
            _ => None,
        }
    }

    /// `text` with every `$(...)` reference replaced by its value (or its default).
    /// References that do not parse are left as they are.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("$(") {
            out.push_str(&rest[..at]);
            match Reference::parse(&rest[at..]) {
                Some((reference, length)) => {
                    out.push_str(&reference.value(self));
                    rest = &rest[at + length..];
                }
                None => {
                    out.push_str("$(");
                    rest = &rest[at + 2..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// `$(NAME{key}|default)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub key: Option<String>,
    pub default: Option<String>,
}

impl Reference {
    /// Parses a reference at the start of `text`; gives it and its length.
    pub fn parse(text: &str) -> Option<(Self, usize)> {
        let body = text.strip_prefix("$(")?;
        let close = body.find(')')?;
        let inner = &body[..close];
        let (head, default) = match inner.split_once('|') {
            Some((head, default)) => {
                let default = default.trim();
                let default = default
                    .strip_prefix('\'')
                    .and_then(|d| d.strip_suffix('\''))
                    .unwrap_or(default);
                (head, Some(default.to_owned()))
            }
            None => (inner, None),
        };
        let (name, key) = match head.split_once('{') {
            Some((name, key)) => (name, Some(key.strip_suffix('}')?.to_owned())),
            None => (head, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return None;
        }
        let reference = Self {
            name: name.to_owned(),
            key,
            default,
        };
        Some((reference, close + 3))
    }

    pub fn value(&self, variables: &Variables) -> String {
        variables
            .get(&self.name, self.key.as_deref())
            .or_else(|| self.default.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn vars() -> Variables {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("name=Ada; group=admin"),
        );
        headers.insert(header::HOST, HeaderValue::from_static("www.outpost.test"));
        headers.insert(header::REFERER, HeaderValue::from_static("http://r.test/"));
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("de-CH, en;q=0.5, fr;q=0"),
        );
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
            ),
        );
        Variables::from_request(&headers, Some("q=rust&page=2&flag"))
    }

    #[test]
    fn every_variable() {
        let v = vars();
        assert_eq!(v.substitute("$(HTTP_COOKIE{name})"), "Ada");
        assert_eq!(v.substitute("$(HTTP_COOKIE)"), "name=Ada; group=admin");
        assert_eq!(v.substitute("$(QUERY_STRING{page})"), "2");
        assert_eq!(v.substitute("$(QUERY_STRING)"), "q=rust&page=2&flag");
        assert_eq!(v.substitute("$(HTTP_HOST)"), "www.outpost.test");
        assert_eq!(v.substitute("$(HTTP_REFERER)"), "http://r.test/");
        assert_eq!(v.substitute("$(HTTP_ACCEPT_LANGUAGE{de})"), "true");
        assert_eq!(v.substitute("$(HTTP_ACCEPT_LANGUAGE{en})"), "true");
        assert_eq!(v.substitute("$(HTTP_ACCEPT_LANGUAGE{fr})"), "false");
        assert_eq!(v.substitute("$(HTTP_ACCEPT_LANGUAGE{d})"), "false");
        assert_eq!(v.substitute("$(HTTP_USER_AGENT{browser})"), "MOZILLA");
        assert_eq!(v.substitute("$(HTTP_USER_AGENT{os})"), "UNIX");
        assert_eq!(v.substitute("$(HTTP_USER_AGENT{version})"), "5.0");
    }

    #[test]
    fn defaults_and_unparsed_references() {
        let v = vars();
        assert_eq!(
            v.substitute("hi $(HTTP_COOKIE{none}|'guest')!"),
            "hi guest!"
        );
        assert_eq!(v.substitute("$(HTTP_COOKIE{none}|x)"), "x");
        assert_eq!(
            v.substitute("$(NOPE)|$(lower) $(HTTP_HOST"),
            "|$(lower) $(HTTP_HOST"
        );
        assert_eq!(Variables::default().substitute("$(HTTP_HOST|h)"), "h");
    }

    #[test]
    fn internet_explorer() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"),
        );
        let v = Variables::from_request(&headers, None);
        assert_eq!(v.substitute("$(HTTP_USER_AGENT{browser})"), "MSIE");
        assert_eq!(v.substitute("$(HTTP_USER_AGENT{version})"), "6.0");
        assert_eq!(v.substitute("$(HTTP_USER_AGENT{os})"), "WIN");
    }
}
