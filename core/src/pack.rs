//! Pack files and their `.idx` companions.
//!
//! ```text
//! pack   = "CA-PACK1" ‖ blob* ‖ header ‖ u32le(len(header)) ‖ "CA-PEND1"
//! header = seal("ca pack header", u32le(n) ‖ entry*n)
//! entry  = id[32] ‖ u32le(offset) ‖ u32le(stored_len) ‖ u32le(raw_len) ‖ flags ‖ 0[3]
//! idx    = "CA-IDX01" ‖ seal("ca pack idx", pack_id[32] ‖ u64le(pack_size) ‖ u32le(n) ‖ entry*n)
//! ```
//! With delta encoding on (feature `delta`), `u32le(n)` may carry [`EXTRAS_FLAG`]; then
//! `u32le(m) ‖ extra*m` follows the entries, `extra = u32le(entry number) ‖ tag ‖ payload[32]`:
//! tag 1 gives a base chunk id of a delta blob (one or two, in prefix order), tag 2 a data
//! chunk's resemblance features (8 × u32le; a delta's after its bases). See [`BlobExtra`].
//! A pack alone is enough to rebuild its index entries (the header at its end), and its id is
//! the SHA-256 of the whole file, so any damage to it is detectable without a key.

use crate::compress::Compression;
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::{Id, ID_LEN};
pub use crate::layout::{IDX_MAGIC, PACK_DATA_PREFIX, PACK_END_MAGIC, PACK_MAGIC};

/// Seal label of pack headers.
pub const HEADER_LABEL: &[u8] = b"ca pack header";
/// Seal label of `.idx` files.
pub const IDX_LABEL: &[u8] = b"ca pack idx";
/// Bytes of one encoded entry.
pub const ENTRY_LEN: usize = ID_LEN + 4 + 4 + 4 + 4;
/// Largest stored or raw length of one blob (chunks are at most 8 MiB, chunk-list blobs 1 MiB):
/// the in-memory index keeps both lengths in 24 bits.
pub const MAX_BLOB_LEN: u32 = (1 << 24) - 1;
/// Bytes after the header: its length and the end magic.
pub const TRAILER_LEN: usize = 4 + 8;
/// Set in an entry count when an extras table follows the entries.
pub const EXTRAS_FLAG: u32 = 1 << 31;
/// Bytes of one encoded extra: entry number, tag, payload.
pub const EXTRA_LEN: usize = 4 + 1 + 32;
const TAG_BASE: u8 = 1;
const TAG_FEATURES: u8 = 2;

/// Most bases one delta may have: a chunk whose boundaries moved often holds the ends of two
/// chunks of the night before.
pub const MAX_BASES: usize = 2;

/// The base chunks of a delta, in the order their plaintexts are concatenated into its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bases {
    first: Id,
    second: Option<Id>,
}

impl Bases {
    /// One base.
    pub fn one(id: Id) -> Self {
        Bases {
            first: id,
            second: None,
        }
    }

    /// `first`, then `second` if given and different.
    pub fn new(first: Id, second: Option<Id>) -> Self {
        Bases {
            first,
            second: second.filter(|s| *s != first),
        }
    }

    /// The base ids in prefix order.
    pub fn ids(self) -> impl Iterator<Item = Id> {
        std::iter::once(self.first).chain(self.second)
    }

    /// The delta's prefix: the bases' plaintexts in order, each looked up with `plain`
    /// (`None` when one is missing). One base is lent as it is (no copy of the chunk per
    /// delta decoded); two are concatenated.
    pub fn prefix<'a>(
        &self,
        plain: impl Fn(&Id) -> Option<&'a [u8]>,
    ) -> Option<std::borrow::Cow<'a, [u8]>> {
        let first = plain(&self.first)?;
        match self.second {
            None => Some(std::borrow::Cow::Borrowed(first)),
            Some(second) => Some(std::borrow::Cow::Owned([first, plain(&second)?].concat())),
        }
    }
}

