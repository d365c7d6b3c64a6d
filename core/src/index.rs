//! The global index: which pack holds each blob.
//!
//! On storage it is a set of write-once files under `index/`, each listing the packs one writer
//! produced (so concurrent writers only ever add files):
//! ```text
//! index file = "CA-INDX1" ‖ seal("ca index", u32le(p) ‖ (pack_id[32] ‖ u64le(size) ‖ u32le(n) ‖ entry*n)*p)
//! ```
//! In memory it is one hash map from blob id to location, merged from every file.

use std::collections::HashMap;

use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::{Id, ID_LEN};
use crate::pack::{decode_entries, PackEntry, ENTRY_LEN};

/// Magic at the start of every index file.
pub const INDEX_MAGIC: &[u8; 8] = b"CA-INDX1";
/// Seal label of index files.
pub const INDEX_LABEL: &[u8] = b"ca index";
/// Prefix of index files in storage.
pub const INDEX_PREFIX: &str = "index/";

/// The storage key of an index file.
pub fn index_key(id: &Id) -> String {
    format!("{INDEX_PREFIX}{}.index", id.to_hex())
}

/// One pack as listed in an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// Pack id.
    pub id: Id,
    /// Pack size in bytes.
    pub size: u64,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

/// Encode an index file listing `packs`.
pub fn encode_index_file(keys: &Keys, packs: &[IndexedPack], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        body.extend_from_slice(&p.id.0);
        body.extend_from_slice(&p.size.to_le_bytes());
        body.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
        for e in &p.entries {
            e.encode(&mut body);
        }
    }
    let mut out = INDEX_MAGIC.to_vec();
    out.extend_from_slice(&keys.seal(INDEX_LABEL, &body, nonce));
    out
}

/// Decode an index file stored under `key`.
pub fn decode_index_file(keys: &Keys, key: &str, data: &[u8]) -> Result<Vec<IndexedPack>> {
    let bad = |reason: String| Error::corruption(format!("index file {key}"), reason);
    let sealed = data
        .strip_prefix(INDEX_MAGIC.as_slice())
        .ok_or_else(|| bad("bad magic".into()))?;
    let body = keys.open(INDEX_LABEL, sealed).map_err(|r| bad(r.into()))?;
    let mut rest = body.as_slice();
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        if rest.len() < n {
            return Err(bad("truncated".into()));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
    let mut packs = Vec::new();
    for _ in 0..count {
        let id = Id::from_slice(&take(&mut rest, ID_LEN)?).expect("32 bytes");
        let size = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let n_bytes = take(&mut rest, 4)?;
        let n = u32::from_le_bytes(n_bytes.as_slice().try_into().expect("4 bytes")) as usize;
        let len = n
            .checked_mul(ENTRY_LEN)
            .ok_or_else(|| bad("entry count overflows".into()))?;
        let mut entries_body = n_bytes;
        entries_body.extend_from_slice(&take(&mut rest, len)?);
        let entries =
            decode_entries(&entries_body, size).map_err(|r| bad(format!("pack {id}: {r}")))?;
        packs.push(IndexedPack { id, size, entries });
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes".into()));
    }
    Ok(packs)
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Pack id.
    pub pack: Id,
    /// The blob's entry in that pack.
    pub entry: PackEntry,
}

/// The in-memory global index.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<(Id, u64)>,
    pack_slot: HashMap<Id, u32>,
    blobs: HashMap<Id, (u32, PackEntry)>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add every blob of a pack; a blob already indexed elsewhere keeps its first location.
    pub fn add_pack(&mut self, pack: Id, size: u64, entries: &[PackEntry]) {
        let slot = *self.pack_slot.entry(pack).or_insert_with(|| {
            self.packs.push((pack, size));
            (self.packs.len() - 1) as u32
        });
        self.blobs.reserve(entries.len());
        for e in entries {
            self.blobs.entry(e.id).or_insert((slot, *e));
        }
    }

    /// Where blob `id` is.
    pub fn get(&self, id: &Id) -> Option<Location> {
        self.blobs.get(id).map(|(slot, entry)| Location {
            pack: self.packs[*slot as usize].0,
            entry: *entry,
        })
    }

    /// Whether blob `id` is stored.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether the index holds no blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Every indexed pack with its size.
    pub fn packs(&self) -> &[(Id, u64)] {
        &self.packs
    }
}

/// Size of an index file listing packs with these entry counts.
pub fn index_file_size(keys: &Keys, entry_counts: &[usize]) -> u64 {
    let body: usize = 4 + entry_counts
        .iter()
        .map(|n| ID_LEN + 8 + 4 + n * ENTRY_LEN)
        .sum::<usize>();
    (INDEX_MAGIC.len() + keys.seal_overhead() + body) as u64
}
