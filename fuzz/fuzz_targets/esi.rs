//! An ESI page as an origin could send it, assembled by the edge's ESI front: the markup
//! reader cut at an input-chosen chunk size, every element, expressions, variables from a
//! fixed request, and includes (every fragment is the same page again, so nesting, loops and
//! the limits are reached). Also the expression language and variable references alone.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use outpost_esi::{EsiConfig, EsiFront};
use outpost_server::{Body, Handler, Peer};

struct Page(Bytes, usize);

impl Handler for Page {
    async fn handle(&self, _request: Request<Body>, _peer: Peer) -> Response<Body> {
        let chunks: Vec<Result<http_body::Frame<Bytes>, outpost_server::BoxError>> = self
            .0
            .chunks(self.1)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
        let mut response = Response::new(body.boxed_unsync());
        response
            .headers_mut()
            .insert("surrogate-control", "content=\"ESI/1.0\"".parse().unwrap());
        response
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, page)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(page) {
        let vars = outpost_esi::vars::Variables::default();
        let _ = outpost_esi::expr::evaluate(text, &vars);
        let _ = vars.substitute(text);
    }
    let config = EsiConfig {
        max_includes: 16,
        max_depth: 3,
        fragment_timeout_ms: 1_000,
        ..EsiConfig::default()
    };
    let site = Page(Bytes::copy_from_slice(page), usize::from(chunk).max(1));
    let front = EsiFront::new(Arc::new(site), &config, Default::default());
    let addr = "127.0.0.1:1".parse().unwrap();
    let peer = Peer {
        remote: addr,
        local: addr,
        tls: false,
    };
    runtime().block_on(async {
        let request = Request::get("/dir/page?q=1&frag=/x")
            .header("host", "site.test")
            .header("cookie", "name=Ada; group=admin")
            .header("accept-language", "en, de;q=0.5")
            .header("user-agent", "Mozilla/5.0 (X11; Linux)")
            .body(outpost_server::body::empty())
            .unwrap();
        let response = front.handle(request, peer).await;
        let _ = response.into_body().collect().await;
    });
});