/// Every chunk a restore of `start` must decode first, transitively: their bases, those bases'
/// bases, …, each once, nearest first (`bases_of` gives a delta's bases, `None` for a full
/// chunk or an unknown one). Ids of `start` appear only when another chunk needs them as a
/// base (or a damaged index makes a cycle, which this survives).
pub fn base_closure(
    start: impl IntoIterator<Item = Id>,
    bases_of: impl Fn(&Id) -> Option<Bases>,
) -> Vec<Id> {
    let mut out: Vec<Id> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut next = 0;
    let mut frontier: Vec<Id> = start.into_iter().collect();
    loop {
        for id in &frontier {
            for b in bases_of(id).into_iter().flat_map(Bases::ids) {
                if seen.insert(b) {
                    out.push(b);
                }
            }
        }
        if next == out.len() {
            return out;
        }
        frontier = out[next..].to_vec();
        next = out.len();
    }
}

/// What an entry records beyond where its blob is: a delta blob's bases, and a data chunk's
/// resemblance features (docs/FORMAT.md, "Delta blobs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlobExtra {
    /// Nothing (every blob of a repository without delta encoding).
    #[default]
    None,
    /// The chunks this delta blob ([`Compression::ZstdDelta`]) was encoded against (full
    /// chunks or deltas, at most [`crate::delta::MAX_DELTA_READS`] blobs in all to decode it),
    /// and its resemblance features when it has some: it may serve as a base in turn.
    Base(Bases, Option<crate::delta::Features>),
    /// A full data chunk's resemblance features ([`crate::delta::features`]): it may serve
    /// as a base.
    Features(crate::delta::Features),
}

/// What a blob holds (high nibble of the entry flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// A chunk of an item's content.
    Data,
    /// A piece of an item's chunk list: concatenated 32-byte chunk ids.
    ChunkList,
}

/// One blob inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Chunk id (keyed hash of the plaintext).
    pub id: Id,
    /// Byte offset of the stored blob in the pack.
    pub offset: u32,
    /// Bytes of the stored blob (after compression and encryption).
    pub stored_len: u32,
    /// Bytes of the plaintext.
    pub raw_len: u32,
    /// How the plaintext was compressed before encryption.
    pub compression: Compression,
    /// What the blob holds.
    pub kind: BlobKind,
    /// Its base (a delta) or features (a full chunk that may be a base).
    pub extra: BlobExtra,
}

impl PackEntry {
    fn flags(&self) -> u8 {
        let kind = match self.kind {
            BlobKind::Data => 0,
            BlobKind::ChunkList => 1,
        };
        self.compression.code() | (kind << 4)
    }

    /// Append the 48-byte encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&[self.flags(), 0, 0, 0]);
    }

    /// Decode one entry from exactly [`ENTRY_LEN`] bytes.
    pub fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        if b.len() != ENTRY_LEN {
            return Err("truncated entry".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let flags = b[44];
        let compression = Compression::from_code(flags & 0x0f)
            .ok_or_else(|| format!("unknown compression code {}", flags & 0x0f))?;
        let kind = match flags >> 4 {
            0 => BlobKind::Data,
            1 => BlobKind::ChunkList,
            k => return Err(format!("unknown blob kind {k}")),
        };
        let (stored_len, raw_len) = (u32_at(36), u32_at(40));
        if stored_len > MAX_BLOB_LEN || raw_len > MAX_BLOB_LEN {
            return Err(format!(
                "blob of {stored_len} stored / {raw_len} raw bytes exceeds the {MAX_BLOB_LEN}-byte limit"
            ));
        }
        Ok(PackEntry {
            id: Id::from_slice(b).expect("length checked"),
            offset: u32_at(32),
            stored_len,
            raw_len,
            compression,
            kind,
            extra: BlobExtra::None,
        })
    }

    /// The base chunks of a delta blob.
    pub fn bases(&self) -> Option<Bases> {
        match self.extra {
            BlobExtra::Base(b, _) => Some(b),
            _ => None,
        }
    }

    /// Its resemblance features, if recorded (a full chunk's or a delta's).
    pub fn features(&self) -> Option<crate::delta::Features> {
        match self.extra {
            BlobExtra::Base(_, f) => f,
            BlobExtra::Features(f) => Some(f),
            BlobExtra::None => None,
        }
    }

    /// The ids of its base chunks, in prefix order (none for a full blob).
    pub fn base_ids(&self) -> impl Iterator<Item = Id> {
        self.bases().into_iter().flat_map(Bases::ids)
    }
}

