//! `outpost lab`: builds the multi-host lab (one network namespace per node, as root), runs
//! its failures one after another and prints what each measured; removes the lab at the end,
//! on an error and on Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use outpost_lab::{Lab, relay::Impairment, scenarios};

#[derive(Args)]
pub struct LabArgs {
    /// Working directory for the lab's topology, content, state and node logs; default: a
    /// new temporary directory, removed afterwards.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Latency added to the bad link, in milliseconds.
    #[arg(long, default_value_t = 200)]
    delay_ms: u64,
    /// Share of connections the bad link drops, in percent.
    #[arg(long, default_value_t = 20)]
    drop_percent: u8,
}

pub async fn run(args: LabArgs) -> anyhow::Result<()> {
    if !outpost_lab::is_root() {
        anyhow::bail!("outpost lab makes network namespaces: run it as root");
    }
    let scenarios = tokio::task::spawn_blocking(move || run_scenarios(args));
    tokio::select! {
        result = scenarios => result.context("the lab's thread")?,
        () = interrupted() => {
            eprintln!("interrupted: removing the lab");
            outpost_lab::remove_this_process_lab();
            std::process::exit(130);
        }
    }
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn run_scenarios(args: LabArgs) -> anyhow::Result<()> {
    let temporary;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir().context("a temporary directory")?;
            temporary.path().to_owned()
        }
    };
    let binary = std::env::current_exe().context("finding the outpost executable")?;
    println!("building the lab in {}", dir.display());
    let lab = Lab::start(&binary, &dir)?;
    println!("lab up: 9 nodes and 4 client hosts, each in its own network namespace");

    let edge = scenarios::edge_failover(&lab, "edge-ams", "client-eu")?;
    println!(
        "edge failover: killed {}; Europe's DNS answer moved to {} in {} ms and its anycast route to {} in {} ms (health interval x fall = {} ms); after its restart both came back in {} ms and {} ms",
        edge.edge,
        edge.dns_moved_to,
        edge.dns_moved.as_millis(),
        edge.anycast_moved_to,
        edge.anycast_moved.as_millis(),
        edge.horizon.as_millis(),
        edge.dns_back.as_millis(),
        edge.anycast_back.as_millis()
    );

    let parent = scenarios::parent_failover(&lab, "parent-eu")?;
    println!(
        "parent failover: killed {} holding {} of {} objects; two other edges fetched all of them with {} failures, and the origin was asked {} times (once per moved object); after its restart it got objects again in {} ms",
        parent.parent,
        parent.on_killed_parent,
        parent.objects,
        parent.failed,
        parent.origin_fetches,
        parent.back_in.as_millis()
    );

    let origin = scenarios::origin_failure(&lab)?;
    println!(
        "origin failure: {} of {} stale cached objects served (stale-if-error); never-cached objects got {:?}; after its restart a new object was served: {}",
        origin.cached_served, origin.cached, origin.uncached_statuses, origin.served_after_restart
    );

    let impairment = Impairment {
        delay: std::time::Duration::from_millis(args.delay_ms),
        drop: f64::from(args.drop_percent.min(100)) / 100.0,
    };
    let link = scenarios::bad_link(&lab, "edge-ams", "client-eu", "parent-eu", impairment)?;
    println!(
        "bad link {} -> {} (+{} ms, {}% of connections dropped): misses took {:.1} ms before, {:.1} ms once shifted (last miss over the bad link {} ms after it went bad; {} failed), {:.1} ms after; objects returned {} ms after it healed",
        link.edge,
        link.parent,
        args.delay_ms,
        args.drop_percent,
        link.miss_before.as_secs_f64() * 1e3,
        link.miss_during.as_secs_f64() * 1e3,
        link.shifted_in.as_millis(),
        link.failed_during,
        link.miss_after.as_secs_f64() * 1e3,
        link.returned_in.as_millis()
    );

    let direct = scenarios::direct_to_origin(&lab, "edge-ams", "client-eu", impairment)?;
    println!(
        "bad links {} -> both parents (+{} ms, {}% dropped), overlay.direct_origin on: misses took {:.1} ms before, {:.1} ms straight from the origin (the first {} ms after the links went bad; {} failed), {:.1} ms through the parents again {} ms after they healed",
        direct.edge,
        args.delay_ms,
        args.drop_percent,
        direct.miss_before.as_secs_f64() * 1e3,
        direct.miss_direct.as_secs_f64() * 1e3,
        direct.direct_in.as_millis(),
        direct.failed,
        direct.miss_after.as_secs_f64() * 1e3,
        direct.parents_again_in.as_millis()
    );

    let reach = scenarios::purge_reach(&lab, 100)?;
    println!(
        "purge reach: {} purges through the control node to all {} edges and parents: to the last node p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        reach.purges,
        reach.nodes,
        reach.p50.as_secs_f64() * 1e3,
        reach.p99.as_secs_f64() * 1e3,
        reach.max.as_secs_f64() * 1e3
    );

    for how in [scenarios::Cut::Link, scenarios::Cut::FromControl] {
        let cut = scenarios::purge_with_edge_cut_off(&lab, "edge-sin", how)?;
        println!(
            "purge with {} cut off ({}): acknowledged in {} ms ({}: {}); {} requests over all edges, {} answered, {} of them after the acknowledgement, {} stale; the cut edge then answered {} ({} stale)",
            cut.cut_edge,
            match how {
                scenarios::Cut::Link => "its link down, then up again",
                scenarios::Cut::FromControl =>
                    "from the control node only, still serving its clients",
            },
            cut.acknowledged.as_millis(),
            cut.cut_edge,
            cut.cut_edge_outcome,
            cut.requests,
            cut.answered,
            cut.after_ack,
            cut.stale_after_ack,
            cut.cut_edge_after,
            cut.cut_edge_stale
        );
        if how == scenarios::Cut::FromControl {
            println!(
                "  {} learned from its parents that it missed the purge: its last stale answer began {} ms after the purge was sent ({} stale before the acknowledgement)",
                cut.cut_edge,
                cut.cut_edge_last_stale.map_or(0, |d| d.as_millis()),
                cut.cut_edge_stale_after_purge
            );
        }
    }
    drop(lab);
    println!("lab removed");
    Ok(())
}
