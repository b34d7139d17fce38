//! The dashboard's listener: the page and its assets, the fleet view as JSON and as a stream
//! of Server-Sent Events, and the operator's actions behind the admin token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use outpost_cache::HttpClient;
use outpost_server::body::{self, Body};
use outpost_server::{Handler, Peer, ShutdownSignal};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::series::Series;
use crate::view::{Layout, Role, Snapshot, fleet_view};

/// `[dashboard]` of the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Where the dashboard listens (plain HTTP; its actions need the admin token).
    pub listen: SocketAddr,
    /// How often every node is read and the page updated.
    pub refresh_ms: u64,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            refresh_ms: 1_000,
        }
    }
}

/// The live dashboard of one CDN.
pub struct Dashboard {
    layout: Layout,
    /// The control node's admin URL, when purges go through one.
    control: Option<http::Uri>,
    client: HttpClient,
    token: String,
    settings: DashboardSettings,
    /// The latest fleet view, as JSON.
    latest: watch::Sender<Bytes>,
    /// Ends the event streams, so that shutdown does not wait for open pages.
    shutdown: ShutdownSignal,
}

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// What an action asks for (`POST /api/purge`, `/api/drain`, `/api/undrain`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Action {
    url: Option<String>,
    tag: Option<String>,
    soft: bool,
    node: Option<String>,
}

/// One node's answer to an action.
#[derive(Debug, Serialize)]
struct NodeAnswer {
    node: String,
    status: u16,
    body: String,
}

impl Dashboard {
    /// A dashboard of `layout`, reading admin listeners through `client` with `token`, until
    /// `shutdown`.
    pub fn new(
        layout: Layout,
        control: Option<http::Uri>,
        client: HttpClient,
        token: String,
        settings: DashboardSettings,
        shutdown: ShutdownSignal,
    ) -> Arc<Self> {
        Arc::new(Self {
            layout,
            control,
            client,
            token,
            settings,
            latest: watch::channel(Bytes::from_static(b"{}")).0,
            shutdown,
        })
    }

    fn refresh(&self) -> Duration {
        Duration::from_millis(self.settings.refresh_ms.max(100))
    }

