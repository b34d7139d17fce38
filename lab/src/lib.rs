//! The lab: a CDN spread over separate hosts on one Linux machine, to show what one process on
//! loopback cannot: nodes that die and come back, links that go bad, purges that must reach a
//! fleet.
//!
//! Every host is a network namespace joined to one bridge (in a namespace of its own) by a
//! veth pair: the origin, the control node, two parents, three edges, the DNS, the anycast
//! router, an operator's host, and a client
//! host for each of Europe, North America and Asia, with addresses in the networks the
//! shipped client table places there. Every node is its own `outpost` process in its host,
//! started from one topology file ([`plan`]). Traffic stays in the namespaces the lab made.
//! [`Lab`] removes every namespace, link and process it made when it is dropped, also on a
//! panic; a lab left behind by a killed run is swept by the next.
//!
//! This crate owns the hosts, the processes, the bad links ([`relay`]) and the clients that
//! measure ([`client`]); [`scenarios`] are the failures it shows, each returning what it
//! measured. It needs root and iproute2; it does not touch the machine's own network.

pub mod client;
mod lab;
pub mod netns;
pub mod plan;
pub mod relay;
pub mod scenarios;

pub use lab::{Lab, OBJECTS, PURGED_OBJECTS, remove_this_process_lab};

/// What went wrong building or driving the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (it makes network namespaces)")]
    NotRoot,
    #[error("{tool}: {source}")]
    Tool {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("namespace {namespace}: {reason}")]
    Namespace { namespace: String, reason: String },
    #[error("a task in namespace {namespace} panicked")]
    Panicked { namespace: String },
    #[error("{node} did not come up within {secs} s (log: {log})")]
    NotUp {
        node: String,
        secs: u64,
        log: String,
    },
    #[error("no host named {0} in the lab")]
    UnknownHost(String),
    #[error("{0}")]
    Scenario(String),
}

/// Whether this process may build a lab.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
