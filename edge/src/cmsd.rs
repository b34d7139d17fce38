//! Common Media Server Data (CTA-5006): what the CDN tells a video player about a response.
//! `CMSD-Static` describes the object (the origin's, kept with it in the cache and passed on);
//! `CMSD-Dynamic` describes this hop, and each intermediary adds its own item to the list: the
//! edge adds `"NAME";rd=MS`, the response delay from receiving the request to having the
//! response ready (for a held LL-HLS blocking reload, the time it was held). Only media
//! responses (playlists, MPDs, segments) carry it.

use std::time::Instant;

use http::{HeaderValue, Request, Response};
use outpost_server::{Body, Handler, Peer};

/// The header each hop adds an item to.
pub const CMSD_DYNAMIC: &str = "cmsd-dynamic";

/// Whether a response of this media type (`type/subtype`) is a streaming object a player
/// reads.
pub fn is_media(essence: &str) -> bool {
    // No copy: this runs on every response that has a Content-Type, hits included.
    let starts = |prefix: &str| {
        essence
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    starts("video/")
        || starts("audio/")
        || [
            "application/vnd.apple.mpegurl",
            "application/x-mpegurl",
            "application/dash+xml",
            "application/mp4",
        ]
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t))
}

/// This hop's `CMSD-Dynamic` item after the ones upstream hops sent: `"NAME";rd=MS`.
pub fn dynamic_item(
    upstream: Option<&HeaderValue>,
    name: &str,
    delay_ms: u128,
) -> Option<HeaderValue> {
    let item = format!("\"{name}\";rd={delay_ms}");
    let value = match upstream
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    {
        Some(before) => format!("{before}, {item}"),
        None => item,
    };
    HeaderValue::from_str(&value).ok()
}

/// Adds this edge's `CMSD-Dynamic` item to media responses.
pub struct CmsdFront<H> {
    inner: H,
    /// The node's name, as a CMSD string (quotes and backslashes left out).
    name: String,
}

impl<H: Handler> CmsdFront<H> {
    pub fn new(inner: H, name: &str) -> Self {
        let name = name
            .chars()
            .filter(|c| (c.is_ascii_graphic() && *c != '"' && *c != '\\') || *c == ' ')
            .collect();
        Self { inner, name }
    }
}

impl<H: Handler> Handler for CmsdFront<H> {
    async fn handle(&self, request: Request<Body>, peer: Peer) -> Response<Body> {
        let received = Instant::now();
        let mut response = self.inner.handle(request, peer).await;
        let media = outpost_server::media_type::essence(response.headers()).is_some_and(is_media);
        if media {
            let delay = received.elapsed().as_millis();
            let headers = response.headers_mut();
            if let Some(value) = dynamic_item(headers.get(CMSD_DYNAMIC), &self.name, delay) {
                headers.insert(CMSD_DYNAMIC, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_recognised_and_others_are_not() {
        for media in [
            "video/iso.segment",
            "video/mp4",
            "audio/mp4",
            "application/vnd.apple.mpegurl",
            "Application/Dash+XML",
        ] {
            assert!(is_media(media), "{media}");
        }
        for other in ["text/html", "application/json", "", "image/png"] {
            assert!(!is_media(other), "{other}");
        }
    }

    #[test]
    fn each_hop_adds_its_item_after_the_ones_before() {
        assert_eq!(
            dynamic_item(None, "edge-ams", 12).unwrap(),
            "\"edge-ams\";rd=12"
        );
        let parent = HeaderValue::from_static("\"parent-eu\";rd=480");
        assert_eq!(
            dynamic_item(Some(&parent), "edge-ams", 3).unwrap(),
            "\"parent-eu\";rd=480, \"edge-ams\";rd=3"
        );
        // A value that is not text is replaced, not copied.
        let junk = HeaderValue::from_bytes(b"\xff").unwrap();
        assert_eq!(dynamic_item(Some(&junk), "e", 1).unwrap(), "\"e\";rd=1");
    }
}
