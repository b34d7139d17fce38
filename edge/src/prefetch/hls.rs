//! What an HLS media playlist says comes next: its segments in order (one entry per object,
//! so byte-range segments of one file count once) and its LL-HLS preload hint.

/// The order of a media playlist's segments and its preload hint, as URIs written in it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MediaOrder<'a> {
    pub segments: Vec<&'a str>,
    pub preload_hint: Option<&'a str>,
}

pub(crate) fn media_order(playlist: &str) -> MediaOrder<'_> {
    let mut order = MediaOrder::default();
    for line in playlist.lines().map(str::trim) {
        if let Some(attributes) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            // A hint of TYPE=PART (or MAP) names the next object; one with a BYTERANGE-START
            // names a range of it, and warming the whole object serves that range too.
            order.preload_hint = quoted_attribute(attributes, "URI");
        } else if !line.is_empty() && !line.starts_with('#') {
            // `EXT-X-BYTERANGE` segments repeat the file's URI: it is one object to warm.
            if order.segments.last() != Some(&line) {
                order.segments.push(line);
            }
        }
    }
    order
}

/// The value of a quoted attribute (`URI="..."`) of an attribute list.
fn quoted_attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    while let Some(at) = rest.find(name) {
        let before = &rest[..at];
        let after = &rest[at + name.len()..];
        let starts_attribute = before.is_empty() || before.ends_with(',');
        if starts_attribute && let Some(value) = after.strip_prefix("=\"") {
            return value.split('"').next();
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_in_order_byte_ranges_once_and_the_hint() {
        let playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXTINF:2,\n#EXT-X-BYTERANGE:1000@0\nall.mp4\n#EXTINF:2,\n#EXT-X-BYTERANGE:1000@1000\nall.mp4\n\
            #EXTINF:2,\n9f1c.m4s\n\
            #EXT-X-PART:DURATION=0.5,URI=\"9f1d.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"9f1d.1.m4s\"\n";
        let order = media_order(playlist);
        assert_eq!(order.segments, vec!["all.mp4", "9f1c.m4s"]);
        assert_eq!(order.preload_hint, Some("9f1d.1.m4s"));
        assert_eq!(media_order("#EXTM3U\n"), MediaOrder::default());
        // A hint whose URI is not quoted, or an attribute that only ends in URI, is no hint.
        assert_eq!(
            media_order("#EXT-X-PRELOAD-HINT:TYPE=PART,XURI=\"a\",URI=b\n").preload_hint,
            None
        );
    }
}
