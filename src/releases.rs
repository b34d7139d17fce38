//! `outpost push`: publish a directory to the CDN as one release, in two phases (upload and
//! stage on every target, then commit on every target), and `outpost releases` to list, roll
//! back and remove releases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use futures_util::{StreamExt, TryStreamExt};
use http::{Method, StatusCode};
use outpost_releases::admin::{DamageReport, ReleaseSummary};
use outpost_releases::{Digest, FileEntry, Manifest, Site, Switch};

use crate::admin::{AdminArgs, AdminClient, Nodes};

/// A file beside another, named `FILE.cache-control`, gives FILE's Cache-Control.
const SIDECAR: &str = ".cache-control";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Targets {
    /// Every parent; edges pull the release through their caches.
    Parents,
    /// Every parent and every edge; edges serve it from their own disks.
    Edges,
}

#[derive(Args)]
pub struct PushArgs {
    /// The directory to publish; its files are served under the prefix with the same
    /// relative paths (`DIR/css/a.css` as `PREFIX/css/a.css`, `index.html` for `PREFIX`).
    dir: PathBuf,
    /// The URL path the release is served under: starts and ends with '/'.
    #[arg(long, default_value = "/")]
    prefix: String,
    /// Serve it for this host only (default: every host).
    #[arg(long)]
    host: Option<String>,
    /// The release's name (default: `r-` and the start of the manifest's digest, so pushing
    /// the same content twice is one release).
    #[arg(long)]
    name: Option<String>,
    /// Which nodes hold the release.
    #[arg(long, value_enum, default_value = "parents")]
    to: Targets,
    /// Cache-Control for every file that has no `FILE.cache-control` beside it (default:
    /// `public, max-age=0, must-revalidate`).
    #[arg(long = "cache-control", value_name = "VALUE")]
    cache_control: Option<String>,
    /// Uploads in flight per node.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// With `--admin`: an edge whose cache forgets the site after a push to parents only
    /// (default with a topology: all its edges); repeatable.
    #[arg(long = "purge-edge", value_name = "URL")]
    purge_edges: Vec<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args)]
pub struct ReleasesArgs {
    #[command(subcommand)]
    command: ReleasesCommand,
}

#[derive(Subcommand)]
enum ReleasesCommand {
    /// Show the releases each parent and edge holds, and which are live.
    List(OneAdmin),
    /// Take a live release off its site everywhere and put back the one it replaced.
    Rollback(Named),
    /// Delete a release that is not live, and the objects only it used, everywhere.
    Remove(Named),
}

#[derive(Args)]
struct OneAdmin {
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args)]
struct Named {
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// One file to publish: where it is and what the manifest says of it.
struct Local {
    path: PathBuf,
    entry: FileEntry,
}

pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    let files = scan(&args.dir, args.cache_control.as_deref())?;
    let manifest = Manifest {
        site: Site {
            host: args.host.clone(),
            prefix: args.prefix.clone(),
        },
        files: files
            .iter()
            .map(|(path, local)| (path.clone(), local.entry.clone()))
            .collect(),
    };
    manifest.check()?;
    let manifest_json = serde_json::to_vec(&manifest)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("r-{}", &Digest::of(&manifest_json).to_string()[..12]));
    outpost_releases::check_name(&name)?;
    let nodes = match args.to {
        Targets::Parents => Nodes::Parents,
        Targets::Edges => Nodes::EdgesAndParents,
    };
    let admin = AdminClient::new(&args.admin, nodes)?;
    if admin.targets().is_empty() {
        bail!("no node to push to: the topology has none, and no --admin was given");
    }
    let objects: BTreeMap<Digest, &Local> = files.values().map(|l| (l.entry.digest, l)).collect();
    println!(
        "{name}: {} files ({} objects, {} bytes) for {} on {} nodes",
        manifest.files.len(),
        objects.len(),
        manifest.bytes(),
        manifest.site,
        admin.targets().len()
    );

    // Which nodes hold a release of this name already: a failed push withdraws it only from
    // the others.
    let path = format!("/releases/{name}");
    let held: Vec<bool> = futures_util::future::join_all(admin.targets().iter().map(|(_, url)| {
        let (admin, path) = (&admin, &path);
        async move {
            matches!(
                admin.send(url, Method::GET, path, "application/json", Vec::new()).await,
                Ok((status, _)) if status.is_success()
            )
        }
    }))
    .await;

    // Phase one: every object on every node, then the manifest staged (and checked) on each.
    let staged = futures_util::future::join_all(admin.targets().iter().map(|(node, url)| {
        stage_on(
            &admin,
            node,
            url,
            &objects,
            &name,
            &manifest_json,
            args.parallel,
        )
    }))
    .await;
    let failed: Vec<String> = staged
        .iter()
        .zip(admin.targets())
        .filter_map(|(outcome, (node, _))| outcome.as_ref().err().map(|e| format!("{node}: {e:#}")))
        .collect();
    if !failed.is_empty() {
        // Nothing was committed anywhere: the live release stays as it was on every node.
        for ((outcome, (_, url)), held) in staged.iter().zip(admin.targets()).zip(&held) {
            if outcome.is_ok() && !held {
                let path = format!("/releases/{name}");
                let _ = admin
                    .send(url, Method::DELETE, &path, "text/plain", Vec::new())
                    .await;
            }
        }
        bail!(
            "{name} not committed on any node; staging failed:\n  {}",
            failed.join("\n  ")
        );
    }

    // Phase two: commit everywhere at once.
    let started = Instant::now();
    let epoch_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    println!(
        "{name}: committing on {} nodes at {epoch_ms} (ms since the epoch)",
        admin.targets().len()
    );
    let path = format!("/releases/{name}/commit");
    let commits = futures_util::future::join_all(admin.targets().iter().map(|(node, url)| {
        let path = &path;
        let admin = &admin;
        async move {
            let outcome = admin
                .send(url, Method::POST, path, "application/json", Vec::new())
                .await;
            (node, outcome, started.elapsed())
        }
    }))
    .await;
    let mut failures = 0;
    let mut was = None;
    for (node, outcome, took) in commits {
        match outcome {
            Ok((status, body)) if status.is_success() => {
                let switch: Switch = serde_json::from_slice(&body).unwrap_or(Switch {
                    site: manifest.site.to_string(),
                    live: Some(name.clone()),
                    was: None,
                    pruned: Vec::new(),
                });
                was = was.or(switch.was);
                println!("{node}: {name} live ({} ms)", took.as_millis());
            }
            Ok((status, body)) => {
                failures += 1;
                eprintln!(
                    "{node}: commit refused: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                );
            }
            Err(error) => {
                failures += 1;
                eprintln!("{node}: commit failed: {error:#}");
            }
        }
    }
    if failures > 0 {
        bail!(
            "{name} committed on {} of {} nodes; run the push again to finish",
            admin.targets().len() - failures,
            admin.targets().len()
        );
    }
    if args.to == Targets::Parents {
        purge_edges(&args, &manifest.site).await?;
    }
    match was {
        Some(was) => println!("{name} replaced {was} for {}", manifest.site),
        None => println!("{name} is live for {}", manifest.site),
    }
    Ok(())
}

