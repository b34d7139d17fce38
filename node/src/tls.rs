//! TLS of a CDN: the local CA in the state directory, the edges' certificate settings, origin
//! shielding, and reloading on SIGHUP or a change of the files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use outpost_certs::{LocalCa, NameScope};
use outpost_server::ShutdownSignal;
use outpost_server::tls::{CertSource, TlsSettings, TlsTerminator};

use crate::error::StartError;
use crate::topology::{Topology, UnknownNames};

/// The local CA in `state_dir`, created on first use with the topology's names as its
/// constraints.
fn local_ca(state_dir: &Path, topology: &Topology) -> Result<LocalCa, StartError> {
    LocalCa::load_or_create_for(state_dir, &name_scope(topology)).map_err(|source| {
        StartError::Certificate {
            what: format!("setting up the local CA in {}", state_dir.display()),
            source,
        }
    })
}

fn certificate_error(
    what: impl Into<String>,
) -> impl FnOnce(outpost_certs::CertError) -> StartError {
    let what = what.into();
    move |source| StartError::Certificate { what, source }
}

/// What the local CA may sign for: the CDN's zone, localhost, the node names (in client
/// certificates), loopback and every address of the topology.
pub fn name_scope(topology: &Topology) -> NameScope {
    let mut dns = vec!["outpost.test".to_owned(), "localhost".to_owned()];
    if let Some(node) = &topology.dns {
        dns.push(
            node.authority
                .zone
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        );
    }
    dns.push(topology.origin.name.clone());
    dns.extend(topology.parents.iter().map(|p| p.name.clone()));
    dns.extend(topology.edges.iter().map(|e| e.name.clone()));
    dns.retain(|name| !name.is_empty());
    dns.sort();
    dns.dedup();
    let mut networks: Vec<(std::net::IpAddr, u8)> = vec![
        ("127.0.0.0".parse().expect("an address"), 8),
        ("::1".parse().expect("an address"), 128),
    ];
    let mut addresses: Vec<SocketAddr> = topology
        .admin_addresses()
        .into_iter()
        .map(|(_, addr)| addr)
        .collect();
    addresses.extend(topology.origin.listen.map(|a| topology.origin.reached(a)));
    addresses.extend(topology.parents.iter().map(|p| p.reached(p.listen)));
    for edge in &topology.edges {
        addresses.push(edge.reached(edge.listen));
        addresses.extend(edge.https.map(|a| edge.reached(a)));
    }
    for addr in addresses {
        let ip = addr.ip();
        if ip.is_unspecified() || ip.is_loopback() {
            continue;
        }
        let full = if ip.is_ipv4() { 32 } else { 128 };
        if !networks.contains(&(ip, full)) {
            networks.push((ip, full));
        }
    }
    if let Some(anycast) = &topology.anycast
        && !anycast.address.is_loopback()
    {
        let full = if anycast.address.is_ipv4() { 32 } else { 128 };
        networks.push((anycast.address, full));
    }
    NameScope { dns, networks }
}

/// Adds the IP address of `addr` to `names`, unless it is unspecified or already there.
fn add_ip(names: &mut Vec<String>, addr: SocketAddr) {
    let ip = addr.ip().to_string();
    if !addr.ip().is_unspecified() && !names.contains(&ip) {
        names.push(ip);
    }
}

/// The certificate `ca` issues (once, then keeps) as `stem` for `names`.
fn issued(ca: &LocalCa, stem: &str, names: Vec<String>) -> Result<CertSource, StartError> {
    let paths = ca
        .ensure_server_cert(stem, &names)
        .map_err(certificate_error(format!("issuing the {stem} certificate")))?;
    Ok(CertSource {
        names,
        cert: paths.cert,
        key: paths.key,
    })
}