    /// Reads every node every refresh interval and publishes the view, until shutdown.
    pub fn spawn_collector(self: &Arc<Self>) {
        let dashboard = self.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let epoch = Instant::now();
            let mut before: Option<Snapshot> = None;
            let mut ticker = tokio::time::interval(dashboard.refresh());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.triggered() => return,
                }
                let (now, purges) = tokio::join!(dashboard.snapshot(epoch), dashboard.purges());
                let view = fleet_view(
                    &dashboard.layout,
                    before.as_ref(),
                    &now,
                    purges,
                    dashboard.settings.refresh_ms,
                );
                match serde_json::to_vec(&view) {
                    Ok(json) => {
                        dashboard.latest.send_replace(Bytes::from(json));
                    }
                    Err(error) => tracing::error!(%error, "dashboard: the view did not serialize"),
                }
                before = Some(now);
            }
        });
    }

    async fn snapshot(&self, epoch: Instant) -> Snapshot {
        let reads = self.layout.nodes.iter().map(|node| async move {
            let series = match &node.admin {
                Some(admin) => self
                    .read(admin, "/metrics")
                    .await
                    .map(|b| Series::parse(&String::from_utf8_lossy(&b))),
                None => Ok(Series::default()),
            };
            (node.name.clone(), series)
        });
        let sessions = self
            .layout
            .nodes
            .iter()
            .filter(|n| n.role == Role::Edge)
            .filter_map(|n| Some((n.name.clone(), n.admin.as_ref()?)))
            .map(|(name, admin)| async move {
                let read = self.read(admin, "/cmcd/sessions").await;
                let sessions = read
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_default();
                (name, sessions)
            });
        let (nodes, sessions) = tokio::join!(
            futures_util::future::join_all(reads),
            futures_util::future::join_all(sessions)
        );
        Snapshot {
            at: epoch.elapsed().as_secs_f64(),
            nodes,
            sessions,
        }
    }

    async fn read(&self, admin: &http::Uri, path: &str) -> Result<Bytes, String> {
        let exchange = outpost_cache::admin::exchange(
            &self.client,
            admin,
            &self.token,
            Method::GET,
            path,
            None,
            Bytes::new(),
        );
        let answer = tokio::time::timeout(self.refresh(), exchange)
            .await
            .map_err(|_| "no answer in time".to_owned())??;
        outpost_cache::admin::success(answer)
    }

    async fn purges(&self) -> serde_json::Value {
        let Some(control) = &self.control else {
            return serde_json::Value::Array(Vec::new());
        };
        match self.read(control, "/fleet/reports").await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    fn authorized(&self, request: &Request<Body>) -> bool {
        outpost_server::admin::bearer_matches(request, &self.token)
    }

    async fn send(&self, admin: &http::Uri, path: &str, json: Option<Vec<u8>>) -> (u16, String) {
        let content_type = json
            .as_ref()
            .map(|_| HeaderValue::from_static("application/json"));
        let exchange = outpost_cache::admin::exchange(
            &self.client,
            admin,
            &self.token,
            Method::POST,
            path,
            content_type,
            Bytes::from(json.unwrap_or_default()),
        )
        .await;
        match exchange {
            Ok((status, bytes)) => (
                status.as_u16(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ),
            Err(error) => (0, error),
        }
    }

    async fn act(&self, path: &str, request: Request<Body>) -> Response<Body> {
        if !self.authorized(&request) {
            return body::text(StatusCode::UNAUTHORIZED, "the admin token is required");
        }
        let bytes = match request.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return body::text(StatusCode::BAD_REQUEST, "unreadable body"),
        };
        let action: Action = match serde_json::from_slice(&bytes) {
            Ok(action) => action,
            Err(error) => {
                return body::text(
                    StatusCode::BAD_REQUEST,
                    format!("expected JSON {{\"url\"|\"tag\"|\"node\": ...}}: {error}"),
                );
            }
        };
        match path {
            "/api/purge" => self.purge(action).await,
            _ => {
                let Some(node) = action.node.as_deref() else {
                    return body::text(StatusCode::BAD_REQUEST, "which node? {\"node\": NAME}");
                };
                let Some(admin) = self
                    .layout
                    .nodes
                    .iter()
                    .find(|n| n.name == node && matches!(n.role, Role::Edge | Role::Parent))
                    .and_then(|n| n.admin.as_ref())
                else {
                    return body::text(StatusCode::NOT_FOUND, format!("no edge or parent {node}"));
                };
                let target = if path == "/api/drain" {
                    "/drain"
                } else {
                    "/undrain"
                };
                let (status, answer) = self.send(admin, target, None).await;
                tracing::info!(node, action = target, status, "dashboard action");
                body::json(&[NodeAnswer {
                    node: node.to_owned(),
                    status,
                    body: answer,
                }])
            }
        }
    }

    async fn purge(&self, action: Action) -> Response<Body> {
        let urls: Vec<String> = action
            .url
            .into_iter()
            .filter(|u| !u.trim().is_empty())
            .collect();
        let tags: Vec<String> = action
            .tag
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .collect();
        if urls.is_empty() && tags.is_empty() {
            return body::text(StatusCode::BAD_REQUEST, "a URL, a path or a tag to purge");
        }
        let json = serde_json::json!({"urls": urls, "tags": tags, "soft": action.soft});
        let json = serde_json::to_vec(&json).unwrap_or_default();
        tracing::info!(?urls, ?tags, soft = action.soft, "dashboard purge");
        if let Some(control) = &self.control {
            let (status, answer) = self.send(control, "/fleet/purge", Some(json)).await;
            let mut response = body::text(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                answer,
            );
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return response;
        }
        let sends = self
            .layout
            .nodes
            .iter()
            .filter(|n| matches!(n.role, Role::Edge | Role::Parent))
            .filter_map(|n| Some((n.name.clone(), n.admin.clone()?)))
            .map(|(node, admin)| {
                let json = json.clone();
                async move {
                    let (status, body) = self.send(&admin, "/purge", Some(json)).await;
                    NodeAnswer { node, status, body }
                }
            });
        body::json(&futures_util::future::join_all(sends).await)
    }

    fn events(&self) -> Response<Body> {
        let mut shutdown = self.shutdown.clone();
        let stream = tokio_stream::wrappers::WatchStream::new(self.latest.subscribe())
            .take_until(async move { shutdown.triggered().await })
            .map(|json: Bytes| {
                let mut event = Vec::with_capacity(json.len() + 8);
                event.extend_from_slice(b"data: ");
                event.extend_from_slice(&json);
                event.extend_from_slice(b"\n\n");
                Ok::<_, std::io::Error>(Bytes::from(event))
            });
        let mut response = Response::new(body::stream(stream));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(Bytes::from_static(text.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Everything comes from here: no script, style or font from anywhere else.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    response
}

impl Handler for Dashboard {
    async fn handle(&self, request: Request<Body>, _peer: Peer) -> Response<Body> {
        let path = request.uri().path().to_owned();
        match (request.method(), path.as_str()) {
            (&Method::GET | &Method::HEAD, "/") => asset("text/html; charset=utf-8", INDEX),
            (&Method::GET | &Method::HEAD, "/app.js") => {
                asset("text/javascript; charset=utf-8", SCRIPT)
            }
            (&Method::GET | &Method::HEAD, "/app.css") => asset("text/css; charset=utf-8", STYLE),
            (&Method::GET | &Method::HEAD, "/api/fleet") => {
                let mut response = Response::new(body::full(self.latest.borrow().clone()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            (&Method::GET, "/api/events") => self.events(),
            (&Method::POST, "/api/purge" | "/api/drain" | "/api/undrain") => {
                self.act(&path, request).await
            }
            (
                _,
                "/" | "/app.js" | "/app.css" | "/api/fleet" | "/api/events" | "/api/purge"
                | "/api/drain" | "/api/undrain",
            ) => body::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
            _ => body::text(StatusCode::NOT_FOUND, "not found"),
        }
    }
}