/// Decode `u32le(n) ‖ entry*n` (and the extras table, when flagged), checking that every blob
/// lies inside `[PACK_MAGIC.len(), limit)`; nothing may follow.
pub fn decode_entries(body: &[u8], limit: u64) -> std::result::Result<Vec<PackEntry>, String> {
    let (entries, used) = decode_entries_prefix(body, limit)?;
    if used != body.len() {
        return Err(format!(
            "{} entries announced, {} bytes of entries present",
            entries.len(),
            body.len() - 4
        ));
    }
    Ok(entries)
}

/// [`decode_entries`] of the start of `body`: the entries and the bytes they took.
pub fn decode_entries_prefix(
    body: &[u8],
    limit: u64,
) -> std::result::Result<(Vec<PackEntry>, usize), String> {
    let u32_at = |at: usize, what: &str| -> std::result::Result<u32, String> {
        body.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| format!("missing {what}"))
    };
    let announced = u32_at(0, "entry count")?;
    let n = (announced & !EXTRAS_FLAG) as usize;
    let end = n
        .checked_mul(ENTRY_LEN)
        .and_then(|l| l.checked_add(4))
        .ok_or("entry count overflows")?;
    let rest = body.get(4..end).ok_or_else(|| {
        format!(
            "{n} entries announced, {} bytes of entries present",
            body.len().saturating_sub(4)
        )
    })?;
    let mut entries = rest
        .chunks_exact(ENTRY_LEN)
        .map(|b| {
            let e = PackEntry::decode(b)?;
            let end = e.offset as u64 + e.stored_len as u64;
            if (e.offset as usize) < PACK_MAGIC.len() || end > limit {
                return Err(format!("blob {} lies outside the pack", e.id));
            }
            Ok(e)
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let mut used = end;
    if announced & EXTRAS_FLAG != 0 {
        let m = u32_at(used, "extras count")? as usize;
        let len = m.checked_mul(EXTRA_LEN).ok_or("extras count overflows")?;
        let table = body
            .get(used + 4..used + 4 + len)
            .ok_or_else(|| format!("{m} extras announced, fewer present"))?;
        for x in table.chunks_exact(EXTRA_LEN) {
            decode_extra(x, &mut entries)?;
        }
        used += 4 + len;
    }
    for e in entries
        .iter()
        .filter(|e| e.compression == Compression::ZstdDelta)
    {
        if e.kind != BlobKind::Data {
            return Err(format!("blob {} is a delta but not a chunk", e.id));
        }
        if e.bases().is_none() {
            return Err(format!("delta blob {} names no base", e.id));
        }
    }
    Ok((entries, used))
}

fn decode_extra(x: &[u8], entries: &mut [PackEntry]) -> std::result::Result<(), String> {
    let no = u32::from_le_bytes(x[..4].try_into().expect("4 bytes")) as usize;
    let e = entries
        .get_mut(no)
        .ok_or_else(|| format!("an extra names entry {no}, past the entries"))?;
    let payload = &x[5..];
    let delta = e.compression == Compression::ZstdDelta;
    e.extra = match (x[4], e.extra) {
        (TAG_BASE, BlobExtra::None | BlobExtra::Base(Bases { second: None, .. }, None))
            if delta =>
        {
            let base = Id::from_slice(payload).expect("32 bytes");
            if base == e.id {
                return Err(format!("delta blob {} names itself as its base", e.id));
            }
            match e.extra {
                BlobExtra::Base(b, _) if b.first == base => {
                    return Err(format!("delta blob {} names one base twice", e.id))
                }
                BlobExtra::Base(b, _) => BlobExtra::Base(Bases::new(b.first, Some(base)), None),
                _ => BlobExtra::Base(Bases::one(base), None),
            }
        }
        // A delta's features follow its bases.
        (TAG_FEATURES, BlobExtra::Base(b, None)) => BlobExtra::Base(b, Some(features(payload))),
        (TAG_FEATURES, BlobExtra::None) if e.kind == BlobKind::Data && !delta => {
            BlobExtra::Features(features(payload))
        }
        (_, extra) if extra != BlobExtra::None => {
            return Err(format!("blob {} has too many extras", e.id));
        }
        (tag, _) => return Err(format!("extra of tag {tag} does not fit blob {}", e.id)),
    };
    Ok(())
}

fn features(payload: &[u8]) -> crate::delta::Features {
    let mut f = [0u32; crate::delta::SUPER_FEATURES];
    for (v, b) in f.iter_mut().zip(payload.chunks_exact(4)) {
        *v = u32::from_le_bytes(b.try_into().expect("4 bytes"));
    }
    f
}

/// Append `u32le(n) ‖ entry*n` (and the extras table, when an entry has an extra).
pub fn encode_entries(entries: &[PackEntry], out: &mut Vec<u8>) {
    let extras = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.extra != BlobExtra::None);
    let m = extras_count(entries.iter());
    let flag = if m > 0 { EXTRAS_FLAG } else { 0 };
    out.extend_from_slice(&(entries.len() as u32 | flag).to_le_bytes());
    for e in entries {
        e.encode(out);
    }
    if m > 0 {
        out.extend_from_slice(&(m as u32).to_le_bytes());
        for (no, e) in extras {
            let no = (no as u32).to_le_bytes();
            for id in e.base_ids() {
                out.extend_from_slice(&no);
                out.push(TAG_BASE);
                out.extend_from_slice(&id.0);
            }
            if let Some(f) = e.features() {
                out.extend_from_slice(&no);
                out.push(TAG_FEATURES);
                f.iter()
                    .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
        }
    }
}

/// Extra records `entries` need (one per base of a delta, one for a chunk's features).
pub fn extras_count<'a>(entries: impl Iterator<Item = &'a PackEntry>) -> usize {
    entries
        .map(|e| e.base_ids().count() + usize::from(e.features().is_some()))
        .sum()
}

