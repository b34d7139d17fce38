//! Cache-Control, CDN-Cache-Control, Age and Expires values as an origin could send them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut response = http::HeaderMap::new();
    for name in [
        "cache-control",
        "cdn-cache-control",
        "surrogate-control",
        "age",
        "expires",
        "date",
        "last-modified",
    ] {
        response.insert(name, value.clone());
    }
    let _ = outpost_cache::directives::ResponseDirectives::for_cdn(&response);
    let _ = outpost_cache::SurrogateControl::of(&response).wants_esi();
    let now = std::time::SystemTime::now();
    let timing = outpost_cache::freshness::Timing::from_headers(&response, now, now);
    let _ = timing.current_age(now);
    if let Ok(policy) = outpost_cache::policy::storability(
        &http::Method::GET,
        &http::HeaderMap::new(),
        http::StatusCode::OK,
        &response,
        &outpost_cache::policy::CacheRules::default(),
        timing,
    ) {
        let _ = policy.ttl(now, None);
        let _ = policy.reuse(now, Some(now));
    }
});
