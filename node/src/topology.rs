//! The topology file (TOML): every node of the CDN, its addresses, and the settings they share.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use outpost_cache::CacheConfig;
use outpost_origin::{CacheRule, OriginConfig};
use outpost_server::Limits;
use outpost_server::health::HealthSettings;
use serde::{Deserialize, Serialize};

use crate::error::TopologyError;

/// Returns the formatted problem from a check.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(format!($($arg)*))
    };
}

/// The default topology of `outpost up`, as shipped.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../config/outpost.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub cache: CacheConfig,
    /// How edges process Edge Side Includes.
    #[serde(default)]
    pub esi: outpost_esi::EsiConfig,
    #[serde(default)]
    /// How edges check their parents.
    pub health: HealthSettings,
    /// How edges route around bad paths to their parents (measured latency and failures).
    #[serde(default)]
    pub overlay: outpost_edge::OverlaySettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub tls: TlsSection,
    /// CORS at the edges, by host and path.
    #[serde(default)]
    pub cors: Vec<outpost_edge::CorsRule>,
    /// Signed URLs: the paths that need a token and the keys tokens are signed with.
    #[serde(default)]
    pub signing: outpost_edge::SigningConfig,
    /// Segments the edges warm after the one a client takes, from the playlists they served.
    #[serde(default)]
    pub prefetch: outpost_edge::PrefetchConfig,
    pub origin: OriginNode,
    #[serde(default)]
    pub parents: Vec<CacheNodeSettings>,
    #[serde(default)]
    pub edges: Vec<EdgeNodeSettings>,
    /// The authoritative DNS that hands out the nearest healthy edge.
    pub dns: Option<DnsNode>,
    /// The simulated anycast address shared by every edge.
    pub anycast: Option<outpost_dns::anycast::AnycastConfig>,
    /// The control node every purge goes through (numbered, pushed to every edge and parent,
    /// never lost); without one, `outpost purge` sends to each node itself.
    pub control: Option<ControlNode>,
    /// The live dashboard of the whole CDN (`outpost up` serves it; `outpost dashboard` runs
    /// it alone).
    pub dashboard: Option<outpost_dashboard::DashboardSettings>,
}

/// The `[control]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlNode {
    #[serde(default = "control_name")]
    pub name: String,
    /// Its API (`POST /fleet/purge`, and the log nodes catch up from), with `/health` and
    /// `/metrics`; TLS when `admin.tls` is.
    pub listen: SocketAddr,
    /// The address the other nodes reach it at, when it listens on a wildcard address.
    pub address: Option<IpAddr>,
    #[serde(default)]
    pub purges: crate::control::PurgeSync,
}

fn control_name() -> String {
    "control".into()
}

impl ControlNode {
    /// Its listen address as the other nodes reach it.
    pub fn reached(&self) -> SocketAddr {
        reached(self.listen, self.address)
    }
}

/// The `[dns]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsNode {
    /// UDP and TCP address of the DNS server.
    pub listen: SocketAddr,
    /// Admin listener (plain HTTP) with `/health` and Prometheus `/metrics`.
    pub admin: Option<SocketAddr>,
    /// How the DNS checks the edges.
    #[serde(default = "dns_health")]
    pub health: HealthSettings,
    /// The zone, its dynamic and static names, and the client networks table.
    #[serde(default)]
    pub authority: outpost_dns::DnsConfig,
}

fn dns_health() -> HealthSettings {
    outpost_dns::DNS_HEALTH
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token for purge; without one, purge is refused.
    pub token: Option<String>,
    /// Serve the admin listeners over TLS, with a certificate from the local CA.
    #[serde(default)]
    pub tls: bool,
}

/// The `[tls]` table: where the local CA lives and which certificates the edges serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// State directory: the local CA and the certificates it issues (`--state-dir` overrides).
    pub state_dir: PathBuf,
    /// Time a client has to complete its TLS handshake, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Certificates to serve, by hostname; empty: the local CA issues one for the topology.
    pub certificates: Vec<CertificateSettings>,
    /// For a ClientHello with an unknown or no SNI name: "default" serves the first
    /// certificate, "refuse" fails the handshake.
    pub unknown_names: UnknownNames,
    /// How often certificate files are checked for changes, in milliseconds (SIGHUP reloads
    /// at once).
    pub reload_check_ms: u64,
    /// Per hostname: redirect plain HTTP to HTTPS, HSTS.
    pub hosts: Vec<outpost_edge::HostPolicy>,
    /// HTTP/3: every edge's HTTPS port also takes QUIC on UDP, and HTTPS answers advertise it
    /// (`Alt-Svc: h3=":PORT"; ma=alt_svc_max_age_secs`).
    pub http3: bool,
    pub alt_svc_max_age_secs: u64,
    /// What QUIC connections may do: streams, idle timeout, connections per client network,
    /// Retry under load, 0-RTT (off).
    pub quic: outpost_server::h3::QuicSettings,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(".outpost"),
            handshake_timeout_ms: 10_000,
            certificates: Vec::new(),
            unknown_names: UnknownNames::Default,
            reload_check_ms: 2_000,
            hosts: Vec::new(),
            http3: true,
            alt_svc_max_age_secs: 86_400,
            quic: outpost_server::h3::QuicSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownNames {
    Default,
    Refuse,
}