/// Bytes the entries of `entries` blobs with `extras` extra records take encoded.
pub fn entries_len(entries: usize, extras: usize) -> usize {
    4 + entries * ENTRY_LEN
        + if extras > 0 {
            4 + extras * EXTRA_LEN
        } else {
            0
        }
}

/// The storage key of a data pack.
pub fn pack_key(id: &Id) -> String {
    let h = id.to_hex();
    format!("{PACK_DATA_PREFIX}{}/{h}.pack", &h[..2])
}

/// The storage key of a pack's `.idx`.
pub fn idx_key(id: &Id) -> String {
    let h = id.to_hex();
    format!("{PACK_DATA_PREFIX}{}/{h}.idx", &h[..2])
}

/// A pack being filled.
#[derive(Debug)]
pub struct PackBuilder {
    data: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// A finished pack: its bytes, id and entries.
#[derive(Debug)]
pub struct FinishedPack {
    /// SHA-256 of `data`.
    pub id: Id,
    /// The whole pack file.
    pub data: Vec<u8>,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        PackBuilder {
            data: PACK_MAGIC.to_vec(),
            entries: Vec::new(),
        }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Ids of the blobs added so far.
    pub fn ids(&self) -> impl Iterator<Item = Id> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// Append a stored blob and return its entry.
    pub fn add(
        &mut self,
        id: Id,
        stored: &[u8],
        raw_len: usize,
        compression: Compression,
        kind: BlobKind,
        extra: BlobExtra,
    ) -> PackEntry {
        let entry = PackEntry {
            id,
            offset: self.data.len() as u32,
            stored_len: stored.len() as u32,
            raw_len: raw_len as u32,
            compression,
            kind,
            extra,
        };
        self.data.extend_from_slice(stored);
        self.entries.push(entry);
        entry
    }

