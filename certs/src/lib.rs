//! Certificates for Outpost: a local certificate authority created on first start in the
//! state directory, server and client certificates it issues, and loading PEM files that
//! operators bring themselves. Private keys are written readable by their owner only, and
//! nothing that exists is ever overwritten.
//!
//! It does not configure TLS (that is the listener's business) and it does not talk to a
//! public CA.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong with a certificate or key, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in the file (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in the file (expected -----BEGIN PRIVATE KEY-----)")]
    NoPrivateKey { path: PathBuf },
    #[error("{path}: not a usable PEM file: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(
        "{path}: the certificate is not valid now (valid from {not_before} to {not_after}); renew it"
    )]
    OutOfDate {
        path: PathBuf,
        not_before: String,
        not_after: String,
    },
    #[error("{name:?} is not a valid certificate name")]
    BadName { name: String },
}

/// Where a certificate and its key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The local certificate authority in a state directory.
pub struct LocalCa {
    dir: PathBuf,
    issuer: Certificate,
    key: KeyPair,
}

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// What a local CA may vouch for: its name constraints (RFC 5280 section 4.2.1.10). Clients
/// reject any certificate it signs for another name, so trusting the CA, as the README
/// suggests, cannot be abused to impersonate other sites. Empty: no constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameScope {
    /// DNS names and everything under them (`outpost.test` covers `www.outpost.test`).
    pub dns: Vec<String>,
    /// Address blocks: (network address, prefix length).
    pub networks: Vec<(IpAddr, u8)>,
}

impl NameScope {
    fn constraints(&self) -> Option<rcgen::NameConstraints> {
        if self.dns.is_empty() && self.networks.is_empty() {
            return None;
        }
        let dns = self
            .dns
            .iter()
            .map(|name| rcgen::GeneralSubtree::DnsName(name.clone()));
        let ips = self.networks.iter().map(|(ip, prefix)| {
            rcgen::GeneralSubtree::IpAddress(match ip {
                IpAddr::V4(v4) => rcgen::CidrSubnet::from_v4_prefix(v4.octets(), *prefix),
                IpAddr::V6(v6) => rcgen::CidrSubnet::from_v6_prefix(v6.octets(), *prefix),
            })
        });
        Some(rcgen::NameConstraints {
            permitted_subtrees: dns.chain(ips).collect(),
            excluded_subtrees: Vec::new(),
        })
    }
}

impl LocalCa {
    /// Loads the CA from `dir`, creating it (and `dir`) on first use, without name
    /// constraints.
    pub fn load_or_create(dir: &Path) -> Result<Self, CertError> {
        Self::load_or_create_for(dir, &NameScope::default())
    }

