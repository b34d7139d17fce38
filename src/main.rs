//! `outpost`: the command line of the Outpost CDN: argument parsing, logging, process signals
//! and the admin client. Starting nodes is `outpost_node`'s job; every node role lives in its
//! own crate.

mod admin;
mod health;
mod lab;
mod purge;
mod releases;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use outpost_node::{Cdn, DEFAULT_TOPOLOGY, Overrides, Role, Running, Standalone, Topology};
use outpost_node::{routing, tls, token};

/// A proxy allocates and frees many small buffers per request; mimalloc does that faster than
/// the system allocator (measured in bench/hit-throughput.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Publish a directory to the CDN as one release, switched on everywhere at once.
    Push(releases::PushArgs),
    /// List, roll back or remove pushed releases.
    Releases(releases::ReleasesArgs),
    /// Check a topology file and report what it describes.
    Validate(ValidateArgs),
    /// Show where the local certificate authority is and how to trust it (creating it if
    /// needed).
    Certs(CertsArgs),
    /// Run the authoritative geo DNS of a topology, or explain the answer for a client.
    Dns(DnsArgs),
    /// Run the control node of a topology: every purge goes through it, numbered, to every
    /// edge and parent at once.
    Control(ControlArgs),
    /// Run the live dashboard of a topology's CDN (what `outpost up` serves at
    /// [dashboard] listen), reading every node's admin listener.
    Dashboard(DashboardArgs),
    /// Run the simulated anycast router of a topology, or inspect its routing.
    Anycast(AnycastArgs),
    /// Check that a node of a topology is up (its admin /health answers 200): exit status 0
    /// if so, 1 if not. What container health checks run.
    Health(HealthArgs),
    /// Build the multi-host lab (as root: a network namespace per node), break it in the
    /// ways the lab shows, print what each failure measured, and remove it.
    Lab(lab::LabArgs),
    /// Make a signed-URL token for a path or a tree (`/video/*`), with a key of the topology.
    Sign(SignArgs),
}

#[derive(Args)]
struct SignArgs {
    /// The path the token covers; a trailing `*` covers everything under it.
    acl: String,
    /// Topology file whose `[signing]` keys sign; default: the built-in topology.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// How long the token is valid, in seconds.
    #[arg(long, default_value_t = 3600)]
    expires_in: u64,
    /// Limit the token to a client network (`203.0.113.0/24`).
    #[arg(long, value_name = "NETWORK")]
    ip: Option<String>,
    /// The key to sign with, by id; default: the first.
    #[arg(long)]
    key: Option<String>,
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
    command: Option<AnycastCommand>,
    /// Topology file whose anycast router to run; default: the built-in topology.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct HealthArgs {
    /// The node: a name from the topology, or `dns` or `anycast`.
    node: String,
    /// Topology file; default: the built-in topology.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// How long to wait for the answer, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
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
    #[command(subcommand)]
    command: Option<CertsCommand>,
    /// State directory holding the local CA [default: the config's tls.state_dir, .outpost].
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Topology file whose state directory and edges to use.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create the local CA, every certificate the topology's nodes use and the admin token,
    /// keeping what exists; run once before nodes start in separate containers.
    Init,
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
    /// Upstream URL (`http://host:port` or `https://host:port`) to cache in front of.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    upstream: Option<http::Uri>,
    /// CA certificates (PEM) to verify an https:// upstream with instead of the public roots.
    #[arg(long, value_name = "PEM", conflicts_with = "config")]
    upstream_ca: Option<PathBuf>,
    /// Address of the admin listener (health, metrics, purge).
    #[arg(long, default_value = "127.0.0.1:9090", conflicts_with = "config")]
    admin: SocketAddr,
    /// Node name, used in Cache-Status, Via and CDN-Loop; with --config, the node to run.
    #[arg(long)]
    name: Option<String>,
    /// Admin bearer token for purge.
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run the node called --name from this topology file instead.
    #[arg(long, short, requires = "name")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct OriginArgs {
    /// Directory to serve; default: the demo site shipped in origin/demo.
    #[arg(long, conflicts_with = "config")]
    root: Option<PathBuf>,
    /// Address of the data listener.
    #[arg(long, default_value = "127.0.0.1:8000", conflicts_with = "config")]
    listen: SocketAddr,
    /// Address of the admin listener (health, metrics).
    #[arg(long, default_value = "127.0.0.1:9090", conflicts_with = "config")]
    admin: SocketAddr,
    /// Run the origin of this topology file instead (shielded by mutual TLS if it says so).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// With --config, the origin's name in the topology [default: its origin.name].
    #[arg(long, requires = "config")]
    name: Option<String>,
}

#[derive(Args)]
struct DashboardArgs {
    /// The topology file whose CDN to show (its [dashboard] table says where).
    #[arg(long, short)]
    config: PathBuf,
}

