//! A live stream made from a VOD one, for the demo and the tests. Under `path` the origin
//! serves, over the VOD stream's own files looped:
//!
//! - low-latency HLS media playlists whose window of `window` segments slides forward every
//!   target duration (2 s for the demo stream), media sequence moving on with the clock, with
//!   partial segments (`EXT-X-PART`: the CMAF chunks each VOD segment is made of), a preload
//!   hint for the next part, and blocking reloads (`_HLS_msn`, `_HLS_part`) held until the
//!   asked-for part exists;
//! - a dynamic DASH MPD over the same segments, one period per loop of the VOD stream.
//!
//! Segment `N` of the live stream is VOD segment `N mod count`, with a discontinuity (in DASH,
//! a new period) each time the loop starts again. The clock is the wall clock: segment `N`
//! spans `[N * target, (N + 1) * target)` seconds after the epoch and is complete at its end;
//! its part `p` of `k` is published `(p + 1) / k` of the way through. Every origin process,
//! and every test, so agrees on what is live now. Everything here is plain logic with no I/O:
//! `Origin` reads the VOD files once and asks [`Live::answer`] what to send.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// One live stream over a VOD one (`[[origin.live]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveStream {
    /// Where the live stream is served: `/video/live/`.
    pub path: String,
    /// The VOD stream it loops: `/video/vod/` (with `master.m3u8`, `media_N.m3u8` and, for
    /// DASH, `manifest.mpd`).
    pub source: String,
    /// Segments in each live media playlist and in the MPD's time-shift buffer.
    #[serde(default = "default_window")]
    pub window: u64,
    /// Low-latency HLS: partial segments, preload hints and blocking reloads.
    #[serde(default = "default_parts")]
    pub parts: bool,
}

fn default_window() -> u64 {
    6
}

fn default_parts() -> bool {
    true
}

/// The demo's live stream: `/video/live/` over `/video/vod/`.
pub fn default_live() -> Vec<LiveStream> {
    vec![LiveStream {
        path: "/video/live/".into(),
        source: "/video/vod/".into(),
        window: default_window(),
        parts: default_parts(),
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

/// Where each CMAF chunk of an fMP4 segment starts and ends: one range per `moof` (with the
/// `styp` / `sidx` boxes before it), covering the whole segment. A segment that is not a
/// sequence of well-formed boxes, or has no `moof`, is one part.
#[allow(
    clippy::single_range_in_vec_init,
    reason = "one part: the whole segment"
)]
pub(crate) fn chunk_ranges(segment: &[u8]) -> Vec<Range<usize>> {
    let whole = vec![0..segment.len()];
    let mut starts = vec![0];
    let mut at = 0usize;
    let mut previous: Option<(usize, [u8; 4])> = None;
    let mut moofs = 0;
    while at < segment.len() {
        let Some(header) = segment.get(at..at + 8) else {
            return whole;
        };
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        let size = match size32 {
            0 => segment.len() - at,
            1 => match segment.get(at + 8..at + 16) {
                Some(large) => {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(large);
                    usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX)
                }
                None => return whole,
            },
            n => n as usize,
        };
        if size < 8 || size > segment.len() - at {
            return whole;
        }
        if &kind == b"moof" {
            moofs += 1;
            if moofs > 1 {
                // A chunk's `sidx` belongs with the `moof` it indexes.
                let start = match previous {
                    Some((offset, kind)) if &kind == b"sidx" => offset,
                    _ => at,
                };
                starts.push(start);
            }
        }
        previous = Some((at, kind));
        at += size;
    }
    if moofs == 0 {
        return whole;
    }
    let mut ranges: Vec<Range<usize>> = starts.windows(2).map(|w| w[0]..w[1]).collect();
    ranges.push(starts[starts.len() - 1]..segment.len());
    ranges
}

/// One rendition of a live stream: its VOD playlist and the chunks of each VOD segment.
#[derive(Debug, Clone)]
pub(crate) struct Rendition {
    pub playlist: MediaPlaylist,
    /// By VOD segment index: the byte ranges of its parts.
    pub parts: Vec<Vec<Range<usize>>>,
}

/// The VOD MPD's periods' content, made ready for a live period: its adaptation sets, with
/// the segment numbers left as `{start}` to fill in.
#[derive(Debug, Clone)]
pub(crate) struct MpdTemplate {
    adaptation_sets: String,
}

