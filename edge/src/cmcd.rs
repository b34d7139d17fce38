//! Common Media Client Data (CTA-5004): what a video player says about itself on each request,
//! in the `CMCD` query parameter or the `CMCD-Request`, `CMCD-Object`, `CMCD-Status` and
//! `CMCD-Session` headers. The edge reads it into the access log and the metrics, and takes the
//! query parameter off the URL before the cache, so it never splits the cache key (it changes
//! on every request). A session id is logged, never a metric label.

use http::header::HeaderMap;
use http::{Request, Response, Uri};
use outpost_server::{AccessNote, Body, Handler, Peer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The CMCD keys the edge reads; others are kept in the log as they came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cmcd {
    /// `br`: encoded bitrate of the object, kbit/s.
    pub bitrate_kbps: Option<u64>,
    /// `bl`: buffer length, ms.
    pub buffer_ms: Option<u64>,
    /// `bs`: the buffer ran empty since the last request.
    pub starved: bool,
    /// `ot`: object type (m manifest, a audio, v video, av, i init, c caption, ...).
    pub object_type: Option<String>,
    /// `sid`: the playback session.
    pub session: Option<String>,
    /// `cid`: the content (the stream) being played.
    pub content: Option<String>,
    /// `st`: stream type (`v` VOD, `l` live).
    pub stream_type: Option<String>,
    /// `nor`: the next object the player will ask for, relative to this request (decoded).
    pub next_object: Option<String>,
    /// Every key as it came, in order, for the log.
    pub pairs: Vec<(String, Option<String>)>,
}

impl Cmcd {
    /// CMCD from a request: the query parameter, then the headers; `None` without any.
    pub fn from_request(uri: &Uri, headers: &HeaderMap) -> Option<Self> {
        let mut cmcd = Self::default();
        let mut found = false;
        if let Some(value) = crate::query::parameter(uri, CMCD_PARAMETER) {
            cmcd.parse(&value);
            found = true;
        }
        for name in ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"] {
            for value in headers.get_all(name) {
                if let Ok(value) = value.to_str() {
                    cmcd.parse(value);
                    found = true;
                }
            }
        }
        found.then_some(cmcd)
    }

    fn parse(&mut self, text: &str) {
        for item in split_outside_quotes(text) {
            let item = item.trim();
            if item.is_empty() || item.len() > 256 || self.pairs.len() >= 32 {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
                None => (item, None),
            };
            match (key, value) {
                ("br", Some(v)) => self.bitrate_kbps = v.parse().ok(),
                ("bl", Some(v)) => self.buffer_ms = v.parse().ok(),
                ("bs", None) => self.starved = true,
                ("ot", Some(v)) => self.object_type = Some(v.to_owned()),
                ("sid", Some(v)) => self.session = Some(v.to_owned()),
                ("cid", Some(v)) => self.content = Some(v.to_owned()),
                ("st", Some(v)) => self.stream_type = Some(v.to_owned()),
                ("nor", Some(v)) => {
                    self.next_object = percent_encoding::percent_decode_str(v)
                        .decode_utf8()
                        .ok()
                        .map(|v| v.into_owned());
                }
                _ => {}
            }
            self.pairs.push((key.to_owned(), value.map(str::to_owned)));
        }
    }

    /// The line the access log gets: `cmcd(br=3200 bl=21300 bs sid=...)`.
    pub fn note(&self) -> String {
        let fields: Vec<String> = self
            .pairs
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={}", v.replace([' ', '"', ')'], "_")),
                None => k.clone(),
            })
            .collect();
        format!("cmcd({})", fields.join(" "))
    }
}

/// Splits `a=1,b="x,y",c` at commas outside quotes.
fn split_outside_quotes(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// The query parameter CMCD comes in.
const CMCD_PARAMETER: &str = "CMCD";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabel {
    object: String,
}

/// What players report, over all sessions, and per session
/// ([`sessions`](Self::sessions)).
#[derive(Clone)]
pub struct CmcdMetrics {
    requests: Family<ObjectLabel, Counter>,
    starvations: Counter,
    bitrate: Histogram,
    buffer: Histogram,
    sessions: crate::cmcd_sessions::CmcdSessions,
}

impl CmcdMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            starvations: Counter::default(),
            bitrate: Histogram::new(exponential_buckets(100_000.0, 2.0, 10)),
            buffer: Histogram::new(exponential_buckets(0.25, 2.0, 10)),
            sessions: crate::cmcd_sessions::CmcdSessions::default(),
        };
        registry.register(
            "outpost_cmcd_requests",
            "Requests carrying CMCD, by object type (m manifest, a audio, v video, i init, ...)",
            metrics.requests.clone(),
        );
        registry.register(
            "outpost_cmcd_buffer_starvations",
            "Requests whose player reported its buffer ran empty (CMCD bs)",
            metrics.starvations.clone(),
        );
        registry.register(
            "outpost_cmcd_bitrate_bits_per_second",
            "Encoded bitrate of the objects players asked for (CMCD br, sent in kbit/s)",
            metrics.bitrate.clone(),
        );
        registry.register(
            "outpost_cmcd_buffer_seconds",
            "Players' buffer length when they asked (CMCD bl), seconds",
            metrics.buffer.clone(),
        );
        metrics
    }

    /// The sessions of this edge's players (for `GET /cmcd/sessions`).
    pub fn sessions(&self) -> crate::cmcd_sessions::CmcdSessions {
        self.sessions.clone()
    }

    fn record(&self, cmcd: &Cmcd, path: &str) {
        self.sessions.record(cmcd, path);
        let object = match cmcd.object_type.as_deref() {
            Some(t @ ("m" | "a" | "v" | "av" | "i" | "c" | "tt" | "k" | "o")) => t,
            Some(_) => "other",
            None => "unknown",
        };
        self.requests
            .get_or_create(&ObjectLabel {
                object: object.to_owned(),
            })
            .inc();
        if cmcd.starved {
            self.starvations.inc();
        }
        if let Some(br) = cmcd.bitrate_kbps {
            self.bitrate.observe(br as f64 * 1e3);
        }
        if let Some(bl) = cmcd.buffer_ms {
            self.buffer.observe(bl as f64 / 1000.0);
        }
    }
}

