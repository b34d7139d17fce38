//! The lab's hosts, their addresses, and the one topology file every node starts from.
//!
//! Nodes sit in 10.250.0.0/24; clients have addresses in the documentation networks that the
//! shipped client table (DESIGN.md) places in Europe, North America and Asia. Every host is on
//! one bridge, and its default route is that link, so any host reaches any other directly.
//! Each parent listens on its own loopback behind a [`relay`](crate::relay) on its lab
//! address: every edge's path to it crosses a link the lab can make bad.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// What a host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRole {
    Origin,
    Parent,
    Edge,
    Dns,
    Anycast,
    Control,
    Client,
}

impl HostRole {
    /// The `outpost` subcommand that runs the role; clients run none.
    pub fn command(self) -> Option<&'static str> {
        Some(match self {
            HostRole::Origin => "origin",
            HostRole::Parent => "parent",
            HostRole::Edge => "edge",
            HostRole::Dns => "dns",
            HostRole::Anycast => "anycast",
            HostRole::Control => "control",
            HostRole::Client => return None,
        })
    }
}

/// One host of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// The node's name in the topology (or the client's, `client-eu`).
    pub name: &'static str,
    pub role: HostRole,
    pub address: Ipv4Addr,
}

const fn host(name: &'static str, role: HostRole, address: [u8; 4]) -> Host {
    Host {
        name,
        role,
        address: Ipv4Addr::new(address[0], address[1], address[2], address[3]),
    }
}

/// Every host, nodes in the order they start (what a node needs starts before it).
pub const HOSTS: [Host; 13] = [
    host("origin", HostRole::Origin, [10, 250, 0, 2]),
    host("control", HostRole::Control, [10, 250, 0, 5]),
    host("parent-eu", HostRole::Parent, [10, 250, 0, 21]),
    host("parent-us", HostRole::Parent, [10, 250, 0, 22]),
    host("edge-ams", HostRole::Edge, [10, 250, 0, 11]),
    host("edge-nyc", HostRole::Edge, [10, 250, 0, 12]),
    host("edge-sin", HostRole::Edge, [10, 250, 0, 13]),
    host("dns", HostRole::Dns, [10, 250, 0, 53]),
    host("anycast", HostRole::Anycast, [10, 250, 0, 10]),
    host("client-eu", HostRole::Client, [192, 0, 2, 10]),
    host("client-na", HostRole::Client, [198, 51, 100, 10]),
    host("client-asia", HostRole::Client, [203, 0, 113, 10]),
    // The operator's host: where purges are sent from.
    host("operator", HostRole::Client, [10, 250, 0, 100]),
];

/// Port of every node's data listener in the lab (the origin's is [`ORIGIN_PORT`]).
pub const HTTP_PORT: u16 = 8080;
pub const ORIGIN_PORT: u16 = 8000;
pub const ADMIN_PORT: u16 = 9090;
pub const DNS_PORT: u16 = 53;
pub const DNS_ADMIN_PORT: u16 = 9053;
/// The anycast address, shared by every edge.
pub const ANYCAST: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 10);
/// The bearer token of every admin listener in the lab.
pub const TOKEN: &str = "lab-admin-token";
/// How long a node trusts its cache after it last heard every purge, and how often it asks.
pub const PURGE_LEASE_MS: u64 = 1_000;
pub const PURGE_SYNC_MS: u64 = 200;
/// How often parents, the DNS and the anycast router check what they depend on, in
/// milliseconds, and how many failed probes take a target out.
pub const HEALTH_INTERVAL_MS: u64 = 500;
pub const HEALTH_FALL: u32 = 2;
/// How often edges probe their parents (and measure the paths to them).
pub const PARENT_HEALTH_INTERVAL_MS: u64 = 250;
/// Objects under this path live for this many seconds at the origin's say.
pub const SHORT_PATH: &str = "/lab/short/";
pub const SHORT_MAX_AGE: u64 = 2;

/// The host named `name`.
pub fn find(name: &str) -> Option<&'static Host> {
    HOSTS.iter().find(|h| h.name == name)
}