impl MpdTemplate {
    /// The adaptation sets of the VOD MPD's one period, their `SegmentTemplate`s changed to
    /// the live names (`seg-$RepresentationID$-$Number$.m4s`, numbered from the period's first
    /// segment). `None` when the MPD is not the one-period, number-templated kind
    /// `scripts/make-test-stream` writes.
    pub(crate) fn from_vod(mpd: &str) -> Option<Self> {
        let period = mpd.find("<Period")?;
        let body = period + mpd[period..].find('>')? + 1;
        let end = mpd.rfind("</Period>")?;
        let inner = mpd.get(body..end)?;
        if !inner.contains("$Number") || !inner.contains("startNumber=\"1\"") {
            return None;
        }
        let adaptation_sets = inner
            .replace("$Number%03d$", "$Number$")
            .replace("startNumber=\"1\"", "startNumber=\"{start}\"");
        Some(Self { adaptation_sets })
    }
}

/// What the live stream sends for a name under its path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LiveAnswer {
    /// A file of the VOD stream, by URL path (init segments, the master playlist, whole
    /// segments).
    File(String),
    /// Bytes of a file of the VOD stream: one part of a segment.
    Part { path: String, range: Range<usize> },
    /// A playlist or MPD made now, with its content type and lifetime in seconds.
    Made {
        text: String,
        content_type: &'static str,
        max_age: u64,
    },
    /// Ask again at this time (milliseconds since the epoch): a blocking reload, or the
    /// hinted next part, that is not there yet.
    HoldUntil(u64),
    /// A segment or part that is not published yet (and not the next one), or a name the
    /// stream does not have.
    Missing,
    /// A blocking reload the spec refuses: an msn too far ahead, or malformed parameters.
    BadRequest(&'static str),
}

/// A live stream with its VOD files read.
#[derive(Debug)]
pub(crate) struct Live {
    pub stream: LiveStream,
    /// By rendition name (`0` for `media_0.m3u8`).
    renditions: HashMap<String, Rendition>,
    /// VOD segments every rendition has: the loop's length.
    count: u64,
    /// The target duration every rendition shares, in milliseconds.
    target_ms: u64,
    mpd: Option<MpdTemplate>,
}

const HLS: &str = "application/vnd.apple.mpegurl";
const DASH: &str = "application/dash+xml";

impl Live {
    /// `None` when there is nothing to loop or the renditions disagree on the target duration.
    pub(crate) fn new(
        stream: LiveStream,
        renditions: HashMap<String, Rendition>,
        mpd: Option<MpdTemplate>,
    ) -> Option<Self> {
        let count = renditions
            .values()
            .map(|r| r.playlist.segments.len())
            .min()?;
        let target = renditions.values().next()?.playlist.target;
        if renditions.values().any(|r| r.playlist.target != target) {
            return None;
        }
        Some(Self {
            stream,
            renditions,
            count: u64::try_from(count).ok()?.max(1),
            target_ms: target * 1000,
            mpd,
        })
    }

    /// VOD segment index of live segment `n`.
    fn index(&self, n: u64) -> usize {
        usize::try_from(n % self.count).unwrap_or(0)
    }

    /// Parts of live segment `n` in `rendition` (1 when parts are off).
    fn part_count(&self, rendition: &Rendition, n: u64) -> u64 {
        if !self.stream.parts {
            return 1;
        }
        rendition
            .parts
            .get(self.index(n))
            .map_or(1, |p| p.len().max(1) as u64)
    }

    /// When part `p` (below the segment's part count) of segment `n` is published, in
    /// milliseconds since the epoch.
    fn part_published(&self, rendition: &Rendition, n: u64, p: u64) -> u64 {
        let k = self.part_count(rendition, n);
        n.saturating_mul(self.target_ms)
            .saturating_add((p.min(k - 1) + 1) * self.target_ms / k)
    }

    /// The longest part, in seconds: `PART-TARGET`.
    fn part_target(&self) -> f64 {
        let most = self
            .renditions
            .values()
            .flat_map(|r| r.parts.iter().map(|p| p.len().max(1)))
            .min()
            .unwrap_or(1);
        self.target_ms as f64 / 1000.0 / most as f64
    }

