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
    let mut total = 0;
    let failures = admin
        .send_all(
            http::Method::POST,
            "/purge",
            "application/json",
            body,
            |name, reply| {
                let report: PurgeReport = serde_json::from_slice(&reply)
                    .with_context(|| format!("{name}: reading the purge report"))?;
                total += report.purged;
                println!("{}: purged {}", report.node, report.purged);
                Ok(())
            },
        )
        .await?;
    let targets = admin.targets();
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
