//! A raw HTTP/1.1 request head, as a client could send it, through everything the edge does
//! with it before going upstream: the normal form, the cache key, the variant key and the
//! storability rules.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    if !matches!(parsed.parse(data), Ok(httparse::Status::Complete(_))) {
        return;
    }
    let mut builder = http::Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"));
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    for tls in [false, true] {
        let mut parts = parts.clone();
        if outpost_server::normal::normalize(&mut parts, tls, 8192).is_ok() {
            // The normal form is a fixed point.
            let once = (parts.uri.clone(), parts.headers.clone());
            outpost_server::normal::normalize(&mut parts, tls, 8192).unwrap();
            assert_eq!(once, (parts.uri.clone(), parts.headers.clone()));
        }
    }
    if outpost_server::normal::normalize(&mut parts, false, 8192).is_err() {
        return;
    }
    for with_port in [false, true] {
        let _ = outpost_cache::CacheKey::from_request(&parts, with_port);
    }
    let fields: Vec<http::HeaderName> = parts.headers.keys().cloned().collect();
    let _ = outpost_cache::key::variant_key(&fields, &parts.headers);
    let _ = outpost_cache::key::accepted_encodings(&parts.headers);
    let now = std::time::SystemTime::now();
    let timing = outpost_cache::freshness::Timing::from_headers(&parts.headers, now, now);
    let _ = outpost_cache::policy::storability(
        &parts.method,
        &parts.headers,
        http::StatusCode::OK,
        &parts.headers,
        &outpost_cache::policy::CacheRules::default(),
        timing,
    );
});
