//! Content-Type from a file's extension.

use std::path::Path;

use http::HeaderValue;

/// The Content-Type for a file: from the extension through mime_guess, with the streaming video
/// types it lacks or gets wrong for a CDN (`.m3u8`, `.mpd`, `.ts`, `.m4s`), JavaScript as
/// `text/javascript` (RFC 9239), `; charset=utf-8` on text types, and
/// `application/octet-stream` when unknown.
pub fn content_type(path: &Path) -> HeaderValue {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mime = match ext.as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        "js" | "mjs" => "text/javascript",
        "" => "application/octet-stream",
        ext => mime_guess::from_ext(ext)
            .first_raw()
            .unwrap_or("application/octet-stream"),
    };
    let textual = mime.starts_with("text/")
        || matches!(
            mime,
            "application/json"
                | "application/xml"
                | "application/xhtml+xml"
                | "application/manifest+json"
                | "image/svg+xml"
        );
    let value = if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::content_type;
    use std::path::Path;

    #[test]
    fn types() {
        for (name, expected) in [
            ("index.html", "text/html; charset=utf-8"),
            ("INDEX.HTM", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("app.3f9a2c.js", "text/javascript; charset=utf-8"),
            ("logo.svg", "image/svg+xml; charset=utf-8"),
            ("robots.txt", "text/plain; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("photo.png", "image/png"),
            ("live.m3u8", "application/vnd.apple.mpegurl"),
            ("manifest.mpd", "application/dash+xml"),
            ("seg1.ts", "video/mp2t"),
            ("seg1.m4s", "video/iso.segment"),
            ("video.mp4", "video/mp4"),
            ("blob", "application/octet-stream"),
            ("weird.zzzunknown", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), expected, "{name}");
        }
    }
}
