//! The dashboard's place in a topology: which nodes it reads (at their bound addresses under
//! `outpost up`, at their configured ones when it runs alone) and where it draws them.

use std::net::SocketAddr;

use outpost_dashboard::view::{Layout, Region, Role as Drawn, Source};

use crate::topology::Topology;
use crate::{NodeAddrs, Role};

fn drawn(role: Role) -> Option<Drawn> {
    Some(match role {
        Role::Origin => Drawn::Origin,
        Role::Parent => Drawn::Parent,
        Role::Edge => Drawn::Edge,
        Role::Control => Drawn::Control,
        Role::Dns => Drawn::Dns,
        Role::Anycast => Drawn::Anycast,
        Role::Dashboard => return None,
    })
}

/// The layout of `topology` over `nodes` (what `outpost up` started).
pub fn layout(topology: &Topology, nodes: &[NodeAddrs]) -> Layout {
    let location = |name: &str| {
        topology
            .edges
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.location)
            .or_else(|| {
                topology
                    .parents
                    .iter()
                    .find(|p| p.name == name)
                    .and_then(|p| p.location)
            })
    };
    let sources = nodes
        .iter()
        .filter_map(|node| {
            Some(Source {
                name: node.name.clone(),
                role: drawn(node.role)?,
                admin: node.admin_url().and_then(|url| url.parse().ok()),
                location: location(&node.name),
            })
        })
        .collect();
    let regions = topology
        .networks()
        .map(|table| {
            table
                .networks()
                .iter()
                .map(|n| Region {
                    prefix: n.prefix.to_string(),
                    location: n.location,
                })
                .collect()
        })
        .unwrap_or_default();
    let horizon = topology
        .dns
        .as_ref()
        .map(|d| d.health.decision_horizon())
        .or_else(|| {
            topology
                .anycast
                .as_ref()
                .map(|a| a.health.decision_horizon())
        })
        .unwrap_or_default();
    Layout {
        nodes: sources,
        regions,
        health_horizon_ms: u64::try_from(horizon.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The nodes of `topology` at their configured addresses, as a lone dashboard reads them.
pub fn configured_nodes(topology: &Topology) -> Vec<NodeAddrs> {
    let tls = topology.admin.tls;
    let node = |name: &str, role, admin: Option<SocketAddr>, admin_tls| NodeAddrs {
        name: name.to_owned(),
        role,
        data: admin.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        data_tls: false,
        admin,
        admin_tls,
        https: None,
    };
    let mut nodes = vec![node(
        &topology.origin.name,
        Role::Origin,
        topology.origin.admin.map(|a| topology.origin.reached(a)),
        tls,
    )];
    for parent in &topology.parents {
        nodes.push(node(
            &parent.name,
            Role::Parent,
            Some(parent.reached(parent.admin)),
            tls,
        ));
    }
    for edge in &topology.edges {
        nodes.push(node(
            &edge.name,
            Role::Edge,
            Some(edge.reached(edge.admin)),
            tls,
        ));
    }
    if let Some(control) = &topology.control {
        nodes.push(node(
            &control.name,
            Role::Control,
            Some(control.reached()),
            tls,
        ));
    }
    if let Some(dns) = &topology.dns {
        nodes.push(node("dns", Role::Dns, dns.admin, false));
    }
    if let Some(anycast) = &topology.anycast {
        nodes.push(node("anycast", Role::Anycast, anycast.admin, false));
    }
    nodes
}
