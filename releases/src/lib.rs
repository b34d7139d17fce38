//! The push CDN of an Outpost node. Content is placed on the node before anyone asks for it,
//! as a *release*: a set of files for one site (a host and a path prefix), each stored once
//! as an object named by its SHA-256 digest. A release is staged (every object present and
//! re-hashed), then committed, which swaps the node's live table in one step; the release it
//! replaces is retired but kept, for rollback and for pages pinned to it with the
//! `Outpost-Release` request header. Everything survives a restart: objects are files and the
//! catalog is a JSON file replaced atomically.
//!
//! It owns the objects on disk ([`blobs`]), the release manifests ([`manifest`]), the state
//! of each release ([`catalog`]), the table requests are routed by ([`table`]), the admin
//! endpoints under `/releases` ([`admin`]) and the handler that serves pushed files in front
//! of the cache ([`front`]). It does not upload anything (the CLI's `outpost push` does), and
//! it does not coordinate nodes: the two phases across the fleet (stage everywhere, then
//! commit everywhere) are the pusher's.

pub mod admin;
pub mod blobs;
pub mod catalog;
mod digest;
pub mod front;
pub mod manifest;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

pub use admin::ReleasesAdmin;
pub use blobs::{Blobs, Damage, UploadError};
pub use catalog::{Catalog, Phase, Refused, Switch};
pub use digest::{Digest, Hasher, of_file};
pub use front::ReleaseFront;
pub use manifest::{FileEntry, Manifest, ManifestError, Site, check_name};
pub use table::LiveTable;

pub use outpost_server::RELEASE_HEADER;

/// Why a release operation failed, and on which side.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("{} objects missing and {} corrupt (removed) on this node; push again to upload them", .missing.len(), .corrupt.len())]
    Damaged {
        missing: Vec<Digest>,
        corrupt: Vec<Digest>,
    },
    #[error("keeping the release catalog at {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One node's releases: its objects, its catalog and the live table it serves from.
pub struct Releases {
    node: String,
    blobs: Arc<Blobs>,
    catalog_path: PathBuf,
    /// Changes are made one at a time, and written before they are served.
    catalog: Mutex<Catalog>,
    live: ArcSwap<LiveTable>,
}

impl Releases {
    /// Opens (creating) the releases kept in `dir` by node `node`.
    pub fn open(node: &str, dir: &Path) -> Result<Arc<Self>, ReleaseError> {
        let disk = |source| ReleaseError::Disk {
            path: dir.to_owned(),
            source,
        };
        let blobs = Blobs::open(dir).map_err(disk)?;
        let catalog_path = dir.join("catalog.json");
        let catalog = Catalog::load(&catalog_path).map_err(|source| ReleaseError::Disk {
            path: catalog_path.clone(),
            source,
        })?;
        for (name, record) in &catalog.releases {
            let missing = record
                .manifest
                .files
                .values()
                .filter(|f| {
                    std::fs::metadata(blobs.path(&f.digest)).map_or(true, |m| m.len() != f.size)
                })
                .count();
            if missing > 0 {
                tracing::error!(node, release = %name, missing, "objects of a release are missing on disk");
            }
        }
        let live = LiveTable::from_catalog(&catalog);
        if !live.is_empty() {
            tracing::info!(node, releases = catalog.releases.len(), "releases loaded");
        }
        Ok(Arc::new(Self {
            node: node.to_owned(),
            blobs: Arc::new(blobs),
            catalog_path,
            catalog: Mutex::new(catalog),
            live: ArcSwap::from_pointee(live),
        }))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The table to route one request by.
    pub fn live(&self) -> arc_swap::Guard<Arc<LiveTable>> {
        self.live.load()
    }

    /// A copy of the catalog.
    pub async fn catalog(&self) -> Catalog {
        self.catalog.lock().await.clone()
    }

    /// Stages `manifest` as release `name` once every object it names is here and re-hashes
    /// to its digest.
    pub async fn stage(&self, name: &str, manifest: Manifest) -> Result<(), ReleaseError> {
        check_name(name)?;
        manifest.check()?;
        let blobs = self.blobs.clone();
        let files: Vec<FileEntry> = manifest.files.values().cloned().collect();
        let (missing, corrupt) = tokio::task::spawn_blocking(move || {
            let (mut missing, mut corrupt) = (Vec::new(), Vec::new());
            let mut seen = std::collections::HashSet::new();
            for file in files {
                if !seen.insert(file.digest) {
                    continue;
                }
                match blobs.verify(&file.digest, file.size) {
                    Ok(()) => {}
                    Err(Damage::Missing) => missing.push(file.digest),
                    Err(Damage::Corrupt) => corrupt.push(file.digest),
                }
            }
            (missing, corrupt)
        })
        .await
        .unwrap_or_default();
        if !missing.is_empty() || !corrupt.is_empty() {
            return Err(ReleaseError::Damaged { missing, corrupt });
        }
        let files = manifest.files.len();
        self.change(|catalog| catalog.stage(name, manifest, now_ms()))
            .await?;
        tracing::info!(node = %self.node, release = name, files, "release staged");
        Ok(())
    }

    /// Makes `name` live for its site.
    pub async fn commit(&self, name: &str) -> Result<Switch, ReleaseError> {
        let switch = self
            .change(|catalog| catalog.commit(name, now_ms()))
            .await?;
        tracing::info!(node = %self.node, release = name, site = %switch.site,
            was = ?switch.was, "release committed");
        Ok(switch)
    }

    /// Puts back the release live before `name`.
    pub async fn rollback(&self, name: &str) -> Result<Switch, ReleaseError> {
        let switch = self.change(|catalog| catalog.rollback(name)).await?;
        tracing::info!(node = %self.node, release = name, site = %switch.site,
            live = ?switch.live, "release rolled back");
        Ok(switch)
    }

    /// Forgets `name` (not while live) and deletes the objects nothing refers to any more.
    pub async fn remove(&self, name: &str) -> Result<(), ReleaseError> {
        self.change(|catalog| catalog.remove(name)).await?;
        tracing::info!(node = %self.node, release = name, "release removed");
        Ok(())
    }

    /// Applies `transition` to a copy of the catalog, writes it, and only then serves it and
    /// deletes the objects no release needs now.
    async fn change<T>(
        &self,
        transition: impl FnOnce(&mut Catalog) -> Result<T, Refused>,
    ) -> Result<T, ReleaseError> {
        let mut current = self.catalog.lock().await;
        let mut next = current.clone();
        let outcome = transition(&mut next)?;
        if next == *current {
            return Ok(outcome);
        }
        let (path, bytes) = (self.catalog_path.clone(), next.to_bytes());
        tokio::task::spawn_blocking(move || catalog::save(&path, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| ReleaseError::Disk {
                path: self.catalog_path.clone(),
                source,
            })?;
        self.live.store(Arc::new(LiveTable::from_catalog(&next)));
        let unused: Vec<Digest> = current
            .referenced()
            .difference(&next.referenced())
            .copied()
            .collect();
        *current = next;
        drop(current);
        if !unused.is_empty() {
            let blobs = self.blobs.clone();
            tokio::task::spawn_blocking(move || blobs.remove(unused));
        }
        Ok(outcome)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
