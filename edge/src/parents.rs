//! The parents of an edge, ordered per object by rendezvous hashing, with failover, and
//! with paths the overlay ([`crate::paths`]) judges degraded moved to the back.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, Uri};
use outpost_cache::{CacheKey, HttpClient, PurgeLease, Upstream, UpstreamError};
use outpost_server::body;
use outpost_server::health::Hysteresis;
use outpost_server::{Body, PURGE_SEQ_HEADER};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::paths::{self, OverlaySettings, PathStats};

/// One parent an edge may pull from.
#[derive(Debug, Clone)]
pub struct ParentTarget {
    pub name: String,
    /// `http://host:port` of the parent's data listener.
    pub url: Uri,
}

/// A parent and its health as the active checks see it.
#[derive(Debug)]
pub(crate) struct ParentState {
    pub target: ParentTarget,
    pub health: Hysteresis,
    /// How good the path to it is, as the overlay measures it.
    pub path: PathStats,
}

/// Every parent of an edge, and the origin as a last resort (or, with the overlay's
/// `direct_origin`, first when its path is much better than every parent's).
#[derive(Clone)]
pub struct ParentSet {
    pub(crate) parents: Arc<[ParentState]>,
    origin: Option<Uri>,
    /// The path straight to the origin, measured when the overlay may take it.
    pub(crate) origin_path: Arc<ParentState>,
    client: HttpClient,
    node: Arc<str>,
    overlay: Arc<OverlaySettings>,
    /// The edge's purge lease: its place in the purge sequence goes to its parents with every
    /// request, and theirs, from every answer and health probe, tells it when it missed one.
    pub(crate) purges: Arc<PurgeLease>,
    /// Requests sent to each parent (and the origin), by its name.
    sent: Family<UpstreamLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

impl ParentSet {
    /// `origin`: where to go when no parent is healthy (or the only upstream, with no parents).
    pub fn new(
        node: &str,
        parents: Vec<ParentTarget>,
        origin: Option<Uri>,
        client: HttpClient,
    ) -> Self {
        let parents = parents
            .into_iter()
            .map(|target| ParentState {
                target,
                health: Hysteresis::new(),
                path: PathStats::default(),
            })
            .collect();
        let origin_path = Arc::new(ParentState {
            target: ParentTarget {
                name: "origin".into(),
                url: origin.clone().unwrap_or_default(),
            },
            health: Hysteresis::new(),
            path: PathStats::default(),
        });
        Self {
            parents,
            origin,
            origin_path,
            client,
            node: node.into(),
            overlay: Arc::new(OverlaySettings::default()),
            purges: Arc::default(),
            sent: Family::default(),
        }
    }

    /// Registers `outpost_upstream_requests_total{upstream}` on the edge's registry.
    pub fn register_metrics(&self, registry: &mut outpost_server::admin::Registry) {
        registry.register(
            "outpost_upstream_requests",
            "Requests sent upstream, by the parent (or the origin) they went to",
            self.sent.clone(),
        );
    }

    /// The purge lease of the edge in front of this set (shared with its cache).
    pub fn purge_lease(&self) -> Arc<PurgeLease> {
        self.purges.clone()
    }

    /// Routes around bad paths by `overlay` (the default settings otherwise).
    pub fn with_overlay(mut self, overlay: OverlaySettings) -> Self {
        self.overlay = Arc::new(overlay);
        self
    }

    /// Whether the path straight to the origin is measured (and probed by the health loop).
    pub(crate) fn measures_origin(&self) -> bool {
        self.overlay.direct_origin
            && self
                .origin
                .as_ref()
                .is_some_and(|o| o.scheme_str() == Some("http"))
    }

    /// Parent `index`, or the origin's path at `parents.len()`.
    pub(crate) fn path_at(&self, index: usize) -> Option<&ParentState> {
        self.parents.get(index).or_else(|| {
            (index == self.parents.len() && self.measures_origin()).then_some(&*self.origin_path)
        })
    }

