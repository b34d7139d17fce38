//! Why a CDN, or one node of it, did not start. Each variant names the part that failed.

use std::net::SocketAddr;
use std::path::PathBuf;

use outpost_certs::CertError;
use outpost_dns::DnsError;
use outpost_dns::anycast::AnycastError;
use outpost_origin::OriginError;
use outpost_server::tls::TlsError;
use outpost_workers::DeployError;

/// The topology file could not be read, or says something that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("reading config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `file` is the file's path (or "the built-in default config"); `problem` names the key
    /// and what is expected there.
    #[error("{file}: {problem}")]
    Invalid { file: String, problem: String },
}

/// A node, or the CDN, could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// `--name` (or a per-node command) names no node of that role in the topology.
    #[error("no {role} named {name:?} in the topology")]
    UnknownNode { role: &'static str, name: String },
    /// The command needs a table the topology does not have (`dns`, `anycast`).
    #[error("the topology has no [{0}] table")]
    NoTable(&'static str),
    #[error("{node}: binding the {listener} listener on {addr}: {source}")]
    Bind {
        node: String,
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the state directory (admin token, compiled workers).
    #[error("{what} {}: {source}", path.display())]
    State {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The local CA, or a certificate it issues or that is read from a file.
    #[error("{what}: {source}")]
    Certificate {
        what: String,
        #[source]
        source: CertError,
    },
    /// A TLS listener's certificates could not be loaded.
    #[error("loading TLS certificates: {0}")]
    Tls(#[source] TlsError),
    /// A node's TLS client configuration (trusting the local CA) could not be built.
    #[error("{what}: {source}")]
    TlsClient {
        what: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{node}: starting the origin: {source}")]
    Origin {
        node: String,
        #[source]
        source: OriginError,
    },
    #[error("{node}: workers: {source}")]
    Workers {
        node: String,
        #[source]
        source: DeployError,
    },
    #[error("{node}: opening its releases: {source}")]
    Releases {
        node: String,
        #[source]
        source: outpost_releases::ReleaseError,
    },
    #[error("dns: {0}")]
    Dns(#[source] DnsError),
    #[error("anycast: {0}")]
    Anycast(#[source] AnycastError),
    /// The client networks table DNS and anycast share.
    #[error("dns.authority.{0}")]
    Networks(#[source] outpost_dns::NetworkError),
    /// A signal handler (SIGHUP for reloads) could not be installed.
    #[error("installing the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
}
