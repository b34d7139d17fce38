//! Prefetch driven by what the edge served: when it serves an HLS media playlist it learns
//! which segment follows which, whatever their names (hashed names and byte-range segments
//! included); when it serves a static DASH MPD it learns each representation's numbered
//! `SegmentTemplate`. When a client then takes segment N, the edge warms the next `next`
//! segments from its parent in the background, through its own cache, so the player's next
//! request is a hit. It also warms an LL-HLS playlist's preload hint as soon as it serves the
//! playlist (the hinted part is held upstream until it exists, and the players that ask for
//! it join that one fetch), and the object a player names in CMCD `nor`.
//!
//! What it does not do: live DASH (a live segment's successor may not be published yet, see
//! `dash`), and only `next = 1` for DASH templates.

mod dash;
mod hls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use outpost_server::{Body, Handler, Peer};

use crate::{NextObject, Signing};
use serde::{Deserialize, Serialize};

/// The `[prefetch]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefetchConfig {
    /// Segments warmed after the one a client takes; 0 turns prefetch off.
    pub next: usize,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        Self { next: 1 }
    }
}

/// The largest playlist read for its segment list; bigger ones pass untouched.
const MAX_PLAYLIST: usize = 1 << 20;
/// How long what a playlist said about a segment is remembered.
const REMEMBER: Duration = Duration::from_secs(120);

/// What each of the prefetcher's maps may hold, in bytes as its weigher counts them: the text
/// of its keys and values and [`ENTRY_OVERHEAD`] per entry. Weighed, not counted, because the
/// URLs in them come from playlists and from clients (`nor`), and a URL can be 8 KiB long.
const FOLLOWING_BYTES: u64 = 32 << 20;
const TEMPLATES_BYTES: u64 = 4 << 20;
const WARMED_BYTES: u64 = 8 << 20;
/// moka's bookkeeping per entry and the `String`s' own headers: about 270 bytes measured for
/// a map of short keys and no values (`outpost-cache`'s earlier hit-for-pass), rounded up.
const ENTRY_OVERHEAD: usize = 320;

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
}

fn following_map() -> moka::sync::Cache<String, Arc<Vec<String>>> {
    moka::sync::Cache::builder()
        .max_capacity(FOLLOWING_BYTES)
        .weigher(|url: &String, after: &Arc<Vec<String>>| {
            weight(url.len() + after.iter().map(|u| u.len() + 24).sum::<usize>())
        })
        .time_to_live(REMEMBER)
        .build()
}

fn templates_map() -> moka::sync::Cache<String, Arc<Vec<dash::NumberedSegments>>> {
    moka::sync::Cache::builder()
        .max_capacity(TEMPLATES_BYTES)
        .weigher(
            |directory: &String, templates: &Arc<Vec<dash::NumberedSegments>>| {
                let each = std::mem::size_of::<dash::NumberedSegments>();
                let text: usize = templates
                    .iter()
                    .map(|t| each + t.prefix.len() + t.suffix.len())
                    .sum();
                weight(directory.len() + text)
            },
        )
        .time_to_live(REMEMBER)
        .build()
}

fn warmed_map() -> moka::sync::Cache<String, ()> {
    moka::sync::Cache::builder()
        .max_capacity(WARMED_BYTES)
        .weigher(|url: &String, ()| weight(url.len()))
        // Least recently used out: the default policy refuses new URLs once it is full, and a
        // refused URL would be warmed again on every request.
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .time_to_live(REMEMBER)
        .build()
}

/// The edge's prefetcher, in front of its cache.
pub struct Prefetch<H> {
    inner: Arc<H>,
    next: usize,
    /// Segment URL (host and path) to the URLs that follow it.
    following: moka::sync::Cache<String, Arc<Vec<String>>>,
    /// MPD directory (host and path) to the numbered segments its MPD names.
    templates: moka::sync::Cache<String, Arc<Vec<dash::NumberedSegments>>>,
    /// Segments warmed lately, so two clients do not warm the same one twice.
    warmed: moka::sync::Cache<String, ()>,
    /// A playlist has taught it something: only then is a segment looked up.
    learned: AtomicBool,
    /// Paths that need a signed URL: a client's CMCD `nor` never makes the edge fetch one.
    signing: Arc<Signing>,
}

impl<H: Handler> Prefetch<H> {
    /// The prefetcher over `inner`; `signing` says which paths `nor` may not name.
    pub fn new(inner: Arc<H>, config: &PrefetchConfig, signing: Arc<Signing>) -> Self {
        Self {
            inner,
            next: config.next,
            following: following_map(),
            templates: templates_map(),
            warmed: warmed_map(),
            learned: AtomicBool::new(false),
            signing,
        }
    }

