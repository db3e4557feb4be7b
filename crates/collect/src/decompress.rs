//! Request body decompression with a hard output limit (zip bombs are refused
//! with [`DecodeError::TooLarge`], which the server answers with 413).

use std::io::Read;

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use crate::DecodeError;

/// Decodes a request body according to its `Content-Encoding`: `gzip` (and
/// `x-gzip`), `deflate` (zlib-wrapped as the RFC says, or raw deflate as some
/// clients send), `identity` or none. Output beyond `limit` bytes is refused.
pub fn decompress(
    content_encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecodeError> {
    let enc = content_encoding.map(str::trim).unwrap_or("");
    if enc.is_empty() || enc.eq_ignore_ascii_case("identity") {
        if body.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        return Ok(body.to_vec());
    }
    if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") {
        return read_limited(MultiGzDecoder::new(body), "gzip", body.len(), limit);
    }
    if enc.eq_ignore_ascii_case("deflate") {
        if is_zlib(body) {
            return read_limited(ZlibDecoder::new(body), "deflate", body.len(), limit);
        }
        return read_limited(DeflateDecoder::new(body), "deflate", body.len(), limit);
    }
    Err(DecodeError::UnsupportedEncoding(enc.to_owned()))
}

/// Whether `body` starts with a gzip header.
pub(crate) fn is_gzip(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] == 0x1f && body[1] == 0x8b
}

/// Whether `body` starts with a zlib header (RFC 1950: deflate method, check bits).
fn is_zlib(body: &[u8]) -> bool {
    body.len() >= 2
        && body[0] & 0x0f == 8
        && body[0] >> 4 <= 7
        && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0
}

fn read_limited<R: Read>(
    r: R,
    encoding: &'static str,
    compressed: usize,
    limit: usize,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(compressed.saturating_mul(4).min(limit).min(1 << 20));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt {
            encoding,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_every_encoding() {
        let data = br#"{"batch":[]}"#;
        assert_eq!(decompress(None, data, 100).unwrap(), data);
        assert_eq!(decompress(Some("identity"), data, 100).unwrap(), data);
        assert_eq!(decompress(Some("GZIP"), &gz(data), 100).unwrap(), data);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
        z.write_all(data).unwrap();
        assert_eq!(
            decompress(Some("deflate"), &z.finish().unwrap(), 100).unwrap(),
            data
        );
        let mut d = DeflateEncoder::new(Vec::new(), Compression::fast());
        d.write_all(data).unwrap();
        assert_eq!(
            decompress(Some("deflate"), &d.finish().unwrap(), 100).unwrap(),
            data
        );
    }

    #[test]
    fn refuses_bombs_and_garbage() {
        let bomb = gz(&vec![b'a'; 1 << 20]);
        assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
        let err = decompress(Some("gzip"), &bomb, 64 * 1024).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
        assert!(err.is_too_large());
        assert_eq!(
            decompress(Some("gzip"), &bomb, 1 << 20).unwrap().len(),
            1 << 20
        );
        assert!(matches!(
            decompress(Some("gzip"), b"not gzip", 100),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(matches!(
            decompress(Some("br"), b"x", 100),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            decompress(None, &[0; 101], 100),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