/// A certificate an operator brings: PEM files and the names they serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSettings {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginNode {
    #[serde(default = "origin_name")]
    pub name: String,
    /// An origin that already exists (`http://host:port`): Outpost runs none of its own.
    pub url: Option<String>,
    /// Where Outpost's own origin server listens (unless `url` is set).
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The address the CDN's nodes reach this one at, when it listens on a wildcard address
    /// (`0.0.0.0` in a container or a pod); default: the listen address.
    pub address: Option<IpAddr>,
    /// Directory served; default: the demo site shipped with Outpost.
    pub root: Option<PathBuf>,
    /// Cache-Control by path, first match wins; default: the demo's rules.
    pub cache_rules: Option<Vec<CacheRule>>,
    /// Shield the origin: it serves HTTPS with a certificate from the local CA and answers
    /// only clients (the CDN's parents and edges) with a client certificate from it.
    #[serde(default)]
    pub shielded: bool,
}

fn origin_name() -> String {
    "origin".into()
}

impl OriginNode {
    /// The URL the parents pull from.
    pub fn upstream_url(&self) -> Option<http::Uri> {
        let scheme = if self.shielded { "https" } else { "http" };
        match (&self.url, self.listen) {
            (Some(url), _) => url.parse().ok(),
            (None, Some(listen)) => format!("{scheme}://{}", self.reached(listen)).parse().ok(),
            (None, None) => None,
        }
    }

    /// One of the origin's listen addresses as the CDN's nodes reach it.
    pub fn reached(&self, addr: SocketAddr) -> SocketAddr {
        reached(addr, self.address)
    }

