//! Content codings around ESI: a compressed template or fragment (gzip, br) is decoded before
//! its markup is read, and the assembled page is compressed again for a client that accepts
//! it. Both work chunk by chunk; the encoder flushes after each chunk so a streamed page is
//! not held back by the compressor. Decoding stops with an error past a byte limit, so a
//! small compressed body cannot expand without bound.

use std::io::Write;

use bytes::Bytes;
use http::HeaderMap;
use http::header;

/// Decodes a body's content coding.
pub(crate) enum Decoder {
    Identity,
    Gzip(Box<flate2::write::MultiGzDecoder<Limited>>),
    Brotli(Box<brotli::DecompressorWriter<Limited>>),
}

/// What a decoder may write, in all.
pub(crate) struct Limited {
    buffer: Vec<u8>,
    written: u64,
    limit: u64,
}

impl Write for Limited {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.written += bytes.len() as u64;
        if self.written > self.limit {
            return Err(std::io::Error::other(
                "decoded body is larger than the page limit",
            ));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The decoded bytes a decoder may produce when no limit is given.
const DEFAULT_LIMIT: u64 = 16 << 20;

impl Decoder {
    /// The decoder for a response's `Content-Encoding`; an error for a coding it cannot read.
    pub(crate) fn for_response(headers: &HeaderMap) -> Result<Self, String> {
        Self::limited(headers, DEFAULT_LIMIT)
    }

    pub(crate) fn limited(headers: &HeaderMap, limit: u64) -> Result<Self, String> {
        let codings: Vec<String> = headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity")
            .collect();
        let sink = Limited {
            buffer: Vec::new(),
            written: 0,
            limit,
        };
        match codings.as_slice() {
            [] => Ok(Self::Identity),
            [one] if one == "gzip" || one == "x-gzip" => Ok(Self::Gzip(Box::new(
                flate2::write::MultiGzDecoder::new(sink),
            ))),
            [one] if one == "br" => Ok(Self::Brotli(Box::new(brotli::DecompressorWriter::new(
                sink, 4096,
            )))),
            other => Err(format!("unsupported content-coding {}", other.join(", "))),
        }
    }

    pub(crate) fn decode(&mut self, chunk: &Bytes) -> Result<Bytes, String> {
        let sink = match self {
            Self::Identity => return Ok(chunk.clone()),
            Self::Gzip(decoder) => {
                decoder.write_all(chunk).map_err(|e| e.to_string())?;
                decoder.get_mut()
            }
            Self::Brotli(decoder) => {
                decoder.write_all(chunk).map_err(|e| e.to_string())?;
                decoder.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(&mut sink.buffer)))
    }

    pub(crate) fn finish(&mut self) -> Result<Bytes, String> {
        let sink = match self {
            Self::Identity => return Ok(Bytes::new()),
            Self::Gzip(decoder) => {
                decoder.try_finish().map_err(|e| e.to_string())?;
                decoder.get_mut()
            }
            Self::Brotli(decoder) => {
                decoder.flush().map_err(|e| e.to_string())?;
                decoder.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(&mut sink.buffer)))
    }
}

/// The coding an assembled page is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Brotli,
    Gzip,
}

impl Coding {
    /// The best coding the client accepts (br, then gzip), if any: read as the cache reads
    /// Accept-Encoding for its variants ([`outpost_cache::key::accepted_encodings`]).
    pub(crate) fn accepted(headers: &HeaderMap) -> Option<Self> {
        match outpost_cache::key::accepted_encodings(headers) {
            "br, gzip" | "br" => Some(Self::Brotli),
            "gzip" => Some(Self::Gzip),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Gzip => "gzip",
        }
    }
}

/// Compresses a page chunk by chunk.
pub(crate) enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    pub(crate) fn new(coding: Coding) -> Self {
        match coding {
            Coding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(5),
            )),
            Coding::Brotli => Self::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                4,
                20,
            ))),
        }
    }

    /// `chunk` compressed and flushed, so the client can decode everything sent so far.
    pub(crate) fn encode(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        let out = match self {
            Self::Gzip(encoder) => {
                encoder.write_all(chunk)?;
                encoder.flush()?;
                encoder.get_mut()
            }
            Self::Brotli(encoder) => {
                encoder.write_all(chunk)?;
                encoder.flush()?;
                encoder.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(out)))
    }

    pub(crate) fn finish(self) -> std::io::Result<Bytes> {
        match self {
            Self::Gzip(encoder) => encoder.finish().map(Bytes::from),
            Self::Brotli(encoder) => Ok(Bytes::from(encoder.into_inner())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::io::Read;

    fn coded(coding: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        headers
    }

    #[test]
    fn round_trips_chunk_by_chunk() {
        for coding in [Coding::Gzip, Coding::Brotli] {
            let mut encoder = Encoder::new(coding);
            let mut compressed = Vec::new();
            for chunk in ["<p>hello ", "<esi:include src=\"/a\"/>", " world</p>"] {
                compressed.extend_from_slice(&encoder.encode(chunk.as_bytes()).unwrap());
            }
            compressed.extend_from_slice(&encoder.finish().unwrap());
            let mut decoder = Decoder::for_response(&coded(coding.name())).unwrap();
            let mut out = Vec::new();
            for piece in compressed.chunks(7) {
                out.extend_from_slice(&decoder.decode(&Bytes::copy_from_slice(piece)).unwrap());
            }
            out.extend_from_slice(&decoder.finish().unwrap());
            assert_eq!(
                out, b"<p>hello <esi:include src=\"/a\"/> world</p>",
                "{coding:?}"
            );
        }
    }

    #[test]
    fn a_flushed_chunk_decodes_before_the_end() {
        let mut encoder = Encoder::new(Coding::Gzip);
        let first = encoder.encode(b"first part").unwrap();
        let mut decoder = flate2::read::GzDecoder::new(&first[..]);
        let mut out = vec![0; 64];
        let n = decoder.read(&mut out).unwrap();
        assert_eq!(&out[..n], b"first part");
    }

    #[test]
    fn bombs_and_unknown_codings_are_errors() {
        let mut encoder = Encoder::new(Coding::Gzip);
        let zeros = vec![0u8; 1 << 20];
        let mut compressed = encoder.encode(&zeros).unwrap().to_vec();
        compressed.extend_from_slice(&encoder.finish().unwrap());
        let mut decoder = Decoder::limited(&coded("gzip"), 1000).unwrap();
        assert!(decoder.decode(&Bytes::from(compressed)).is_err());
        assert!(Decoder::for_response(&coded("zstd")).is_err());
        assert!(Decoder::for_response(&coded("gzip, br")).is_err());
        let mut bad = Decoder::for_response(&coded("gzip")).unwrap();
        assert!(bad.decode(&Bytes::from_static(b"not gzip at all")).is_err());
    }
}