    /// A segment's or part's name, `seg-{rendition}-{N}.m4s` or `seg-{rendition}-{N}.{P}.m4s`:
    /// its rendition, number and part; `None` for any other name.
    fn segment(&self, name: &str) -> Option<(&Rendition, u64, Option<u64>)> {
        let (rendition, number) = name
            .strip_prefix("seg-")?
            .strip_suffix(".m4s")?
            .rsplit_once('-')?;
        let media = self.renditions.get(rendition)?;
        match number.split_once('.') {
            Some((n, p)) => Some((media, n.parse().ok()?, Some(p.parse().ok()?))),
            None => Some((media, number.parse().ok()?, None)),
        }
    }

    /// What to send for `name` (the path after the stream's) with `query`, at `now` (ms
    /// since the epoch).
    pub(crate) fn answer(&self, name: &str, query: Option<&str>, now: u64) -> LiveAnswer {
        let source = &self.stream.source;
        if name == "master.m3u8" || (name.starts_with("init-") && name.ends_with(".mp4")) {
            return LiveAnswer::File(format!("{source}{name}"));
        }
        if name == "manifest.mpd" {
            return match &self.mpd {
                Some(template) => LiveAnswer::Made {
                    text: self.mpd(template, now),
                    content_type: DASH,
                    max_age: 1,
                },
                None => LiveAnswer::Missing,
            };
        }
        if let Some(rendition) = name
            .strip_prefix("media_")
            .and_then(|n| n.strip_suffix(".m3u8"))
        {
            let Some(media) = self.renditions.get(rendition) else {
                return LiveAnswer::Missing;
            };
            return self.media_answer(rendition, media, query, now);
        }
        let Some((media, n, part)) = self.segment(name) else {
            return LiveAnswer::Missing;
        };
        let file = format!("{source}{}", media.playlist.segments[self.index(n)].1);
        match part {
            None if now >= n.saturating_add(1).saturating_mul(self.target_ms) => {
                LiveAnswer::File(file)
            }
            None => LiveAnswer::Missing,
            Some(p) => {
                if !self.stream.parts || p >= self.part_count(media, n) {
                    return LiveAnswer::Missing;
                }
                let published = self.part_published(media, n, p);
                let part_ms = self.target_ms / self.part_count(media, n);
                if now < published {
                    // The next part is what the preload hint names: held until it exists.
                    return if published - now <= part_ms {
                        LiveAnswer::HoldUntil(published)
                    } else {
                        LiveAnswer::Missing
                    };
                }
                match media
                    .parts
                    .get(self.index(n))
                    .and_then(|r| r.get(p as usize))
                {
                    Some(range) => LiveAnswer::Part {
                        path: file,
                        range: range.clone(),
                    },
                    None => LiveAnswer::Missing,
                }
            }
        }
    }

    /// The CMSD-Static value (CTA-5006) for `name`: what the object is (`ot`, `sf`), that the
    /// stream is live (`st=l`), and for segments and parts their duration (`d`) and when they
    /// became available (`at`, ms since the epoch). The held time of a blocking reload (`ht`)
    /// is the caller's to add.
    pub(crate) fn server_data(&self, name: &str) -> Option<String> {
        if name == "master.m3u8" || (name.starts_with("media_") && name.ends_with(".m3u8")) {
            return Some("ot=m,sf=h,st=l".into());
        }
        if name == "manifest.mpd" {
            return Some("ot=m,sf=d,st=l".into());
        }
        if name.starts_with("init-") && name.ends_with(".mp4") {
            return Some("ot=i,st=l".into());
        }
        let (media, n, part) = self.segment(name)?;
        let duration_ms = media
            .playlist
            .segments
            .get(self.index(n))
            .map_or(self.target_ms, |s| (s.0 * 1000.0).round() as u64);
        Some(match part {
            Some(p) => {
                let k = self.part_count(media, n);
                format!(
                    "at={},d={},st=l",
                    self.part_published(media, n, p),
                    duration_ms / k
                )
            }
            None => format!(
                "at={},d={duration_ms},st=l",
                n.saturating_add(1).saturating_mul(self.target_ms)
            ),
        })
    }