/// Names the local certificate covers: the CDN's zone, localhost, and every address an edge or
/// the anycast address serves HTTPS on.
pub fn local_names(topology: &Topology) -> Vec<String> {
    let mut names: Vec<String> = [
        "outpost.test",
        "*.outpost.test",
        "localhost",
        "127.0.0.1",
        "::1",
        "127.0.0.10",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for edge in &topology.edges {
        for addr in edge.https.iter().chain(std::iter::once(&edge.listen)) {
            add_ip(&mut names, edge.reached(*addr));
        }
    }
    names
}

/// The TLS settings of the edges: the operator's certificates, or one the local CA issues.
pub fn edge_settings(topology: &Topology, state_dir: &Path) -> Result<TlsSettings, StartError> {
    let section = &topology.tls;
    let certificates = if section.certificates.is_empty() {
        let ca = local_ca(state_dir, topology)?;
        let certificate = issued(&ca, "edge", local_names(topology))?;
        tracing::info!(target: "outpost", "local CA: {} (trust it with `outpost certs`)", ca.ca_cert_path().display());
        vec![certificate]
    } else {
        section
            .certificates
            .iter()
            .map(|c| CertSource {
                names: c.names.clone(),
                cert: c.cert.clone(),
                key: c.key.clone(),
            })
            .collect()
    };
    Ok(TlsSettings {
        certificates,
        default: (section.unknown_names == UnknownNames::Default).then_some(0),
        handshake_timeout: Duration::from_millis(section.handshake_timeout_ms.max(1)),
        client_ca: None,
    })
}

/// Builds the terminator, naming the certificate files in errors.
pub fn terminator(settings: TlsSettings) -> Result<Arc<TlsTerminator>, StartError> {
    Ok(Arc::new(
        TlsTerminator::new(settings).map_err(StartError::Tls)?,
    ))
}

/// How often certificates the local CA issued are checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);

/// Issues the edges' local certificate again if it is near its end or names other names than
/// the topology's (nothing to do for operators' own certificates). The reloader picks up a new
/// file as for any other change.
pub fn renew_local(topology: &Topology, state_dir: &Path) {
    if topology.tls.certificates.is_empty()
        && let Err(error) =
            local_ca(state_dir, topology).and_then(|ca| issued(&ca, "edge", local_names(topology)))
    {
        tracing::error!(target: "outpost", "renewing the edge certificate failed; keeping the one in use: {error}");
    }
}

/// Reloads `terminators` on SIGHUP and whenever one of `files` changes; a failed reload keeps
/// the certificates in use and logs why. `renew` runs every hour and before a SIGHUP reload.
pub fn spawn_reloader(
    terminators: Vec<Arc<TlsTerminator>>,
    files: Vec<PathBuf>,
    check_every: Duration,
    renew: Option<Box<dyn Fn() + Send>>,
    mut shutdown: ShutdownSignal,
) {
    tokio::spawn(async move {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler: certificates reload on file changes only");
                None
            }
        };
        let mut seen = modified(&files);
        let mut ticker = tokio::time::interval(check_every.max(Duration::from_millis(50)));
        let mut renewals = tokio::time::interval(RENEWAL_CHECK);
        loop {
            let reason = tokio::select! {
                () = shutdown.triggered() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    if let Some(renew) = &renew { renew(); }
                    seen = modified(&files);
                    "SIGHUP"
                }
                _ = renewals.tick() => {
                    // The files it changes are reloaded at the next check.
                    if let Some(renew) = &renew { renew(); }
                    continue;
                }
                _ = ticker.tick() => {
                    let now = modified(&files);
                    if now == seen { continue; }
                    seen = now;
                    "certificate files changed"
                }
            };
            for terminator in &terminators {
                match terminator.reload() {
                    Ok(()) => tracing::info!(target: "outpost", "certificates reloaded ({reason})"),
                    Err(error) => {
                        tracing::error!(target: "outpost", "certificate reload failed ({reason}); keeping the certificates in use: {error}")
                    }
                }
            }
        }
    });
}

