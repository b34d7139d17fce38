//! Outpost's integration tests, as one binary (each test binary would link the whole CDN
//! again). Most tests start the CDN in this process through `outpost_node::Cdn`, ask it where
//! each node listens, and drive it over real loopback sockets with real clients; the ones
//! about the command line, signals and logs spawn the `outpost` binary.

mod common;

mod bad_input;
mod caching;
mod cli;
mod containers;
mod dashboard;
mod esi;
mod http3;
mod lab;
mod releases;
mod routing;
mod safety;
mod storage;
mod tls;
mod topology;
mod video;
mod workers;
