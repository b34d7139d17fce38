//! `outpost workers`: deploy a wasi:http/proxy component to every edge (like `wrangler deploy`
//! or `spin deploy`), list what runs where, and remove a worker.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use outpost_workers::{WorkerSpec, WorkerSummary, defaults};

use crate::admin::{AdminArgs, AdminClient, Nodes};

#[derive(Args)]
pub struct WorkersArgs {
    #[command(subcommand)]
    command: WorkersCommand,
}

#[derive(Subcommand)]
enum WorkersCommand {
    /// Validate a component and make it live on every edge, without a restart.
    Deploy(DeployArgs),
    /// Show which workers run on which edge.
    List(ListArgs),
    /// Take a worker off every edge.
    Remove(RemoveArgs),
}

#[derive(Args)]
struct DeployArgs {
    /// The component (.wasm) exporting wasi:http/incoming-handler, e.g. built with
    /// `cargo build --target wasm32-wasip2`.
    file: PathBuf,
    /// The worker's name: a-z, 0-9 and '-'.
    #[arg(long)]
    name: String,
    /// A route such as `www.outpost.test/api/*` or `*.outpost.test/*`; repeatable.
    #[arg(long = "route", value_name = "PATTERN", required = true)]
    routes: Vec<String>,
    /// A configuration value or secret for the worker (environment and wasi:config); never
    /// logged; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Memory cap of one instance, in MiB.
    #[arg(long, default_value_t = defaults::MEMORY_MIB)]
    memory: u32,
    /// CPU time one request may use, in milliseconds.
    #[arg(long = "cpu-ms", default_value_t = defaults::CPU_MS)]
    cpu_ms: u32,
    /// Instances running at once (more requests wait in a queue).
    #[arg(long = "max-concurrent", default_value_t = defaults::MAX_CONCURRENT)]
    max_concurrent: u32,
    /// Requests that may wait for an instance; past it, 503 at once.
    #[arg(long = "max-queued", default_value_t = defaults::MAX_QUEUED)]
    max_queued: u32,
    /// Outbound requests one invocation may make.
    #[arg(long = "max-outbound", default_value_t = defaults::MAX_OUTBOUND)]
    max_outbound: u32,
    /// A host outbound requests may reach (default: the hosts of the routes and the origin);
    /// `*.example.test` allows subdomains; repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Keys the worker may keep in its key-value store.
    #[arg(long = "kv-max-keys", default_value_t = defaults::KV_MAX_KEYS)]
    kv_max_keys: u64,
    /// Bytes the worker may keep in its key-value store, in MiB.
    #[arg(long = "kv-max-mib", default_value_t = defaults::KV_MAX_MIB)]
    kv_max_mib: u64,
    /// Wall-clock time for a whole response, body included, in seconds.
    #[arg(long = "deadline-secs", default_value_t = defaults::DEADLINE_SECS)]
    deadline_secs: u32,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args)]
struct RemoveArgs {
    /// The worker to remove.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub async fn run(args: WorkersArgs) -> anyhow::Result<()> {
    match args.command {
        WorkersCommand::Deploy(args) => deploy(args).await,
        WorkersCommand::List(args) => list(args).await,
        WorkersCommand::Remove(args) => remove(args).await,
    }
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let component =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut spec = WorkerSpec::new(args.name, args.routes);
    for pair in &args.env {
        let (key, value) = pair.split_once('=').with_context(|| {
            format!(
                "--env {key}: expected KEY=VALUE",
                key = pair.split('=').next().unwrap_or_default()
            )
        })?;
        spec.env.insert(key.to_owned(), value.to_owned());
    }
    spec.memory_mib = args.memory;
    spec.cpu_ms = args.cpu_ms;
    spec.max_concurrent = args.max_concurrent;
    spec.max_queued = args.max_queued;
    spec.max_outbound = args.max_outbound;
    spec.allowed_hosts = args.allow_hosts;
    spec.kv_max_keys = args.kv_max_keys;
    spec.kv_max_mib = args.kv_max_mib;
    spec.deadline_secs = args.deadline_secs;
    spec.validate()?;
    // Refuse here what every edge would refuse: not a component, the wrong world, no compile.
    let runtime = outpost_workers::Runtime::new(None)?;
    runtime
        .validate(&component)
        .with_context(|| format!("{}", args.file.display()))?;

    let admin = AdminClient::new(&args.admin, Nodes::Edges)?;
    let body = outpost_workers::deploy_body(&spec, &component);
    let path = format!("/workers/{}", spec.name);
    let failures = admin
        .send_all(
            http::Method::PUT,
            &path,
            "application/vnd.outpost.worker",
            body,
            print_reply,
        )
        .await?;
    let total = admin.targets().len();
    if failures > 0 {
        bail!(
            "{} deployed on {} of {total} edges",
            spec.name,
            total - failures
        );
    }
    println!("{} deployed on {total} edges", spec.name);
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let admin = AdminClient::new(&args.admin, Nodes::Edges)?;
    let failures = admin
        .send_all(
            http::Method::GET,
            "/workers",
            "application/json",
            Vec::new(),
            |name, reply| {
                let workers: Vec<WorkerSummary> = serde_json::from_slice(&reply)
                    .with_context(|| format!("{name}: reading the worker list"))?;
                if workers.is_empty() {
                    println!("{name}: no workers");
                }
                for worker in workers {
                    println!(
                        "{name}: {} routes={} memory={}MiB cpu={}ms env=[{}]",
                        worker.name,
                        worker.routes.join(","),
                        worker.memory_mib,
                        worker.cpu_ms,
                        worker.env_keys.join(",")
                    );
                }
                Ok(())
            },
        )
        .await?;
    if failures > 0 {
        bail!("{failures} edges did not answer");
    }
    Ok(())
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let admin = AdminClient::new(&args.admin, Nodes::Edges)?;
    let path = format!("/workers/{}", args.name);
    let failures = admin
        .send_all(
            http::Method::DELETE,
            &path,
            "text/plain",
            Vec::new(),
            print_reply,
        )
        .await?;
    if failures > 0 {
        bail!("{} not removed from {failures} edges", args.name);
    }
    Ok(())
}

/// Prints an edge's plain-text answer to a deploy or a removal.
fn print_reply(name: &str, reply: bytes::Bytes) -> anyhow::Result<()> {
    println!("{name}: {}", String::from_utf8_lossy(&reply).trim());
    Ok(())
}