    pub fn origin_config(&self) -> OriginConfig {
        let mut config = OriginConfig::default();
        if let Some(root) = &self.root {
            config.root = root.clone();
        }
        if let Some(rules) = &self.cache_rules {
            config.cache_rules = rules.clone();
        }
        config
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheNodeSettings {
    pub name: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The address other nodes and clients reach this one at, when it listens on a wildcard
    /// address (`0.0.0.0` in a container or a pod); default: the listen addresses'.
    pub address: Option<IpAddr>,
    /// Latitude and longitude, for request routing.
    pub location: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeNodeSettings {
    pub name: String,
    pub listen: SocketAddr,
    /// Address of the HTTPS listener, if the edge serves HTTPS.
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// The address clients, the DNS and the anycast router reach this edge at, when it
    /// listens on a wildcard address (`0.0.0.0` in a container or a pod); default: the
    /// listen addresses'.
    pub address: Option<IpAddr>,
    pub location: Option<[f64; 2]>,
    /// Names of the parents this edge pulls through; default: every parent.
    pub parents: Option<Vec<String>>,
}

/// `addr` as others reach it: with `address` in place of its IP when one is given.
fn reached(addr: SocketAddr, address: Option<IpAddr>) -> SocketAddr {
    address.map_or(addr, |ip| SocketAddr::new(ip, addr.port()))
}

impl CacheNodeSettings {
    /// One of this node's listen addresses as other nodes reach it.
    pub fn reached(&self, addr: SocketAddr) -> SocketAddr {
        reached(addr, self.address)
    }
}

impl EdgeNodeSettings {
    /// One of this edge's listen addresses as clients and other nodes reach it.
    pub fn reached(&self, addr: SocketAddr) -> SocketAddr {
        reached(addr, self.address)
    }
}

/// Environment variables that override the topology file, so that one file, mounted read-only
/// into every container of a deployment, serves them all.
pub mod environment {
    /// Replaces `tls.state_dir` (a volume in a container).
    pub const STATE_DIR: &str = "OUTPOST_STATE_DIR";
    /// Replaces `admin.token` (a secret in a container).
    pub const ADMIN_TOKEN: &str = "OUTPOST_ADMIN_TOKEN";
}

impl Topology {
    /// Reads and checks a topology file, with the overrides of [`environment`] applied; errors
    /// name the file, the key and what is expected.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::parse(&text, &path.display().to_string())?.with_environment())
    }

    /// The built-in topology of `outpost up`, with the overrides of [`environment`] applied.
    pub fn default_topology() -> Self {
        Self::parse(DEFAULT_TOPOLOGY, "the built-in default config")
            .unwrap_or_else(|error| {
                unreachable!("the shipped default config is checked by tests: {error:#}")
            })
            .with_environment()
    }

    fn with_environment(mut self) -> Self {
        let set = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(dir) = set(environment::STATE_DIR) {
            self.tls.state_dir = PathBuf::from(dir);
        }
        if let Some(token) = set(environment::ADMIN_TOKEN) {
            self.admin.token = Some(token.trim().to_owned());
        }
        self
    }

    pub fn parse(text: &str, source: &str) -> Result<Self, TopologyError> {
        let invalid = |problem: String| TopologyError::Invalid {
            file: source.to_owned(),
            problem,
        };
        let topology: Self =
            toml::from_str(text).map_err(|error| invalid(error.to_string().trim_end().into()))?;
        topology.check().map_err(invalid)?;
        Ok(topology)
    }

    /// What is wrong with the topology, naming the key and what is expected there.
    fn check(&self) -> Result<(), String> {
        if let Err((key, expected)) = self.cache.validate() {
            fail!("cache.{key}: expected {expected}");
        }
        if let Err(error) = outpost_edge::CorsRules::compile(&self.cors) {
            fail!("{error}");
        }
        if let Err(error) = outpost_edge::Signing::new(&self.signing) {
            fail!("{error}");
        }
        if let Err((key, expected)) = self.esi.validate() {
            fail!("esi.{key}: expected {expected}");
        }
        if let Err((key, expected)) = self.overlay.validate() {
            fail!("overlay.{key}: expected {expected}");
        }
        if self.health.rise == 0 || self.health.fall == 0 {
            fail!("health.rise and health.fall: expected thresholds of at least 1");
        }
        if self.limits.max_headers == 0 || self.limits.max_header_bytes < 1024 {
            fail!(
                "limits.max_headers / limits.max_header_bytes: expected at least 1 header and 1024 bytes"
            );
        }
        if self.limits.max_connections == 0 || self.limits.max_connections_per_network == 0 {
            fail!(
                "limits.max_connections / limits.max_connections_per_network: expected at least 1 (0 would refuse every client, health probes too)"
            );
        }
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        let mut claim = |key: String,
                         name: &str,
                         address: Option<IpAddr>,
                         addrs: &[SocketAddr]|
         -> Result<(), String> {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                fail!(
                    "{key}.name: expected a node name of letters, digits, '-', '_' or '.', got {name:?}"
                );
            }
            if !names.insert(name.to_owned()) {
                fail!("{key}.name: the name {name:?} is used twice; expected unique node names");
            }
            for &addr in addrs {
                if addr.ip().is_unspecified() && address.is_none() {
                    fail!(
                        "{key}.address: expected the address other nodes reach {name} at, since it listens on {addr}"
                    );
                }
                let addr = reached(addr, address);
                if addr.port() != 0 && !addresses.insert(addr) {
                    fail!(
                        "{key}: the address {addr} is used twice; expected a free address per listener"
                    );
                }
            }
            Ok(())
        };
        match (&self.origin.url, self.origin.listen, self.origin.admin) {
            (Some(_), _, _) if self.origin.shielded => {
                fail!("origin.shielded: expected Outpost's own origin (listen and admin), not url")
            }
            (Some(url), None, None) => {
                let uri: http::Uri = url.parse().map_err(|e| {
                    format!("origin.url: expected an http:// URL, got {url:?}: {e}")
                })?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    fail!("origin.url: expected an http://host:port URL, got {url:?}");
                }
            }
            (None, Some(listen), Some(admin)) => {
                claim(
                    "origin".into(),
                    &self.origin.name,
                    self.origin.address,
                    &[listen, admin],
                )?;
            }
            _ => fail!(
                "origin: expected either `url` (an origin you already run) or both `listen` and `admin` (Outpost's own origin server)"
            ),
        }
        for (i, parent) in self.parents.iter().enumerate() {
            claim(
                format!("parents[{i}]"),
                &parent.name,
                parent.address,
                &[parent.listen, parent.admin],
            )?;
            check_location(&format!("parents[{i}]"), parent.location)?;
        }
        if let Some(control) = &self.control {
            claim(
                "control".into(),
                &control.name,
                control.address,
                &[control.listen],
            )?;
            if let Err((key, expected)) = control.purges.validate() {
                fail!("control.purges.{key}: expected {expected}");
            }
        }
        for (i, edge) in self.edges.iter().enumerate() {
            let mut addrs = vec![edge.listen, edge.admin];
            addrs.extend(edge.https);
            claim(format!("edges[{i}]"), &edge.name, edge.address, &addrs)?;
            check_location(&format!("edges[{i}]"), edge.location)?;
            for parent in edge.parents.iter().flatten() {
                if !self.parents.iter().any(|p| &p.name == parent) {
                    let known: Vec<&str> = self.parents.iter().map(|p| p.name.as_str()).collect();
                    fail!(
                        "edges[{i}].parents: unknown parent {parent:?}; expected one of {known:?}"
                    );
                }
            }
        }
        if self.dns.is_some() || self.anycast.is_some() {
            for (i, edge) in self.edges.iter().enumerate() {
                if edge.location.is_none() {
                    fail!(
                        "edges[{i}].location: expected [latitude, longitude]: DNS and anycast route clients to the nearest edge"
                    );
                }
            }
        }
        Ok(())
    }

