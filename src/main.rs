//! `outpost`: the command line of the Outpost CDN. Argument parsing and wiring only; every
//! node role lives in its own crate.

mod admin;
mod config;
mod nodes;
mod purge;
mod routing;
mod tls;
mod token;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use outpost_edge::ParentTarget;
use outpost_server::Shutdown;
use tokio::task::JoinSet;

use crate::config::{DEFAULT_TOPOLOGY, Topology};

/// A proxy allocates and frees many small buffers per request; mimalloc does that faster than
/// the system allocator (measured in bench/hit-throughput.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::nodes::{Bound, Shared};

/// Outpost: a content delivery network you can run yourself.
#[derive(Parser)]
#[command(name = "outpost", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole CDN in one process: origin, parents and edges of the topology.
    Up(UpArgs),
    /// Run one edge node in front of an upstream (like `varnishd -b`), or one edge of a topology.
    Edge(NodeArgs),
    /// Run one parent node in front of an origin, or one parent of a topology.
    Parent(NodeArgs),
    /// Run the origin server: the content provider's files.
    Origin(OriginArgs),
    /// Purge URLs or tags on every edge and parent of the topology.
    Purge(purge::PurgeArgs),
    /// Deploy, list and remove Wasm edge workers (wasi:http/proxy components) on every edge.
    Workers(workers::WorkersArgs),
    /// Check a topology file and report what it describes.
    Validate(ValidateArgs),
    /// Show where the local certificate authority is and how to trust it (creating it if
    /// needed).
    Certs(CertsArgs),
    /// Run the authoritative geo DNS of a topology, or explain the answer for a client.
    Dns(DnsArgs),
    /// Inspect the simulated anycast routing.
    Anycast(AnycastArgs),
}

#[derive(Args)]
struct DnsArgs {
    /// Topology file; default: the built-in topology.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print which edge this client address gets and why, then exit.
    #[arg(long, value_name = "IP")]
    explain: Option<std::net::IpAddr>,
}

#[derive(Args)]
struct AnycastArgs {
    #[command(subcommand)]
    command: AnycastCommand,
}

#[derive(Subcommand)]
enum AnycastCommand {
    /// Print the routing table: per client network, each edge's cost and the winner.
    Routes {
        /// Topology file; default: the built-in topology.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
struct CertsArgs {
    /// State directory holding the local CA [default: the config's tls.state_dir, .outpost].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Topology file whose state directory and edges to use.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct UpArgs {
    /// Topology file (TOML); default: the built-in loopback topology.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print the default topology as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// State directory (local CA and certificates) [default: the config's tls.state_dir,
    /// .outpost].
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Args)]
struct NodeArgs {
    /// Address of the data listener.
    #[arg(long, default_value = "127.0.0.1:8080", conflicts_with = "config")]
    listen: SocketAddr,
    /// Upstream URL (`http://host:port`) to cache in front of.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    upstream: Option<http::Uri>,
    /// Address of the admin listener (health, metrics, purge).
    #[arg(long, default_value = "127.0.0.1:9090", conflicts_with = "config")]
    admin: SocketAddr,
    /// Node name, used in Cache-Status, Via and CDN-Loop; with --config, the node to run.
    #[arg(long)]
    name: Option<String>,
    /// Admin bearer token for purge [env: OUTPOST_ADMIN_TOKEN].
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run the node called --name from this topology file instead.
    #[arg(long, short, requires = "name")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct OriginArgs {
    /// Directory to serve; default: the demo site shipped in origin/demo.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Address of the data listener.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Address of the admin listener (health, metrics).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
}

#[derive(Args)]
struct ValidateArgs {
    /// The topology file to check.
    file: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,rustls=error,hickory_server=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Edge(args) => node(args, Role::Edge).await,
        Command::Parent(args) => node(args, Role::Parent).await,
        Command::Origin(args) => origin(args).await,
        Command::Purge(args) => purge::run(args).await,
        Command::Workers(args) => workers::run(args).await,
        Command::Dns(args) => {
            let topology = load_or_default(args.config.as_deref())?;
            let edges = routing::configured_edges(&topology);
            if let Some(ip) = args.explain {
                println!(
                    "{}",
                    routing::geo_dns(&topology, &edges)?.explain(ip).trim_end()
                );
                return Ok(());
            }
            let shutdown = Shutdown::new();
            let mut tasks = JoinSet::new();
            routing::start_dns(&mut tasks, &topology, &edges, &shutdown).await?;
            wait_and_drain(shutdown, tasks).await
        }
        Command::Anycast(AnycastArgs {
            command: AnycastCommand::Routes { config },
        }) => {
            let topology = load_or_default(config.as_deref())?;
            let edges = routing::configured_edges(&topology);
            print!("{}", routing::routing_table(&topology, &edges)?.render());
            Ok(())
        }
        Command::Certs(args) => {
            let topology = match &args.config {
                Some(path) => Topology::load(path)?,
                None => Topology::default_topology(),
            };
            let state_dir = args
                .state_dir
                .unwrap_or_else(|| topology.tls.state_dir.clone());
            let https = topology.edges.iter().find_map(|e| e.https);
            print!("{}", tls::explain(&state_dir, &topology, https)?);
            Ok(())
        }
        Command::Validate(args) => {
            let topology = Topology::load(&args.file)?;
            if topology.origin.url.is_none() {
                outpost_origin::Origin::new(&topology.origin.origin_config())
                    .with_context(|| format!("{}: origin", args.file.display()))?;
            }
            println!(
                "{}: ok: origin, {} parents, {} edges",
                args.file.display(),
                topology.parents.len(),
                topology.edges.len()
            );
            Ok(())
        }
    }
}