/// Uploads the objects `node` lacks, then stages the manifest there.
async fn stage_on(
    admin: &AdminClient,
    node: &str,
    url: &str,
    objects: &BTreeMap<Digest, &Local>,
    name: &str,
    manifest: &[u8],
    parallel: usize,
) -> anyhow::Result<()> {
    let uploaded: Vec<u64> = futures_util::stream::iter(objects.iter())
        .map(|(digest, local)| upload(admin, url, digest, &local.path))
        .buffer_unordered(parallel.max(1))
        .try_collect()
        .await?;
    let sent: u64 = uploaded.iter().sum();
    let path = format!("/releases/{name}");
    let (status, body) = admin
        .send(
            url,
            Method::PUT,
            &path,
            "application/json",
            manifest.to_vec(),
        )
        .await?;
    if status == StatusCode::CONFLICT
        && let Ok(report) = serde_json::from_slice::<DamageReport>(&body)
    {
        bail!(
            "{}{}",
            report.error,
            if report.corrupt.is_empty() {
                String::new()
            } else {
                format!(" (corrupt: {})", list(&report.corrupt))
            }
        );
    }
    if !status.is_success() {
        bail!(
            "stage refused: {status} {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    println!(
        "{node}: staged, {} of {} objects uploaded ({sent} bytes)",
        uploaded.iter().filter(|&&n| n > 0).count(),
        objects.len()
    );
    Ok(())
}

fn list(digests: &[Digest]) -> String {
    digests
        .iter()
        .map(|d| d.to_string()[..12].to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends one object unless the node has it; returns the bytes sent.
async fn upload(
    admin: &AdminClient,
    url: &str,
    digest: &Digest,
    path: &Path,
) -> anyhow::Result<u64> {
    let object = format!("/releases/objects/{digest}");
    let (status, _) = admin
        .send(
            url,
            Method::HEAD,
            &object,
            "application/octet-stream",
            Vec::new(),
        )
        .await?;
    if status == StatusCode::OK {
        return Ok(0);
    }
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let length = file.metadata().await?.len();
    let body =
        outpost_server::body::stream(outpost_server::body::file_range(file, 0, length).await?);
    let (status, reply) = admin
        .send_body(url, Method::PUT, &object, "application/octet-stream", body)
        .await?;
    if !status.is_success() {
        bail!(
            "{} refused: {status} {}",
            path.display(),
            String::from_utf8_lossy(&reply).trim()
        );
    }
    Ok(length.max(1))
}

/// After a push to parents only: the edges' caches forget the site, so they fetch the new
/// release from the parents.
async fn purge_edges(args: &PushArgs, site: &Site) -> anyhow::Result<()> {
    let edges = if args.admin.admin.is_empty() {
        AdminClient::new(&args.admin, Nodes::Edges)?
    } else if args.purge_edges.is_empty() {
        return Ok(());
    } else {
        let explicit = AdminArgs {
            config: args.admin.config.clone(),
            admin: args.purge_edges.clone(),
            cacert: args.admin.cacert.clone(),
            token: args.admin.token.clone(),
        };
        AdminClient::new(&explicit, Nodes::Edges)?
    };
    let request = outpost_server::admin::PurgeRequest {
        urls: Vec::new(),
        tags: vec![site.tag()],
        soft: false,
        ..Default::default()
    };
    let failures = edges
        .send_all(
            Method::POST,
            "/purge",
            "application/json",
            serde_json::to_vec(&request)?,
            |_, _| Ok(()),
        )
        .await?;
    if failures > 0 {
        eprintln!(
            "{failures} edges did not purge {}; they serve the old release until their copies expire",
            site.tag()
        );
    }
    Ok(())
}

/// Every file under `dir` (hidden files and sidecars left out), by path relative to it.
fn scan(dir: &Path, cache_control: Option<&str>) -> anyhow::Result<BTreeMap<String, Local>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .with_context(|| format!("reading the directory {}", current.display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                bail!("{}: file names must be UTF-8", path.display());
            };
            if file_name.starts_with('.') || file_name.ends_with(SIDECAR) {
                continue;
            }
            let metadata =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            if metadata.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let (digest, size) = outpost_releases::of_file(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let sidecar = path.with_file_name(format!("{file_name}{SIDECAR}"));
            let own = match std::fs::read_to_string(&sidecar) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    return Err(error).with_context(|| format!("reading {}", sidecar.display()));
                }
            };
            let entry = FileEntry {
                digest,
                size,
                content_type: outpost_origin::content_type(&path)
                    .to_str()
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                cache_control: own.or_else(|| cache_control.map(str::to_owned)),
            };
            files.insert(relative, Local { path, entry });
        }
    }
    if files.is_empty() {
        bail!("{}: no files to publish", dir.display());
    }
    Ok(files)
}

