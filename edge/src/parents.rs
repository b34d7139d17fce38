//! The parents of an edge, ordered per object by rendezvous hashing, with failover.

use std::sync::Arc;

use http::{Request, Response, Uri};
use outpost_cache::{CacheKey, HttpClient, Upstream, UpstreamError};
use outpost_server::Body;
use outpost_server::body;
use outpost_server::health::Hysteresis;

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
}

/// Every parent of an edge, and the origin as a last resort.
#[derive(Clone)]
pub struct ParentSet {
    pub(crate) parents: Arc<[ParentState]>,
    origin: Option<Uri>,
    client: HttpClient,
    node: Arc<str>,
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
            })
            .collect();
        Self {
            parents,
            origin,
            client,
            node: node.into(),
        }
    }

    /// The parents in the order `key` tries them: highest rendezvous score first.
    pub fn order(&self, key: &CacheKey) -> Vec<&str> {
        self.ranked(key)
            .into_iter()
            .map(|p| p.target.name.as_str())
            .collect()
    }

    fn ranked(&self, key: &CacheKey) -> Vec<&ParentState> {
        let mut ranked: Vec<(u64, &ParentState)> = self
            .parents
            .iter()
            .map(|parent| {
                let mut input =
                    Vec::with_capacity(parent.target.name.len() + key.as_str().len() + 1);
                input.extend_from_slice(parent.target.name.as_bytes());
                input.push(0);
                input.extend_from_slice(key.as_str().as_bytes());
                (xxhash_rust::xxh3::xxh3_64(&input), parent)
            })
            .collect();
        ranked.sort_by_key(|b| std::cmp::Reverse(b.0));
        ranked.into_iter().map(|(_, p)| p).collect()
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
        let mut candidates: Vec<(&str, &Uri)> = self
            .ranked(key)
            .into_iter()
            .filter(|p| p.health.is_healthy())
            .map(|p| (p.target.name.as_str(), &p.target.url))
            .collect();
        if let Some(origin) = &self.origin
            && candidates.is_empty()
        {
            if !self.parents.is_empty() {
                tracing::warn!(node = %self.node, key = key.as_str(), "no healthy parent: going to the origin");
            }
            candidates.push(("origin", origin));
        }
        // Only a request without a body can be sent again to the next candidate.
        let replayable = http_body::Body::size_hint(request.body()).exact() == Some(0)
            || matches!(*request.method(), http::Method::GET | http::Method::HEAD);
        let (parts, body) = request.into_parts();
        let mut body = Some(body);
        let mut last_error = UpstreamError::Unavailable;
        for (name, url) in candidates {
            let body = match body.take() {
                Some(body) => body,
                None if replayable => body::empty(),
                None => break,
            };
            let attempt = Request::from_parts(clone_parts(&parts), body);
            match self.client.send_to(url, attempt).await {
                Err(error) if error.is_connect() => {
                    tracing::warn!(node = %self.node, parent = name, %error, "parent refused: trying the next");
                    last_error = error;
                }
                result => return result,
            }
        }
        Err(last_error)
    }
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
