//! `outpost purge`: through the topology's control node when it has one (numbered, pushed to
//! every edge and parent at once, acknowledged when no node can serve what it removed), else
//! sent to the admin listener of every edge and parent at once.

use anyhow::{Context, bail};
use clap::Args;
use outpost_node::control::FleetPurgeReport;
use outpost_server::admin::{PurgeReport, PurgeRequest};

use crate::admin::{AdminClient, Nodes};

#[derive(Args)]
pub struct PurgeArgs {
    /// URLs to purge: `http://host/path` for one host, or `/path` for that path on every host.
    #[arg(required_unless_present_any = ["tag", "all"])]
    urls: Vec<String>,
    /// Purge every object tagged TAG (Surrogate-Key / Cache-Tag); repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    tag: Vec<String>,
    /// Purge every object of every node.
    #[arg(long, conflicts_with_all = ["urls", "tag"])]
    all: bool,
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
        all: args.all,
        seq: None,
    };
    let body = serde_json::to_vec(&request)?;
    if let Some(control) = admin.control() {
        return through_control(&admin, control, body).await;
    }
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

async fn through_control(admin: &AdminClient, control: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let (status, reply) = admin
        .send(
            control,
            http::Method::POST,
            "/fleet/purge",
            "application/json",
            body,
        )
        .await
        .with_context(|| format!("the control node at {control}"))?;
    if !status.is_success() {
        bail!(
            "the control node refused the purge: {status} {}",
            String::from_utf8_lossy(&reply).trim()
        );
    }
    let report: FleetPurgeReport =
        serde_json::from_slice(&reply).context("reading the control node's report")?;
    let mut total = 0;
    for node in &report.nodes {
        total += node.purged.unwrap_or(0);
        match (&node.purged, &node.error) {
            (Some(purged), _) => println!("{}: purged {purged} in {:.1} ms", node.node, node.ms),
            (None, error) => println!(
                "{}: {} after {:.0} ms (push failed: {})",
                node.node,
                node.outcome,
                node.ms,
                error.as_deref().unwrap_or("-")
            ),
        }
    }
    match report.last_node_ms {
        Some(ms) => println!(
            "purge {} acknowledged: {total} objects, every node in {ms:.1} ms",
            report.seq
        ),
        None => println!(
            "purge {} acknowledged in {:.0} ms: {total} objects; nodes that missed it revalidate until they catch up",
            report.seq, report.acknowledged_ms
        ),
    }
    Ok(())
}