    /// The client networks table (DNS and anycast share it).
    pub fn networks(&self) -> Result<outpost_dns::NetworkTable, outpost_dns::NetworkError> {
        match &self.dns {
            Some(dns) => outpost_dns::NetworkTable::new(&dns.authority.networks),
            None => outpost_dns::NetworkTable::new(&outpost_dns::default_networks()),
        }
    }

    /// Every admin address of the topology, by node name, as the CLI reaches it.
    pub fn admin_addresses(&self) -> Vec<(String, SocketAddr)> {
        let mut all: Vec<(String, SocketAddr)> = Vec::new();
        if let Some(admin) = self.origin.admin {
            all.push((self.origin.name.clone(), self.origin.reached(admin)));
        }
        all.extend(
            self.parents
                .iter()
                .map(|p| (p.name.clone(), p.reached(p.admin))),
        );
        all.extend(
            self.edges
                .iter()
                .map(|e| (e.name.clone(), e.reached(e.admin))),
        );
        if let Some(control) = &self.control {
            all.push((control.name.clone(), control.reached()));
        }
        all
    }

    /// The parents an edge pulls through.
    pub fn parents_of(&self, edge: &EdgeNodeSettings) -> Vec<&CacheNodeSettings> {
        self.parents
            .iter()
            .filter(|p| {
                edge.parents
                    .as_ref()
                    .is_none_or(|names| names.contains(&p.name))
            })
            .collect()
    }
}

fn check_location(key: &str, location: Option<[f64; 2]>) -> Result<(), String> {
    if let Some([lat, lon]) = location
        && (!(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon))
    {
        fail!(
            "{key}.location: expected [latitude, longitude] within [-90, 90] and [-180, 180], got [{lat}, {lon}]"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_matches_design() {
        let topology = Topology::default_topology();
        assert_eq!(
            topology.origin.listen,
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(topology.parents.len(), 2);
        assert_eq!(topology.edges.len(), 3);
        assert_eq!(topology.cache, CacheConfig::default());
        assert_eq!(topology.health, HealthSettings::default());
        let ams = &topology.edges[0];
        assert_eq!(ams.name, "edge-ams");
        assert_eq!(topology.parents_of(ams).len(), 2);
    }

    #[test]
    fn errors_name_the_key_and_what_is_expected() {
        let bad = DEFAULT_TOPOLOGY.replace("capacity_mib = 256", "capacity_mb = 256");
        let error = Topology::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(
            error.contains("x.toml") && error.contains("line") && error.contains("capacity_mb"),
            "{error}"
        );
        let bad = DEFAULT_TOPOLOGY.replace("listen = \"127.0.0.22:8080\"", "listen = \"nowhere\"");
        let error = Topology::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(
            error.contains("line 58") || error.contains("listen"),
            "{error}"
        );
        let bad = DEFAULT_TOPOLOGY.replace("name = \"edge-nyc\"", "name = \"edge-ams\"");
        let error = Topology::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(error.contains("edges[1].name"), "{error}");
        let bad = DEFAULT_TOPOLOGY.replace("location = [1.35, 103.8]", "location = [1.35, 203.8]");
        let error = Topology::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(error.contains("edges[2].location"), "{error}");
        let bad = DEFAULT_TOPOLOGY.replace("interval_ms = 2000\n", "interval_ms = \"2s\"\n");
        let error = Topology::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(
            error.contains("interval_ms") || error.contains("line 31"),
            "{error}"
        );
    }
}