    /// Learns the segment order of a media playlist served for `host` + `path`; its preload
    /// hint, if any, is what to warm now.
    fn learn_playlist(&self, host: &str, path: &str, playlist: &str) -> Option<String> {
        let directory = directory(path);
        let order = hls::media_order(playlist);
        let segments: Vec<String> = order
            .segments
            .iter()
            .filter_map(|uri| resolve(host, directory, uri))
            .collect();
        for (i, segment) in segments.iter().enumerate() {
            let after: Vec<String> = segments
                .iter()
                .skip(i + 1)
                .take(self.next)
                .cloned()
                .collect();
            if !after.is_empty() {
                self.following.insert(segment.clone(), Arc::new(after));
                self.learned.store(true, Ordering::Relaxed);
            }
        }
        order
            .preload_hint
            .and_then(|uri| resolve(host, directory, uri))
    }

    /// Learns the numbered segments of a static MPD served for `host` + `path`.
    fn learn_mpd(&self, host: &str, path: &str, mpd: &str) {
        let templates = dash::numbered_segments(mpd);
        if !templates.is_empty() {
            self.templates
                .insert(format!("{host}{}", directory(path)), Arc::new(templates));
            self.learned.store(true, Ordering::Relaxed);
        }
    }

    /// What follows the segment at `url` (`host/path`): by a playlist's order, else by an
    /// MPD's template in one of the directories above it.
    fn after(&self, url: &str) -> Vec<String> {
        if let Some(after) = self.following.get(url) {
            return after.to_vec();
        }
        let mut end = url.len();
        for _ in 0..4 {
            let Some(slash) = url[..end].rfind('/') else {
                break;
            };
            let (directory, name) = url.split_at(slash + 1);
            if let Some(templates) = self.templates.get(directory) {
                return templates
                    .iter()
                    .find_map(|t| t.after(name))
                    .map(|next| vec![format!("{directory}{next}")])
                    .unwrap_or_default();
            }
            end = slash;
        }
        Vec::new()
    }

    /// Warms `urls` (`host/path`) in the background, each once in a while, asking with the
    /// client's `Accept-Encoding` so the warmed variant is the one its next request selects.
    fn warm(&self, urls: &[String], accept_encoding: Option<&HeaderValue>, peer: Peer) {
        for next in urls {
            if self.warmed.contains_key(next) {
                continue;
            }
            self.warmed.insert(next.clone(), ());
            let Some((host, target)) = next.split_once('/').map(|(h, t)| (h, format!("/{t}")))
            else {
                continue;
            };
            let Ok(mut request) = Request::get(target)
                .header(header::HOST, host)
                .body(outpost_server::body::empty())
            else {
                continue;
            };
            if let Some(value) = accept_encoding {
                request
                    .headers_mut()
                    .insert(header::ACCEPT_ENCODING, value.clone());
            }
            let inner = self.inner.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let response = inner.handle(request, peer).await;
                let status = response.status();
                // Reading it to the end is what stores it.
                let read = response.into_body().collect().await.is_ok();
                tracing::debug!(segment = %next, %status, read, "prefetched");
            });
        }
    }
}

/// `uri` from a playlist at `host` + `directory`, as `host/path`; `None` for other hosts or
/// schemes (the edge warms only what it would serve itself).
fn resolve(host: &str, directory: &str, uri: &str) -> Option<String> {
    use outpost_server::normal::{Reference, without_port};
    let target = match outpost_server::normal::reference(directory, uri).ok()? {
        Reference::SameHost(target) => target,
        Reference::Absolute {
            host: other,
            target,
        } => {
            if !without_port(&other).eq_ignore_ascii_case(without_port(host)) {
                return None;
            }
            target
        }
    };
    Some(format!("{host}{target}"))
}

/// The directory part of a path: up to and including its last `/`.
fn directory(path: &str) -> &str {
    &path[..path.rfind('/').map_or(0, |i| i + 1)]
}

/// What kind of manifest a response is, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manifest {
    Hls,
    Dash,
}

