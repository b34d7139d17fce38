//! `outpost health NODE`: one health probe of a node of a topology, for container health
//! checks (an image built `FROM scratch` has no curl): the admin listener's `/health` of the
//! origin, a parent or an edge (over TLS against the local CA when the admin listeners serve
//! TLS), the DNS's admin `/health`, or the anycast address's `/_outpost/health`, which the
//! router forwards to an edge.

use std::time::Duration;

use anyhow::Context;
use outpost_cache::UpstreamTimeouts;

use crate::HealthArgs;

pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let topology = crate::load_or_default(args.config.as_deref())?;
    let admin_scheme = if topology.admin.tls { "https" } else { "http" };
    let url = if args.node == "dns" {
        let admin = topology
            .dns
            .as_ref()
            .and_then(|dns| dns.admin)
            .context("the topology's [dns] has no admin listener to probe")?;
        format!("http://{admin}/health")
    } else if args.node == "anycast" {
        let anycast = topology
            .anycast
            .as_ref()
            .context("the topology has no [anycast]")?;
        format!(
            "http://{}:{}{}",
            anycast.address,
            anycast.http_port,
            outpost_server::HEALTH_PATH
        )
    } else {
        let (_, admin) = topology
            .admin_addresses()
            .into_iter()
            .find(|(name, _)| *name == args.node)
            .with_context(|| format!("no node named {:?} in the topology", args.node))?;
        format!("{admin_scheme}://{admin}/health")
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let timeouts = UpstreamTimeouts {
        connect: timeout,
        first_byte: timeout,
    };
    let client = crate::admin::client_trusting(&topology.tls.state_dir.join("ca.pem"), timeouts)?;
    let uri: http::Uri = url.parse().with_context(|| format!("{url}: not a URL"))?;
    let request = http::Request::get(uri.path())
        .header(
            http::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .body(outpost_server::body::empty())?;
    let response = client
        .send_to(&uri, request)
        .await
        .with_context(|| format!("{}: {url}", args.node))?;
    if !response.status().is_success() {
        anyhow::bail!("{}: {url} answered {}", args.node, response.status());
    }
    println!("{}: up ({url})", args.node);
    Ok(())
}
