//! What a static DASH MPD says comes next: each representation's `SegmentTemplate` numbers
//! its segments, so segment N of a representation is followed by segment N + 1, up to the
//! last one the presentation's duration allows. Dynamic (live) MPDs and MPDs with `BaseURL`s
//! or `$Time$` templates teach nothing: a live segment's successor may not exist yet, and
//! warming it would fetch a 404.

/// One representation's numbered segments, as the template writes their names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NumberedSegments {
    /// The name before the number, relative to the MPD (`seg-0-`).
    pub prefix: String,
    /// The name after it (`.m4s`).
    pub suffix: String,
    /// Digits the number is padded to (`%03d`: 3).
    pub width: usize,
    /// The last segment's number.
    pub last: u64,
}

impl NumberedSegments {
    /// The segment after `name` (relative like `prefix`), if `name` is one of these.
    pub(crate) fn after(&self, name: &str) -> Option<String> {
        let digits = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u64 = digits.parse().ok()?;
        (number < self.last).then(|| self.name(number + 1))
    }

    fn name(&self, number: u64) -> String {
        format!(
            "{}{number:0width$}{}",
            self.prefix,
            self.suffix,
            width = self.width
        )
    }
}

/// The numbered segments of every representation of a static MPD.
pub(crate) fn numbered_segments(mpd: &str) -> Vec<NumberedSegments> {
    let Ok(document) = roxmltree::Document::parse(mpd) else {
        return Vec::new();
    };
    let root = document.root_element();
    if root.tag_name().name() != "MPD"
        || root.attribute("type").unwrap_or("static") != "static"
        || root.descendants().any(|n| n.tag_name().name() == "BaseURL")
    {
        return Vec::new();
    }
    let Some(total) = root
        .attribute("mediaPresentationDuration")
        .and_then(seconds)
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for representation in root
        .descendants()
        .filter(|n| n.tag_name().name() == "Representation")
    {
        // The nearest SegmentTemplate: the representation's, else its adaptation set's.
        let template = representation.ancestors().take(3).find_map(|n| {
            n.children()
                .find(|c| c.tag_name().name() == "SegmentTemplate")
        });
        let Some(template) = template else { continue };
        let (Some(media), Some(duration)) = (
            template.attribute("media"),
            template
                .attribute("duration")
                .and_then(|d| d.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let timescale = template
            .attribute("timescale")
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(1.0);
        let start = template
            .attribute("startNumber")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1);
        if duration <= 0.0 || timescale <= 0.0 {
            continue;
        }
        let count = (total / (duration / timescale)).ceil();
        if !(1.0..1e9).contains(&count) {
            continue;
        }
        let media = media
            .replace(
                "$RepresentationID$",
                representation.attribute("id").unwrap_or(""),
            )
            .replace(
                "$Bandwidth$",
                representation.attribute("bandwidth").unwrap_or(""),
            );
        if let Some(segments) = split_number(&media, start + count as u64 - 1) {
            found.push(segments);
        }
    }
    found
}

/// A media template with one `$Number$` (or `$Number%0Nd$`) and no other identifier.
fn split_number(media: &str, last: u64) -> Option<NumberedSegments> {
    let at = media.find("$Number")?;
    let (prefix, rest) = media.split_at(at);
    let rest = &rest["$Number".len()..];
    let end = rest.find('$')?;
    let format = &rest[..end];
    let suffix = &rest[end + 1..];
    let width = match format {
        "" => 1,
        f => f.strip_prefix("%0")?.strip_suffix('d')?.parse().ok()?,
    };
    if prefix.contains('$') || suffix.contains('$') || width > 20 {
        return None;
    }
    Some(NumberedSegments {
        prefix: prefix.to_owned(),
        suffix: suffix.to_owned(),
        width,
        last,
    })
}

/// An xs:duration of hours, minutes and seconds (`PT1H2M3.5S`) in seconds.
fn seconds(duration: &str) -> Option<f64> {
    let mut rest = duration.strip_prefix("PT")?;
    let mut total = 0.0;
    for (unit, factor) in [('H', 3600.0), ('M', 60.0), ('S', 1.0)] {
        if let Some(at) = rest.find(unit) {
            total += rest[..at].parse::<f64>().ok()? * factor;
            rest = &rest[at + 1..];
        }
    }
    rest.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MPD: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT20.0S">
 <Period>
  <AdaptationSet contentType="video">
   <Representation id="0" bandwidth="400000">
    <SegmentTemplate timescale="1000000" duration="2000000" media="seg-$RepresentationID$-$Number%03d$.m4s" startNumber="1"/>
   </Representation>
  </AdaptationSet>
  <AdaptationSet contentType="audio">
   <SegmentTemplate timescale="48000" duration="96000" media="a/$Bandwidth$/$Number$.m4s" startNumber="0"/>
   <Representation id="2" bandwidth="64000"/>
  </AdaptationSet>
 </Period>
</MPD>"#;

    #[test]
    fn each_representation_numbers_its_segments_up_to_the_last() {
        let found = numbered_segments(MPD);
        assert_eq!(found.len(), 2, "{found:?}");
        let video = &found[0];
        assert_eq!(
            video.after("seg-0-001.m4s").as_deref(),
            Some("seg-0-002.m4s")
        );
        assert_eq!(
            video.after("seg-0-009.m4s").as_deref(),
            Some("seg-0-010.m4s")
        );
        assert_eq!(video.after("seg-0-010.m4s"), None, "ten segments of 2 s");
        assert_eq!(video.after("seg-1-001.m4s"), None);
        assert_eq!(video.after("seg-0-.m4s"), None);
        assert_eq!(video.after("seg-0-+1.m4s"), None);
        // Inherited from the adaptation set; numbered from 0, so the last is 9.
        let audio = &found[1];
        assert_eq!(
            audio.after("a/64000/0.m4s").as_deref(),
            Some("a/64000/1.m4s")
        );
        assert_eq!(audio.after("a/64000/9.m4s"), None);
    }

    #[test]
    fn live_and_unusual_mpds_teach_nothing() {
        assert!(numbered_segments(&MPD.replace("type=\"static\"", "type=\"dynamic\"")).is_empty());
        assert!(
            numbered_segments(&MPD.replace("<Period>", "<Period><BaseURL>http://x/</BaseURL>"))
                .is_empty()
        );
        assert!(numbered_segments(&MPD.replace("$Number%03d$", "$Time$")).len() == 1);
        assert!(numbered_segments("<MPD").is_empty());
        assert!(numbered_segments("<html/>").is_empty());
        assert_eq!(seconds("PT1H2M3.5S"), Some(3723.5));
        assert_eq!(seconds("PT20.0S"), Some(20.0));
        assert_eq!(seconds("P1D"), None);
        assert_eq!(seconds("PT5X"), None);
    }
}