fn manifest(response: &Response<Body>) -> Option<Manifest> {
    let essence = outpost_server::media_type::essence(response.headers())?;
    if [
        "application/vnd.apple.mpegurl",
        "application/x-mpegurl",
        "audio/mpegurl",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
    {
        Some(Manifest::Hls)
    } else if essence.eq_ignore_ascii_case("application/dash+xml") {
        Some(Manifest::Dash)
    } else {
        None
    }
}

impl<H: Handler> Handler for Prefetch<H> {
    async fn handle(&self, request: Request<Body>, peer: Peer) -> Response<Body> {
        if self.next == 0 || request.method() != Method::GET {
            return self.inner.handle(request, peer).await;
        }
        // Kept by reference count: a request needs them only after its response says so.
        let host = request.headers().get(header::HOST).cloned();
        let uri = request.uri().clone();
        let accept_encoding = request.headers().get(header::ACCEPT_ENCODING).cloned();
        let named_next = request.extensions().get::<NextObject>().cloned();
        let response = self.inner.handle(request, peer).await;
        // A range of a segment (byte-range playlists) is a segment taken too.
        if !matches!(
            response.status(),
            StatusCode::OK | StatusCode::PARTIAL_CONTENT
        ) {
            return response;
        }
        let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let path = uri.path();
        if let Some(NextObject(next)) = named_next
            && let Some(url) = resolve(host, directory(path), &next)
            && !self.signing.protects(&url[host.len()..])
        {
            self.warm(&[url], accept_encoding.as_ref(), peer);
        }
        let kind = manifest(&response).filter(|_| response.status() == StatusCode::OK);
        let Some(kind) = kind else {
            // Until a manifest has been served there is nothing to look up.
            if self.learned.load(Ordering::Relaxed) {
                let after = self.after(&format!("{host}{path}"));
                self.warm(&after, accept_encoding.as_ref(), peer);
            }
            return response;
        };
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_none_or(|n| n > MAX_PLAYLIST)
            || response.headers().contains_key(header::CONTENT_ENCODING)
        {
            return response;
        }
        // A manifest is small and complete: read it, learn from it, send it on.
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(collected) => {
                let bytes: Bytes = collected.to_bytes();
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    match kind {
                        Manifest::Hls => {
                            if let Some(hint) = self.learn_playlist(host, path, text) {
                                self.warm(&[hint], accept_encoding.as_ref(), peer);
                            }
                        }
                        Manifest::Dash => self.learn_mpd(host, path, text),
                    }
                }
                let mut response = Response::from_parts(parts, outpost_server::body::full(bytes));
                response.headers_mut().remove(header::TRANSFER_ENCODING);
                response
            }
            Err(error) => {
                let mut response = outpost_server::body::text(
                    StatusCode::BAD_GATEWAY,
                    format!("manifest broke off: {error}"),
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_prefetcher_remembers_is_bounded_in_bytes_whatever_the_urls() {
        let long = |i: usize| format!("cdn.test/{}/{i}.m4s", "s".repeat(8 * 1024));
        // 16 MiB of URLs named by clients (`nor`), twice what `warmed` may hold.
        let warmed = warmed_map();
        for i in 0..2048 {
            warmed.insert(long(i), ());
        }
        warmed.run_pending_tasks();
        assert!(warmed.weighted_size() <= WARMED_BYTES);
        assert!(warmed.entry_count() <= WARMED_BYTES / (8 * 1024));
        assert!(warmed.entry_count() > 0);
        // 64 MiB of a playlist's segment order, twice what `following` may hold.
        let following = following_map();
        for i in 0..4096 {
            following.insert(long(i), Arc::new(vec![long(i + 1)]));
        }
        following.run_pending_tasks();
        assert!(following.weighted_size() <= FOLLOWING_BYTES);
        assert!(following.entry_count() <= FOLLOWING_BYTES / (16 * 1024));
    }

    #[test]
    fn playlist_uris_resolve_to_what_the_edge_serves() {
        assert_eq!(
            resolve("a.test", "/v/live/", "seg-1.m4s").as_deref(),
            Some("a.test/v/live/seg-1.m4s")
        );
        assert_eq!(
            resolve("a.test", "/v/", "../x/9f8e.m4s").as_deref(),
            Some("a.test/x/9f8e.m4s")
        );
        assert_eq!(
            resolve("a.test", "/v/", "/abs.m4s").as_deref(),
            Some("a.test/abs.m4s")
        );
        assert_eq!(
            resolve("a.test:8080", "/v/", "http://a.test/s.m4s").as_deref(),
            Some("a.test:8080/s.m4s")
        );
        assert_eq!(
            resolve("a.test", "/v/", "http://elsewhere.test/s.m4s"),
            None
        );
        assert_eq!(resolve("a.test", "/v/", "//elsewhere.test/s.m4s"), None);
        assert_eq!(resolve("a.test", "/v/", "data:text/plain,x"), None);
    }
}
