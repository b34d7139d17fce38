//! Requests to the nodes' admin listeners (purges, drains, the control node's sync, the
//! dashboard's reads), over the shared [`HttpClient`].

use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use outpost_server::body;

use crate::HttpClient;

/// One request to the admin listener at `admin` with the bearer token: its status and whole
/// body, or why there is none. What the control node, its followers,
/// the dashboard and the CLI say to the nodes.
pub async fn exchange(
    client: &HttpClient,
    admin: &http::Uri,
    token: &str,
    method: Method,
    path: &str,
    content_type: Option<http::HeaderValue>,
    body: bytes::Bytes,
) -> Result<(StatusCode, bytes::Bytes), String> {
    let body = body::full(body);
    exchange_body(client, admin, token, method, path, content_type, body).await
}

/// [`exchange`] with a streamed body (a file the CLI uploads, say).
pub async fn exchange_body(
    client: &HttpClient,
    admin: &http::Uri,
    token: &str,
    method: Method,
    path: &str,
    content_type: Option<http::HeaderValue>,
    body: outpost_server::Body,
) -> Result<(StatusCode, bytes::Bytes), String> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(
            header::HOST,
            admin.authority().map_or("admin", |a| a.as_str()),
        );
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(body).map_err(|e| e.to_string())?;
    let response = client
        .send_to(admin, request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading its answer: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}

/// The body of a successful answer, or the status and body as the error.
pub fn success(answer: (StatusCode, bytes::Bytes)) -> Result<bytes::Bytes, String> {
    let (status, bytes) = answer;
    if status.is_success() {
        Ok(bytes)
    } else {
        Err(format!(
            "{status} {}",
            String::from_utf8_lossy(&bytes).trim()
        ))
    }
}