    /// Seal the header onto the pack.
    pub fn finish(self, keys: &Keys, nonce: [u8; NONCE_LEN]) -> FinishedPack {
        let (data, entries) = self.finish_unhashed(keys, nonce);
        FinishedPack {
            id: Id::sha256(&data),
            data,
            entries,
        }
    }

    /// Seal the header onto the pack; the caller computes the id (SHA-256 of the bytes).
    pub fn finish_unhashed(
        mut self,
        keys: &Keys,
        nonce: [u8; NONCE_LEN],
    ) -> (Vec<u8>, Vec<PackEntry>) {
        let mut body = Vec::with_capacity(entries_len(self.entries.len(), self.entries.len()));
        encode_entries(&self.entries, &mut body);
        let header = keys.seal(HEADER_LABEL, &body, nonce);
        self.data.extend_from_slice(&header);
        self.data
            .extend_from_slice(&(header.len() as u32).to_le_bytes());
        self.data.extend_from_slice(PACK_END_MAGIC);
        (self.data, self.entries)
    }
}

/// Encode the `.idx` file of a pack.
pub fn encode_idx(
    keys: &Keys,
    pack: &Id,
    pack_size: u64,
    entries: &[PackEntry],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(ID_LEN + 8 + entries_len(entries.len(), entries.len()));
    body.extend_from_slice(&pack.0);
    body.extend_from_slice(&pack_size.to_le_bytes());
    encode_entries(entries, &mut body);
    let mut out = IDX_MAGIC.to_vec();
    out.extend_from_slice(&keys.seal(IDX_LABEL, &body, nonce));
    out
}

/// Decode an `.idx` file: the pack it describes, that pack's size, and its entries.
pub fn decode_idx(keys: &Keys, key: &str, data: &[u8]) -> Result<(Id, u64, Vec<PackEntry>)> {
    let bad = |reason: String| Error::corruption(format!("pack index {key}"), reason);
    let sealed = data
        .strip_prefix(IDX_MAGIC.as_slice())
        .ok_or_else(|| bad("bad magic".into()))?;
    let body = keys.open(IDX_LABEL, sealed).map_err(|r| bad(r.into()))?;
    if body.len() < ID_LEN + 8 {
        return Err(bad("too short".into()));
    }
    let pack = Id::from_slice(&body).expect("length checked");
    let size = u64::from_le_bytes(body[ID_LEN..ID_LEN + 8].try_into().expect("8 bytes"));
    let entries = decode_entries(&body[ID_LEN + 8..], size).map_err(bad)?;
    Ok((pack, size, entries))
}

/// Where the header of a pack of `pack_size` bytes is, given its last [`TRAILER_LEN`] bytes.
pub fn header_range(pack_name: &str, pack_size: u64, trailer: &[u8]) -> Result<(u64, u64)> {
    let bad = |reason: &str| Error::corruption(format!("pack {pack_name}"), reason);
    if trailer.len() != TRAILER_LEN || &trailer[4..] != PACK_END_MAGIC {
        return Err(bad("missing end magic (truncated?)"));
    }
    let len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as u64;
    let min = (PACK_MAGIC.len() + TRAILER_LEN) as u64;
    if pack_size < min || len > pack_size - min {
        return Err(bad("header length exceeds the pack"));
    }
    Ok((pack_size - TRAILER_LEN as u64 - len, len))
}

/// Decode a pack's header (located by [`header_range`]).
pub fn decode_header(
    keys: &Keys,
    pack_name: &str,
    header_start: u64,
    sealed: &[u8],
) -> Result<Vec<PackEntry>> {
    let bad = |reason: String| Error::corruption(format!("pack {pack_name}"), reason);
    let body = keys
        .open(HEADER_LABEL, sealed)
        .map_err(|r| bad(format!("header: {r}")))?;
    decode_entries(&body, header_start).map_err(bad)
}

/// Decode the header of a whole pack held in memory.
pub fn read_pack_entries(keys: &Keys, pack_name: &str, pack: &[u8]) -> Result<Vec<PackEntry>> {
    if pack.len() < PACK_MAGIC.len() + TRAILER_LEN || &pack[..8] != PACK_MAGIC {
        return Err(Error::corruption(format!("pack {pack_name}"), "bad magic"));
    }
    let (start, len) = header_range(
        pack_name,
        pack.len() as u64,
        &pack[pack.len() - TRAILER_LEN..],
    )?;
    decode_header(
        keys,
        pack_name,
        start,
        &pack[start as usize..(start + len) as usize],
    )
}

/// Size of a pack file holding `entries` blobs (`extras` of them with a [`BlobExtra`]) of
/// `blob_bytes` stored bytes in all.
pub fn pack_file_size(keys: &Keys, entries: usize, extras: usize, blob_bytes: u64) -> u64 {
    (PACK_MAGIC.len() + entries_len(entries, extras) + keys.seal_overhead() + TRAILER_LEN) as u64
        + blob_bytes
}

/// Size of the `.idx` file of a pack with `entries` blobs, `extras` of them with an extra.
pub fn idx_file_size(keys: &Keys, entries: usize, extras: usize) -> u64 {
    (IDX_MAGIC.len() + keys.seal_overhead() + ID_LEN + 8 + entries_len(entries, extras)) as u64
}

/// Read the entries of a pack from its own header, with two ranged reads.
pub fn read_header_from_storage(
    storage: &dyn crate::storage::Storage,
    keys: &Keys,
    pack: &Id,
    size: u64,
) -> Result<Vec<PackEntry>> {
    let key = pack_key(pack);
    let name = pack.to_hex();
    if size < (PACK_MAGIC.len() + TRAILER_LEN) as u64 {
        return Err(Error::corruption(
            format!("pack {name}"),
            "too short to be a pack",
        ));
    }
    let trailer = storage.get_range(&key, size - TRAILER_LEN as u64, TRAILER_LEN as u64)?;
    let (start, len) = header_range(&name, size, &trailer)?;
    let sealed = storage.get_range(&key, start, len)?;
    if sealed.len() as u64 != len {
        return Err(Error::corruption(
            format!("pack {name}"),
            "truncated header",
        ));
    }
    decode_header(keys, &name, start, &sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, compression: Compression, extra: BlobExtra) -> PackEntry {
        PackEntry {
            id: Id([n; 32]),
            offset: 8 + n as u32 * 10,
            stored_len: 10,
            raw_len: 100,
            compression,
            kind: BlobKind::Data,
            extra,
        }
    }

    #[test]
    fn extras_round_trip_and_entry_lists_without_them_keep_the_old_layout() {
        let plain = vec![entry(1, Compression::Zstd, BlobExtra::None)];
        let mut old = Vec::new();
        encode_entries(&plain, &mut old);
        assert_eq!(old.len(), entries_len(1, 0));
        assert_eq!(
            u32::from_le_bytes(old[..4].try_into().unwrap()),
            1,
            "no flag"
        );
        let with = vec![
            entry(1, Compression::Zstd, BlobExtra::Features([7; 8])),
            entry(
                2,
                Compression::ZstdDelta,
                BlobExtra::Base(Bases::new(Id([1; 32]), Some(Id([3; 32]))), Some([5; 8])),
            ),
            entry(3, Compression::None, BlobExtra::None),
            entry(
                4,
                Compression::ZstdDelta,
                BlobExtra::Base(Bases::one(Id([1; 32])), None),
            ),
        ];
        let mut body = Vec::new();
        encode_entries(&with, &mut body);
        assert_eq!(body.len(), entries_len(4, extras_count(with.iter())));
        assert_eq!(extras_count(with.iter()), 5);
        assert_eq!(decode_entries(&body, 1000).unwrap(), with);
    }

    #[test]
    fn extras_that_do_not_fit_their_entry_are_damage() {
        let encode = |entries: &[PackEntry]| {
            let mut b = Vec::new();
            encode_entries(entries, &mut b);
            b
        };
        let base = |n| BlobExtra::Base(Bases::one(Id([n; 32])), None);
        // A delta without a base; a base on a full chunk; a delta naming itself.
        let no_base = encode(&[entry(1, Compression::ZstdDelta, BlobExtra::None)]);
        assert!(decode_entries(&no_base, 1000)
            .unwrap_err()
            .contains("names no base"));
        let mut wrong = encode(&[entry(1, Compression::ZstdDelta, base(2))]);
        wrong[4 + 44] = Compression::Zstd.code(); // the entry's flags byte
        assert!(decode_entries(&wrong, 1000)
            .unwrap_err()
            .contains("does not fit"));
        let itself = encode(&[entry(1, Compression::ZstdDelta, base(1))]);
        assert!(decode_entries(&itself, 1000)
            .unwrap_err()
            .contains("itself"));
        // A third base, and an extra naming an entry past the end.
        let two = BlobExtra::Base(Bases::new(Id([2; 32]), Some(Id([3; 32]))), None);
        let mut three = encode(&[entry(1, Compression::ZstdDelta, two)]);
        let at = 4 + ENTRY_LEN;
        three[at] = 3; // three extras announced
        let last = three[three.len() - EXTRA_LEN..].to_vec();
        three.extend_from_slice(&last);
        assert!(decode_entries(&three, 1000)
            .unwrap_err()
            .contains("too many"));
        let mut past = encode(&[entry(1, Compression::ZstdDelta, base(2))]);
        past[at + 4] = 9; // entry number 9 of 1
        assert!(decode_entries(&past, 1000)
            .unwrap_err()
            .contains("past the entries"));
        // A delta's features before its base, and a base after its features.
        let with_features = BlobExtra::Base(Bases::one(Id([2; 32])), Some([4; 8]));
        let ok = encode(&[entry(1, Compression::ZstdDelta, with_features)]);
        let mut swapped = ok.clone();
        let (first, second) = (at + 4, at + 4 + EXTRA_LEN);
        let base_record = ok[first..second].to_vec();
        swapped.copy_within(second..second + EXTRA_LEN, first);
        swapped[second..second + EXTRA_LEN].copy_from_slice(&base_record);
        assert!(decode_entries(&swapped, 1000)
            .unwrap_err()
            .contains("does not fit"));
    }

    #[test]
    fn a_closure_holds_every_base_once_and_survives_a_cycle() {
        let id = |n| Id([n; 32]);
        // 5 → (4, 3); 4 → 2; 3 → 2; 2 → 1; 1 full. A damaged index may hold a cycle: 7 ↔ 8.
        let bases = |x: &Id| match x.0[0] {
            5 => Some(Bases::new(id(4), Some(id(3)))),
            4 | 3 => Some(Bases::one(id(2))),
            2 => Some(Bases::one(id(1))),
            7 => Some(Bases::one(id(8))),
            8 => Some(Bases::one(id(7))),
            _ => None,
        };
        assert_eq!(
            base_closure([id(5)], bases),
            vec![id(4), id(3), id(2), id(1)]
        );
        assert_eq!(base_closure([id(1)], bases), vec![]);
        assert_eq!(base_closure([id(4), id(3)], bases), vec![id(2), id(1)]);
        assert_eq!(base_closure([id(7)], bases), vec![id(8), id(7)]);
    }
}