/// What a player said it will ask for next (CMCD `nor`), for the prefetcher: a request
/// extension, relative to the request's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextObject(pub String);

/// The edge's CMCD reader.
pub struct CmcdFront<H> {
    inner: H,
    metrics: CmcdMetrics,
}

impl<H: Handler> CmcdFront<H> {
    pub fn new(inner: H, metrics: CmcdMetrics) -> Self {
        Self { inner, metrics }
    }
}

impl<H: Handler> Handler for CmcdFront<H> {
    async fn handle(&self, mut request: Request<Body>, peer: Peer) -> Response<Body> {
        let cmcd = Cmcd::from_request(request.uri(), request.headers());
        let path = cmcd.as_ref().map(|_| request.uri().path().to_owned());
        if let Some(uri) = crate::query::without_parameter(request.uri(), CMCD_PARAMETER) {
            *request.uri_mut() = uri;
        }
        // The prefetcher warms what `nor` names.
        if let Some(next) = cmcd.as_ref().and_then(|c| c.next_object.clone()) {
            request.extensions_mut().insert(NextObject(next));
        }
        let mut response = self.inner.handle(request, peer).await;
        if let Some(cmcd) = cmcd {
            self.metrics
                .record(&cmcd, path.as_deref().unwrap_or_default());
            response.extensions_mut().insert(AccessNote(cmcd.note()));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn from_the_query_and_from_headers() {
        let uri: Uri =
            "/v/seg.m4s?x=1&CMCD=br%3D3200%2Cbl%3D21300%2Cbs%2Cot%3Dv%2Csid%3D%226e2f%2C1%22"
                .parse()
                .unwrap();
        let cmcd = Cmcd::from_request(&uri, &HeaderMap::new()).unwrap();
        assert_eq!(cmcd.bitrate_kbps, Some(3200));
        assert_eq!(cmcd.buffer_ms, Some(21300));
        assert!(cmcd.starved);
        assert_eq!(cmcd.object_type.as_deref(), Some("v"));
        assert_eq!(cmcd.session.as_deref(), Some("6e2f,1"));
        assert_eq!(cmcd.note(), "cmcd(br=3200 bl=21300 bs ot=v sid=6e2f,1)");
        assert_eq!(
            crate::query::without_parameter(&uri, CMCD_PARAMETER).unwrap(),
            "/v/seg.m4s?x=1"
        );

        let mut headers = HeaderMap::new();
        headers.insert("cmcd-object", HeaderValue::from_static("br=800,ot=a"));
        headers.insert("cmcd-status", HeaderValue::from_static("bs"));
        headers.insert("cmcd-session", HeaderValue::from_static("sid=\"abc\""));
        let cmcd = Cmcd::from_request(&"/a.m4s".parse().unwrap(), &headers).unwrap();
        assert_eq!((cmcd.bitrate_kbps, cmcd.starved), (Some(800), true));
        assert_eq!(cmcd.session.as_deref(), Some("abc"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "cmcd-request",
            HeaderValue::from_static("nor=\"..%2Fhd%2Fseg%202.m4s\""),
        );
        let cmcd = Cmcd::from_request(&"/a.m4s".parse().unwrap(), &headers).unwrap();
        assert_eq!(cmcd.next_object.as_deref(), Some("../hd/seg 2.m4s"));
        assert!(Cmcd::from_request(&"/a.m4s".parse().unwrap(), &HeaderMap::new()).is_none());
    }

    #[test]
    fn garbage_is_kept_out() {
        let mut headers = HeaderMap::new();
        let long = format!("br=abc,{},bl=-5,=x,,\"", "k=".repeat(400));
        headers.insert("cmcd-request", HeaderValue::from_str(&long).unwrap());
        let cmcd = Cmcd::from_request(&"/".parse().unwrap(), &headers).unwrap();
        assert_eq!(cmcd.bitrate_kbps, None);
        assert_eq!(cmcd.buffer_ms, None);
        assert!(cmcd.pairs.len() <= 32);
    }
}
