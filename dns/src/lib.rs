//! The authoritative geo DNS of Outpost: it answers for the configured zone (`outpost.test.` by
//! default) and hands each client the nearest healthy edge, judged by the client's network (its
//! source address or its EDNS Client Subnet) and great-circle distance, failing open to every
//! edge when none is healthy. Health itself is decided elsewhere and reported through
//! [`GeoDns::set_healthy`]. It does not proxy HTTP, recurse, or transfer zones.

pub mod anycast;
mod config;
mod geo;
mod geoip;
mod health;
mod metrics;
pub mod networks;
mod rate_limit;
mod server;
pub mod view;
mod zone;

pub use config::{
    DnsConfig, DnsError, EdgeSite, Network, RateLimit, ShedLoad, StaticRecord, default_networks,
};
pub use geo::GeoDns;
pub use health::{DNS_HEALTH, spawn_health_checks};
pub use networks::{NetworkError, NetworkTable};
pub use server::{bind, serve};
