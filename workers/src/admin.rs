//! The workers' part of an edge's admin API (bearer token required, like purge):
//!
//! - `GET /workers`: the deployed workers as JSON (configuration keys, never their values);
//! - `PUT /workers/NAME`: deploy; the body is the spec as one line of JSON, a newline, then
//!   the component's bytes ([`deploy_body`] builds it);
//! - `DELETE /workers/NAME`: remove.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use outpost_server::Body;
use outpost_server::admin::AdminExtension;
use outpost_server::body::{json, text};
use serde::{Deserialize, Serialize};

use crate::error::DeployError;
use crate::registry::Workers;
use crate::spec::WorkerSpec;

/// What `GET /workers` says about one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSummary {
    pub name: String,
    pub routes: Vec<String>,
    pub memory_mib: u32,
    pub cpu_ms: u32,
    /// Names of its configuration values (the values are secret).
    pub env_keys: Vec<String>,
}

impl From<&WorkerSpec> for WorkerSummary {
    fn from(spec: &WorkerSpec) -> Self {
        Self {
            name: spec.name.clone(),
            routes: spec.routes.clone(),
            memory_mib: spec.memory_mib,
            cpu_ms: spec.cpu_ms,
            env_keys: spec.env.keys().cloned().collect(),
        }
    }
}

/// The body of a deploy request.
pub fn deploy_body(spec: &WorkerSpec, component: &[u8]) -> Vec<u8> {
    let mut body = serde_json::to_vec(spec).unwrap_or_default();
    body.push(b'\n');
    body.extend_from_slice(component);
    body
}

/// Serves `/workers` on an edge's admin listener.
pub struct WorkersAdmin(pub Arc<Workers>);

impl WorkersAdmin {
    async fn deploy(&self, name: &str, request: Request<Body>) -> Response<Body> {
        let bytes = match request.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body: {error}"),
                );
            }
        };
        let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
            return text(
                StatusCode::BAD_REQUEST,
                "expected the spec as one line of JSON, a newline, then the component",
            );
        };
        let spec: WorkerSpec = match serde_json::from_slice(&bytes[..newline]) {
            Ok(spec) => spec,
            Err(error) => return text(StatusCode::BAD_REQUEST, format!("worker spec: {error}")),
        };
        if spec.name != name {
            return text(
                StatusCode::BAD_REQUEST,
                format!("the spec names {:?} but the path {name:?}", spec.name),
            );
        }
        let workers = self.0.clone();
        let component = bytes.slice(newline + 1..);
        let deployed = tokio::task::spawn_blocking(move || workers.deploy(spec, &component)).await;
        match deployed {
            Ok(Ok(())) => text(
                StatusCode::OK,
                format!("deployed {name} on {}", self.0.edge().name),
            ),
            Ok(Err(error @ DeployError::Storage(_))) => {
                text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
            }
            Ok(Err(error)) => text(StatusCode::BAD_REQUEST, error.to_string()),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        }
    }
}

impl AdminExtension for WorkersAdmin {
    fn prefix(&self) -> &'static str {
        "/workers"
    }

    fn handle(
        &self,
        request: Request<Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let name = path
                .strip_prefix("/workers")
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned();
            match (request.method().clone(), name.as_str()) {
                (Method::GET, "") => {
                    let list: Vec<WorkerSummary> =
                        self.0.list().iter().map(WorkerSummary::from).collect();
                    json(&list)
                }
                (Method::PUT, name) if !name.is_empty() => self.deploy(name, request).await,
                (Method::DELETE, name) if !name.is_empty() => match self.0.remove(name) {
                    Ok(()) => text(
                        StatusCode::OK,
                        format!("removed {name} from {}", self.0.edge().name),
                    ),
                    Err(error) => text(StatusCode::NOT_FOUND, error.to_string()),
                },
                _ => text(
                    StatusCode::NOT_FOUND,
                    "worker endpoints: GET /workers, PUT /workers/NAME, DELETE /workers/NAME",
                ),
            }
        })
    }
}
