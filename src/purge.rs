//! `outpost purge`: sends a purge to the admin listener of every edge and parent.

use anyhow::{Context, bail};
use clap::Args;
use outpost_server::admin::{PurgeReport, PurgeRequest};

use crate::admin::{AdminClient, Nodes};

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
    #[command(flatten)]
    admin: crate::admin::AdminArgs,
}

pub async fn run(args: PurgeArgs) -> anyhow::Result<()> {
    let admin = AdminClient::new(&args.admin, Nodes::EdgesAndParents)?;
    let request = PurgeRequest {
        urls: args.urls,
        tags: args.tag,
        soft: args.soft,
    };
    let body = serde_json::to_vec(&request)?;
    let targets = admin.targets();
    let mut failures = 0;
    let mut total = 0;
    for (name, url) in targets {
        match admin
            .send(
                url,
                http::Method::POST,
                "/purge",
                "application/json",
                body.clone(),
            )
            .await
        {
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
