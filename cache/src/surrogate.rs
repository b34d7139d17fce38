//! `Surrogate-Control` as the W3C Edge Architecture note defines it: controls a surrogate (an
//! edge or parent) obeys in place of `Cache-Control`, each optionally targeted at one device
//! with `;token`. Outpost's device token is [`DEVICE`]: `max-age=60;outpost` applies to
//! Outpost alone, `max-age=60;other` to some other surrogate, and a control targeted at Outpost
//! wins over the same control untargeted.
//!
//! Plain logic with no I/O.

use std::time::Duration;

use http::HeaderMap;

use crate::directives::{parse_delta_seconds, split_directives};

/// The device token Outpost answers to in `Surrogate-Control` and announces in
/// `Surrogate-Capability`.
pub const DEVICE: &str = "outpost";

/// The capability every edge announces upstream, so an origin knows it may send ESI.
pub const CAPABILITY: &str = "outpost=\"ESI/1.0\"";

/// The controls of one response that apply to this device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SurrogateControl {
    /// `max-age=N`: the freshness lifetime for surrogates.
    pub max_age: Option<Duration>,
    /// The `+M` of `max-age=N+M`: how long after that a stale copy may still be served when
    /// the upstream fails.
    pub stale_if_error: Option<Duration>,
    /// `no-store`: no surrogate stores it.
    pub no_store: bool,
    /// `content="ESI/1.0 ..."`: the processing the response asks for.
    pub content: Vec<String>,
}

impl SurrogateControl {
    /// The controls in `headers` that apply to this device.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut general = Self::default();
        let mut targeted = Self::default();
        let mut targeted_set = Seen::default();
        let mut general_set = Seen::default();
        for line in headers.get_all("surrogate-control") {
            let Ok(line) = line.to_str() else { continue };
            for (name, value) in split_directives(line) {
                let (value, target) = split_target(value);
                let (name, name_target) = split_target(Some(name));
                let name = name.unwrap_or_default();
                let target = target.or(name_target);
                let (into, seen) = match target {
                    None => (&mut general, &mut general_set),
                    Some(token) if token.eq_ignore_ascii_case(DEVICE) => {
                        (&mut targeted, &mut targeted_set)
                    }
                    Some(_) => continue,
                };
                into.apply(name, value, seen);
            }
        }
        Self {
            max_age: if targeted_set.max_age {
                targeted.max_age
            } else {
                general.max_age
            },
            stale_if_error: if targeted_set.max_age {
                targeted.stale_if_error
            } else {
                general.stale_if_error
            },
            no_store: if targeted_set.no_store {
                targeted.no_store
            } else {
                general.no_store
            },
            content: if targeted_set.content {
                targeted.content
            } else {
                general.content
            },
        }
    }

    fn apply(&mut self, name: &str, value: Option<&str>, seen: &mut Seen) {
        match name.to_ascii_lowercase().as_str() {
            "max-age" if !seen.max_age => {
                seen.max_age = true;
                let value = value.unwrap_or("").trim_matches('"');
                let (fresh, stale) = match value.split_once('+') {
                    Some((fresh, stale)) => (fresh, Some(stale)),
                    None => (value, None),
                };
                // A lifetime that does not parse makes the response stale at once.
                self.max_age = Some(seconds(fresh).unwrap_or(Duration::ZERO));
                self.stale_if_error = stale.and_then(seconds);
            }
            "no-store" => {
                seen.no_store = true;
                self.no_store = true;
            }
            "content" if !seen.content => {
                seen.content = true;
                self.content = value
                    .unwrap_or("")
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect();
            }
            _ => {}
        }
    }

    /// Whether the response asks for ESI processing.
    pub fn wants_esi(&self) -> bool {
        self.content
            .iter()
            .any(|c| c.eq_ignore_ascii_case("ESI/1.0") || c.eq_ignore_ascii_case("ESI/1.0+"))
    }

    /// Whether these controls say anything about storing (and so replace `Cache-Control`
    /// for a surrogate).
    pub fn governs_storage(&self) -> bool {
        self.max_age.is_some() || self.no_store
    }
}

#[derive(Default)]
struct Seen {
    max_age: bool,
    no_store: bool,
    content: bool,
}

/// `value;token` into the value and the token.
fn split_target(value: Option<&str>) -> (Option<&str>, Option<&str>) {
    let Some(value) = value else {
        return (None, None);
    };
    // The token follows the last `;` outside quotes.
    let mut quoted = false;
    let mut split = None;
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b';' if !quoted => split = Some(i),
            _ => {}
        }
    }
    match split {
        Some(i) => (Some(value[..i].trim()), Some(value[i + 1..].trim())),
        None => (Some(value), None),
    }
}

/// delta-seconds, read as Cache-Control's are.
fn seconds(value: &str) -> Option<Duration> {
    parse_delta_seconds(Some(value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn of(value: &'static str) -> SurrogateControl {
        let mut headers = HeaderMap::new();
        headers.insert("surrogate-control", HeaderValue::from_static(value));
        SurrogateControl::of(&headers)
    }

    #[test]
    fn content_and_lifetime() {
        let sc = of(r#"max-age=60+30, content="ESI/1.0""#);
        assert_eq!(sc.max_age, Some(Duration::from_secs(60)));
        assert_eq!(sc.stale_if_error, Some(Duration::from_secs(30)));
        assert!(sc.wants_esi());
        assert!(sc.governs_storage());
        let sc = of(r#"content="ESI/1.0""#);
        assert!(sc.wants_esi() && !sc.governs_storage());
    }

    #[test]
    fn targeted_controls_win_and_others_are_ignored() {
        let sc = of(r#"max-age=10, max-age=300;outpost, content="ESI/1.0";akamai, no-store;abc"#);
        assert_eq!(sc.max_age, Some(Duration::from_secs(300)));
        assert!(!sc.wants_esi(), "content was for another device");
        assert!(!sc.no_store, "no-store was for another device");
        let sc = of(r#"content="ESI/1.0";outpost"#);
        assert!(sc.wants_esi());
        let sc = of("no-store;OUTPOST");
        assert!(sc.no_store);
    }

    #[test]
    fn bad_values_are_conservative() {
        assert_eq!(of("max-age=abc").max_age, Some(Duration::ZERO));
        assert_eq!(of("max-age=5+x").stale_if_error, None);
        assert_eq!(of(";;;,=,\"").max_age, None);
    }
}
