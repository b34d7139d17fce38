//! The one body type every handler answers with.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Errors carried by bodies: a body that errors is a body that broke, and the connection that
/// carries it is aborted rather than ended as if complete.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response or request body: streamed, possibly failing.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Pieces files are sent in by [`file_range`].
pub const FILE_CHUNK: usize = 256 * 1024;

/// `length` bytes of `file` from `start`, read in pieces as the peer takes them: a file is
/// served without being read whole into memory. Each piece is read on a blocking thread
/// straight into the buffer that is sent (no second copy).
pub async fn file_range(
    file: tokio::fs::File,
    start: u64,
    length: u64,
) -> std::io::Result<impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    let file = file.into_std().await;
    Ok(futures_util::stream::try_unfold(
        (file, start, length),
        |(file, offset, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(FILE_CHUNK);
            // Allocated here, not on the blocking thread: memory freed where it was taken stays
            // in this thread's heap instead of growing one per blocking thread.
            let mut piece = Vec::with_capacity(want);
            let (file, piece) = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek};
                let mut reader = &file;
                reader.seek(std::io::SeekFrom::Start(offset))?;
                reader.take(want as u64).read_to_end(&mut piece)?;
                Ok::<_, std::io::Error>((file, Bytes::from(piece)))
            })
            .await
            .map_err(std::io::Error::other)??;
            if piece.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file ended early",
                ));
            }
            let read = piece.len() as u64;
            Ok(Some((piece, (file, offset + read, left - read))))
        },
    ))
}

/// A body from a stream of bytes; an error in it aborts the response.
pub fn stream(
    stream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> Body {
    use futures_util::TryStreamExt;
    http_body_util::StreamBody::new(
        stream
            .map_ok(http_body::Frame::data)
            .map_err(|e| Box::new(e) as BoxError),
    )
    .boxed_unsync()
}

/// A small plain-text response, for errors and simple endpoints.
pub fn text(status: http::StatusCode, message: impl Into<String>) -> http::Response<Body> {
    let mut message = message.into();
    if !message.ends_with('\n') {
        message.push('\n');
    }
    let mut response = http::Response::new(full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON response with status 200, for admin endpoints.
pub fn json(value: &impl serde::Serialize) -> http::Response<Body> {
    let mut response = http::Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