fn load_or_default(path: Option<&std::path::Path>) -> anyhow::Result<Topology> {
    match path {
        Some(path) => Topology::load(path),
        None => Ok(Topology::default_topology()),
    }
}

fn shared(topology: &Topology, shutdown: &Shutdown) -> Shared {
    Shared {
        token: topology.admin.token.clone(),
        edge_tls: None,
        shield: None,
        host_policies: topology.tls.hosts.clone(),
        admin_tls: None,
        cache: topology.cache.clone(),
        health: topology.health.clone(),
        limits: topology.limits.limits(true),
        shutdown: shutdown.clone(),
        workers: None,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{DEFAULT_TOPOLOGY}");
        return Ok(());
    }
    let topology = match &args.config {
        Some(path) => Topology::load(path)?,
        None => Topology::default_topology(),
    };
    let shutdown = Shutdown::new();
    let mut shared = shared(&topology, &shutdown);
    let mut tasks = JoinSet::new();
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| topology.tls.state_dir.clone());
    shared.token = Some(token::for_node(
        topology.admin.token.as_deref(),
        &state_dir,
    )?);
    if topology.edges.iter().any(|e| e.https.is_some()) {
        shared.edge_tls = Some(start_tls(&topology, &state_dir, &shutdown)?);
    }
    if topology.origin.shielded {
        shared.shield = Some(std::sync::Arc::new(tls::Shield::new(
            &state_dir, &topology,
        )?));
    }
    if !topology.edges.is_empty() {
        shared.workers = Some(nodes::WorkersSetup::new(&state_dir)?);
    }
    if topology.admin.tls {
        shared.admin_tls = Some(tls::terminator(tls::admin_settings(
            &topology, &state_dir,
        )?)?);
    }

    // Bind everything first, so port 0 works and a taken address fails before anything runs.
    let origin = match (topology.origin.listen, topology.origin.admin) {
        (Some(listen), Some(admin)) => {
            Some(Bound::bind(&topology.origin.name, listen, admin).await?)
        }
        _ => None,
    };
    let mut parents = Vec::new();
    for parent in &topology.parents {
        parents.push(Bound::bind(&parent.name, parent.listen, parent.admin).await?);
    }
    let mut edges = Vec::new();
    for edge in &topology.edges {
        edges.push((
            edge,
            Bound::bind(&edge.name, edge.listen, edge.admin)
                .await?
                .with_https(edge.https)
                .await?,
        ));
    }

    let origin_url = match origin {
        Some(origin) => {
            let data = origin.data_addr();
            let tls = match &shared.shield {
                Some(shield) => Some(tls::terminator(shield.origin_settings(
                    data,
                    Duration::from_millis(topology.tls.handshake_timeout_ms),
                )?)?),
                None => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let config = topology.origin.origin_config();
            nodes::start_origin(&mut tasks, &shared, origin, &config, tls)?;
            format!("{scheme}://{data}").parse()?
        }
        None => topology.origin.upstream_url().context("origin.url")?,
    };
    let parent_urls: Vec<(String, http::Uri)> = parents
        .iter()
        .map(|p| (p.name.clone(), p.data_url()))
        .collect();
    for parent in parents {
        nodes::start_parent(&mut tasks, &shared, parent, origin_url.clone());
    }
    let mut places = Vec::new();
    for (settings, bound) in edges {
        places.push(routing::EdgePlace {
            name: settings.name.clone(),
            http: bound.data_addr(),
            https: bound.https.as_ref().and_then(|l| l.local_addr().ok()),
            location: settings.location.unwrap_or_default(),
        });
        let targets = topology
            .parents_of(settings)
            .into_iter()
            .filter_map(|p| parent_urls.iter().find(|(name, _)| *name == p.name))
            .map(|(name, url)| ParentTarget {
                name: name.clone(),
                url: url.clone(),
            })
            .collect();
        nodes::start_edge(
            &mut tasks,
            &shared,
            bound,
            targets,
            Some(origin_url.clone()),
            settings.location,
        )?;
    }
    routing::start_dns(&mut tasks, &topology, &places, &shutdown).await?;
    routing::start_anycast(
        &mut tasks,
        &topology,
        &places,
        args.config.as_deref(),
        &shutdown,
    )
    .await?;
    tracing::info!(target: "outpost", "outpost up: {} parents, {} edges; Ctrl-C to stop", topology.parents.len(), topology.edges.len());
    wait_and_drain(shutdown, tasks).await
}

