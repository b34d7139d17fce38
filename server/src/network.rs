//! Client networks: what per-client limits count in (connections per network in
//! [`crate::admission`], DNS responses per network in the DNS server), so that one host cannot
//! dodge a limit by using every address of its prefix.

use std::net::IpAddr;

use ipnet::IpNet;

/// The network of `addr`: its first `ipv4_prefix_len` bits (IPv4, IPv4-mapped IPv6 included)
/// or `ipv6_prefix_len` bits. A length past the family's width keeps the whole address.
pub fn client_network(addr: IpAddr, ipv4_prefix_len: u8, ipv6_prefix_len: u8) -> IpNet {
    let addr = addr.to_canonical();
    let len = if addr.is_ipv4() {
        ipv4_prefix_len
    } else {
        ipv6_prefix_len
    };
    IpNet::new(addr, len)
        .map(|net| net.trunc())
        .unwrap_or_else(|_| IpNet::from(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_v4_counts_as_v4_and_long_prefixes_keep_the_address() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.77".parse().unwrap();
        assert_eq!(client_network(v4, 24, 48).to_string(), "203.0.113.0/24");
        assert_eq!(client_network(mapped, 24, 48).to_string(), "203.0.113.0/24");
        let v6: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        assert_eq!(client_network(v6, 24, 48).to_string(), "2001:db8:1::/48");
        assert_eq!(client_network(v4, 40, 200).to_string(), "203.0.113.77/32");
    }
}
