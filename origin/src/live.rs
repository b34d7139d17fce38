//! A live stream made from a VOD one, for the demo and the tests: under `path` the origin
//! serves an HLS stream whose media playlists slide a window of `window` segments forward
//! every target duration (2 s for the demo stream), media sequence moving on with the clock,
//! over the VOD stream's own files looped: segment `N` of the live stream is VOD segment
//! `N mod count`, with a discontinuity each time the loop starts again.
//!
//! The clock is the wall clock (segment `N` is published at `(N + 1) * target` seconds after
//! the epoch), so every origin process, and every test, agrees on what is live now. The
//! playlist maths is plain logic with no I/O; `Origin` reads the VOD playlists once.

use serde::{Deserialize, Serialize};

/// One live stream over a VOD one (`[[origin.live]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveStream {
    /// Where the live stream is served: `/video/live/`.
    pub path: String,
    /// The VOD stream it loops: `/video/vod/` (with `master.m3u8` and `media_N.m3u8`).
    pub source: String,
    /// Segments in each live media playlist.
    #[serde(default = "default_window")]
    pub window: u64,
}

fn default_window() -> u64 {
    6
}

/// The demo's live stream: `/video/live/` over `/video/vod/`.
pub fn default_live() -> Vec<LiveStream> {
    vec![LiveStream {
        path: "/video/live/".into(),
        source: "/video/vod/".into(),
        window: default_window(),
    }]
}

/// A VOD media playlist, as far as looping it needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MediaPlaylist {
    pub target: u64,
    pub map: Option<String>,
    /// Each segment's duration and URI.
    pub segments: Vec<(f64, String)>,
}

impl MediaPlaylist {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut target = None;
        let mut map = None;
        let mut segments = Vec::new();
        let mut duration = None;
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                target = value.parse().ok();
            } else if let Some(value) = line.strip_prefix("#EXT-X-MAP:URI=") {
                map = Some(value.trim_matches('"').to_owned());
            } else if let Some(value) = line.strip_prefix("#EXTINF:") {
                duration = value.split(',').next()?.parse::<f64>().ok();
            } else if !line.is_empty() && !line.starts_with('#') {
                segments.push((duration.take()?, line.to_owned()));
            }
        }
        let target = target?;
        (target > 0 && !segments.is_empty()).then_some(Self {
            target,
            map,
            segments,
        })
    }
}

/// The newest published segment at `now` (seconds since the epoch).
pub(crate) fn newest(target: u64, now: u64) -> u64 {
    (now / target).saturating_sub(1)
}

/// The live media playlist of `vod` at `now`: the `window` newest segments, named
/// `seg-{rendition}-{N}.m4s`, with a discontinuity where the loop starts again.
pub(crate) fn media_playlist(
    vod: &MediaPlaylist,
    rendition: &str,
    window: u64,
    count: u64,
    now: u64,
) -> String {
    let last = newest(vod.target, now);
    let first = last.saturating_sub(window.max(1) - 1);
    // Discontinuities before the first segment: loop starts at multiples of `count`.
    let dropped = if first == 0 { 0 } else { (first - 1) / count };
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{dropped}\n",
        vod.target
    );
    if let Some(map) = &vod.map {
        out.push_str(&format!("#EXT-X-MAP:URI=\"{map}\"\n"));
    }
    for n in first..=last {
        if n > 0 && n % count == 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let index = usize::try_from(n % count).unwrap_or(0);
        let duration = vod.segments.get(index).map_or(vod.target as f64, |s| s.0);
        out.push_str(&format!(
            "#EXTINF:{duration:.6},\nseg-{rendition}-{n}.m4s\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vod() -> MediaPlaylist {
        MediaPlaylist::parse(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MAP:URI=\"init-0.mp4\"\n\
             #EXTINF:2.000000,\nseg-0-001.m4s\n#EXTINF:2.000000,\nseg-0-002.m4s\n#EXTINF:1.9,\nseg-0-003.m4s\n#EXT-X-ENDLIST\n",
        )
        .unwrap()
    }

    #[test]
    fn the_window_slides_with_the_clock() {
        let vod = vod();
        assert_eq!(vod.segments.len(), 3);
        let at = |now| media_playlist(&vod, "0", 4, 3, now);
        // At t=20 s, segments 0..=9 are published; the window is 6..=9.
        let playlist = at(20);
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{playlist}");
        assert!(playlist.contains("seg-0-9.m4s") && !playlist.contains("seg-0-10.m4s"));
        assert!(playlist.contains("#EXT-X-MAP:URI=\"init-0.mp4\""));
        assert!(!playlist.contains("ENDLIST"));
        // Loop starts at 6 and 9: the first is the window's first segment (its tag is still
        // there), so one earlier discontinuity (at 3) was dropped.
        assert!(
            playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
            "{playlist}"
        );
        assert_eq!(playlist.matches("#EXT-X-DISCONTINUITY\n").count(), 2);
        assert!(playlist.contains("#EXTINF:1.900000,\nseg-0-8.m4s"));
        let later = at(22);
        assert!(later.contains("#EXT-X-MEDIA-SEQUENCE:7\n") && later.contains("seg-0-10.m4s"));
        assert!(
            later.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"),
            "{later}"
        );
        // Right after the epoch there is less than a window.
        assert!(at(3).contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }

    #[test]
    fn bad_playlists_do_not_parse() {
        assert_eq!(MediaPlaylist::parse(""), None);
        assert_eq!(
            MediaPlaylist::parse("#EXT-X-TARGETDURATION:0\n#EXTINF:1,\na\n"),
            None
        );
        assert_eq!(
            MediaPlaylist::parse("#EXT-X-TARGETDURATION:2\nseg-without-extinf\n"),
            None
        );
    }
}
