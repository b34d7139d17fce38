//! TLS termination: rustls with TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, a certificate
//! per hostname chosen by SNI (exact names, then `*.` wildcards, then an optional default),
//! session resumption by tickets with rotating keys and a shared session cache, a handshake
//! deadline, and reloading certificates without dropping open connections.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// One certificate and the hostnames it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSource {
    /// Exact names (`www.outpost.test`) and wildcards (`*.outpost.test`).
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a TLS listener serves.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certificates: Vec<CertSource>,
    /// Index into `certificates` of the one served for unknown or absent SNI; `None` refuses
    /// those handshakes.
    pub default: Option<usize>,
    /// Time a client has to complete its handshake.
    pub handshake_timeout: Duration,
    /// PEM file of the CAs whose client certificates are required (mutual TLS); `None` asks for
    /// no client certificate.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] outpost_certs::CertError),
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("no certificate configured for the TLS listener")]
    NoCertificates,
}

/// The certificates of a listener, by name.
#[derive(Debug, Default)]
struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    fn load(settings: &TlsSettings, provider: &CryptoProvider) -> Result<Self, TlsError> {
        if settings.certificates.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        let mut table = Self::default();
        for (index, source) in settings.certificates.iter().enumerate() {
            let chain = outpost_certs::load_certificates(&source.cert)?;
            outpost_certs::check_validity(&source.cert, &chain)?;
            let key = outpost_certs::load_private_key(&source.key)?;
            let certified =
                CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Key {
                    path: source.key.clone(),
                    reason: format!("does not fit {}: {e}", source.cert.display()),
                })?;
            let certified = Arc::new(certified);
            for name in &source.names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => table.wildcard.insert(suffix.to_owned(), certified.clone()),
                    None => table.exact.insert(name, certified.clone()),
                };
            }
            if settings.default == Some(index) {
                table.default = Some(certified);
            }
        }
        Ok(table)
    }

    fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(found) = self.exact.get(&name) {
            return Some(found.clone());
        }
        // A wildcard covers exactly one label.
        if let Some((_, parent)) = name.split_once('.')
            && let Some(found) = self.wildcard.get(parent)
        {
            return Some(found.clone());
        }
        self.default.clone()
    }
}

#[derive(Debug)]
struct SniResolver {
    table: ArcSwap<CertTable>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = self.table.load().find(hello.server_name());
        if found.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this name: handshake refused");
        }
        found
    }
}

/// Terminates TLS for one listener.
pub struct TlsTerminator {
    acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
}

impl TlsTerminator {
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let table = CertTable::load(&settings, &provider)?;
        let resolver = Arc::new(SniResolver {
            table: ArcSwap::from_pointee(table),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &settings.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in outpost_certs::load_certificates(path)? {
                    roots.add(cert).map_err(|e| TlsError::Key {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Resumption: stateless tickets whose keys rotate, and a session cache for TLS 1.2
        // clients without ticket support.
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
        config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            settings,
            provider,
        })
    }

    /// The TLS configuration of the QUIC endpoint beside the TCP listener: TLS 1.3 only (QUIC
    /// has nothing else), ALPN `h3`, the same certificates and SNI (the same resolver, so a
    /// reload reaches both), and early data (0-RTT) only when `early_data`.
    pub fn quic_config(&self, early_data: bool) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![b"h3".to_vec()];
        // QUIC takes either no early data or any amount (RFC 9001 section 4.6.1).
        config.max_early_data_size = if early_data { u32::MAX } else { 0 };
        Ok(config)
    }

    /// Reads the certificate files again. On any error the certificates in use stay, and the
    /// error is returned. Open connections are not affected either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        let table = CertTable::load(&self.settings, &self.provider)?;
        self.resolver.table.store(Arc::new(table));
        Ok(())
    }

    /// Completes the handshake within the deadline.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        match tokio::time::timeout(
            self.settings.handshake_timeout,
            self.acceptor.accept(stream),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}