/// Loads the edges' certificates and starts reloading them on SIGHUP or file changes.
fn start_tls(
    topology: &Topology,
    state_dir: &std::path::Path,
    shutdown: &Shutdown,
) -> anyhow::Result<std::sync::Arc<outpost_server::tls::TlsTerminator>> {
    let settings = tls::edge_settings(topology, state_dir)?;
    let files = settings
        .certificates
        .iter()
        .flat_map(|c| [c.cert.clone(), c.key.clone()])
        .collect();
    let terminator = tls::terminator(settings)?;
    let (renewing, dir) = (topology.clone(), state_dir.to_owned());
    tls::spawn_reloader(
        vec![terminator.clone()],
        files,
        Duration::from_millis(topology.tls.reload_check_ms),
        Some(Box::new(move || tls::renew_local(&renewing, &dir))),
        shutdown.signal(),
    );
    Ok(terminator)
}

enum Role {
    Edge,
    Parent,
}

async fn node(args: NodeArgs, role: Role) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let mut tasks = JoinSet::new();
    if let Some(path) = &args.config {
        let topology = Topology::load(path)?;
        let mut shared = shared(&topology, &shutdown);
        shared.token = Some(token::for_node(
            topology.admin.token.as_deref(),
            &topology.tls.state_dir,
        )?);
        if topology.origin.shielded {
            shared.shield = Some(std::sync::Arc::new(tls::Shield::new(
                &topology.tls.state_dir,
                &topology,
            )?));
        }
        let name = args.name.clone().unwrap_or_default();
        let origin_url = topology
            .origin
            .upstream_url()
            .context("origin: no address")?;
        match role {
            Role::Edge => {
                let settings = topology
                    .edges
                    .iter()
                    .find(|e| e.name == name)
                    .with_context(|| {
                        format!("{}: no edge named {name:?} under [[edges]]", path.display())
                    })?;
                let targets = topology
                    .parents_of(settings)
                    .into_iter()
                    .map(|p| -> anyhow::Result<ParentTarget> {
                        Ok(ParentTarget {
                            name: p.name.clone(),
                            url: format!("http://{}", p.listen).parse()?,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                let mut shared = shared;
                if settings.https.is_some() {
                    shared.edge_tls =
                        Some(start_tls(&topology, &topology.tls.state_dir, &shutdown)?);
                }
                let bound = Bound::bind(&settings.name, settings.listen, settings.admin)
                    .await?
                    .with_https(settings.https)
                    .await?;
                shared.workers = Some(nodes::WorkersSetup::new(&topology.tls.state_dir)?);
                nodes::start_edge(
                    &mut tasks,
                    &shared,
                    bound,
                    targets,
                    Some(origin_url),
                    settings.location,
                )?;
            }
            Role::Parent => {
                let settings = topology
                    .parents
                    .iter()
                    .find(|p| p.name == name)
                    .with_context(|| {
                        format!(
                            "{}: no parent named {name:?} under [[parents]]",
                            path.display()
                        )
                    })?;
                let bound = Bound::bind(&settings.name, settings.listen, settings.admin).await?;
                nodes::start_parent(&mut tasks, &shared, bound, origin_url);
            }
        }
        return wait_and_drain(shutdown, tasks).await;
    }

    let upstream = args
        .upstream
        .context("--upstream URL is required without --config")?;
    if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
        anyhow::bail!(
            "--upstream {upstream}: expected an http:// URL with a host, such as http://127.0.0.1:8000"
        );
    }
    let topology = Topology::default_topology();
    let mut shared = shared(&topology, &shutdown);
    shared.token = args.token.clone();
    let name = args.name.unwrap_or_else(|| match role {
        Role::Edge => "edge".into(),
        Role::Parent => "parent".into(),
    });
    let bound = Bound::bind(&name, args.listen, args.admin).await?;
    match role {
        Role::Edge => {
            nodes::start_edge(&mut tasks, &shared, bound, Vec::new(), Some(upstream), None)?
        }
        Role::Parent => nodes::start_parent(&mut tasks, &shared, bound, upstream),
    }
    wait_and_drain(shutdown, tasks).await
}

async fn origin(args: OriginArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let topology = Topology::default_topology();
    let shared = shared(&topology, &shutdown);
    let mut config = topology.origin.origin_config();
    if let Some(root) = args.root {
        config.root = root;
    }
    let mut tasks = JoinSet::new();
    let bound = Bound::bind("origin", args.listen, args.admin).await?;
    nodes::start_origin(&mut tasks, &shared, bound, &config, None)?;
    wait_and_drain(shutdown, tasks).await
}

/// Waits for Ctrl-C or SIGTERM, then stops accepting and lets open requests finish.
async fn wait_and_drain(shutdown: Shutdown, mut tasks: JoinSet<()>) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(target: "outpost", "interrupted: draining"),
        _ = terminate.recv() => tracing::info!(target: "outpost", "terminated: draining"),
        Some(_) = tasks.join_next() => tracing::error!(target: "outpost", "a listener stopped unexpectedly: draining"),
    }
    shutdown.trigger();
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(target: "outpost", "drain took too long; exiting");
    }
    tracing::info!(target: "outpost", "stopped");
    Ok(())
}