    /// Records one exchange with path `index` (a parent, or the origin at `parents.len()`;
    /// `None`: it failed before any answer; `Some(None)`: answered, with no round trip to
    /// learn from) and re-judges the paths.
    pub(crate) fn record(&self, index: usize, rtt: Option<Option<std::time::Duration>>) {
        let Some(parent) = self.path_at(index) else {
            return;
        };
        match rtt {
            None => parent.path.record_failure(),
            Some(None) => parent.path.record_answer(),
            Some(Some(rtt)) => parent.path.record_success(rtt),
        }
        let origin = self.measures_origin().then_some(&*self.origin_path);
        let judged = self
            .parents
            .iter()
            .chain(origin)
            .map(|p| (&p.path, p.health.is_healthy()));
        for (changed, degraded) in paths::judge(judged, &self.overlay) {
            let Some(parent) = self.path_at(changed) else {
                continue;
            };
            tracing::warn!(
                node = %self.node,
                parent = %parent.target.name,
                degraded,
                rtt_ms = parent.path.rtt().map_or(0.0, |d| d.as_secs_f64() * 1e3),
                failure_rate = parent.path.failure_rate(),
                "{}",
                if degraded {
                    "path degraded: its objects go to the next parent"
                } else {
                    "path recovered: it gets its objects back"
                }
            );
        }
    }

    /// The named parent's path (or the origin's, as `origin`) as measured: (smoothed RTT,
    /// failure rate, degraded).
    pub fn path(&self, name: &str) -> Option<(Option<std::time::Duration>, f64, bool)> {
        let parent = self
            .parents
            .iter()
            .chain(self.measures_origin().then_some(&*self.origin_path))
            .find(|p| p.target.name == name)?;
        Some((
            parent.path.rtt(),
            parent.path.failure_rate(),
            parent.path.is_degraded(),
        ))
    }

    /// The parents in the order `key` tries them: highest rendezvous score first.
    pub fn order(&self, key: &CacheKey) -> Vec<&str> {
        self.ranked(key)
            .into_iter()
            .map(|(_, p)| p.target.name.as_str())
            .collect()
    }

    /// The parents in the order `key` tries them, as (index, parent): by rendezvous score,
    /// with degraded paths after the others (each group keeping the hash's order).
    fn ranked(&self, key: &CacheKey) -> Vec<(usize, &ParentState)> {
        let mut ranked: Vec<(bool, u64, usize, &ParentState)> = self
            .parents
            .iter()
            .enumerate()
            .map(|(index, parent)| {
                let mut input =
                    Vec::with_capacity(parent.target.name.len() + key.as_str().len() + 1);
                input.extend_from_slice(parent.target.name.as_bytes());
                input.push(0);
                input.extend_from_slice(key.as_str().as_bytes());
                let score = xxhash_rust::xxh3::xxh3_64(&input);
                (parent.path.is_degraded(), score, index, parent)
            })
            .collect();
        ranked.sort_by_key(|&(degraded, score, _, _)| (degraded, std::cmp::Reverse(score)));
        ranked.into_iter().map(|(_, _, i, p)| (i, p)).collect()
    }

