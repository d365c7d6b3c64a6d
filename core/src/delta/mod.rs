//! Delta encoding: a new chunk stored as the difference to a similar chunk already stored
//! (its *base*), found by resemblance (docs/FORMAT.md, "Delta blobs").
//!
//! A nightly database dump changes a few percent of its rows, scattered over every table, so
//! content-defined chunking finds almost no identical chunk the next night; but each new chunk
//! is *similar* to one stored before. Two pieces make that pay:
//! - **Resemblance features** ([`features`]): content-defined sampling of a gear rolling hash
//!   (positions where its top bits are zero, one in 128), eight linear transforms of the
//!   sampled hashes each keeping its maximum, and each maximum's keyed hash (32 bits) as one
//!   feature. A feature survives when its sample lies in content both chunks share, so chunks
//!   sharing most of their content share most features, and a chunk whose boundaries moved (it
//!   holds half of an old chunk) still shares one with high probability (1 − 0.5⁸ for a half);
//!   chunks that share nothing almost never do. Grouping several maxima into one
//!   "super-feature" (N-transform, Finesse) makes false matches rarer but misses such shifted
//!   chunks: measured on a table dump with 4 % of rows moved, grouping three per feature found
//!   a base for 10 of 17 new chunks, one per feature for 16; eight features instead of four
//!   cut the stored bytes of nights 2–5 of the OLTP bench series by a further 13 %. The keyed hash
//!   ([`Keys::feature_hash`]) makes the stored features as opaque as chunk ids.
//! - **The delta itself** ([`encode_delta`], [`decode_delta`]): a zstd frame (RFC 8878)
//!   compressed with the base chunk's plaintext as a raw-content prefix, as `zstd
//!   --patch-from` does: matches may reach back into the base. Native builds use the reference
//!   C library for both directions; the browser build decodes with the pure-Rust `ruzstd`,
//!   given the base as a raw-content dictionary ([`ruzstd_decode_delta`]). Both decoders are
//!   checked against each other on every delta the tests and fuzz corpus make.
//!
//! A delta's bases (one or two, concatenated into its prefix) may be full chunks or deltas in
//! turn, so that tonight's chunk is encoded against last night's version of it, not against
//! the version of the night its base was stored whole (that difference grows every night:
//! measured on the OLTP series at 300 000 rows, night 6 stored 4.2× the changed rows with
//! full-chunk bases only). A writer keeps every chunk's closure (its bases, their bases, …)
//! at [`MAX_DELTA_READS`] blobs at most, so restoring one chunk reads and decodes at most
//! that many others.

use crate::crypto::Keys;

/// Features per chunk.
pub const SUPER_FEATURES: usize = 8;
/// Transform maxima hashed into one feature (1: each maximum is a feature of its own).
const FEATURES_PER_SUPER: usize = 1;
/// A chunk's resemblance features: [`SUPER_FEATURES`] keyed 32-bit hashes.
pub type Features = [u32; SUPER_FEATURES];
/// A sampled position has the top 7 bits of the gear hash zero: one byte in 128 on average.
const SAMPLE_SHIFT: u32 = 57;
/// Chunks smaller than this are never delta-encoded (nor offered as bases): too little to gain.
pub const MIN_DELTA_CHUNK: usize = 4096;
/// Most blobs a delta chunk's closure may hold (its bases, their bases, …): what a restore
/// reads and decodes for one chunk besides the chunk itself. Writers enforce it; readers
/// decode any acyclic closure.
pub const MAX_DELTA_READS: usize = 8;

/// splitmix64: fills the gear table and the transform constants at compile time (any fixed
/// pseudo-random table serves; these values are part of the format, since stored features must
/// be reproducible).
const fn splitmix64(state: u64) -> (u64, u64) {
    let state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (state, z ^ (z >> 31))
}

const fn table<const N: usize>(seed: u64, odd: bool) -> [u64; N] {
    let mut out = [0u64; N];
    let mut state = seed;
    let mut i = 0;
    while i < N {
        let (s, v) = splitmix64(state);
        state = s;
        out[i] = if odd { v | 1 } else { v };
        i += 1;
    }
    out
}

/// The gear table: one random 64-bit value per byte value (seed `"ca gear"`).
const GEAR: [u64; 256] = table(0x0063_6120_6765_6172, false);
/// Transform multipliers (odd) and addends (seeds `"ca mul"`, `"ca add"`).
const MUL: [u64; SUPER_FEATURES * FEATURES_PER_SUPER] = table(0x6361_206d_756c, true);
const ADD: [u64; SUPER_FEATURES * FEATURES_PER_SUPER] = table(0x6361_2061_6464, false);