#[derive(Args)]
struct ControlArgs {
    /// The topology file whose [control] node to run.
    #[arg(long, short)]
    config: PathBuf,
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
        Command::Origin(args) => match &args.config {
            Some(path) => {
                let topology = Topology::load(path)?;
                let name = args.name.unwrap_or_else(|| topology.origin.name.clone());
                node_of(&topology, Role::Origin, &name, path).await
            }
            None => serve(Cdn::start_origin(args.root, args.listen, args.admin).await?).await,
        },
        Command::Health(args) => health::run(args).await,
        Command::Lab(args) => lab::run(args).await,
        Command::Purge(args) => purge::run(args).await,
        Command::Workers(args) => workers::run(args).await,
        Command::Push(args) => releases::push(args).await,
        Command::Releases(args) => releases::releases(args).await,
        Command::Dns(args) => {
            let topology = load_or_default(args.config.as_deref())?;
            if let Some(ip) = args.explain {
                let edges = routing::configured_edges(&topology);
                println!(
                    "{}",
                    routing::geo_dns(&topology, &edges)?.explain(ip).trim_end()
                );
                return Ok(());
            }
            serve(Cdn::start_dns(&topology).await?).await
        }
        Command::Control(args) => {
            let topology = Topology::load(&args.config)?;
            let name = topology
                .control
                .as_ref()
                .map(|c| c.name.clone())
                .with_context(|| format!("{}: no [control] node", args.config.display()))?;
            node_of(&topology, Role::Control, &name, &args.config).await
        }
        Command::Dashboard(args) => {
            let topology = Topology::load(&args.config)?;
            if topology.dashboard.is_none() {
                anyhow::bail!("{}: no [dashboard] table", args.config.display());
            }
            node_of(&topology, Role::Dashboard, "dashboard", &args.config).await
        }
        Command::Anycast(AnycastArgs {
            command: None,
            config,
        }) => {
            let topology = load_or_default(config.as_deref())?;
            let overrides = Overrides {
                state_dir: None,
                config_path: config,
            };
            serve(Cdn::start_anycast(&topology, &overrides).await?).await
        }
        Command::Anycast(AnycastArgs {
            command: Some(AnycastCommand::Routes { config }),
            ..
        }) => {
            let topology = load_or_default(config.as_deref())?;
            let edges = routing::configured_edges(&topology);
            print!("{}", routing::routing_table(&topology, &edges)?.render());
            Ok(())
        }
        Command::Sign(args) => {
            let topology = load_or_default(args.config.as_deref())?;
            let signing = outpost_edge::Signing::new(&topology.signing)?;
            let expires = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
                + args.expires_in;
            let token = signing
                .sign(&args.acl, expires, args.ip.as_deref(), args.key.as_deref())
                .context("no such signing key in the topology's [signing] keys")?;
            println!("{token}");
            Ok(())
        }
        Command::Certs(args) => {
            let topology = load_or_default(args.config.as_deref())?;
            let state_dir = args
                .state_dir
                .unwrap_or_else(|| topology.tls.state_dir.clone());
            if let Some(CertsCommand::Init) = args.command {
                for file in tls::init(&topology, &state_dir)? {
                    println!("{}", file.display());
                }
                let (_, new) = token::ensure(topology.admin.token.as_deref(), &state_dir)?;
                if new {
                    println!("{}", token::path(&state_dir).display());
                }
                return Ok(());
            }
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
        Some(path) => Ok(Topology::load(path)?),
        None => Ok(Topology::default_topology()),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{DEFAULT_TOPOLOGY}");
        return Ok(());
    }
    let topology = load_or_default(args.config.as_deref())?;
    let overrides = Overrides {
        state_dir: args.state_dir,
        config_path: args.config,
    };
    let running = Cdn::start(&topology, &overrides).await?;
    tracing::info!(target: "outpost", "outpost up: {} parents, {} edges; Ctrl-C to stop", topology.parents.len(), topology.edges.len());
    serve(running).await
}

/// Runs the node `name` of the topology read from `path`.
async fn node_of(
    topology: &Topology,
    role: Role,
    name: &str,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let overrides = Overrides {
        state_dir: None,
        config_path: Some(path.to_owned()),
    };
    let running = Cdn::start_node(topology, role, name, &overrides)
        .await
        .with_context(|| path.display().to_string())?;
    serve(running).await
}

async fn node(args: NodeArgs, role: Role) -> anyhow::Result<()> {
    if let Some(path) = &args.config {
        let topology = Topology::load(path)?;
        return node_of(
            &topology,
            role,
            args.name.as_deref().unwrap_or_default(),
            path,
        )
        .await;
    }
    let upstream = args
        .upstream
        .context("--upstream URL is required without --config")?;
    if !matches!(upstream.scheme_str(), Some("http" | "https")) || upstream.authority().is_none() {
        anyhow::bail!(
            "--upstream {upstream}: expected an http:// or https:// URL with a host, such as http://127.0.0.1:8000"
        );
    }
    let node = Standalone {
        role,
        name: args.name.unwrap_or_else(|| role.as_str().to_owned()),
        listen: args.listen,
        admin: args.admin,
        upstream,
        upstream_ca: args.upstream_ca,
        token: args.token,
    };
    serve(Cdn::start_standalone(&node).await?).await
}

/// Announces the nodes, waits for Ctrl-C or SIGTERM, then stops accepting and lets open
/// requests finish.
async fn serve(mut running: Running) -> anyhow::Result<()> {
    if let Some((file, token)) = running.new_token() {
        // Shown once, on the terminal, not in the log.
        println!("admin token (kept in {}): {token}", file.display());
    }
    for node in running.nodes() {
        tracing::info!(target: "outpost", "{}", node.announcement());
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(target: "outpost", "interrupted: draining"),
        _ = terminate.recv() => tracing::info!(target: "outpost", "terminated: draining"),
        () = running.stopped() => tracing::error!(target: "outpost", "a listener stopped unexpectedly: draining"),
    }
    if !running.drain(Duration::from_secs(30)).await {
        tracing::warn!(target: "outpost", "drain took too long; exiting");
    }
    tracing::info!(target: "outpost", "stopped");
    Ok(())
}
