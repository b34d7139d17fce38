//! The admin endpoints of a node's releases (bearer token required, checked by the admin
//! listener):
//!
//! - `GET /releases`: every release held, as JSON ([`ReleaseSummary`]);
//! - `HEAD /releases/objects/DIGEST`: 200 when the object is here, else 404;
//! - `PUT /releases/objects/DIGEST`: upload one object, streamed to disk; 422 when the body
//!   does not hash to DIGEST;
//! - `PUT /releases/NAME`: stage the JSON [`Manifest`]; 409 with a JSON [`DamageReport`] when
//!   objects are missing or corrupt;
//! - `POST /releases/NAME/commit`, `POST /releases/NAME/rollback`: switch the site;
//! - `DELETE /releases/NAME`: forget a release that is not live.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use outpost_server::Body;
use outpost_server::admin::AdminExtension;
use outpost_server::body::{json, text};
use serde::{Deserialize, Serialize};

use crate::{Digest, Manifest, Phase, ReleaseError, Releases, UploadError};

/// One release in `GET /releases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    pub name: String,
    pub site: String,
    pub phase: Phase,
    pub files: usize,
    pub bytes: u64,
    pub staged_at: u64,
    #[serde(default)]
    pub committed_at: Option<u64>,
}

/// The body of a 409 to a stage: the objects to upload again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageReport {
    pub error: String,
    pub missing: Vec<Digest>,
    pub corrupt: Vec<Digest>,
}

/// Serves a node's [`Releases`] under `/releases` on its admin listener.
pub struct ReleasesAdmin(pub Arc<Releases>);

impl AdminExtension for ReleasesAdmin {
    fn prefix(&self) -> &'static str {
        "/releases"
    }

    fn handle(
        &self,
        request: Request<Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(self.route(request))
    }
}

impl ReleasesAdmin {
    async fn route(&self, request: Request<Body>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let rest = path
            .strip_prefix("/releases")
            .unwrap_or_default()
            .trim_start_matches('/');
        let method = request.method().clone();
        let segments: Vec<&str> = rest.split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, [""]) => self.list().await,
            (&Method::HEAD | &Method::GET, ["objects", digest]) => match Digest::parse(digest) {
                Some(digest) => match self.0.blobs().size(&digest).await {
                    Some(size) => {
                        let mut response = text(StatusCode::OK, "");
                        response
                            .headers_mut()
                            .insert("outpost-object-size", size.into());
                        response
                    }
                    None => text(StatusCode::NOT_FOUND, "no such object here"),
                },
                None => bad_digest(),
            },
            (&Method::PUT, ["objects", digest]) => match Digest::parse(digest) {
                Some(digest) => self.upload(digest, request.into_body()).await,
                None => bad_digest(),
            },
            (&Method::GET, [name]) => self.show(name).await,
            (&Method::PUT, [name]) => self.stage(name, request.into_body()).await,
            (&Method::POST, [name, "commit"]) => {
                answer(self.0.commit(name).await.map(|s| json(&s)))
            }
            (&Method::POST, [name, "rollback"]) => {
                answer(self.0.rollback(name).await.map(|s| json(&s)))
            }
            (&Method::DELETE, [name]) => answer(
                self.0
                    .remove(name)
                    .await
                    .map(|()| text(StatusCode::OK, format!("{name} removed"))),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "release endpoints: GET /releases, HEAD|PUT /releases/objects/DIGEST, \
                 GET|PUT|DELETE /releases/NAME, POST /releases/NAME/commit, \
                 POST /releases/NAME/rollback",
            ),
        }
    }

    async fn list(&self) -> Response<Body> {
        let catalog = self.0.catalog().await;
        let summaries: Vec<ReleaseSummary> = catalog
            .releases
            .iter()
            .map(|(name, record)| ReleaseSummary {
                name: name.clone(),
                site: record.manifest.site.to_string(),
                phase: record.phase,
                files: record.manifest.files.len(),
                bytes: record.manifest.bytes(),
                staged_at: record.staged_at,
                committed_at: record.committed_at,
            })
            .collect();
        json(&summaries)
    }

    async fn show(&self, name: &str) -> Response<Body> {
        match self.0.catalog().await.releases.get(name) {
            Some(record) => json(record),
            None => text(
                StatusCode::NOT_FOUND,
                format!("no release {name} on this node"),
            ),
        }
    }

    async fn upload(&self, digest: Digest, body: Body) -> Response<Body> {
        if self.0.blobs().size(&digest).await.is_some() {
            return text(StatusCode::OK, "already here");
        }
        match self.0.blobs().put(&digest, body).await {
            Ok(length) => text(StatusCode::CREATED, format!("stored {length} bytes")),
            Err(error @ UploadError::DigestMismatch { .. }) => {
                tracing::warn!(node = %self.0.node(), %digest, "upload refused: {error}");
                text(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            }
            Err(error @ UploadError::Body(_)) => text(StatusCode::BAD_REQUEST, error.to_string()),
            Err(error @ UploadError::Disk { .. }) => {
                tracing::error!(node = %self.0.node(), "{error}");
                text(StatusCode::INSUFFICIENT_STORAGE, error.to_string())
            }
        }
    }

    async fn stage(&self, name: &str, body: Body) -> Response<Body> {
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the manifest: {error}"),
                );
            }
        };
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(manifest) => manifest,
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("expected a JSON release manifest: {error}"),
                );
            }
        };
        let files = manifest.files.len();
        answer(
            self.0
                .stage(name, manifest)
                .await
                .map(|()| text(StatusCode::OK, format!("{name} staged: {files} files"))),
        )
    }
}

fn bad_digest() -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        "objects are named by their SHA-256 digest: 64 hex digits",
    )
}

/// The response to an operation: its own on success, else the status that says who failed.
fn answer(outcome: Result<Response<Body>, ReleaseError>) -> Response<Body> {
    match outcome {
        Ok(response) => response,
        Err(ReleaseError::Damaged { missing, corrupt }) => {
            let report = DamageReport {
                error: ReleaseError::Damaged {
                    missing: missing.clone(),
                    corrupt: corrupt.clone(),
                }
                .to_string(),
                missing,
                corrupt,
            };
            let mut response = json(&report);
            *response.status_mut() = StatusCode::CONFLICT;
            response
        }
        Err(error @ ReleaseError::Manifest(_)) => text(StatusCode::BAD_REQUEST, error.to_string()),
        Err(ReleaseError::Refused(refused @ crate::Refused::Unknown(_))) => {
            text(StatusCode::NOT_FOUND, refused.to_string())
        }
        Err(error @ ReleaseError::Refused(_)) => text(StatusCode::CONFLICT, error.to_string()),
        Err(error @ ReleaseError::Disk { .. }) => {
            tracing::error!("{error}");
            text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
    }
}