pub async fn releases(args: ReleasesArgs) -> anyhow::Result<()> {
    match args.command {
        ReleasesCommand::List(args) => list_releases(args).await,
        ReleasesCommand::Rollback(args) => switch(args, "rollback").await,
        ReleasesCommand::Remove(args) => switch(args, "remove").await,
    }
}

async fn list_releases(args: OneAdmin) -> anyhow::Result<()> {
    let admin = AdminClient::new(&args.admin, Nodes::EdgesAndParents)?;
    let failures = admin
        .send_all(
            Method::GET,
            "/releases",
            "application/json",
            Vec::new(),
            |node, body| {
                let releases: Vec<ReleaseSummary> = serde_json::from_slice(&body)
                    .with_context(|| format!("{node}: reading the release list"))?;
                if releases.is_empty() {
                    println!("{node}: no releases");
                }
                for r in releases {
                    let phase = serde_json::to_value(r.phase).ok();
                    let phase = phase.as_ref().and_then(|p| p.as_str()).unwrap_or("?");
                    println!(
                        "{node}: {} {phase} {} files={} bytes={}",
                        r.name, r.site, r.files, r.bytes
                    );
                }
                Ok(())
            },
        )
        .await?;
    if failures > 0 {
        bail!("{failures} nodes did not answer");
    }
    Ok(())
}

/// Rolls back or removes `name` on every node that holds it.
async fn switch(args: Named, action: &str) -> anyhow::Result<()> {
    outpost_releases::check_name(&args.name)?;
    let admin = AdminClient::new(&args.admin, Nodes::EdgesAndParents)?;
    let (method, path) = match action {
        "rollback" => (Method::POST, format!("/releases/{}/rollback", args.name)),
        _ => (Method::DELETE, format!("/releases/{}", args.name)),
    };
    let outcomes = futures_util::future::join_all(admin.targets().iter().map(|(node, url)| {
        let (admin, method, path) = (&admin, method.clone(), &path);
        async move {
            (
                node,
                admin
                    .send(url, method, path, "application/json", Vec::new())
                    .await,
            )
        }
    }))
    .await;
    let (mut done, mut failures) = (0, 0);
    for (node, outcome) in outcomes {
        match outcome {
            Ok((status, body)) if status.is_success() => {
                done += 1;
                match serde_json::from_slice::<Switch>(&body) {
                    Ok(Switch {
                        live: Some(live), ..
                    }) => println!("{node}: {live} live again"),
                    Ok(Switch { site, .. }) => println!("{node}: no release live for {site} now"),
                    Err(_) => println!("{node}: {}", String::from_utf8_lossy(&body).trim()),
                }
            }
            Ok((StatusCode::NOT_FOUND, _)) => println!("{node}: does not hold {}", args.name),
            Ok((status, body)) => {
                failures += 1;
                eprintln!(
                    "{node}: refused: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                );
            }
            Err(error) => {
                failures += 1;
                eprintln!("{node}: {error:#}");
            }
        }
    }
    if failures > 0 {
        bail!("{action} of {} failed on {failures} nodes", args.name);
    }
    if done == 0 {
        bail!("no node holds {}", args.name);
    }
    Ok(())
}
