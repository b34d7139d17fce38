//! `outpost purge`: sends a purge to the admin listener of every edge and parent.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use std::time::Duration;

use http_body_util::BodyExt;
use outpost_cache::{HttpClient, UpstreamTimeouts};
use outpost_server::admin::{PurgeReport, PurgeRequest};

use crate::config::Topology;

#[derive(Args)]
pub struct PurgeArgs {
    /// URLs to purge: `http://host/path` for one host, or `/path` for that path on every host.
    #[arg(required_unless_present = "tag")]
    urls: Vec<String>,
    /// Purge every object tagged TAG (Surrogate-Key / Cache-Tag); repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    tag: Vec<String>,
    /// Mark stale instead of removing (stale-while-revalidate and stale-if-error still apply).
    #[arg(long)]
    soft: bool,
    /// Topology whose edges and parents to purge; default: the built-in topology.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Admin URLs to purge instead of the topology's nodes (`http://host:port`); repeatable.
    #[arg(long = "admin", value_name = "URL")]
    admin: Vec<String>,
    /// CA that signed the admin certificates, for https admin URLs; default: the local CA in
    /// the config's state directory.
    #[arg(long, value_name = "PEM")]
    cacert: Option<PathBuf>,
    /// Bearer token; default: the topology's admin.token [env: OUTPOST_ADMIN_TOKEN].
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn run(args: PurgeArgs) -> anyhow::Result<()> {
    let topology = match &args.config {
        Some(path) => Topology::load(path)?,
        None => Topology::default_topology(),
    };
    let scheme = if topology.admin.tls { "https" } else { "http" };
    let targets: Vec<(String, String)> = if args.admin.is_empty() {
        topology
            .edges
            .iter()
            .map(|e| (e.name.clone(), format!("{scheme}://{}", e.admin)))
            .chain(
                topology
                    .parents
                    .iter()
                    .map(|p| (p.name.clone(), format!("{scheme}://{}", p.admin))),
            )
            .collect()
    } else {
        args.admin
            .iter()
            .map(|url| (url.clone(), url.trim_end_matches('/').to_owned()))
            .collect()
    };
    let token = args
        .token
        .or(topology.admin.token.clone())
        .context("no admin token: pass --token or set admin.token in the config")?;
    let request = PurgeRequest {
        urls: args.urls,
        tags: args.tag,
        soft: args.soft,
    };
    let body = serde_json::to_vec(&request)?;
    let cacert = args
        .cacert
        .unwrap_or_else(|| topology.tls.state_dir.join("ca.pem"));
    let client = admin_client(&cacert)?;
    let mut failures = 0;
    let mut total = 0;
    for (name, admin) in &targets {
        match send(&client, admin, &token, body.clone()).await {
            Ok((status, bytes)) if status.is_success() => {
                let report: PurgeReport = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{name}: reading the purge report"))?;
                total += report.purged;
                println!("{}: purged {}", report.node, report.purged);
            }
            Ok((status, bytes)) => {
                failures += 1;
                eprintln!(
                    "{name}: purge refused: {status} {}",
                    String::from_utf8_lossy(&bytes).trim()
                );
            }
            Err(error) => {
                failures += 1;
                eprintln!("{name}: purge failed: {error:#}");
            }
        }
    }
    println!(
        "purged {total} objects on {} of {} nodes",
        targets.len() - failures,
        targets.len()
    );
    if failures > 0 {
        bail!("{failures} of {} nodes did not purge", targets.len());
    }
    Ok(())
}

/// A client for admin listeners: plain HTTP, or HTTPS verified against `cacert` when it exists.
fn admin_client(cacert: &std::path::Path) -> anyhow::Result<HttpClient> {
    let timeouts = UpstreamTimeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(10),
    };
    if !cacert.exists() {
        return Ok(HttpClient::new(timeouts));
    }
    let config = crate::tls::trusting(cacert)?.with_no_client_auth();
    Ok(HttpClient::with_tls(timeouts, config))
}

async fn send(
    client: &HttpClient,
    admin: &str,
    token: &str,
    body: Vec<u8>,
) -> anyhow::Result<(http::StatusCode, bytes::Bytes)> {
    let base: http::Uri = admin
        .parse()
        .with_context(|| format!("{admin}: not a URL"))?;
    let request = http::Request::post("/purge")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::HOST,
            base.authority().map_or("admin", |a| a.as_str()),
        )
        .body(outpost_server::body::full(body))?;
    let response = client.send_to(&base, request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}