/// A node's data address as the others reach it.
pub fn data_addr(name: &str) -> Option<SocketAddr> {
    let host = find(name)?;
    let port = match host.role {
        HostRole::Origin => ORIGIN_PORT,
        HostRole::Dns => DNS_PORT,
        HostRole::Control => ADMIN_PORT,
        _ => HTTP_PORT,
    };
    Some(SocketAddr::new(IpAddr::V4(host.address), port))
}

/// A node's admin address.
pub fn admin_addr(name: &str) -> Option<SocketAddr> {
    let host = find(name)?;
    let port = match host.role {
        HostRole::Dns => DNS_ADMIN_PORT,
        HostRole::Client | HostRole::Anycast => return None,
        _ => ADMIN_PORT,
    };
    Some(SocketAddr::new(IpAddr::V4(host.address), port))
}

/// The topology file of the lab, with its state in `dir/state` and the origin serving
/// `dir/site`.
pub fn topology(dir: &Path) -> String {
    let addr = |name: &str| {
        find(name)
            .map(|h| h.address.to_string())
            .unwrap_or_default()
    };
    let mut text = format!(
        r#"# The lab's topology: every node on its own host (network namespace).
[admin]
token = "{TOKEN}"
tls = false

[cache]
disk_mib = 0
stale_if_error_secs = 300

# The edges' checks of their parents (and the overlay's probes of their paths).
[health]
interval_ms = {PARENT_HEALTH_INTERVAL_MS}
timeout_ms = 400
rise = 2
fall = {HEALTH_FALL}

# Edges may go straight to the origin when every parent's path is far worse.
[overlay]
direct_origin = true

[tls]
state_dir = "{state}"

[origin]
name = "origin"
listen = "{origin}:{ORIGIN_PORT}"
admin = "{origin}:{ADMIN_PORT}"
shielded = false
root = "{site}"

[[origin.cache_rules]]
path = "{SHORT_PATH}**"
cache_control = "public, max-age={SHORT_MAX_AGE}"

[[origin.cache_rules]]
path = "/**"
cache_control = "public, max-age=600"
"#,
        state = dir.join("state").display(),
        site = dir.join("site").display(),
        origin = addr("origin"),
    );
    let locations = [
        ("parent-eu", [50.1, 8.7]),
        ("parent-us", [39.0, -77.5]),
        ("edge-ams", [52.4, 4.9]),
        ("edge-nyc", [40.7, -74.0]),
        ("edge-sin", [1.35, 103.8]),
    ];
    for (name, [lat, lon]) in locations {
        let ip = addr(name);
        if name.starts_with("parent") {
            // Behind the relay on its lab address.
            text.push_str(&format!(
                "\n[[parents]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{HTTP_PORT}\"\naddress = \"{ip}\"\nadmin = \"{ip}:{ADMIN_PORT}\"\nlocation = [{lat}, {lon}]\n"
            ));
        } else {
            text.push_str(&format!(
                "\n[[edges]]\nname = \"{name}\"\nlisten = \"{ip}:{HTTP_PORT}\"\nadmin = \"{ip}:{ADMIN_PORT}\"\nlocation = [{lat}, {lon}]\n"
            ));
        }
    }
    let dns = addr("dns");
    let control = addr("control");
    text.push_str(&format!(
        r#"
# The nodes' own network: the anycast router relays every client from its address and the
# health probes come from it, so it counts in the edges' connection total only.
[limits]
trusted_networks = ["127.0.0.0/8", "::1/128", "10.250.0.0/24"]

[control]
listen = "{control}:{ADMIN_PORT}"

[control.purges]
lease_ms = {PURGE_LEASE_MS}
sync_interval_ms = {PURGE_SYNC_MS}
push_timeout_ms = 500
"#
    ));
    text.push_str(&format!(
        r#"
[dns]
listen = "{dns}:{DNS_PORT}"
admin = "{dns}:{DNS_ADMIN_PORT}"

[dns.health]
interval_ms = {HEALTH_INTERVAL_MS}
timeout_ms = 400
rise = 2
fall = {HEALTH_FALL}

[dns.authority]
zone = "outpost.test."
service_names = ["www"]
answers = 1

[anycast]
address = "{ANYCAST}"
http_port = {HTTP_PORT}
hold_down_ms = 1000

[anycast.health]
interval_ms = {HEALTH_INTERVAL_MS}
timeout_ms = 400
rise = 2
fall = {HEALTH_FALL}
"#
    ));
    text
}