    fn media_answer(
        &self,
        name: &str,
        media: &Rendition,
        query: Option<&str>,
        now: u64,
    ) -> LiveAnswer {
        let window_secs = self.stream.window * self.target_ms / 1000;
        let blocking = match blocking_reload(query) {
            Ok(blocking) => blocking,
            Err(reason) => return LiveAnswer::BadRequest(reason),
        };
        if let Some((mut msn, mut part)) = blocking {
            if !self.stream.parts && part.is_some() {
                return LiveAnswer::BadRequest("_HLS_part on a playlist without parts");
            }
            // A part past the segment's last is the next segment's part, as far as one
            // segment on.
            if let Some(p) = part {
                let k = self.part_count(media, msn);
                if p >= k {
                    let next = self.part_count(media, msn.saturating_add(1));
                    if p - k >= next {
                        return LiveAnswer::BadRequest("_HLS_part beyond the next segment");
                    }
                    (msn, part) = (msn.saturating_add(1), Some(p - k));
                }
            }
            // The last segment the playlist has now: the one in progress once it has a part.
            let current = now / self.target_ms;
            let last = if self.stream.parts && now >= self.part_published(media, current, 0) {
                current
            } else {
                current.saturating_sub(1)
            };
            if msn > last + 2 {
                return LiveAnswer::BadRequest("_HLS_msn more than two beyond the last segment");
            }
            let ready = match part {
                Some(p) => self.part_published(media, msn, p),
                None => msn.saturating_add(1).saturating_mul(self.target_ms),
            };
            if now < ready {
                return LiveAnswer::HoldUntil(ready);
            }
            // A blocking reload's answer is the playlist when the part appeared: the same at
            // every tier, and it may be kept as long as the window.
            return LiveAnswer::Made {
                text: self.media_playlist(name, media, ready),
                content_type: HLS,
                max_age: window_secs.max(1),
            };
        }
        LiveAnswer::Made {
            text: self.media_playlist(name, media, now),
            content_type: HLS,
            // Half a target duration: a live playlist changes every segment.
            max_age: (self.target_ms / 2000).max(1),
        }
    }

