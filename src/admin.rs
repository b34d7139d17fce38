//! Talking to the nodes' admin listeners from the CLI (`purge`, `workers`): which nodes a
//! topology has, the bearer token, and a client that verifies TLS admin listeners against the
//! local CA.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use outpost_cache::{HttpClient, UpstreamTimeouts};

use outpost_node::{Topology, tls, token};

/// Where the admin listeners are and how to authenticate.
#[derive(Args)]
pub struct AdminArgs {
    /// Topology whose nodes to address; default: the built-in topology.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Admin URLs to address instead of the topology's nodes (`http://host:port`); repeatable.
    #[arg(long = "admin", value_name = "URL")]
    pub admin: Vec<String>,
    /// CA that signed the admin certificates, for https admin URLs; default: the local CA in
    /// the config's state directory.
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,
    /// Bearer token; default: the topology's admin.token, else the one `outpost up` made in
    /// the state directory (admin-token).
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Which nodes of the topology a command addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    Edges,
    Parents,
    EdgesAndParents,
}

/// An HTTP client for admin listeners that verifies TLS ones against the CA in `cacert`
/// (plain HTTP only when there is no such file).
pub fn client_trusting(
    cacert: &std::path::Path,
    timeouts: UpstreamTimeouts,
) -> anyhow::Result<HttpClient> {
    if !cacert.exists() {
        return Ok(HttpClient::new(timeouts));
    }
    let config = tls::trusting(cacert)?.with_no_client_auth();
    Ok(HttpClient::with_tls(timeouts, config))
}

/// A client for a set of admin listeners.
pub struct AdminClient {
    client: HttpClient,
    token: String,
    targets: Vec<(String, String)>,
    /// The control node's API URL, when the topology has one (and no --admin URLs were given).
    control: Option<String>,
    nodes: Nodes,
}

impl AdminClient {
    pub fn new(args: &AdminArgs, nodes: Nodes) -> anyhow::Result<Self> {
        let topology = match &args.config {
            Some(path) => Topology::load(path)?,
            None => Topology::default_topology(),
        };
        let scheme = if topology.admin.tls { "https" } else { "http" };
        let targets: Vec<(String, String)> = if args.admin.is_empty() {
            let parents = topology
                .parents
                .iter()
                .filter(|_| nodes != Nodes::Edges)
                .map(|p| (p.name.clone(), p.reached(p.admin)));
            topology
                .edges
                .iter()
                .filter(|_| nodes != Nodes::Parents)
                .map(|e| (e.name.clone(), e.reached(e.admin)))
                .chain(parents)
                .map(|(name, admin)| (name, format!("{scheme}://{admin}")))
                .collect()
        } else {
            args.admin
                .iter()
                .map(|url| (url.clone(), url.trim_end_matches('/').to_owned()))
                .collect()
        };
        let token = args
            .token
            .clone()
            .or(topology.admin.token.clone())
            .or_else(|| token::stored(&topology.tls.state_dir))
            .with_context(|| {
                format!(
                    "no admin token: pass --token, set admin.token in the config, or start the CDN once so it makes {}",
                    token::path(&topology.tls.state_dir).display()
                )
            })?;
        let cacert = args
            .cacert
            .clone()
            .unwrap_or_else(|| topology.tls.state_dir.join("ca.pem"));
        let timeouts = UpstreamTimeouts {
            connect: Duration::from_secs(5),
            // A deploy compiles the component before it answers.
            first_byte: Duration::from_secs(120),
        };
        let client = client_trusting(&cacert, timeouts)?;
        let control = topology
            .control
            .as_ref()
            .filter(|_| args.admin.is_empty())
            .map(|c| format!("{scheme}://{}", c.reached()));
        Ok(Self {
            client,
            token,
            targets,
            control,
            nodes,
        })
    }

    /// The control node's API URL, when purges go through one.
    pub fn control(&self) -> Option<&str> {
        self.control.as_deref()
    }

    /// (name, admin URL) of each node addressed.
    pub fn targets(&self) -> &[(String, String)] {
        &self.targets
    }

    /// Sends one request to the admin listener at `admin`; returns its status and body.
    pub async fn send(
        &self,
        admin: &str,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(http::StatusCode, bytes::Bytes)> {
        self.send_body(
            admin,
            method,
            path,
            content_type,
            outpost_server::body::full(body),
        )
        .await
    }

    /// [`send`](Self::send) with a streamed body (a file being uploaded, say).
    pub async fn send_body(
        &self,
        admin: &str,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: outpost_server::Body,
    ) -> anyhow::Result<(http::StatusCode, bytes::Bytes)> {
        let base: http::Uri = admin
            .parse()
            .with_context(|| format!("{admin}: not a URL"))?;
        let content_type = http::HeaderValue::from_str(content_type)?;
        outpost_cache::admin::exchange_body(
            &self.client,
            &base,
            &self.token,
            method,
            path,
            Some(content_type),
            body,
        )
        .await
        .map_err(|e| anyhow::anyhow!(e))
    }

    /// Sends the same request to every node; `answered` gets each successful reply, and every
    /// refusal or failure is reported on stderr. Returns how many nodes did not answer well.
    /// Worker requests go through the control node when there is one (it sends them on to
    /// every edge at once and measures how long the last took).
    pub async fn send_all(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        mut answered: impl FnMut(&str, bytes::Bytes) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        if let Some(control) = &self.control
            && self.nodes == Nodes::Edges
            && path.starts_with("/workers")
        {
            let (status, reply) = self
                .send(
                    control,
                    method,
                    &format!("/fleet/edges{path}"),
                    content_type,
                    body,
                )
                .await
                .with_context(|| format!("the control node at {control}"))?;
            if !status.is_success() {
                anyhow::bail!(
                    "the control node refused: {status} {}",
                    String::from_utf8_lossy(&reply).trim()
                );
            }
            let report: outpost_node::control::FanoutReport =
                serde_json::from_slice(&reply).context("reading the control node's report")?;
            let mut failures = 0;
            for edge in report.nodes {
                if (200..300).contains(&edge.status) {
                    answered(&edge.node, bytes::Bytes::from(edge.body))?;
                } else {
                    failures += 1;
                    eprintln!(
                        "{}: refused: {} {}",
                        edge.node,
                        edge.status,
                        edge.body.trim()
                    );
                }
            }
            eprintln!("every edge answered within {:.1} ms", report.last_node_ms);
            return Ok(failures);
        }
        // Every node at once: the slowest, not the sum, is how long it takes.
        let sends = self.targets.iter().map(|(name, url)| {
            let (method, body) = (method.clone(), body.clone());
            async move { (name, self.send(url, method, path, content_type, body).await) }
        });
        let mut failures = 0;
        for (name, result) in futures_util::future::join_all(sends).await {
            match result {
                Ok((status, reply)) if status.is_success() => answered(name, reply)?,
                Ok((status, reply)) => {
                    failures += 1;
                    eprintln!(
                        "{name}: refused: {status} {}",
                        String::from_utf8_lossy(&reply).trim()
                    );
                }
                Err(error) => {
                    failures += 1;
                    eprintln!("{name}: {error:#}");
                }
            }
        }
        Ok(failures)
    }
}