    /// Whether the named parent is currently considered healthy.
    pub fn is_healthy(&self, name: &str) -> Option<bool> {
        self.parents
            .iter()
            .find(|p| p.target.name == name)
            .map(|p| p.health.is_healthy())
    }
}

impl Upstream for ParentSet {
    async fn send(
        &self,
        request: Request<Body>,
        key: &CacheKey,
    ) -> Result<Response<Body>, UpstreamError> {
        let mut candidates: Vec<(Option<usize>, &str, &Uri)> = self
            .ranked(key)
            .into_iter()
            .filter(|(_, p)| p.health.is_healthy())
            .map(|(i, p)| (Some(i), p.target.name.as_str(), &p.target.url))
            .collect();
        let origin_index = self.measures_origin().then_some(self.parents.len());
        if let Some(origin) = &self.origin {
            if candidates.is_empty() {
                if !self.parents.is_empty() {
                    tracing::warn!(node = %self.node, key = key.as_str(), "no healthy parent: going to the origin");
                }
                candidates.push((origin_index, "origin", origin));
            } else if origin_index.is_some()
                && self.origin_path.health.is_healthy()
                && self.origin_path.path.rtt().is_some()
                && !self.origin_path.path.is_degraded()
                && candidates
                    .iter()
                    .all(|(i, _, _)| i.is_some_and(|i| self.parents[i].path.is_degraded()))
            {
                // The overlay: every parent's path is far worse than the origin's.
                candidates.insert(0, (origin_index, "origin", origin));
            }
        }
        // Only a request without a body can be sent again to the next candidate.
        let replayable = http_body::Body::size_hint(request.body()).exact() == Some(0)
            || matches!(*request.method(), http::Method::GET | http::Method::HEAD);
        let (parts, body) = request.into_parts();
        let mut body = Some(body);
        let mut last_error = UpstreamError::Unavailable;
        for (index, name, url) in candidates {
            let body = match body.take() {
                Some(body) => body,
                None if replayable => body::empty(),
                None => break,
            };
            let mut attempt = Request::from_parts(clone_parts(&parts), body);
            let to_parent = index.is_some_and(|i| i < self.parents.len());
            if let Some(applied) = self.purges.announced().filter(|_| to_parent) {
                attempt
                    .headers_mut()
                    .insert(PURGE_SEQ_HEADER, http::HeaderValue::from(applied));
            }
            self.sent
                .get_or_create(&UpstreamLabel {
                    upstream: name.to_owned(),
                })
                .inc();
            let started = Instant::now();
            let mut result = self.client.send_to(url, attempt).await;
            if let Ok(response) = &mut result {
                // A parent's place in the purge sequence (only a parent's counts); never stored
                // or sent on.
                let seq = response.headers_mut().remove(PURGE_SEQ_HEADER);
                let seq = seq.filter(|_| to_parent);
                if let Some(seq) = seq.and_then(|v| outpost_server::purge_seq(v.as_bytes())) {
                    self.purges.heard_of(seq);
                }
            }
            let Some(index) = index else {
                return result;
            };
            match result {
                // Nothing was sent, or (for a request that can be sent again) nothing came
                // back before the connection broke: the next parent gets it.
                Err(error @ UpstreamError::Connect { .. })
                | Err(error @ UpstreamError::Protocol { .. }) => {
                    self.record(index, None);
                    if !error.is_connect() && !replayable {
                        return Err(error);
                    }
                    tracing::warn!(node = %self.node, parent = name, %error, "parent failed: trying the next");
                    last_error = error;
                }
                Err(error) => {
                    self.record(index, None);
                    return Err(error);
                }
                Ok(response) => {
                    // The origin answers itself: its time is its path's round trip.
                    let timed = index == self.parents.len() || answered_from_cache(&response, name);
                    let rtt = timed.then(|| started.elapsed());
                    self.record(index, Some(rtt));
                    return Ok(response);
                }
            }
        }
        Err(last_error)
    }
}

/// Whether parent `name` answered `response` from its own cache (the last entry of its
/// Cache-Status is its own hit), so the time it took is the path's round trip.
fn answered_from_cache(response: &Response<Body>, name: &str) -> bool {
    response
        .headers()
        .get_all("cache-status")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .rfind(|entry| entry.trim_start().starts_with(name))
        .is_some_and(|entry| entry.split(';').any(|p| p.trim() == "hit"))
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_cache::UpstreamTimeouts;
    use std::time::Duration;

    fn set(names: &[&str]) -> ParentSet {
        let client = HttpClient::new(UpstreamTimeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
        });
        let parents = names
            .iter()
            .map(|n| ParentTarget {
                name: (*n).into(),
                url: "http://127.0.0.1:1".parse().unwrap(),
            })
            .collect();
        ParentSet::new("edge", parents, None, client)
    }

    #[test]
    fn rendezvous_order_is_stable_and_spreads_keys() {
        let two = set(&["parent-eu", "parent-us"]);
        let mut firsts = std::collections::HashMap::new();
        for i in 0..1000 {
            let key = CacheKey::new("www.outpost.test", &format!("/obj/{i}"));
            let order = two.order(&key);
            assert_eq!(order, two.order(&key), "order must be deterministic");
            *firsts.entry(order[0].to_owned()).or_insert(0) += 1;
        }
        // Roughly half each.
        assert!(firsts.values().all(|&n| n > 400), "{firsts:?}");
        // Adding a parent moves only the keys it wins (about a third), not the rest.
        let three = set(&["parent-eu", "parent-us", "parent-ap"]);
        let moved = (0..1000)
            .filter(|i| {
                let key = CacheKey::new("www.outpost.test", &format!("/obj/{i}"));
                let before = two.order(&key)[0].to_owned();
                let after = three.order(&key)[0].to_owned();
                after != before && after != "parent-ap"
            })
            .count();
        assert_eq!(moved, 0);
    }
}
