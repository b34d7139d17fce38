//! `outpost purge`: sends a purge to the admin listener of every edge and parent.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
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
    /// Bearer token; default: the topology's admin.token [env: OUTPOST_ADMIN_TOKEN].
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn run(args: PurgeArgs) -> anyhow::Result<()> {
    let topology = match &args.config {
        Some(path) => Topology::load(path)?,
        None => Topology::default_topology(),
    };
    let targets: Vec<(String, String)> = if args.admin.is_empty() {
        topology
            .edges
            .iter()
            .map(|e| (e.name.clone(), format!("http://{}", e.admin)))
            .chain(
                topology
                    .parents
                    .iter()
                    .map(|p| (p.name.clone(), format!("http://{}", p.admin))),
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
        .or(topology.admin.token)
        .context("no admin token: pass --token or set admin.token in the config")?;
    let request = PurgeRequest {
        urls: args.urls,
        tags: args.tag,
        soft: args.soft,
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let mut failures = 0;
    let mut total = 0;
    for (name, admin) in &targets {
        let result = client
            .post(format!("{admin}/purge"))
            .bearer_auth(&token)
            .json(&request)
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                let report: PurgeReport = response
                    .json()
                    .await
                    .with_context(|| format!("{name}: reading the purge report"))?;
                total += report.purged;
                println!("{}: purged {}", report.node, report.purged);
            }
            Ok(response) => {
                failures += 1;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                eprintln!("{name}: purge refused: {status} {}", text.trim());
            }
            Err(error) => {
                failures += 1;
                eprintln!("{name}: purge failed: {error}");
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