fn modified(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// Origin shielding: the origin serves TLS with a certificate from the local CA and accepts
/// only clients with a certificate from it; every parent and edge gets one.
pub struct Shield {
    ca: LocalCa,
}

impl Shield {
    pub fn new(state_dir: &Path, topology: &Topology) -> Result<Self, StartError> {
        let ca = local_ca(state_dir, topology)?;
        Ok(Self { ca })
    }

    /// TLS settings of the origin listening on `listen`: client certificates required.
    pub fn origin_settings(
        &self,
        listen: SocketAddr,
        handshake_timeout: Duration,
    ) -> Result<TlsSettings, StartError> {
        let mut names = vec![
            "origin.outpost.test".to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        add_ip(&mut names, listen);
        Ok(TlsSettings {
            certificates: vec![issued(&self.ca, "origin", names)?],
            default: Some(0),
            handshake_timeout,
            client_ca: Some(self.ca.ca_cert_path()),
        })
    }

    /// The client certificate of `node` (issued once, then kept).
    fn client_cert(&self, node: &str) -> Result<outpost_certs::CertPaths, StartError> {
        self.ca
            .ensure_client_cert(&format!("client-{node}"), node)
            .map_err(certificate_error(format!(
                "the client certificate of {node}"
            )))
    }

    /// The TLS client configuration of `node`: trusts the local CA, presents its own
    /// client certificate.
    pub fn client_config(&self, node: &str) -> Result<rustls::ClientConfig, StartError> {
        let what = format!("the client certificate of {node}");
        let paths = self.client_cert(node)?;
        let chain =
            outpost_certs::load_certificates(&paths.cert).map_err(certificate_error(&what))?;
        let key = outpost_certs::load_private_key(&paths.key).map_err(certificate_error(&what))?;
        trusting(&self.ca.ca_cert_path())?
            .with_client_auth_cert(chain, key)
            .map_err(|source| StartError::TlsClient {
                what: format!("{}: {what}", paths.cert.display()),
                source,
            })
    }
}

/// A TLS client configuration that trusts the CAs in the PEM file `ca`; add a client
/// certificate or none.
pub fn trusting(
    ca: &Path,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, StartError>
{
    let unusable = |source| StartError::TlsClient {
        what: format!("{}: not a usable CA certificate", ca.display()),
        source,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in outpost_certs::load_certificates(ca).map_err(certificate_error(format!(
        "the CA certificate {}",
        ca.display()
    )))? {
        roots.add(cert).map_err(unusable)?;
    }
    client_builder(roots).map_err(unusable)
}

/// A TLS client configuration with the ring provider and the default versions, trusting
/// `roots`.
fn client_builder(
    roots: rustls::RootCertStore,
) -> Result<
    rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    rustls::Error,
> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots))
}

/// The TLS client configuration for a standalone node's `https://` upstream: it trusts the
/// CAs in `ca` (PEM), else the public roots built in (Mozilla's, from `webpki-roots`: an image
/// built `FROM scratch` has no system store).
pub fn upstream_client(ca: Option<&Path>) -> Result<rustls::ClientConfig, StartError> {
    if let Some(ca) = ca {
        return Ok(trusting(ca)?.with_no_client_auth());
    }
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let builder = client_builder(roots).map_err(|source| StartError::TlsClient {
        what: "the public roots".into(),
        source,
    })?;
    Ok(builder.with_no_client_auth())
}

/// TLS settings of the admin listeners: one certificate from the local CA for every admin
/// address of the topology.
pub fn admin_settings(topology: &Topology, state_dir: &Path) -> Result<TlsSettings, StartError> {
    let ca = local_ca(state_dir, topology)?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for (_, addr) in topology.admin_addresses() {
        add_ip(&mut names, addr);
    }
    Ok(TlsSettings {
        certificates: vec![issued(&ca, "admin", names)?],
        default: Some(0),
        handshake_timeout: Duration::from_millis(topology.tls.handshake_timeout_ms.max(1)),
        client_ca: None,
    })
}

/// `outpost certs init`: the local CA and every certificate the topology's nodes use from it
/// (the edges', the admin listeners', the shielded origin's and each parent's and edge's
/// client certificate), made now and kept when they are already valid. Nodes that start at
/// once in separate processes (containers sharing a volume) then find them and write none.
/// Returns the certificate files.
pub fn init(topology: &Topology, state_dir: &Path) -> Result<Vec<PathBuf>, StartError> {
    let ca = local_ca(state_dir, topology)?;
    let mut files = vec![ca.ca_cert_path()];
    if topology.edges.iter().any(|e| e.https.is_some()) {
        files.extend(
            edge_settings(topology, state_dir)?
                .certificates
                .into_iter()
                .map(|c| c.cert),
        );
    }
    if topology.admin.tls {
        files.extend(
            admin_settings(topology, state_dir)?
                .certificates
                .into_iter()
                .map(|c| c.cert),
        );
    }
    if topology.origin.shielded
        && let Some(listen) = topology.origin.listen
    {
        let shield = Shield { ca };
        let timeout = Duration::from_millis(topology.tls.handshake_timeout_ms);
        let origin = shield.origin_settings(topology.origin.reached(listen), timeout)?;
        files.extend(origin.certificates.into_iter().map(|c| c.cert));
        let nodes = topology.parents.iter().map(|p| &p.name);
        for node in nodes.chain(topology.edges.iter().map(|e| &e.name)) {
            files.push(shield.client_cert(node)?.cert);
        }
    }
    Ok(files)
}

/// `outpost certs`: where the CA is and how to trust it.
pub fn explain(
    state_dir: &Path,
    topology: &Topology,
    https: Option<SocketAddr>,
) -> Result<String, StartError> {
    let ca = local_ca(state_dir, topology)?;
    let ca_path = std::fs::canonicalize(ca.ca_cert_path()).unwrap_or_else(|_| ca.ca_cert_path());
    let ca_path = ca_path.display();
    let edge = https.map_or_else(|| "127.0.0.11:8443".to_owned(), |a| a.to_string());
    let (ip, port) = edge.rsplit_once(':').unwrap_or(("127.0.0.11", "8443"));
    Ok(format!(
        "Outpost local certificate authority: {ca_path}\n\
         \n\
         curl:\n  curl --cacert {ca_path} --resolve www.outpost.test:{port}:{ip} https://www.outpost.test:{port}/\n\
         \n\
         Chromium / Chrome (Linux, NSS store):\n  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n outpost-local-ca -i {ca_path}\n\
         Firefox: Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import {ca_path}\n\
         \n\
         System store (Debian/Ubuntu):\n  sudo cp {ca_path} /usr/local/share/ca-certificates/outpost-local-ca.crt && sudo update-ca-certificates\n\
         System store (macOS):\n  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca_path}\n\
         \n\
         Then open https://www.outpost.test:{port}/ with www.outpost.test resolving to {ip}\n\
         (e.g. `chromium --host-resolver-rules=\"MAP www.outpost.test {ip}\"`).\n"
    ))
}
