//! Objects on disk, each in a file named by its SHA-256 digest. An upload is written to a
//! temporary file while it is hashed and only renamed into place once its digest matched, so
//! a torn or corrupted upload never becomes an object.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Buf;
use http_body_util::BodyExt;
use outpost_server::Body;
use tokio::io::AsyncWriteExt;

use crate::Digest;
use crate::digest::Hasher;

/// What a check of a stored object found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// Not on this node.
    Missing,
    /// Its bytes no longer hash to its name (it has been removed).
    Corrupt,
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the body hashes to {actual}, not to the digest it was sent as")]
    DigestMismatch { actual: Digest },
    #[error("reading the upload: {0}")]
    Body(outpost_server::BoxError),
    #[error("writing {path}: {source}")]
    Disk { path: PathBuf, source: io::Error },
}

/// The objects of one node.
pub struct Blobs {
    objects: PathBuf,
    incoming: PathBuf,
    uploads: AtomicU64,
}

impl Blobs {
    /// Opens (creating) `dir/objects` and `dir/incoming`; uploads torn by a crash are deleted.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let objects = dir.join("objects");
        let incoming = dir.join("incoming");
        std::fs::create_dir_all(&objects)?;
        let _ = std::fs::remove_dir_all(&incoming);
        std::fs::create_dir_all(&incoming)?;
        Ok(Self {
            objects,
            incoming,
            uploads: AtomicU64::new(0),
        })
    }

    /// The file holding `digest` (in a directory named by its first two hex digits).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_string();
        self.objects.join(&hex[..2]).join(hex)
    }

    /// The object's size, if this node has it.
    pub async fn size(&self, digest: &Digest) -> Option<u64> {
        tokio::fs::metadata(self.path(digest))
            .await
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Stores `body` as the object `digest`, streaming it to disk; returns its length.
    pub async fn put(&self, digest: &Digest, body: Body) -> Result<u64, UploadError> {
        let n = self.uploads.fetch_add(1, Ordering::Relaxed);
        let temporary = self
            .incoming
            .join(format!("{digest}.{}.{n}", std::process::id()));
        let result = self.write(digest, body, &temporary).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        result
    }

    async fn write(
        &self,
        digest: &Digest,
        mut body: Body,
        temporary: &Path,
    ) -> Result<u64, UploadError> {
        let disk = |path: &Path| {
            let path = path.to_owned();
            move |source| UploadError::Disk { path, source }
        };
        let mut file = tokio::fs::File::create(temporary)
            .await
            .map_err(disk(temporary))?;
        let mut hasher = Hasher::default();
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(UploadError::Body)?;
            if let Ok(mut data) = frame.into_data() {
                while data.has_remaining() {
                    let chunk = data.chunk();
                    hasher.update(chunk);
                    length += chunk.len() as u64;
                    file.write_all(chunk).await.map_err(disk(temporary))?;
                    let n = chunk.len();
                    data.advance(n);
                }
            }
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(UploadError::DigestMismatch { actual });
        }
        file.sync_all().await.map_err(disk(temporary))?;
        drop(file);
        let path = self.path(digest);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(disk(parent))?;
        }
        tokio::fs::rename(temporary, &path)
            .await
            .map_err(disk(&path))?;
        Ok(length)
    }

    /// Re-reads the object and checks it still hashes to its name and has `size` bytes; a
    /// corrupt object is removed so that the next push uploads it again. Blocking: call it
    /// off the async threads.
    pub fn verify(&self, digest: &Digest, size: u64) -> Result<(), Damage> {
        let path = self.path(digest);
        match crate::digest::of_file(&path) {
            Ok((actual, length)) if actual == *digest && length == size => Ok(()),
            Ok(_) => {
                tracing::error!(path = %path.display(), "stored object is corrupt; removed");
                let _ = std::fs::remove_file(&path);
                Err(Damage::Corrupt)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(Damage::Missing),
            Err(error) => {
                tracing::error!(path = %path.display(), "reading a stored object: {error}");
                Err(Damage::Corrupt)
            }
        }
    }

    /// Deletes objects no release refers to any more.
    pub fn remove(&self, digests: impl IntoIterator<Item = Digest>) {
        for digest in digests {
            let path = self.path(&digest);
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), "removing an unused object: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_is_kept_only_when_it_hashes_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let digest = Digest::of(b"hello");
        assert_eq!(blobs.size(&digest).await, None);
        let wrong = blobs
            .put(&digest, outpost_server::body::full("hellO"))
            .await;
        assert!(matches!(wrong, Err(UploadError::DigestMismatch { .. })));
        assert_eq!(blobs.size(&digest).await, None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("incoming"))
                .unwrap()
                .count(),
            0
        );

        assert_eq!(
            blobs
                .put(&digest, outpost_server::body::full("hello"))
                .await
                .unwrap(),
            5
        );
        assert_eq!(blobs.size(&digest).await, Some(5));
        assert_eq!(blobs.verify(&digest, 5), Ok(()));

        std::fs::write(blobs.path(&digest), b"jello").unwrap();
        assert_eq!(blobs.verify(&digest, 5), Err(Damage::Corrupt));
        assert_eq!(blobs.verify(&digest, 5), Err(Damage::Missing));
    }
}