    /// The live media playlist of `rendition` at `now`: the `window` newest complete
    /// segments, named `seg-{rendition}-{N}.m4s`, with a discontinuity where the loop starts
    /// again; with parts, those of the last two complete segments and of the one in progress,
    /// and a preload hint for the next.
    fn media_playlist(&self, name: &str, media: &Rendition, now: u64) -> String {
        let vod = &media.playlist;
        let current = now / self.target_ms;
        let last = current.saturating_sub(1);
        let first = last.saturating_sub(self.stream.window.max(1) - 1);
        // Discontinuities before the first segment: loop starts at multiples of `count`.
        let dropped = if first == 0 {
            0
        } else {
            (first - 1) / self.count
        };
        let mut out = String::with_capacity(1024);
        let version = if self.stream.parts { 9 } else { 6 };
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n",
            vod.target
        );
        if self.stream.parts {
            let part_target = self.part_target();
            let _ = write!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n#EXT-X-PART-INF:PART-TARGET={part_target:.3}\n",
                part_target * 3.0
            );
        }
        let _ = write!(
            out,
            "#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{dropped}\n"
        );
        if let Some(map) = &vod.map {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{map}\"");
        }
        let with_parts = |n: u64| self.stream.parts && n + 2 >= last;
        for n in first..=last {
            if n > 0 && n.is_multiple_of(self.count) {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if n == first || n.is_multiple_of(self.count) {
                // Players line renditions up by the clock; each loop restarts media time.
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    iso_time(n.saturating_mul(self.target_ms))
                );
            }
            let duration = vod
                .segments
                .get(self.index(n))
                .map_or(vod.target as f64, |s| s.0);
            if with_parts(n) {
                self.write_parts(&mut out, name, media, n, duration, None);
            }
            let _ = write!(out, "#EXTINF:{duration:.6},\nseg-{name}-{n}.m4s\n");
        }
        if self.stream.parts {
            let k = self.part_count(media, current);
            let published = (0..k)
                .take_while(|&p| self.part_published(media, current, p) <= now)
                .count() as u64;
            if published > 0 && current > 0 && current.is_multiple_of(self.count) {
                out.push_str("#EXT-X-DISCONTINUITY\n");
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    iso_time(current.saturating_mul(self.target_ms))
                );
            }
            let duration = vod
                .segments
                .get(self.index(current))
                .map_or(vod.target as f64, |s| s.0);
            self.write_parts(&mut out, name, media, current, duration, Some(published));
            // The next part: of this segment, or the first of the next.
            let (n, p) = if published < k {
                (current, published)
            } else {
                (current + 1, 0)
            };
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg-{name}-{n}.{p}.m4s\""
            );
        }
        out
    }

    /// `EXT-X-PART` lines for segment `n`: all its parts, or the first `only` of them.
    fn write_parts(
        &self,
        out: &mut String,
        name: &str,
        media: &Rendition,
        n: u64,
        duration: f64,
        only: Option<u64>,
    ) {
        let k = self.part_count(media, n);
        for p in 0..only.unwrap_or(k).min(k) {
            let independent = if p == 0 { ",INDEPENDENT=YES" } else { "" };
            let _ = writeln!(
                out,
                "#EXT-X-PART:DURATION={:.6},URI=\"seg-{name}-{n}.{p}.m4s\"{independent}",
                duration / k as f64
            );
        }
    }

    /// The dynamic MPD at `now`: one period per loop of the VOD stream that overlaps the
    /// time-shift buffer, each numbering its segments from the live segment it starts with.
    fn mpd(&self, template: &MpdTemplate, now: u64) -> String {
        let target = self.target_ms / 1000;
        let loop_ms = self.count * self.target_ms;
        let window_ms = self.stream.window * self.target_ms;
        let first_loop = now.saturating_sub(window_ms) / loop_ms;
        let last_loop = now / loop_ms;
        let mut out = String::with_capacity(4096);
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
             type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\" publishTime=\"{}\" \
             minimumUpdatePeriod=\"PT{target}S\" timeShiftBufferDepth=\"PT{}S\" \
             suggestedPresentationDelay=\"PT{}S\" maxSegmentDuration=\"PT{target}S\" minBufferTime=\"PT{target}S\">\n",
            iso_time(now),
            window_ms / 1000,
            3 * target,
        );
        for k in first_loop..=last_loop {
            let start = k * self.count;
            let _ = writeln!(
                out,
                "\t<Period id=\"{k}\" start=\"PT{}S\">{}</Period>",
                k * loop_ms / 1000,
                template
                    .adaptation_sets
                    .replace("{start}", &start.to_string())
            );
        }
        // The time, so that players need no time server of their own.
        let _ = write!(
            out,
            "\t<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>\n</MPD>\n",
            iso_time(now)
        );
        out
    }
}

/// `_HLS_msn` and `_HLS_part` of a playlist request: `None` when it is not a blocking reload.
fn blocking_reload(query: Option<&str>) -> Result<Option<(u64, Option<u64>)>, &'static str> {
    let mut msn = None;
    let mut part = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "_HLS_msn" => msn = Some(value.parse().map_err(|_| "_HLS_msn is not a number")?),
            "_HLS_part" => part = Some(value.parse().map_err(|_| "_HLS_part is not a number")?),
            _ => {}
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part without _HLS_msn"),
        (None, None) => Ok(None),
        (Some(msn), part) => Ok(Some((msn, part))),
    }
}

