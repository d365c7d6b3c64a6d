//! Per-chunk compression. zstd frames are made by the reference C library on native builds and
//! decoded by it there; on wasm32 (or without the `native-zstd` feature) frames are decoded by
//! the pure-Rust `ruzstd` and made by its fast encoder. "gzip" is raw DEFLATE (RFC 1951) via
//! `miniz_oxide`. Decompression never produces more than the recorded raw length, so a
//! crafted chunk cannot inflate without bound.

use serde::{Deserialize, Serialize};

/// A compression algorithm, as recorded per chunk (low nibble of the entry flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is.
    None,
    /// A zstd frame (RFC 8878).
    Zstd,
    /// Raw DEFLATE (RFC 1951), the algorithm of gzip.
    Gzip,
    /// A zstd frame made with the blob's base chunk as raw-content prefix: a delta
    /// ([`crate::delta`]). Recorded per blob, never chosen as a repository's compression.
    #[serde(rename = "zstd-delta")]
    ZstdDelta,
}

impl Compression {
    /// The code stored in pack entries.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Gzip => 2,
            Compression::ZstdDelta => 3,
        }
    }

    /// Inverse of [`Compression::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::Gzip),
            3 => Some(Compression::ZstdDelta),
            _ => None,
        }
    }

    /// Parse the names users type: `zstd`, `gzip` (or `deflate`), `none`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "zstd" => Some(Compression::Zstd),
            "gzip" | "deflate" => Some(Compression::Gzip),
            "none" | "off" => Some(Compression::None),
            _ => None,
        }
    }

    /// The level used when none is configured.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Zstd => 3,
            Compression::Gzip => 1,
            Compression::None | Compression::ZstdDelta => 0,
        }
    }
}

/// Bytes sampled (in three windows) to decide cheaply whether a chunk is worth compressing.
const SAMPLE_WINDOW: usize = 4096;

/// Whether a quick compression of three 4 KiB windows (start, middle, end) saves less than 3%:
/// then the whole chunk almost surely would not shrink either (encrypted or already compressed
/// data), and is stored raw without spending a full compression on it. Getting it wrong costs
/// space, never correctness.
fn looks_incompressible(algorithm: Compression, data: &[u8]) -> bool {
    if data.len() < 8 * SAMPLE_WINDOW {
        return false;
    }
    let mid = data.len() / 2 - SAMPLE_WINDOW / 2;
    let mut sample = Vec::with_capacity(3 * SAMPLE_WINDOW);
    for start in [0, mid, data.len() - SAMPLE_WINDOW] {
        sample.extend_from_slice(&data[start..start + SAMPLE_WINDOW]);
    }
    let packed = match algorithm {
        Compression::Zstd => zstd_compress(&sample, 1),
        Compression::Gzip => Some(miniz_oxide::deflate::compress_to_vec(&sample, 1)),
        Compression::None | Compression::ZstdDelta => return true,
    };
    packed.is_none_or(|p| p.len() * 100 >= sample.len() * 97)
}

/// Compress `data`; `None` when compression is off or would not make it smaller, in which
/// case the chunk is stored raw.
pub fn compress(algorithm: Compression, level: i32, data: &[u8]) -> Option<Vec<u8>> {
    if looks_incompressible(algorithm, data) {
        return None;
    }
    let out = match algorithm {
        Compression::None | Compression::ZstdDelta => return None,
        Compression::Zstd => zstd_compress(data, level)?,
        Compression::Gzip => miniz_oxide::deflate::compress_to_vec(data, level.clamp(0, 10) as u8),
    };
    (out.len() < data.len()).then_some(out)
}

/// Decompress a chunk whose recorded raw length is `raw_len`; any other length is an error.
pub fn decompress(algorithm: Compression, data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let out = match algorithm {
        Compression::None => data.to_vec(),
        Compression::Zstd => zstd_decompress(data, raw_len)?,
        Compression::Gzip => miniz_oxide::inflate::decompress_to_vec_with_limit(data, raw_len)
            .map_err(|e| format!("deflate stream does not inflate to {raw_len} bytes: {e}"))?,
        Compression::ZstdDelta => {
            return Err("a delta blob decodes only against its base chunk".into())
        }
    };
    if out.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes, expected {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(all(feature = "native-zstd", not(target_arch = "wasm32")))]
fn zstd_compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    zstd::bulk::compress(data, level).ok()
}

#[cfg(not(all(feature = "native-zstd", not(target_arch = "wasm32"))))]
fn zstd_compress(data: &[u8], _level: i32) -> Option<Vec<u8>> {
    // ruzstd has one working level; its output is a standard frame any decoder reads.
    Some(ruzstd::encoding::compress_to_vec(
        data,
        ruzstd::encoding::CompressionLevel::Fastest,
    ))
}

#[cfg(all(feature = "native-zstd", not(target_arch = "wasm32")))]
fn zstd_decompress(data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    zstd::bulk::decompress(data, raw_len).map_err(|e| format!("zstd frame does not decode: {e}"))
}

#[cfg(not(all(feature = "native-zstd", not(target_arch = "wasm32"))))]
fn zstd_decompress(data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    ruzstd_decompress(data, raw_len)
}

/// Pure-Rust zstd decoding, bounded to `raw_len + 1` bytes of output.
pub fn ruzstd_decompress(data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let decoder = ruzstd::decoding::StreamingDecoder::new(data)
        .map_err(|e| format!("zstd frame does not decode: {e}"))?;
    let mut out = Vec::with_capacity(raw_len);
    decoder
        .take(raw_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd frame does not decode: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| format!("row {i}, value {}\n", i % 97).into_bytes())
            .collect()
    }

    /// Incompressible bytes (xorshift).
    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn every_algorithm_round_trips() {
        let data = sample();
        for alg in [Compression::Zstd, Compression::Gzip] {
            let packed = compress(alg, alg.default_level(), &data).expect("text compresses");
            assert!(packed.len() < data.len() / 2, "{alg:?}");
            assert_eq!(decompress(alg, &packed, data.len()).unwrap(), data);
        }
        assert_eq!(compress(Compression::None, 0, &data), None);
    }

    #[test]
    fn zstd_frames_decode_with_the_pure_rust_decoder_of_the_browser_build() {
        let data = sample();
        let packed = compress(Compression::Zstd, 3, &data).unwrap();
        assert_eq!(ruzstd_decompress(&packed, data.len()).unwrap(), data);
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let data = noise(100_000, 0x1234_5678_9abc_def0);
        assert_eq!(compress(Compression::Zstd, 3, &data), None);
        assert_eq!(compress(Compression::Gzip, 1, &data), None);
    }

    #[test]
    fn a_chunk_random_only_in_part_is_still_compressed() {
        let mut data = noise(200_000, 7);
        data.extend(sample().into_iter().take(400_000));
        let packed = compress(Compression::Zstd, 3, &data).expect("the text half compresses");
        assert!(packed.len() < data.len() * 3 / 4);
        assert_eq!(
            decompress(Compression::Zstd, &packed, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn a_bomb_never_inflates_past_the_recorded_length() {
        let data = vec![0u8; 1 << 20];
        for alg in [Compression::Zstd, Compression::Gzip] {
            let packed = compress(alg, alg.default_level(), &data).unwrap();
            let err = decompress(alg, &packed, 1000).unwrap_err();
            assert!(!err.is_empty());
        }
        let packed = compress(Compression::Zstd, 3, &data).unwrap();
        assert!(ruzstd_decompress(&packed, 1000).unwrap().len() <= 1001);
    }
}
