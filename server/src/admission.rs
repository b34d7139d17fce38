//! Which connections a listener takes: at most so many open in all and, on listeners whose
//! clients are the public, at most so many from one client network. An admitted connection
//! holds a [`Slot`] until it ends. The counting is plain logic with no I/O; the TCP listener
//! and the QUIC endpoint each ask it before they keep any state for a connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::network::client_network;

/// The caps of one listener (or of several that share them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Open connections in all (TLS and QUIC handshakes included).
    pub max_connections: u32,
    /// The cap per client network, or none: a parent's and an origin's clients are the CDN's
    /// own nodes, which share their networks.
    pub per_network: Option<NetworkCap>,
}

/// Open connections one client network may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkCap {
    pub max_connections: u32,
    /// A client's network is its address's first this many bits.
    pub ipv4_prefix_len: u8,
    pub ipv6_prefix_len: u8,
    /// Sources that count in the total only: the CDN's own hosts (an anycast router relays
    /// every client from its own address, and health probes come from it too).
    pub trusted: Vec<IpNet>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the listener's connection limit is reached")]
    ListenerFull,
    #[error("the client network's connection limit is reached")]
    NetworkFull,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::ListenerFull => "listener_full",
            Self::NetworkFull => "network_full",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Default)]
struct Counts {
    open: u32,
    /// Only networks with a connection open: at most `max_connections` entries.
    per_network: HashMap<IpNet, u32>,
}

/// The open connections of the listeners that share it, in all and per client network.
pub struct Admission {
    caps: ConnectionCaps,
    counts: Mutex<Counts>,
    /// `counts.open`, as the metrics show it (set under the lock).
    open: Gauge,
    refused: Family<ReasonLabel, Counter>,
    /// `refused`'s two series, made once: a flood of refusals looks nothing up.
    listener_full: Counter,
    network_full: Counter,
}

/// One admitted connection: it counts against the total and its network until dropped.
pub struct Slot {
    admission: Arc<Admission>,
    network: Option<IpNet>,
}

impl Admission {
    pub fn new(caps: ConnectionCaps) -> Arc<Self> {
        let refused: Family<ReasonLabel, Counter> = Family::default();
        let series = |refusal: Refusal| {
            let label = ReasonLabel {
                reason: refusal.label(),
            };
            refused.get_or_create(&label).clone()
        };
        Arc::new(Self {
            caps,
            counts: Mutex::default(),
            open: Gauge::default(),
            listener_full: series(Refusal::ListenerFull),
            network_full: series(Refusal::NetworkFull),
            refused,
        })
    }

    /// Shows the open connections and the refusals in `registry`
    /// (`outpost_connections_open`, `outpost_connections_refused_total{reason}`).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "outpost_connections_open",
            "Client connections open on the node's TCP data listeners",
            self.open.clone(),
        );
        registry.register(
            "outpost_connections_refused",
            "Client connections refused at accept (listener_full, network_full)",
            self.refused.clone(),
        );
    }

    /// Takes a connection from `client`, or says which cap it would pass.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        let client = client.to_canonical();
        let network = self
            .caps
            .per_network
            .as_ref()
            .filter(|cap| !cap.trusted.iter().any(|net| net.contains(&client)))
            .map(|cap| {
                let network = client_network(client, cap.ipv4_prefix_len, cap.ipv6_prefix_len);
                (cap.max_connections, network)
            });
        let mut counts = self.lock();
        if counts.open >= self.caps.max_connections {
            self.listener_full.inc();
            return Err(Refusal::ListenerFull);
        }
        if let Some((max, network)) = network {
            let count = counts.per_network.get(&network).copied().unwrap_or(0);
            if count >= max {
                self.network_full.inc();
                return Err(Refusal::NetworkFull);
            }
            counts.per_network.insert(network, count + 1);
        }
        counts.open += 1;
        self.open.set(i64::from(counts.open));
        Ok(Slot {
            admission: self.clone(),
            network: network.map(|(_, network)| network),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.lock().open
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.open = counts.open.saturating_sub(1);
        self.admission.open.set(i64::from(counts.open));
        if let Some(network) = self.network
            && let Some(count) = counts.per_network.get_mut(&network)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_network.remove(&network);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(total: u32, per_network: u32) -> ConnectionCaps {
        ConnectionCaps {
            max_connections: total,
            per_network: Some(NetworkCap {
                max_connections: per_network,
                ipv4_prefix_len: 24,
                ipv6_prefix_len: 48,
                trusted: vec!["192.0.2.0/24".parse().unwrap()],
            }),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_network_gets_its_share_and_the_listener_its_total() {
        let admission = Admission::new(caps(5, 3));
        // Three addresses of one /24 share its three connections.
        let mut held: Vec<Slot> = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
            .into_iter()
            .map(|a| admission.admit(ip(a)).unwrap())
            .collect();
        assert_eq!(
            admission.admit(ip("198.51.100.200")).err(),
            Some(Refusal::NetworkFull)
        );
        // IPv4-mapped IPv6 is the same network.
        assert_eq!(
            admission.admit(ip("::ffff:198.51.100.9")).err(),
            Some(Refusal::NetworkFull)
        );
        held.push(admission.admit(ip("203.0.113.1")).unwrap());
        held.push(admission.admit(ip("2001:db8:0:1::1")).unwrap());
        assert_eq!(
            admission.admit(ip("2001:db8:5::1")).err(),
            Some(Refusal::ListenerFull)
        );
        assert_eq!(admission.open(), 5);
        // A connection that ends frees its place in its network and in the total.
        held.remove(0);
        assert_eq!(admission.open(), 4);
        held.push(admission.admit(ip("198.51.100.77")).unwrap());
        drop(held);
        assert_eq!(admission.open(), 0);
        assert!(admission.lock().per_network.is_empty());
    }

    #[test]
    fn trusted_sources_count_in_the_total_only() {
        // An anycast router relays every client from one address of a trusted network.
        let admission = Admission::new(caps(4, 1));
        let relayed: Vec<Slot> = (0..4)
            .map(|_| admission.admit(ip("192.0.2.53")).unwrap())
            .collect();
        assert_eq!(
            admission.admit(ip("::ffff:192.0.2.53")).err(),
            Some(Refusal::ListenerFull)
        );
        drop(relayed);
        let _one = admission.admit(ip("198.51.100.1")).unwrap();
        assert_eq!(
            admission.admit(ip("198.51.100.2")).err(),
            Some(Refusal::NetworkFull)
        );
    }

    #[test]
    fn without_a_network_cap_only_the_total_counts() {
        let admission = Admission::new(ConnectionCaps {
            max_connections: 2,
            per_network: None,
        });
        let one = admission.admit(ip("10.0.0.1")).unwrap();
        let _two = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).err(),
            Some(Refusal::ListenerFull)
        );
        drop(one);
        assert!(admission.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn refused_networks_leave_no_entry_behind() {
        let admission = Admission::new(caps(1_000, 1));
        let _held = admission.admit(ip("198.51.100.1")).unwrap();
        for i in 2..=255u8 {
            let refused = admission.admit(IpAddr::from([198, 51, 100, i]));
            assert_eq!(refused.err(), Some(Refusal::NetworkFull));
        }
        assert_eq!(admission.lock().per_network.len(), 1);
        // A network cap of 0 refuses every network and remembers none of them.
        let admission = Admission::new(caps(1_000, 0));
        for i in 0..=255u8 {
            assert!(admission.admit(IpAddr::from([10, 0, i, 1])).is_err());
        }
        assert!(admission.lock().per_network.is_empty());
    }
}
