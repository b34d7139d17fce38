//! Worker route patterns as a deploy gives them, and hosts and paths as requests bring them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_workers::{Route, RouteTable};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (pattern, host, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut routes = vec![(Route::parse("*/*").unwrap(), 0)];
    if let Ok(route) = Route::parse(pattern) {
        assert_eq!(Route::parse(&route.to_string()).as_ref(), Ok(&route));
        routes.push((route, 1));
    }
    let table = RouteTable::new(routes);
    let _ = table.find(host, path);
    let _ = outpost_server::normal::host(host, 80);
    let _ = outpost_server::normal::target(path);
});
