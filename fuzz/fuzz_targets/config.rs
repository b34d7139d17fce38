//! Config text for the cache and DNS tables of a topology file: parsed, validated and built,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cache) = toml::from_str::<outpost_cache::CacheConfig>(text)
        && cache.validate().is_ok()
    {
        let _ = cache.rules();
        let _ = cache.timeouts();
    }
    if let Ok(dns) = toml::from_str::<outpost_dns::DnsConfig>(text) {
        let _ = outpost_dns::GeoDns::new(&dns, Vec::new());
    }
});