/// Milliseconds since the epoch as an xs:dateTime in UTC.
fn iso_time(ms: u64) -> String {
    let time = i64::try_from(ms / 1000)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vod(rendition: &str) -> MediaPlaylist {
        MediaPlaylist::parse(&format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MAP:URI=\"init-{rendition}.mp4\"\n\
             #EXTINF:2.000000,\nseg-{rendition}-001.m4s\n#EXTINF:2.000000,\nseg-{rendition}-002.m4s\n\
             #EXTINF:1.9,\nseg-{rendition}-003.m4s\n#EXT-X-ENDLIST\n",
        ))
        .unwrap()
    }

    const MPD: &str = "<MPD type=\"static\"><Period id=\"0\" start=\"PT0.0S\"><AdaptationSet>\
        <SegmentTemplate media=\"seg-$RepresentationID$-$Number%03d$.m4s\" startNumber=\"1\"/>\
        </AdaptationSet></Period></MPD>";

    /// Three segments of four parts each, looped in windows of four.
    fn live(parts: bool) -> Live {
        let chunks = vec![vec![0..10, 10..20, 20..30, 30..40]; 3];
        let renditions = HashMap::from([(
            "0".to_owned(),
            Rendition {
                playlist: vod("0"),
                parts: chunks,
            },
        )]);
        let stream = LiveStream {
            path: "/live/".into(),
            source: "/vod/".into(),
            window: 4,
            parts,
        };
        Live::new(stream, renditions, MpdTemplate::from_vod(MPD)).unwrap()
    }

    fn playlist(answer: LiveAnswer) -> String {
        match answer {
            LiveAnswer::Made { text, .. } => text,
            other => panic!("not a playlist: {other:?}"),
        }
    }

    #[test]
    fn the_window_slides_with_the_clock() {
        let live = live(false);
        let at = |secs: u64| playlist(live.answer("media_0.m3u8", None, secs * 1000));
        // At t=20 s, segments 0..=9 are complete; the window is 6..=9.
        let playlist = at(20);
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{playlist}");
        assert!(playlist.contains("seg-0-9.m4s") && !playlist.contains("seg-0-10.m4s"));
        assert!(playlist.contains("#EXT-X-MAP:URI=\"init-0.mp4\""));
        assert!(!playlist.contains("ENDLIST") && !playlist.contains("PART"));
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
    fn segments_and_parts_appear_when_published() {
        let live = live(true);
        // At 20.6 s segment 10 is in progress with one part (0.5 s) out, and the second
        // (published at 21.0 s) is hinted.
        let text = playlist(live.answer("media_0.m3u8", None, 20_600));
        assert!(
            text.contains("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n"),
            "{text}"
        );
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        assert!(text.ends_with(
            "#EXT-X-PART:DURATION=0.500000,URI=\"seg-0-10.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg-0-10.1.m4s\"\n"
        ));
        // Parts are listed for the last two complete segments too, not for older ones.
        assert!(
            text.contains("seg-0-7.3.m4s\"\n#EXTINF:2.000000,\nseg-0-7.m4s"),
            "{text}"
        );
        assert!(!text.contains("seg-0-6.0.m4s"));
        assert_eq!(
            live.answer("seg-0-10.0.m4s", None, 20_600),
            LiveAnswer::Part {
                path: "/vod/seg-0-002.m4s".into(),
                range: 0..10
            }
        );
        // The hinted part is held until it exists; one further on is not there.
        assert_eq!(
            live.answer("seg-0-10.1.m4s", None, 20_600),
            LiveAnswer::HoldUntil(21_000)
        );
        assert_eq!(
            live.answer("seg-0-10.2.m4s", None, 20_600),
            LiveAnswer::Missing
        );
        assert_eq!(
            live.answer("seg-0-10.m4s", None, 20_600),
            LiveAnswer::Missing
        );
        assert_eq!(
            live.answer("seg-0-10.m4s", None, 22_000),
            LiveAnswer::File("/vod/seg-0-002.m4s".into())
        );
        assert_eq!(
            live.answer("seg-0-10.4.m4s", None, 30_000),
            LiveAnswer::Missing
        );
        assert_eq!(
            live.answer("seg-0-x.m4s", None, 30_000),
            LiveAnswer::Missing
        );
        assert_eq!(
            live.answer("seg-9-1.m4s", None, 30_000),
            LiveAnswer::Missing
        );
        // A loop starts at segment 12: its parts come after a discontinuity.
        let text = playlist(live.answer("media_0.m3u8", None, 24_700));
        assert!(
            text.ends_with(
                "seg-0-11.m4s\n#EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:24.000Z\n\
             #EXT-X-PART:DURATION=0.500000,URI=\"seg-0-12.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg-0-12.1.m4s\"\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn blocking_reloads_wait_for_their_part_and_far_ones_are_refused() {
        let live = live(true);
        let ask = |query: &str, now| live.answer("media_0.m3u8", Some(query), now);
        // At 20.6 s: part 10.0 exists, 10.1 comes at 21.0 s, segment 10 is complete at 22 s.
        assert!(matches!(
            ask("_HLS_msn=10&_HLS_part=0", 20_600),
            LiveAnswer::Made { max_age: 8, .. }
        ));
        assert_eq!(
            ask("_HLS_msn=10&_HLS_part=1", 20_600),
            LiveAnswer::HoldUntil(21_000)
        );
        assert_eq!(ask("_HLS_msn=10", 20_600), LiveAnswer::HoldUntil(22_000));
        // A part past the segment's last runs on into the next segment.
        assert_eq!(
            ask("_HLS_msn=10&_HLS_part=4", 20_600),
            LiveAnswer::HoldUntil(22_500)
        );
        assert_eq!(
            ask("_HLS_msn=12&_HLS_part=0", 20_600),
            LiveAnswer::HoldUntil(24_500)
        );
        assert!(matches!(
            ask("_HLS_msn=13", 20_600),
            LiveAnswer::BadRequest(_)
        ));
        // Before segment 10's first part, the last segment is 9: 12 is too far.
        assert!(matches!(
            ask("_HLS_msn=12", 20_100),
            LiveAnswer::BadRequest(_)
        ));
        assert!(matches!(
            ask("_HLS_part=1", 20_600),
            LiveAnswer::BadRequest(_)
        ));
        assert!(matches!(
            ask("_HLS_msn=x", 20_600),
            LiveAnswer::BadRequest(_)
        ));
        // Asked again when it holds until, the answer is the playlist as of that moment.
        let text = playlist(ask("_HLS_msn=10&_HLS_part=1", 21_000));
        assert!(
            text.contains("seg-0-10.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg-0-10.2.m4s\""),
            "{text}"
        );
        assert_eq!(text, playlist(ask("_HLS_msn=10&_HLS_part=1", 21_900)));
        // Without parts, _HLS_part is refused.
        let plain = super::tests::live(false);
        assert!(matches!(
            plain.answer("media_0.m3u8", Some("_HLS_msn=10&_HLS_part=1"), 20_600),
            LiveAnswer::BadRequest(_)
        ));
    }

    #[test]
    fn the_mpd_has_a_period_per_loop_in_the_window() {
        let live = live(true);
        // Loops are 6 s (three 2 s segments); at 13 s the 8 s buffer reaches back into loop 0.
        let answer = live.answer("manifest.mpd", None, 13_000);
        let LiveAnswer::Made {
            text, content_type, ..
        } = answer
        else {
            panic!("{answer:?}");
        };
        assert_eq!(content_type, "application/dash+xml");
        assert!(text.contains("type=\"dynamic\""));
        assert!(
            text.contains("publishTime=\"1970-01-01T00:00:13.000Z\""),
            "{text}"
        );
        assert!(text.contains("timeShiftBufferDepth=\"PT8S\""));
        assert_eq!(text.matches("<Period ").count(), 3, "{text}");
        assert!(text.contains("<Period id=\"2\" start=\"PT12S\"><AdaptationSet><SegmentTemplate media=\"seg-$RepresentationID$-$Number$.m4s\" startNumber=\"6\"/>"), "{text}");
        assert!(text.contains("urn:mpeg:dash:utc:direct:2014"));
        assert_eq!(iso_time(1_764_650_096_123), "2025-12-02T04:34:56.123Z");
        assert!(MpdTemplate::from_vod("<MPD></MPD>").is_none());
    }

    #[test]
    fn chunks_are_found_at_each_moof_with_its_sidx() {
        fn boxed(kind: &[u8; 4], len: usize) -> Vec<u8> {
            let mut b = u32::try_from(len).unwrap().to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.resize(len, 0);
            b
        }
        let segment: Vec<u8> = [
            boxed(b"styp", 24),
            boxed(b"sidx", 52),
            boxed(b"moof", 100),
            boxed(b"mdat", 300),
            boxed(b"sidx", 52),
            boxed(b"moof", 90),
            boxed(b"mdat", 200),
            boxed(b"moof", 90),
            boxed(b"mdat", 10),
        ]
        .concat();
        assert_eq!(chunk_ranges(&segment), vec![0..476, 476..818, 818..918]);
        // Not boxes, a box running past the end, no moof: one part.
        assert_eq!(chunk_ranges(b"garbage"), vec![0..7]);
        let mut truncated = segment.clone();
        truncated.truncate(900);
        assert_eq!(chunk_ranges(&truncated), vec![0..900]);
        assert_eq!(chunk_ranges(&boxed(b"mdat", 40)), vec![0..40]);
        assert_eq!(
            chunk_ranges(&[0, 0, 0, 1, b'm', b'o', b'o', b'f']),
            vec![0..8]
        );
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
