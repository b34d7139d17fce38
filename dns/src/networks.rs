//! The client-network table that the geo DNS and the anycast router share: each prefix with a
//! location, checked once by one set of rules, and the one longest-prefix match both use.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Network;

/// One client network of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientNetwork {
    pub prefix: IpNet,
    /// Latitude and longitude.
    pub location: [f64; 2],
}

/// An entry of the networks table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("networks entry {prefix:?} is invalid: {reason}")]
pub struct NetworkError {
    pub prefix: String,
    pub reason: String,
}

/// The client networks, longest prefix first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkTable {
    networks: Vec<ClientNetwork>,
}

impl NetworkTable {
    /// Checks and orders `entries`: a prefix with host bits set (`127.0.1.1/24`) or a location
    /// off the globe is refused, naming the entry.
    pub fn new(entries: &[Network]) -> Result<Self, NetworkError> {
        let mut networks = Vec::with_capacity(entries.len());
        for entry in entries {
            let invalid = |reason: String| NetworkError {
                prefix: entry.prefix.clone(),
                reason,
            };
            let prefix: IpNet = entry
                .prefix
                .trim()
                .parse()
                .map_err(|e: ipnet::AddrParseError| invalid(e.to_string()))?;
            if prefix != prefix.trunc() {
                return Err(invalid(format!(
                    "host bits set; did you mean {}?",
                    prefix.trunc()
                )));
            }
            if !valid_location(entry.location) {
                return Err(invalid(format!(
                    "location {:?} is not a latitude/longitude pair",
                    entry.location
                )));
            }
            networks.push(ClientNetwork {
                prefix,
                location: entry.location,
            });
        }
        // Stable: of two equal prefixes the first listed wins.
        networks.sort_by_key(|n| std::cmp::Reverse(n.prefix.prefix_len()));
        Ok(Self { networks })
    }

    /// Every network, longest prefix first; indices into this slice name a network.
    pub fn networks(&self) -> &[ClientNetwork] {
        &self.networks
    }

    /// The longest prefix that contains `addr` and is no longer than `max_prefix` (the source
    /// prefix an EDNS Client Subnet reveals; 128 for a full address), with its index.
    pub fn locate(&self, addr: IpAddr, max_prefix: u8) -> Option<(usize, &ClientNetwork)> {
        let addr = addr.to_canonical();
        self.networks
            .iter()
            .enumerate()
            .find(|(_, n)| n.prefix.prefix_len() <= max_prefix && n.prefix.contains(&addr))
    }

    /// The index of the network written as `prefix`.
    pub fn position(&self, prefix: &str) -> Option<usize> {
        let prefix: IpNet = prefix.trim().parse().ok()?;
        self.networks.iter().position(|n| n.prefix == prefix)
    }
}

/// Great-circle distance in kilometres between two latitude/longitude points.
pub fn distance_km(a: [f64; 2], b: [f64; 2]) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lon1) = (a[0].to_radians(), a[1].to_radians());
    let (lat2, lon2) = (b[0].to_radians(), b[1].to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

pub(crate) fn valid_location(loc: [f64; 2]) -> bool {
    loc[0].is_finite()
        && loc[1].is_finite()
        && (-90.0..=90.0).contains(&loc[0])
        && (-180.0..=180.0).contains(&loc[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prefix: &str, location: [f64; 2]) -> Network {
        Network {
            prefix: prefix.into(),
            location,
        }
    }

    #[test]
    fn the_longest_prefix_wins_within_what_the_client_revealed() {
        let table = NetworkTable::new(&[
            entry("127.0.0.0/8", [0.0, 0.0]),
            entry("127.0.2.0/24", [40.7, -74.0]),
        ])
        .unwrap();
        let addr: IpAddr = "127.0.2.9".parse().unwrap();
        assert_eq!(table.locate(addr, 128).unwrap().1.location, [40.7, -74.0]);
        // A /16 client subnet cannot select a /24.
        assert_eq!(table.locate(addr, 16).unwrap().1.location, [0.0, 0.0]);
        assert!(table.locate("10.0.0.1".parse().unwrap(), 128).is_none());
        // IPv4-mapped IPv6 sources are their IPv4 address.
        let mapped: IpAddr = "::ffff:127.0.2.9".parse().unwrap();
        assert_eq!(table.locate(mapped, 128).unwrap().1.location, [40.7, -74.0]);
        assert_eq!(table.position("127.0.2.0/24"), Some(0));
    }

    #[test]
    fn host_bits_and_impossible_locations_are_refused_by_name() {
        let error = NetworkTable::new(&[entry("127.0.1.1/24", [0.0, 0.0])]).unwrap_err();
        assert!(error.reason.contains("127.0.1.0/24"), "{error}");
        let error = NetworkTable::new(&[entry("127.0.1.0/24", [95.0, 0.0])]).unwrap_err();
        assert_eq!(error.prefix, "127.0.1.0/24");
        assert!(NetworkTable::new(&[entry("nowhere", [0.0, 0.0])]).is_err());
    }
}