/// The resemblance features of `data` (see the module documentation). Costs one table lookup,
/// shift and add per byte, plus eight multiply-adds per sampled position.
pub fn features(keys: &Keys, data: &[u8]) -> Features {
    let mut samples = sampled_hashes(data);
    // A window that repeats within the chunk (padding, a constant column) would repeat in
    // every chunk of its table and make unrelated chunks look alike: only windows that occur
    // once count.
    samples.sort_unstable();
    let mut max = [0u64; SUPER_FEATURES * FEATURES_PER_SUPER];
    let mut i = 0;
    while i < samples.len() {
        let g = samples[i];
        let run = samples[i..].iter().take_while(|s| **s == g).count();
        i += run;
        if run == 1 {
            for (m, (mul, add)) in max.iter_mut().zip(MUL.iter().zip(ADD.iter())) {
                *m = (*m).max(g.wrapping_mul(*mul).wrapping_add(*add));
            }
        }
    }
    let mut out = [0u32; SUPER_FEATURES];
    for (j, sf) in out.iter_mut().enumerate() {
        let mut group = [0u8; 1 + 8 * FEATURES_PER_SUPER];
        group[0] = j as u8;
        for (k, m) in max[j * FEATURES_PER_SUPER..(j + 1) * FEATURES_PER_SUPER]
            .iter()
            .enumerate()
        {
            group[1 + 8 * k..9 + 8 * k].copy_from_slice(&m.to_le_bytes());
        }
        *sf = keys.feature_hash(&group);
    }
    out
}

/// Independent lanes the sampling runs in (see [`sampled_hashes`]).
const LANES: usize = 4;

/// The gear hash at every sampled position of `data`, in no particular order. The hash at a
/// position depends only on the 64 bytes ending there (each step shifts the older ones one bit
/// further out), so the data is cut into [`LANES`] segments hashed in lockstep, each lane
/// starting 64 bytes before its segment: the same hashes as one pass, without one pass's chain
/// of dependent shift-adds (about twice as fast).
fn sampled_hashes(data: &[u8]) -> Vec<u64> {
    let mut samples = Vec::with_capacity(data.len() >> (64 - SAMPLE_SHIFT - 1));
    let step = |g: u64, b: u8| (g << 1).wrapping_add(GEAR[b as usize]);
    let seg = data.len() / LANES;
    let mut last = (0, 0u64);
    if seg >= 64 {
        let warm = |j: usize| {
            data[j * seg - 64..j * seg]
                .iter()
                .fold(0, |h, b| step(h, *b))
        };
        let (mut g0, mut g1, mut g2, mut g3) = (0, warm(1), warm(2), warm(3));
        let [a, b, c, d] = [0, 1, 2, 3].map(|j| &data[j * seg..(j + 1) * seg]);
        for (((&x0, &x1), &x2), &x3) in a.iter().zip(b).zip(c).zip(d) {
            g0 = step(g0, x0);
            g1 = step(g1, x1);
            g2 = step(g2, x2);
            g3 = step(g3, x3);
            // One rarely taken branch for the four lanes (the lanes stay in registers).
            if (g0 >> SAMPLE_SHIFT == 0)
                | (g1 >> SAMPLE_SHIFT == 0)
                | (g2 >> SAMPLE_SHIFT == 0)
                | (g3 >> SAMPLE_SHIFT == 0)
            {
                samples.extend(
                    [g0, g1, g2, g3]
                        .into_iter()
                        .filter(|g| g >> SAMPLE_SHIFT == 0),
                );
            }
        }
        last = (LANES * seg, g3);
    }
    let (from, mut g) = last;
    for &x in &data[from..] {
        g = step(g, x);
        if g >> SAMPLE_SHIFT == 0 {
            samples.push(g);
        }
    }
    samples
}

/// `data` as a zstd frame compressed at `level` with `base` as its raw-content prefix; `None`
/// when this build has no zstd encoder that takes a prefix (the pure-Rust one does not: the
/// browser build only restores).
#[cfg(all(feature = "native-zstd", not(target_arch = "wasm32")))]
pub fn encode_delta(base: &[u8], data: &[u8], level: i32) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .ok()?;
    cctx.set_parameter(CParameter::ContentSizeFlag(true)).ok()?;
    // Long-distance matching finds the long runs the chunk shares with its prefix even where
    // the regular match finder, on very repetitive rows (pgbench pads every row with the same
    // spaces), keeps to the previous row (`zstd --patch-from` turns it on for the same reason).
    cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .ok()?;
    // Only runs of 128 bytes or more count as long matches (the default is 64): on the pg
    // bench series the deltas are 14 % smaller (pgbench's padded rows no longer split a long
    // match into short ones), on the OLTP series 0.1 % larger, in the same time.
    cctx.set_parameter(CParameter::LdmMinMatch(128)).ok()?;
    cctx.set_pledged_src_size(Some(data.len() as u64)).ok()?;
    cctx.ref_prefix(base).ok()?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).ok()?;
    Some(out)
}

/// `data` as a zstd frame compressed at `level` with `base` as its raw-content prefix; `None`
/// when this build has no zstd encoder that takes a prefix (the pure-Rust one does not: the
/// browser build only restores).
#[cfg(not(all(feature = "native-zstd", not(target_arch = "wasm32"))))]
pub fn encode_delta(_base: &[u8], _data: &[u8], _level: i32) -> Option<Vec<u8>> {
    None
}