    /// Loads the CA from `dir`, creating it (and `dir`) on first use, constrained to `scope`.
    /// A CA already in `dir` is used as it is (its constraints were fixed when it was made).
    pub fn load_or_create_for(dir: &Path, scope: &NameScope) -> Result<Self, CertError> {
        fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if cert_path.exists() != key_path.exists() {
            // A crash between writing the two: what is left can sign nothing (or be trusted
            // by nothing), so it goes and a new CA is made.
            let orphan = if cert_path.exists() {
                &cert_path
            } else {
                &key_path
            };
            tracing::warn!(target: "outpost", "{} has no partner file (an interrupted first start?): making a new local CA", orphan.display());
            remove(orphan)?;
        }
        if cert_path.exists() && key_path.exists() {
            let cert_pem = read(&cert_path)?;
            let key_pem = read(&key_path)?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Pem {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            let params =
                CertificateParams::from_ca_cert_pem(&cert_pem).map_err(|e| CertError::Pem {
                    path: cert_path.clone(),
                    reason: e.to_string(),
                })?;
            // Same subject and key as the file: what it signs verifies against the file.
            let issuer = params.self_signed(&key)?;
            return Ok(Self {
                dir: dir.to_owned(),
                issuer,
                key,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Outpost local CA");
        name.push(DnType::OrganizationName, "Outpost");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.name_constraints = scope.constraints();
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
        let issuer = params.self_signed(&key)?;
        write_new(&cert_path, issuer.pem().as_bytes(), false)?;
        write_new(&key_path, key.serialize_pem().as_bytes(), true)?;
        Ok(Self {
            dir: dir.to_owned(),
            issuer,
            key,
        })
    }

    /// The CA certificate clients trust (`curl --cacert`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// A server certificate `file_stem.pem` / `file_stem.key` for `names` (DNS names, wildcards
    /// and IP addresses), issued once and kept.
    pub fn ensure_server_cert(
        &self,
        file_stem: &str,
        names: &[String],
    ) -> Result<CertPaths, CertError> {
        self.ensure(file_stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for mutual TLS) with `name` as its subject.
    pub fn ensure_client_cert(&self, file_stem: &str, name: &str) -> Result<CertPaths, CertError> {
        self.ensure(
            file_stem,
            &[name.to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn ensure(
        &self,
        file_stem: &str,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertPaths, CertError> {
        let paths = CertPaths {
            cert: self.dir.join(format!("{file_stem}.pem")),
            key: self.dir.join(format!("{file_stem}.key")),
        };
        let reason = match (paths.cert.exists(), paths.key.exists()) {
            (true, true) => match reissue_reason(&paths.cert, names) {
                None => return Ok(paths),
                Some(reason) => reason,
            },
            (false, false) => "",
            _ => "one of its two files is missing (an interrupted write?)",
        };
        if !reason.is_empty() {
            tracing::info!(target: "outpost", "issuing {} again: {reason}", paths.cert.display());
        }
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = subject;
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|_| CertError::BadName { name: name.clone() })?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(397);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        // Leaf certificates are replaced, never edited: each file is written beside the old
        // one and renamed over it, the key first.
        replace(&paths.key, key.serialize_pem().as_bytes(), true)?;
        replace(&paths.cert, cert.pem().as_bytes(), false)?;
        Ok(paths)
    }
}

/// Leaf certificates are issued again this long before they expire.
pub const RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// Why the leaf certificate at `path` must be issued again for `names`, if it must: it does
/// not parse, it expires within [`RENEW_BEFORE`], or it names other names.
fn reissue_reason(path: &Path, names: &[String]) -> Option<&'static str> {
    let Ok(pem) = fs::read(path) else {
        return Some("it cannot be read");
    };
    let Ok(der) = CertificateDer::from_pem_slice(&pem) else {
        return Some("it is not a PEM certificate");
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&der) else {
        return Some("it does not parse");
    };
    let expires = parsed.validity().not_after.timestamp();
    if expires < (time::OffsetDateTime::now_utc() + RENEW_BEFORE).unix_timestamp() {
        return Some("it expires within 30 days");
    }
    let mut issued: Vec<String> = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    issued.push((*dns).to_owned())
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    issued.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    let mut wanted: Vec<String> = names.to_vec();
    wanted.sort();
    wanted.dedup();
    issued.sort();
    issued.dedup();
    (issued != wanted).then_some("the configured names changed")
}

fn remove(path: &Path) -> Result<(), CertError> {
    fs::remove_file(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path.new` (0600 when `private`), syncs it and renames it to `path`.
fn replace(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let _ = fs::remove_file(&temporary);
    write_new(&temporary, contents, private)?;
    fs::File::open(&temporary)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    fs::rename(&temporary, path).map_err(io)
}

/// Reads every certificate of a PEM file (leaf first).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let text = fs::read(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Checks that the leaf certificate read from `path` is valid now.
pub fn check_validity(path: &Path, certs: &[CertificateDer<'_>]) -> Result<(), CertError> {
    let Some(leaf) = certs.first() else {
        return Err(CertError::NoCertificate {
            path: path.to_owned(),
        });
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| CertError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let validity = parsed.validity();
    if !validity.is_valid() {
        return Err(CertError::OutOfDate {
            path: path.to_owned(),
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let text = fs::read(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => CertError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => CertError::Pem {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file that must not exist yet; a private one is created with mode 0600.
fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })?;
    file.write_all(contents).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_once_keeps_keys_private_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let names = vec![
            "outpost.test".to_owned(),
            "*.outpost.test".to_owned(),
            "127.0.0.11".to_owned(),
        ];
        let paths = ca.ensure_server_cert("edge", &names).unwrap();
        let mode = fs::metadata(&paths.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let ca_pem = fs::read(ca.ca_cert_path()).unwrap();
        let leaf_pem = fs::read(&paths.cert).unwrap();
        // A second start loads what is there and changes nothing.
        let again = LocalCa::load_or_create(dir.path()).unwrap();
        assert_eq!(again.ensure_server_cert("edge", &names).unwrap(), paths);
        assert_eq!(fs::read(again.ca_cert_path()).unwrap(), ca_pem);
        assert_eq!(fs::read(&paths.cert).unwrap(), leaf_pem);
        assert_eq!(load_certificates(&paths.cert).unwrap().len(), 1);
        load_private_key(&paths.key).unwrap();
        // A certificate issued after a reload still chains to the same CA file.
        again.ensure_client_cert("client", "parent-eu").unwrap();
    }

    #[test]
    fn leaf_certificates_are_issued_again_for_new_names_and_after_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let names = vec!["a.outpost.test".to_owned(), "127.0.0.11".to_owned()];
        let paths = ca.ensure_server_cert("edge", &names).unwrap();
        let first = fs::read(&paths.cert).unwrap();
        // Same names, any order: kept.
        let reversed: Vec<String> = names.iter().rev().cloned().collect();
        ca.ensure_server_cert("edge", &reversed).unwrap();
        assert_eq!(fs::read(&paths.cert).unwrap(), first);
        // Other names: issued again.
        let more = vec!["a.outpost.test".to_owned(), "127.0.0.12".to_owned()];
        ca.ensure_server_cert("edge", &more).unwrap();
        let second = fs::read(&paths.cert).unwrap();
        assert_ne!(second, first);
        assert_eq!(reissue_reason(&paths.cert, &more), None);
        // A key lost in a crash: repaired, not fatal.
        fs::remove_file(&paths.key).unwrap();
        ca.ensure_server_cert("edge", &more).unwrap();
        load_private_key(&paths.key).unwrap();
        assert_ne!(fs::read(&paths.cert).unwrap(), second);
        // The CA itself, torn the same way, is made again.
        fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
        assert!(dir.path().join(CA_KEY).exists());
    }

    #[test]
    fn a_constrained_ca_signs_for_its_names_and_clients_refuse_the_rest() {
        use rustls::client::danger::ServerCertVerifier;
        let dir = tempfile::tempdir().unwrap();
        let scope = NameScope {
            dns: vec!["outpost.test".to_owned(), "localhost".to_owned()],
            networks: vec![("127.0.0.0".parse().unwrap(), 8)],
        };
        let ca = LocalCa::load_or_create_for(dir.path(), &scope).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(load_certificates(&ca.ca_cert_path()).unwrap().remove(0))
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let verify = |stem: &str, names: &[&str], server: &str| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let paths = ca.ensure_server_cert(stem, &names).unwrap();
            let leaf = load_certificates(&paths.cert).unwrap().remove(0);
            let server = rustls::pki_types::ServerName::try_from(server.to_owned()).unwrap();
            verifier.verify_server_cert(
                &leaf,
                &[],
                &server,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
        };
        assert!(
            verify(
                "ok",
                &["www.outpost.test", "127.0.0.11"],
                "www.outpost.test"
            )
            .is_ok()
        );
        assert!(verify("ip", &["127.0.0.11"], "127.0.0.11").is_ok());
        let error = verify("bank", &["bank.example"], "bank.example").unwrap_err();
        assert!(error.to_string().to_lowercase().contains("name"), "{error}");
        assert!(verify("far", &["192.0.2.1"], "192.0.2.1").is_err());
    }

    #[test]
    fn a_certificate_near_its_end_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let mut params = CertificateParams::new(vec!["soon.test".to_owned()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(5);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer, &ca.key).unwrap();
        fs::write(dir.path().join("soon.pem"), cert.pem()).unwrap();
        fs::write(dir.path().join("soon.key"), key.serialize_pem()).unwrap();
        assert_eq!(
            reissue_reason(&dir.path().join("soon.pem"), &["soon.test".to_owned()]),
            Some("it expires within 30 days")
        );
        let paths = ca
            .ensure_server_cert("soon", &["soon.test".to_owned()])
            .unwrap();
        assert_eq!(reissue_reason(&paths.cert, &["soon.test".to_owned()]), None);
    }

    #[test]
    fn an_expired_certificate_is_refused_with_its_dates() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.path().join("old.pem");
        fs::write(&path, cert.pem()).unwrap();
        let certs = load_certificates(&path).unwrap();
        let error = check_validity(&path, &certs).unwrap_err().to_string();
        assert!(
            error.contains("old.pem") && error.contains("not valid now"),
            "{error}"
        );
    }

    #[test]
    fn bad_files_are_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, "not a certificate").unwrap();
        let error = load_certificates(&garbage).unwrap_err().to_string();
        assert!(
            error.contains("garbage.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
        let error = load_private_key(&garbage).unwrap_err().to_string();
        assert!(
            error.contains("garbage.pem") && error.contains("private key"),
            "{error}"
        );
        let error = load_certificates(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing.pem"), "{error}");
    }
}