/// The zstd level a delta is made at when chunks are compressed at `configured`: one lower
/// (down to 1). Long-distance matching finds most of what a delta shares with its base, and
/// the regular match finder's tables, filled over the whole base for every delta, cost less
/// one level down: measured on a night of the OLTP bench series, level 2 instead of 3 stores
/// 0.3 % more in 15 % less ingest time (level 1: 5.6 % more).
pub fn delta_level(configured: i32) -> i32 {
    if configured > 1 {
        configured - 1
    } else {
        configured
    }
}

/// Whether this build can make deltas (native builds with the C zstd library).
pub fn can_encode() -> bool {
    cfg!(all(feature = "native-zstd", not(target_arch = "wasm32")))
}

/// The chunk a delta `frame` against `base` encodes, which must be `raw_len` bytes.
///
/// # Errors
/// The reason, when the frame does not decode against this base to exactly `raw_len` bytes.
#[cfg(all(feature = "native-zstd", not(target_arch = "wasm32")))]
pub fn decode_delta(base: &[u8], frame: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::DCtx;
    let bad = |e: &str| format!("delta frame does not decode against its base: {e}");
    let mut dctx = DCtx::create();
    dctx.ref_prefix(base)
        .map_err(|c| bad(zstd::zstd_safe::get_error_name(c)))?;
    // One byte of room more than expected: a frame that decodes longer is caught below.
    let mut out = Vec::with_capacity(raw_len + 1);
    dctx.decompress(&mut out, frame)
        .map_err(|c| bad(zstd::zstd_safe::get_error_name(c)))?;
    check_len(out, raw_len)
}

/// The chunk a delta `frame` against `base` encodes, which must be `raw_len` bytes.
///
/// # Errors
/// The reason, when the frame does not decode against this base to exactly `raw_len` bytes.
#[cfg(not(all(feature = "native-zstd", not(target_arch = "wasm32"))))]
pub fn decode_delta(base: &[u8], frame: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    ruzstd_decode_delta(base, frame, raw_len)
}

fn check_len(out: Vec<u8>, raw_len: usize) -> Result<Vec<u8>, String> {
    if out.len() == raw_len {
        Ok(out)
    } else {
        Err(format!(
            "delta decoded to {} bytes, expected {raw_len}",
            out.len()
        ))
    }
}

/// A zstd dictionary made once with `zstd --train --maxdict=512` from synthetic text: only its
/// entropy tables are used, to build a `ruzstd` dictionary whose content is then replaced by the
/// base (a raw-content prefix carries no tables, and a frame made against one never refers to
/// dictionary tables, so which tables these are does not matter).
const RUZSTD_TEMPLATE: &[u8] = include_bytes!("ruzstd_template.zdict");

/// The id the base is given as a `ruzstd` dictionary (frames made against a prefix name none).
const PREFIX_DICT_ID: u32 = 1;

/// [`decode_delta`] with the pure-Rust decoder of the browser build, output bounded to
/// `raw_len + 1` bytes.
///
/// # Errors
/// As [`decode_delta`].
pub fn ruzstd_decode_delta(base: &[u8], frame: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    use ruzstd::decoding::{BlockDecodingStrategy, Dictionary, FrameDecoder};
    let bad = |e: String| format!("delta frame does not decode against its base: {e}");
    let template = Dictionary::decode_dict(RUZSTD_TEMPLATE).map_err(|e| bad(e.to_string()))?;
    let dict = Dictionary {
        id: PREFIX_DICT_ID,
        fse: template.fse,
        huf: template.huf,
        dict_content: base.to_vec(),
        // A raw-content prefix starts from zstd's initial repeat offsets (RFC 8878, 3.1.2.5).
        offset_hist: [1, 4, 8],
    };
    let mut decoder = FrameDecoder::new();
    decoder.add_dict(dict).map_err(|e| bad(e.to_string()))?;
    let mut source = frame;
    decoder.reset(&mut source).map_err(|e| bad(e.to_string()))?;
    if decoder.content_size() != raw_len as u64 {
        return Err(bad(format!(
            "the frame announces {} bytes, expected {raw_len}",
            decoder.content_size()
        )));
    }
    decoder
        .force_dict(PREFIX_DICT_ID)
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(raw_len);
    while !decoder.is_finished() {
        decoder
            .decode_blocks(&mut source, BlockDecodingStrategy::UptoBytes(1 << 20))
            .map_err(|e| bad(e.to_string()))?;
        out.extend(decoder.collect().unwrap_or_default());
        if out.len() > raw_len {
            break;
        }
    }
    out.extend(decoder.collect().unwrap_or_default());
    if !source.is_empty() {
        return Err(bad(format!("{} bytes after the frame", source.len())));
    }
    check_len(out, raw_len)
}

#[cfg(test)]
mod tests;
